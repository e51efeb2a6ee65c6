"""The analyzer on real recordings (fixtures/, made by scripts/make-fixtures).

Every expected number is derived here from the workload's parameters
(docs/workloads.md) and the rules in docs/models.md, plus the baseline
recording's own counts (``anonshape -n 0 -s 0 -m 0 -f 6``): the process has
a few anon_vmas of its own (ELF loader, heap, stack) that depend on libc and
the kernel, so the counts of a parameterised run are checked as differences
against the baseline. Nothing is pasted from a run.
"""

import functools
import json
import os
import re

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from anonscope.analyzer import cli
from mdtables import md_text

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
BASE = "anonshape-base-f6.parquet"
RUN = "anonshape-n40-s10-m5-f6.parquet"
N, S, M, F = 40, 10, 5, 6          # RUN's parameters; BASE is -n 0 -s 0 -m 0 -f F
N100, F100 = 100, 10               # anonshape-n100-f10: -n 100 -s 0 -m 0 -f 10
SYS_N, SYS_S, SYS_M, SYS_F = 20, 4, 2, 3   # system-anonshape: -n 20 -s 4 -m 2 -f 3 -t
SYS_COMM = "anonsys"                       # the copy of anonshape run there

AV, AVC, VMA = "anon_vma", "anon_vma_chain", "vm_area_struct"
RMAP = (AV, AVC)
ALLOC_PATHS = ("fault", "fork", "clone_fork", "clone_vma", "other")


