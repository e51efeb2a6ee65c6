"""``anonanalyze import perfetto``: a Perfetto trace into a recording in the
collector's schema (backend ``perfetto``, docs/android.md).

The trace is read once, packet by packet (trace.py). Ftrace bundles are
per CPU and reach the file out of time order across CPUs, so events wait in
a heap until nothing older can come (SORT_WINDOW_NS behind the newest event
read; one arriving later still is replayed where it arrives and counted,
``late_events``); then replay.py makes the records and the collector's
writer (collector/writer.py) writes them, in segments, as anoncollect does.
"""

import heapq
import os
import platform
import shutil
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .. import kallsyms, segments, sites
from ..abi import Obj, Site
from ..runmeta import tool_version
from ..writer import RecordingWriter
from . import samples, trace
from .census import Census, CensusError
from .facts import FTRACE_CLOCK_UNSPECIFIED, TraceFacts
from .replay import Replay, arch_tables

#: How far behind the newest event read an event may still arrive: traced
#: drains each CPU's buffer every ``drain_period_ms`` (100 ms by default)
#: and writes each CPU's bundle in turn, so a few periods cover it.
SORT_WINDOW_NS = 2_000_000_000
#: How long (event time) to hold events back for the process scan at most.
TREE_WAIT_NS = 5_000_000_000
#: Records handed to the writer at a time, and segments committed every
#: COMMIT_EVERY records (the writer holds at most one segment's rows).
BATCH = 65536
COMMIT_EVERY = 1 << 20
#: The ftrace events the import reads (FtraceEvent oneof names).
WANTED = tuple(Replay.HANDLERS)
#: Their names in FtraceConfig.ftrace_events (tracefs group/name).
FTRACE_NAMES = {"kmem_cache_alloc": "kmem/kmem_cache_alloc", "kmem_cache_free": "kmem/kmem_cache_free",
                "sys_enter": "raw_syscalls/sys_enter", "sys_exit": "raw_syscalls/sys_exit",
                "task_newtask": "task/task_newtask", "task_rename": "task/task_rename",
                "sched_process_fork": "sched/sched_process_fork", "sched_process_exec": "sched/sched_process_exec",
                "sched_process_exit": "sched/sched_process_exit", "print": "ftrace/print"}
#: The ones it cannot do without, and what each gives.
REQUIRED_EVENTS = {
    "kmem_cache_alloc": "kmem/kmem_cache_alloc: the objects",
    "kmem_cache_free": "kmem/kmem_cache_free: their frees",
    "sched_process_fork": "sched/sched_process_fork: the forks",
    "task_newtask": "task/task_newtask: whether a clone made a thread or a process",
    "sys_enter": "raw_syscalls/sys_enter: the fork windows (clone, fork, vfork, clone3)",
}
#: /sys/kernel/slab file names the import reads from --slab-dir
SLAB_FILES = ("object_size", "slab_size", "align", "objs_per_slab", "aliases")
SLAB_CACHES = {Obj.ANON_VMA: "anon_vma", Obj.AVC: "anon_vma_chain", Obj.VMA: "vm_area_struct"}


class PerfettoImportError(Exception):
    """An import that cannot be done: one line for the user; ``unreadable``
    when an input file cannot be read at all (else its content is wrong)."""

    def __init__(self, message: str, unreadable: bool = False):
        super().__init__(message)
        self.unreadable = unreadable


@dataclass
class Options:
    """What ``anonanalyze import perfetto`` was given."""

    trace: str
    kallsyms: str
    output: str
    slab_dir: Optional[str] = None
    arch: Optional[str] = None
    argv: List[str] = field(default_factory=list)
    census: Optional[str] = None
    samples: Optional[str] = None


