"""Analyzer benchmarks. P3 (issue 5): `anonanalyze report` on a
10-million-event recording within 3x the time of a bare pyarrow scan plus
group-by of the same file, peak RSS <= 1.5 GB. S1-S3 (issue 14): the same
report within 1.5x of the scan with start-up excluded on both sides; a
60-million-event report within 1 GB of peak RSS; a 100-million-event point
(events/s, peak RSS; no target).

The recording is synthetic (scripts/make-synthetic, the collector's schema),
made once and cached under build/. Both sides run as fresh Python processes,
so both pay interpreter start-up and imports:

- baseline: ``pyarrow.parquet.read_table(FILE, columns=ANALYZER_COLUMNS)``
  (every column anonanalyze reads) followed by
  ``table.group_by(["event", "object", "path"]).aggregate([([], "count_all")])``;
- analyzer: ``anonanalyze report FILE --format json -o OUT`` run in a
  fresh Python process that imports the analyzer and its libraries first
  (``ANALYZER_CODE``): the wall time counts them (P3), the time it prints
  does not (S1, against the baseline's scan plus group-by).

They alternate, ``--reps`` times each; the time result is the ratio of the
medians of wall time, the memory result the largest peak RSS of the analyzer
(``ru_maxrss`` of that child from wait4). S2 and S3 run the analyzer once
each on their recordings (made and cached like the 10 M one; not with
``--quick``). One JSON line per result.

    .venv/bin/python benchmarks/analyzer.py            # 10,000,000 events
    .venv/bin/python benchmarks/analyzer.py --quick    # 1,000,000 events, 1 rep
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"
MAKE_SYNTHETIC = ROOT / "scripts" / "make-synthetic"
PYTHON = sys.executable
TIME_TARGET = 3.0
RSS_TARGET_MB = 1536
STREAM_TIME_TARGET = 1.5
SCALE_EVENTS = (60_000_000, 100_000_000)
SCALE_RSS_TARGET_MB = {60_000_000: 1024}
SEED = 1

BASELINE_CODE = r"""
import sys, time
import pyarrow.parquet as pq
from anonscope.analyzer.load import KIND_COLUMNS
columns = ["ts_ns", "event"] + sorted({c for cols in KIND_COLUMNS.values() for c in cols})
t0 = time.perf_counter()
table = pq.read_table(sys.argv[1], columns=columns)
t1 = time.perf_counter()
counts = table.group_by(["event", "object", "path"]).aggregate([([], "count_all")])
t2 = time.perf_counter()
print(f"{t1 - t0} {t2 - t1} {counts.num_rows} {table.num_rows}")
"""


ANALYZER_CODE = r"""
import sys, time
from anonscope.analyzer import cli, report, load   # start-up: outside the clock
import numpy, pandas, pyarrow.parquet
t0 = time.perf_counter()
cli.main(["report", sys.argv[1], "--format", "json", "-o", sys.argv[2], "-q"], standalone_mode=False)
print(time.perf_counter() - t0)
"""


def result(bench, value, baseline, target, met, **extra):
    ratio = (value / baseline) if (baseline not in (None, 0) and value is not None) else None
    line = {"bench": bench, "value": value, "baseline": baseline, "ratio": ratio,
            "target": target, "met": met}
    line.update(extra)
    print(json.dumps(line), flush=True)
    return line


def recording(events, seed=SEED):
    """The cached synthetic recording of ``events`` rows (made when missing
    or older than the generator)."""
    BUILD.mkdir(exist_ok=True)
    path = BUILD / f"synthetic-{events}-s{seed}.parquet"
    if not path.exists() or path.stat().st_mtime < MAKE_SYNTHETIC.stat().st_mtime:
        subprocess.run([PYTHON, str(MAKE_SYNTHETIC), "--events", str(events), "--out", str(path),
                        "--seed", str(seed)], check=True)
    return path


def timed_child(cmd):
    """Run ``cmd``; (wall seconds, peak RSS in MB, stdout). Raises on failure."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]}... failed ({proc.returncode}): {stderr.strip()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, stdout      # ru_maxrss is in KB on Linux


def baseline(path):
    wall, rss, out = timed_child([PYTHON, "-c", BASELINE_CODE, str(path)])
    scan, groupby, groups, rows = out.split()
    return wall, rss, float(scan), float(groupby)


def analyzer(path, out):
    """(wall seconds, peak RSS MB, seconds without start-up) of one report."""
    wall, rss, stdout = timed_child([PYTHON, "-c", ANALYZER_CODE, str(path), str(out)])
    return wall, rss, float(stdout.split()[-1])


def scale_points():
    """S2 and S3: one report of each SCALE_EVENTS recording."""
    lines = []
    with tempfile.TemporaryDirectory(prefix="anonscope-bench-") as d:
        for events in SCALE_EVENTS:
            path = recording(events)
            wall, rss, inproc = analyzer(path, Path(d) / "report.json")
            target = SCALE_RSS_TARGET_MB.get(events)
            name = f"S2_analyzer_{events // 1_000_000}M_rss_mb" if target else \
                f"S3_analyzer_{events // 1_000_000}M_events_per_s"
            value = rss if target else events / inproc
            lines.append(result(name, round(value, 1), None, target, rss <= target if target else None,
                                unit="MB" if target else "events/s", events=events, wall_s=wall,
                                seconds_without_startup=inproc, peak_rss_mb=rss,
                                file=str(path.relative_to(ROOT))))
    return lines


def run(quick=False, events=None, reps=None):
    events = events or (1_000_000 if quick else 10_000_000)
    reps = reps or (1 if quick else 3)
    path = recording(events)
    base_w, base_rss, scans, ours_w, ours_rss, ours_in = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="anonscope-bench-") as d:
        out = Path(d) / "report.json"
        for _ in range(reps):                      # alternate, so both see the same machine
            w, r, scan, gb = baseline(path)
            base_w.append(w)
            base_rss.append(r)
            scans.append(scan + gb)
            w, r, inproc = analyzer(path, out)
            ours_w.append(w)
            ours_rss.append(r)
            ours_in.append(inproc)
        report = json.loads(out.read_text())
    ours, base = statistics.median(ours_w), statistics.median(base_w)
    common = {"events": events, "reps": reps, "file": str(path.relative_to(ROOT))}
    lines = [
        result("P3_analyzer_time", ours, base, TIME_TARGET, ours <= TIME_TARGET * base,
               unit="s", runs=ours_w, baseline_runs=base_w,
               baseline_scan_groupby_s=statistics.median(scans),
               objects_allocated=sum(report["objects"][o]["allocated_total"]
                                     for o in report["objects"]), **common),
        result("P3_analyzer_rss_mb", max(ours_rss), None, RSS_TARGET_MB,
               max(ours_rss) <= RSS_TARGET_MB, unit="MB", runs=ours_rss,
               baseline_rss_mb=max(base_rss), **common),
        result("S1_analyzer_time_without_startup", statistics.median(ours_in), statistics.median(scans),
               STREAM_TIME_TARGET, statistics.median(ours_in) <= STREAM_TIME_TARGET * statistics.median(scans),
               unit="s", runs=ours_in, baseline_runs=scans, **common),
    ]
    if not quick:
        lines += scale_points()
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1,000,000 events, 1 repetition")
    ap.add_argument("--events", type=int, default=None,
                    help="rows of the synthetic recording (default 10,000,000)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    args, _ = ap.parse_known_args(argv)    # benchmarks/run passes every script the same flags
    run(args.quick, args.events, args.reps)


if __name__ == "__main__":
    main()
