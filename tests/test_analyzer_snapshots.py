"""Live memory per design at snapshots (analyzer/snapshots.py,
docs/models.md#snapshots): counts at a mark derived by hand from the
scenario's parameters, for a tree made in the run and for one that existed
before it (the census)."""

import csv
import io

import pytest
from click.testing import CliRunner

from anonscope.analyzer import cli, load, render, report
from eventgen import SIZES, Gen
from mdtables import md_text

N, F, M = 4, 3, 2          # parent regions, children, regions each child faults
SLOT = {o: SIZES[o]["slab_size"] for o in SIZES}
LAZY_VMA_SLOT = 256        # 192 + the series' fields, SLAB_HWCACHE_ALIGN (rule X5)


def tree_in_run():
    """A parent faults N regions, forks F children that CoW every inherited
    region (no new objects: the copy has its own anon_vma), fault M regions
    of their own and stay alive; a mark; then the children exit."""
    g = Gen()
    g.process(1, "parent")
    regions = [g.fault(1) for _ in range(N)]
    for c in range(F):
        g.fork(1, 100 + c, "child")
    for c in range(F):
        kid = g.procs[100 + c]
        for v in kid.vmas:
            g.fault(100 + c, v)       # CoW of an inherited region: no rows
        g.faults(100 + c, M)
    live = g.mark("apps")
    for c in range(F):
        g.exit(100 + c)
    assert len(regions) == N
    return g, live


def snapshot(rep, label):
    return next(s for s in rep["snapshots"] if s["label"] == label)


def counts(snap, design):
    d = snap["designs"][design]
    return {o: d[o]["live"] for o in SLOT}


def build(g, tmp_path, name="snap.parquet", **meta):
    return report.build(load.load(g.write(str(tmp_path / name), **meta)))


def test_mark_in_a_tree_made_in_the_run(tmp_path):
    g, live = tree_in_run()
    rep = build(g, tmp_path)
    at = snapshot(rep, "apps")
    assert at["source"] == "mark"
    # eager: the parent's N, per child N copies + M own VMAs, its own
    # anon_vma per copy and per own region, N clone_fork links + N own
    # links + M fault AVCs
    eager = {"anon_vma": N + F * (N + M), "anon_vma_chain": N + F * (2 * N + M),
             "vm_area_struct": N + F * (N + M)}
    assert counts(at, "eager") == eager == live      # the simulated kernel agrees
    for o in SLOT:
        assert at["designs"]["eager"][o]["live_range"] == [eager[o], eager[o]]
        assert at["designs"]["eager"][o]["kb"] == round(eager[o] * SLOT[o] / 1024, 1)
    # lazy: the parent's regions upgraded at its first fork (U1), the
    # children's own objects never made (L1, L2), the clone_fork links kept
    lazy = {"anon_vma": N, "anon_vma_chain": N + F * N, "vm_area_struct": eager["vm_area_struct"]}
    assert counts(at, "lazy") == lazy
    assert at["designs"]["lazy"]["vm_area_struct"]["slot_bytes"] == LAZY_VMA_SLOT
    assert at["designs"]["lazy"]["vm_area_struct"]["kb"] == round(lazy["vm_area_struct"] * 256 / 1024, 1)
    # the range: objects every lazy variant makes (the clone_fork links) to eager
    assert at["designs"]["lazy"]["anon_vma_chain"]["live_range"] == [F * N, eager["anon_vma_chain"]]
    assert at["designs"]["lazy"]["anon_vma"]["live_range"] == [0, eager["anon_vma"]]
    # nofork: the leaf children's own faults opted out; what the fork made stays
    assert counts(at, "nofork") == {"anon_vma": N + F * N, "anon_vma_chain": N + 2 * F * N,
                                    "vm_area_struct": eager["vm_area_struct"]}
    # nofork_clone: the fork's own anon_vma and AVC per copy go too
    assert counts(at, "nofork_clone") == {"anon_vma": N, "anon_vma_chain": N + F * N,
                                          "vm_area_struct": eager["vm_area_struct"]}
    # the children are born and exit in the run: the whole-life-only variant agrees
    assert at["designs"]["nofork"]["anon_vma"]["live_range"] == [N + F * N] * 2
    end = snapshot(rep, "end")
    assert counts(end, "eager") == {"anon_vma": N, "anon_vma_chain": N, "vm_area_struct": N}
    assert counts(end, "lazy")["anon_vma"] == N and counts(end, "lazy")["anon_vma_chain"] == N


