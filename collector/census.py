"""The start-of-run census of the anon_vma topology (docs/schema.md#census).

bpf/fprobes.bpf.c carries a ``task_vma`` BPF iterator (FP_CENSUS). With
function probes it is part of their program, so its rows share their VMA
and anon_vma ids and leave through the same buffer (:func:`run`). In a
tracepoint-only run it is built as a program of its own (CENSUS_ONLY, ids
tagged so that no other row uses them) before recording starts, then run
once and drained here (:class:`Alone`).
bcc's Python API has no iterator call (0.26), but libbcc has
``bcc_iter_attach`` and ``bcc_iter_create`` and loads a function named
``bpf_iter__<target>`` as an iterator of that target; the iterator runs
while its file is read. Kernels 5.12+ (task_vma); the kernel must accept
BPF tracing programs: this project's 6.18 host runs iterators although it
refuses fentry.
"""

import ctypes
import dataclasses
import os
import time
from typing import Dict, Optional, Tuple

import numpy as np

from . import abi, events, probes, proctree, program

ITERATOR = b"bpf_iter__task_vma"


def _lib():
    from bcc.libbcc import lib
    lib.bcc_iter_attach.restype = ctypes.c_int
    lib.bcc_iter_attach.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
    lib.bcc_iter_create.restype = ctypes.c_int
    lib.bcc_iter_create.argtypes = [ctypes.c_int]
    return lib


def describe(entry: Dict[str, object]) -> str:
    """One line for the terminal once the census is over."""
    if entry["status"] != "done":
        return f"census not run: {entry['reason']}"
    return (f"census: {entry['vmas']} VMAs, {entry['vma_rows']} with an anon_vma, "
            f"{entry['anon_vmas_linked']} anon_vmas "
            f"in {entry['seconds']:.1f} s" + (f", {entry['lost']} rows LOST" if entry["lost"] else ""))


def not_run(reason: str) -> Dict[str, object]:
    """The metadata's ``census`` entry of a census that did not run, saying why
    (``reason``)."""
    return {"status": "not run", "reason": reason, "vma_rows": 0, "anon_vma_rows": 0,
            "anon_vmas_linked": 0, "vmas": 0, "seconds": 0.0, "lost": 0, "unvisited": None}


def run(bpf, scope: Optional["Scope"] = None) -> Dict[str, object]:
    """Run the iterator once; its rows go out through the ring buffer like
    any event. Returns the metadata's ``census`` entry. ``scope``: which
    processes it should have visited (for ``unvisited``; None: all)."""
    from bcc import BPF
    t0 = time.monotonic()
    try:
        fn = bpf.load_func(ITERATOR, BPF.TRACING)
    except Exception as e:  # noqa: BLE001 - bcc raises plain Exception
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "super-user" in why:  # bcc's words for any EPERM
            why = "the kernel refused the BPF tracing program (EPERM)"
        return not_run(f"iterator did not load: {why}")
    lib = _lib()
    link = lib.bcc_iter_attach(fn.fd, None, 0)
    if link < 0:
        return not_run(f"iterator did not attach: {os.strerror(ctypes.get_errno() or -link)}")
    try:
        it = lib.bcc_iter_create(link)
        if it < 0:
            return not_run(f"iterator did not start: {os.strerror(ctypes.get_errno() or -it)}")
        try:
            started = time.monotonic_ns()      # the program runs while the file is read
            while os.read(it, 1 << 16):  # the program writes nothing to the file
                pass
            ended = time.monotonic_ns()
        finally:
            os.close(it)
    finally:
        os.close(link)
    vmas = bpf["census_vmas"]
    anon_vmas = bpf["census_anon_vmas"]
    marks = [v.value for v in anon_vmas.values()]
    all_vmas = bpf["census_all_vmas"]
    out = {"status": "done", "reason": "task_vma iterator run once at start",
           "vma_rows": len(list(vmas.keys())), "anon_vma_rows": sum(1 for m in marks if m == 2),
           "anon_vmas_linked": len(marks), "vmas": int(all_vmas[all_vmas.Key(0)].value),
           "seconds": round(time.monotonic() - t0, 3), "lost": 0,
           "started_ns": started, "ended_ns": ended}   # CLOCK_MONOTONIC: the session makes them run-relative
    tgids = bpf["census_tgids"]
    out["unvisited"] = unvisited({k.value for k in tgids.keys()}, started, scope or Scope())
    for table in (vmas, anon_vmas, bpf["census_mms"], tgids):
        table.clear()
    return out


#: processes listed by name in census.unvisited (the rest only counted)
UNVISITED_LISTED = 20


