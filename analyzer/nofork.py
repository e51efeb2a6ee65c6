"""Leaf / no-fork designs, the PR_SET_NOFORK idea (docs/models.md section 3).

A process generation (analyzer/generations.py: a tgid from its birth or an
exec to the next exec or its exit) that makes no process fork may opt out of
the anon rmap for the anonymous pages only it maps. Two designs:

- ``nofork``: the process opts out after it starts (a prctl of its own).
  Its fault-path anon_vma and AVC (mm/rmap.c __anon_vma_prepare) are not
  made, and of each anon_vma_clone() call outside fork (split, merge,
  mremap: mm/vma.c) one AVC, the link to its own anon_vma; the other n-1
  link the VMA into its ancestors' anon_vmas, which their rmap walks need.
  Objects its parent's fork made for it stay.
- ``nofork_clone``: the flag is set at clone by the fork server. Also the
  child's own anon_vma and AVC of anon_vma_fork() (``fork`` path) are not
  made; the ``clone_fork`` AVCs stay in every design, because
  anon_vma_fork() clones the parent's chain "so rmap can find non-COWed
  pages in child processes" (reclaim, migration, folio_referenced and
  memory-failure walk the parent's anon_vmas).

Neither design has a folio-to-VMA pointer for a VMA moved by mremap or a
MAP_PRIVATE file VMA (the ANON_VMA_LAZY series' own minimal variant needs
vma_mapping_base == 0): mremap copies keep every AVC, and on function-probe
recordings the VMAs that were moved or map a file keep their objects. A
tracepoint recording tells a file VMA only by the fault handler on its
fault's stack (caller ``cow_fault``, ``anon_fault``): the high end saves
only the fault objects known to be anonymous.
"""

from typing import NamedTuple

import numpy as np

from . import generations, live
from .eager import RMAP_OBJECTS, clone_calls, saved_pct
from .lazy import vma_growth
from .load import CALLER_CODE, OBJECT_CODE, PATH_CODE
from .order import unique

SECTION = "docs/models.md#nofork"
RULES = "docs/models.md#nofork-rules"
BOUNDS = "docs/models.md#nofork-bounds"
VARIANTS = ("nofork", "nofork_clone")


class _Moves(NamedTuple):
    """Tracepoint recordings: ``keep``, the fault AVC and anon_vma of each
    VMA an mremap moved, found as the lazy estimate finds U2's source (the
    first AVC the same task frees after the copy, and the anon_vma of the
    same __anon_vma_prepare() call); ``unfound``, the mremap copy rows
    whose source is not found so (a partial move, whose first AVC freed is
    a split piece's; a source from before the run). Both over ``a``."""
    keep: np.ndarray
    unfound: np.ndarray


def _moved_by_mremap(rp, a, tracepoint):
    """The _Moves of a tracepoint recording's rows ``a``, from the lazy
    estimate's ``tracepoint`` (lazy.Allocs of the same rows in the same
    order, lazy.mremap_sources)."""
    keep = np.zeros(len(a), dtype=bool)
    unfound = keep.copy()
    ob = rp.ob
    if not ((ob.path[a] == PATH_CODE["clone_vma"]) & (ob.caller[a] == CALLER_CODE["mremap"])).any():
        return _Moves(keep, unfound)
    A, (m, src) = tracepoint
    found = src >= 0
    found[found] = A.path[A.index_of(src[found])] == PATH_CODE["fault"]
    idx = A.index_of(src[found])
    keep[idx] = True
    pair = A.own_av[idx]
    keep[pair[pair >= 0]] = True
    unfound[m[~found]] = True    # (a generation that forked is no leaf: its copies are not looked at)
    return _Moves(keep, unfound)


def _cow_faults(rp, a):
    """Fault-path rows whose stack showed do_fault() (caller ``cow_fault``,
    schema v10): a private VMA with vm_ops, a MAP_PRIVATE file."""
    ob = rp.ob
    return (ob.path[a] == PATH_CODE["fault"]) & (ob.caller[a] == CALLER_CODE["cow_fault"])


