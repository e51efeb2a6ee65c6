"""The real collector around build/anonshape, checked against the kernel's
rules and against an independent bpftrace count of the same run.

Needs root, BPF tracepoints and bpftrace (scripts/setup installs it); skipped
with the reason otherwise.
"""

import json
import os
import platform
import re
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
from anonscope.collector.btf import BTF
from recording import (
    ANONCOLLECT,
    SHAPE,
    WORKLOAD,
    alloc_counts,
    collect,
    metadata,
    settled_smaps_ranges,
    shape_args,
    smaps_ranges,
    start_census_target,
    start_recording,
)

BT_SCRIPT = Path(__file__).parent / "bpftrace" / "rmap_allocs.bt"


SKIP = hostcaps.integration()
pytestmark = [pytest.mark.root, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]


def test_counts_follow_from_the_workload_shape(tmp_path, workload):
    """Differences against the same workload with no regions are exactly
    what mm/rmap.c's rules predict (docs/workloads.md)."""
    n, s, m, f = SHAPE["n"], SHAPE["s"], SHAPE["m"], SHAPE["f"]
    base, _ = alloc_counts(collect(tmp_path, "base", shape_args(0, 0, 0, f)))
    path = collect(tmp_path, "shaped", shape_args(n, s, m, f))
    shaped, df = alloc_counts(path)
    diff = Counter(shaped)
    diff.subtract(base)
    # the regions are anonymous: v10 tags their faults where kallsyms has
    # the handler (docs/schema.md caller)
    kind = "anon_fault" if "do_anonymous_page" in metadata(path)["classification"] else None
    assert diff["anon_vma", "fault", kind] == n
    assert diff["anon_vma_chain", "fault", kind] == n
    assert diff["anon_vma_chain", "clone_vma", "split"] == s
    assert diff["anon_vma_chain", "clone_vma", "mremap"] == m
    # every parent VMA with an anon_vma (n regions + s split-off pieces):
    assert diff["anon_vma", "fork", None] == f * (n + s)
    assert diff["anon_vma_chain", "fork", None] == f * (n + s)
    assert diff["anon_vma_chain", "clone_fork", "fork"] == f * (n + s)
    assert sum(v for k, v in diff.items() if v) == 2 * n + s + m + 3 * f * (n + s)