def classifier_of(path: str) -> sites.Classifier:
    """The site classifier of a kallsyms file captured on the traced boot."""
    try:
        with open(path, errors="replace") as f:
            ranges = kallsyms.function_ranges(f, sites.wanted_functions())
    except OSError as e:
        raise PerfettoImportError(f"{path}: {e.strerror}", unreadable=True) from e
    except kallsyms.KallsymsError as e:
        raise PerfettoImportError(f"{path}: {e} (capture it as root on the traced boot: docs/android.md)",
                                  unreadable=True) from e
    c = sites.Classifier.from_ranges(ranges)
    missing = [f for f in sites.REQUIRED if f not in c.ranges]
    if missing:
        raise PerfettoImportError(f"{path}: no {', '.join(missing)} in it: not a kallsyms of a kernel with the "
                                  "anon rmap (captured as root, kernel.kptr_restrict 0?)")
    return c


def slab_geometry(slab_dir: Optional[str]) -> Dict[int, Dict[str, object]]:
    """{Obj: {file: value}} from a copy of /sys/kernel/slab (empty without)."""
    out: Dict[int, Dict[str, object]] = {}
    for obj, cache in SLAB_CACHES.items():
        entry: Dict[str, object] = {}
        for name in SLAB_FILES if slab_dir else ():
            try:
                with open(os.path.join(slab_dir, cache, name)) as f:
                    entry[name] = int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                entry[name] = None
        out[obj] = entry
    return out


def sizes_seen(path: str, c: sites.Classifier, enough: int = 10000) -> Dict[int, int]:
    """Object sizes (``bytes_req``) as the trace shows them, for a trace
    without --slab-dir: ``anon_vma_clone()`` allocates only AVCs (mm/rmap.c,
    6.12 and 7.3), so the size at its call sites is the AVC's; at
    ``__anon_vma_prepare``/``anon_vma_fork`` the other size is the
    anon_vma's; at ``vm_area_alloc``/``vm_area_dup`` the largest is the
    VMA's (the only other allocation there, 6.4-6.14's per-VMA lock, is a
    small ``struct vma_lock``). Reads until ``enough`` such allocations."""
    by_site: Dict[int, Counter] = {s: Counter() for s in Site}
    n = 0
    for packet in trace.packets(path):
        for ev in packet.ftrace_events.event if packet.HasField("ftrace_events") else ():
            if ev.WhichOneof("event") != "kmem_cache_alloc":
                continue
            site = c.alloc_site(ev.kmem_cache_alloc.call_site)
            if site:
                by_site[site][ev.kmem_cache_alloc.bytes_req] += 1
                n += 1
        if n >= enough:
            break
    out = {}
    if by_site[Site.CLONE]:
        out[Obj.AVC] = by_site[Site.CLONE].most_common(1)[0][0]
    rmap = by_site[Site.PREPARE] + by_site[Site.FORK]
    other = [(k, v) for k, v in rmap.most_common() if k != out.get(Obj.AVC)]
    if other:
        out[Obj.ANON_VMA] = other[0][0]
    vma = by_site[Site.VMA_ALLOC] + by_site[Site.VMA_DUP]
    if vma:
        out[Obj.VMA] = max(vma)
    return out


