"""A lock or time a design leaves unknown is printed "unknown", never 0 ns
(docs/models.md#walks-recorded; issue #10 items 13, 14): the lazy walks
and no-fork leaf walks (the series claims no anon_vma lock, disputed on
the list) and the CoW-context walks (the draft: RCU with TODOs). The JSON
holds null there with an ``unknown`` note; text and Markdown print
"unknown". Eager stays as measured. Recordings come from the generator
(eventgen.Gen) and the expected values from the scenario parameters."""

import json
import re

import pytest

from anonscope.analyzer import load, render, report
from anonscope.analyzer import simulate as S
from anonscope.analyzer.rmapsim import LOCK_COW, LOCK_NONE_LAZY
from anonscope.analyzer.walks import LOCK_EAGER
from eventgen import Gen
from mdtables import md_cells
from scenarios import parent_and_children

KSWAPD = 2
TITLES = render.WALK_TITLE
CHANGED = ("lazy", "nofork", "nofork_clone", "cow_context")
ZERO_NS = re.compile(r"(?<![\d.])0 ns")          # "0 ns", not "700 ns" or "1.0 ns"
NULL3 = {"p50": None, "p99": None, "max": None}


def build(g, tmp_path):
    return report.build(load.load(g.write(str(tmp_path / "run.parquet"))))


def leaf_only(N, wait, unmatched):
    """A leaf process (it never forks) faults N VMAs; kswapd walks each,
    waiting ``wait`` ns for the root's rwsem; a task that never walks waits
    ``unmatched`` ns as a walk-taker (a wait matched to no walk). Every walk
    is of a never-upgraded, leaf fault anon_vma: lazy, no-fork and the CoW
    context change all N."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(5, "leaf")
    g.process(6, "other")
    vmas = g.faults(5, N)
    if unmatched:
        g.lock(6, vmas[0], unmatched, func="walk")
    seen = [g.walk(KSWAPD, v, lock_wait_ns=wait) for v in vmas]
    return g, seen


def parent_and_leaves(V, C, K, wp, wc):
    """Parent faults V VMAs and forks C children; child k faults K VMAs of
    its own. kswapd walks the parent VMAs (waiting wp ns each) and the
    children's (wc ns each): lazy and no-fork change the C*K walks of the
    children's own folios, the V parent walks stay eager."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    pv, cv = parent_and_children(g, V, C, K)
    for v in pv:
        g.walk(KSWAPD, v, lock_wait_ns=wp)
    for v in cv:
        g.walk(KSWAPD, v, lock_wait_ns=wc)
    return g


def text_row(text, design):
    """The text walks-table row of ``design``."""
    head = f"  {TITLES[design]}  "
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("rmap walks per design"))
    return next(ln for ln in lines[start:] if ln.startswith(head))


def md_row(md, design):
    """{column: cell} of the Markdown walks-table row of ``design``."""
    lines = md.splitlines()
    i = next(i for i, ln in enumerate(lines) if md_cells(ln)[:2] == ["design", "walks"])
    header = md_cells(lines[i])
    for ln in lines[i + 2:]:
        cells = md_cells(ln)
        if cells[0] == TITLES[design]:
            return dict(zip(header, cells))
    raise AssertionError(f"no row for {design}")


def rendered(r):
    return render.render(r, "text"), render.render(r, "markdown"), json.loads(render.render(r, "json"))


@pytest.mark.parametrize("N,wait,unmatched", [(3, 0, 0), (4, 700, 0), (2, 0, 250), (5, 40, 90)])
def test_every_walk_unknown(tmp_path, N, wait, unmatched):
    """No walk of lazy, no-fork or the CoW context stays eager: their lock
    wait and time are null in JSON (the unmatched wait is not theirs) and
    "unknown" in text and Markdown, never "0 ns" nor "-/-/-"."""
    g, seen = leaf_only(N, wait, unmatched)
    assert seen == [1] * N
    text, md, j = rendered(build(g, tmp_path))
    w = j["walks"]
    e = w["eager"]
    assert e["lock_wait_ns"] == N * wait + unmatched and e["time_walks"] == N
    assert e["time_ns"] == {"p50": 3 * g.step, "p99": 3 * g.step, "max": 3 * g.step}
    assert "unknown" not in e
    for d in CHANGED:
        x = w[d]
        assert x["count"] == N and x["lock_wait_unknown_walks"] == N
        assert x["time_unknown_walks"] == N and x["time_walks"] == 0
        assert x["lock_wait_ns"] is None and x["time_ns"] == NULL3
        assert set(x["unknown"]) == {"lock_wait_ns", "time_ns"}
        assert all(v.startswith("unknown for every walk") for v in x["unknown"].values())
        row = text_row(text, d)
        assert row.rstrip().endswith("unknown") and "-/-/-" not in row and not ZERO_NS.search(row)
        cells = md_row(md, d)
        assert cells["lock wait"] == "unknown" and cells["time p50/p99/max"] == "unknown"
        assert cells["locks (walks)"] == f"unknown {N}"
        assert not ZERO_NS.search(" ".join(cells.values()))
    why = "the series claims no anon_vma lock; disputed on the list"
    for d in ("lazy", "nofork", "nofork_clone"):
        assert w[d]["leaf_walks" if d != "lazy" else "lazy_walks"] == N
        assert why in w[d]["unknown"]["lock_wait_ns"]
    assert "RCU, with TODOs" in w["cow_context"]["unknown"]["lock_wait_ns"]
    # eager: measured, in both formats
    assert text_row(text, "eager").rstrip().endswith(render.ns(N * wait + unmatched))
    assert md_row(md, "eager")["lock wait"] == render.ns(N * wait + unmatched)
    assert md_row(md, "eager")["locks (walks)"] == f"{LOCK_EAGER.split(' (')[0]} {N}"


