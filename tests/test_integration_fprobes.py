"""Function probes (fentry or kprobes) on a kernel that allows them.

These run where function probes attach: Debian's kernels in the qemu guests
of scripts/vm-test (this project's development host refuses kprobes and
fentry; the tests are skipped there with the reason). They check the
per-VMA attribution against the workload's shape and the rmap walks against
an independent bpftrace count of the same run.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import hostcaps
from recording import ANONCOLLECT, COLLECT_TIMEOUT, WORKLOAD, collect, metadata, shape_args, start_census_target

SKIP = hostcaps.kprobes()
pytestmark = [pytest.mark.root, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]


def rows(path):
    return pq.read_table(path).to_pandas()


def test_function_probes_attach(tmp_path, workload):
    path = collect(tmp_path, "fp", shape_args(2, 0, 0, 1))
    meta = metadata(path)
    assert meta["backend"] in ("fentry", "kprobe"), meta["probes"]
    names = {p["name"] for p in meta["probes"] if p["attached"]}
    for func in ("__anon_vma_prepare", "anon_vma_fork", "anon_vma_clone", "unlink_anon_vmas"):
        assert any(func in n for n in names), (func, meta["probes"])


def test_every_object_has_its_vma_and_calls_follow_the_shape(tmp_path, workload):
    n, s, m, f = 12, 3, 2, 4
    base = rows(collect(tmp_path, "base", shape_args(0, 0, 0, f)))
    df = rows(collect(tmp_path, "shape", shape_args(n, s, m, f)))
    for d in (base, df):
        rmap = d[(d.event == "alloc") & d.object.isin(["anon_vma", "anon_vma_chain"])]
        assert rmap.vma_id.notna().all(), "every anon_vma/AVC is made inside one of the probed functions"

    def calls(d):
        # dup_mmap calls anon_vma_fork for every VMA it copies, and __split_vma
        # anon_vma_clone for every split; both return at once (no objects)
        # where the source VMA has no anon_vma: count the calls that made some
        c = d[(d.event == "call") & (d.call_objects > 0)]
        return Counter(c.func.astype(str))

    diff = calls(df)
    diff.subtract(calls(base))
    assert diff["__anon_vma_prepare"] == n
    assert diff["anon_vma_fork"] == f * (n + s)
    # anon_vma_clone outside fork: one per split, one per mremap copy
    assert diff["anon_vma_clone"] == s + m
    c = df[(df.event == "call") & (df.call_objects > 0)]
    prepare = c[c.func == "__anon_vma_prepare"]
    assert (prepare.call_objects == 2).all() and not prepare.reused.any()
    forks = c[c.func == "anon_vma_fork"]
    # a first-generation fork of a VMA with a one-AVC chain: 1 clone + own anon_vma + own AVC
    assert (forks.call_objects == 3).all() and not forks.reused.any()
    # each call's objects are the alloc rows tagged with its VMA during the call
    allocs = df[(df.event == "alloc") & df.object.isin(["anon_vma", "anon_vma_chain"])]
    per_vma = allocs.groupby("vma_id").size()
    for vma, objs in zip(forks.vma_id, forks.call_objects):
        assert per_vma.get(vma, 0) == objs
    # the VMAs anon_vma_fork links belong to the children, not to the parent's
    # mm (children run one after another, so they may share an address and id)
    parent = c[c.func == "__anon_vma_prepare"].tgid.mode()[0]
    parent_mms = set(c[(c.func == "__anon_vma_prepare") & (c.tgid == parent)].mm_id)
    assert not set(forks.mm_id) & parent_mms
    assert (forks.vm_end > forks.vm_start).all()
    # 7.x: anon_vma_clone() says why it clones; each split and each mremap
    # copy clones a one-AVC chain (one region's own anon_vma)
    op = next(p for p in metadata(tmp_path / "shape.parquet")["probes"] if p["name"] == "anon_vma_clone operation")
    if op["attached"]:
        def callers(d):
            a = d[(d.event == "alloc") & (d.path == "clone_vma") & (d.object == "anon_vma_chain")]
            return Counter(a.caller.astype(str))
        got = callers(df)
        got.subtract(callers(base))
        assert {k: v for k, v in got.items() if v} == {"split": s, "mremap": m}, got


def record_target(tmp_path, commands, n=4):
    """Start census_target with ``n`` regions, record it (-p) with function
    probes, send ``commands`` once recording runs; the file and the replies."""
    target, regions = start_census_target(n)
    out = tmp_path / "target.parquet"
    rec = subprocess.Popen(ANONCOLLECT + ["-o", str(out), "-p", str(target.pid)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    replies = []
    try:
        # the collector says when the census is over: recording runs from then on
        said = []
        while not any(line.startswith("anoncollect: census") for line in said):
            line = rec.stderr.readline()
            assert line, "collector ended before the census: " + "".join(said)
            said.append(line)
        for cmd in commands:
            target.stdin.write(cmd + "\n")
            target.stdin.flush()
            replies.append(target.stdout.readline().split())
        time.sleep(2)
    finally:
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=COLLECT_TIMEOUT)
        target.stdin.close()
        target.wait(timeout=30)
    assert rec.returncode == 0, err
    return out, target.pid, regions, replies


def test_census_ids_are_the_ids_later_rows_use(tmp_path):
    """With function probes the census is part of their program: a VMA that
    existed before the run and is unmapped during it has the same vma_id in
    its census row and in the unlink_anon_vmas call row, and its anon_vma's
    free carries the census row's id, marked preexisting."""
    out, _pid, regions, replies = record_target(tmp_path, ["unmap 2"])
    assert replies == [["done"]]
    meta = metadata(out)
    assert meta["census"]["status"] == "done", meta["census"]
    df = rows(out)
    c = df[(df.event == "census") & (df.object == "vm_area_struct")]
    start, end = regions[2]
    row = c[(c.vm_start == start) & (c.vm_end == end)]
    assert len(row) == 1, c[["vm_start", "vm_end"]]
    vma_id, av_id = int(row.vma_id.iloc[0]), int(row.anon_vma_id.iloc[0])
    unlink = df[(df.event == "call") & (df.func == "unlink_anon_vmas") & (df.vma_id == vma_id)]
    assert len(unlink) == 1 and int(unlink.vm_start.iloc[0]) == start
    freed = df[(df.event == "free") & (df.object == "anon_vma") & (df.obj_id == av_id)]
    assert len(freed) == 1 and bool(freed.preexisting.iloc[0])