def _report(path):
    rep = subprocess.run([os.path.join(os.path.dirname(sys.executable), "anonanalyze"), "report", str(path),
                          "--format", "json"], capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    return json.loads(rep.stdout)


def test_a_fork_that_reuses_an_anon_vma_is_reuse(tmp_path, workload):
    """anonshape -r (docs/workloads.md): per region, C's and G's forks each
    make an own anon_vma and AVC and clone the chain (1, then 2 AVCs), and
    H's fork clones G's 3-AVC chain and reuses C's anon_vma, which has no
    active VMA and one child. Since 7.x H's fork allocates its own pair
    first and frees it at once (E2'): counted apart, never as allocated.
    With function probes, H's anon_vma_fork calls are flagged reused."""
    n0, n = 1, 1 + SHAPE["n"]
    d = n - n0
    runs = {k: collect(tmp_path, f"reuse{k}", shape_args(k, 0, 0, 0) + ["-r"]) for k in (n0, n)}
    obj = {k: _report(p)["objects"] for k, p in runs.items()}

    def diff(o, key):
        return obj[n][o][key] - obj[n0][o][key] if key == "transient_fork_pairs" else \
            obj[n][o]["allocated"][key] - obj[n0][o]["allocated"][key]
    assert diff("anon_vma", "fork") == 2 * d
    assert diff("anon_vma_chain", "fork") == 2 * d
    assert diff("anon_vma_chain", "clone_fork") == (1 + 2 + 3) * d
    seven = int(platform.release().split(".")[0]) >= 7     # 7.2 and 7.3 anon_vma_fork() read
    assert diff("anon_vma", "transient_fork_pairs") == (d if seven else 0)
    assert diff("anon_vma_chain", "transient_fork_pairs") == (d if seven else 0)
    assert obj[n]["anon_vma_chain"]["freed_by_path"]["error"] == 0
    if metadata(runs[n])["backend"] in ("fentry", "kprobe"):
        def reused(path):
            df = pq.read_table(path).to_pandas()
            return int((df[(df.event == "call") & (df.func == "anon_vma_fork")].reused == True).sum())  # noqa: E712
        assert reused(runs[n]) - reused(runs[n0]) == d


def test_every_object_made_by_the_command_is_freed_and_paired(tmp_path, workload):
    path = collect(tmp_path, "pairs", shape_args(**SHAPE))
    df = pq.read_table(path).to_pandas()
    objs = df[df.event.isin(["alloc", "free"])]
    allocs = objs[objs.event == "alloc"]
    frees = objs[(objs.event == "free") & (objs.preexisting == False)]  # noqa: E712
    assert allocs.obj_id.is_unique
    assert set(frees.obj_id) == set(allocs.obj_id), "the command exited: all it made is freed"
    # fork-path objects belong to the children, whose pids the fork rows give
    forks = df[(df.event == "fork") & (df.shares_mm == False)]  # noqa: E712
    assert len(forks) == SHAPE["f"]
    fork_allocs = allocs[allocs.path.isin(["fork", "clone_fork"])]
    assert set(fork_allocs.owner_pid) == set(forks.child_pid)
    assert (fork_allocs.owner_pid != fork_allocs.pid).all()
    meta = metadata(path)
    assert meta["target"]["mode"] == "command"
    assert meta["stop_reason"] == "command-exited"
    assert meta["command_exit_status"] == 0
    assert set(meta["lost"]) == {"ringbuf", "perfbuf", "live_map_full", "prog_misses"}
    assert meta["object_sizes"]["anon_vma_chain"]["btf_size"] == 64 or meta["arch"] != "x86_64"


def test_no_kernel_pointer_in_any_column(tmp_path, workload):
    path = collect(tmp_path, "ptr", shape_args(10, 2, 1, 2))
    table = pq.read_table(path)
    kallsyms_floor = 0xFFFF800000000000 - (1 << 64)  # kernel addresses as int64 are below this
    for name in table.column_names:
        col = table[name]
        if str(col.type) in ("int64", "uint64"):
            vals = [v for v in col.to_pylist() if v is not None]
            assert not any(v < 0 or v >= 1 << 52 for v in vals), f"{name} holds kernel-like values"
            assert not any(kallsyms_floor <= v < 0 for v in vals)


def test_raw_pointers_opt_in(tmp_path, workload):
    path = collect(tmp_path, "raw", shape_args(5, 0, 0, 1), extra=["--raw-pointers"])
    df = pq.read_table(path).to_pandas()
    ids = df.loc[df.event == "alloc", "obj_id"]
    assert (ids < 0).all(), "kernel addresses (0xffff...) read as negative int64"
    assert metadata(path)["raw_pointers"] is True


def _fault_kind(frames: str):
    """The v10 caller of a fault row from bpftrace's symbolised stack: the
    fault handler (mm/memory.c), else None."""
    if re.search(r"(^|\s)do_(anonymous_page|huge_pmd_anonymous_page)\+", frames):
        return "anon_fault"
    if re.search(r"(^|\s)do_(cow_)?fault\+", frames):
        return "cow_fault"
    return None


def _bpftrace_counts(output: str) -> Counter:
    """(object, path, caller) counts from rmap_allocs.bt's JSON map."""
    counts = Counter()
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        msg = json.loads(line)
        if msg.get("type") != "map" or "@allocs" not in msg.get("data", {}):
            continue
        for key, n in msg["data"]["@allocs"].items():
            name, func, stack = key.split(",", 2)
            func = re.sub(r"\+\d+$", "", func.strip())
            frames = stack
            if func == "__anon_vma_prepare":
                path, caller = "fault", _fault_kind(frames)
            elif func == "anon_vma_fork":
                path, caller = "fork", None
            elif func == "anon_vma_clone":
                if "anon_vma_fork" in frames:
                    path, caller = "clone_fork", "fork"
                else:
                    path = "clone_vma"
                    caller = "split" if "__split_vma" in frames else "mremap" if "copy_vma" in frames else None
            else:
                continue  # a merged cache's other users (copy_fs_struct)
            counts[name.strip(), path, caller] += n
    return counts


def _bpftrace_reads_cache_names() -> bool:
    """Whether this bpftrace reads the tracepoint's ``__data_loc`` cache name:
    bookworm's 0.17 does; trixie's 0.23 gave an empty string for it on 7.3
    (and an integer for ``args.name``), so the size-based script is used."""
    prog = 'tracepoint:kmem:kmem_cache_alloc { printf("<%s>\\n", str(args->name)); exit(); }'
    out = subprocess.run(["bpftrace", "-e", prog], capture_output=True, text=True, timeout=300).stdout
    return re.search(r"<[^<>\s]+>", out) is not None


@pytest.mark.skipif(hostcaps.bpftrace() is not None, reason=str(hostcaps.bpftrace()))
def test_counts_equal_bpftrace_for_the_same_run(tmp_path, workload):
    # a name of its own, so that no other anonshape on the machine is counted
    name = f"abt{os.getpid()}"[:15]
    binary = tmp_path / name
    shutil.copy(workload, binary)
    fmt = Path("/sys/kernel/tracing/events/kmem/kmem_cache_alloc/format").read_text()
    if "name;" in fmt and _bpftrace_reads_cache_names():
        args = [str(BT_SCRIPT), name]
    else:
        btf = BTF.from_file()
        args = [str(BT_SCRIPT.with_name("rmap_allocs_noname.bt")), name,
                str(btf.sizeof("anon_vma")), str(btf.sizeof("anon_vma_chain"))]
    bt = subprocess.Popen(["bpftrace", "-f", "json", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline:
            line = bt.stdout.readline()
            if "attached_probes" in line or not line:
                break
        assert "attached_probes" in line, "bpftrace did not attach: " + bt.stderr.read()
        path = collect(tmp_path, "bt", shape_args(**SHAPE), binary=binary)
    finally:
        bt.send_signal(signal.SIGINT)
        out, err = bt.communicate(timeout=60)
    theirs = _bpftrace_counts(out)
    ours, _ = alloc_counts(path)
    assert sum(theirs.values()) > 0, err
    assert dict(ours) == dict(theirs)
    # v10 fault kinds: the workload writes anonymous VMAs and its loader
    # private file mappings' pages; tagged where kallsyms has the handlers
    # (a kind needs one of its handlers in kallsyms; the small-page ones make
    # it appear; each handler may be inlined on its own)
    found = metadata(path)["classification"]
    kinds = {c for (_, p, c) in ours if p == "fault"}
    for kind, fns in (("anon_fault", ("do_anonymous_page", "do_huge_pmd_anonymous_page")),
                      ("cow_fault", ("do_fault", "do_cow_fault"))):
        assert kind not in kinds or any(f in found for f in fns), (kind, found)
        assert kind in kinds or not any(f in found for f in fns[:1]), (kind, kinds)


def test_ctrl_c_leaves_a_readable_file_with_metadata(tmp_path, workload):
    out = tmp_path / "sigint.parquet"
    proc, partial = start_recording(out)
    subprocess.run([str(WORKLOAD), *shape_args(5, 1, 1, 2)], check=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert out.exists() and not partial.exists()
    meta = metadata(out)
    assert meta["stop_reason"] == "SIGINT"
    assert meta["target"]["mode"] == "system"
    df = pq.read_table(out).to_pandas()
    assert meta["events"] == len(df)
    shaped = df[(df.comm == "anonshape") & (df.event == "alloc") & (df.path == "fault")]
    assert (shaped.object == "anon_vma").sum() >= 5
    assert set(df[df.event == "slab"].slab_cache) == {"anon_vma", "anon_vma_chain", "vm_area_struct"}
    # v9 rmap_layout: the running kernel's structs as BTF has them, their
    # sizes the ones object_sizes reads from BTF too
    lay = meta["rmap_layout"]
    btf = BTF.from_file()
    for name in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        assert lay["structs"][name] == {"size": meta["object_sizes"][name]["btf_size"], "members": btf.members(name)}
    assert lay["functions"]["anon_vma_fork"] is True and "anon_vma_chain" in lay["structs"]["vm_area_struct"]["members"]


def test_pid_filter_records_only_that_process_and_its_children(tmp_path, workload):
    target = subprocess.Popen([str(WORKLOAD), "-w", *shape_args(8, 2, 1, 3)], stdin=subprocess.PIPE)
    out = tmp_path / "pid.parquet"
    coll, _ = start_recording(out, "-q", "-p", str(target.pid))
    time.sleep(0.5)
    subprocess.run(["/bin/true"])  # another process: must not appear
    target.communicate(b"\n", timeout=60)
    time.sleep(0.5)
    coll.send_signal(signal.SIGTERM)
    _, err = coll.communicate(timeout=60)
    assert coll.returncode == 0, err
    df = pq.read_table(out).to_pandas()
    kernel_rows = df[df.cpu >= 0]
    forks = df[df.event == "fork"]
    allowed = {target.pid} | set(forks.child_tgid)
    allocs = kernel_rows[kernel_rows.event == "alloc"]
    assert set(allocs.tgid) <= allowed
    assert len(forks) == 3 and (forks.tgid == target.pid).all()
    faults = allocs[(allocs.object == "anon_vma") & (allocs.path == "fault")]
    assert len(faults) == 8
    assert metadata(out)["stop_reason"] == "SIGTERM" and metadata(out)["target"]["pid"] == target.pid


def test_comm_filter_in_the_kernel(tmp_path, workload):
    out = tmp_path / "comm.parquet"
    coll, _ = start_recording(out, "-q", "--comm", "anonshape", "--duration", "60")
    time.sleep(0.5)
    subprocess.run([str(WORKLOAD), *shape_args(6, 0, 0, 2)], check=True)
    subprocess.run(["/bin/sh", "-c", "true"], check=True)
    time.sleep(0.5)
    coll.send_signal(signal.SIGINT)
    _, err = coll.communicate(timeout=60)
    assert coll.returncode == 0, err
    df = pq.read_table(out).to_pandas()
    allocs = df[df.event == "alloc"]
    assert len(allocs) > 0 and set(allocs.comm) == {"anonshape"}
    assert ((allocs.object == "anon_vma") & (allocs.path == "fault")).sum() >= 6


def test_perf_buffer_gives_the_same_counts_as_the_ring_buffer(tmp_path, workload):
    ring, _ = alloc_counts(collect(tmp_path, "ring", shape_args(**SHAPE)))
    perf_path = collect(tmp_path, "perf", shape_args(**SHAPE), extra=["--perf-buffer"])
    perf, _ = alloc_counts(perf_path)
    assert metadata(perf_path)["buffer"] == "perfbuf"
    assert dict(perf) == dict(ring)


def test_output_belongs_to_the_sudo_user(tmp_path, workload):
    out = tmp_path / "owned.parquet"
    env = dict(os.environ, SUDO_UID="65534", SUDO_GID="65534")
    p = subprocess.run(ANONCOLLECT + ["-q", "-o", str(out), "--", str(WORKLOAD), "-n", "1"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    st = out.stat()
    assert (st.st_uid, st.st_gid) == (65534, 65534)


@pytest.mark.skipif(hostcaps.lock_tracepoints() is not None, reason=str(hostcaps.lock_tracepoints()))
@pytest.mark.skipif(hostcaps.bpftrace() is not None, reason=str(hostcaps.bpftrace()))
def test_anon_vma_lock_waits_equal_bpftrace(tmp_path, workload):
    """Children that split and re-merge their copy of one region at the same
    time wait for the write lock of the parent's root anon_vma, which they
    all share. Their only contended rwsem is that one (each child has its
    own mm and one thread), so every rwsem write wait bpftrace sees for them
    must be a lock row, on the root anon_vma of a region the parent faulted."""
    name = f"alk{os.getpid()}"[:15]
    binary = tmp_path / name
    shutil.copy(workload, binary)
    script = ('tracepoint:lock:contention_begin /comm == "%s" && (args->flags & 4) && !(args->flags & 49)/ '
              '{ @waits = count(); }' % name)
    for churn in ("4000", "20000"):  # a busy machine may serialise the children
        bt = subprocess.Popen(["bpftrace", "-f", "json", "-e", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        try:
            line = " "
            while line and "attached_probes" not in line:  # "" once bpftrace has exited
                line = bt.stdout.readline()
            assert line, "bpftrace did not attach: " + bt.stderr.read()
            path = collect(tmp_path, "locks", ["-n", "4", "-f", "8", "-P", "-c", churn], binary=binary)
        finally:
            bt.send_signal(signal.SIGINT)
            out, _ = bt.communicate(timeout=60)
        waits = sum(json.loads(line)["data"]["@waits"] for line in out.splitlines()
                    if line.startswith("{") and '"@waits"' in line)
        if waits:
            break
    df = pq.read_table(path).to_pandas()
    locks = df[df.event == "lock"]
    assert waits > 0, "the workload should contend on this machine"
    # from 6.19 tracepoint programs run preemptible: a waiter preempted inside
    # our contention program makes the next one's run be skipped (counted in
    # prog_misses_by_program, docs/collector.md): each skip loses one row at most
    meta = metadata(path)
    missed = sum(v for k, v in (meta.get("prog_misses_by_program") or {}).items() if "contention" in k)
    missed += (meta.get("lost_by_event") or {}).get("lock", 0)       # and rows the buffer could not take
    assert waits - missed <= len(locks) <= waits, (len(locks), waits, missed)
    assert (locks.wait_ns > 0).all() and locks.lock_write.all()
    roots = df[(df.event == "alloc") & (df.object == "anon_vma") & (df.path == "fault")].obj_id
    assert locks.lock_id.isin(roots).all() and not locks.preexisting.any()
    # split/merge and the clone it makes, the children's exit (unlink, and
    # __put_anon_vma's lock/unlock before freeing a child anon_vma), and the
    # parent's anon_vma_fork for a later child while earlier ones already
    # churn (-P; seen in the arm64 guest)
    assert set(locks.lock_func) <= {"clone", "unlink", "split_merge", "put", "fork"}


def test_census_matches_proc_smaps(tmp_path):
    """The start-of-run census of one idle process (-p) against the kernel's
    own /proc/PID/smaps: every VMA with anonymous pages has a row, every row
    is a VMA of the process, and the N regions the target made have one AVC
    and an anon_vma of their own each."""
    n = 8
    target, regions = start_census_target(n)
    try:
        every, anon = settled_smaps_ranges(target.pid)
        out = tmp_path / "census.parquet"
        proc = subprocess.run(ANONCOLLECT + ["-q", "-o", str(out), "-p", str(target.pid), "--duration", "0.5"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert (every, anon) == smaps_ranges(target.pid), "the target changed during the run"
    finally:
        target.stdin.close()
        target.wait(timeout=30)
    meta = metadata(out)
    if meta["census"]["status"] != "done":
        pytest.skip(f"no census on this kernel: {meta['census']['reason']}")
    df = pq.read_table(out).to_pandas()
    c = df[df.event == "census"]
    assert set(c.tgid) == {target.pid}
    v, a = c[c.object == "vm_area_struct"], c[c.object == "anon_vma"]
    ranges = set(zip(v.vm_start.astype(int), v.vm_end.astype(int)))
    assert len(ranges) == len(v), "one row per VMA"
    assert anon <= ranges <= every
    assert set(regions) <= ranges
    mine = v[[r in set(regions) for r in zip(v.vm_start.astype(int), v.vm_end.astype(int))]]
    assert (mine.chain_avcs == 1).all() and mine.anon_vma_id.nunique() == n
    assert set(v.anon_vma_id) == set(a.obj_id) and a.obj_id.is_unique
    own = a.set_index("obj_id").loc[mine.anon_vma_id]
    assert (own.root_id == own.index).all(), "each region's anon_vma is its own root"
    if own.num_active_vmas.notna().all():  # 6.0+
        assert (own.num_active_vmas == 1).all() and (own.num_children == 1).all()
    assert (v.chain_avcs >= 1).all() and not v.chain_truncated.any()
    assert meta["census"]["vma_rows"] == len(v) and meta["census"]["anon_vma_rows"] == len(a)
    assert meta["census"]["lost"] == 0
