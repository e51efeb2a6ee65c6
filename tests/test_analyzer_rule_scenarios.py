"""Scenario tests of single rules of docs/models.md (project issue #10, items
1, 3, 4, 15 and 18): each expected number is derived from the scenario's
parameters and the cited rule, never pasted from a run."""

import re

import pytest

from anonscope.analyzer import render
from eventgen import SIZES, Gen
from scenarios import AV, AVC, VMA, build, zygote

DESIGNS = ("eager", "lazy", "nofork", "nofork_clone")
NOFORK = ("nofork", "nofork_clone")
SYSTEM = {"mode": "system", "command": None, "pid": None, "comm": None}


def _counts(r, design):
    """(anon_vmas, AVCs) allocated by ``design``, best value."""
    m = r["models"][design]
    return m[AV]["allocated"], m[AVC]["allocated"]


# ------------------------------------------- item 1: a leaf splits inherited VMAs


def fork_chain_leaf_splits(V, D, F, fprobes):
    """Process 1 (alive before the run) faults V VMAs; 1 forks 2, 2 forks 3,
    ..., D forks D + 1 (a chain of D process forks); the leaf D + 1 faults F
    VMAs of its own, splits each of its V inherited VMAs and each of its F
    own ones once, then exits."""
    g = Gen(fprobes=fprobes)
    g.process(1, "root")
    g.faults(1, V)
    for k in range(1, D + 1):
        g.fork(k, k + 1, comm=f"gen{k + 1}")
    leaf = D + 1
    inherited = list(g.procs[leaf].vmas)
    own = g.faults(leaf, F)
    for v in inherited + own:
        g.split(leaf, v)
    g.exit(leaf)
    return g


@pytest.mark.parametrize("fprobes", [False, True], ids=["tracepoint", "fprobes"])
@pytest.mark.parametrize("V,D,F", [(3, 1, 0), (3, 2, 0), (4, 3, 2), (1, 1, 5), (2, 4, 1)])
def test_leaf_split_of_inherited_vma_keeps_links_to_ancestors(tmp_path, V, D, F, fprobes):
    """Rules N2 and N4' (docs/models.md#nofork-rules), with E2/E3 for eager.

    After the D-th fork of the chain an inherited VMA of the leaf has a chain
    of n = D + 1 AVCs (one per anon_vma: the root's and one per fork), so a
    split of it clones n AVCs (E3). N2: under nofork and nofork_clone the
    clone drops at most the link to the VMA's own anon_vma and keeps n - 1 = D
    (nofork's high end keeps that link too),
    which link the piece into its ancestors' anon_vmas. A split of one of the
    leaf's own faulted VMAs clones a chain of 1 and keeps 0. N1 saves the
    leaf's F fault pairs; N4 keeps the leaf's own fork-path anon_vma and AVC
    per inherited VMA under nofork, nofork_clone drops them; N4' keeps every
    clone_fork AVC in both. The forking ancestors keep everything (N6).

    The auditor's case V=3, D=1, F=0: eager AVCs = V faults + V clone_fork +
    V own fork AVCs + 2V split clones = 15; nofork drops one per split call,
    15 - V = 12; nofork_clone also the V own fork AVCs, 12 - V = 9.
    """
    r = build(fork_chain_leaf_splits(V, D, F, fprobes), tmp_path)
    n = D + 1
    clone_fork = V * sum(range(1, D + 1))      # fork k copies chains of length k
    e_av = V + D * V + F                       # root faults, one own anon_vma per fork and VMA, leaf faults
    e_avc = V + clone_fork + D * V + F + V * n + F * 1
    o = r["objects"]
    assert o[AVC]["allocated"]["clone_vma"] == V * n + F
    assert o[AVC]["clone_vma_callers"]["split"] == V * n + F
    assert _counts(r, "eager") == (e_av, e_avc)

    # nofork: the leaf's faults (N1) and one AVC per split call (N2) go
    split_kept = V * (n - 1) + F * 0
    nf_av = e_av - F
    nf_avc = e_avc - F - (V + F)
    assert nf_avc == V + clone_fork + D * V + split_kept
    assert _counts(r, "nofork") == (nf_av, nf_avc)
    nf = r["models"]["nofork"]
    assert nf[AVC]["saved"] == F + V + F and nf[AV]["saved"] == F
    # nofork_clone: also the leaf's own anon_vma and AVC of each of its V
    # anon_vma_fork() calls (N4); the clone_fork links stay (N4')
    nc = r["models"]["nofork_clone"]
    assert _counts(r, "nofork_clone") == (nf_av - V, nf_avc - V)
    assert nc[AVC]["saved"] == F + V + F + V and nc[AV]["saved"] == F + V
    # the leaf is born by a fork and exits in the run: its whole life is in
    # it, so the high end saves the same (section 3.2), but for N2's high
    # end under nofork: each of the V splits of an inherited VMA keeps its
    # link to the VMA's own fork anon_vma (nofork keeps that anon_vma, N4,
    # and CoW copies made there before the opt-out must stay findable); a
    # split of one of the F own VMAs (a chain of one) still saves its AVC.
    # On a tracepoint recording the high end saves only the F fault pairs,
    # whose stacks say anonymous (anon_fault): a split's or a fork's rows do
    # not tell whether their VMA maps a file (N5)
    for v in NOFORK:
        m = r["models"][v]
        own_link = V if v == "nofork" else 0
        high = (m[AV]["allocated"], m[AVC]["allocated"] + own_link) if fprobes else (e_av - F, e_avc - F)
        assert m[AV]["allocated_range"] == [m[AV]["allocated"], high[0]]
        assert m[AVC]["allocated_range"] == [m[AVC]["allocated"], high[1]]
        assert m["generations"]["leaf"] == 1 and m["generations"]["forking"] == D
    if (V, D, F) == (3, 1, 0):
        assert (nf_avc, nf_avc - V) == (12, 9)
    # lazy, L3 (and X4 with function probes) drops the same one link per
    # split of the never-forking leaf and keeps n - 1; every forking
    # generation upgrades what it copies at its fork (U1/X6): one anon_vma
    # and one AVC per VMA per fork, the clone_fork AVCs stay (L4)
    assert _counts(r, "lazy") == (D * V, D * V + clone_fork + split_kept)


