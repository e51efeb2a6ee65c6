"""Walk-cost section per design (docs/models.md#walks-recorded): walk rows
from the generator's own rmap (eventgen.Gen.walk), expected visits derived
from the scenario: eager from the chains; lazy and no-fork the same VMAs
(a walk through the folio's VMA still reaches every VMA mapping it), with
an unknown lock; CoW context = live descendants + 1, or 1 for an exclusive
folio."""

import math
import os

import pytest

from anonscope.analyzer import load, render, report
from eventgen import Gen
from mdtables import md_text
from scenarios import parent_and_children

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KSWAPD = 2


def build(g, tmp_path, name="run.parquet"):
    return report.build(load.load(g.write(str(tmp_path / name))))


def nearest_rank(values, p):
    v = sorted(values)
    return v[max(1, math.ceil(p / 100 * len(v))) - 1]


def pcts(values):
    return {"p50": nearest_rank(values, 50), "p99": nearest_rank(values, 99), "max": max(values)}


def hist(values):
    """bcc's log2 histogram of ``values``: [low, high, count] per power-of-two
    bucket (0; 1; 2-3; 4-7; ...) from the smallest value's to the largest's."""
    n = [v.bit_length() for v in values]
    return [[0 if k == 0 else 2 ** (k - 1), 0 if k == 0 else 2 ** k - 1, n.count(k)]
            for k in range(min(n), max(n) + 1)]


def fanout(V, C, K, E, wp, wc, fprobes=True):
    """Parent 100 faults V VMAs, forks C children; child k faults K VMAs of
    its own. kswapd walks every parent VMA (waiting wp ns for the root each
    time) and every child VMA (waiting wc ns); then E children exit and the
    parent VMAs are walked again (no wait)."""
    g = Gen(fprobes=fprobes)
    g.process(KSWAPD, "kswapd0")
    pv, cv = parent_and_children(g, V, C, K)
    kids = [200 + k for k in range(C)]
    visits = {"first": [g.walk(KSWAPD, v, lock_wait_ns=wp) for v in pv],
              "kids": [g.walk(KSWAPD, v, lock_wait_ns=wc) for v in cv]}
    for k in kids[:E]:
        g.exit(k)
    visits["after"] = [g.walk(KSWAPD, v) for v in pv]
    return g, visits


@pytest.mark.parametrize("V,C,K,E", [(4, 3, 1, 1), (10, 7, 2, 7), (1, 1, 1, 0), (30, 5, 3, 2)])
@pytest.mark.parametrize("fprobes", [True, False], ids=["exact", "estimate"])
def test_fanout(tmp_path, V, C, K, E, fprobes):
    wp, wc = 700, 50
    g, seen = fanout(V, C, K, E, wp, wc, fprobes)
    # the generator's own walks follow from the chains: the parent's folio
    # is in its root, which every child's copy links
    assert seen["first"] == [1 + C] * V and seen["kids"] == [1] * (C * K)
    assert seen["after"] == [1 + C - E] * V
    w = build(g, tmp_path)["walks"]
    n = 2 * V + C * K
    assert w["available"] and w["walks"] == n

    e = w["eager"]
    eager = [1 + C] * V + [1] * (C * K) + [1 + C - E] * V
    assert e["count"] == n and e["visits"] == pcts(eager) and e["avcs_visited"] == pcts(eager)
    assert e["unit"] == "VMA" and e["time_ns"] == pcts([3 * g.step] * n)
    assert e["visits_hist"] == hist(eager) and e["time_hist_ns"] == hist([3 * g.step] * n)
    assert e["lock_wait_ns"] == V * wp + C * K * wc
    assert e["lock_waits"] == e["lock_waits_matched"] == V + C * K
    assert e["by_kind"]["reclaim"]["count"] == n

    # lazy: the parent forked (its VMAs upgraded: as eager); the children's
    # own VMAs were never upgraded: walked through the VMA, lock unknown
    lz = w["lazy"]
    assert lz["lazy_walks"] == C * K and lz["lock_wait_unknown_walks"] == C * K
    assert lz["visits"] == pcts(eager)
    assert lz["lock_wait_ns"] == V * wp               # the walks that stay eager
    assert lz["time_walks"] == 2 * V and lz["time_hist_ns"] == hist([3 * g.step] * (2 * V))
    assert lz["lazy_state"].startswith("exact" if fprobes else "tracepoint estimate")

    # CoW context: live descendants + 1; the children's folios are exclusive
    # (mapped once: the draft stops at their own mm)
    cw = w["cow_context"]
    cow = [C + 1] * V + [1] * (C * K) + [C - E + 1] * V
    assert cw["unit"] == "mm" and cw["count"] == n and cw["visits"] == pcts(cow)
    assert cw["tree_lookups"] == pcts(cow) and cw["rmap_one_calls"] == pcts(eager)
    assert cw["exclusive_walks"] == C * K + (V if E == C else 0)
    assert cw["descendant_mms"] == pcts([c - 1 for c in cow])
    assert cw["lock_wait_ns"] is None and cw["time_ns"] == {"p50": None, "p99": None, "max": None}
    assert cw["visits_hist"] == hist(cow) and cw["time_hist_ns"] is None

    # nofork: children are leaves; their own folios go through their VMA
    for v in ("nofork", "nofork_clone"):
        nf = w[v]
        assert nf["leaf_walks"] == C * K and nf["lock_wait_ns"] == V * wp
        assert nf["visits"] == pcts(eager)


