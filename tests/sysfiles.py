"""Test helpers about files the system reads: paths another user must be
able to reach, and the command lines of systemd units."""

import contextlib
import os
import shlex
import stat


@contextlib.contextmanager
def traversable_by_others(path):
    """Let other users reach ``path`` (o+x on each directory above it that
    lacks it, as a clone in a mktemp -d directory does), then put it back."""
    changed = []
    d = os.path.dirname(os.path.abspath(path))
    while d != "/":
        mode = os.stat(d).st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(d, mode | stat.S_IXOTH)
            changed.append((d, mode))
        d = os.path.dirname(d)
    try:
        yield
    finally:
        for d, mode in changed:
            os.chmod(d, mode)


def exec_start(text):
    """The argv of a unit file's ExecStart= line."""
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    return shlex.split(line[len("ExecStart="):])
