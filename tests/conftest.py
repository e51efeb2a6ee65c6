"""Under CI a skip must name something the host lacks (tests/hostcaps.py);
no test leaves a collector running."""

import contextlib
import os
import signal
import subprocess

import pytest

import hostcaps


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not (rep.skipped and hostcaps.strict()) or hasattr(rep, "wasxfail"):
        return
    reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
    if hostcaps.HOST_LACKS not in reason:
        rep.outcome = "failed"
        rep.longrepr = (f"skipped under CI for a reason the set-up should have removed: {reason} "
                        f"(only '{hostcaps.HOST_LACKS}...' skips are allowed there)")


def collectors():
    """{pid: command line} of the live (not zombie) anoncollect processes."""
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and ("anonscope.collector.cli" in cmd or "bin/anoncollect" in cmd):
            out[int(pid)] = cmd.strip()
    return out


@pytest.fixture(autouse=True)
def no_collector_left(request):
    """An integration test that leaves an anoncollect running fails (and
    the collector is killed): a later test's `anoncollect mark` would find
    two runs, and a user's machine would keep tracing."""
    if not request.node.module.__name__.startswith("test_integration"):
        yield
        return
    before = set(collectors())
    yield
    left = {p: c for p, c in collectors().items() if p not in before}
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"collectors left running: {left}"


@pytest.fixture(scope="session")
def workload():
    """build/anonshape compiled from workloads/anonshape.c (docs/workloads.md)."""
    from recording import ROOT, WORKLOAD
    WORKLOAD.parent.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(WORKLOAD), str(ROOT / "workloads" / "anonshape.c")],
                   check=True)
    return WORKLOAD


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="write tests/golden/*.json from the analyzer instead of comparing (tests/golden.py)")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")


@pytest.fixture(scope="session")
def anonmove():
    """build/anonmove compiled from workloads/anonmove.c (docs/workloads.md)."""
    from recording import ROOT
    out = ROOT / "build" / "anonmove"
    out.parent.mkdir(exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(out), str(ROOT / "workloads" / "anonmove.c")], check=True)
    return out
