"""`anonanalyze simulate`: the address-space model, every design's rmap and
walks (docs/models.md section 4). Expected numbers are derived here from the
parameters and the rules (anon_vma_fork(), anon_vma_clone()'s reuse test,
rmap_walk_anon() over the interval tree), never pasted from a run.

Memory conventions: ``allocated`` counts every object ever allocated,
including those of VMAs a child unmaps right after the fork; ``live_at_*``
and ``peak_live`` count objects not yet freed.
"""

import json
import math

import pytest
from click.testing import CliRunner

from anonscope.analyzer import cli
from anonscope.analyzer import simulate as S
from anonscope.analyzer.aspace import SimError, Space
from anonscope.analyzer.rmapsim import AV, AVC, LOCK_COW, LOCK_NONE_LAZY, LOCK_ROOT, CowContext, Eager, Lazy, NoFork
from eventgen import Gen
from scenarios import build


def nearest_rank(values, p):
    v = sorted(values)
    return v[max(1, math.ceil(p * len(v) / 100)) - 1]


def dist(values):
    return {"p50": nearest_rank(values, 50), "p99": nearest_rank(values, 99), "max": max(values)}


def mem(d, obj):
    return d["memory"][obj]


def designs(data):
    return (data["designs"][k] for k in ("eager", "lazy", "cow_context", "nofork"))


# ---------------------------------------------------------------- adversarial

@pytest.mark.parametrize("V,C", [(20, 20), (7, 5), (5, 9), (1, 1)])
def test_adversarial(V, C):
    data = S.run("adversarial", {"vmas": V, "children": C})
    eager, lazy, cow, nofork = designs(data)
    assert data["processes"] == {"total": 1 + C, "forking": 1, "leaf": C}

    # eager: the parent's V __anon_vma_prepare() pairs; per child and parent VMA
    # (all copied before the child unmaps V-1 of them) one cloned AVC, and,
    # since every parent anon_vma has an active VMA (no reuse), one own
    # anon_vma and AVC. Each child keeps one VMA: 1 anon_vma + 2 AVCs live.
    assert mem(eager, AV) == {"allocated": V + V * C, "live_at_walks": V + C,
                              "live_at_end": V + C, "peak_live": 2 * V + C - 1}
    assert mem(eager, AVC) == {"allocated": V + 2 * V * C, "live_at_walks": V + 2 * C,
                               "live_at_end": V + 2 * C, "peak_live": 3 * V + 2 * C - 2}
    # a walk of the parent's page in VMA j: the parent's AVC and one per child
    # that kept VMA j (all map the page: nobody wrote)
    per_vma = [1 + sum(1 for k in range(C) if k % V == j) for j in range(V)]
    for d in (eager, lazy, nofork):
        w = d["walks"]
        assert w["count"] == V
        assert w["visits"] == dist(per_vma)
        assert w["lock"] == {LOCK_ROOT: V}
        assert w["mapped_mms"] == dist(per_vma)
        assert w["root_mms"] == dist(per_vma)
        assert w["groups"]["parent"]["visits"] == dist(per_vma)

    # lazy: the fork upgrades the parent's V VMAs (V anon_vma + V AVC), the
    # children copy the chain (V*C AVCs, C kept) and get no anon_vma
    assert mem(lazy, AV) == {"allocated": V, "live_at_walks": V, "live_at_end": V,
                             "peak_live": V}
    assert mem(lazy, AVC) == {"allocated": V + V * C, "live_at_walks": V + C,
                              "live_at_end": V + C, "peak_live": 2 * V + C - 1}
    assert lazy["upgrades"] == {"fork": V, "mremap": 0, "folios_repointed": V}
    # nofork: the children are leaves, but what the parent's fork built for them
    # is kept (N2): eager's numbers
    assert nofork["memory"] == eager["memory"]

    # CoW context: every walk visits the parent and its C live children
    w = cow["walks"]
    assert w["visits"] == dist([C + 1] * V)
    assert w["descendant_mms"] == dist([C] * V)
    assert w["lookups"] == dist([C + 1] * V)
    assert w["lock"] == {LOCK_COW: V}
    assert mem(cow, AV)["allocated"] == 0 and mem(cow, AVC)["allocated"] == 0
    assert mem(cow, "context") == {"allocated": C + 1, "live_at_walks": C + 1,
                                   "live_at_end": C + 1, "peak_live": C + 1}