def _kept_vmas(rp, a, moves):
    """Rows of VMAs no no-fork design can opt out: VMAs that an mremap copy
    moved (function probes: a ``clone_vma`` mremap row names them as source;
    tracepoints: _moved_by_mremap) and VMAs that map a file (``vma_file`` on
    their call rows, function probes; a ``cow_fault`` fault row, any
    backend)."""
    ob = rp.ob
    cow = _cow_faults(rp, a)
    if not ob.has_vma:
        moved = moves.keep
        return moved | cow, {"file_vma_objects": int((cow & ~moved).sum()), "moved_vma_objects": int(moved.sum())}
    calls = rp.rec.calls
    vma = ob.vma_id[a]
    file_vmas = calls.loc[calls["vma_file"].fillna(False).astype(bool), "vma_id"].to_numpy() \
        if len(calls) else np.zeros(0, np.int64)
    mremap = (ob.path[a] == PATH_CODE["clone_vma"]) & (ob.caller[a] == CALLER_CODE["mremap"])
    moved = unique(ob.src_vma_id[a][mremap])
    file = (np.isin(vma, file_vmas) & (vma >= 0)) | cow
    moved = np.isin(vma, moved) & (vma >= 0)
    return file | moved, {"file_vma_objects": int(file.sum()), "moved_vma_objects": int(moved.sum())}


def saved_rows(rp, a, g, tracepoint):
    """({variant: {"best", "high"}: boolean masks over ``a`` of the objects
    the design does not make}, the ``kept_vmas`` entry). ``high`` (most allocated) saves only in leaf
    generations whose whole life is in the run, and under nofork keeps a
    split piece's link to its inherited VMA's own anon_vma (N2). On a
    tracepoint recording ``high`` saves only fault rows whose stack showed
    an anonymous VMA (``anon_fault``): any other row may serve a MAP_PRIVATE
    file VMA (N5), and no event says which; nor in a generation with an
    mremap copy whose source is not found (its moved VMA is unknown, N5)."""
    ob = rp.ob
    path = ob.path[a]
    leaf = ~g.forking[g.gen]
    whole = g.whole_life[g.gen]
    fault = path == PATH_CODE["fault"]     # `other` (an unknown call site) is kept: not known to be the fault path
    own_fork = path == PATH_CODE["fork"]
    allocs = tracepoint[0]               # lazy.Allocs of the same rows ``a``, same order
    one_per_clone = allocs.clone_first
    # N2 under nofork, high end: the piece of an inherited VMA keeps its link
    # to the VMA's own fork anon_vma (CoW copies made there stay findable)
    own_root_clone = clone_calls(rp, a, single=True)
    moves = None if ob.has_vma else _moved_by_mremap(rp, a, tracepoint)
    keep, kept_info = _kept_vmas(rp, a, moves)
    best = {"nofork": fault | one_per_clone, "nofork_clone": fault | one_per_clone | own_fork}
    high = {"nofork": fault | own_root_clone, "nofork_clone": best["nofork_clone"]}
    if not ob.has_vma:
        unsure = np.isin(g.gen, unique(g.gen[moves.unfound]))
        high = {v: fault & (ob.caller[a] == CALLER_CODE["anon_fault"]) & ~unsure for v in high}
    saved = {v: {"best": best[v] & leaf & ~keep, "high": high[v] & leaf & whole & ~keep} for v in best}
    return saved, kept_info


class Result(NamedTuple):
    """What nofork.model computes, returned instead of being left on the
    replay: ``report``, {variant: the model's numbers in the common layout};
    ``spans``, {name: {object: live.Spans}} of the run part for the
    snapshots (docs/models.md#snapshots S4): per variant its best
    (``nofork``, ``nofork_clone``) and high end (``nofork_high``,
    ``nofork_clone_high``)."""
    report: dict
    spans: dict


def model(rp, eager_model, lazy):
    """{variant: the model's numbers in the common layout} from the Replay
    ``rp``, eager's entry ``eager_model`` and the lazy model's lazy.Result
    ``lazy`` (whose VMA growth and pinned root VMAs price the high end of
    the extra cost; its tracepoint estimate's rows are these too)
    (docs/models.md#nofork-rules, N1-N8), returned as a Result with the
    variants' run spans."""
    a = lazy.tracepoint[0].rows            # rmap_allocs: the rows of the lazy estimate's Allocs
    g = generations.build(rp, a)
    saved, kept_info = saved_rows(rp, a, g, lazy.tracepoint)
    fidelity = ("exact for the run window's generations (function probes: file and mremap-moved VMAs kept)"
                if rp.ob.has_vma else
                "exact for the run window's generations, except that a tracepoint recording tells a "
                "MAP_PRIVATE file VMA only by its fault's stack (cow_fault): best counts the objects of "
                "VMAs of unknown kind as saved, the high end keeps them")
    report, spans = {}, {}
    for v in VARIANTS:
        report[v], spans[v], spans[v + "_high"] = _variant(rp, v, a, g, saved[v], eager_model, fidelity,
                                                           kept_info)
        report[v]["extra_costs"] = _extra_costs(rp, eager_model, lazy.report)
    return Result(report, spans)