# ---------------------------------- item 4: file and mremap-moved VMAs are kept


def leaf_with_file_and_moved_vmas(V, K, M, fprobes, fault_stacks=True):
    """A fork server 1 with no anonymous VMAs forks the leaf 2, which maps V
    VMAs, K of them MAP_PRIVATE file mappings, writes to each (a first
    anonymous fault: the file VMAs' CoW pages are anonymous), moves M of its
    V - K anonymous ones by mremap once, then exits. ``fault_stacks``: the
    fault rows name the fault handler (schema v10, where kallsyms has it)."""
    assert K <= V and M <= V - K
    g = Gen(fprobes=fprobes, fault_stacks=fault_stacks)
    g.process(1, "server")
    g.fork(1, 2, comm="leaf")
    for _ in range(K):
        g.fault(2, g.mmap(2, file=True))
    anon = g.faults(2, V - K)
    for v in anon[:M]:
        g.mremap(2, v)
    g.exit(2)
    return g


@pytest.mark.parametrize("V,K,M", [(7, 3, 2), (5, 5, 0), (4, 0, 4), (6, 1, 0), (9, 2, 3)])
def test_nofork_keeps_file_and_moved_vmas_on_function_probes(tmp_path, V, K, M):
    """Rule N5 (docs/models.md#nofork-rules), with N1 and N3.

    Neither no-fork design has a folio-to-VMA way back for a MAP_PRIVATE
    file VMA or a VMA moved by mremap, so on a function-probe recording
    (``vma_file`` on the call rows, the mremap copy's ``src_vma_id``) such a
    VMA keeps its fault anon_vma and AVC; the mremap copy's AVC is kept
    too (N3). Eager: V fault pairs and M copy AVCs (chains of one). Both
    no-fork designs keep K + M anon_vmas and K + 2M AVCs and save the other
    V - K - M fault pairs (N1); the leaf's whole life is in the run, so
    best = high. The parent had no anonymous VMA: its fork made nothing, so
    nofork_clone has nothing more to save.
    """
    r = build(leaf_with_file_and_moved_vmas(V, K, M, fprobes=True), tmp_path)
    assert _counts(r, "eager") == (V, V + M)
    for v in NOFORK:
        m = r["models"][v]
        assert _counts(r, v) == (K + M, K + 2 * M)
        assert m[AV]["allocated_range"] == [K + M, K + M]
        assert m[AVC]["allocated_range"] == [K + 2 * M, K + 2 * M]
        assert m[AV]["saved"] == V - K - M and m[AVC]["saved"] == V - K - M
        # the kept rows: the K file VMAs' fault pairs, the M moved sources'
        assert m["kept_vmas"] == {"file_vma_objects": 2 * K, "moved_vma_objects": 2 * M}
        assert "file and mremap-moved VMAs kept" in m[AV]["fidelity"]


