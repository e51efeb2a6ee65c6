"""What the collector does after a failure in the middle of a run
(session.Recording._failed), without root: one line with the cause, the
committed segments kept, the recorded command stopped, nothing half-written."""

import errno
import os
import time

import numpy as np

from anonscope.collector import abi, session
from anonscope.collector.config import RunConfig
from anonscope.collector.errors import CollectError
from anonscope.collector.spawn import HeldCommand
from anonscope.collector.writer import RecordingWriter
from collector_records import OBJ, record


class NoBPF:
    def __getitem__(self, name):
        raise RuntimeError("no program")  # _failed must not depend on it


class Stopped:
    def is_alive(self):
        return False


def failing_recording(tmp_path, commit=True):
    out = tmp_path / "r.parquet"
    rec = session.Recording.__new__(session.Recording)
    rec.cfg = RunConfig(output=str(out))
    rec.bpf, rec.consumer = NoBPF(), Stopped()
    rec.t0 = time.monotonic_ns() - 3_000_000_000
    rec.writer = RecordingWriter(str(out), t0_ns=0)
    rec.writer.add_events(np.concatenate([record(abi.Ev.ALLOC, i, obj=OBJ["anon_vma"], path=1, obj_id=i + 1,
                                                 aux1=104) for i in range(10)]))
    if commit:
        rec.writer.commit({"lost": {}})
    rec.writer.add_events(record(abi.Ev.ALLOC, 20, obj=OBJ["anon_vma"], path=1, obj_id=99, aux1=104))
    rec.writer.flush()                       # an open segment, not committed
    rec.held = HeldCommand(["/bin/sleep", "30"])
    rec.held.release()
    return rec, out


def test_an_internal_error_keeps_segments_and_stops_the_command(tmp_path):
    rec, out = failing_recording(tmp_path)
    err = rec._failed(RuntimeError("boom"))
    assert isinstance(err, CollectError) and err.code == 1
    msg = str(err)
    assert "\n" not in msg
    assert msg.startswith("internal error: RuntimeError: boom")
    assert "recording stopped at 3." in msg
    assert f"1 committed segment(s) (10 rows) kept in {out}.partial (anonanalyze report {out} reads them)" in msg
    assert f"the recorded command (pid {rec.held.pid}) was stopped" in msg
    assert not os.path.exists(f"/proc/{rec.held.pid}")
    assert sorted(os.listdir(f"{out}.partial")) == ["seg-000001.parquet"], "the open segment is gone"


def test_a_write_error_names_the_file_and_nothing_is_left_when_nothing_was_committed(tmp_path):
    rec, out = failing_recording(tmp_path, commit=False)
    msg = str(rec._failed(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    assert msg.startswith(f"cannot write {out}: No space left on device")
    assert "nothing had been committed" in msg
    assert not os.path.exists(f"{out}.partial")


def test_a_held_command_killed_before_its_release_is_not_an_error():
    """Ctrl-C reaches the held child too (same process group) before the
    collector releases it: release() does not fail, poll() gives the signal."""
    import signal
    held = HeldCommand(["/bin/true"])
    os.kill(held.pid, signal.SIGINT)
    os.waitid(os.P_PID, held.pid, os.WEXITED | os.WNOWAIT)   # dead, not yet reaped
    held.release()
    assert held.poll() == -signal.SIGINT
