"""Scenario tests: expected numbers derived from each scenario's parameters
and the rules in docs/models.md (never pasted from a run)."""

import pytest

from eventgen import SIZES, Gen
from scenarios import AV, AVC, VMA, build, chain, fork_chain, models, mremap_heavy, pct, split_merge, zygote

# ----------------------------------------------------------------- zygote


@pytest.mark.parametrize("V,N,C,K", [(7, 3, 5, 2), (20, 0, 12, 0), (1, 1, 1, 1)])
def test_zygote(tmp_path, V, N, C, K):
    r = build(zygote(V, N, C, K), tmp_path)
    o = r["objects"]
    assert o[AV]["allocated"] == {"fault": V + C * K, "fork": C * V, "clone_fork": 0,
                                  "clone_vma": 0, "other": 0}
    assert o[AVC]["allocated"] == {"fault": V + C * K, "fork": C * V, "clone_fork": C * V,
                                   "clone_vma": 0, "other": 0}
    assert o[VMA]["allocated"] == {"alloc": V + N + C * K, "fork": C * (V + N), "dup": 0, "other": 0}
    # children gone: only the parent's objects are live
    assert o[AV]["live_at_end"] == V and o[AVC]["live_at_end"] == V
    assert o[AV]["peak_live"] == V + C * V + C * K
    assert o[AVC]["peak_live"] == V + 2 * C * V + C * K
    assert o[AV]["object_size"] == SIZES[AV]["slab_size"]

    p = r["processes"]
    assert (p["seen"], p["forking"], p["leaf"], p["max_fork_depth"]) == (C + 1, 1, C, 1)
    # the fork server heads the table with what its forks made for the children
    top = p["by_process"][0]
    assert top["tgid"] == 100 and (top["anon_vma"], top["anon_vma_chain"]) == (V, V)
    assert top["for_children"] == {"anon_vma": C * V, "anon_vma_chain": 2 * C * V,
                                   "bytes": C * V * SIZES[AV]["slab_size"] + 2 * C * V * SIZES[AVC]["slab_size"]}
    assert all(e["for_children"]["anon_vma"] == 0 for e in p["by_process"][1:])

    eager, lazy, nofork = models(r)
    e_av, e_avc = V + C * V + C * K, V + 2 * C * V + C * K
    assert eager[AV]["allocated"] == e_av and eager[AVC]["allocated"] == e_avc
    assert eager[AV]["bytes"] == e_av * SIZES[AV]["slab_size"]
    # lazy: the parent's V fault pairs are fork upgrades, clone_fork kept,
    # children's own fork-path and fault objects never made (L1, L2, L4, U1)
    assert lazy[AV]["allocated"] == V
    assert lazy[AVC]["allocated"] == V + C * V
    assert lazy[AV]["allocated_range"] == [V, V]
    assert lazy["upgrades"]["fork"] == V and lazy["upgrades"]["mremap"] == 0
    assert lazy["saved_pct"][AV] == pct(e_av, V)
    assert lazy["saved_pct"][AVC] == pct(e_avc, V + C * V)
    assert lazy[AV]["peak_live"] == V
    assert lazy[AVC]["peak_live"] == V + C * V
    assert lazy[AV]["bytes"] == V * SIZES[AV]["slab_size"]
    g = lazy["vma_growth"]
    assert g["bytes_per_vma"] == 12
    # priced at the slab slot: object_size + 12, word-aligned, then to the
    # cache's align (mm/slub.c calculate_sizes); no slack in the slot here
    v = SIZES[VMA]
    v_slab = v["slab_size"]
    slot = -(-(-(-(v["object_size"] + 12) // 8) * 8) // v["align"]) * v["align"]
    assert g["slot_bytes"] == [v["slab_size"], slot] == [192, 256]
    assert g["slot_growth_range"] == [0, slot - v["slab_size"]]
    assert g["peak_extra_bytes"] == (slot - v["slab_size"]) * (V + N + C * (V + N) + C * K)
    assert lazy[VMA]["peak_live_bytes"] == slot * (V + N + C * (V + N) + C * K)
    # no-fork's folio-to-VMA pointer is unspecified: from none (kept in
    # folio->mapping) to lazy's 12 bytes in every VMA, at the same slot, and
    # the VMAs lazy pins, which a tracepoint recording cannot tell: null
    for v in ("nofork", "nofork_clone"):
        x = r["models"][v]["extra_costs"]
        assert x["vma_growth"]["peak_extra_bytes_range"] == [0, (slot - v_slab) * (V + N + C * (V + N) + C * K)]
        assert x["slab_bytes_range"] == [0, None] and x["pinned_vmas_peak_bytes_range"] == [0, None]
        assert x["vma_growth"]["bytes_per_vma_range"] == [0, 12]
    assert lazy["extra_costs"]["fork_time_objects"] == {
        **lazy["extra_costs"]["fork_time_objects"], "eager": 3 * C * V, "lazy": C * V + 2 * V}
    # nofork: the children are leaf generations; their own faults are saved,
    # what the parent's fork made for them stays; they live wholly in the
    # run, so the range is one value
    assert nofork[AV]["allocated"] == V + C * V
    assert nofork[AVC]["allocated"] == V + 2 * C * V
    assert nofork[AV]["allocated_range"] == [V + C * V, V + C * V]
    assert nofork[AVC]["allocated_range"] == [V + 2 * C * V, V + 2 * C * V]
    assert nofork[AV]["saved"] == C * K and nofork[AV]["saved_in_fork_then_exec"] == 0
    # nofork_clone: also each child's own anon_vma and AVC per inherited VMA;
    # the C * V clone_fork links into the parent's anon_vmas stay. On a
    # tracepoint recording (eventgen's default) the high end keeps the C * V
    # own fork pairs: an inherited VMA may map a file (N5), which no fork
    # row tells
    clone = r["models"]["nofork_clone"]
    assert clone[AV]["allocated"] == V and clone[AVC]["allocated"] == V + C * V
    assert clone[AV]["allocated_range"] == [V, V + C * V]
    assert clone[AVC]["allocated_range"] == [V + C * V, V + 2 * C * V]
    assert clone["generations"] == {"generations": C + 1, "forking": 1, "leaf": C,
                                    "leaf_whole_life_in_run": C, "fork_then_exec": 0, "after_exec": 0}


def test_domain_example(tmp_path):
    """../shared/domain.md: 107 fault anon_vmas, 10 children: -91% anon_vma,
    -48% AVC. Three more parent VMAs with anon_vmas predate the run, so each
    child copies 110 (fork 1100)."""
    V, pre, C = 107, 3, 10
    r = build(zygote(V, 0, C, 0, prerun=pre), tmp_path)
    eager, lazy, _ = models(r)
    assert eager[AV]["allocated"] == V + C * (V + pre) == 1207
    assert eager[AVC]["allocated"] == V + 2 * C * (V + pre)
    assert lazy[AV]["allocated"] == V
    assert lazy[AVC]["allocated"] == V + C * (V + pre)
    assert round(lazy["saved_pct"][AV]) == 91
    assert round(lazy["saved_pct"][AVC]) == 48
    # the fork made 110 child anon_vmas: up to 110 parent VMAs may have been lazy
    assert lazy[AV]["allocated_range"] == [V, V + pre]
    assert lazy[AVC]["allocated_range"] == [V + C * (V + pre), V + pre + C * (V + pre)]


# ------------------------------------------------------ split and merge leaf


@pytest.mark.parametrize("F,S,M,X", [(10, 4, 3, 2), (5, 5, 5, 0), (3, 0, 0, 3)])
def test_split_merge_leaf(tmp_path, F, S, M, X):
    r = build(split_merge(F, S, M, X), tmp_path)
    o = r["objects"]
    assert o[AV]["allocated"]["fault"] == F
    assert o[AVC]["allocated"]["clone_vma"] == S + X
    assert o[AVC]["clone_vma_callers"]["split"] == S
    assert o[AVC]["clone_vma_callers"]["merge"] == X
    assert o[VMA]["allocated"] == {"alloc": F + X, "fork": 0, "dup": S, "other": 0}
    for obj in (AV, AVC, VMA):
        assert o[obj]["live_at_end"] == 0
        assert o[obj]["freed_preexisting"] == 0 and o[obj]["unmatched_frees"] == 0
    assert o[AVC]["peak_live"] == F + S if S else F + (1 if X else 0)
    p = r["processes"]
    assert (p["seen"], p["forking"], p["leaf"]) == (1, 0, 1)
    eager, lazy, nofork = models(r)
    # lazy: no fork, so fault (L1) and split/merge (L3) objects are never made
    assert lazy[AV]["allocated"] == 0 and lazy[AVC]["allocated"] == 0
    assert lazy["saved_pct"] == {AV: 100.0, AVC: 100.0}
    assert lazy[AVC]["allocated_range"] == [0, S + X]   # high: splits of upgraded VMAs
    assert lazy[AV]["peak_live_bytes"] == 0
    # nofork: a leaf; each split and merge clones one AVC (its VMAs are its
    # own: chains of one), which is the link the design drops; it was alive
    # before the run, so the high end keeps it
    for m in (nofork, r["models"]["nofork_clone"]):
        assert m[AV]["allocated"] == 0 and m[AVC]["allocated"] == 0
        assert m[AV]["allocated_range"] == [0, F]
        assert m[AVC]["allocated_range"] == [0, F + S + X]


# ------------------------------------------------------------------ mremap


@pytest.mark.parametrize("F,R,G", [(4, 5, 3), (1, 1, 0), (6, 2, 10)])
def test_mremap_heavy(tmp_path, F, R, G):
    r = build(mremap_heavy(F, R, G), tmp_path)
    o = r["objects"]
    assert o[AVC]["allocated"]["clone_vma"] == F * R
    assert o[AVC]["clone_vma_callers"]["mremap"] == F * R
    assert o[VMA]["allocated"]["dup"] == F * R
    assert o[AVC]["live_at_end"] == F + G and o[AV]["live_at_end"] == F + G
    eager, lazy, _ = models(r)
    assert eager[AVC]["allocated"] == F + G + F * R
    # U2: the first move of each VMA upgrades it (anon_vma + AVC); later moves
    # copy an upgraded VMA; the G unmoved VMAs are never made
    assert lazy["upgrades"]["mremap"] == F
    assert lazy["upgrades"]["fork"] == 0
    assert lazy[AV]["allocated"] == F
    assert lazy[AVC]["allocated"] == F + F * R
    assert lazy[AV]["allocated_range"] == [F, F]
    assert lazy["saved_pct"][AV] == pct(F + G, F)
    assert lazy[AV]["peak_live"] == F
    # during the last first-round move the upgraded source AVC and its copy
    # coexist (copy_vma before the source's unlink_anon_vmas), as in eager
    assert lazy[AVC]["peak_live"] == F + 1
    assert eager[AVC]["peak_live"] == F + G + 1
    # no-fork (N5): a moved VMA has no folio-to-VMA way back: the F moved
    # VMAs keep their fault anon_vma and AVC and every copy's AVC; the G
    # unmoved ones are saved; the process predates the run: high keeps all
    for v in ("nofork", "nofork_clone"):
        n = r["models"][v]
        assert n[AV]["allocated"] == F and n[AVC]["allocated"] == F + F * R
        assert n[AV]["allocated_range"] == [F, F + G]
    assert r["models"]["nofork"]["kept_vmas"]["moved_vma_objects"] == 2 * F


# -------------------------------------------------------- fork chain 3 deep


@pytest.mark.parametrize("VA,VB,VC,VD", [(3, 2, 1, 4), (1, 1, 1, 1), (5, 0, 2, 0)])
def test_fork_chain_three_deep(tmp_path, VA, VB, VC, VD):
    r = build(chain(VA, VB, VC, VD), tmp_path)
    o = r["objects"]
    own = 3 * VA + 2 * VB + VC                 # child anon_vmas of the three forks
    clones = 6 * VA + 3 * VB + VC              # chains of length 1, 2, 3 copied
    fault = VA + VB + VC + VD
    assert o[AV]["allocated"]["fault"] == fault
    assert o[AV]["allocated"]["fork"] == own
    assert o[AVC]["allocated"]["fork"] == own
    assert o[AVC]["allocated"]["clone_fork"] == clones
    assert o[AV]["live_at_end"] == VA and o[AVC]["live_at_end"] == VA
    p = r["processes"]
    assert (p["seen"], p["forking"], p["leaf"], p["max_fork_depth"]) == (4, 3, 1, 3)
    eager, lazy, nofork = models(r)
    # lazy: A's faults upgraded at A's fork; B's inherited (own fork-path)
    # and faulted VMAs upgraded at B's fork; same for C; D never forks
    assert lazy["upgrades"]["fork"] == own
    assert lazy[AV]["allocated"] == own
    assert lazy[AVC]["allocated"] == own + clones
    assert lazy[AV]["allocated_range"] == [own, own]
    assert lazy[AVC]["allocated_range"] == [own + clones, own + clones]
    # nofork: D (born and dead in the run) is the only leaf: its VD faults
    assert nofork[AV]["allocated"] == fault + own - VD
    assert nofork[AVC]["allocated"] == fault + own + clones - VD
    assert nofork[AV]["allocated_range"] == [fault + own - VD] * 2
    # nofork_clone: also D's own anon_vma and AVC for each of the VA + VB + VC
    # VMAs it inherits; the 3VA + 2VB + VC clone_fork links of D stay
    d_own = VA + VB + VC
    clone = r["models"]["nofork_clone"]
    assert clone[AV]["allocated"] == fault + own - VD - d_own
    assert clone[AVC]["allocated"] == fault + own + clones - VD - d_own
    # (high end: D's own fork pairs stay, the VMAs' kind unknown on tracepoints, N5)
    assert clone[AVC]["allocated_range"] == [fault + own + clones - VD - d_own, fault + own + clones - VD]


def test_child_fault_after_parent_forked_twice(tmp_path):
    """Upgrades happen once: faults before the first fork are upgraded there,
    faults between the forks at the second, a pair unmapped in between is saved."""
    g = Gen()
    g.process(10, "p")
    first = g.faults(10, 4)
    g.fork(10, 11)
    g.faults(10, 3)
    late = g.fault(10)
    g.unmap(10, late)
    g.fork(10, 12)
    g.exit(11)
    g.exit(12)
    r = build(g, tmp_path)
    lazy = r["models"]["lazy"]
    assert lazy["upgrades"]["fork"] == 4 + 3
    assert lazy[AV]["allocated"] == 4 + 3
    assert first  # silence linters about the unused name


def test_threads_do_not_fork_processes(tmp_path):
    g = Gen()
    g.process(50, "threaded")
    g.thread(50, 51)
    g.faults(50, 2)
    r = build(g, tmp_path)
    p = r["processes"]
    assert (p["forking"], p["leaf"], p["threads_or_vforks"], p["process_forks"]) == (0, 1, 1, 0)
    assert r["models"]["lazy"][AV]["allocated"] == 0


# -------------------------------------------------- preexisting and lost

def test_preexisting_frees_make_live_a_delta(tmp_path):
    P, F = 4, 6
    g = Gen()
    g.process(7, "old")
    for _ in range(P):
        g.prerun_vma(7)
    g.faults(7, F)
    g.exit(7)
    r = build(g, tmp_path)
    for obj in (AV, AVC, VMA):
        o = r["objects"][obj]
        assert o["freed_preexisting"] == P
        assert o["live_at_end"] == -P
        assert o["min_live"] == -P
        assert o["peak_live"] == F
        assert o["run_objects"]["live_at_end"] == 0
        assert o["run_objects"]["peak_live"] == F
        assert "start of the run" in o["live_basis"]
    assert r["models"]["eager"][AV]["peak_live"] == F


def test_lost_events(tmp_path):
    g = zygote(3, 0, 2, 0)
    vma = g.mmap(100)
    with g.losing("ringbuf"):
        g.fault(100, vma)     # alloc rows of one AVC and one anon_vma lost
    g.lose("prog_misses", 5)
    g.exit(100)               # their frees are written: unmatched
    r = build(g, tmp_path)
    assert r["run"]["lost_events"] == 2 + 5
    assert r["run"]["lost_by_source"]["ringbuf"] == 2
    assert r["warnings"][0].startswith("LOST EVENTS: 7 events")
    assert r["objects"][AV]["unmatched_frees"] == 1
    assert r["objects"][AVC]["unmatched_frees"] == 1


def test_slabinfo_cross_check_with_aliases(tmp_path):
    base = {AV: 50, AVC: 80, VMA: 300}
    a0, a1 = 40, 55
    g = Gen()
    g.process(5, "p")
    g.slab_sample(base, alias_objects=a0)
    g.faults(5, 9)
    g.slab_sample(base, alias_objects=a1)
    system = {"mode": "system", "command": None, "pid": None, "comm": None}
    r = build(g, tmp_path, target=system)
    s = r["slabinfo"]
    assert s["mode"] == "system" and "every object" in s["checks"]
    assert s[AV]["difference"] == 0 and s[AV]["aliases"] == 0
    assert s[AVC]["traced_change"] == 9
    assert s[AVC]["difference"] == a1 - a0
    assert s[AVC]["slabinfo_overstates_range"] == [a1 - a0, base[AVC] + a1]
    # a command run: slabinfo counts the whole system, the trace one command
    s = build(g, tmp_path, name="cmd.parquet")["slabinfo"]
    assert s["mode"] == "command" and s["checks"].startswith("nothing of slabinfo's error")
    assert "slabinfo_overstates_range" not in s[AVC] and s[AVC]["fidelity"].startswith("not a check")
    assert s[AVC]["alias_names"] == ["fs_cache", "eventpoll_pwq"]
    assert r["models"]["lazy"]["vma_growth"]["slabinfo_vmas_last"] == base[VMA] + 9


def test_reused_object_ids_are_matched(tmp_path):
    """raw_pointers: addresses come back; a free matches the latest alloc."""
    g = Gen(reuse_ids=True)
    g.process(9, "p")
    for _ in range(5):
        v = g.fault(9)
        g.unmap(9, v)
    g.faults(9, 2)
    r = build(g, tmp_path, raw_pointers=True)
    for obj in (AV, AVC, VMA):
        o = r["objects"][obj]
        assert o["unmatched_frees"] == 0
        assert o["run_objects"]["live_at_end"] == 2
        assert o["run_objects"]["peak_live"] == 2


def test_replay_order_is_by_timestamp_not_file_order(tmp_path):
    g = chain(2, 1, 1, 1)
    straight = build(g, tmp_path, "a.parquet")
    g.rows.reverse()
    reversed_ = build(g, tmp_path, "b.parquet")
    for key in ("models", "objects", "processes"):
        for part in straight[key]:
            a, b = straight[key][part], reversed_[key][part]
            if isinstance(a, dict):
                a = {k: v for k, v in a.items() if k != "live_over_time"}
                b = {k: v for k, v in b.items() if k != "live_over_time"}
            assert a == b, (key, part)


def test_empty_run(tmp_path):
    r = build(Gen(), tmp_path)
    assert r["objects"][AV]["allocated_total"] == 0
    assert r["models"]["lazy"]["saved_pct"][AV] is None
    assert r["processes"]["seen"] == 0


def test_mremap_then_fork_bounds(tmp_path):
    """F VMAs moved once, then a fork: the moved VMAs were upgraded at the
    mremap, with their own fault anon_vma (U2), so the fork does not upgrade
    that anon_vma again (docs/models.md#lazy-rules)."""
    F = 5
    g = Gen()
    g.process(60, "p")
    for v in g.faults(60, F):
        g.mremap(60, v)
    g.fork(60, 61)
    g.exit(61)
    r = build(g, tmp_path)
    eager, lazy, _ = models(r)
    assert eager[AV]["allocated"] == 2 * F
    assert eager[AVC]["allocated"] == 4 * F
    assert lazy["upgrades"]["mremap"] == F and lazy["upgrades"]["fork"] == 0
    assert lazy[AV]["allocated"] == F
    assert lazy[AV]["allocated_range"][0] == F
    assert lazy[AV]["peak_live"] == F
    assert lazy["upgrades"]["objects"] == {AV: F, AVC: F}
    # upgrade AVC + mremap copy per VMA, and the fork's clone_fork copies
    assert lazy[AVC]["allocated"] == 3 * F


def test_mremap_of_split_piece_then_fork(tmp_path):
    """F VMAs split, the new piece of each moved, then a fork. The moved
    piece shares its anon_vma with the piece left behind (eager), but in the
    lazy kernel the pieces are upgraded separately: the left piece at the
    fork, the moved one at the mremap, so both anon_vmas count."""
    F = 4
    g = Gen()
    g.process(70, "p")
    for v in g.faults(70, F):
        g.mremap(70, g.split(70, v))
    g.fork(70, 71)
    g.exit(71)
    r = build(g, tmp_path)
    eager, lazy, _ = models(r)
    # eager: F fault pairs, F split AVCs, F mremap AVCs; the fork copies
    # 2F VMAs with chains of one AVC
    assert eager[AV]["allocated"] == F + 2 * F
    assert eager[AVC]["allocated"] == F + F + F + 2 * (2 * F)
    assert lazy["upgrades"]["mremap"] == F
    assert lazy["upgrades"]["fork"] == F          # the left pieces' fault AVCs
    assert lazy[AV]["allocated"] == F + F
    # fork upgrade AVCs, mremap upgrade AVCs, mremap copies, clone_fork
    assert lazy[AVC]["allocated"] == F + F + F + 2 * F


# ------------------------------------------------- generations, vfork, exec

def shell(V, K1, K2):
    """A shell (alive before the run) with V faulted VMAs forks a child that
    faults K1, execs, faults K2 in the new image and exits."""
    g = Gen()
    g.process(60, "sh")
    g.faults(60, V)
    g.fork(60, 61)
    g.faults(61, K1)
    g.exec(61, comm="tool")
    g.faults(61, K2)
    g.exit(61)
    return g


@pytest.mark.parametrize("V,K1,K2", [(5, 2, 3), (1, 0, 4), (8, 3, 0)])
def test_fork_then_exec_is_a_category_of_its_own(tmp_path, V, K1, K2):
    """The child before its exec and the image after it are two generations
    (rule N0): the first is a fork-then-exec child, whose savings die at the
    exec anyway; both are leaves."""
    r = build(shell(V, K1, K2), tmp_path)
    e_av = V + V + K1 + K2
    nf, nc = r["models"]["nofork"], r["models"]["nofork_clone"]
    after = 1 if K2 else 0                                  # generations that own objects
    assert nf["generations"] == {"generations": 2 + after, "forking": 1, "leaf": 1 + after,
                                 "leaf_whole_life_in_run": 1 + after, "fork_then_exec": 1,
                                 "after_exec": after}
    assert nf[AV]["saved"] == K1 + K2 and nf[AV]["saved_in_fork_then_exec"] == K1
    assert nf[AV]["allocated"] == e_av - K1 - K2
    assert nc[AV]["saved"] == K1 + K2 + V and nc[AV]["saved_in_fork_then_exec"] == K1 + V
    assert nc[AVC]["saved"] == K1 + K2 + V            # the V clone_fork links stay
    assert nc[AVC]["allocated"] == (V + 2 * V + K1 + K2) - (K1 + K2 + V)


@pytest.mark.parametrize("K,K2", [(3, 2), (0, 5)])
def test_a_vfork_child_faults_on_its_parents_mm(tmp_path, K, K2):
    """A vfork child's faults before its exec land in the parent's mm and are
    the parent's (kernel/fork.c copy_mm, CLONE_VM); after its exec it is a
    generation of its own, born and dead in the run. The parent (alive before
    the run) is a leaf too: only the high end keeps its objects."""
    g = Gen()
    g.process(70, "make")
    g.vfork(70, 71, comm="make")
    g.faults(71, K)
    g.exec(71, comm="cc")
    g.faults(71, K2)
    g.exit(71)
    r = build(g, tmp_path)
    nf = r["models"]["nofork"]
    assert nf[AV]["allocated"] == 0                        # both generations leaves
    assert nf[AV]["allocated_range"] == [0, K]              # the parent's K may not be (not born in the run)
    assert nf["generations"]["generations"] == (2 if K else 1) and nf["generations"]["forking"] == 0
    assert r["models"]["eager"][AV]["allocated"] == K + K2


@pytest.mark.parametrize("V", [1, 6])
def test_7x_fork_reuse_pair_is_not_an_allocation(tmp_path, V):
    """7.x anon_vma_fork() allocates the child's anon_vma and AVC before
    cloning and frees both at once when it reuses one (rule E2'): the pair
    is counted apart, not as allocated, not as the error path, and every
    model counts what it counts on the 6.x recording of the same forks."""
    r6 = build(fork_chain(V, "6.x"), tmp_path, name="6x.parquet")
    r7 = build(fork_chain(V, "7.x"), tmp_path, name="7x.parquet")
    for r in (r6, r7):
        o = r["objects"]
        # own anon_vma + AVC at the forks of C and G, none at H's (reused)
        assert o[AV]["allocated"] == {"fault": V, "fork": 2 * V, "clone_fork": 0, "clone_vma": 0, "other": 0}
        # clone_fork: the chains of P (1 AVC), C (2) and G (3) per region
        assert o[AVC]["allocated"] == {"fault": V, "fork": 2 * V, "clone_fork": 6 * V, "clone_vma": 0, "other": 0}
        assert o[AVC]["freed_by_path"]["error"] == 0
    assert r7["objects"][AV]["transient_fork_pairs"] == V == r7["objects"][AVC]["transient_fork_pairs"]
    assert r6["objects"][AV].get("transient_fork_pairs", 0) == 0
    assert r7["objects"][AV]["freed_by_path"] == r6["objects"][AV]["freed_by_path"]
    for name, m in r7["models"].items():
        for obj in (AV, AVC):
            assert m[obj]["allocated"] == r6["models"][name][obj]["allocated"], (name, obj)
            assert m[obj]["allocated_range"] == r6["models"][name][obj]["allocated_range"], (name, obj)


@pytest.mark.parametrize("S", [1, 4])
def test_a_process_the_census_shows_forked_keeps_its_splits(tmp_path, S):
    """L5 with a census: a parent that forked before the run (its anon_vma
    has a child anon_vma: num_children 2 with the root's self-link) had its
    VMAs upgraded by that fork, so its splits in the run keep their AVCs;
    the same splits by a process that never forked are deferred (L3)."""
    def run(forked):
        g = Gen()
        g.process(1, "p")
        vmas = [g.prerun_vma(1) for _ in range(S)]
        if forked:
            g.prerun_fork(1, 2)
        g.census()
        for v in vmas:
            g.split(1, v)
        return build(g, tmp_path, name=f"split-{forked}.parquet")["models"]["lazy"][AVC]
    assert run(forked=True)["allocated"] == S
    assert run(forked=False)["allocated"] == 0


def test_fork_path_pairs_are_checked(tmp_path):
    """anon_vma_fork() makes the child's own anon_vma and AVC in pairs: a
    fork whose counts differ (a lost row) is named, never passed over."""
    g = zygote(4, 0, 2, 0)
    r = build(g, tmp_path)
    assert (r["run"]["fork_pairs_checked"], r["run"]["fork_pairs_mismatched"]) == (2, 0)
    drop = next(i for i, row in enumerate(g.rows) if row.get("event") == "alloc" and row.get("path") == "fork"
                and row.get("object") == "anon_vma")
    del g.rows[drop]
    r = build(g, tmp_path, name="dropped.parquet")
    assert r["run"]["fork_pairs_mismatched"] == 1
    assert any("1 forks made unequal numbers" in w for w in r["warnings"])


def test_a_lost_free_leaves_its_object_live(tmp_path):
    """Section 0, lost events: counts are lower bounds, but a lost free
    leaves its object live, so live values may be high. P faults F VMAs
    and exits; the frees of its first VMA (the VMA, its anon_vma and AVC)
    are lost: eager's allocations are exact (F), yet live at the end is 1
    instead of 0, and the banner says live may be off either way."""
    F = 4
    g = Gen()
    g.process(1, "p")
    vmas = g.faults(1, F)
    with g.losing("ringbuf"):
        g.unmap(1, vmas[0])
    g.exit(1)
    r = build(g, tmp_path)
    assert r["run"]["lost_events"] == 3
    for obj in (AV, AVC):
        assert sum(r["objects"][obj]["allocated"].values()) == F
        assert r["objects"][obj]["live_at_end"] == 1
        assert r["objects"][obj]["unmatched_frees"] == 0
    w = r["warnings"][0]
    assert w.startswith("LOST EVENTS: 3 events") and "off either way (a lost free leaves its object live)" in w