def _variant(rp, name, a, g, saved, ev, fidelity, kept_info):
    """One variant's numbers, and {object: live.Spans} of what it keeps in
    its best value and at its high end (section 3.2). Returns (numbers,
    best spans, high spans)."""
    ob = rp.ob
    is_av = ob.object[a] == OBJECT_CODE["anon_vma"]
    pos, free = ob.pos[a], rp.free_pos(a)
    fork_exec = g.fork_exec[g.gen]
    out = {"fidelity": "exact (best), bounds (range)", "see": SECTION}
    spans = {}, {}
    for obj, sel in (("anon_vma", is_av), ("anon_vma_chain", ~is_av)):
        size = rp.sizes[obj][0]
        best = int((sel & ~saved["best"]).sum())
        high = int((sel & ~saved["high"]).sum())
        keep = sel & ~saved["best"]
        s = live.summary_intervals(pos[keep], free[keep])
        spans[0][obj] = live.Spans(pos[keep], free[keep])
        keep_high = sel & ~saved["high"]
        spans[1][obj] = live.Spans(pos[keep_high], free[keep_high])
        out[obj] = {
            "allocated": best, "bytes": best * size,
            "allocated_range": [best, high], "bytes_range": [best * size, high * size],
            "peak_live": s["peak"], "peak_live_bytes": s["peak"] * size,
            "saved": int((sel & saved["best"]).sum()),
            "saved_in_fork_then_exec": int((sel & saved["best"] & fork_exec).sum()),
            "fidelity": fidelity, "see": RULES, "range_see": BOUNDS,
        }
    out["vm_area_struct"] = dict(ev["vm_area_struct"], fidelity="exact (unchanged)", see=RULES)
    out["saved_pct"] = {o: saved_pct(ev[o]["allocated"], out[o]["allocated"]) for o in RMAP_OBJECTS}
    out["saved_pct_range"] = {
        o: [saved_pct(ev[o]["allocated"], out[o]["allocated_range"][1]),
            saved_pct(ev[o]["allocated"], out[o]["allocated_range"][0])] for o in RMAP_OBJECTS}
    out["peak_saved_pct"] = {o: saved_pct(ev[o]["peak_live"], out[o]["peak_live"]) for o in RMAP_OBJECTS}
    out["generations"] = g.summary()
    out["leaf_processes"] = int(len(unique(g.tgid[~g.forking])))
    out["forking_processes"] = int(len(rp.tree.forking))
    out["kept_vmas"] = kept_info
    return out, spans[0], spans[1]


def _extra_costs(rp, ev, lz):
    """The folio-to-VMA pointer no-fork needs (section 3.2, N8): unspecified,
    so a range of designs: 0 (the pointer in ``folio->mapping``, no field
    added, nothing pinned) to lazy's design: its root pointer and refcount
    (section 2.3) in every VMA, opted out or not (one struct layout for
    all), priced at the slab slot, plus the VMAs it pins (lazy's X9 peak:
    function probes only; on tracepoint recordings the high end is null)."""
    _, g = vma_growth(rp, ev)
    pins = (lz.get("extra_costs") or {}).get("pinned_root_vmas")
    pinned = (pins or {}).get("peak_live_bytes")   # null: not measurable (tracepoints)
    return {
        "slab_bytes_range": [0, None if pinned is None else g["peak_extra_bytes"] + pinned],
        "vma_growth": {"bytes_per_vma_range": [0, g["bytes_per_vma"]], "slot_bytes": g["slot_bytes"],
                       "slot_growth_range": [0, g["slot_growth_bytes"]],
                       "run_vmas_peak_live": g["run_vmas_peak_live"],
                       "peak_extra_bytes_range": [0, g["peak_extra_bytes"]]},
        "pinned_vmas_peak_bytes_range": [0, pinned],
        "note": ("not specified (PR_SET_NOFORK was a question on the list): rmap of an opted-out "
                 "process's pages needs a way from the folio to its VMA; low end, the pointer kept in "
                 "folio->mapping with no field added and no VMA pinned; high end, lazy's root pointer "
                 "and refcount (section 2.3) in every VMA, since all VMAs share one layout, and the root "
                 "VMAs it pins (X9, the sum of the two peaks: an upper bound); null where the pins "
                 "cannot be told (tracepoint recordings)"),
        "see": BOUNDS,
    }