def test_copy_rows_count_the_anonymous_pages_a_fork_copies(tmp_path):
    """copy_page_range rows of one fork add up to the parent's anonymous
    memory a fork copies (/proc/PID/smaps, VMAs without VM_WIPEONFORK) just
    before and after the fork
    (the target forks until the two agree); the report's re-pointed pages
    for the upgrade that fork would be (the VMAs predate the run, so it is
    the high end of fork_range) are the same number."""
    out, pid, _regions, replies = record_target(tmp_path, ["fork"])
    (word, child, kb), = replies
    assert word == "forked"
    meta = metadata(out)
    assert any(p["attached"] and p["name"].endswith(":copy_page_range") for p in meta["probes"]), meta["probes"]
    df = rows(out)
    fork = df[(df.event == "fork") & (df.child_pid == int(child))]
    assert len(fork) == 1
    t_fork = int(fork.ts_ns.iloc[0])
    earlier = df[(df.event == "fork") & (df.tgid == pid) & (df.ts_ns < t_fork)].ts_ns
    t_prev = int(earlier.max()) if len(earlier) else -1
    copies = df[(df.event == "call") & (df.func == "copy_page_range") & (df.tgid == pid)
                & (df.ts_ns > t_prev) & (df.ts_ns < t_fork)]
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    assert len(copies) > 0
    assert int(copies.anon_pages.sum()) * page_kb == int(kb)
    rep = subprocess.run([os.path.join(os.path.dirname(sys.executable), "anonanalyze"), "report", str(out),
                          "--format", "json"], capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    rp = json.loads(rep.stdout)["models"]["lazy"]["extra_costs"]["repointed_pages"]
    assert rp["fork"] == 0, "no VMA was born in the run"
    all_copies = df[(df.event == "call") & (df.func == "copy_page_range") & (df.tgid == pid)]
    first = all_copies.sort_values("ts_ns").drop_duplicates("src_vma_id")  # each VMA's first fork
    assert rp["fork_range"][1] == int(first.anon_pages.sum())


def _bpftrace_walks(name: str, backend: str):
    """bpftrace counting the walks (rmap_walk_anon: static, not inlined in
    Debian's 6.1, what rmap_walk runs for an anonymous folio) and the AVCs
    the interval tree returns in them, through the same kind of probe as
    ``backend``: on 6.1 a BPF trampoline (fentry) and an ftrace-based kprobe
    on the same function did not both fire."""
    enter, ret = ("kprobe", "kretprobe") if backend == "kprobe" else ("kfunc", "kretfunc")
    # the iterators' names as /proc/kallsyms has them: anon_rmap_tree_iter_*
    # in 7.3, anon_vma_interval_tree_iter_* before
    with open("/proc/kallsyms") as f:
        tree = "anon_rmap_tree" if any(" anon_rmap_tree_iter_first" in line for line in f) \
            else "anon_vma_interval_tree"
    # one block per iterator: bpftrace refuses kretfunc attach points with
    # different arguments in one probe
    prog = (f'{enter}:rmap_walk_anon /comm == "{name}"/ {{ @walks = count(); @in[tid] = 1; }} '
            f'{ret}:rmap_walk_anon /@in[tid]/ {{ delete(@in[tid]); }} '
            + " ".join(f'{ret}:{tree}_iter_{it} /@in[tid] && retval != 0/ {{ @avcs = count(); }}'
                       for it in ("first", "next")))
    return subprocess.Popen(["bpftrace", "-f", "json", "-e", prog], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(hostcaps.bpftrace() is not None, reason=str(hostcaps.bpftrace()))
@pytest.mark.parametrize("backend", ["kprobe", pytest.param("fentry", marks=pytest.mark.skipif(
    hostcaps.fentry() is not None, reason=str(hostcaps.fentry())))])
def test_walks_equal_bpftrace(tmp_path, workload, backend):
    """MADV_PAGEOUT of written anonymous pages (swap needed) makes reclaim
    walk the anon rmap of each folio it can take off the LRU (try_to_unmap ->
    rmap_walk); walks and AVCs visited must equal what an independent
    bpftrace program counts on rmap_walk and the interval-tree iterators for
    the same task."""
    swaps = Path("/proc/swaps").read_text().splitlines()
    if len(swaps) < 2:
        pytest.skip(hostcaps.lacks("swap: MADV_PAGEOUT leaves anonymous pages alone (scripts/vm-test adds "
                                   "a swap file)"))
    name = f"awk{os.getpid()}"[:15]
    binary = tmp_path / name
    shutil.copy(WORKLOAD, binary)
    def pswpout():
        return int(next(line.split()[1] for line in open("/proc/vmstat") if line.startswith("pswpout ")))
    swapped_before = pswpout()
    bt = _bpftrace_walks(name, backend)
    try:
        line = ""
        while "attached_probes" not in line:
            line = bt.stdout.readline()
            if not line:
                pytest.fail("bpftrace did not attach: " + bt.stderr.read())
        path = collect(tmp_path, "walks", ["-n", "8", "-f", "2", "-o"], extra=["--backend", backend],
                       binary=binary)
    finally:
        bt.send_signal(signal.SIGINT)
        # bpftrace detaching its kretprobes took over 120 s once under TCG
        out, _ = bt.communicate(timeout=600 if hostcaps.emulated() else 120)
    counts = {}
    for line in out.splitlines():
        if line.startswith("{") and '"type": "map"' in line:
            msg = json.loads(line)
            counts.update({k: v for k, v in msg["data"].items() if isinstance(v, int)})
    df = rows(path)
    assert metadata(path)["backend"] == backend
    walks = df[(df.event == "walk") & (df.comm == name)]
    assert len(walks) > 0, f"no walk recorded; pswpout +{pswpout() - swapped_before}; {metadata(path)['probes']}"
    assert counts.get("@walks", 0) > 0, \
        f"no rmap_walk seen; pswpout +{pswpout() - swapped_before} during the run"
    # bpftrace counts anonymous walks only, as our rows (KSM walks aside)
    assert len(walks[walks.walk_kind != "ksm"]) == counts["@walks"]
    assert len(walks) > 0
    assert int(walks.avcs_visited.sum()) == counts.get("@avcs", 0)
    assert (walks.duration_ns > 0).all()
    assert set(walks.walk_kind) <= {"reclaim", "migration", "ksm", "idle", "other"}
    # v8: each anonymous walk's folio index (folio->index, linear_page_index()
    # of its VMA) lies in the pgoff range of one of the workload's VMAs, as
    # its call rows give them
    calls = df[(df.event == "call") & (df.comm == name) & df.vm_pgoff.notna()]
    lo = calls.vm_pgoff.to_numpy()
    hi = lo + (calls.vm_end.to_numpy() - calls.vm_start.to_numpy()) // os.sysconf("SC_PAGE_SIZE")
    anon = walks[walks.walk_kind != "ksm"]
    assert anon.vm_pgoff.notna().all()
    inside = [bool(((lo <= x) & (x < hi)).any()) for x in anon.vm_pgoff.to_numpy()]
    assert all(inside), anon.vm_pgoff[[not i for i in inside]].head().tolist()
    # the report made from this recording: walk cost per design, lock waits
    rep = subprocess.run([os.path.join(os.path.dirname(sys.executable), "anonanalyze"), "report", str(path),
                          "--format", "json"], capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    report = json.loads(rep.stdout)
    all_walks = df[df.event == "walk"]
    assert report["walks"]["eager"]["count"] == len(all_walks)
    for design in ("eager", "lazy", "cow_context", "nofork"):
        assert report["walks"][design]["visits"]["max"] is not None
    assert report["models"]["lazy"]["fidelity"].startswith("exact")
    # the tracepoint-only bounds of the same recording contain the exact answer
    within = report["models"]["lazy"]["tracepoint_estimate"]["exact_within_bounds"]
    assert within and all(within.values()), within
    assert "status" in report["locks"]
    text = subprocess.run([os.path.join(os.path.dirname(sys.executable), "anonanalyze"), "report", str(path)],
                          capture_output=True, text=True, timeout=300).stdout
    print(text)  # shown by `pytest -rP` (scripts/vm-test x86_64 -- ... -rP)
