"""Marks on a real recording and the snapshot the report takes there
(docs/models.md#snapshots): `anoncollect -- anonshape ... -H` holds a parent
with N regions and F children (each CoW every region and faults K of its
own) alive; `kill -USR1` and `anoncollect mark` mark that moment.

Expected values: the rmap objects' differences against the same workload
without regions follow from the shape (docs/workloads.md); the VMAs at the
mark equal the lines of /proc/PID/maps of the held processes.
"""

import os
import select
import signal
import subprocess
import time
from collections import Counter

import pytest

import hostcaps
from anonscope.analyzer import load, report
from mdtables import md_text
from recording import ANONCOLLECT, metadata, start_recording

SKIP = hostcaps.integration()
pytestmark = [pytest.mark.root, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]

N, F, K = 12, 3, 5


def maps_vmas(pid):
    """VMAs of a process as /proc/PID/maps lists them ([vsyscall] is no VMA)."""
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for line in f if not line.rstrip().endswith("[vsyscall]"))


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def wait_line(stream, timeout):
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "workload did not get ready"
    return stream.readline()


def object_rows_lost(path):
    """Allocation and free rows the recording may lack: buffer losses and
    skipped program runs of those kinds (docs/collector.md: from 6.19 a
    task preempted inside the kmem program makes the next task's slab
    events on that CPU be skipped, ours among them)."""
    m = metadata(path)
    kinds = ("alloc", "free")
    return sum((m.get("lost_by_event") or {}).get(k, 0) + (m.get("prog_misses_by_event") or {}).get(k, 0)
               for k in kinds)


def record_held_whole(tmp_path, binary, name, n, k, tries=3):
    """record_held until a recording lacks no object row (at most ``tries``);
    (path, VMAs, rows it may lack)."""
    for i in range(tries):
        out, vmas = record_held(tmp_path, binary, f"{name}{i}", n, k)
        lost = object_rows_lost(out)
        if not lost:
            break
        print(f"{out.name}: {lost} object rows may be missing (skipped runs); recording again")
    return out, vmas, lost


