"""Perfetto import benchmark (issue 17): ``anonanalyze import perfetto``
against the floor of reading the same trace in Python, and its memory as
the trace grows.

The trace is the system-wide fixture written as a device's trace
(tests/perfettogen.py), repeated ``--reps`` times 10 s apart, with 20 slab
events of other caches per event of ours (a phone's trace is mostly other
caches': FtraceConfig has no per-event filter). Results:

- ``perfetto_import_time``: wall time of the import against a bare parse of
  the same file (every packet decoded with the protos, every event's oneof
  read: what any Python reader pays), both fresh processes; target <= 3x;
- ``perfetto_import_rss_growth``: the import's peak RSS on a trace 4x as
  long against the 1x one (the replay keeps live objects and a 2 s sort
  window, not events); target <= 1.25.

    .venv/bin/python benchmarks/trace_import.py           # 10 and 40 repetitions (0.9 M, 3.5 M events)
    .venv/bin/python benchmarks/trace_import.py --quick   # 2 and 8
"""

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import perfettogen  # noqa: E402
from analyzer import result, timed_child  # noqa: E402
from anonscope.collector.perfetto import trace  # noqa: E402

PYTHON = sys.executable
TIME_TARGET, RSS_TARGET = 3.0, 1.25
NOISE = 20                        # events of other caches per event of ours
SOURCE = ROOT / "fixtures" / "system-anonshape.parquet"

BARE_PARSE = r"""
import sys
from anonscope.collector.perfetto import trace
n = 0
for p in trace.packets(sys.argv[1]):
    if p.HasField("ftrace_events"):
        for ev in p.ftrace_events.event:
            n += ev.WhichOneof("event") is not None
print(n)
"""


def noisy_trace(reps, work):
    """The fixture's trace repeated ``reps`` times with NOISE other-cache
    events per event; (trace path, kallsyms, slab dir, events)."""
    paths = perfettogen.convert(str(SOURCE), os.path.join(work, "base"))
    out = os.path.join(work, f"noisy-{reps}.pftrace")
    rnd, events = random.Random(1), 0
    with open(out, "wb") as f:
        for rep in range(reps):
            for p in trace.packets(paths["trace"]):
                if p.HasField("ftrace_events"):
                    _add_noise(p.ftrace_events, rep, rnd)
                    events += len(p.ftrace_events.event)
                elif rep:
                    continue          # the head and tail packets once
                perfettogen._write_packet(f, p)
    return out, paths["kallsyms"], paths["slab_dir"], events


def _add_noise(bundle, rep, rnd):
    for ev in list(bundle.event):
        ev.timestamp += rep * 10_000_000_000
        for k in range(NOISE):
            e = bundle.event.add(timestamp=ev.timestamp, pid=ev.pid)
            ptr = 0xFFFF999000000000 + rnd.randrange(1 << 20) * 64
            if k % 2:
                e.kmem_cache_alloc.call_site, e.kmem_cache_alloc.ptr = 0xFFFFFFFF90000000 + k, ptr
                e.kmem_cache_alloc.bytes_req = e.kmem_cache_alloc.bytes_alloc = 64
            else:
                e.kmem_cache_free.call_site, e.kmem_cache_free.ptr = 0xFFFFFFFF90000000 + k, ptr


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    args = ap.parse_args()
    small = args.reps or (2 if args.quick else 10)
    with tempfile.TemporaryDirectory() as work:
        runs = {}
        for reps in (small, 4 * small):
            path, ksyms, slab, events = noisy_trace(reps, work)
            out = os.path.join(work, f"r{reps}.parquet")
            imp = timed_child([PYTHON, "-m", "anonscope.analyzer.cli", "import", "perfetto", path,
                               "--kallsyms", ksyms, "--slab-dir", slab, "-o", out, "-q"])
            bare = timed_child([PYTHON, "-c", BARE_PARSE, path])
            runs[reps] = (imp, bare, events)
        imp, bare, events = runs[small]
        result("perfetto_import_time", imp[0], bare[0], TIME_TARGET, imp[0] / bare[0] <= TIME_TARGET,
               unit="s", events=events, events_per_s=round(events / imp[0]), peak_rss_mb=imp[1])
        big = runs[4 * small][0]
        result("perfetto_import_rss_growth", big[1], imp[1], RSS_TARGET, big[1] / imp[1] <= RSS_TARGET,
               unit="MB", events=runs[4 * small][2], baseline_events=events)


if __name__ == "__main__":
    main()
