"""One recording: check the host, load the program, stream, stop cleanly.

The loop polls the BPF ring buffer (perf buffer on kernels before 5.8),
decodes records in bulk, hands them to the writer, samples /proc/slabinfo,
records lost-event counts and prints a progress line. It stops at the end
of ``--duration``, when the recorded command exits, or on SIGINT/SIGTERM,
and in every case drains the buffer and writes a complete file.
"""

import ctypes
import datetime
import os
import platform
import resource
import signal
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from . import census, events, headers, program, progstats, slab, sites
from .config import RunConfig
from .consumer import BufferConsumer
from .errors import CollectError
from .probes import Prepared, check_privileges, import_bcc, load, prepare
from .spawn import HeldCommand, SpawnError
from .writer import RecordingWriter

DECODE_EVERY_S = 0.2
TICK_S = 1.0
LOOP_S = 0.05


def slab_rows(ts_ns: int, aliases: Dict[str, List[str]]) -> List[dict]:
    try:
        lines = slab.read_slabinfo()
    except OSError:
        return []
    return [{"ts_ns": ts_ns, "event": "slab", "cpu": -1, "slab_cache": c, "slab_active": l.active,
             "slab_total": l.total, "slab_objsize": l.objsize, "slab_aliases": len(aliases.get(c, []))}
            for c, l in sorted(lines.items())]


