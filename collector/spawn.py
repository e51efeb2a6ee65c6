"""Start the command of ``anoncollect -- CMD ARGS`` held before its exec.

As ``perf record -- CMD`` does, the child is forked first and waits on a
pipe; the collector arms its pid in the kernel (it becomes recorded at its
exec, so the teardown of the collector's copied address space is not
recorded), then releases it. An exec failure is reported back through a
second, close-on-exec pipe. Whatever happens to the collector, the child
is either released, cancelled (it exits without exec'ing) or stopped
(:meth:`HeldCommand.stop`), never left behind unsaid.
"""

import os
import signal
import time
from typing import List, Optional

from .signals import SIGNALS, deferred


class SpawnError(Exception):
    """The command could not be executed."""


class HeldCommand:
    """A forked child that execs ``argv`` when ``release`` is called."""

    def __init__(self, argv: List[str]):
        self.argv = argv
        self.released = False
        self.status: Optional[int] = None    # exit status once reaped
        go_r, self._go_w = os.pipe()
        self._err_r, err_w = os.pipe2(os.O_CLOEXEC)
        with deferred():   # a signal now reaches the child with the default action, not Python's handler
            self.pid = os.fork()
            if self.pid == 0:
                for s in SIGNALS:
                    signal.signal(s, signal.SIG_DFL)
        if self.pid == 0:  # child
            try:
                os.close(self._go_w)
                os.close(self._err_r)
                if os.read(go_r, 1) != b"g":
                    os._exit(127)
                os.close(go_r)
                os.execvp(argv[0], argv)
            except OSError as e:
                os.write(err_w, f"{e.errno}".encode())
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(err_w)

    def release(self) -> None:
        """Let the child exec; raise SpawnError if the exec failed."""
        self.released = True
        try:
            os.write(self._go_w, b"g")
        except BrokenPipeError:
            pass  # a signal ended the child first (Ctrl-C to the group): poll() says so
        finally:
            os.close(self._go_w)
        err = os.read(self._err_r, 64)
        os.close(self._err_r)
        if err:
            self._wait(0)
            raise SpawnError(f"cannot execute {self.argv[0]}: {os.strerror(int(err))}")

    def cancel(self) -> None:
        """Make a child not yet released exit without exec'ing (set-up failed)."""
        if self.released or self.status is not None:
            return
        self.released = True
        os.close(self._go_w)
        os.close(self._err_r)
        self._wait(0)

    def _wait(self, flags: int) -> Optional[int]:
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:
            return self.status
        if pid:
            self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def poll(self) -> Optional[int]:
        """Exit status (negative: killed by that signal) or None while running."""
        if self.status is not None:
            return self.status
        return self._wait(os.WNOHANG)

    def terminate(self, wait_s: float = 5.0) -> int:
        """SIGTERM the command (SIGKILL after ``wait_s``); its exit status."""
        if self.poll() is not None:
            return self.status
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.poll() is not None:
                return self.status
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        return self._wait(0)

    def stop(self) -> Optional[str]:
        """Leave nothing behind after a failure: cancel a held child, or
        terminate a running command; what was done, for the user (None when
        the command had already exited)."""
        if not self.released:
            self.cancel()
            return None
        if self.poll() is not None:
            return None
        status = self.terminate()
        return f"the recorded command (pid {self.pid}) was stopped (exit status {status})"
