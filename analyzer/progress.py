"""Progress bars for long analyses (a report of a long recording, a
fleet): tqdm on stderr when it is a terminal, nothing otherwise or when the
user asked for quiet (docs: README, "Analysing")."""

import contextlib
import os
import sys


def wanted(quiet=False, stream=None):
    """Whether to draw a bar: not ``quiet`` and ``stream`` (stderr) is a terminal."""
    stream = stream or sys.stderr
    return not quiet and stream.isatty()


@contextlib.contextmanager
def bar(total, desc, unit, enabled):
    """A tqdm bar of ``total`` steps (its ``update``), or a stand-in that
    draws nothing when not ``enabled``."""
    if not enabled:
        yield _Silent()
        return
    from tqdm import tqdm
    cols, rows = _size()
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, ncols=cols, nrows=rows) as t:
        yield t


def _size():
    """The terminal's (columns, rows); 80 x 24 where it reports none (a
    fresh pty is 0 x 0, and tqdm draws nothing there)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
    except OSError:
        return 80, 24
    return size.columns or 80, size.lines or 24


class _Silent:
    """A bar that draws nothing."""

    def update(self, n=1):
        """Nothing to draw."""

    def set_postfix_str(self, s):
        """Nothing to draw."""
