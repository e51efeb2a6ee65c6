"""What the integration tests share: the collector's command line, the
workload (build/anonshape, compiled by the `workload` fixture in conftest.py),
recording it and reading what was recorded."""

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent


WORKLOAD = ROOT / "build" / "anonshape"


ANONCOLLECT = [sys.executable, "-m", "anonscope.collector.cli"]

#: seconds a recording of the workload may take: in an emulated guest
#: (scripts/vm-test sets ANONSCOPE_VM) the collector's start alone took 390 s
#: with kprobes on arm64 7.3 (102 s with tracepoints only), on 2026-12-02
COLLECT_TIMEOUT = 1200 if os.environ.get("ANONSCOPE_VM") else 300



def collect(tmp_path, name, args, extra=(), binary=None):
    out = tmp_path / f"{name}.parquet"
    proc = subprocess.run(ANONCOLLECT + ["-q", "-o", str(out), *extra, "--", str(binary or WORKLOAD), *args],
                          capture_output=True, text=True, timeout=COLLECT_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return out



def alloc_counts(path):
    df = pq.read_table(path).to_pandas()
    a = df[(df.event == "alloc") & (df.object != "vm_area_struct")]
    keys = zip(a.object.astype(str), a.path.astype(str), a.caller.astype(object).where(a.caller.notna(), None))
    return Counter(keys), df



def metadata(path):
    return {k.decode()[len("anonscope."):]: json.loads(v)
            for k, v in pq.read_metadata(path).metadata.items() if k.startswith(b"anonscope.")}



def by_path(counts):
    """(object, path) -> count, summing callers."""
    out = Counter()
    for (obj, path, _caller), n in counts.items():
        out[obj, path] += n
    return out


SHAPE = dict(n=40, s=10, m=5, f=6)



def shape_args(n, s, m, f):
    return ["-n", str(n), "-s", str(s), "-m", str(m), "-f", str(f)]



def start_recording(out, *args):
    """anoncollect in the background, returned once it records (the
    .partial file appears when the kernel side is enabled)."""
    proc = subprocess.Popen(ANONCOLLECT + ["-o", str(out), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    partial = Path(str(out) + ".partial")
    deadline = time.monotonic() + COLLECT_TIMEOUT   # the compile: minutes under TCG
    while not partial.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert partial.exists(), proc.stderr.read() if proc.poll() is not None else "collector did not start"
    return proc, partial


CENSUS_TARGET = Path(__file__).parent / "census_target.py"



def smaps_ranges(pid):
    """(start, end) of every VMA of ``pid``, and of those with anonymous
    pages (smaps ``Anonymous:`` above 0 kB: such a VMA must have an anon_vma)."""
    every, anon, current = set(), set(), None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if m:
            current = (int(m.group(1), 16), int(m.group(2), 16))
            every.add(current)
        elif line.startswith("Anonymous:") and int(line.split()[1]) > 0:
            anon.add(current)
    return every, anon



def settled_smaps_ranges(pid, pause_s=0.5, timeout_s=30):
    """``smaps_ranges(pid)`` once two reads ``pause_s`` apart agree: the
    target prints its regions before it blocks reading stdin, and its first
    read allocates (its heap and arenas change just after "ready")."""
    deadline = time.monotonic() + timeout_s
    last = smaps_ranges(pid)
    while True:
        time.sleep(pause_s)
        now = smaps_ranges(pid)
        if now == last or time.monotonic() > deadline:
            return now
        last = now


def start_census_target(n):
    target = subprocess.Popen([sys.executable, str(CENSUS_TARGET), str(n)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    return target, [tuple(r) for r in json.loads(target.stdout.readline())]