def adversarial(V, C):
    """domain.md: a parent with V VMAs forks C children, child k keeps only
    VMA k mod V; then one walk per parent VMA."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "parent")
    pv = g.faults(1, V)
    for k in range(C):
        child = 1000 + k
        g.fork(1, child, comm="child")
        keep = g.procs[child].vmas[k % V]
        for v in list(g.procs[child].vmas):
            if v is not keep:
                g.unmap(child, v)
    return g, [g.walk(KSWAPD, v) for v in pv]


@pytest.mark.parametrize("V,C", [(50, 50), (20, 40), (10, 3)])
def test_adversarial(tmp_path, V, C):
    """Eager walks visit the parent and the children that kept the VMA
    (2 when C = V); the CoW context visits all C + 1 mms."""
    g, seen = adversarial(V, C)
    kept = [1 + sum(1 for k in range(C) if k % V == i) for i in range(V)]
    assert seen == kept
    w = build(g, tmp_path)["walks"]
    assert w["eager"]["visits"] == pcts(kept)
    if C == V:
        assert w["eager"]["visits"] == {"p50": 2, "p99": 2, "max": 2}
    # a folio no child kept is exclusive: the draft stops at the parent's mm
    assert w["cow_context"]["visits"] == pcts([C + 1 if k > 1 else 1 for k in kept])
    assert w["cow_context"]["descendant_mms"]["max"] == C
    assert w["lazy"]["visits"] == pcts(kept) and w["lazy"]["lazy_walks"] == 0
    assert w["nofork"]["leaf_walks"] == 0


def test_lazy_walk_until_the_upgrade(tmp_path):
    """A child's folio (in its own anon_vma, inherited VMA) walks lazily
    until the child forks; then its VMA is upgraded and the walk is eager's."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "a")
    g.faults(1, 1)
    g.fork(1, 2)
    c = g.procs[2].vmas[0]
    before = g.walk(KSWAPD, c, lock_wait_ns=10)
    g.fork(2, 3)
    after = g.walk(KSWAPD, c, lock_wait_ns=1000)
    assert (before, after) == (1, 2)
    w = build(g, tmp_path)["walks"]
    assert w["lazy"]["lazy_walks"] == 1
    assert w["lazy"]["visits"] == pcts([1, 2])
    assert w["lazy"]["lock_wait_ns"] == 1000 and w["eager"]["lock_wait_ns"] == 1010
    assert w["lazy"]["lock_wait_unknown_walks"] == 1
    # the folio's context is the child's: itself and the grandchild after the fork
    assert w["cow_context"]["visits"] == pcts([1, 2])
    assert w["nofork"]["leaf_walks"] == 0          # fork-path anon_vma: kept (N2)