def test_adversarial_default_headline():
    """The thread's case at full size: 2 VMAs per walk today, 1000 mms per walk
    for a per-process walk. (It runs in well under a second because
    fork(keep=...) accounts the copies the children unmap at once; speed is
    not asserted here: tests must not fail because a machine is slow.)"""
    res = CliRunner().invoke(cli.main, ["simulate", "adversarial", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    V = C = 1000
    assert data["params"] == {"vmas": V, "children": C}
    eager, lazy, cow, nofork = designs(data)
    assert eager["walks"]["count"] == V
    assert eager["walks"]["visits"] == {"p50": 2, "p99": 2, "max": 2}
    assert eager["walks"]["unit"].startswith("VMA")
    assert cow["walks"]["descendant_mms"] == {"p50": 1000, "p99": 1000, "max": 1000}
    assert cow["walks"]["visits"] == {"p50": 1001, "p99": 1001, "max": 1001}
    assert cow["walks"]["unit"] == "mm"
    assert lazy["walks"]["visits"] == {"p50": 2, "p99": 2, "max": 2}
    assert mem(eager, AV)["allocated"] == V * (1 + C)
    assert mem(eager, AVC)["allocated"] == V * (1 + 2 * C)
    assert mem(lazy, AV)["allocated"] == V
    assert mem(lazy, AVC)["allocated"] == V * (1 + C)
    assert nofork["walks"]["visits"]["max"] == 2


# --------------------------------------------------------------------- zygote

@pytest.mark.parametrize("V,F,N,A,W", [(6, 2, 3, 2, 2), (10, 0, 5, 0, 3), (3, 1, 1, 4, 5),
                                       (0, 2, 2, 1, 0)])
def test_zygote(V, F, N, A, W):
    data = S.run("zygote", {"vmas": V, "file_vmas": F, "apps": N, "app_faults": A,
                            "app_cow": W})
    eager, lazy, cow, nofork = designs(data)
    Z = V + F                   # zygote VMAs with an anon_vma (file VMAs too: CoW'd pages)
    own = 1 if A else 0         # each app's own VMA
    Wc = min(W, V)              # zygote anonymous VMAs each app CoWs

    assert mem(eager, AV) == {"allocated": Z + N * (Z + own), "live_at_walks": Z + N * (Z + own),
                              "live_at_end": Z, "peak_live": Z + N * (Z + own)}
    assert mem(eager, AVC) == {"allocated": Z + N * (2 * Z + own),
                               "live_at_walks": Z + N * (2 * Z + own),
                               "live_at_end": Z, "peak_live": Z + N * (2 * Z + own)}
    # lazy: the zygote's VMAs upgraded at its first fork, apps copy chains only;
    # app faults (own VMA and CoW in inherited VMAs) make lazy folios
    assert mem(lazy, AV) == {"allocated": Z, "live_at_walks": Z, "live_at_end": Z, "peak_live": Z}
    assert mem(lazy, AVC) == {"allocated": Z + N * Z, "live_at_walks": Z + N * Z,
                              "live_at_end": Z, "peak_live": Z + N * Z}
    assert lazy["upgrades"] == {"fork": Z, "mremap": 0, "folios_repointed": Z}
    # nofork: the apps never call __anon_vma_prepare() for their own VMA
    assert mem(nofork, AV)["allocated"] == Z + N * Z
    assert mem(nofork, AVC)["allocated"] == Z + 2 * N * Z
    # nofork_clone: the zygote set it for each app at clone: no anon_vma of
    # the app's own per copy (N4), the N * Z clone_fork links stay (N4')
    clone = data["designs"]["nofork_clone"]
    assert mem(clone, AV)["allocated"] == Z
    assert mem(clone, AVC)["allocated"] == Z + N * Z
    assert mem(cow, "context") == {"allocated": N + 1, "live_at_walks": N + 1,
                                   "live_at_end": 1, "peak_live": N + 1}
    assert mem(cow, "remap_entry") == {"allocated": F * (N + 1), "live_at_walks": F * (N + 1),
                                       "live_at_end": F, "peak_live": F * (N + 1)}

    groups = {"zygote_anon": V, "zygote_file": F, "app_own": N * A, "app_cow": N * Wc}
    for d in designs(data):
        assert d["walks"]["count"] == sum(groups.values())
        assert {g: s["count"] for g, s in d["walks"]["groups"].items()} == \
            {g: n for g, n in groups.items() if n}
    g = {name: d["walks"]["groups"] for name, d in data["designs"].items()}
    if V:
        # a zygote page: its anon_vma's tree has the zygote's AVC and each app's
        # clone; apps that CoW'd it no longer map it
        mapped = [1] * Wc + [1 + N] * (V - Wc)
        for name in ("eager", "lazy", "nofork"):
            assert g[name]["zygote_anon"]["visits"] == dist([1 + N] * V)
            assert g[name]["zygote_anon"]["lock"] == {LOCK_ROOT: V}
            assert g[name]["zygote_anon"]["mapped_mms"] == dist(mapped)
        # the CoW context stops at the zygote's own mm where every app CoW'd
        # the page, so only the zygote maps it (C7)
        assert g["cow_context"]["zygote_anon"]["visits"] == dist(mapped)
        assert g["cow_context"]["zygote_anon"]["lookups"] == dist(mapped)
    if F:
        # one more lookup per mm for the file VMA's remap entry
        assert g["cow_context"]["zygote_file"]["lookups"] == dist([2 * (1 + N)] * F)
    if A:
        assert g["eager"]["app_own"]["visits"] == dist([1] * N * A)
        assert g["eager"]["app_own"]["root_mms"] == dist([1] * N * A)
        for name in ("lazy", "nofork"):
            assert g[name]["app_own"]["lock"] == {LOCK_NONE_LAZY: N * A}
            assert g[name]["app_own"]["visits"] == dist([1] * N * A)
        assert g["cow_context"]["app_own"]["visits"] == dist([1] * N * A)
    if Wc:
        # an app's CoW copy lives in the app's own anon_vma (a child of the
        # zygote's): 1 VMA, but under the zygote's root rwsem, shared by N+1 mms
        for name in ("eager", "nofork"):
            assert g[name]["app_cow"]["visits"] == dist([1] * N * Wc)
            assert g[name]["app_cow"]["lock"] == {LOCK_ROOT: N * Wc}
            assert g[name]["app_cow"]["root_mms"] == dist([1 + N] * N * Wc)
        assert g["lazy"]["app_cow"]["lock"] == {LOCK_NONE_LAZY: N * Wc}
        assert g["cow_context"]["app_cow"]["visits"] == dist([1] * N * Wc)


# ---------------------------------------------------------------------- chain

@pytest.mark.parametrize("D,V", [(3, 2), (6, 1), (1, 4)])
def test_chain_without_exits(D, V):
    data = S.run("chain", {"depth": D, "vmas": V, "cow": 1, "exit_parents": 0})
    eager, lazy, cow, nofork = designs(data)
    # generation g's VMA chain: g AVCs cloned from its parent + its own
    assert mem(eager, AV)["allocated"] == V * (D + 1)
    assert mem(eager, AVC)["allocated"] == V * (D + 1) * (D + 2) // 2
    # lazy: generations 0..D-1 upgrade at their fork; gen g clones a chain of g
    assert mem(lazy, AV)["allocated"] == V * D
    assert mem(lazy, AVC)["allocated"] == V * D + V * D * (D + 1) // 2
    assert lazy["upgrades"]["fork"] == V * D
    # a walk of generation g's copy: generations g..D (each CoW'd it, so only
    # g maps it: the CoW context stops at g's own mm, C7)
    for name, d in data["designs"].items():
        for gen in range(D + 1):
            s = d["walks"]["groups"][f"gen{gen}"]
            expect = 1 if (name == "lazy" and gen == D) or name == "cow_context" else D - gen + 1
            assert s["visits"] == dist([expect] * V), (name, gen)
            assert s["mapped_mms"] == dist([1] * V)
    assert lazy["walks"]["groups"][f"gen{D}"]["lock"] == {LOCK_NONE_LAZY: V}
    assert nofork["memory"] == eager["memory"]      # only the last generation is a leaf, no own VMA


@pytest.mark.parametrize("D,V", [(1, 2), (2, 1), (5, 2), (8, 3)])
def test_chain_with_exiting_parents_reuses_anon_vmas(D, V):
    """anon_vma_clone()'s reuse test (no active VMA, fewer than 2 children):
    from generation 3 on, a fork reuses the anon_vma of an exited ancestor, so
    the chain stops growing at 3 AVCs per VMA."""
    data = S.run("chain", {"depth": D, "vmas": V, "cow": 1, "exit_parents": 1})
    eager, lazy, cow, nofork = designs(data)
    assert mem(eager, AV)["allocated"] == V * min(D + 1, 3)
    assert mem(eager, AVC)["allocated"] == V + 2 * V + 3 * V * (D - 1)
    assert mem(eager, AVC)["live_at_end"] == V * min(D + 1, 3)
    assert mem(eager, AV)["live_at_end"] == V * min(D + 1, 3)
    assert eager["walks"]["count"] == V                 # only the last generation lives
    assert eager["walks"]["visits"] == dist([1] * V)
    # lazy applies the same test when it upgrades: the root (no child
    # anon_vma, its VMA gone) is reused by every generation
    assert mem(lazy, AV)["allocated"] == V
    assert mem(lazy, AVC)["allocated"] == V + V * D
    assert lazy["upgrades"]["fork"] == V * D
    assert cow["walks"]["visits"] == dist([1] * V)
    # exited contexts stay as links to the live generation (an assumption)
    assert mem(cow, "context")["live_at_end"] == D + 1


# ------------------------------------------------ model details (no scenario)

def space(optout=()):
    ds = [Eager(), Lazy(), CowContext(), NoFork(optout)]
    return Space(ds), {d.name: d for d in ds}


def alloc(d, obj):
    return d.memory()[obj]["allocated"]


def live(d, obj):
    return d.memory()[obj]["live"]


def test_fork_keep_equals_fork_then_munmap():
    """fork(keep=...) accounts the dropped copies exactly like a full fork
    followed by their munmap, for every design (allocated, live, peak)."""
    def script(sp, fast):
        p = sp.process("p")
        starts = [sp.mmap(p, 10 + 3 * i, 2).start for i in range(6)]
        for s in starts[:5]:
            sp.fault(p, s)
        sp.mmap(p, 200, 2, file="x.so")
        sp.fault(p, 200)
        sp.mremap(p, starts[0], 500)                 # a remap entry (CoW context)
        for k in range(4):
            keep = {starts[k + 1], 200}
            if fast:
                sp.fork(p, keep=lambda v, ks=keep: v.start in ks)
            else:
                c = sp.fork(p)
                for v in list(c.vmas):
                    if v.start not in keep:
                        sp.unmap_vma(v)
        return p

    results = []
    for fast in (True, False):
        sp, ds = space(optout={2, 3, 4, 5})
        script(sp, fast)
        results.append({n: d.memory() for n, d in ds.items()})
    assert results[0] == results[1]


def test_mergeable_neighbour_and_split_walks():
    sp, ds = space()
    p = sp.process()
    sp.mmap(p, 100, 4)
    sp.fault(p, 100)
    sp.mprotect(p, 102, 2)           # __split_vma(): the piece clones the chain
    sp.mmap(p, 104, 2)               # adjacent, pgoff continuous: find_mergeable_anon_vma()
    sp.fault(p, 104)
    e = ds["eager"]
    assert alloc(e, AV) == 1 and alloc(e, AVC) == 3
    res = sp.walk(p, 100)["eager"]
    # three AVCs in the tree, one covers pgoff 100
    assert (res["visits"], res["tree_avcs"]) == (1, 3)
    # lazy: neither the fault nor the split allocates anything
    assert alloc(ds["lazy"], AV) == 0 and alloc(ds["lazy"], AVC) == 0
    assert sp.walk(p, 104)["lazy"] == {"visits": 1, "lock": LOCK_NONE_LAZY}


def test_large_folio_straddling_a_split():
    sp, ds = space(optout={1})
    p = sp.process()
    sp.mmap(p, 100, 8)
    sp.fault(p, 100, nr=4)           # pages 100..103
    sp.mprotect(p, 102, 6)           # split at 102: the folio straddles it
    res = sp.walk(p, 101)
    assert res["eager"]["visits"] == 2
    assert res["lazy"] == {"visits": 2, "lock": LOCK_NONE_LAZY}
    assert res["nofork"] == {"visits": 2, "lock": LOCK_NONE_LAZY}
    assert res["cow_context"]["visits"] == 1
    # the fork upgrades the lazy VMA: one anon_vma for both pieces, one AVC each
    sp.fork(p)
    lz = ds["lazy"]
    assert lz.upgrades["fork"] == 2 and lz.upgrades["folios_repointed"] == 1
    assert alloc(lz, AV) == 1 and alloc(lz, AVC) == 2 + 2
    # eager: each child piece gets its own anon_vma (the parent's is active)
    assert alloc(ds["eager"], AV) == 1 + 2 and alloc(ds["eager"], AVC) == 2 + 2 * 2
    assert sp.walk(p, 101)["lazy"]["visits"] == 4         # both pieces in both mms


def test_mremap_upgrade_and_remap_entries():
    sp, ds = space()
    p = sp.process()
    sp.mmap(p, 100, 1)
    sp.fault(p, 100)
    sp.mremap(p, 100, 500)
    e, lz, cow = ds["eager"], ds["lazy"], ds["cow_context"]
    assert (alloc(e, AV), alloc(e, AVC), live(e, AVC)) == (1, 2, 1)
    assert (alloc(lz, AV), alloc(lz, AVC), live(lz, AVC)) == (1, 2, 1)
    assert lz.upgrades["mremap"] == 1 and lz.upgrades["folios_repointed"] == 1
    assert sp.walk(p, 500)["lazy"]["lock"] == LOCK_ROOT
    sp.fork(p)
    res = sp.walk(p, 500)
    assert res["eager"]["visits"] == 2
    # CoW context: 2 mms, each with a remap entry covering the folio's address
    assert (res["cow_context"]["visits"], res["cow_context"]["lookups"]) == (2, 4)
    assert live(cow, "remap_entry") == 2


def test_cow_and_wp_reuse_move_the_folio():
    sp, ds = space()
    p = sp.process()
    sp.mmap(p, 100, 1)
    sp.fault(p, 100)
    c = sp.fork(p)
    assert sp.walk(c, 100)["eager"]["visits"] == 2
    sp.fault(p, 100)                  # the parent CoWs; the old folio is the child's alone
    old = sp.folio_at(c, 100)
    assert list(old.maps) == [c]
    assert sp.walk(c, 100)["eager"]["visits"] == 2           # still in the parent's anon_vma
    sp.fault(c, 100)                  # do_wp_page() reuse: folio_move_anon_rmap()
    assert sp.folio_at(c, 100) is old
    res = sp.walk(c, 100)
    assert res["eager"]["visits"] == 1
    assert res["cow_context"]["visits"] == 1


def test_nofork_leaf_makes_nothing_forking_parent_is_eager():
    sp, ds = space(optout={2})
    p = sp.process()
    sp.mmap(p, 100, 1)
    sp.fault(p, 100)
    c = sp.fork(p)
    sp.mmap(c, 300, 1)
    sp.fault(c, 300)
    nf, e = ds["nofork"], ds["eager"]
    assert (alloc(nf, AV), alloc(nf, AVC)) == (2, 3)
    assert (alloc(e, AV), alloc(e, AVC)) == (3, 4)
    assert sp.walk(c, 300)["nofork"] == {"visits": 1, "lock": LOCK_NONE_LAZY}


def test_exit_frees_everything_eager():
    sp, ds = space()
    p = sp.process()
    for i in range(3):
        sp.mmap(p, 100 + 2 * i, 1)
        sp.fault(p, 100 + 2 * i)
    kids = [sp.fork(p) for _ in range(3)]
    for k in kids:
        sp.exit(k)
    sp.exit(p)
    for name in ("eager", "lazy", "nofork"):
        assert live(ds[name], AV) == 0 and live(ds[name], AVC) == 0, name
    assert live(ds["cow_context"], "context") == 0


def test_bad_scripts_raise_simerror():
    sp, _ = space()
    p = sp.process()
    sp.mmap(p, 100, 2)
    with pytest.raises(SimError):
        sp.mmap(p, 101, 2)
    with pytest.raises(SimError):
        sp.fault(p, 50)
    with pytest.raises(SimError):
        sp.walk(p, 100)


# -------------------------------- same rules as the recording-based models

def test_memory_matches_the_recording_models(tmp_path):
    """The adversarial case as a synthetic recording (eventgen, rules E1-E4)
    gives, through `anonanalyze report`'s eager / lazy / nofork models
    (docs/models.md sections 1-3), the simulator's allocated and peak counts."""
    V, C = 5, 4
    g = Gen()
    g.process(100, "parent")
    g.faults(100, V)
    for k in range(C):
        child = 200 + k
        g.fork(100, child)
        for i, vma in enumerate(list(g.procs[child].vmas)):
            if i != k % V:
                g.unmap(child, vma)
    r = build(g, tmp_path)
    sim = S.run("adversarial", {"vmas": V, "children": C})["designs"]
    for name in ("eager", "lazy", "nofork"):
        for obj in (AV, AVC):
            assert r["models"][name][obj]["allocated"] == mem(sim[name], obj)["allocated"], \
                (name, obj)
            assert r["models"][name][obj]["peak_live"] == mem(sim[name], obj)["peak_live"], \
                (name, obj)


# ------------------------------------------------------------------------ CLI

REQUIRED = ["scenario", "params"] + [
    f"designs.{d}.{k}" for d in ("eager", "lazy", "cow_context", "nofork")
    for k in ("memory.anon_vma", "memory.anon_vma_chain", "walks.count", "walks.visits.p50",
              "walks.visits.p99", "walks.visits.max", "walks.unit", "walks.lock")]


def get(d, dotted):
    for part in dotted.split("."):
        assert isinstance(d, dict) and part in d, dotted
        d = d[part]
    return d


@pytest.mark.parametrize("name,args", [("zygote", ["--vmas", "5", "--apps", "3"]),
                                       ("chain", ["--depth", "3"]),
                                       ("adversarial", ["--vmas", "4", "--children", "4"])])
def test_cli_json_and_text(name, args):
    res = CliRunner().invoke(cli.main, ["simulate", name, "--format", "json", *args])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in REQUIRED:
        get(data, key)
    assert data["scenario"] == name
    text = CliRunner().invoke(cli.main, ["simulate", name, *args])
    assert text.exit_code == 0
    for d in ("eager", "lazy", "cow_context", "nofork"):
        assert f"== {d}:" in text.stdout


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner()
    res = r.invoke(cli.main, ["simulate", "zygote", "--children", "3"])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        "anonanalyze: error: --children does not apply to scenario zygote (its parameters: "
        "--vmas, --file-vmas, --apps, --app-faults, --app-cow)"]
    res = r.invoke(cli.main, ["simulate", "adversarial", "--vmas", "0"])
    assert res.exit_code == 2 and "at least 1" in res.stderr
    res = r.invoke(cli.main, ["simulate", "chain", "--cow", "2"])
    assert res.exit_code == 2 and "at most 1" in res.stderr
    res = r.invoke(cli.main, ["simulate", "nosuch"])
    assert res.exit_code == 2
    res = r.invoke(cli.main, ["simulate", "chain", "-o", str(tmp_path / "no" / "x.json")])
    assert res.exit_code == 6 and res.stderr.startswith("anonanalyze: error: cannot write")
    out = tmp_path / "c.json"
    res = r.invoke(cli.main, ["simulate", "chain", "--format", "json", "-o", str(out)])
    assert res.exit_code == 0 and json.loads(out.read_text())["scenario"] == "chain"
    assert "simulate" in r.invoke(cli.main, ["--help"]).stdout
