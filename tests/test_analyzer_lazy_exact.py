"""Exact per-VMA lazy replay on function-probe recordings
(docs/models.md#lazy-exact): expected numbers from the scenarios'
parameters, and the exact answer inside the tracepoint-only bounds computed
on the same recording (issue 4 item 5)."""

import pytest

import eventgen
import scenarios as M
from anonscope.analyzer import load, render, report
from eventgen import Gen

AV, AVC, VMA = "anon_vma", "anon_vma_chain", "vm_area_struct"


def fp(make, *args, **kw):
    """Run a scenario of test_analyzer_models with the function-probe generator."""
    orig = eventgen.Gen.__init__

    def init(self, *a, **k):
        k.setdefault("fprobes", True)
        orig(self, *a, **k)
    eventgen.Gen.__init__ = init
    try:
        return make(*args, **kw)
    finally:
        eventgen.Gen.__init__ = orig


def build(g, tmp_path, name="run.parquet"):
    return report.build(load.load(g.write(str(tmp_path / name))))


def lazy_of(g, tmp_path):
    r = build(g, tmp_path)
    lz = r["models"]["lazy"]
    assert lz["fidelity"] == "exact (function probes)"
    assert "tracepoint_estimate" in lz
    return r, lz, lz["tracepoint_estimate"]


def assert_within(lz, te):
    for o in (AV, AVC):
        lo, hi = te[o]["allocated_range"]
        assert lo <= lz[o]["allocated"] <= hi, (o, lz[o]["allocated"], lo, hi)
    u = te["upgrades"]
    total = lz["upgrades"]["fork"] + lz["upgrades"]["mremap"]
    assert u["fork_range"][0] + u["mremap_range"][0] <= total <= \
        u["fork_range"][1] + u["mremap_range"][1]
    assert all(te["exact_within_bounds"].values())


# ------------------------------------------------- same as the estimate

@pytest.mark.parametrize("V,N,C,K", [(7, 3, 5, 2), (1, 1, 1, 1), (12, 0, 3, 4)])
def test_zygote(tmp_path, V, N, C, K):
    r, lz, te = lazy_of(fp(M.zygote, V, N, C, K), tmp_path)
    assert lz[AV]["allocated"] == V and lz[AVC]["allocated"] == V + C * V
    assert lz[AV]["allocated_range"] == [V, V]
    assert lz["upgrades"]["fork"] == V and lz["upgrades"]["tokens"] == {"fork": V, "mremap": 0}
    assert lz[AV]["peak_live"] == V and lz[AVC]["peak_live"] == V + C * V
    v = lz["vmas"]
    assert v["by_birth"]["fault"] == V + C * K and v["by_birth"]["inherited"] == C * V
    assert v["tokens_upgraded"] == V and v["unattributed_objects"] == 0
    assert (te[AV]["allocated"], te[AVC]["allocated"]) == (V, V + C * V)
    assert_within(lz, te)


@pytest.mark.parametrize("VA,VB,VC,VD", [(3, 2, 1, 4), (1, 1, 1, 1)])
def test_chain(tmp_path, VA, VB, VC, VD):
    _, lz, te = lazy_of(fp(M.chain, VA, VB, VC, VD), tmp_path)
    own = 3 * VA + 2 * VB + VC
    clones = 6 * VA + 3 * VB + VC
    assert lz["upgrades"]["fork"] == own
    assert lz[AV]["allocated"] == own and lz[AVC]["allocated"] == own + clones
    assert_within(lz, te)


@pytest.mark.parametrize("F,S,Mg,X", [(10, 4, 3, 2), (3, 0, 0, 3)])
def test_split_merge_leaf(tmp_path, F, S, Mg, X):
    _, lz, te = lazy_of(fp(M.split_merge, F, S, Mg, X), tmp_path)
    # a leaf: every token stays lazy, its pieces join it (L1, L3)
    assert lz[AV]["allocated"] == 0 and lz[AVC]["allocated"] == 0
    assert lz[AVC]["allocated_range"] == [0, 0]          # the estimate's was [0, S + X]
    assert te[AVC]["allocated_range"] == [0, S + X]
    assert lz["vmas"]["by_birth"]["piece"] == S + X
    assert_within(lz, te)


