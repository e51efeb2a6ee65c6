"""Marks (collector/marks.py): kill -USR1 and `anoncollect mark LABEL`
reach the recording loop as mark rows (docs/collector.md#marks). This
process plays the collector; no root needed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from anonscope.collector import cli, marks, proctree


@pytest.fixture
def collector(tmp_path, monkeypatch):
    """This process as a recording collector announced in a private RUN_DIR."""
    monkeypatch.setattr(marks, "RUN_DIR", str(tmp_path / "run"))
    old = {s: signal.getsignal(s) for s in (marks.UNNAMED, marks.NAMED)}
    m = marks.Marks().install()
    m.t0_ns = time.monotonic_ns()
    marks.publish(str(tmp_path / "r.parquet"))
    yield m
    marks.withdraw()
    for s, h in old.items():
        signal.signal(s, h)


def test_usr1_makes_numbered_marks(collector):
    os.kill(os.getpid(), signal.SIGUSR1)
    os.kill(os.getpid(), signal.SIGUSR1)
    rows = collector.rows()
    assert [r["mark_label"] for r in rows] == ["mark-1", "mark-2"]
    assert all(r["event"] == "mark" and r["cpu"] == -1 and r["ts_ns"] >= 0 for r in rows)
    assert rows[0]["ts_ns"] <= rows[1]["ts_ns"]
    assert collector.rows() == []


def test_named_mark_finds_the_collector(collector, tmp_path):
    before = time.monotonic_ns() - collector.t0_ns
    entry = marks.send("after-boot")
    assert entry["pid"] == os.getpid() and entry["output"] == str(tmp_path / "r.parquet")
    rows = collector.rows()
    assert [r["mark_label"] for r in rows] == ["after-boot"]
    # the time the mark was asked for, not when the loop took it
    assert before <= rows[0]["ts_ns"] <= time.monotonic_ns() - collector.t0_ns
    assert os.listdir(entry["marks"]) == []


def test_outside_the_window_a_mark_is_refused(collector, capsys):
    collector.t0_ns = None
    os.kill(os.getpid(), signal.SIGUSR1)
    assert collector.rows() == []
    assert "mark ignored: not recording" in capsys.readouterr().err


def test_send_errors(collector, tmp_path):
    with pytest.raises(marks.MarkError, match="printable"):
        marks.send("two\nlines")
    with pytest.raises(marks.MarkError, match="as pid 1"):
        marks.send("x", pid=1)
    # a stale entry of a dead process is skipped
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    with open(os.path.join(marks.RUN_DIR, f"anoncollect-{dead}.json"), "w") as f:
        json.dump({"pid": int(dead), "output": "x", "marks": "y"}, f)
    assert [e["pid"] for e in marks.running()] == [os.getpid()]
    assert marks.running()[0]["start_ticks"] == proctree.start_ticks(os.getpid())
    marks.withdraw()
    with pytest.raises(marks.MarkError, match="no anoncollect is recording"):
        marks.send("x")


def announce(pid, start_ticks):
    with open(os.path.join(marks.RUN_DIR, f"anoncollect-{pid}.json"), "w") as f:
        json.dump({"pid": pid, "start_ticks": start_ticks, "output": "x", "marks": "y"}, f)


def test_a_reused_pid_is_not_the_collector(tmp_path, monkeypatch):
    """An entry left by a SIGKILLed collector whose pid a later process
    took (pid_max is 32768 on small machines: a long test run wraps it)
    is skipped; so is one whose collector is a zombie; only the entry
    naming the process by pid and start time is found."""
    monkeypatch.setattr(marks, "RUN_DIR", str(tmp_path / "run"))
    os.makedirs(marks.RUN_DIR)
    live = subprocess.Popen(["sleep", "60"])
    zombie = subprocess.Popen(["sleep", "60"])
    try:
        ticks = proctree.start_ticks(live.pid)
        zticks = proctree.start_ticks(zombie.pid)
        announce(live.pid, ticks - 1)          # the pid's earlier owner
        assert marks.running() == []
        announce(live.pid, None)               # an entry without a start time names no process
        assert marks.running() == []
        zombie.kill()
        while proctree.stat_fields(zombie.pid)[0] != "Z":
            time.sleep(0.01)
        announce(zombie.pid, zticks)
        assert marks.running() == []
        announce(live.pid, ticks)
        assert [e["pid"] for e in marks.running()] == [live.pid]
    finally:
        live.kill()
        live.wait()
        zombie.wait()


def test_mark_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr(marks, "RUN_DIR", str(tmp_path / "none"))
    res = CliRunner().invoke(cli.mark, ["after-boot"])
    assert res.exit_code == 2
    assert res.output.strip() == ("anoncollect mark: error: no anoncollect is recording "
                                  f"(none announced in {tmp_path / 'none'})")
    res = CliRunner().invoke(cli.main, ["--help"])
    assert "kill -USR1" in res.output and "anoncollect mark LABEL" in res.output
