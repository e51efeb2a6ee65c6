"""Progress bars (analyzer/progress.py): drawn on stderr when it is a
terminal (a pty here), never when it is not or with -q; the report's
stages and the fleet's recordings are its steps."""

import os
import pty
import subprocess
import sys

import pytest

from anonscope.analyzer import report

ANONANALYZE = os.path.join(os.path.dirname(sys.executable), "anonanalyze")
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
FIXTURE = os.path.join(FIXTURES, "anonshape-n100-f10.parquet")


def stderr_on_a_terminal(args, tmp_path):
    """(exit code, what the command wrote to its terminal stderr)."""
    master, slave = pty.openpty()
    with open(tmp_path / "out", "wb") as out:
        p = subprocess.Popen([ANONANALYZE, *args], stdout=out, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:             # the other end closed (EIO on Linux)
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=600), b"".join(chunks).decode("utf-8", "replace")


def test_report_draws_a_bar_of_its_stages_on_a_terminal(tmp_path):
    steps = 1 + len(report.STAGES)                       # reading, then each stage of build()
    rc, err = stderr_on_a_terminal(["report", FIXTURE, "-o", str(tmp_path / "r.json")], tmp_path)
    assert rc == 0, err
    # tqdm redraws at most every 0.1 s and clears the bar at the end: the
    # step count and the last stage's name are on it
    assert "anonanalyze report" in err and f"/{steps} [" in err and report.STAGES[-1] in err, err
    rc, err = stderr_on_a_terminal(["report", FIXTURE, "-q", "-o", str(tmp_path / "q.json")], tmp_path)
    assert rc == 0 and err == "", err


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    p = subprocess.run([ANONANALYZE, "report", FIXTURE, "-o", str(tmp_path / "r.json")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and p.stderr == ""


@pytest.mark.parametrize("quiet", [False, True])
def test_fleet_draws_a_bar_of_its_recordings(tmp_path, quiet):
    n = len([f for f in os.listdir(FIXTURES) if f.endswith(".parquet")])
    args = ["fleet", FIXTURES, "--format", "json", "-o", str(tmp_path / "f.json")] + (["-q"] if quiet else [])
    rc, err = stderr_on_a_terminal(args, tmp_path)
    assert rc == 0, err
    assert ("anonanalyze fleet" in err and f"/{n} [" in err) != quiet, err
    if quiet:
        assert err == ""


@pytest.mark.parametrize("quiet", [False, True])
def test_compare_draws_a_bar_of_both_reports(tmp_path, quiet):
    steps = 2 * (1 + len(report.STAGES))                 # each side: reading, then each stage
    args = ["compare", FIXTURE, FIXTURE, "--format", "json", "-o", str(tmp_path / "c.json")] + (["-q"] if quiet else [])
    rc, err = stderr_on_a_terminal(args, tmp_path)
    assert rc == 0, err
    if quiet:
        assert err == ""
    else:
        assert "anonanalyze compare" in err and f"/{steps} [" in err and "B: " + report.STAGES[-1] in err, err


def test_a_compare_that_fails_says_so_on_a_line_of_its_own(tmp_path):
    """The bar is gone before the one-line error: B is not a recording."""
    bad = tmp_path / "b.parquet"
    bad.write_bytes(b"not parquet")
    rc, err = stderr_on_a_terminal(["compare", FIXTURE, str(bad)], tmp_path)
    assert rc == 3, err
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("anonanalyze: error: ") and str(bad) in last, err
