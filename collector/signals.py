"""SIGINT, SIGTERM and SIGHUP over a whole run.

Before recording starts, a signal raises :class:`Interrupted`, so that
everything set up so far is undone on the way out (the held command, the
BPF programs, the private headers directory); Python runs the handler once
the current C call returns (a bcc compile finishes first). While recording,
a signal only asks the loop to stop: the run ends cleanly with the signal's
name as ``stop_reason``.
"""

import contextlib
import signal
from typing import Optional

from .marks import Marks

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(BaseException):
    """A signal arrived before recording started. A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way (bcc's
    probing, a fallback) takes it for an error it can handle."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


class Stop:
    """What the signals asked for; ``recording`` switches the behaviour.
    ``marks``: the mark requests of SIGUSR1 and SIGUSR2 (marks.py)."""

    def __init__(self):
        self.reason: Optional[str] = None
        self.recording = False
        self.marks = Marks()

    def install(self) -> "Stop":
        """Handle SIGINT, SIGTERM and SIGHUP, and the mark signals, from now
        on; returns itself."""
        for s in SIGNALS:
            signal.signal(s, self._handler)
        self.marks.install()
        return self

    def _handler(self, signum, _frame):
        if not self.recording:
            raise Interrupted(signum)
        if self.reason is None:
            self.reason = signal.Signals(signum).name


@contextlib.contextmanager
def deferred():
    """Hold SIGINT, SIGTERM and SIGHUP back meanwhile (for a step that must
    not be cut in two, such as making a temporary directory and registering
    its removal); they are delivered when it ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