@pytest.mark.parametrize("V,K,M", [(7, 3, 2), (5, 5, 0), (4, 0, 4)])
def test_tracepoints_tell_file_vmas_by_the_fault_stack(tmp_path, V, K, M):
    """Rule N5 and section 3.2 (docs/models.md#nofork-bounds): on a
    tracepoint recording a file VMA's fault row has do_fault() on its stack
    (``cow_fault``), an anonymous one's do_anonymous_page() (``anon_fault``),
    so the run gives the function-probe numbers: K + M anon_vmas and K + 2M
    AVCs kept at both ends, the K file VMAs' pairs and the M moved VMAs'
    (found as U2 finds its source) counted as kept."""
    r = build(leaf_with_file_and_moved_vmas(V, K, M, fprobes=False), tmp_path)
    assert _counts(r, "eager") == (V, V + M)
    kinds = r["objects"][AV]["fault_vma_kinds"]
    assert kinds == {"anon_fault": V - K, "cow_fault": K, "unknown": 0}
    for v in NOFORK:
        m = r["models"][v]
        assert m[AV]["allocated_range"] == [K + M, K + M]
        assert m[AVC]["allocated_range"] == [K + 2 * M, K + 2 * M]
        assert m["kept_vmas"] == {"file_vma_objects": 2 * K, "moved_vma_objects": 2 * M}
        assert "cow_fault" in m[AV]["fidelity"]


@pytest.mark.parametrize("V,K,M", [(7, 3, 2), (5, 5, 0), (4, 0, 4)])
def test_without_fault_stacks_the_high_end_keeps_every_fault(tmp_path, V, K, M):
    """Section 3.2: when the fault rows do not name their handler (a kernel
    that inlines do_anonymous_page() and do_fault(), or a recording before
    schema v10), no event tells a file VMA: best counts the K file VMAs'
    pairs as saved (M, 2M kept: the moved VMAs), and the high end, which
    must be a bound, keeps every fault pair: eager's V and V + M."""
    r = build(leaf_with_file_and_moved_vmas(V, K, M, fprobes=False, fault_stacks=False), tmp_path)
    assert r["objects"][AV]["fault_vma_kinds"] == {"anon_fault": 0, "cow_fault": 0, "unknown": V}
    for v in NOFORK:
        m = r["models"][v]
        assert m[AV]["allocated_range"] == [M, V]
        assert m[AVC]["allocated_range"] == [2 * M, V + M]
        assert m["kept_vmas"] == {"file_vma_objects": 0, "moved_vma_objects": 2 * M}


@pytest.mark.parametrize("V", [1, 4])
def test_a_partial_move_keeps_the_generations_faults_at_the_high_end(tmp_path, V):
    """Section 3.2 on a tracepoint recording: the leaf faults V anonymous
    VMAs, splits the first and moves the piece (a partial mremap: the first
    AVC it frees after the copy is the piece's split clone, not a fault
    pair), so the moved VMA's fault pair is not found. Best still saves the
    V fault pairs and the split's one AVC (N1, N2) and keeps the copy's
    AVC (N3): 0 anon_vmas, 1 AVC. The high end must be a bound: the moved
    VMA shares a fault anon_vma N5 keeps, and which one is unknown, so it
    keeps every fault row of the generation, and the split link with them:
    eager's V anon_vmas and V + 2 AVCs."""
    g = Gen()
    g.process(1, "server")
    g.fork(1, 2, comm="leaf")
    vmas = g.faults(2, V)
    g.mremap(2, g.split(2, vmas[0]))
    g.exit(2)
    r = build(g, tmp_path)
    assert _counts(r, "eager") == (V, V + 2)
    for v in NOFORK:
        m = r["models"][v]
        assert m[AV]["allocated_range"] == [0, V]
        assert m[AVC]["allocated_range"] == [1, V + 2]


@pytest.mark.parametrize("V", [1, 3])
def test_a_move_after_a_fork_and_an_exec_is_a_new_generations(tmp_path, V):
    """Rules L5, U2 and N5 per generation: process 2 forks (3, which exits),
    execs, and its new generation, which never forks, faults V anonymous
    VMAs and moves the first. The exec gave it a new mm, so the fork before
    it does not count (L5): lazy defers the V fault pairs and upgrades the
    moved one at the mremap (U2): 1 anon_vma, 2 AVCs with the copy's (L6).
    No-fork finds the moved VMA's pair and keeps it with the copy's AVC (N5,
    N3) at both ends: 1 and 2."""
    g = Gen()
    g.process(1, "server")
    g.fork(1, 2, comm="worker")
    g.fork(2, 3, comm="helper")
    g.exit(3)
    g.exec(2)
    vmas = g.faults(2, V)
    g.mremap(2, vmas[0])
    g.exit(2)
    r = build(g, tmp_path)
    assert _counts(r, "eager") == (V, V + 1)
    assert _counts(r, "lazy") == (1, 2) and r["models"]["lazy"]["upgrades"]["mremap"] == 1
    for v in NOFORK:
        m = r["models"][v]
        assert m[AV]["allocated_range"] == [1, 1] and m[AVC]["allocated_range"] == [2, 2], v


