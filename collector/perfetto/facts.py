"""What a Perfetto trace says about itself: the machine (SystemInfo), what
was asked for (TraceConfig), what was lost (FtraceStats, the bundles'
``lost_events`` flags, TraceStats) and the wall clock (ClockSnapshot)."""

import datetime
from collections import Counter
from typing import Dict, List, Optional

#: BuiltinClock ids (protos/perfetto/common/builtin_clock.proto)
CLOCK_REALTIME, CLOCK_BOOTTIME = 1, 6
#: FtraceClock (protos/perfetto/trace/ftrace/ftrace_event_bundle.proto)
FTRACE_CLOCK_UNSPECIFIED, FTRACE_CLOCK_UNKNOWN, FTRACE_CLOCK_LOCAL = 0, 1, 3
#: FtraceStats.Phase
START_OF_TRACE, END_OF_TRACE = 1, 2
#: FtraceCpuStats counters of events the kernel's ring buffer lost
LOSS_COUNTERS = ("overrun", "commit_overrun", "dropped_events")


class TraceFacts:
    """The trace's packets that are not events, as they are read."""

    def __init__(self):
        self.system_info = None
        self.config_events: Optional[List[str]] = None
        self.ftrace_stats: Dict[int, Dict[int, object]] = {}   # phase -> {cpu: FtraceCpuStats}
        self.bundles_lost = Counter()                          # cpu -> bundles flagged lost_events
        self.trace_stats = None
        self.clocks: Dict[int, int] = {}
        self.sources: List[str] = []                           # data source names of the config
        self.ftrace_clocks = set()                             # FtraceEventBundle.ftrace_clock values

    def take(self, p) -> bool:
        """Keep what packet ``p`` says, if it is one of these; whether it was."""
        if p.HasField("system_info"):
            self.system_info = p.system_info
        elif p.HasField("trace_config"):
            self.config_events = [e for ds in p.trace_config.data_sources
                                  for e in ds.config.ftrace_config.ftrace_events]
            self.sources = [ds.config.name for ds in p.trace_config.data_sources]
        elif p.HasField("ftrace_stats"):
            self.ftrace_stats[p.ftrace_stats.phase] = {s.cpu: s for s in p.ftrace_stats.cpu_stats}
        elif p.HasField("trace_stats"):
            self.trace_stats = p.trace_stats
        elif p.HasField("clock_snapshot"):
            if not self.clocks:
                self.clocks = {c.clock_id: c.timestamp for c in p.clock_snapshot.clocks}
        else:
            return False
        return True

    def bundle(self, b) -> None:
        """An FtraceEventBundle's loss flag and clock."""
        if b.lost_events:
            self.bundles_lost[b.cpu] += 1
        self.ftrace_clocks.add(b.ftrace_clock)

    def clock_problem(self) -> Optional[str]:
        """Why the events cannot be ordered across CPUs, or None. Unset is
        the boot clock (traced's default); ``global`` and ``mono_raw`` are
        one clock for every CPU; ``local`` is each CPU's own, and unknown
        is unknown."""
        bad = self.ftrace_clocks & {FTRACE_CLOCK_UNKNOWN, FTRACE_CLOCK_LOCAL}
        if bad:
            return ("the ftrace clock is " + ("each CPU's local clock" if FTRACE_CLOCK_LOCAL in bad else "unknown")
                    + ": events of different CPUs cannot be put in time order")
        return None

    def configured(self, event: str) -> bool:
        """Whether the trace config asked for ``event`` (group/name)."""
        return self.config_events is not None and event in self.config_events

    def uname(self, field: str) -> Optional[str]:
        """A field of the device's utsname (release, machine), None if absent."""
        return getattr(self.system_info.utsname, field) or None if self.system_info else None

    def lost(self) -> Dict[int, int]:
        """{cpu: events the kernel's ring buffer lost}: FtraceStats' loss
        counters at the end less at the start."""
        start = self.ftrace_stats.get(START_OF_TRACE, {})
        out = {}
        for cpu, e in self.ftrace_stats.get(END_OF_TRACE, {}).items():
            s = start.get(cpu)
            out[cpu] = sum(getattr(e, k) - (getattr(s, k) if s else 0) for k in LOSS_COUNTERS)
        return out

    def lost_rows(self, ts_ns: int) -> List[dict]:
        """One ``lost`` row per CPU that lost events, at ``ts_ns``."""
        return [{"ts_ns": ts_ns, "event": "lost", "cpu": cpu, "lost_source": "ftrace_overrun", "count": n}
                for cpu, n in sorted(self.lost().items()) if n]

    def buffer_loss(self) -> Dict[str, int]:
        """What traced's own buffers lost (TraceStats)."""
        st = self.trace_stats
        if st is None:
            return {}
        out = Counter(chunks_discarded=st.chunks_discarded, patches_discarded=st.patches_discarded)
        for b in st.buffer_stats:
            out["chunks_overwritten"] += b.chunks_overwritten
            out["chunks_discarded"] += b.chunks_discarded
            out["abi_violations"] += b.abi_violations
            out["trace_writer_packet_loss"] += b.trace_writer_packet_loss
        return dict(out)

    def loss_unknown(self) -> List[str]:
        """Losses the trace shows but does not count: bundles flagged
        ``lost_events`` on CPUs the FtraceStats at both ends do not cover,
        and data traced's own buffers dropped (whose events nobody counted)."""
        out = []
        counted = self.lost() if START_OF_TRACE in self.ftrace_stats else {}
        flagged = {c: n for c, n in sorted(self.bundles_lost.items()) if c not in counted}
        if flagged:
            out.append("ftrace bundles flagged lost_events (" + ", ".join(f"CPU {c}: {n}" for c, n in flagged.items())
                       + ") without FtraceStats at the trace's start and end to count them")
        buf = {k: v for k, v in self.buffer_loss().items() if v}
        if buf:
            out.append("traced's buffers dropped data (" + ", ".join(f"{k} {v}" for k, v in sorted(buf.items()))
                       + "): the events in it are not counted anywhere")
        return out

    def wall(self, ts: int) -> Optional[str]:
        """ISO 8601 wall-clock time of boot-clock ``ts`` (None without a
        clock snapshot of both clocks)."""
        if CLOCK_REALTIME not in self.clocks or CLOCK_BOOTTIME not in self.clocks:
            return None
        ns = self.clocks[CLOCK_REALTIME] + ts - self.clocks[CLOCK_BOOTTIME]
        return datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc).isoformat()

    def metadata(self) -> Dict[str, object]:
        """The loss entries of the recording's ``perfetto`` metadata."""
        return {"lost_by_cpu": {str(c): n for c, n in sorted(self.lost().items())},
                "ftrace_stats": [name for phase, name in ((START_OF_TRACE, "start"), (END_OF_TRACE, "end"))
                                 if phase in self.ftrace_stats],
                "bundles_flagged_lost": {str(c): n for c, n in sorted(self.bundles_lost.items())},
                "buffer_loss": self.buffer_loss(), "loss_unknown": self.loss_unknown()}
