"""Start the command of ``anoncollect -- CMD ARGS`` held before its exec.

As ``perf record -- CMD`` does, the child is forked first and waits on a
pipe; the collector arms its pid in the kernel (it becomes recorded at its
exec, so the teardown of the collector's copied address space is not
recorded), then releases it. An exec failure is reported back through a
second, close-on-exec pipe.
"""

import os
from typing import List


class SpawnError(Exception):
    """The command could not be executed."""


class HeldCommand:
    """A forked child that execs ``argv`` when ``release`` is called."""

    def __init__(self, argv: List[str]):
        self.argv = argv
        go_r, self._go_w = os.pipe()
        self._err_r, err_w = os.pipe2(os.O_CLOEXEC)
        self.pid = os.fork()
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
        os.write(self._go_w, b"g")
        os.close(self._go_w)
        err = os.read(self._err_r, 64)
        os.close(self._err_r)
        if err:
            os.waitpid(self.pid, 0)
            errno = int(err)
            raise SpawnError(f"cannot execute {self.argv[0]}: {os.strerror(errno)}")

    def cancel(self) -> None:
        """Make the child exit without exec'ing (setup failed)."""
        os.close(self._go_w)
        os.close(self._err_r)
        os.waitpid(self.pid, 0)

    def poll(self):
        """Exit status (negative: killed by that signal) or None while running."""
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        return os.waitstatus_to_exitcode(status)

    def terminate(self, wait_s: float = 5.0):
        """SIGTERM the command (SIGKILL after ``wait_s``); its exit status."""
        import signal
        import time
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            status = self.poll()
            if status is not None:
                return status
            time.sleep(0.05)
        os.kill(self.pid, signal.SIGKILL)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)