@pytest.mark.parametrize("stacks", [True, False], ids=["v10", "no-stacks"])
@pytest.mark.parametrize("V,K,M", [(7, 3, 2), (5, 5, 0), (4, 0, 4)])
def test_lazy_estimate_splits_file_vmas_by_the_fault_stack(tmp_path, V, K, M, stacks):
    """X8 on a tracepoint recording (docs/models.md#lazy-bounds, item 9).
    The leaf never forks, so lazy defers all V fault pairs (L1) and makes M
    anon_vmas and 2M AVCs (the mremap upgrades, U2, and the copies' AVCs,
    L6). It saves the other V - M pairs: V - K - M anonymous, K of file
    VMAs. The series' minimal variant (file VMAs eager) makes the K file
    pairs too. Without fault stacks every fault is of unknown kind: the
    variant is the range [best, best + V - M]."""
    r = build(leaf_with_file_and_moved_vmas(V, K, M, fprobes=False, fault_stacks=stacks), tmp_path)
    lz = r["models"]["lazy"]
    assert _counts(r, "lazy") == (M, 2 * M)
    fv = lz["file_vmas"]
    if stacks:
        assert fv["tokens"] == {"anon": V - K, "file": K, "unknown": 0}
        saved = {"anon": V - K - M, "file": K, "unknown": 0, "not_fault": 0}
        assert fv["file_vmas_eager"] == {AV: [M + K] * 2, AVC: [2 * M + K] * 2}
    else:
        assert fv["tokens"] == {"anon": 0, "file": 0, "unknown": V}
        saved = {"anon": 0, "file": 0, "unknown": V - M, "not_fault": 0}
        assert fv["file_vmas_eager"] == {AV: [M, V], AVC: [2 * M, V + M]}
    assert fv["saved"] == {AV: saved, AVC: saved}
    # what best does not make of eager's rows, less what it makes beyond them
    for obj in (AV, AVC):
        e, best = r["models"]["eager"][obj]["allocated"], lz[obj]["allocated"]
        assert sum(fv["saved"][obj].values()) - fv["made_beyond_eager"][obj] == e - best
    # the text and Markdown reports say the same
    line = "anon_vmas saved by VMA kind: " + ", ".join(f"{k} {v}" for k, v in saved.items())
    for fmt in ("text", "markdown"):
        assert line in render.render(r, fmt)


@pytest.mark.parametrize("V,C,K", [(3, 2, 1), (1, 4, 0)])
def test_lazy_estimate_fork_savings_are_of_unknown_kind(tmp_path, V, C, K):
    """X8 on a tracepoint recording: a parent with V faulted VMAs forks C
    children that fault K each and exit (scenarios.zygote). Lazy upgrades
    the parent's V pairs at its first fork (U1) and saves each child's own
    fork pair per inherited VMA (L2: C V, rows that do not say whether the
    VMA maps a file) and its K fault pairs (anonymous). The minimal variant
    is [V, V + C V] anon_vmas."""
    r = build(zygote(V, 0, C, K), tmp_path)
    fv = r["models"]["lazy"]["file_vmas"]
    saved = {"anon": C * K, "file": 0, "unknown": 0, "not_fault": C * V}
    assert fv["saved"] == {AV: saved, AVC: saved}
    # lazy makes V anon_vmas and V + C V AVCs (the clone_fork links, L4)
    assert fv["file_vmas_eager"] == {AV: [V, V + C * V], AVC: [V + C * V, V + 2 * C * V]}
    assert "with file VMAs eager (the series' minimal variant): anon_vma " + (
        f"[{V}, {V + C * V}]" if C * V else f"{V}") in render.render(r, "text")


# --------------------------------------- item 15: `other` allocations are kept


def other_allocs(pid, g, n_av, n_avc):
    """Allocations from the anon_vma and anon_vma_chain caches at a call site
    the collector does not know (``path = other``), never freed."""
    for _ in range(n_av):
        g._alloc(pid, AV, "other")
    for _ in range(n_avc):
        g._alloc(pid, AVC, "other")


