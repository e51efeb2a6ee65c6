"""Move rows (schema v7, docs/models.md#moves, rules M1-M4): KSM merges,
UFFDIO_MOVE and MREMAP_DONTUNMAP. Eager's objects are unchanged by them (the
anon_vma functions they call are recorded like any other); what they cost
the lazy and no-fork designs is not in the series, so each widens those
designs' upper ends by what it can at most make them allocate.
"""

import numpy as np

from .eager import saved_pct
from .live import NEVER, Spans

RULES = "docs/models.md#moves"
RMAP_OBJECTS = ("anon_vma", "anon_vma_chain")
#: the designs whose high ends the rows widen (eager is exact)
DESIGNS = ("lazy", "nofork", "nofork_clone")
#: kinds that can make a design allocate (M1, M2); mremap_dontunmap only
#: keeps an upgrade's objects alive longer (M3)
ALLOCATING = ("ksm_merge", "uffd_move")
KINDS = ("ksm_merge", "uffd_move", "mremap_dontunmap")
#: probes entry (metadata) of each kind's tracepoint
PROBE = {"ksm_merge": "tracepoint:ksm:ksm_merge_with_ksm_page",
         "uffd_move": "tracepoint:syscalls:sys_enter_ioctl",
         "mremap_dontunmap": "tracepoint:syscalls:sys_enter_mremap"}


def recorded(meta):
    """{kind: True when its tracepoint was attached}; False for every kind in
    recordings before v7 (no move rows could be written)."""
    attached = {p.get("name"): bool(p.get("attached")) for p in meta.get("probes") or []}
    return {k: meta.get("schema_version", 0) >= 7 and attached.get(PROBE[k], False) for k in KINDS}


def _rows(rec):
    m = rec.moves
    if m is None or not len(m):
        return None
    return m


def counts(rec):
    """{kind: rows}."""
    m = _rows(rec)
    kinds = m["move_kind"].astype(str) if m is not None else ()
    return {k: int((np.asarray(kinds) == k).sum()) if m is not None else 0 for k in KINDS}


def spans(rec, kinds=KINDS):
    """Spans from each row of ``kinds`` to the end of the run: what a design
    may at most hold because of it (one anon_vma and one AVC per row)."""
    m = _rows(rec)
    if m is None:
        pos = np.zeros(0, dtype=np.int64)
    else:
        pos = m["pos"].to_numpy()[np.isin(m["move_kind"].astype(str).to_numpy(), kinds)]
    return Spans(pos, np.full(len(pos), NEVER, dtype=np.int64))


def summary(rec):
    """The report's ``moves`` section."""
    m = _rows(rec)
    out = {"recorded": recorded(rec.meta), "rows": counts(rec), "see": RULES}
    if m is not None:
        owner = m["owner_tgid"].to_numpy()
        known = owner >= 0
        uniq, n = np.unique(owner[known], return_counts=True)
        top = np.argsort(-n, kind="stable")[:10]
        out["by_process"] = [{"tgid": int(uniq[i]), "rows": int(n[i])} for i in top]
        out["unattributed"] = int((~known).sum())
    missing = [k for k, ok in out["recorded"].items() if not ok]
    out["note"] = ("every kind recorded" if not missing else
                   f"not recorded ({', '.join(missing)}): what they would cost the lazy and no-fork designs is "
                   "outside every range (tracepoint absent, or a recording before schema v7)")
    return out


def widened(model, eager_model, n_alloc, sizes):
    """A copy of a design's model entry with each rmap object's upper end
    raised by ``n_alloc`` (rows of the allocating kinds), capped at eager's
    count where the design's high end was below it (M4): such a row makes
    the design allocate at most what eager allocated for that VMA."""
    out = dict(model)
    for obj in RMAP_OBJECTS:
        entry = dict(model[obj])
        lo, hi = entry["allocated_range"]
        eager_n = eager_model[obj]["allocated"]
        new_hi = min(hi + n_alloc, max(hi, eager_n))
        entry["allocated_range"] = [lo, new_hi]
        entry["bytes_range"] = [lo * sizes[obj], new_hi * sizes[obj]]
        if new_hi > hi:
            entry["range_see"] = [entry.get("range_see"), RULES] if entry.get("range_see") else RULES
        out[obj] = entry
    ranges = model.get("saved_pct_range")
    if ranges is not None:
        out["saved_pct_range"] = {o: [saved_pct(eager_model[o]["allocated"], out[o]["allocated_range"][1]),
                                      ranges[o][1]] for o in RMAP_OBJECTS}
    out["moves_widening"] = {"rows": n_alloc, "see": RULES}
    return out


#: What each kind would do to a lazy VMA, for the kinds a recording lacks.
EFFECTS = {
    "ksm_merge": {"what": "KSM merges into lazy VMAs",
                  "effect": "an upgrade or a pin per merged VMA (KSM needs the anon_vma)"},
    "uffd_move": {"what": "UFFDIO_MOVE of lazy folios",
                  "effect": "a re-point to the destination, the series does not say how"},
    "mremap_dontunmap": {"what": "partial MREMAP_DONTUNMAP moves",
                         "effect": "the old VMA keeps its links: an upgrade lives longer"},
}


def not_modelled(meta):
    """The lazy model's ``not_modelled`` list: the move kinds this recording
    could not record (the others are bounded, M1-M4)."""
    return [dict(EFFECTS[k], why="no rows of it in this recording (tracepoint absent, or schema before v7)",
                 see=RULES) for k, ok in recorded(meta).items() if not ok]