def fixture(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: run scripts/make-fixtures (root)")
    return path


@functools.lru_cache(maxsize=None)
def _report(name, fmt):
    res = CliRunner().invoke(cli.main, ["report", fixture(name), "--format", fmt])
    assert res.exit_code == 0, res.output
    return res.stdout


def report(name):
    return json.loads(_report(name, "json"))


def pct(eager, model):
    return round(100.0 * (eager - model) / eager, 1)


def kb(nbytes):
    return f"{nbytes / 1024:.2f}"


@pytest.fixture(scope="module")
def base():
    return report(BASE)


@pytest.fixture(scope="module")
def run():
    return report(RUN)


def diff(run, base, *keys):
    a, b = run, base
    for k in keys:
        a, b = a[k], b[k]
    return a - b


def per_child_fork_av(r, forks):
    """Parent VMAs with an anon_vma at each fork: anon_vma_fork() allocates one
    `fork` anon_vma per such VMA (E2), and the children are forked one after
    another from an unchanged parent."""
    n = r["objects"][AV]["allocated"]["fork"]
    assert n % forks == 0
    return n // forks


# ----------------------------------------------------------------- the runs

@pytest.mark.parametrize("name", [BASE, RUN, "anonshape-n100-f10.parquet"])
def test_command_runs_are_complete(name):
    """Command mode: only the workload, nothing lost, every object it
    allocated freed before the run ended (docs/workloads.md), so each run
    object's free matched its alloc; the one pre-run object (the stack's
    anon_vma + AVC + VMA, made by exec before the collector saw the command)
    is a preexisting free."""
    r = report(name)
    assert r["run"]["lost_events"] == 0 and r["warnings"] == []
    assert r["run"]["target"]["mode"] == "command"
    for obj in (AV, AVC, VMA):
        o = r["objects"][obj]
        assert o["unmatched_frees"] == 0
        assert o["freed"] - o["freed_preexisting"] == o["allocated_total"]
        assert o["run_objects"]["live_at_end"] == 0
        assert o["live_at_end"] == -o["freed_preexisting"]
        assert o["object_size_source"] == "slab_size"
    # E4: AVCs are freed by unlink_anon_vmas, anon_vmas by __put_anon_vma
    assert r["objects"][AVC]["freed_by_path"]["unlink"] == r["objects"][AVC]["freed"]
    assert r["objects"][AV]["freed_by_path"]["put"] == r["objects"][AV]["freed"]
    assert r["objects"][VMA]["freed_by_path"]["vma_free"] == r["objects"][VMA]["freed"]


def test_eager_counts_by_path(run, base):
    """docs/workloads.md's table: differences against the baseline."""
    own = per_child_fork_av(base, F)        # baseline parent VMAs with an anon_vma
    assert per_child_fork_av(run, F) == own + N + S
    want = {
        AV: {"fault": N, "fork": F * (N + S), "clone_fork": 0, "clone_vma": 0, "other": 0},
        AVC: {"fault": N, "fork": F * (N + S), "clone_fork": F * (N + S),
              "clone_vma": S + M, "other": 0},
    }
    for obj in RMAP:
        got = {p: diff(run, base, "objects", obj, "allocated", p) for p in ALLOC_PATHS}
        assert got == want[obj], obj
        assert diff(run, base, "objects", obj, "allocated_total") == sum(want[obj].values())
    callers = {c: diff(run, base, "objects", AVC, "clone_vma_callers", c)
               for c in ("split", "merge", "mremap", "fork", "unknown")}
    assert callers == {"split": S, "merge": 0, "mremap": M, "fork": 0, "unknown": 0}
    # the workload frees all of it too
    assert diff(run, base, "objects", AV, "freed") == N + F * (N + S)
    assert diff(run, base, "objects", AVC, "freed") == N + S + M + 2 * F * (N + S)


def test_eager_peaks(run, base):
    """Children are forked one at a time and waited for: the peak is the
    parent's objects plus one child's. Parent: N fault anon_vmas; N - M fault
    AVCs (M freed by mremap's unmap), S split and M mremap AVCs = N + S AVCs.
    Child: one anon_vma and two AVCs per parent VMA with an anon_vma."""
    assert diff(run, base, "objects", AV, "peak_live") == N + (N + S)
    assert diff(run, base, "objects", AVC, "peak_live") == (N + S) + 2 * (N + S)
    for obj in RMAP:
        assert run["objects"][obj]["run_objects"]["peak_live"] == run["objects"][obj]["peak_live"]
        e = run["models"]["eager"][obj]
        assert e["allocated"] == run["objects"][obj]["allocated_total"]
        assert e["allocated_range"] == [e["allocated"], e["allocated"]]
        assert e["peak_live"] == run["objects"][obj]["run_objects"]["peak_live"]
        size = run["objects"][obj]["object_size"]
        assert e["bytes"] == e["allocated"] * size
        assert e["peak_live_bytes"] == e["peak_live"] * size


@pytest.mark.parametrize("name", [BASE, RUN])
def test_process_tree(name):
    """One forking process and F leaves, each born and exited in the run."""
    p = report(name)["processes"]
    assert (p["seen"], p["forking"], p["leaf"]) == (1 + F, 1, F)
    assert (p["born_in_run"], p["exited_in_run"]) == (F, 1 + F)
    assert (p["process_forks"], p["threads_or_vforks"], p["max_fork_depth"]) == (F, 0, 1)
    parents = [e for e in p["by_process"] if not e["leaf"]]
    children = [e for e in p["by_process"] if e["leaf"]]
    assert len(parents) == 1 and parents[0]["process_forks"] == F
    assert len(children) == F


def test_per_child_objects(run, base):
    """Each child owns one `fork` anon_vma and AVC and one `clone_fork` AVC
    per parent VMA with an anon_vma (E2; chains of length 1)."""
    own = per_child_fork_av(base, F)
    for r, vmas in ((base, own), (run, own + N + S)):
        for e in r["processes"]["by_process"]:
            if e["leaf"]:
                assert (e["anon_vma"], e["anon_vma_chain"]) == (vmas, 2 * vmas)


# ------------------------------------------------------------------- lazy

def test_lazy(run, base):
    """docs/models.md section 2. The children never fork: their `fork`
    anon_vma + AVC (L2) are never allocated, so lazy drops exactly
    F(N+S) of each against eager. The parent's fault pairs (L1) and split
    AVCs (L3) are upgraded at its first fork (U1), except the M moved VMAs:
    their fault AVC was freed by mremap (saved), and they were upgraded at the
    mremap (U2: the AVC, and their own fault anon_vma, which the fork then
    does not upgrade again). clone_fork (L4) and mremap copies (L6) stay."""
    lz, lb = run["models"]["lazy"], base["models"]["lazy"]
    ez = run["models"]["eager"]
    assert diff(run, base, "models", "eager", AV, "allocated") - \
        diff(run, base, "models", "lazy", AV, "allocated") == F * (N + S)
    assert diff(run, base, "models", "eager", AVC, "allocated") - \
        diff(run, base, "models", "lazy", AVC, "allocated") == F * (N + S)
    assert lz[AV]["allocated"] - lb[AV]["allocated"] == N
    assert lz[AVC]["allocated"] - lb[AVC]["allocated"] == (N + S - M) + M + M + F * (N + S)

    up, ub = lz["upgrades"], lb["upgrades"]
    assert up["fork"] - ub["fork"] == N + S - M       # VMAs upgraded at fork
    assert (up["mremap"], ub["mremap"]) == (M, 0)
    assert up["mremap_range"] == [M, M] and up["mremap_unknown_sources"] == 0
    assert up["objects"][AV] - ub["objects"][AV] == N
    assert up["objects"][AVC] - ub["objects"][AVC] == N + S
    # every parent VMA with an anon_vma at the fork (the child's `fork`
    # anon_vmas count them) is upgraded in the lazy kernel, at the fork or
    # before it (mremap), unless it predates the run: within the fork range,
    # whose high end is that count (docs/models.md#lazy-bounds)
    for r in (base, run):
        vmas = per_child_fork_av(r, F)
        fr = r["models"]["lazy"]["upgrades"]["fork_range"]
        assert fr[0] <= r["models"]["lazy"]["upgrades"]["fork"] <= fr[1] == vmas
        assert fr[0] <= vmas - r["models"]["lazy"]["upgrades"]["mremap"] <= fr[1]

    # low end: every upgrade capped by the fork's clone_fork count (no cap
    # bites here), the moved VMAs' anon_vmas counted once: the same
    assert lz[AV]["allocated_range"][0] - lb[AV]["allocated_range"][0] == N
    assert lz[AVC]["allocated_range"][0] - lb[AVC]["allocated_range"][0] == \
        lz[AVC]["allocated"] - lb[AVC]["allocated"]
    for obj in RMAP:
        lo, hi = lz[obj]["allocated_range"]
        assert lo <= lz[obj]["allocated"] <= hi
        size = run["objects"][obj]["object_size"]
        assert lz[obj]["bytes"] == lz[obj]["allocated"] * size
        assert lz[obj]["bytes_range"] == [lo * size, hi * size]
        assert lz["saved_pct"][obj] == pct(ez[obj]["allocated"], lz[obj]["allocated"])
        assert lz["peak_saved_pct"][obj] == pct(ez[obj]["peak_live"], lz[obj]["peak_live"])

    # peak: parent's N anon_vmas and N + S AVCs, plus one child's N + S
    # clone_fork AVCs (no anon_vma of its own)
    assert lz[AV]["peak_live"] - lb[AV]["peak_live"] == N
    assert lz[AVC]["peak_live"] - lb[AVC]["peak_live"] == 2 * (N + S)

    # fork-time objects: eager fork + clone_fork; lazy clone_fork + fork
    # upgrades (the parent's N - M unmoved fault anon_vmas, N + S - M AVCs)
    ft, fb = lz["extra_costs"]["fork_time_objects"], lb["extra_costs"]["fork_time_objects"]
    assert ft["eager"] - fb["eager"] == 3 * F * (N + S)
    assert ft["lazy"] - fb["lazy"] == F * (N + S) + (N - M) + (N + S - M)
    assert lz["extra_costs"]["repointed_pages"]["fidelity"] == "not measurable"


def test_lazy_vma_growth(run):
    """x86_64: a root pointer (8) and a refcount (4) per VMA, same count,
    priced at the slab slot the larger object needs: the recording's
    vm_area_struct cache (/sys/kernel/slab object_size 192, align 64,
    slot 192 on the 6.18 host that made the fixtures: SLAB_HWCACHE_ALIGN)
    gives ALIGN(192 + 12, 64) = 256, +64 B (+33%), not +12."""
    lz, ev = run["models"]["lazy"], run["models"]["eager"]
    g = lz["vma_growth"]
    assert run["run"]["arch"] == "x86_64"
    assert g["bytes_per_vma"] == 8 + 4
    meta = pq.read_metadata(fixture(RUN)).metadata
    v = json.loads(meta[b"anonscope.object_sizes"])[VMA]
    word = lambda n: -(-n // 8) * 8                                  # noqa: E731
    slot = -(-(word(v["object_size"] + 12) + v["slab_size"] - word(v["object_size"])) // v["align"]) * v["align"]
    assert (v["object_size"], v["align"], v["slab_size"], slot) == (192, 64, 192, 256)
    assert g["slot_bytes"] == [192, 256] and g["slot_growth_pct"] == 33.3
    assert g["run_vmas_peak_live"] == ev[VMA]["peak_live"]
    assert g["peak_extra_bytes"] == (slot - 192) * ev[VMA]["peak_live"]
    assert lz[VMA]["allocated"] == ev[VMA]["allocated"]
    assert lz[VMA]["peak_live_bytes"] == ev[VMA]["peak_live"] * slot


# ----------------------------------------------------------------- nofork

def test_nofork(run, base):
    """docs/models.md section 3. The children are the leaf generations; they
    allocate nothing of their own (no fault, no split), so ``nofork`` (opt-out
    after start) saves nothing, and ``nofork_clone`` (set at clone) saves the
    child's own anon_vma and AVC of each of the N + S parent VMAs with an
    anon_vma it inherits, per fork: F (N + S) each, while the F (N + S)
    clone_fork links into the parent's anon_vmas stay. They are born and
    exit in the run, but these are tracepoint recordings: a fork row does not
    tell whether the inherited VMA maps a file (N5), so nofork_clone's high
    end keeps every fork pair (eager's count), nofork's range is one value."""
    for r in (base, run):
        for v in ("nofork", "nofork_clone"):
            n = r["models"][v]
            g = n["generations"]
            assert (g["forking"], g["leaf"], g["leaf_whole_life_in_run"], g["fork_then_exec"]) == (1, F, F, 0)
        for obj in RMAP:
            n, c = r["models"]["nofork"][obj], r["models"]["nofork_clone"][obj]
            assert n["allocated_range"] == [n["allocated"]] * 2
            assert c["allocated_range"] == [c["allocated"], r["models"]["eager"][obj]["allocated"]]
        for obj in RMAP:
            e, n = r["models"]["eager"][obj], r["models"]["nofork"][obj]
            assert (n["allocated"], n["peak_live"], n["saved"]) == (e["allocated"], e["peak_live"], 0)
    diff = {v: {obj: run["models"][v][obj]["allocated"] - base["models"][v][obj]["allocated"] for obj in RMAP}
            for v in ("eager", "nofork_clone")}
    assert diff["eager"] == {AV: N + F * (N + S), AVC: N + S + M + 2 * F * (N + S)}
    assert diff["nofork_clone"] == {AV: N, AVC: N + S + M + F * (N + S)}
    assert run["models"]["nofork_clone"][AVC]["allocated"] >= run["objects"][AVC]["allocated"]["clone_fork"]
    for obj in RMAP:
        n, e = run["models"]["nofork_clone"], run["models"]["eager"][obj]["allocated"]
        lo, hi = n[obj]["allocated_range"]
        assert n["saved_pct_range"][obj] == [pct(e, hi), pct(e, lo)]


# --------------------------------------------------------------- markdown

def _table(lines, start):
    """The Markdown table starting at ``lines[start]``: header, rows."""
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    assert set(lines[start + 1].replace("|", "").strip()) == {"-"}
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return header, rows


def test_markdown_cover_letter_table():
    """The domain example's shape (docs/workloads.md, ../shared/domain.md):
    -n 100 -f 10. The Markdown has the cover letter's table (rows
    vm_area_struct, anon_vma_chain, anon_vma; before/after/change) with the
    JSON's numbers, and those follow from the parameters."""
    name = "anonshape-n100-f10.parquet"
    r, b = report(name), report(BASE)
    md = md_text(_report(name, "markdown"))
    lines = md.splitlines()
    starts = [i for i, line in enumerate(lines)
              if line.startswith("| object | eager window peak (KB) | design window peak (KB) | change |")]
    assert len(starts) == 3                    # eager vs lazy, vs the two no-fork designs
    ev = r["models"]["eager"]
    for start, model in zip(starts, ("lazy", "nofork", "nofork_clone")):
        header, rows = _table(lines, start)
        assert header == ["object", "eager window peak (KB)", "design window peak (KB)", "change"]
        assert [row[0] for row in rows] == [VMA, AVC, AV]
        m = r["models"][model]
        for obj, before, after, change in rows:
            bb, ab = ev[obj]["peak_live_bytes"], m[obj]["peak_live_bytes"]
            assert (before, after) == (kb(bb), kb(ab)), (model, obj)
            assert change == f"{100.0 * (ab - bb) / bb:+.1f}%"
            assert float(change.rstrip("%")) == pytest.approx(100.0 * (ab - bb) / bb, abs=0.05)

    # the JSON's numbers from the parameters (differences against BASE,
    # whose F is 6: per-child counts scale with the number of forks)
    own = per_child_fork_av(b, F)
    assert per_child_fork_av(r, F100) == own + N100
    o = r["objects"]
    assert o[AV]["allocated"]["fault"] - b["objects"][AV]["allocated"]["fault"] == N100
    assert o[AV]["allocated"]["fork"] == F100 * (own + N100)
    assert o[AVC]["allocated"]["clone_fork"] == F100 * (own + N100)
    assert o[AVC]["allocated"]["clone_vma"] == b["objects"][AVC]["allocated"]["clone_vma"]
    # peaks: parent + one child at a time (BASE's F does not matter); lazy:
    # the child's own objects never exist
    assert ev[AV]["peak_live"] - b["models"]["eager"][AV]["peak_live"] == N100 + N100
    assert ev[AVC]["peak_live"] - b["models"]["eager"][AVC]["peak_live"] == 3 * N100
    lz = r["models"]["lazy"]
    assert lz[AV]["peak_live"] - b["models"]["lazy"][AV]["peak_live"] == N100
    assert lz[AVC]["peak_live"] - b["models"]["lazy"][AVC]["peak_live"] == 2 * N100
    # lazy allocations: the parent's fault anon_vmas, upgraded at the first fork
    assert lz[AV]["allocated"] == o[AV]["allocated"]["fault"]
    assert lz[AVC]["allocated"] == o[AVC]["allocated"]["fault"] + \
        o[AVC]["allocated"]["clone_vma"] + o[AVC]["allocated"]["clone_fork"]
    # the rest of the Markdown quotes the same JSON
    assert f"| ANON_VMA_LAZY | {lz[AV]['allocated']} | " in md
    assert f"Processes: {1 + F100} seen, 1 forked, {F100} leaf" in md
    assert f"{lz['upgrades']['fork']} VMA upgrades at fork" in md


# ----------------------------------------------------------- system-wide

@pytest.fixture(scope="module")
def system():
    return report("system-anonshape.parquet")


@pytest.fixture(scope="module")
def system_rows():
    path = fixture("system-anonshape.parquet")
    df = pq.read_table(path).to_pandas()
    return df.sort_values("ts_ns", kind="stable").reset_index(drop=True), \
        pq.read_metadata(path).metadata


def test_system_preexisting(system, system_rows):
    """System-wide: objects allocated before the run are freed in it
    (preexisting); live counts are then a delta from the run start
    (docs/models.md section 0), run objects are exact."""
    df, _ = system_rows
    assert system["run"]["target"]["mode"] == "system"
    assert system["run"]["lost_events"] == 0
    for obj in (AV, AVC, VMA):
        o = system["objects"][obj]
        rows = df[df["object"] == obj]
        pre = int((rows["event"].eq("free") & rows["preexisting"].fillna(False)).sum())
        allocs = int(rows["event"].eq("alloc").sum())
        frees = int(rows["event"].eq("free").sum())
        assert pre > 0
        assert (o["freed_preexisting"], o["allocated_total"], o["freed"]) == (pre, allocs, frees)
        assert o["unmatched_frees"] == 0
        assert o["run_objects"]["live_at_end"] == allocs - (frees - pre)
        assert o["live_at_end"] == allocs - frees
        assert o["min_live"] <= 0 and o["peak_live"] <= o["run_objects"]["peak_live"]
    p = system["processes"]
    forks = df[df["event"].eq("fork") & ~df["shares_mm"].fillna(False).astype(bool)]
    assert p["forking"] == forks["tgid"].nunique() and p["leaf"] == p["seen"] - p["forking"]


def test_system_anonshape_children(system, base):
    """The anonshape run inside the system recording (as `anonsys`, -n 20 -s 4 -m 2 -f 3 -t):
    each child owns one `fork` anon_vma and AVC and one `clone_fork` AVC per
    parent VMA with an anon_vma (BASE's count + N + S); -t's CoW writes make
    no object."""
    own = per_child_fork_av(base, F)
    kids = [e for e in system["processes"]["by_process"]
            if e["comm"] == SYS_COMM and e["leaf"]]
    parents = [e for e in system["processes"]["by_process"]
               if e["comm"] == SYS_COMM and not e["leaf"]]
    assert len(kids) == SYS_F and len(parents) == 1
    assert parents[0]["process_forks"] == SYS_F
    for e in kids:
        assert (e["anon_vma"], e["anon_vma_chain"]) == \
            (own + SYS_N + SYS_S, 2 * (own + SYS_N + SYS_S))


def test_system_slabinfo_aliases(system, system_rows):
    """The anon_vma_chain cache is merged with fs_cache and eventpoll_pwq:
    slabinfo's line counts their objects too. The check reports the range of
    slabinfo's overstatement (docs/models.md section 1) and every format says
    that it comes from the merged caches."""
    df, meta = system_rows
    aliases = json.loads(meta[b"anonscope.slab_aliases"])
    s = system["slabinfo"]
    slab = df[df["event"] == "slab"]
    assert s["samples"] == slab["ts_ns"].nunique() >= 2
    for obj in (AV, AVC, VMA):
        rows = slab[slab["slab_cache"] == obj]
        c = s[obj]
        first, last = rows.iloc[0], rows.iloc[-1]
        assert (c["active_first"], c["active_last"]) == (first["slab_active"], last["slab_active"])
        assert c["aliases"] == last["slab_aliases"]
        # traced net change between the two samples, counted from the rows
        between = df.loc[first.name + 1:last.name - 1]
        between = between[between["object"] == obj]
        traced = int(between["event"].eq("alloc").sum() - between["event"].eq("free").sum())
        assert c["traced_change"] == traced
        assert c["slab_change"] == c["active_last"] - c["active_first"]
        assert c["difference"] == c["slab_change"] - traced
        # run objects live at the last sample: allocated before it, not freed before it
        upto = df.loc[:last.name]
        upto = upto[upto["object"] == obj]
        run_live = int(upto["event"].eq("alloc").sum()
                       - (upto["event"].eq("free") & ~upto["preexisting"].fillna(False).astype(bool)).sum())
        assert c["run_objects_live_at_last_sample"] == run_live
        minus = [c["active_last"] - c["active_first"] - traced, c["active_last"] - run_live]
        assert c["slabinfo_minus_traced_range"] == minus
        assert c["slabinfo_overstates_range"] == [max(minus[0], 0), max(minus[1], 0)]
    avc = s[AVC]
    assert avc["aliases"] == len(aliases[AVC]) == 2
    assert sorted(avc["alias_names"]) == sorted(aliases[AVC]) == ["eventpoll_pwq", "fs_cache"]
    assert s[AV]["aliases"] == 0 and "note" not in s[AV]
    assert "merged" in avc["note"] and "counts their objects too" in avc["note"]
    lo, hi = avc["slabinfo_overstates_range"]
    assert hi > 0

    md = _report("system-anonshape.parquet", "markdown")
    assert re.search(
        r"the anon_vma_chain slab cache is merged with 2 other cache\(s\) "
        r"\((eventpoll_pwq, fs_cache|fs_cache, eventpoll_pwq)\); /proc/slabinfo "
        rf"overstates AVCs by \[{lo}, {hi}\] objects here", md), md
    text = _report("system-anonshape.parquet", "text")
    assert f"anon_vma_chain: slabinfo change {avc['slab_change']:+d}" in text
    assert f"aliases 2; slabinfo overstates by [{lo}, {hi}] objects" in text


def test_census_of_the_real_system_recording():
    """The system-wide fixture starts with a census (schema v4, made by the
    census program of its own on the tracepoint-only host): the report's
    counts are the rows' (read here with pyarrow) and the metadata's, and
    the design bounds stay inside them."""
    path = fixture("system-anonshape.parquet")
    meta = json.loads(pq.read_metadata(path).metadata[b"anonscope.census"])
    t = pq.read_table(path, columns=["event", "object", "chain_avcs", "tgid", "num_children"]).to_pandas()
    c = t[t.event == "census"]
    v, a = c[c.object == VMA], c[c.object == AV]
    cen = report("system-anonshape.parquet")["census"]
    assert cen["status"] == "done" == meta["status"]
    assert cen["vmas"] == len(v) == meta["vma_rows"] > 0
    assert cen["anon_vma"]["with_rows"] == len(a) == meta["anon_vma_rows"]
    assert cen["anon_vma"]["count"] == meta["anon_vmas_linked"] >= len(a)
    assert cen["anon_vma_chain"]["count"] == int(v.chain_avcs.sum()) >= len(v)
    assert cen["processes"] == v.tgid.nunique()
    assert cen["largest_num_children"] == int(a.num_children.max())
    lz, nf = cen["designs"]["lazy"], cen["designs"]["nofork"]
    for m in (lz, nf):
        assert m["anon_vma_saved"][0] == 0 and m["anon_vma_saved"][1] <= cen["anon_vma"]["with_rows"]
        assert m["anon_vma_chain_saved"][0] == 0 and m["anon_vma_chain_saved"][1] <= cen["anon_vma_chain"]["count"]
    # C3 candidates are C2 candidates of whole processes: never more saved
    assert nf["anon_vma_chain_saved"][1] <= lz["anon_vma_chain_saved"][1] == lz["candidate_vmas"]
    assert "rule C2" in _report("system-anonshape.parquet", "text")


@pytest.mark.parametrize("name", [BASE, RUN, "anonshape-n100-f10.parquet"])
def test_command_runs_say_why_there_is_no_census(name):
    cen = report(name)["census"]
    assert cen["status"] == "not run" and "recorded command starts after the census" in cen["reason"]


def test_the_report_names_the_host():
    """The run names the host that recorded it (metadata ``hostname``, v8),
    so a machine share (S7) is read against the right machine."""
    name = "system-anonshape.parquet"
    host = json.loads(pq.read_metadata(fixture(name)).metadata[b"anonscope.hostname"])
    assert host and report(name)["run"]["hostname"] == host
    assert f"host {host}, kernel " in _report(name, "text")
    assert f"host {host}, kernel " in _report(name, "markdown")


def test_the_text_says_what_each_saving_is_worth_against_the_machine():
    """S7 in words (#15 item 3): at the end, each design's saving against
    eager (anon_vma + AVC live bytes at the slab slot) as a share of the
    last /proc/meminfo sample's MemTotal and Slab, read here from the slab
    rows of the recording, not from the analyzer's denominators."""
    name = "system-anonshape.parquet"
    rows = pq.read_table(fixture(name)).to_pandas()
    slab = rows[(rows.event == "slab") & (rows.mem_total_kb > 0)].sort_values("ts_ns")
    total_kb, slab_kb = int(slab.mem_total_kb.iloc[-1]), int(slab.mem_slab_kb.iloc[-1])
    end = report(name)["snapshots"][-1]["designs"]
    live = {d: sum(end[d][o]["live"] * end[d][o]["slot_bytes"] for o in ("anon_vma", "anon_vma_chain"))
            for d in end}
    text = _report(name, "text")
    for d in end:                                   # with the VMAs, at each design's slot
        vmas = live[d] + end[d]["vm_area_struct"]["live"] * end[d]["vm_area_struct"]["slot_bytes"]
        assert f"with VMAs {vmas / 1024:.2f} KB = {100 * vmas / (slab_kb * 1024):.3g}% of Slab" in text, d
    for d in ("lazy", "nofork", "nofork_clone"):
        saved = live["eager"] - live[d]
        assert (f"{d} {live[d] / 1024:.2f} KB" in text and f"(saves {saved / 1024:.2f} KB: "
                f"{100 * saved / (total_kb * 1024):.3g}% of MemTotal, {100 * saved / (slab_kb * 1024):.3g}% of Slab)"
                in text), d