def test_census_tree_before_the_run(tmp_path):
    """A parent with N regions forked F children before the run (all
    alive); in the run each child faults M regions; a mark."""
    g = Gen(fprobes=True)
    g.process(1, "parent")
    for _ in range(N):
        g.prerun_vma(1)
    for c in range(F):
        g.prerun_fork(1, 100 + c, "child")
    g.census()
    for c in range(F):
        g.faults(100 + c, M)
    live = g.mark("apps")
    rep = build(g, tmp_path, target={"mode": "system", "command": None, "pid": None, "comm": None})
    at = snapshot(rep, "apps")
    eager = {"anon_vma": N + F * N + F * M, "anon_vma_chain": N + 2 * F * N + F * M,
             "vm_area_struct": N + F * N + F * M}
    assert counts(at, "eager") == eager == live
    assert all(at["designs"]["eager"][o]["live_range"] == [eager[o]] * 2 for o in SLOT)
    # what a lazy kernel holds: the parent's regions upgraded at its fork
    # before the run, the children's links into them; the children's own
    # anon_vmas and AVCs (before the run) and their faults (in it) not made
    truth = {"anon_vma": N, "anon_vma_chain": N + F * N}
    for design in ("lazy", "nofork_clone"):
        for o, v in truth.items():
            lo, hi = at["designs"][design][o]["live_range"]
            assert lo <= v <= hi, (design, o)
            assert lo == v            # C2/C3' upper bound: nothing upgraded since
            assert hi == eager[o]     # history unknown: as eager
    # nofork (opt-out after start): what the fork made before the run stays
    nf = {"anon_vma": N + F * N, "anon_vma_chain": N + 2 * F * N}
    for o, v in nf.items():
        lo, hi = at["designs"]["nofork"][o]["live_range"]
        assert lo <= v <= hi and at["designs"]["nofork"][o]["live"] == v


def test_without_census_eager_before_the_run_is_a_lower_bound(tmp_path):
    g = Gen()
    g.process(1, "p")
    old = [g.prerun_vma(1) for _ in range(3)]
    g.fault(1)
    g.mark("m")
    g.unmap(1, old[0])
    rep = build(g, tmp_path, target={"mode": "system", "command": None, "pid": None, "comm": None})
    at = snapshot(rep, "m")["designs"]["eager"]["anon_vma"]
    # 1 run object + the one older object known to be live (freed later)
    assert at["live"] is None and at["live_range"] == [2, None]


def test_csv_and_at(tmp_path):
    g, _ = tree_in_run()
    path = g.write(str(tmp_path / "r.parquet"))
    r = CliRunner()
    res = r.invoke(cli.main, ["report", path, "-o", str(tmp_path / "s.csv")])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO((tmp_path / "s.csv").read_text())))
    n_snaps = len(build(g, tmp_path, "again.parquet")["snapshots"])
    assert len(rows) == n_snaps * 4 * 3
    mark = [x for x in rows if x["label"] == "apps" and x["design"] == "lazy" and x["object"] == "anon_vma"]
    assert mark[0]["live"] == str(N) and mark[0]["source"] == "mark"
    res = r.invoke(cli.main, ["report", path, "--format", "markdown", "--at", "apps"])
    assert res.exit_code == 0
    kb_eager = round((N + F * (N + M)) * SLOT["anon_vma"] / 1024, 1)
    kb_lazy = round(N * SLOT["anon_vma"] / 1024, 1)
    assert f"| anon_vma | {kb_eager} | {kb_lazy} [0.0, {kb_eager}] |" in md_text(res.output)
    assert "snapshot `apps` (mark" in res.output
    res = r.invoke(cli.main, ["report", path, "--at", "nosuch"])
    assert res.exit_code == 2 and "no snapshot labelled 'nosuch'" in res.output


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_default_snapshot_is_the_last_mark(tmp_path, fmt):
    g, _ = tree_in_run()
    g.mark("later")
    res = CliRunner().invoke(cli.main, ["report", g.write(str(tmp_path / "r.parquet")), "--format", fmt])
    assert res.exit_code == 0
    assert "`later` (mark" in res.output