@pytest.mark.parametrize("fprobes", [False, True], ids=["tracepoint", "fprobes"])
@pytest.mark.parametrize("V,K,PA,PC,LA,LC", [(3, 2, 1, 1, 2, 3), (1, 0, 0, 0, 1, 1), (4, 3, 2, 0, 0, 2)])
def test_other_path_is_counted_and_kept_by_every_design(tmp_path, V, K, PA, PC, LA, LC, fprobes):
    """Rule E5 (docs/models.md#eager), and L7, N7, X7 and S4 for the designs.

    Process 1 (alive before the run) faults V VMAs, allocates PA anon_vmas
    and PC AVCs at an unknown call site (``other``), forks the leaf 2, which
    faults K VMAs, allocates LA anon_vmas and LC AVCs at an unknown site and
    exits. Eager counts every ``other`` allocation (E5); no design can tell
    what an ``other`` object is, so lazy (L7; X7 on function probes: no
    ``vma_id``), nofork and nofork_clone (N7) keep all of them, in best and
    in both ends of the range, and lazy does not upgrade them at the fork
    (U1 upgrades deferred objects only). Without them the numbers are those
    of the fork: eager V + K + V anon_vmas, V + K + 2V AVCs; lazy V and 2V
    (the parent's V upgrades, the V clone_fork AVCs); nofork drops the
    leaf's K fault pairs; nofork_clone also its V own fork pairs.
    """
    g = Gen(fprobes=fprobes)
    g.process(1, "server")
    g.faults(1, V)
    other_allocs(1, g, PA, PC)
    g.fork(1, 2, comm="leaf")
    g.faults(2, K)
    other_allocs(2, g, LA, LC)
    g.exit(2)
    r = build(g, tmp_path)
    oa, oc = PA + LA, PC + LC
    o = r["objects"]
    assert o[AV]["allocated"] == {"fault": V + K, "fork": V, "clone_fork": 0, "clone_vma": 0, "other": oa}
    assert o[AVC]["allocated"] == {"fault": V + K, "fork": V, "clone_fork": V, "clone_vma": 0, "other": oc}
    # nothing frees them: live at the end with the parent's V fault pairs
    assert o[AV]["live_at_end"] == V + oa and o[AVC]["live_at_end"] == V + oc
    without = {"eager": (V + K + V, V + K + 2 * V), "lazy": (V, 2 * V),
               "nofork": (V + V, V + 2 * V), "nofork_clone": (V, 2 * V)}
    # (on a tracepoint recording nofork_clone's high end keeps the leaf's V
    # own fork pairs: their VMAs' kind is unknown, N5)
    high = dict(without, nofork_clone=without["nofork_clone" if fprobes else "nofork"])
    for d in DESIGNS:
        m = r["models"][d]
        want = (without[d][0] + oa, without[d][1] + oc)
        assert _counts(r, d) == want, d
        assert m[AV]["allocated_range"] == [want[0], high[d][0] + oa], d
        assert m[AVC]["allocated_range"] == [want[1], high[d][1] + oc], d
    # eager's saving is what each design does not make: the `other` rows
    # are in none of it
    for d in NOFORK:
        m = r["models"][d]
        assert m[AV]["saved"] == without["eager"][0] - without[d][0]
        assert m[AVC]["saved"] == without["eager"][1] - without[d][1]
    assert r["models"]["lazy"]["upgrades"]["fork"] == V
    if fprobes:
        assert r["models"]["lazy"]["vmas"]["unattributed_objects"] == oa + oc
    # at the end (S4, docs/models.md#snapshots) every design holds the
    # parent's V pairs and every `other` object; lazy's low end is "as if
    # nothing were upgraded" (the parent's V upgrades go) but still keeps
    # every `other` object
    end = r["snapshots"][-1]["designs"]
    for d in DESIGNS:
        low = 0 if d == "lazy" else V
        assert end[d][AV]["live"] == V + oa and end[d][AVC]["live"] == V + oc, d
        assert end[d][AV]["live_range"] == [low + oa, V + oa], d
        assert end[d][AVC]["live_range"] == [low + oc, V + oc], d
    assert not any("fork_pairs" in w for w in r["warnings"])


# ----------------------------------------- item 18: the slabinfo cross-check


def slab_lagging(T, b0, B):
    """Process 5 faults T VMAs between two slab samples; every cache's
    ``active_objs`` is the simulated live count plus a baseline of b0 at the
    first sample and b0 - B at the second (slabinfo lagging the trace by B,
    e.g. per-CPU slabs), so slabinfo's change is T - B < T."""
    assert b0 - B + T >= 0
    g = Gen()
    g.process(5, "p")
    g.slab_sample({o: b0 for o in (AV, AVC, VMA)})
    g.faults(5, T)
    g.slab_sample({o: b0 - B for o in (AV, AVC, VMA)})
    return g


_OVERSTATES = re.compile(r"overstates(?: AVCs)? by \[(-?\d+), (-?\d+)\]")


@pytest.mark.parametrize("T,b0,B", [(9, 10, 15), (9, 10, 4), (5, 0, 3), (4, 2, 2)])
def test_slabinfo_overstatement_is_never_negative(tmp_path, T, b0, B):
    """Slabinfo cross-check (docs/models.md#eager, section 1).

    System-wide run: active_first = b0, active_last = T + b0 - B, the trace's
    net change T and T run objects live at the last sample. Slabinfo minus
    our objects is [active_last - active_first - T, active_last - T] =
    [-B, b0 - B]: a naive overstatement (the difference) is -B < 0.
    slabinfo_overstates_range is that range cut at 0, [0, max(b0 - B, 0)],
    in JSON, in bytes and in every rendered line.
    """
    r = build(slab_lagging(T, b0, B), tmp_path, target=SYSTEM)
    s = r["slabinfo"]
    assert s["mode"] == "system" and s["samples"] == 2
    hi = max(b0 - B, 0)
    for obj in (AV, AVC, VMA):
        c = s[obj]
        assert (c["active_first"], c["active_last"]) == (b0, T + b0 - B)
        assert c["slab_change"] == T - B and c["traced_change"] == T
        assert c["difference"] == -B
        assert c["run_objects_live_at_last_sample"] == T
        assert c["slabinfo_minus_traced_range"] == [-B, b0 - B]
        assert c["slabinfo_overstates_range"] == [0, hi]
        assert c["slabinfo_overstates_bytes_range"] == [0, hi * SIZES[obj]["slab_size"]]
    printed = []
    for fmt in ("text", "markdown"):
        printed += _OVERSTATES.findall(render.render(r, fmt))
    assert len(printed) >= 3                     # every cache in text, the AVC note in markdown
    assert all(int(lo) >= 0 and int(h) >= 0 for lo, h in printed)
    assert all((int(lo), int(h)) == (0, hi) for lo, h in printed)


