"""One recording: check the host, load the program, stream, stop cleanly.

The loop polls the BPF ring buffer (perf buffer on kernels before 5.8),
decodes records in bulk, hands them to the writer, commits a segment every
COMMIT_S (docs/schema.md, "Segments"), samples /proc/slabinfo, records
lost-event counts and prints a progress line. Every kind of event is
recorded in one window: from the moment the program is enabled to the
moment it is disabled (``--duration`` counts from there). The run stops at
the end of ``--duration``, when the recorded command exits, or on
SIGINT/SIGTERM/SIGHUP, and then drains the buffer, commits the last
segment and joins the segments into the output file. A failure (a write
error, a bug) stops the recording with one line: the committed segments
stay readable and the recorded command is not left running unsaid.
"""

import ctypes
import datetime
import os
import resource
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import pyarrow as pa

from . import abi, census, events, headers, marks, meminfo, proctree, program, progstats, runmeta, segments, slab
from .config import RunConfig
from .consumer import BufferConsumer
from .errors import EXIT_FAILURE, CollectError
from .probes import Prepared, check_privileges, import_bcc, load, prepare
from .signals import Interrupted, Stop
from .spawn import HeldCommand, SpawnError
from .writer import RecordingWriter

DECODE_EVERY_S = 0.2
#: Bytes of records decoded together: about a row group of events.
DECODE_BYTES = 4 << 20
#: Longest the loop decodes at a time, so that --duration, commits and
#: signals keep their times under any load.
DECODE_BUDGET_S = 0.25
#: After recording is disabled, a program that saw it enabled has finished
#: (BPF tracing programs do not sleep) well within this: the window ends here.
DISABLE_GRACE_S = 0.01
TICK_S = 1.0
LOOP_S = 0.05
#: A segment is committed this often: a crash loses at most this much, plus
#: the events still on their way (FORK_WAIT_NS, the batches' FLUSH_NS).
COMMIT_S = 4.0
#: Joining this many rows takes seconds: it is said first.
SAY_JOIN_ROWS = 1_000_000


def say(line: str) -> None:
    """Write one ``anoncollect:`` line to stderr, flushed."""
    sys.stderr.write(f"anoncollect: {line}\n")
    sys.stderr.flush()


def slab_rows(ts_ns: int, aliases: Dict[str, List[str]]) -> List[dict]:
    """A /proc/slabinfo sample at ``ts_ns``; ``duration_ns``: how long the
    read took (the objects made or freed meanwhile may or may not be in it);
    with /proc/meminfo's denominators read just after it (v8)."""
    t = time.monotonic_ns()
    try:
        lines = slab.read_slabinfo()
    except OSError:
        return []
    took = time.monotonic_ns() - t
    mem = meminfo.read()
    return slab.sample_rows(ts_ns, lines, {c: len(a) for c, a in aliases.items()}, mem,
                            slab.cpu_partial_slabs, took)


