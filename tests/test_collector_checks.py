"""Arguments are checked before anything slow, without root: each bad one is
one line and exit 2 (collector/checks.py). The checks run before the root
check, so getting exit 2 here as a normal user shows they come first."""

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from anonscope.collector import checks, cli, proctree, segments, session

ANONCOLLECT = [sys.executable, "-m", "anonscope.collector.cli"]


@pytest.fixture
def as_user(monkeypatch):
    """The collector as a normal user: whatever gets past the checks stops at
    the root check (exit 3)."""
    monkeypatch.setattr(session.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(session, "import_bcc", lambda: object)


def one_line(args, code, text):
    r = CliRunner().invoke(cli.main, args)
    assert r.exit_code == code, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anoncollect: error: "), r.output
    assert text in lines[0], lines[0]
    return lines[0]


def test_missing_command(as_user, tmp_path):
    one_line(["-o", str(tmp_path / "r.parquet"), "--", "/nonexistent/cmd"], 2, "No such file or directory")
    one_line(["-o", str(tmp_path / "r.parquet"), "--", "no-such-command-anonscope"], 2, "not found in PATH")
    assert not list(tmp_path.iterdir()), "nothing written"


def test_empty_and_unexecutable_commands(as_user, tmp_path):
    one_line(["-o", str(tmp_path / "r.parquet"), "--", ""], 2, "empty command")
    plain = tmp_path / "plain"
    plain.write_text("data\n")
    plain.chmod(0o644)
    if os.geteuid() != 0:   # root may execute anything with an x bit only
        one_line(["-o", str(tmp_path / "r.parquet"), "--", str(plain)], 2, "Permission denied")
    one_line(["-o", str(tmp_path / "r.parquet"), "--", str(tmp_path)], 2, "Is a directory")


def test_a_good_command_gets_past_the_checks(as_user, tmp_path):
    one_line(["-o", str(tmp_path / "r.parquet"), "--", "/bin/true"], 3, "needs root")


def test_pid_that_does_not_exist(as_user, tmp_path):
    dead = subprocess.Popen(["/bin/true"])
    dead.wait()                                  # a pid that existed and is gone
    one_line(["-o", str(tmp_path / "r.parquet"), "-p", str(dead.pid)], 2, "no such process")
    one_line(["-o", str(tmp_path / "r.parquet"), "-p", "999999999"], 2, "no such process")


def test_pid_of_a_thread_names_its_process(tmp_path):
    code = ("import threading, time, os, sys\n"
            "t = threading.Thread(target=time.sleep, args=(30,), daemon=True); t.start()\n"
            "print(t.native_id, flush=True); sys.stdin.read()\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        tid = int(p.stdout.readline())
        with pytest.raises(checks.CollectError, match=f"a thread of process {p.pid}") as e:
            checks.process(tid)
        assert e.value.code == 2
        checks.process(p.pid)                    # the process itself is fine
    finally:
        p.stdin.close()
        p.wait(timeout=30)


def test_comm_longer_than_the_kernel_keeps(as_user, tmp_path):
    one_line(["-o", str(tmp_path / "r.parquet"), "--comm", "a" * 16, "--duration", "1"], 2, "at most 15")
    one_line(["--ebpf", "--comm", "zygote64-but-longer"], 2, "at most 15")
    one_line(["-o", str(tmp_path / "r.parquet"), "--comm", "a" * 15, "--duration", "1"], 3, "needs root")


def test_an_unfinished_run_is_not_overwritten(as_user, tmp_path):
    out = tmp_path / "r.parquet"
    os.mkdir(segments.partial_dir(str(out)))
    one_line(["-o", str(out), "--duration", "1"], 2, "did not finish")
    one_line(["-o", str(out), "--duration", "1", "--force"], 3, "needs root")


def test_existing_output_is_kept_as_old(tmp_path):
    out = tmp_path / "r.parquet"
    out.write_bytes(b"first run")
    assert session.make_room(str(out), force=False) == f"moved the existing {out} to {out}.old"
    assert (tmp_path / "r.parquet.old").read_bytes() == b"first run" and not out.exists()
    out.write_bytes(b"second run")
    assert "replaced" in session.make_room(str(out), force=True)
    assert not out.exists() and (tmp_path / "r.parquet.old").read_bytes() == b"first run"


def test_checks_come_before_any_slow_import():
    """`-- /nonexistent` from a fresh interpreter: exit 2 without importing
    bcc, numpy or pyarrow (what makes the start-up slow)."""
    code = ("import sys; from anonscope.collector import cli\n"
            "try:\n    cli.main(['--', '/nonexistent/cmd'], standalone_mode=False)\n"
            "except SystemExit as e:\n    code = e.code\n"
            "print(code, sorted(m for m in ('bcc', 'numpy', 'pyarrow') if m in sys.modules))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout.split(None, 1) == ["2", "[]\n"], (p.stdout, p.stderr)


def test_descendants_from_proc(tmp_path):
    """proctree.descendants against a process tree of known shape: a shell
    whose child has a child of its own."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    sh = subprocess.Popen(["/bin/sh", "-c", f"/bin/sh -c 'cat {fifo}; true' & wait"])
    try:
        deadline = 100
        found = []
        while deadline and len(found) < 2:
            found = proctree.descendants(sh.pid)
            deadline -= 1
            signal.sigtimedwait([], 0.05)
        assert len(found) == 2, found
        parents = proctree.parent_of()
        child = next(p for p in found if parents[p] == sh.pid)
        grandchild = next(p for p in found if parents[p] == child)
        assert sorted([child, grandchild]) == found
        assert sh.pid not in found
    finally:
        with open(fifo, "w"):
            pass
        sh.wait(timeout=30)