@pytest.mark.parametrize("V,C,K,wp,wc", [(3, 2, 1, 0, 0), (4, 3, 2, 700, 50), (1, 1, 1, 10, 0)])
def test_some_walks_unknown(tmp_path, V, C, K, wp, wc):
    """V walks stay eager, C*K change: JSON keeps the V walks' measured
    wait and time (time_walks says so) with a note for the C*K; the table
    cell says unknown with the share, the measured part is on its own line."""
    g = parent_and_leaves(V, C, K, wp, wc)
    text, md, j = rendered(build(g, tmp_path))
    w = j["walks"]
    n, k = V + C * K, C * K
    assert w["eager"]["lock_wait_ns"] == V * wp + k * wc
    for d in ("lazy", "nofork", "nofork_clone"):
        x = w[d]
        assert x["count"] == n and x["lock_wait_unknown_walks"] == k == x["time_unknown_walks"]
        assert x["time_walks"] == V and x["lock_wait_ns"] == V * wp
        assert f"unknown for {k} of {n} walks" in x["unknown"]["lock_wait_ns"]
        assert x["lock"] == {"unknown (the series claims no anon_vma lock; disputed on the list)": k,
                             LOCK_EAGER: V}
        share = f"unknown ({k} of {n})"
        row = text_row(text, d)
        assert row.rstrip().endswith(share) and not ZERO_NS.search(row)
        cells = md_row(md, d)
        assert cells["lock wait"] == share == cells["time p50/p99/max"]
        assert cells["locks (walks)"] == f"unknown {k}; anon_vma root rwsem {V}"
        assert not ZERO_NS.search(cells["lock wait"])
        part = (f"{TITLES[d]}: the {V} walks that stay eager: time p50/p99/max "
                f"{render.ns(3 * g.step)}/{render.ns(3 * g.step)}/{render.ns(3 * g.step)}, "
                f"lock wait {render.ns(V * wp)}")
        assert f"  {part}" in text.splitlines() and f"- {part}." in md.splitlines()
    # the CoW context has no eager walk: all unknown
    cw = w["cow_context"]
    assert cw["lock_wait_ns"] is None and cw["time_ns"] == NULL3 and cw["count"] == n
    assert md_row(md, "cow_context")["lock wait"] == "unknown"


@pytest.mark.parametrize("V,C,K", [(3, 2, 1), (5, 4, 2)])
def test_markdown_visit_columns(tmp_path, V, C, K):
    """Item 14: the Markdown table has rmap_one calls and VMA-tree lookups
    in columns of their own, equal to the JSON fields: a parent folio maps
    into the parent and its C children (C + 1 of each), a child's own folio
    is exclusive (1 of each: the draft stops at its own mm)."""
    g = parent_and_leaves(V, C, K, 0, 0)
    _, md, j = rendered(build(g, tmp_path))
    cw = j["walks"]["cow_context"]
    cells = md_row(md, "cow_context")
    v3 = render._v3
    assert cells["rmap_one calls p50/p99/max"] == v3(cw["rmap_one_calls"])
    assert cells["VMA-tree lookups p50/p99/max"] == v3(cw["tree_lookups"])
    assert cw["tree_lookups"]["max"] == C + 1 == cw["rmap_one_calls"]["max"]
    for d in ("eager", "lazy", "nofork", "nofork_clone"):
        c = md_row(md, d)
        assert c["rmap_one calls p50/p99/max"] == v3(j["walks"][d]["visits"]) == c["visits p50/p99/max"]
        assert c["VMA-tree lookups p50/p99/max"] == "-"


def test_no_walks_in_a_design_print_a_dash(tmp_path):
    """A walk of a pre-run anon_vma is left out of the CoW context (count
    0): its cells say "-", not unknown nor 0 ns; lazy keeps it as eager."""
    g = Gen(fprobes=True)
    g.process(KSWAPD, "kswapd0")
    g.process(1, "old")
    pre = g.prerun_vma(1)
    g.fork(1, 2)
    g.walk(KSWAPD, pre, lock_wait_ns=30)
    text, md, j = rendered(build(g, tmp_path))
    assert j["walks"]["cow_context"]["count"] == 0 and j["walks"]["cow_context"]["unknown"] == {}
    assert md_row(md, "cow_context")["lock wait"] == "-" == md_row(md, "cow_context")["time p50/p99/max"]
    assert j["walks"]["lazy"]["lock_wait_ns"] == 30 and j["walks"]["lazy"]["unknown"] == {}
    assert md_row(md, "lazy")["lock wait"] == render.ns(30)


def test_simulator_lock_strings_say_unknown():
    """The simulator's lazy and CoW-context locks are unknown, with why."""
    assert LOCK_NONE_LAZY.startswith("unknown") and "disputed on the list" in LOCK_NONE_LAZY
    assert LOCK_COW.startswith("unknown") and "RCU, with TODOs" in LOCK_COW
    A = 3
    data = S.run("zygote", {"vmas": 2, "file_vmas": 1, "apps": A, "app_faults": 2, "app_cow": 1})
    out = S.render_text(data)
    assert f"lock: {LOCK_NONE_LAZY}:" in out and "lock: none" not in out