class Progress:
    """A one-line status on a terminal, rewritten in place."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._last = (time.monotonic(), 0)

    def show(self, elapsed: float, n: int, lost: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        rate = (n - self._last[1]) / max(now - self._last[0], 1e-6)
        self._last = (now, n)
        sys.stderr.write(f"\ranoncollect: {elapsed:6.1f}s  {n:,} events  {rate:,.0f}/s  lost {lost:,}   ")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


@dataclass
class Summary:
    path: str
    events: int
    duration_s: float
    lost: Dict[str, int]
    stop_reason: str
    by_object: Dict[str, int]
    command_exit_status: Optional[int]
    headers_note: Optional[str]
    misses_not_ours: int = 0


def check_output(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CollectError(f"cannot write {path}: no directory {directory}")
    if not os.access(directory, os.W_OK):
        raise CollectError(f"cannot write {path}: {directory} is not writable")
    if os.path.isdir(path):
        raise CollectError(f"cannot write {path}: it is a directory")


def run(cfg: RunConfig) -> Summary:
    BPF = import_bcc()
    check_privileges()
    check_output(cfg.output)
    prep = prepare(cfg)
    if prep.headers:
        headers.apply(prep.headers)
    held = None
    if cfg.command:
        try:
            held = HeldCommand(cfg.command)
        except OSError as e:
            raise CollectError(f"cannot start {cfg.command[0]}: {e.strerror}")
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass  # kernels since 5.11 charge BPF memory to the cgroup instead
    bpf, prep = load(BPF, prep, held)
    return Recording(cfg, prep, bpf, held).run()


class Recording:
    def __init__(self, cfg: RunConfig, prep: Prepared, bpf, held: Optional[HeldCommand]):
        self.cfg, self.prep, self.bpf, self.held = cfg, prep, bpf, held
        self.dtype = events.FPROBE_DTYPE if prep.options.func_probes else events.EVENT_DTYPE
        self.lost_reported = {"ringbuf": 0, "perfbuf": 0, "live_map_full": 0}
        self.by_object = np.zeros(8, dtype=np.int64)
        self.stop_reason: Optional[str] = None
        self.exit_status: Optional[int] = None
        self.census: Dict[str, object] = census.not_run("the run stopped before it")

    def _on_signal(self, signum, _frame):
        self.stop_reason = signal.Signals(signum).name

    def _counters(self) -> Dict[str, int]:
        table = self.bpf["counters"]
        vals = {name: int(table.sum(table.Key(i)).value) for i, name in enumerate(events.COUNTERS)}
        vals["perfbuf"] = self.consumer.perf_lost
        if not self.prep.options.ringbuf:
            vals["perfbuf"] += vals.pop("ringbuf")
            vals["ringbuf"] = 0
        return vals

    def _decode(self) -> None:
        items = self.consumer.take()
        if not items:
            return
        ev = np.frombuffer(items[0] if len(items) == 1 else b"".join(items), dtype=self.dtype)
        objs = ev["object"][(ev["kind"] == events.EV_ALLOC)]
        self.by_object += np.bincount(objs, minlength=8)[:8]
        self.writer.add_events(ev)

    def _census(self) -> Dict[str, object]:
        """The start-of-run census where this program carries it."""
        if not self.cfg.census:
            return census.not_run("--no-census")
        if self.cfg.tracked and not self.cfg.pid:
            return census.not_run("the recorded command starts after the census, so none of its VMAs "
                                  "exist yet (-a or -p for a census)")
        if self.prep.backend == "tracepoint":
            from bcc import BPF
            entry, rows = census.run_alone(self.prep, BPF, [self.cfg.pid] if self.cfg.pid else [])
            self.writer.add_census(rows)
            return entry
        why = program.census_possible(self.prep.facts, self.prep.options)
        if why:
            return census.not_run(why)
        return census.run(self.bpf)

    def _lost_rows(self, ts_ns: int) -> List[dict]:
        counts = self._counters()
        rows = []
        for src in self.lost_reported:
            delta = counts[src] - self.lost_reported[src]
            if delta > 0:
                rows.append({"ts_ns": ts_ns, "event": "lost", "cpu": -1, "lost_source": src, "count": delta})
                self.lost_reported[src] = counts[src]
        return rows

    def _attach_flush_timer(self) -> None:
        """flush_batches() on every CPU, FLUSH_HZ times a second."""
        from bcc import PerfSWConfig, PerfType
        try:
            self.bpf.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
                                       fn_name="flush_batches", sample_freq=events.FLUSH_HZ)
            self.flush_timer = True
        except Exception:  # noqa: BLE001 - bcc raises plain Exception
            self.flush_timer = False  # batches then flush when full, old, or at the end

    def _drain(self) -> None:
        """After recording is disabled: everything still in the kernel."""
        if self.flush_timer:
            time.sleep(2.5 / events.FLUSH_HZ)  # two timer periods flush every CPU's batch
        self.consumer.stop()
        self.consumer.drain()
        # What no timer flushed (no timer, or a CPU that stayed busy):
        # nothing writes the batches any more, so they can be read as they are.
        size = self.dtype.itemsize
        for b in self.bpf["batches"].getvalue(0):
            if b.head.n:
                self.consumer.add(ctypes.string_at(ctypes.addressof(b.ev), b.head.n * size))

    def run(self) -> Summary:
        cfg, bpf = self.cfg, self.bpf
        self._attach_flush_timer()
        self.consumer = BufferConsumer(bpf, self.prep.options.ringbuf, self.prep.options.ringbuf_pages,
                                       self.dtype.itemsize)
        if cfg.tracked:
            tracked = bpf["tracked"]
            if cfg.pid:
                tracked[tracked.Key(cfg.pid)] = tracked.Leaf(1)
            if self.held and not cfg.system_wide:
                tracked[tracked.Key(self.held.pid)] = tracked.Leaf(2)
        self.caches_known = learn_caches(bpf) if self.prep.facts.kmem_args["KF_CACHE"] >= 0 else None
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t0 = time.monotonic_ns()
        start_wall = datetime.datetime.now(datetime.timezone.utc)
        start_slab = slab_rows(0, self.prep.aliases)
        bpf["enabled"][bpf["enabled"].Key(0)] = bpf["enabled"].Leaf(1)
        # The .partial file appears once the kernel side records.
        self.writer = RecordingWriter(cfg.output, t0, raw_pointers=cfg.raw_pointers, dtype=self.dtype)
        try:
            self.writer.add_user_rows(start_slab)
            self.consumer.start()
            self.census = self._census()
            if not cfg.quiet:
                sys.stderr.write("anoncollect: " + census.describe(self.census) + "\n")
                sys.stderr.flush()
            if self.held:
                try:
                    self.held.release()
                except SpawnError as e:
                    raise CollectError(str(e))
            self._loop(t0)
            bpf["enabled"][bpf["enabled"].Key(0)] = bpf["enabled"].Leaf(0)
            self._drain()
            self._decode()
            end_ns = time.monotonic_ns() - t0
            self.writer.add_user_rows(slab_rows(end_ns, self.prep.aliases) + self._lost_rows(end_ns))
            lost = self._lost_totals()
            if lost.get("prog_misses"):
                self.writer.add_user_rows([{"ts_ns": end_ns, "event": "lost", "cpu": -1,
                                            "lost_source": "prog_misses", "count": lost["prog_misses"]}])
            meta = self._metadata(start_wall, end_ns, lost)
            path = self.writer.close(meta)
        except BaseException:
            partial = self.writer.abort()
            if partial:
                sys.stderr.write(f"anoncollect: rows so far are in {partial} (no run metadata)\n")
            raise
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        give_to_invoking_user(path)
        names = ("anon_vma", "anon_vma_chain", "vm_area_struct")
        return Summary(path, self.writer.rows, end_ns / 1e9, lost, self.stop_reason or "duration",
                       {n: int(self.by_object[i + 1]) for i, n in enumerate(names)},
                       self.exit_status, self.prep.headers.how if self.prep.headers else None,
                       self.misses_not_ours)

    def _loop(self, t0: int) -> None:
        cfg = self.cfg
        progress = Progress(cfg.progress)
        start = time.monotonic()
        next_decode = start + DECODE_EVERY_S
        next_tick = start + TICK_S
        next_slab = start + cfg.slab_interval
        while self.stop_reason is None:
            time.sleep(LOOP_S)
            now = time.monotonic()
            if now >= next_decode:
                self._decode()
                next_decode = now + DECODE_EVERY_S
            if now >= next_tick:
                ts = time.monotonic_ns() - t0
                self.writer.add_user_rows(self._lost_rows(ts))
                progress.show(now - start, self.writer.rows + self.writer.buffered,
                              sum(self.lost_reported.values()))
                next_tick = now + TICK_S
            if now >= next_slab:
                self.writer.add_user_rows(slab_rows(time.monotonic_ns() - t0, self.prep.aliases))
                next_slab = now + cfg.slab_interval
            if self.held and self.exit_status is None:
                status = self.held.poll()
                if status is not None:
                    self.exit_status = status
                    self.stop_reason = "command-exited"
            if cfg.duration is not None and now - start >= cfg.duration and self.stop_reason is None:
                self.stop_reason = "duration"
        progress.done()
        if self.held and self.exit_status is None:
            self.exit_status = self.held.terminate()

    def _lost_totals(self) -> Dict[str, int]:
        counts = self._counters()
        lost = {"ringbuf": counts["ringbuf"], "perfbuf": counts["perfbuf"],
                "live_map_full": counts["live_map_full"]}
        # a skipped flush_batches() loses nothing: the next flush takes the batch
        fds = {name: fn.fd for name, fn in self.bpf.funcs.items() if name != "flush_batches"}
        misses = progstats.recursion_misses(fds, self.prep.btf)
        self.misses_by_program = {(k.decode() if isinstance(k, bytes) else k): v
                                  for k, v in (misses or {}).items() if v}
        not_ours = interrupt_only_programs(self.prep.classifier)
        self.misses_not_ours = sum(v for k, v in self.misses_by_program.items() if k in not_ours)
        lost["prog_misses"] = (sum(self.misses_by_program.values()) - self.misses_not_ours
                               if misses is not None else None)
        self.alias_skipped = counts["alias_frees_skipped"]
        return lost

    def _metadata(self, start_wall, end_ns: int, lost: Dict[str, int]) -> Dict[str, object]:
        prep = self.prep
        sizes = slab.read_slabinfo()
        return {
            "tool_version": tool_version(),
            "command_line": self.cfg.argv,
            "kernel_release": prep.facts.release,
            "arch": prep.facts.arch,
            "page_size": os.sysconf("SC_PAGE_SIZE"),
            "object_sizes": {o: {"btf_size": prep.facts.sizes[o],
                                 "slab_size": sizes[o].objsize if o in sizes else None}
                             for o in prep.facts.sizes},
            "btf": prep.btf is not None,
            "backend": prep.backend,
            "probes": prep.probes,
            "target": self.cfg.target(),
            "start_time": start_wall.isoformat(),
            "end_time": (start_wall + datetime.timedelta(microseconds=end_ns / 1000)).isoformat(),
            "duration_s": end_ns / 1e9,
            "stop_reason": self.stop_reason or "duration",
            "command_exit_status": self.exit_status,
            "lost": lost,
            "alias_frees_skipped": self.alias_skipped,
            "prog_misses_by_program": self.misses_by_program,
            "prog_misses_not_ours": self.misses_not_ours,
            "slab_aliases": prep.aliases,
            "classification": prep.classifier.describe(),
            "raw_pointers": self.cfg.raw_pointers,
            "headers": prep.headers.how if prep.headers else None,
            "buffer": "ringbuf" if prep.options.ringbuf else "perfbuf",
            "caches_known_at_start": self.caches_known,
            "python": platform.python_version(),
            "census": self.census,
        }


def interrupt_only_programs(classifier: sites.Classifier) -> set:
    """Programs whose skipped runs cannot have been our objects' events.

    A raw tracepoint program is skipped only when it interrupts itself on
    one CPU (__bpf_trace_run's per-program guard; tracepoints run with
    preemption disabled), so every skipped run was an allocation or free in
    interrupt context. anon_vma, AVC and VMA allocations never happen there
    (anon_vma_alloc, anon_vma_chain_alloc, vm_area_alloc/_dup use
    GFP_KERNEL); their frees neither, except VMAs on kernels that free them
    from an RCU callback (vm_area_free_rcu_cb). Classic tracepoint and kprobe
    programs share a global guard and are always counted as possible losses.
    """
    progs = {"raw_tracepoint__kmem_cache_alloc"}
    if sites.VMA_RCU_FREE in classifier.missing:
        progs.add("raw_tracepoint__kmem_cache_free")
    return progs


def learn_caches(bpf) -> Dict[str, bool]:
    """Make the kernel allocate each of our objects once, before recording.

    Frees are told apart by their struct kmem_cache, which the program
    learns from allocations at our call sites (known_caches). One fork of
    this process allocates a VMA (vm_area_dup), an anon_vma and an AVC
    (anon_vma_fork), so that frees of pre-run objects are recognised from
    the first moment. Returns which caches are known.
    """
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    known = bpf["known_caches"][0].ptr
    return {name: bool(known[i + 1]) for i, name in enumerate(("anon_vma", "anon_vma_chain", "vm_area_struct"))}


def tool_version() -> str:
    try:
        from importlib.metadata import version
        return version("anonscope")
    except Exception:  # noqa: BLE001 - running from a tree that is not installed
        return "unknown"


def give_to_invoking_user(path: str) -> None:
    """Under sudo, the output belongs to the user who ran sudo."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() == 0 and uid and gid:
        try:
            os.chown(path, int(uid), int(gid))
        except (OSError, ValueError):
            pass