@pytest.mark.parametrize("target", [
    {"mode": "pid", "command": None, "pid": 5, "comm": None},
    {"mode": "comm", "command": None, "pid": None, "comm": "p"},
    {"mode": "command", "command": "p", "pid": None, "comm": None},
], ids=["pid", "comm", "command"])
@pytest.mark.parametrize("T,b0,B", [(9, 10, 15), (9, 10, 4)])
def test_slabinfo_filtered_run_checks_nothing(tmp_path, target, T, b0, B):
    """Slabinfo cross-check (docs/models.md#eager, section 1) and S6
    (docs/models.md#snapshots): in a ``-p``, ``--comm`` or command run
    (metadata ``target.mode`` pid, comm, command) slabinfo still counts the
    whole system, so the report says the cross-check checks nothing and why,
    gives no overstatement (not even a clipped one) and prints "not traced"
    instead; the per-sample S6 comparison is not comparable. The raw
    differences are still there: -B for every cache, as in the system run.
    """
    mode = target["mode"]
    r = build(slab_lagging(T, b0, B), tmp_path, target=target)
    s = r["slabinfo"]
    assert s["mode"] == mode
    assert s["checks"].startswith("nothing of slabinfo's error") and f"recorded {mode}" in s["checks"]
    for obj in (AV, AVC, VMA):
        c = s[obj]
        assert c["difference"] == -B and c["slabinfo_minus_traced_range"] == [-B, b0 - B]
        assert "slabinfo_overstates_range" not in c and "slabinfo_overstates_bytes_range" not in c
        assert c["fidelity"] == "not a check: the trace covers only the recorded " + mode
    text = render.render(r, "text")
    assert f"{mode} run: checks nothing of slabinfo's error" in text
    assert text.count("the rest of the system is not traced") == 3
    assert "overstates" not in text
    assert "overstates" not in render.render(r, "markdown")
    samples = [snap["slabinfo"] for snap in r["snapshots"] if "slabinfo" in snap]
    assert len(samples) == 2
    for sample in samples:
        assert sample["comparable"] is False
        assert sample["note"].startswith("not comparable") and f"only the recorded {mode}" in sample["note"]
        for obj in (AV, AVC, VMA):
            assert sample[obj]["consistent"] is None and sample[obj]["census_missed_at_least"] is None


# ------------------------------- item 3: a fault made through another process


def remote_writes(V, R, fprobes):
    """A debugger (process 1, alive before the run, never forks) writes into
    R of the V VMAs that its target (process 2) maps in the run, first
    (ptrace POKEDATA: the fault runs in the debugger's task on the target's
    VMA); the target faults the other V - R itself, forks a child that
    exits at once, and exits."""
    g = Gen(fprobes=fprobes)
    g.process(1, "gdb")
    g.process(2, "target")
    vmas = [g.mmap(2) for _ in range(V)]
    for v in vmas[:R]:
        g.fault(2, v, by=1)
    for v in vmas[R:]:
        g.fault(2, v)
    g.fork(2, 3, comm="child")
    g.exit(3)
    g.exit(2)
    return g


