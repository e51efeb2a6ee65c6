"""Under CI a skip must name something the host lacks (tests/hostcaps.py)."""

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