class Progress:
    """A one-line status on a terminal, rewritten in place."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._last = (time.monotonic(), 0)

    def show(self, elapsed: float, n: int, lost: int) -> None:
        """Rewrite the status line (when enabled): seconds elapsed, events,
        their rate since the last call and the lost events."""
        if not self.enabled:
            return
        now = time.monotonic()
        rate = (n - self._last[1]) / max(now - self._last[0], 1e-6)
        self._last = (now, n)
        sys.stderr.write(f"\ranoncollect: {elapsed:6.1f}s  {n:,} events  {rate:,.0f}/s  lost {lost:,}   ")
        sys.stderr.flush()

    def done(self) -> None:
        """End the status line with a newline (when enabled)."""
        if self.enabled:
            sys.stderr.write("\n")


@dataclass
class Summary:
    """What a run did, for the closing lines on the terminal: the file, rows,
    duration, losses, why it stopped, allocations per object and the command's
    exit status."""
    path: str
    events: int
    duration_s: float
    lost: Dict[str, int]
    lost_by_event: Dict[str, int]
    stop_reason: str
    by_object: Dict[str, int]
    command_exit_status: Optional[int]
    headers_note: Optional[str]
    misses_not_ours: int = 0


def run(cfg: RunConfig, stop: Stop) -> Summary:
    """Record one run as ``cfg`` asks: check the host, prepare and load the
    program (a command is started and held until recording), record it
    (:class:`Recording`) and clean up on any exit; the :class:`Summary`."""
    BPF = import_bcc()
    check_privileges()
    prep = prepare(cfg)
    for note in prep.host_notes:
        say(note)
    if prep.headers:
        headers.apply(prep.headers)
    held = bpf = alone = None
    try:
        if cfg.command:
            try:
                held = HeldCommand(cfg.command)
            except OSError as e:
                raise CollectError(f"cannot start {cfg.command[0]}: {e.strerror}") from e
        try:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (ValueError, OSError):
            pass  # kernels since 5.11 charge BPF memory to the cgroup instead
        bpf, prep = load(BPF, prep)
        pids = tracked_pids(cfg)
        if wants_census(cfg) is None and prep.backend == "tracepoint":
            alone = census.Alone(prep, BPF, pids, census_scope(cfg, pids))   # compiled before recording starts
        return Recording(cfg, prep, bpf, held, stop, pids, alone).run()
    finally:
        if alone is not None:
            alone.close()
        if held is not None:
            held.cancel()   # a child never released exits without exec'ing
        if bpf is not None:
            bpf.cleanup()   # detach while the process is whole, not at interpreter exit


def tracked_pids(cfg: RunConfig) -> List[int]:
    """``-p PID``: PID and its descendants alive now."""
    return [cfg.pid] + proctree.descendants(cfg.pid) if cfg.pid else []


def census_scope(cfg: RunConfig, pids: List[int]) -> census.Scope:
    """The processes the census should visit (system-wide: all)."""
    return census.Scope(pids=set(pids) if cfg.pid else None, comm=cfg.comm)


def wants_census(cfg: RunConfig) -> Optional[str]:
    """None when the run records a census, else why not."""
    if not cfg.census:
        return "--no-census"
    if cfg.tracked and not cfg.pid:
        return ("the recorded command starts after the census, so none of its VMAs exist yet "
                "(-a or -p for a census)")
    return None


class Recording:
    """One recording with a loaded program: streams the events to the writer,
    then drains, commits and joins into the output file (:meth:`run`)."""

    def __init__(self, cfg: RunConfig, prep: Prepared, bpf, held: Optional[HeldCommand], stop: Stop,
                 pids: List[int], alone: Optional[census.Alone]):
        self.cfg, self.prep, self.bpf, self.held, self.stop = cfg, prep, bpf, held, stop
        self.pids, self.alone = pids, alone
        self.dtype = events.FPROBE_DTYPE if prep.options.func_probes else events.EVENT_DTYPE
        self.lost_reported = {"ringbuf": 0, "perfbuf": 0, "live_map_full": 0}
        self.by_object = np.zeros(8, dtype=np.int64)
        self.stop_reason: Optional[str] = None
        self.exit_status: Optional[int] = None
        self.census: Dict[str, object] = census.not_run("the run stopped before it")
        self.consumer: Optional[BufferConsumer] = None
        self.writer: Optional[RecordingWriter] = None
        self.t0 = 0
        self.end_ns: Optional[int] = None
        self.moved_old = None
        self.alias_skipped = 0
        self.alias_traffic: Dict[str, Optional[Dict[str, int]]] = {}

    # -- the kernel side ---------------------------------------------------
    def _set_enabled(self, on: int) -> None:
        self.bpf["enabled"][self.bpf["enabled"].Key(0)] = self.bpf["enabled"].Leaf(on)

    def _counters(self) -> Dict[str, int]:
        table = self.bpf["counters"]
        return {name: int(table.sum(table.Key(i)).value) for i, name in enumerate(abi.COUNTERS)}

    def lost_by_event(self) -> Dict[str, int]:
        """Events of each kind the buffer could not take (exact: counted in the kernel)."""
        counts = self._counters()
        return {k: counts[f"lost_{k}"] for k in abi.KINDS}

    def _buffer_lost(self) -> Dict[str, int]:
        """Lost events per source, as the ``lost`` rows and metadata give them."""
        counts = self._counters()
        total = sum(counts[f"lost_{k}"] for k in abi.KINDS)
        ring = self.prep.options.ringbuf
        return {"ringbuf": total if ring else 0, "perfbuf": 0 if ring else total,
                "live_map_full": counts["live_map_full"]}

    def _track_targets(self) -> None:
        if not self.cfg.tracked:
            return
        tracked = self.bpf["tracked"]
        for pid in self.pids:
            tracked[tracked.Key(pid)] = tracked.Leaf(1)
        if self.cfg.pid:
            # a child forked before its parent was in the map: seen in /proc now
            # (later ones are tracked by the fork probe)
            for pid in proctree.descendants(self.cfg.pid):
                if pid not in self.pids:
                    self.pids.append(pid)
                    tracked[tracked.Key(pid)] = tracked.Leaf(1)
        if self.held and not self.cfg.system_wide:
            tracked[tracked.Key(self.held.pid)] = tracked.Leaf(2)

    def _attach_flush_timer(self) -> None:
        """flush_batches() on every CPU, FLUSH_HZ times a second."""
        from bcc import PerfSWConfig, PerfType
        try:
            self.bpf.attach_perf_event(ev_type=PerfType.SOFTWARE, ev_config=PerfSWConfig.CPU_CLOCK,
                                       fn_name="flush_batches", sample_freq=abi.FLUSH_HZ)
            self.flush_timer = True
        except Exception:  # noqa: BLE001 - bcc raises plain Exception
            self.flush_timer = False  # batches then flush when full, old, or at the end

    def _decode(self, budget_s: Optional[float] = None) -> None:
        """Decode what the consumer handed over, DECODE_BYTES at a time (so
        that what decoding holds at once stays small); with ``budget_s``,
        stop once that long has passed (the loop must keep its times: the
        rest waits, and past consumer.MAX_QUEUED the kernel counts losses)."""
        deadline = None if budget_s is None else time.monotonic() + budget_s
        while deadline is None or time.monotonic() < deadline:
            items = self.consumer.take(DECODE_BYTES)
            if not items:
                return
            ev = np.frombuffer(items[0] if len(items) == 1 else b"".join(items), dtype=self.dtype)
            objs = ev["object"][(ev["kind"] == abi.Ev.ALLOC)]
            self.by_object += np.bincount(objs, minlength=8)[:8]
            self.writer.add_events(ev, now_ns=time.monotonic_ns())
            # Arrow's allocator (mimalloc) keeps what was freed: under a heavy
            # load the collector's RSS doubled to 1.3 GB without this.
            pa.default_memory_pool().release_unused()

    def _drain(self) -> None:
        """After recording is disabled: everything still in the kernel."""
        if self.flush_timer:
            time.sleep(2.5 / abi.FLUSH_HZ)  # two timer periods flush every CPU's batch
        self.consumer.stop()
        self.consumer.drain()
        # What no timer flushed (no timer, or a CPU that stayed busy):
        # nothing writes the batches any more, so they can be read as they are.
        size = self.dtype.itemsize
        for b in self.bpf["batches"].getvalue(0):
            if b.head.n:
                self.consumer.add(ctypes.string_at(ctypes.addressof(b.ev), b.head.n * size))

    def _census(self) -> Dict[str, object]:
        """The start-of-run census where this run records one, with when its
        iterator ran (``started_ns``/``ended_ns`` on the run's clock)."""
        why = wants_census(self.cfg)
        if why:
            return census.not_run(why)
        if self.alone is not None:
            entry, rows = self.alone.run()
            self.writer.add_census(rows)
        else:
            why = program.census_possible(self.prep.facts, self.prep.options)
            entry = census.not_run(why) if why else census.run(self.bpf, census_scope(self.cfg, self.pids))
        if entry["status"] == "done":     # the iterator's window, on the run's clock
            entry.update(started_ns=entry["started_ns"] - self.t0, ended_ns=entry["ended_ns"] - self.t0)
        return entry

    def _lost_rows(self, ts_ns: int) -> List[dict]:
        counts = self._buffer_lost()
        rows = []
        for src in self.lost_reported:
            delta = counts[src] - self.lost_reported[src]
            if delta > 0:
                rows.append({"ts_ns": ts_ns, "event": "lost", "cpu": -1, "lost_source": src, "count": delta})
                self.lost_reported[src] = counts[src]
        return rows

    # -- the run -----------------------------------------------------------
    def run(self) -> Summary:
        """Record until the run stops (duration, the command's exit, a signal,
        ``--max-mb``), after moving an earlier output aside (replacing it
        with ``--force``); the :class:`Summary`. A failure stops everything
        and raises what :meth:`_failed` returns."""
        self._attach_flush_timer()
        self.consumer = BufferConsumer(self.bpf, self.prep.options.ringbuf, self.prep.options.ringbuf_pages,
                                       self.dtype.itemsize)
        self._track_targets()
        self.caches_known = learn_caches(self.bpf) if self.prep.facts.kmem_args["KF_CACHE"] >= 0 else None
        self.moved_old = make_room(self.cfg.output, self.cfg.force)
        if self.moved_old:
            say(self.moved_old)
        self.start_wall = datetime.datetime.now(datetime.timezone.utc)
        try:
            path = self._record()
        except BaseException as e:
            raise self._failed(e) from e
        finally:
            self.stop.marks.t0_ns = None
            marks.withdraw()
            if self.consumer.is_alive():
                self.consumer.stop()   # before bcc frees the buffer it reads
        give_to_invoking_user(path)
        names = ("anon_vma", "anon_vma_chain", "vm_area_struct")
        return Summary(path, self.writer.rows, self.end_ns / 1e9, self.lost, self.lost_by_event(),
                       self.stop_reason or "duration",
                       {n: int(self.by_object[i + 1]) for i, n in enumerate(names)},
                       self.exit_status, self.prep.headers.how if self.prep.headers else None,
                       self.misses_not_ours)

    def _record(self) -> str:
        self.t0 = time.monotonic_ns()
        self._set_enabled(1)
        self.stop.recording = True
        self.writer = RecordingWriter(self.cfg.output, self.t0, raw_pointers=self.cfg.raw_pointers,
                                      dtype=self.dtype)
        # the first slab sample once recording: every change after it is in the trace
        self.writer.add_user_rows(slab_rows(time.monotonic_ns() - self.t0, self.prep.aliases))
        self.stop.marks.t0_ns = self.t0
        try:
            marks.publish(self.cfg.output)
        except OSError as e:
            say(f"`anoncollect mark` cannot find this run ({e.filename}: {e.strerror}); kill -USR1 still marks")
        self.consumer.start()
        self.census = self._census()
        if not self.cfg.quiet:
            say(census.describe(self.census))
        if self.held:
            try:
                self.held.release()
            except SpawnError as e:
                raise CollectError(str(e)) from e
        self._loop()
        self._take_marks()
        self.stop.marks.t0_ns = None
        # the last slab sample while recording: every change after it is in the trace
        end_slab = slab_rows(time.monotonic_ns() - self.t0, self.prep.aliases)
        self._set_enabled(0)
        time.sleep(DISABLE_GRACE_S)
        self.end_ns = time.monotonic_ns() - self.t0
        self._drain()
        self._decode()
        self.writer.add_user_rows(end_slab + self._lost_rows(self.end_ns))
        self.lost = self._lost_totals()
        if self.lost.get("prog_misses"):
            self.writer.add_user_rows([{"ts_ns": self.end_ns, "event": "lost", "cpu": -1,
                                        "lost_source": "prog_misses", "count": self.lost["prog_misses"]}])
        rows = self.writer.rows + self.writer.buffered
        if not self.cfg.quiet and self.writer.segments.count and rows >= SAY_JOIN_ROWS:
            say(f"joining {self.writer.segments.count + 1} segments ({rows:,} rows) into {self.cfg.output}")
        try:
            return self.writer.close(self._metadata(self.end_ns, final=True))
        except segments.JoinError as e:
            give_to_invoking_user(self.writer.partial)
            raise CollectError(f"{e}; the complete recording is in {self.writer.partial} "
                               f"(anonanalyze report {self.cfg.output} reads it)") from None

    def _loop(self) -> None:
        cfg = self.cfg
        progress = Progress(cfg.progress)
        start = time.monotonic()
        next_decode = start + DECODE_EVERY_S
        next_tick = start + TICK_S
        next_slab = start + cfg.slab_interval
        next_commit = start + COMMIT_S
        deadline = None if cfg.duration is None else self.t0 / 1e9 + cfg.duration   # monotonic s
        while self.stop_reason is None:
            time.sleep(LOOP_S)
            now = time.monotonic()
            if self.stop.reason:
                self.stop_reason = self.stop.reason
            if deadline is not None and now >= deadline:
                self.stop_reason = self.stop_reason or "duration"
                break      # the window ends now: what is left is drained after disable
            left = float("inf") if deadline is None else deadline - now
            if now >= next_decode:
                self._decode(budget_s=min(DECODE_BUDGET_S, left))
                next_decode = now + DECODE_EVERY_S
            if now >= next_tick:
                self.writer.add_user_rows(self._lost_rows(time.monotonic_ns() - self.t0))
                progress.show(now - start, self.writer.rows + self.writer.buffered,
                              sum(self.lost_reported.values()))
                next_tick = now + TICK_S
            if now >= next_slab:
                self.writer.add_user_rows(slab_rows(time.monotonic_ns() - self.t0, self.prep.aliases))
                next_slab = now + cfg.slab_interval
            if self._take_marks():
                next_commit = now     # a mark reaches the disk at once
            if now >= next_commit and left > COMMIT_S / 4:   # not just before the end: the close writes
                self.lost = self._lost_totals()
                self.writer.commit(self._metadata(time.monotonic_ns() - self.t0, final=False))
                next_commit = now + COMMIT_S
            if self.held and self.exit_status is None:
                status = self.held.poll()
                if status is not None:
                    self.exit_status = status
                    if self.stop_reason is None:
                        self.stop_reason = self.stop.reason or "command-exited"
            if cfg.max_mb is not None and self.writer.segments.bytes >= cfg.max_mb * 2 ** 20 \
                    and self.stop_reason is None:
                self.stop_reason = "size-limit"
        progress.done()
        if self.held and self.exit_status is None:
            self.exit_status = self.held.terminate()

    def _take_marks(self) -> int:
        """Write the mark rows asked for since the last call; how many."""
        rows = self.stop.marks.rows()
        if rows:
            self.writer.add_user_rows(rows)
            if not self.cfg.quiet:
                for r in rows:
                    say(f"mark {r['mark_label']} at {r['ts_ns'] / 1e9:.3f} s")
        return len(rows)

    def _failed(self, exc: BaseException) -> BaseException:
        """Stop everything after ``exc``; the exception to raise instead: one
        line with the cause, what was kept, and what became of the command."""
        stopped_ns = time.monotonic_ns() - self.t0 if self.t0 else 0
        try:
            self._set_enabled(0)
        except Exception:  # noqa: BLE001 - the program may be the problem
            pass
        if self.consumer.is_alive():
            self.consumer.stop()
        kept = self.writer.abort() if self.writer else None
        if kept:
            give_to_invoking_user(kept)
        command = self.held.stop() if self.held else None
        if isinstance(exc, Interrupted) and not kept:
            return exc
        cause = describe_failure(exc, self.writer)
        parts = [cause]
        if self.t0:
            parts.append(f"recording stopped at {stopped_ns / 1e9:.1f} s")
        if kept:
            parts.append(f"{self.writer.segments.count} committed segment(s) ({self.writer.rows:,} rows) "
                         f"kept in {kept} (anonanalyze report {self.cfg.output} reads them)")
        elif self.writer:
            parts.append("nothing had been committed")
        if command:
            parts.append(command)
        code = exc.code if isinstance(exc, CollectError) else EXIT_FAILURE
        return CollectError("; ".join(parts), code)

    # -- what the file says about the run -----------------------------------
    def _lost_totals(self) -> Dict[str, int]:
        lost = self._buffer_lost()
        # a skipped flush_batches() loses nothing: the next flush takes the batch
        fds = {name: fn.fd for name, fn in self.bpf.funcs.items() if name != "flush_batches"}
        misses = progstats.recursion_misses(fds, self.prep.btf)
        self.misses_by_program = {(k.decode() if isinstance(k, bytes) else k): v
                                  for k, v in (misses or {}).items() if v}
        not_ours = runmeta.interrupt_only_programs(self.prep.classifier, self.prep.facts.preemptible)
        self.misses_not_ours = sum(v for k, v in self.misses_by_program.items() if k in not_ours)
        lost["prog_misses"] = (sum(self.misses_by_program.values()) - self.misses_not_ours
                               if misses is not None else None)
        counters = self._counters()
        self.alias_skipped = counters["alias_frees_skipped"]
        self.alias_traffic = alias_traffic(counters, self.prep)
        return lost

    def _metadata(self, end_ns: int, final: bool) -> Dict[str, object]:
        return runmeta.metadata(self, end_ns, final)


def alias_traffic(counters: Dict[str, int], prep: Prepared) -> Dict[str, Optional[Dict[str, int]]]:
    """Per object whose cache is merged, the allocations and frees of that
    cache the program saw that are not ours (its aliases' own traffic,
    every task's, while recording; schema v8); None for an object whose
    cache is not merged, or whose allocations the kernel's tracepoint gives
    no cache to count by."""
    by_cache = prep.facts.kmem_args["KA_CACHE"] >= 0 and prep.facts.kmem_args["KF_CACHE"] >= 0
    return {o: {"allocs": counters[f"alias_allocs_{o}"], "frees": counters[f"alias_frees_{o}"]}
            if prep.aliases.get(o) and by_cache else None for o in abi.ALIAS_OBJECTS}


def describe_failure(exc: BaseException, writer: Optional[RecordingWriter]) -> str:
    """One line: what went wrong, naming the file for write errors."""
    if isinstance(exc, CollectError):
        return str(exc)
    if isinstance(exc, Interrupted):
        return f"interrupted by {exc.name}"
    if isinstance(exc, (OSError, pa.ArrowException)):
        target = writer.path if writer else "the output"
        why = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[0] or type(exc).__name__
        return f"cannot write {target}: {why}"
    text = str(exc).strip().splitlines()
    return f"internal error: {type(exc).__name__}: {text[0] if text else ''} (ANONSCOPE_DEBUG=1 shows the traceback)"


def make_room(path: str, force: bool) -> Optional[str]:
    """An earlier recording at ``path`` becomes ``path.old`` (perf's
    convention) unless ``force``; what was done, for the user."""
    partial = segments.partial_dir(path)
    if force and os.path.isdir(partial):
        shutil.rmtree(partial)
    if not os.path.exists(path):
        return None
    if force:
        os.unlink(path)
        return f"replaced {path} (--force)"
    os.replace(path, path + ".old")
    return f"moved the existing {path} to {path}.old"


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


def give_to_invoking_user(path: str) -> None:
    """Under sudo, the output (a file, or a directory of segments) belongs
    to the user who ran sudo."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid:
        return
    paths = [path]
    if os.path.isdir(path):
        paths += [os.path.join(path, n) for n in os.listdir(path)]
    for p in paths:
        try:
            os.chown(p, int(uid), int(gid))
        except (OSError, ValueError):
            pass