class _Importer:
    """One import: the trace's facts, the sort heap, the replay, the writer."""

    def __init__(self, opts: Options, c: sites.Classifier, sizes: Dict[int, int],
                 geometry: Dict[int, Dict[str, object]], census: Optional[Census],
                 progress: Optional[Callable[[int], None]]):
        # progress(n): n more packets read
        self.opts, self.classifier, self.sizes, self.geometry = opts, c, sizes, geometry
        self.census = census
        self.census_entry = None
        self.progress = progress
        self.heap: List[tuple] = []
        self.seq = 0
        self.newest = 0
        self.released = 0       # the newest timestamp replayed
        self.late = 0
        self.seen = Counter()   # FtraceEvent kinds read
        self.facts = TraceFacts()
        self.first_ts: Optional[int] = None
        self.replay: Optional[Replay] = None
        self.writer: Optional[RecordingWriter] = None
        self.pending_trees: List[object] = []
        self.trees = 0           # ProcessTree packets read
        self.mark_ts: Dict[str, int] = {}   # label -> ts_ns of its first mark row
        self.written = 0
        self.packets = 0

    # -- reading ---------------------------------------------------------
    def read(self) -> None:
        """Every packet: facts kept, events into the heap, replayed as they
        leave the sort window."""
        for packet in trace.packets(self.opts.trace):
            self.packets += 1
            self._packet(packet)
            if self.replay is not None and not self._awaiting_tree():
                self._release(self.newest - SORT_WINDOW_NS)
            if self.progress and self.packets % 256 == 0:
                self.progress(256)
        if self.replay is None:
            self._start()
        self._release(None)

    def _awaiting_tree(self) -> bool:
        """Whether to hold the events back for the process scan: the config
        asked for it (linux.process_stats), none has come, and the events
        read span less than TREE_WAIT_NS (traced writes the scan from
        another buffer, which may reach the file after the first events;
        replayed before it, their threads would be taken as processes)."""
        return (not self.trees and "linux.process_stats" in self.facts.sources
                and self.first_ts is not None and self.newest - self.first_ts < TREE_WAIT_NS)

    def _packet(self, p) -> None:
        if self.facts.take(p):
            return
        if p.HasField("process_tree"):
            self.trees += 1
            if self.replay is None:
                self.pending_trees.append(p.process_tree)
            else:
                self.replay.tasks.process_tree(p.process_tree)
        elif p.HasField("ftrace_events"):
            self.facts.bundle(p.ftrace_events)
            problem = self.facts.clock_problem()
            if problem:
                raise PerfettoImportError(f"{self.opts.trace}: {problem} (record with the boot clock, "
                                          "traced's default)")
            self._bundle(p.ftrace_events)

    def _bundle(self, b) -> None:
        if self.replay is None:
            self._start()
        alloc_site, heap, seen, cpu = self.classifier.lookup(sites.ALLOC_SITES), self.heap, self.seen, b.cpu
        for ev in b.event:
            kind = ev.WhichOneof("event")
            if kind == "kmem_cache_alloc":
                msg = ev.kmem_cache_alloc
                if not alloc_site(msg.call_site):
                    continue      # not one of our functions: nothing to keep
            elif kind in Replay.HANDLERS:
                msg = getattr(ev, kind)
            else:
                continue
            seen[kind] += 1
            ts = ev.timestamp
            if ts > self.newest:
                self.newest = ts
            if self.writer is None and (self.first_ts is None or ts < self.first_ts):
                self.first_ts = ts    # ts_ns 0, fixed once rows are written
            if ts < self.released:
                self.late += 1
            self.seq += 1
            heapq.heappush(heap, (ts, self.seq, cpu, ev.pid, kind, msg))

    def _start(self) -> None:
        """The replay, once the trace's machine is known (SystemInfo comes
        before the first bundle in the traces traced writes)."""
        arch = self.opts.arch or self.facts.uname("machine")
        if not arch:
            raise PerfettoImportError(f"{self.opts.trace}: no SystemInfo packet names the architecture; "
                                      "give --arch (uname -m of the device)")
        try:
            arch_tables(arch)
        except KeyError:
            raise PerfettoImportError(f"{self.opts.trace}: architecture {arch!r} has no syscall table here "
                                      "(x86_64, aarch64, riscv64, armv7l)") from None
        self.arch = arch
        self.replay = Replay(self.classifier, self.sizes, arch)
        if self.census:
            self.replay.skip_ids(self.census.max_id())   # census rows keep their ids
        for tree in self.pending_trees:
            self.replay.tasks.process_tree(tree)
        self.pending_trees = []

    def _release(self, upto: Optional[int]) -> None:
        """Replay the events up to ``upto`` (None: all)."""
        r = self.replay
        while self.heap and (upto is None or self.heap[0][0] <= upto):
            ts, _, cpu, pid, kind, msg = heapq.heappop(self.heap)
            if ts > self.released:
                self.released = ts
            Replay.HANDLERS[kind](r, ts, cpu, pid, msg)
            if len(r.records) >= BATCH:
                self._write()
        self._write()

    def _write_marks(self) -> None:
        marks, self.replay.marks = self.replay.marks, []
        for ts, label in marks:
            self.mark_ts.setdefault(label, ts - self.first_ts)
        self.writer.add_user_rows([{"ts_ns": ts - self.first_ts, "event": "mark", "cpu": -1, "mark_label": label}
                                   for ts, label in marks])

    def _write(self) -> None:
        ev = self.replay.take()
        if not len(ev):
            if self.writer is not None:
                self._write_marks()
            return
        if self.writer is None:
            self.writer = RecordingWriter(self.opts.output, self.first_ts)
        self.writer.add_events(ev, now_ns=int(ev["ts"].max()))
        self._write_marks()
        before = self.written // COMMIT_EVERY
        self.written += len(ev)
        if self.written // COMMIT_EVERY > before:
            self.writer.commit(self.metadata(final=False))

    # -- what the recording says about itself -----------------------------
    def check(self) -> None:
        """Refuse a trace without the events the import needs."""
        lacking = [what for kind, what in REQUIRED_EVENTS.items()
                   if not self.seen[kind] and not self._configured(kind)]
        if lacking:
            raise PerfettoImportError(f"{self.opts.trace}: the trace has no " + "; no ".join(lacking)
                                      + " (record with scripts/android/record's config, docs/android.md)")

    def _configured(self, kind: str) -> bool:
        """Whether the trace config asked for the event (then none happened)."""
        return self.facts.configured(FTRACE_NAMES[kind])

    def object_sizes(self) -> Dict[str, object]:
        """The metadata's object_sizes: the trace's sizes and slots, and the
        caches' geometry where --slab-dir gave it (no BTF: btf_size null)."""
        out = {}
        slots = self.replay.slots if self.replay else {}
        for obj, cache in SLAB_CACHES.items():
            g = self.geometry.get(obj, {})
            out[cache] = {"btf_size": None, "slab_size": g.get("slab_size") or slots.get(obj),
                          "object_size": self.sizes.get(obj), "align": g.get("align"),
                          "objs_per_slab": g.get("objs_per_slab"), "sheaf_capacity": None}
        return out

    def metadata(self, final: bool) -> Dict[str, object]:
        """The recording's metadata (docs/schema.md, "Metadata"; ``perfetto``:
        docs/android.md)."""
        info, f = self.facts.system_info, self.facts
        r = self.replay
        duration = (self.released - self.first_ts) / 1e9 if self.first_ts is not None else 0.0
        return {
            "tool_version": tool_version(), "command_line": self.opts.argv,
            "kernel_release": f.uname("release") or "unknown", "arch": self.arch,
            "page_size": (info.page_size or None) if info else None,
            "object_sizes": self.object_sizes(), "kfence": None,
            "topology": {"cpus": (info.num_cpus or None) if info else None, "nodes": None},
            "btf": False, "backend": "perfetto", "probes": self.probes(),
            "target": {"mode": "system", "command": None, "pid": None, "comm": None},
            "start_time": f.wall(self.first_ts or 0), "end_time": f.wall(self.released),
            "duration_s": duration, "stop_reason": "duration" if final else None,
            "command_exit_status": None,
            "lost": {"ftrace_overrun": sum(f.lost().values())},
            "alias_frees_skipped": 0, "alias_traffic": None, "hostname": None, "rmap_layout": None,
            "slab_aliases": {cache: [] for cache in SLAB_CACHES.values()},
            "classification": self.classifier.describe(), "raw_pointers": False, "headers": None,
            "buffer": "perfetto", "caches_known_at_start": None, "python": platform.python_version(),
            "census": self.census_entry or {"status": "not run",
                                            "reason": "a Perfetto trace has no census (give --census)"},
            "perfetto": {
                "trace": os.path.abspath(self.opts.trace), "kallsyms": os.path.abspath(self.opts.kallsyms),
                "slab_dir": os.path.abspath(self.opts.slab_dir) if self.opts.slab_dir else None,
                "packets": self.packets, "events_read": dict(self.seen), **f.metadata(),
                "loss_unknown": f.loss_unknown() + self._site_rule_broken() + self._late(), "late_events": self.late,
                "tasks_undescribed": len(r.tasks.unknown) if r else 0,
                "sizes_from": "slab_dir" if self.opts.slab_dir else "trace",
                **(r.counts if r else {}),
            },
        }

    def _late(self) -> List[str]:
        """Events replayed out of time order (they came later than the sort
        window): an allocation replayed after its free leaves its object
        live, a free before its allocation is not matched."""
        if not self.late:
            return []
        return [f"{self.late} events reached the file more than {SORT_WINDOW_NS / 1e9:g} s behind newer ones "
                "and were replayed out of time order: their objects may be paired wrongly"]

    def _site_rule_broken(self) -> List[str]:
        """The older objects' frees, when the trace's own objects show that
        a free site does not free only the object the rule says."""
        n = self.replay.counts["site_rule_broken"] if self.replay else 0
        if not n:
            return []
        return [f"{n} objects of the trace were freed at unlink_anon_vmas or __put_anon_vma as the other kind "
                "(a compiler inlined one into the other), so the frees of older objects there may be of either "
                "kind"]

    def probes(self) -> List[dict]:
        """One entry per tracepoint the import reads: whether the trace has it."""
        return [{"name": f"perfetto:{FTRACE_NAMES[kind]}", "attached": bool(self.seen[kind]) or self._configured(kind),
                 "reason": None if self.seen[kind] else "no such event in the trace"}
                for kind in WANTED]

    def close(self) -> str:
        """The final metadata; the recording's path."""
        if self.writer is None:
            self.writer = RecordingWriter(self.opts.output, self.first_ts or 0)
        self._write_marks()
        self.writer.add_user_rows(self.facts.lost_rows(self.released - (self.first_ts or 0)))
        if self.opts.samples:
            at = {**self.mark_ts, "end": self.released - (self.first_ts or 0)}
            aliases = {cache: self.geometry.get(obj, {}).get("aliases") or 0 for obj, cache in SLAB_CACHES.items()}
            self.writer.add_user_rows(samples.rows(self.opts.samples, at, aliases))
        if self.census:
            if self.facts.ftrace_clocks - {FTRACE_CLOCK_UNSPECIFIED}:
                raise CensusError("the trace's ftrace clock is not the boot clock: the census cannot be put on it")
            rows, self.census_entry = self.census.merged(self.facts.clocks, self.first_ts or 0, self.released,
                                                         self.facts.uname("release"))
            self.writer.add_user_rows(rows)
        return self.writer.close(self.metadata(final=True))