@pytest.mark.parametrize("fprobes", [False, True], ids=["tracepoint", "fprobes"])
@pytest.mark.parametrize("V,R", [(4, 1), (3, 3), (5, 0)])
def test_a_fault_through_another_process_belongs_to_the_vma_process(tmp_path, V, R, fprobes):
    """Rule N0' (docs/models.md#nofork-rules; analyzer/mmowner.py): on a
    function-probe recording the R anon_vmas and AVCs the debugger's task
    made serve the target's VMAs (``vma_id``, whose ``vm_area_struct`` rows
    the target wrote): the target owns all V pairs, and as a forking process
    keeps them under both no-fork designs (N6); nofork_clone saves only the
    leaf child's own anon_vma per inherited VMA (N4), V. Tracepoint rows
    cannot tell: the R pairs stay the debugger's, a leaf, and both no-fork
    designs save them too (the limit the rule states)."""
    r = build(remote_writes(V, R, fprobes), tmp_path)
    procs = {p["tgid"]: p for p in r["processes"]["by_process"]}
    own = {t: (p["anon_vma"], p["anon_vma_chain"]) for t, p in procs.items()}
    target = V if fprobes else V - R
    assert own[2] == (target, target)
    assert r["processes"]["faults_through_another_process"] == (2 * R if fprobes else 0)
    text = render.render_text(r)
    md = render.render_markdown(r)
    for out in (text, md):
        assert (f"{2 * R} fault rows made through another process" in out) == bool(fprobes and R)
    assert own.get(1, (0, 0)) == ((0, 0) if fprobes else (R, R))
    for v, child_own in (("nofork", 0), ("nofork_clone", V)):
        assert r["models"][v][AV]["saved"] == child_own + (0 if fprobes else R), v


@pytest.mark.parametrize("T,gone", [(2, None), (3, None), (2, "exit")])
def test_a_fault_through_another_process_in_a_vma_from_before_the_run(tmp_path, T, gone):
    """Rule N0', VMAs from before the run: the target (process 2, alive
    before the run with one VMA that has an anon_vma, so the census names
    its mm) has T text VMAs without one; a debugger attaches and writes a
    breakpoint into each (a remote first fault: rows in the debugger's task,
    the call row names the target's mm). The census's process of that mm
    owns the T pairs, so the forking target keeps them under nofork. When
    the target has exited first, the mm id may name a new mm: with nothing
    else known of that mm (process 4 here has no row of its own, as when its
    rows were lost) the rows stay the debugger's."""
    g = Gen(fprobes=True)
    g.process(1, "gdb")
    g.process(2, "target")
    g.prerun_vma(2)
    texts = [g.prerun_vma(2, anon=False) for _ in range(T)]
    g.census()
    if gone:
        g.exit(2)
        g.process(4, "target2")
        g.procs[4].mm = g.procs[2].mm             # the freed mm's address again
        texts = [g.prerun_vma(4, anon=False) for _ in range(T)]
    owner = 4 if gone else 2
    for v in texts:
        g.fault(owner, v, by=1)
    g.fork(owner, 3, comm="child")
    g.exit(3)
    r = build(g, tmp_path)
    own = {p["tgid"]: (p["anon_vma"], p["anon_vma_chain"]) for p in r["processes"]["by_process"]}
    if gone:
        assert own[1] == (T, T)
    else:
        assert own[2] == (T, T) and 1 not in own
        assert r["models"]["nofork"][AV]["saved"] == 0


# ------------------------------- item 18: the merged cache's own traffic


@pytest.mark.parametrize("T,a0,A,Fr", [(6, 40, 25, 10), (3, 5, 2, 7), (0, 0, 0, 0)])
def test_slabinfo_counts_the_merged_cache_aliases_traffic(tmp_path, T, a0, A, Fr):
    """Slabinfo cross-check with a merged AVC cache (docs/models.md#eager,
    section 1; schema v8 ``alias_traffic``). System-wide: the AVC cache's
    aliases hold a0 objects at the first sample; while recording they
    allocate A and free Fr (the kernel's counters); we make T AVCs. The
    difference slabinfo's change minus ours is the aliases' A - Fr, so
    ``difference_with_aliases`` is 0; the unmerged caches have no entry;
    before v8 (no counters) the fields are null."""
    def run(name, **meta):
        g = Gen()
        g.process(1, "p")
        g.slab_sample(alias_objects=a0)
        g.faults(1, T)
        g.slab_sample(alias_objects=a0 + A - Fr)
        return build(g, tmp_path, name=name, target=SYSTEM, **meta)

    r = run("v8.parquet", alias_traffic={AV: None, AVC: {"allocs": A, "frees": Fr}, VMA: None})
    c = r["slabinfo"][AVC]
    assert c["difference"] == A - Fr
    assert c["alias_traffic"] == {"allocs": A, "frees": Fr} and c["alias_net_change"] == A - Fr
    assert c["difference_with_aliases"] == 0
    assert "alias_traffic" not in r["slabinfo"][AV]
    old = run("v7.parquet", alias_traffic=None)["slabinfo"][AVC]
    assert old["alias_traffic"] is None and old["difference_with_aliases"] is None