@pytest.mark.parametrize("order", [1, 2])
def test_a_large_folio_across_a_split_is_walked_in_both_pieces(tmp_path, order):
    """A leaf splits a faulted VMA; a large folio straddling the split maps
    into both pieces: every design that walks through the folio's VMA must
    visit both (the case a reviewer raised against "one VMA")."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(5, "leaf")
    v = g.fault(5)
    piece = g.split(5, v)
    assert g.walk(KSWAPD, v, order=order, straddles=[piece]) == 2
    w = build(g, tmp_path)["walks"]
    assert w["lazy"]["lazy_walks"] == 1 and w["lazy"]["visits"]["max"] == 2
    assert w["nofork"]["leaf_walks"] == 1 and w["nofork"]["visits"]["max"] == 2
    assert w["lazy"]["lock_wait_unknown_walks"] == 1


def test_walk_of_prerun_anon_vma(tmp_path):
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "old")
    pre = g.prerun_vma(1)
    g.fork(1, 2)
    assert g.walk(KSWAPD, pre) == 2
    w = build(g, tmp_path)["walks"]
    assert w["eager"]["visits"]["max"] == 2
    assert w["lazy"]["unknown_anon_vma"] == 1 and w["lazy"]["lazy_walks"] == 0
    assert w["cow_context"]["count"] == 0 and w["cow_context"]["unknown_context"] == 1


def test_rendered_sections(tmp_path):
    g, _ = fanout(3, 2, 1, 1, 100, 10)
    r = build(g, tmp_path)
    text = render.render(r, "text")
    assert "rmap walks per design" in text and "CoW context" in text
    md = md_text(render.render(r, "markdown"))
    assert "| design | walks | visits p50/p99/max | unit | time p50/p99/max | lock wait |" in md
    assert '"cow_context"' in render.render(r, "json")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "fixtures"))
                                        if f.endswith(".parquet")))
def test_fixtures_have_no_walks_and_say_so(name):
    r = report.build(load.load(os.path.join(ROOT, "fixtures", name)))
    assert r["walks"]["available"] is False and "not recorded" in r["walks"]["note"]
    assert r["locks"]["status"] in ("no waits", "recorded")
    assert "tracepoint_estimate" not in r["models"]["lazy"]
    for fmt in ("text", "markdown", "json"):
        render.render(r, fmt)


@pytest.mark.parametrize("V,C,K", [(4, 3, 1), (9, 2, 5)])
def test_call_rows(tmp_path, V, C, K):
    """anon_vma function calls: one __anon_vma_prepare per faulted VMA (2
    objects), one anon_vma_fork per parent VMA with an anon_vma and child
    (chain of 1 cloned + own anon_vma + AVC = 3 objects)."""
    g, _ = fanout(V, C, K, 0, 0, 0)
    c = build(g, tmp_path)["calls"]
    p, f = c["by_func"]["__anon_vma_prepare"], c["by_func"]["anon_vma_fork"]
    assert (p["calls"], p["objects"], p["reused"]) == (V + C * K, 2 * (V + C * K), 0)
    assert (f["calls"], f["objects"]) == (C * V, 3 * C * V)
    assert f["duration_ns"] == {"p50": g.step // 2, "p99": g.step // 2, "max": g.step // 2}
    assert "anon_vma_clone" not in c["by_func"]          # no split, merge or mremap


def remap_tree(F, M, C):
    """The parent faults an anonymous VMA, F MAP_PRIVATE file VMAs (CoW'd
    pages) and M VMAs it then moves with mremap (remap entries), forks C
    children (each copies all F + M), and the first child faults a region of
    its own: (generator, the anonymous VMA, the file VMAs, the child's)."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "parent")
    (anon,) = g.faults(1, 1)
    files = [g.fault(1, g.mmap(1, file=True)) for _ in range(F)]
    for v in g.faults(1, M):
        g.mremap(1, v)
    kids = [100 + k for k in range(C)]
    for k in kids:
        g.fork(1, k, comm="child")
    (own,) = g.faults(kids[0], 1)
    return g, anon, files, own


@pytest.mark.parametrize("F,M,C", [(2, 1, 3), (0, 2, 1), (3, 0, 4), (0, 0, 2)])
def test_cow_context_remap_lookups_are_bounded_by_the_entries_of_the_mms_walked(tmp_path, F, M, C):
    """C3: the parent has F MAP_PRIVATE file VMAs with CoW'd pages and M
    VMAs an mremap moved (remap entries), forks C children (each copies all
    F + M), and a child faults a region of its own. A walk of a parent
    folio visits the parent and the C children: at most (C + 1)(F + M)
    remap lookups, at least none (the folio's offset may be in no entry);
    the child's own folio is exclusive: at most its F + M. The walk rows
    carry no folio index here (before v8)."""
    g, anon, _, own = remap_tree(F, M, C)
    assert g.walk(KSWAPD, anon, index=False) == C + 1 and g.walk(KSWAPD, own, index=False) == 1
    cw = build(g, tmp_path)["walks"]["cow_context"]
    assert cw["remap_lookups"]["low"] == pcts([0, 0])
    assert cw["remap_lookups"]["high"] == pcts([(C + 1) * (F + M), F + M])
    assert cw["tree_lookups"] == pcts([C + 1, 1])


@pytest.mark.parametrize("F,M,C", [(2, 1, 3), (1, 2, 1), (3, 0, 2)])
def test_cow_context_remap_lookups_one_per_entry_covering_the_folio(tmp_path, F, M, C):
    """C3 with the folio's index (v8 walk rows' vm_pgoff): the same tree as
    above; a walk of a CoW'd page of the parent's first file VMA visits the
    parent and C children, and in each mm exactly one remap entry covers
    its offset (that file VMA's, or the child's copy of it): C + 1 lookups,
    low = high. A walk of the anonymous VMA's folio is covered by none (its
    offset is in no entry): 0; the child's own folio likewise."""
    g, anon, files, own = remap_tree(F, M, C)
    assert g.walk(KSWAPD, files[0]) == C + 1
    assert g.walk(KSWAPD, anon) == C + 1 and g.walk(KSWAPD, own) == 1
    cw = build(g, tmp_path)["walks"]["cow_context"]
    assert cw["remap_lookups"]["low"] == cw["remap_lookups"]["high"] == pcts([C + 1, 0, 0])


def test_cow_context_remap_lookups_unknown_without_the_vmas_before_the_run(tmp_path):
    """A system-wide recording without a census: the processes' VMAs from
    before the run (file VMAs, moved ones) are unknown, so is the bound."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "parent")
    (v,) = g.faults(1, 1)
    g.fork(1, 2)
    g.walk(KSWAPD, v)
    path = g.write(str(tmp_path / "r.parquet"), target={"mode": "system", "command": None, "pid": None, "comm": None})
    assert report.build(load.load(path))["walks"]["cow_context"]["remap_lookups"] is None


# --------------------------- CoW context: exec cuts and the C7 early exit


@pytest.mark.parametrize("fork_before_exec", [False, True], ids=["exec_then_fork", "fork_then_exec"])
def test_a_child_forked_after_its_parents_exec_is_not_in_the_old_subtree(tmp_path, fork_before_exec):
    """C6: A (V faulted VMAs) forks C and E; C execs and forks D. D's mm
    comes from C's new image when C exec'd first, so it is not in A's
    subtree; forked before C's exec, D copied A's VMAs (through C) and is.
    A walk of each of A's folios: eager visits A, E (and D); the CoW
    context looks up A's, E's (and D's) VMA trees; C left at its exec."""
    V = 3
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "A")
    pv = g.faults(1, V)
    g.fork(1, 10, comm="C")
    g.fork(1, 30, comm="E")
    if fork_before_exec:
        g.fork(10, 20, comm="D")
        g.exec(10)
    else:
        g.exec(10)
        g.fork(10, 20, comm="D")
    mapped = 3 if fork_before_exec else 2
    assert [g.walk(KSWAPD, v) for v in pv] == [mapped] * V
    cw = build(g, tmp_path)["walks"]["cow_context"]
    assert cw["tree_lookups"] == pcts([mapped] * V)
    assert cw["descendant_mms"]["max"] == mapped - 1


def test_an_exclusive_folio_mapped_only_by_a_child_is_a_range(tmp_path):
    """C7: A faults a VMA, forks C, then unmaps it: the folio (still in A's
    anon_vma, A's context) is mapped by C alone. One VMA visited: exclusive
    (folio_maybe_mapped_shared() false), but in C's mm, not A's, which the
    walk row cannot tell: the draft stops at A's mm at best (1 lookup) and
    walks the subtree (A and C: 2) at worst."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "A")
    v, other = g.faults(1, 2)
    g.fork(1, 10, comm="C")
    av = v.anon_vma
    g.unmap(1, v)
    assert g.walk(KSWAPD, v, anon_vma=av) == 1 and g.walk(KSWAPD, other) == 2
    cw = build(g, tmp_path)["walks"]["cow_context"]
    assert cw["tree_lookups"] == pcts([1, 2])
    assert cw["tree_lookups_high"] == pcts([2, 2])
    assert cw["exclusive_walks"] == 1


def test_a_context_that_exec_d_keeps_only_what_it_forked_before(tmp_path):
    """C6 for the context itself: A faults V VMAs, forks C and E, execs
    (a new image: a new root context) and forks D. A folio of A's old
    anon_vma is mapped by C's and E's copies: eager visits 2 VMAs; the CoW
    context looks up the old context's live subtree, C and E: 2, not A's
    new image nor D."""
    V = 2
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "A")
    pv = g.faults(1, V)
    avs = [v.anon_vma for v in pv]
    g.fork(1, 10, comm="C")
    g.fork(1, 30, comm="E")
    g.exec(1)
    g.fork(1, 20, comm="D")
    assert [g.walk(KSWAPD, v, anon_vma=av) for v, av in zip(pv, avs)] == [2] * V
    cw = build(g, tmp_path)["walks"]["cow_context"]
    assert cw["tree_lookups"] == pcts([2] * V) and cw["tree_lookups_high"] == pcts([2] * V)