@pytest.mark.parametrize("fprobes", [False, True])
def test_lazy_high_end_holds_more_than_eager_where_eager_reused(tmp_path, fprobes):
    """B's fault reused its neighbour A's anon_vma (find_mergeable_anon_vma):
    eager holds one anon_vma for both. A lazy kernel upgrading both at the
    fork may reuse again (best) or allocate one for B (the high end, rule
    X6 / the one reuse rule): the range's top is eager plus that one."""
    g = Gen(fprobes=fprobes)
    g.process(1, "parent")
    a = g.fault(1)
    g.fault(1, reuse=a)
    g.fork(1, 2, "child")
    live = g.mark("m")
    d = snapshot(build(g, tmp_path), "m")["designs"]
    eager = 1 + 2                 # the shared one; the child's own per copy
    assert d["eager"]["anon_vma"]["live"] == eager == live["anon_vma"]
    assert d["lazy"]["anon_vma"]["live"] == 1
    assert d["lazy"]["anon_vma"]["live_range"][1] == eager + 1


def test_slabinfo_beside_eager(tmp_path):
    """System-wide with a census: at each slab sample eager's live count is
    printed beside slabinfo's active objects; above is per-CPU slabs and
    aliases, below beyond the census churn is a missed object: a warning."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    for _ in range(3):
        g.prerun_vma(1)
    g.census()
    g.faults(1, 2)
    cpu = {"anon_vma": 1, "vm_area_struct": 1}           # one partial slab on the CPUs' lists
    g.slab_sample(baseline={"anon_vma": 7}, cpu_partial=cpu)     # 7 free objects in a CPU's slab
    g.slab_sample(baseline={"anon_vma": -1}, cpu_partial=cpu)    # one fewer than eager holds
    # more free than 2 CPU slabs, the partial one and the sheaves hold: 3 x 21 + (2 x 2 + 10) x 32 = 511
    g.slab_sample(baseline={"vm_area_struct": 512}, cpu_partial=cpu)
    g.fault(1)
    g.slab_sample()                                       # read after the last recorded row: not judged
    rep = build(g, tmp_path, target={"mode": "system", "command": None, "pid": None, "comm": None})
    slabs = [s for s in rep["snapshots"] if s["source"] == "slab"]
    first, second = slabs[0]["slabinfo"], slabs[1]["slabinfo"]
    assert first["comparable"] is True
    assert first["anon_vma"] == {"active_objs": 5 + 7, "aliases": 0, "eager_live": 5,
                                 "slabinfo_minus_eager": 7, "consistent": True, "allowed_below": 0,
                                 "allowed_above": (2 + 1) * 39, "census_missed_at_least": None,
                                 "not_judged": None}
    assert first["vm_area_struct"]["allowed_above"] == (2 + 1) * 21 + (2 * 2 + 10 * 1) * 32
    assert first["anon_vma_chain"]["slabinfo_minus_eager"] == 0 and first["anon_vma_chain"]["aliases"] == 2
    assert second["anon_vma"]["consistent"] is False
    assert slabs[2]["slabinfo"]["vm_area_struct"]["consistent"] is False
    assert slabs[2]["slabinfo"]["vm_area_struct"]["census_missed_at_least"] == 1
    assert any("vm_area_struct at slab-3" in w and "at least 1 objects eager does not count" in w
               for w in rep["warnings"])
    assert slabs[3]["slabinfo"]["anon_vma"]["not_judged"] == "read after recording stopped"
    assert any("anon_vma at slab-2: /proc/slabinfo counts 4 active, eager 5 live" in w for w in rep["warnings"])


def test_census_saving_ends_at_the_first_fork(tmp_path):
    """P's N regions predate the run (fault roots, no child: C2
    candidates). Before P forks a lazy kernel would not hold them; its fork
    in the run upgrades them (U1); a no-fork design never saves them, P's
    generation forks."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    for _ in range(N):
        g.prerun_vma(1)
    g.census()
    g.mark("before-fork")
    g.fork(1, 2, "child")
    g.mark("after-fork")
    rep = build(g, tmp_path, target={"mode": "system", "command": None, "pid": None, "comm": None})
    before, after = snapshot(rep, "before-fork"), snapshot(rep, "after-fork")
    assert counts(before, "eager")["anon_vma"] == N and counts(after, "eager")["anon_vma"] == 2 * N
    assert counts(before, "lazy")["anon_vma"] == 0 and counts(before, "lazy")["anon_vma_chain"] == 0
    # upgraded at the fork: P's N pairs; the child: N clone_fork links, its own pair deferred (L2)
    assert counts(after, "lazy")["anon_vma"] == N and counts(after, "lazy")["anon_vma_chain"] == 2 * N
    assert after["designs"]["lazy"]["anon_vma"]["live_range"][0] == N
    assert counts(before, "nofork")["anon_vma"] == N == before["designs"]["nofork"]["anon_vma"]["live_range"][0]