@dataclasses.dataclass
class Scope:
    """The processes a census should visit: all, those of ``pids``, or
    those named ``comm``."""
    pids: Optional[set] = None
    comm: Optional[str] = None

    def wants(self, pid: int, comm: str) -> bool:
        """Whether the census should visit the process ``pid`` named
        ``comm``."""
        return (self.pids is None or pid in self.pids) and (self.comm is None or comm == self.comm)


def unvisited(visited, started_ns, scope: Scope, proc="/proc"):
    """Processes with an address space that existed when the census began
    but whose VMAs it did not visit (their objects are not in it):
    {"count", "processes": [{"pid", "comm", "rss_anon_kb"}]}. Kernel
    threads (no mm: statm size 0) are not counted. ``started_ns``:
    CLOCK_MONOTONIC of the census start; a process started later is not
    counted (CLOCK_MONOTONIC and /proc/PID/stat starttime both count from
    boot, suspend aside)."""
    hz = os.sysconf("SC_CLK_TCK")
    out = []
    for name in os.listdir(proc):
        if not name.isdigit() or int(name) in visited:
            continue
        try:
            with open(f"{proc}/{name}/statm") as f:
                if int(f.read().split()[0]) == 0:
                    continue
            ticks = proctree.start_ticks(name, proc)
            if ticks is None or ticks * 10 ** 9 // hz > started_ns:
                continue
            with open(f"{proc}/{name}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except (OSError, ValueError, IndexError):
            continue
        rss = fields.get("RssAnon", "").split()
        if not scope.wants(int(name), fields.get("Name", "").strip()):
            continue
        out.append({"pid": int(name), "comm": fields.get("Name", "").strip(),
                    "rss_anon_kb": int(rss[0]) if rss else None})
    out.sort(key=lambda e: -(e["rss_anon_kb"] or 0))
    return {"count": len(out), "processes": out[:UNVISITED_LISTED]}


class Alone:
    """The census as a program of its own (tracepoint-only runs), built and
    loaded before recording starts (its compile takes seconds) and run
    once recording has started. ``why_not`` is set when it cannot run."""

    def __init__(self, prep, BPF, pids=(), scope: Optional[Scope] = None):
        """``pids``: the processes a tracked run records (-p and its descendants);
        ``scope``: which processes the census should visit."""
        self.bpf, self.why_not, self.scope = None, None, scope
        why = program.census_possible(prep.facts, dataclasses.replace(prep.options, ringbuf=True))
        if why:
            self.why_not = why
            return
        opts = dataclasses.replace(prep.options, func_probes=True, kfunc=False, census_only=True, ringbuf=True)
        try:
            self.bpf = BPF(text=program.build(prep.facts, prep.classifier, opts), cflags=probes.bcc_cflags(prep))
        except Exception as e:  # noqa: BLE001 - bcc raises plain Exception
            self.why_not = f"census program did not load: {str(e).splitlines()[0]}"
            return
        probes.check_records(self.bpf, True)
        if prep.options.tracked:
            tracked = self.bpf["tracked"]
            for pid in pids:
                tracked[tracked.Key(pid)] = tracked.Leaf(1)

    def run(self) -> Tuple[Dict[str, object], np.ndarray]:
        """Run it once; (metadata entry, its rows in events.FPROBE_DTYPE),
        every row read before this returns. Rows the ring buffer could not
        take are counted in the entry's ``lost``. Frees the program."""
        if self.bpf is None:
            return not_run(self.why_not), np.empty(0, events.FPROBE_DTYPE)
        bpf, size, chunks = self.bpf, events.FPROBE_DTYPE.itemsize, []

        def on_record(_ctx, data, _size):
            n = ctypes.cast(data, ctypes.POINTER(ctypes.c_uint32))[0]
            chunks.append(ctypes.string_at(data + abi.BATCH_HEAD_SIZE, n * size))
        try:
            bpf["events"].open_ring_buffer(on_record)
            entry = run(bpf, self.scope)
            bpf.ring_buffer_consume()
            for b in bpf["batches"].getvalue(0):  # per-CPU batches not yet submitted
                if b.head.n:
                    chunks.append(ctypes.string_at(ctypes.addressof(b.ev), b.head.n * size))
            counters = bpf["counters"]
            entry["lost"] = int(counters.sum(counters.Key(abi.KINDS.index("census"))).value)
        finally:
            self.close()
        return entry, np.frombuffer(b"".join(chunks), dtype=events.FPROBE_DTYPE)

    def close(self) -> None:
        """Free the census program (bcc's ``cleanup()``), if it is still
        loaded."""
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None