def record_held(tmp_path, binary, name, n, k):
    """Record the held workload, mark it (USR1, then `anoncollect mark
    apps`), release it; (path, VMAs of the held tree by /proc)."""
    out = tmp_path / f"{name}.parquet"
    args = ["-n", str(n), "-t", "-f", str(F), "-k", str(k), "-H"]
    proc = subprocess.Popen(ANONCOLLECT + ["-o", str(out), "--", str(binary), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_line(proc.stdout, 300).strip() == "ready"
        (shape,) = children(proc.pid)
        tree = [shape] + children(shape)
        vmas = sum(maps_vmas(p) for p in tree)
        os.kill(proc.pid, signal.SIGUSR1)
        m = subprocess.run(ANONCOLLECT + ["mark", "apps"], capture_output=True, text=True, timeout=60)
        assert m.returncode == 0, m.stderr
        time.sleep(1.0)     # the loop takes the marks within 0.1 s
        _, err = proc.communicate("\n", timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "mark mark-1 at" in err and "mark apps at" in err
    return out, vmas


def test_mark_snapshot_follows_the_shape(tmp_path, workload):  # noqa: F811
    base, base_vmas, base_lost = record_held_whole(tmp_path, workload, "base", 0, 0)
    shaped, shaped_vmas, shaped_lost = record_held_whole(tmp_path, workload, "shaped", N, K)
    # a skipped run loses one object row: each count may be off by one per
    # row the two recordings may lack (0 in a run with none)
    slack = base_lost + shaped_lost
    reps = [report.build(load.load(str(p))) for p in (base, shaped)]
    snaps = [{s["label"]: s for s in r["snapshots"]} for r in reps]
    assert all({"mark-1", "apps"} <= set(s) for s in snaps)
    assert metadata(shaped)["schema_version"] >= 6

    def live(i, design, obj, label="apps"):
        return snaps[i][label]["designs"][design][obj]["live"]

    # VMAs: eager at the mark is what /proc lists for the held tree
    for i, vmas in ((0, base_vmas), (1, shaped_vmas)):
        o = reps[i]["objects"]["vm_area_struct"]
        assert abs(live(i, "eager", "vm_area_struct") - vmas) <= slack, (
            o["allocated"], o["freed_by_path"], o["freed_preexisting"], o["unmatched_frees"], slack)

    def diff(design, obj):
        return live(1, design, obj) - live(0, design, obj)

    expected = {
        # the parent's N faults; per child a clone_fork link, its own
        # anon_vma and AVC per region, and K faults of its own
        "eager": (N + F * (N + K), N + F * (2 * N + K)),
        # U1 upgrades the parent's regions at its first fork; the children's
        # own objects are never made (L1, L2)
        "lazy": (N, N + F * N),
        # the children opt out of their own faults
        "nofork": (N + F * N, N + 2 * F * N),
        # and of what the fork made for them, but for the clone_fork links
        "nofork_clone": (N, N + F * N),
    }
    for design, (av, avc) in expected.items():
        got = (diff(design, "anon_vma"), diff(design, "anon_vma_chain"))
        assert abs(got[0] - av) <= slack and abs(got[1] - avc) <= slack, (design, got, (av, avc), slack)
    # both marks are the same held moment
    for design in expected:
        assert live(1, design, "anon_vma", "mark-1") == live(1, design, "anon_vma")
    # and the Markdown's cover-letter table at that mark prints them
    from anonscope.analyzer import render
    md = md_text(render.render(reps[1], "markdown", "apps"))
    d = snaps[1]["apps"]["designs"]
    assert "snapshot `apps` (mark" in md
    row = f"| anon_vma | {d['eager']['anon_vma']['kb']:.1f} | {d['lazy']['anon_vma']['kb']:.1f} "
    assert row in md


def test_boot_unit_commands_record_and_mark_after_boot(tmp_path):
    """What the boot units run, run directly (no systemd boots here): the
    mark unit's command, started first as at a fast boot, waits for the
    recording unit's command; the recording stops at its size limit."""
    from click.testing import CliRunner

    from anonscope.collector import boot, cli
    from sysfiles import exec_start
    rec, units = tmp_path / "rec", tmp_path / "units"
    res = CliRunner().invoke(cli.boot, ["install", "-o", str(rec), "--unit-dir", str(units), "--no-enable",
                                        "--max-mb", "1"])
    assert res.exit_code == 0, res.output
    record = exec_start((units / boot.SERVICE).read_text())
    mark = exec_start((units / boot.MARK).read_text())
    # the size limit, made small enough to reach at the first commit
    record[record.index("--max-mb") + 1] = "0.001"
    env = dict(os.environ, ANONSCOPE_RUN_DIR=str(tmp_path / "run"))
    m = subprocess.Popen(mark, env=env, stderr=subprocess.PIPE, text=True)
    c = subprocess.run(record, cwd=rec, env=env, capture_output=True, text=True, timeout=300)
    assert c.returncode == 0, c.stderr
    _, merr = m.communicate(timeout=60)
    assert m.returncode == 0, merr
    (out,) = rec.glob("anonscope-*.parquet")
    meta = metadata(out)
    assert meta["stop_reason"] == "size-limit" and meta["target"]["mode"] == "system"
    assert meta["census"]["status"] == "done"
    rep = report.build(load.load(str(out)))
    snap = next(s for s in rep["snapshots"] if s["label"] == "after-boot")
    # asked for before recording started: at its start
    assert snap["source"] == "mark" and snap["ts_ns"] == 0


def test_slabinfo_beside_eager_on_a_real_recording(tmp_path, workload):  # noqa: F811
    """System-wide with a census: at every slab sample taken while
    recording, /proc/slabinfo's active anon_vmas and VMAs are eager's live
    count plus at most the free slots of the CPUs' slabs and sheaves, and
    never fewer beyond the churn (S6): both sides of the check hold on a
    real kernel, the count the census and the trace give is the kernel's."""
    out = tmp_path / "slab.parquet"
    proc, _ = start_recording(out, "-q", "--duration", "4", "--slab-interval", "0.5")
    subprocess.run([str(workload), "-n", "30", "-s", "5", "-m", "3", "-f", "4", "-t"], check=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    rep = report.build(load.load(str(out)))
    unvisited = metadata(out)["census"]["unvisited"]
    judged = 0
    for snap in rep["snapshots"]:
        s = snap.get("slabinfo")
        if not s:
            continue
        assert s["comparable"] is True
        for obj in ("anon_vma", "vm_area_struct"):
            c = s[obj]
            assert c["allowed_above"] is not None and c["consistent"] is not None or c["not_judged"], \
                (snap["label"], obj, c)
            if c["consistent"] is None:
                continue
            judged += 1
            # never below beyond the churn; above beyond the free slots only by
            # what the census did not see, which it then says (this host's pid 1)
            assert c["slabinfo_minus_eager"] >= -c["allowed_below"], (snap["label"], obj, c)
            if c["census_missed_at_least"] is not None:
                assert unvisited["count"] > 0, (snap["label"], obj, c)
    kfence = metadata(out)["kfence"]
    if kfence["enabled"] and kfence["num_objects"] is None:
        # KFENCE samples here and its pool size is unknown (no /boot/config-*,
        # as in the scripts/vm-test guests): below-side slack unknown, not judged
        assert all(s["slabinfo"][o]["not_judged"] in ("KFENCE pool size unknown", "read after recording stopped")
                   for s in rep["snapshots"] if s.get("slabinfo") for o in ("anon_vma", "vm_area_struct"))
    else:
        why = Counter(s["slabinfo"][o]["not_judged"] for s in rep["snapshots"] if s.get("slabinfo")
                      for o in ("anon_vma", "vm_area_struct"))
        # every sample read while recording is judged (under TCG the census
        # and the slow loop leave few in 4 s: at least the first)
        assert set(why) <= {None, "read after recording stopped"}, (judged, dict(why), kfence)
        assert judged >= (2 if hostcaps.emulated() else 2 * 6), (judged, dict(why), kfence)
    if unvisited["count"]:
        assert any("census did not visit" in w for w in rep["warnings"])
    meta = metadata(out)
    if "fs_cache" in (meta["slab_aliases"].get("anon_vma_chain") or []) and meta["alias_traffic"]["anon_vma_chain"]:
        # each of the workload's 4 process forks allocates an fs_struct from
        # fs_cachep (copy_fs() -> copy_fs_struct(), fs/fs_struct.c), merged
        # into anon_vma_chain's cache here, and its exit frees it: the
        # aliases' traffic (schema v8) holds at least those
        t = meta["alias_traffic"]["anon_vma_chain"]
        assert t["allocs"] >= 4 and t["frees"] >= 4, t
        assert t["frees"] <= meta["alias_frees_skipped"]
        assert rep["slabinfo"]["anon_vma_chain"]["alias_net_change"] == t["allocs"] - t["frees"]
    # the v8 meminfo columns: MemTotal is the machine's, as /proc/meminfo says now
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    slab = load.load(str(out)).slab
    assert set(slab["mem_total_kb"]) == {total} and (slab["mem_slab_kb"] > 0).all()


def record_prerun_tree(tmp_path, binary, name, n, k):
    """The held tree made before recording (`-p` of its parent: the census
    sees it), marked, released; (path, VMAs of the tree by /proc)."""
    tree = subprocess.Popen([str(binary), "-n", str(n), "-t", "-f", str(F), "-k", str(k), "-H"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out = tmp_path / f"{name}.parquet"
    coll = None
    try:
        assert wait_line(tree.stdout, 120).strip() == "ready"
        vmas = sum(maps_vmas(p) for p in [tree.pid] + children(tree.pid))
        coll, _ = start_recording(out, "-p", str(tree.pid))
        # the .partial file exists before recording starts (under TCG, long
        # before): `anoncollect mark --wait` waits until the collector
        # announces itself, which it does once it records
        m = subprocess.run(ANONCOLLECT + ["mark", "held", "--pid", str(coll.pid), "--wait", "300"],
                           capture_output=True, text=True, timeout=360)
        assert m.returncode == 0, m.stderr
        time.sleep(1.0)
        coll.send_signal(signal.SIGINT)
        _, err = coll.communicate(timeout=120)
        assert coll.returncode == 0, err
    finally:
        tree.communicate("\n", timeout=60)
        if coll is not None and coll.poll() is None:
            coll.kill()
    return out, vmas


def test_census_gives_the_same_live_counts_as_the_trace(tmp_path, workload):  # noqa: F811
    """The same held tree recorded twice: made in the run (`-- CMD`, every
    object traced) and made before it (`-p`, its objects from the census).
    At the mark eager's live counts agree exactly; the lazy and
    nofork_clone ranges of the census run contain the values the traced
    run gives (where the tree's history is known)."""
    traced, _, slack = record_held_whole(tmp_path, workload, "traced", N, K)
    census_run, vmas = record_prerun_tree(tmp_path, workload, "census", N, K)
    t = {s["label"]: s for s in report.build(load.load(str(traced)))["snapshots"]}["apps"]["designs"]
    rep = report.build(load.load(str(census_run)))
    assert metadata(census_run)["census"]["status"] == "done"
    c = {s["label"]: s for s in rep["snapshots"]}["held"]["designs"]
    slack += object_rows_lost(census_run)
    for obj in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        assert abs(c["eager"][obj]["live"] - t["eager"][obj]["live"]) <= slack, (obj, slack)
    assert c["eager"]["vm_area_struct"]["live"] == vmas
    # no-fork keeps MAP_PRIVATE file VMAs' objects (N5, the census knows
    # them); a tracepoint trace cannot tell them and counts them saved: at
    # most one anon_vma and one AVC per file VMA the census lists
    files = rep["census"]["file_vmas"] if metadata(traced)["backend"] == "tracepoint" else 0
    for design in ("lazy", "nofork_clone"):
        below = slack + (files if design == "nofork_clone" else 0)
        for obj in ("anon_vma", "anon_vma_chain"):
            lo, hi = c[design][obj]["live_range"]
            assert lo - below <= t[design][obj]["live"] <= (hi + slack if hi is not None else float("inf")), \
                (design, obj, slack, files)
