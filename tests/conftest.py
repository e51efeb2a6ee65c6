"""Under CI a skip must name something the host lacks (tests/hostcaps.py)."""

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