@pytest.mark.parametrize("F,R,G", [(4, 5, 3), (6, 2, 10)])
def test_mremap_heavy(tmp_path, F, R, G):
    _, lz, te = lazy_of(fp(M.mremap_heavy, F, R, G), tmp_path)
    assert lz["upgrades"]["mremap"] == F and lz["upgrades"]["fork"] == 0
    assert lz[AV]["allocated"] == F and lz[AVC]["allocated"] == F + F * R
    assert lz[AVC]["peak_live"] == F + 1
    assert lz["vmas"]["by_birth"]["mremap_copy"] == F * R
    assert_within(lz, te)


def test_prerun_parent_vmas_give_the_range(tmp_path):
    """domain.md's example with 3 parent VMAs from before the run: their lazy
    state is unknown, so the high end adds their upgrade at the first fork."""
    V, pre, C = 107, 3, 10
    _, lz, te = lazy_of(fp(M.zygote, V, 0, C, 0, prerun=pre), tmp_path)
    assert lz[AV]["allocated"] == V and lz[AVC]["allocated"] == V + C * (V + pre)
    assert lz[AV]["allocated_range"] == [V, V + pre]
    assert lz["upgrades"]["fork_range"] == [V, V + pre]
    assert lz["vmas"]["prerun_parent_vmas_at_first_fork"] == pre
    assert round(lz["saved_pct"][AV]) == 91 and round(lz["saved_pct"][AVC]) == 48
    assert_within(lz, te)


# ------------------------------------------------- where the VMA matters