def run(opts: Options, progress: Optional[Callable[[int], None]] = None) -> Dict[str, object]:
    """Import ``opts.trace`` into ``opts.output``: {"path", "rows",
    "packets", "metadata"}. On failure nothing is left at ``opts.output``."""
    c = classifier_of(opts.kallsyms)
    geometry = slab_geometry(opts.slab_dir)
    sizes = {obj: g["object_size"] for obj, g in geometry.items() if g.get("object_size")}
    if len(sizes) < len(SLAB_CACHES):
        sizes = {**sizes_seen(opts.trace, c), **sizes}
    if Obj.AVC not in sizes or Obj.ANON_VMA not in sizes:
        raise PerfettoImportError(f"{opts.trace}: cannot tell anon_vmas from AVCs (no allocations at "
                                  "anon_vma_clone or __anon_vma_prepare/anon_vma_fork); give --slab-dir")
    try:
        census = Census(opts.census) if opts.census else None
    except CensusError as e:
        raise PerfettoImportError(str(e)) from e
    imp = _Importer(opts, c, sizes, geometry, census, progress)
    try:
        imp.read()
        imp.check()
        path = imp.close()
    except (CensusError, samples.SamplesError) as e:
        _remove(imp, opts)
        raise PerfettoImportError(str(e)) from e
    except BaseException:
        _remove(imp, opts)
        raise
    return {"path": path, "rows": imp.written, "packets": imp.packets, "metadata": imp.metadata(final=True)}


def _remove(imp: _Importer, opts: Options) -> None:
    """After a failure: nothing left at the output."""
    if imp.writer is not None:
        imp.writer.abort()
    shutil.rmtree(segments.partial_dir(opts.output), ignore_errors=True)