@pytest.mark.parametrize("V", [1, 3])
def test_a_vma_split_by_another_process_stays_its_mms(tmp_path, V):
    """Rule N0': the target (process 2) maps and faults one VMA, then maps
    V more; a userfaultfd monitor (process 1) registers a range of each
    (UFFDIO_REGISTER splits them: the pieces' ``dup`` rows are the
    monitor's), and the target's first write in each piece is its own
    fault. A ``dup`` birth is not trusted: the piece's mm (its call row's
    ``mm_id``) is the one the target's mmap'd VMA named, so the target owns
    all 1 + V anon_vmas and nothing counts as made through another
    process."""
    g = Gen(fprobes=True)
    g.process(1, "monitor")
    g.process(2, "target")
    g.faults(2, 1)
    pieces = [g.split(2, g.mmap(2), by=1) for _ in range(V)]
    for p in pieces:
        g.fault(2, p)
    r = build(g, tmp_path)
    own = {p["tgid"]: (p["anon_vma"], p["anon_vma_chain"]) for p in r["processes"]["by_process"]}
    assert own == {2: (1 + V, 1 + V)}
    assert r["processes"]["faults_through_another_process"] == 0


def test_a_vfork_childs_mapping_stays_its_parents(tmp_path):
    """Rule N0': a vfork child maps a VMA in its parent's mm and execs; the
    parent then faults in it: the VMA's birth (the child's ``alloc`` row
    before its exec) is the parent's, so is the fault, and it was not made
    through another process."""
    g = Gen(fprobes=True)
    g.process(1, "shell")
    g.vfork(1, 2, "child")
    v = g.mmap(2)
    g.exec(2)
    g.procs[1].vmas.append(v)
    g.fault(1, v)
    r = build(g, tmp_path)
    own = {p["tgid"]: (p["anon_vma"], p["anon_vma_chain"]) for p in r["processes"]["by_process"]}
    assert own[1] == (1, 1) and 2 not in own
    assert r["processes"]["faults_through_another_process"] == 0


def test_unknown_sites_of_a_merged_cache_are_an_upper_bound_on_what_is_missing(tmp_path):
    """E5's limits: in a merged cache an allocation at an unknown call site
    may be an alias's object; the A allocations the kernel counted there
    (metadata alias_traffic) are not counted, and the report says at most A
    AVCs are missing, in text and Markdown; the unmerged caches' unknown
    sites are counted as `other`."""
    A, F = 7, 3
    g = Gen()
    g.process(1, "p")
    g.faults(1, F)
    r = build(g, tmp_path, alias_traffic={AVC: {"allocs": A, "frees": A - 1}, AV: None, VMA: None})
    u = r["objects"][AVC]["unknown_sites"]
    assert u == {"other": 0, "merged_cache_allocs": A, "cache_known": True}
    assert r["objects"][AV]["unknown_sites"]["merged_cache_allocs"] is None
    assert sum(r["objects"][AVC]["allocated"].values()) == F
    for fmt in ("text", "markdown"):
        assert f"at most {A} missing" in render.render(r, fmt)


def test_a_kernel_without_the_cache_argument_says_unknown_sites_are_not_recorded(tmp_path):
    """Before 6.0 kmem_cache_alloc passes no cache (b347aa7b5747): the
    collector sizes objects from bytes_req/bytes_alloc (its probe reason)
    and cannot record an unknown site's allocation; the report says so."""
    g = Gen()
    g.process(1, "p")
    g.faults(1, 2)
    probes = [{"name": "raw_tracepoint:kmem_cache_alloc", "attached": True,
               "reason": "object allocations; sizes from bytes_req/bytes_alloc"}]
    r = build(g, tmp_path, probes=probes)
    assert all(r["objects"][o]["unknown_sites"]["cache_known"] is False for o in (AV, AVC, VMA))
    assert "passes no cache on this kernel" in render.render(r, "text")


@pytest.mark.parametrize("fprobes", [False, True], ids=["tracepoint", "fprobes"])
@pytest.mark.parametrize("V", [1, 3])
def test_a_merge_into_an_inherited_vma_clones_its_chain(tmp_path, V, fprobes):
    """N2 for merges: a leaf (a fork of 1) merges an unfaulted VMA of its
    own with each of its V inherited VMAs: dup_anon_vma() clones the chain
    of 2 (the parent's anon_vma and the leaf's own). nofork's best drops the
    own link of each call (V AVCs), its high end keeps both; nofork_clone
    drops the own link at both ends (on a tracepoint recording its high end
    keeps everything: neither a merge's nor a fork's rows tell whether the
    VMA maps a file, N5). A merge is never one AVC per row."""
    g = Gen(fprobes=fprobes)
    g.process(1, "root")
    g.faults(1, V)
    g.fork(1, 2, comm="leaf")
    for v in list(g.procs[2].vmas):
        g.merge(2, g.mmap(2), v)
    g.exit(2)
    r = build(g, tmp_path)
    assert r["objects"][AVC]["clone_vma_callers"]["merge"] == 2 * V
    e = r["models"]["eager"][AVC]["allocated"]
    assert r["models"]["nofork"][AVC]["allocated_range"] == [e - V, e]
    own_fork = V                                   # N4: the leaf's own fork AVC per VMA
    assert r["models"]["nofork_clone"][AVC]["allocated_range"] == [e - V - own_fork, e - V - own_fork if fprobes else e]