def child_split_fork(V):
    """Parent faults V VMAs and forks a child; the child splits each
    inherited VMA once and forks a grandchild; all but the parent exit."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    g.faults(1, V)
    g.fork(1, 2)
    for v in list(g.procs[2].vmas):
        g.split(2, v)
    g.fork(2, 3)
    g.exit(3)
    g.exit(2)
    return g


@pytest.mark.parametrize("V", [1, 3, 8])
def test_split_of_inherited_vma(tmp_path, V):
    """An inherited VMA's chain has 2 AVCs (the parent's anon_vma and the
    child's own); its split copies both in eager, but in the lazy kernel the
    child has no own anon_vma: the piece copies 1 and joins the token. At
    the child's fork, 2V VMAs (V inherited + V pieces) are upgraded. The
    tracepoint estimate now follows the same rule (L3: one AVC per split
    call deferred, the n-1 links into the parent's tree kept) and agrees;
    its high end keeps every split AVC and gives each piece an anon_vma."""
    _, lz, te = lazy_of(child_split_fork(V), tmp_path)
    assert lz["upgrades"]["fork"] == V + 2 * V
    assert lz["upgrades"]["tokens"]["fork"] == 2 * V
    assert lz[AV]["allocated"] == 2 * V
    # parent upgrades V, clone_fork V, split copies kept V, child's fork
    # upgrades 2V, grandchild's clone_fork 2V VMAs x chain 2
    assert lz[AVC]["allocated"] == V + V + V + 2 * V + 4 * V
    assert te["upgrades"]["fork"] == 3 * V and te["upgrades"]["fork_range"] == [3 * V, 3 * V]
    assert te[AVC]["allocated"] == 9 * V and te[AVC]["allocated_range"] == [9 * V, 10 * V]
    assert te[AV]["allocated"] == 2 * V and te[AV]["allocated_range"] == [2 * V, 3 * V]
    assert_within(lz, te)


@pytest.mark.parametrize("F", [1, 4])
def test_mremap_of_split_piece_upgrades_the_token(tmp_path, F):
    """F VMAs split, the new piece of each moved, then a fork. The exact
    replay follows W4: moving a piece upgrades its whole token (one
    anon_vma, one AVC per piece) at the mremap, so the fork has nothing left
    to upgrade. The estimate (U2) upgrades the moved piece with an anon_vma
    of its own and the left piece at the fork: 2F anon_vmas, inside [F, 2F]."""
    g = Gen(fprobes=True)
    g.process(70, "p")
    for v in g.faults(70, F):
        g.mremap(70, g.split(70, v))
    g.fork(70, 71)
    g.exit(71)
    _, lz, te = lazy_of(g, tmp_path)
    assert lz["upgrades"]["mremap"] == 2 * F and lz["upgrades"]["fork"] == 0
    assert lz[AV]["allocated"] == F
    assert lz[AVC]["allocated"] == 2 * F + F + 2 * F      # upgrades, mremap copies, clone_fork
    assert te[AV]["allocated"] == 2 * F and te[AV]["allocated_range"] == [F, 2 * F]
    assert_within(lz, te)


def test_a_reused_neighbour_upgrade_reuses_at_best_and_allocates_at_the_high_end(tmp_path):
    """Eager: VMA b reuses neighbour a's anon_vma (find_mergeable_anon_vma).
    Lazy: both are lazy tokens, upgraded at the fork; the series does not say
    whether b's upgrade reuses a's anon_vma again or allocates one (rule X6,
    the same rule as the estimate's U1): best 1 anon_vma, high 2."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    a = g.fault(1)
    g.fault(1, g.mmap(1), reuse=a)
    g.fork(1, 2)
    g.exit(2)
    r, lz, te = lazy_of(g, tmp_path)
    assert r["models"]["eager"][AV]["allocated"] == 1 + 2
    assert lz[AV]["allocated"] == 1 and lz[AV]["allocated_range"] == [1, 2]
    assert lz[AVC]["allocated"] == 2 + 2
    assert lz[AV]["peak_live"] == 1
    assert te[AV]["allocated"] == 1 and te[AV]["allocated_range"] == [1, 2]
    assert_within(lz, te)


def test_unattributed_objects_are_kept(tmp_path):
    """Objects without vma_id (made outside the probed functions) are kept
    as in eager and counted."""
    g = fp(M.zygote, 3, 0, 2, 0)
    v = g.mmap(100)
    n0 = len(g.rows)
    g.fault(100, v)
    for row in g.rows[n0:]:
        row.pop("vma_id", None)
    r, lz, _ = lazy_of(g, tmp_path)
    assert lz["vmas"]["unattributed_objects"] == 2
    assert lz[AV]["allocated"] == 3 + 1 and lz[AVC]["allocated"] == 3 + 2 * 3 + 1


def test_report_formats_and_keys(tmp_path):
    r, lz, _ = lazy_of(fp(M.zygote, 4, 1, 3, 1), tmp_path)
    for o in (AV, AVC):
        for k in ("allocated", "bytes", "allocated_range"):
            assert k in lz[o]
    assert set(lz["saved_pct"]) == {AV, AVC}
    assert {"fork", "mremap"} <= set(lz["upgrades"])
    assert lz["extra_costs"]["repointed_pages"]["fidelity"].startswith("exact for fork upgrades")
    text = render.render(r, "text")
    assert "exact (function probes)" in text
    assert "lazy is the exact per-VMA replay" in text and "exact within its bounds: yes" in text
    md = render.render(r, "markdown")
    assert "exact per-VMA replay (function probes" in md


# ------------------------------------------------------ re-pointed pages

def test_repointed_pages_are_the_pages_copied_at_the_upgrading_fork(tmp_path):
    """Three VMAs with 2, 5 and 7 pages written; the first fork upgrades all
    three tokens and copy_page_range copies 14 pages; a second fork finds
    them upgraded (nothing re-pointed, though 14 pages are copied again);
    a VMA faulted after it (3 pages) is upgraded at the third fork."""
    g = Gen(fprobes=True)
    g.process(1)
    vmas = [g.fault(1, pages=n) for n in (2, 5, 7)]
    g.fork(1, 2)
    g.fork(1, 3)
    late = g.fault(1, pages=3)
    g.fork(1, 4)
    rp = lazy_of(g, tmp_path)[1]["extra_costs"]["repointed_pages"]
    assert rp["fork"] == sum(v.pages for v in vmas) + late.pages == 17
    assert rp["fork_range"] == [17, 17]
    assert rp["per_fork_upgrade"] == {"p50": 3, "p99": 7, "max": 7}
    assert rp["fork_upgrades_without_copy_row"] == 0
    assert rp["mremap"] is None and rp["mremap_upper_bound"] == 0


@pytest.mark.parametrize("pages", [(3,), (2, 6)])
def test_repointed_pages_of_an_inherited_root_are_a_range(tmp_path, pages):
    """A child that forks upgrades the VMAs it inherited; the grandchild's
    copy counts every page, but the ones the child still shares with its
    parent point at the parent's (upgraded) anon_vma: [0, pages] for those,
    exact for the parent's own fault roots."""
    g = Gen(fprobes=True)
    g.process(1)
    for n in pages:
        g.fault(1, pages=n)
    g.fork(1, 2)
    g.fork(2, 3)
    rp = lazy_of(g, tmp_path)[1]["extra_costs"]["repointed_pages"]
    assert rp["fork"] == sum(pages)                       # the parent's fault roots, at its fork
    assert rp["fork_inherited_roots_upper"] == sum(pages)  # the child's inherited ones, at its fork
    assert rp["fork_range"] == [sum(pages), 2 * sum(pages)]


def test_mremap_upgrades_get_a_size_bound_only(tmp_path):
    g = Gen(fprobes=True)
    g.process(1)
    v = g.fault(1, pages=4)
    g.mremap(1, v)
    rp = lazy_of(g, tmp_path)[1]["extra_costs"]["repointed_pages"]
    assert rp["fork"] == 0 and rp["mremap"] is None
    assert rp["mremap_upper_bound"] == 1  # eventgen's call rows span one page


def test_no_copy_rows_is_not_measurable(tmp_path):
    g = Gen(fprobes=True)
    g.process(1)
    g.fault(1, pages=4)
    g.fork(1, 2)
    g.rows = [r for r in g.rows if r.get("func") != "copy_page_range"]
    probes = [p for p in g.probes() if "copy_page_range" not in p["name"]]  # schema v3: no such probe
    r = report.build(load.load(g.write(str(tmp_path / "v3.parquet"), probes=probes)))
    rp = r["models"]["lazy"]["extra_costs"]["repointed_pages"]
    assert rp["fork"] is None and rp["fidelity"] == "not measurable"


@pytest.mark.parametrize("V,D,W", [(5, 1, 1), (4, 0, 3), (3, 3, 0)])
def test_fork_upgrades_only_what_it_copies(tmp_path, V, D, W):
    """dup_mmap() skips VM_DONTCOPY VMAs and gives a VM_WIPEONFORK copy no
    anon_vma (no anon_vma_fork): only the V - D - W VMAs it copies with their
    anon_vma are upgraded at the fork (rule X6); the others stay lazy."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    vmas = g.faults(1, V)
    g.fork(1, 2, dontcopy=vmas[:D], wipeonfork=vmas[D:D + W])
    g.exit(2)
    r, lz, te = lazy_of(g, tmp_path)
    copied = V - D - W
    e = r["models"]["eager"]
    assert (e[AV]["allocated"], e[AVC]["allocated"]) == (V + copied, V + 2 * copied)
    assert lz["upgrades"]["fork"] == copied
    assert lz[AV]["allocated"] == copied and lz[AVC]["allocated"] == 2 * copied
    # the tracepoint estimate (U1) knows no VMA, but the fork's copied
    # clone_fork AVCs (one per copied VMA, chains of one) cap its upgrades
    assert te["upgrades"]["fork"] == copied
    assert (te[AV]["allocated"], te[AVC]["allocated"]) == (copied, 2 * copied)
    assert_within(lz, te)


@pytest.mark.parametrize("A,F", [(3, 2), (0, 4), (5, 0)])
def test_file_vmas_are_split_out_with_an_eager_variant(tmp_path, A, F):
    """A process that never forks: every token is saved under lazy. Of those,
    F map a file (MAP_PRIVATE, CoW pages): the savings are split by kind, and
    the series' minimal variant (file VMAs eager, rule X8) keeps their F
    anon_vmas and AVCs."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    for _ in range(A):
        g.fault(1)
    for _ in range(F):
        g.fault(1, g.mmap(1, file=True))
    _, lz, _ = lazy_of(g, tmp_path)
    fv = lz["file_vmas"]
    assert fv["tokens"] == {"anon": A, "file": F}
    assert fv["saved"][AV] == {"anon": A, "file": F} and fv["saved"][AVC] == {"anon": A, "file": F}
    assert lz[AV]["allocated"] == 0
    assert fv["file_vmas_eager"] == ({AV: F, AVC: F} if F else None)


def split_roots(V):
    """A process faults V VMAs and splits each once: (generator, the roots)."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    roots = g.faults(1, V)
    for v in roots:
        g.split(1, v)
    return g, roots


@pytest.mark.parametrize("V", [1, 3])
def test_a_root_vma_merged_away_stays_pinned_at_the_snapshot(tmp_path, V):
    """Each of V faulted roots is split; a fresh neighbour absorbs the root
    part (vma_expand: it clones the root's chain, caller merge; the root VMA
    is freed) and the piece stays. Under lazy the piece's folios still point
    at the root VMA (rule X9): at a mark the lazy VMA count is eager's 2V
    (pieces and neighbours) plus the V pinned roots; after the exit none."""
    g, roots = split_roots(V)
    for v in roots:
        g.merge(1, g.mmap(1), v)
    live = g.mark("merged")
    g.exit(1)
    r, lz, _ = lazy_of(g, tmp_path)
    pinned = lz["extra_costs"]["pinned_root_vmas"]
    assert (pinned["count"], pinned["peak_live"], pinned["live_at_end"]) == (V, V, 0)
    snap = next(s for s in r["snapshots"] if s["label"] == "merged")["designs"]
    assert snap["eager"]["vm_area_struct"]["live"] == live["vm_area_struct"] == 2 * V
    assert snap["lazy"]["vm_area_struct"]["live"] == 3 * V


@pytest.mark.parametrize("V", [1, 4])
def test_a_root_vma_unmapped_under_its_pieces_stays_pinned(tmp_path, V):
    """A leaf splits each of V faulted VMAs and unmaps the root part, keeping
    the piece: under lazy the piece's folios point at the root VMA, which
    stays allocated (rule X9) until the piece goes at the exit."""
    g, roots = split_roots(V)
    for v in roots:
        g.unmap(1, v)
    g.exit(1)
    _, lz, _ = lazy_of(g, tmp_path)
    pinned = lz["extra_costs"]["pinned_root_vmas"]
    assert pinned["count"] == V and pinned["peak_live"] == V and pinned["live_at_end"] == 0
    assert pinned["peak_live_bytes"] == V * lz["vma_growth"]["slot_bytes"][1]


@pytest.mark.parametrize("V", [1, 4])
def test_pinned_root_vmas_count_in_lazy_vma_peak(tmp_path, V):
    """X9 in the VMA peak: after the V roots are unmapped under their pieces
    the leaf maps V new VMAs; eager's peak is the split (the V new ones take
    the roots' place), lazy's holds the V pinned roots beside the V pieces
    and the V new VMAs: V more."""
    g, roots = split_roots(V)
    for v in roots:
        g.unmap(1, v)
    g.faults(1, V)
    g.exit(1)
    r, lz, _ = lazy_of(g, tmp_path)
    e = r["models"]["eager"][VMA]
    assert lz[VMA]["peak_live"] == e["peak_live"] + V
    assert lz[VMA]["peak_live_bytes"] == (e["peak_live"] + V) * lz["vma_growth"]["slot_bytes"][1]
    # no-fork's extra cost, high end (N8, lazy's design): the growth of the
    # run's VMAs at their peak plus the V pinned roots at the grown slot
    g = lz["vma_growth"]
    for v in ("nofork", "nofork_clone"):
        x = r["models"][v]["extra_costs"]
        assert x["pinned_vmas_peak_bytes_range"] == [0, V * g["slot_bytes"][1]]
        assert x["slab_bytes_range"] == [0, g["peak_extra_bytes"] + V * g["slot_bytes"][1]]