def test_processes_the_census_did_not_visit(tmp_path):
    """Metadata census.unvisited (v6): a process with an address space the
    iterator did not visit (this host's pid 1): eager's count before the
    run leaves its objects out; the high end is unknown, and a warning names it."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    g.prerun_vma(1)
    g.census()
    g.census_meta["unvisited"] = {"count": 1, "processes": [{"pid": 7, "comm": "agent", "rss_anon_kb": 3136}]}
    g.mark("m")
    rep = build(g, tmp_path, target={"mode": "system", "command": None, "pid": None, "comm": None})
    av = snapshot(rep, "m")["designs"]["eager"]["anon_vma"]
    assert av["live"] == 1 and av["live_range"] == [1, None]
    assert any("did not visit 1 process(es)" in w and "pid 7 agent (3136 KB anon)" in w for w in rep["warnings"])


@pytest.mark.parametrize("N,F", [(3, 2), (1, 0)])
def test_denominators_at_each_snapshot(tmp_path, N, F):
    """Rule S7: the tree of tree_in_run's shape (a parent with N regions,
    F children) with a meminfo sample before the mark: at the mark each
    design's anon_vma + AVC bytes (live x slot) are given as a share of the
    sample's Slab, SUnreclaim, MemTotal and PageTables; the VMAs' bytes are
    added in with_vma_pct. A recording without meminfo has none."""
    mem = {"mem_total_kb": 24 << 20, "mem_slab_kb": 900_000, "mem_sunreclaim_kb": 300_000,
           "mem_page_tables_kb": 40_000}
    g = Gen()
    g.process(1, "parent")
    g.faults(1, N)
    for c in range(F):
        g.fork(1, 100 + c, "child")
    g.slab_sample(meminfo=mem)
    live = g.mark("apps")
    rep = build(g, tmp_path)
    snap = snapshot(rep, "apps")
    den = snap["denominators"]
    assert den["kb"] == {"MemTotal": mem["mem_total_kb"], "Slab": mem["mem_slab_kb"],
                         "SUnreclaim": mem["mem_sunreclaim_kb"], "PageTables": mem["mem_page_tables_kb"]}
    rmap = live["anon_vma"] * SLOT["anon_vma"] + live["anon_vma_chain"] * SLOT["anon_vma_chain"]
    vma = live["vm_area_struct"] * SLOT["vm_area_struct"]
    eager = den["designs"]["eager"]
    assert eager["rmap_bytes"] == rmap and eager["with_vma_bytes"] == rmap + vma
    assert eager["rmap_pct"]["Slab"] == pytest.approx(100.0 * rmap / (mem["mem_slab_kb"] * 1024), rel=1e-5)
    assert eager["with_vma_pct"]["MemTotal"] == pytest.approx(100.0 * (rmap + vma) / (mem["mem_total_kb"] << 10),
                                                              rel=1e-5)
    lazy = snap["designs"]["lazy"]
    lazy_rmap = sum(lazy[o]["live"] * lazy[o]["slot_bytes"] for o in ("anon_vma", "anon_vma_chain"))
    assert den["designs"]["lazy"]["rmap_bytes"] == lazy_rmap
    assert den["designs"]["lazy"]["saved_bytes"] == rmap - lazy_rmap
    assert den["designs"]["lazy"]["saved_pct"]["MemTotal"] == pytest.approx(
        100.0 * (rmap - lazy_rmap) / (mem["mem_total_kb"] << 10), rel=1e-5)
    slab_pct = f"{100.0 * rmap / (mem['mem_slab_kb'] * 1024):.3g}% of Slab"
    for out in (render.render_text(rep, at="apps"), render.render_markdown(rep, at="apps")):
        assert "Against the machine" in out and slab_pct in out
    g2 = Gen()
    g2.process(1, "p")
    g2.faults(1, N)
    g2.slab_sample()
    g2.mark("m")
    assert "denominators" not in snapshot(build(g2, tmp_path, name="plain.parquet"), "m")
