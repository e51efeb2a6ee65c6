"""Move rows (schema v7, docs/models.md#moves, rules M1-M4): KSM merges,
UFFDIO_MOVE and MREMAP_DONTUNMAP. Eager's objects are unchanged by them (the
anon_vma functions they call are recorded like any other); what they cost
the lazy and no-fork designs is not in the series, so each widens those
designs' upper ends by what it can at most make them allocate.
"""

import numpy as np

from .eager import saved_pct
from .forktree import is_process_fork

RULES = "docs/models.md#moves"
RMAP_OBJECTS = ("anon_vma", "anon_vma_chain")
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


#: tokens (lazy VMAs and their split pieces' root) one row can make a design
#: upgrade: KSM one (M1), UFFDIO_MOVE the destination's and the source's
#: (M2); MREMAP_DONTUNMAP any of the process's (M3: one mremap moves
#: several VMAs since 6.17, "mm/mremap: permit mremap() move of multiple VMAs")
TOKENS_PER_ROW = {"ksm_merge": 1, "uffd_move": 2}


class Caps:
    """Per process, the VMAs it can have as lazy or opted-out tokens over the
    window (M4): those allocated in the run for it, plus those the census
    found with an anon_vma or, for the command of a command run, its exec
    stack (S2); None when the process may predate the run unseen."""

    def __init__(self, rp):
        rec, vmas = rp.rec, rp.counts.vmas
        self.run = dict(zip(vmas.keys.tolist(), vmas.vals[:, 0].tolist()))
        self.pre = _command_stack(rec)
        self.born = set(_process_fork_children(rec)) | set(self.pre)
        census = rec.meta.get("census") if isinstance(rec.meta.get("census"), dict) else {}
        self.census_done = census.get("status") == "done"
        self.census = _census_vmas(rec.census)
        u = census.get("unvisited") if isinstance(census.get("unvisited"), dict) else {}
        self.unvisited = {p["pid"] for p in u.get("processes", [])}
        self.unvisited_unlisted = (u.get("count") or 0) > len(self.unvisited)

    def vmas(self, tgid):
        """The bound for one process, or None."""
        run = self.run.get(tgid, 0)
        if tgid in self.born:
            return run + self.pre.get(tgid, 0)
        if tgid < 0 or not self.census_done or tgid in self.unvisited:
            return None
        if tgid not in self.census and self.unvisited_unlisted:
            return None                 # perhaps one of the unvisited the metadata does not list
        return run + self.census.get(tgid, 0)


def _process_fork_children(rec):
    """Processes born in the run: children of the forks that copied an mm."""
    f = rec.forks
    if f is None or not len(f):
        return []
    return f["child_tgid"].to_numpy()[is_process_fork(f)].tolist()


def _command_stack(rec):
    """{tgid: 1} for the command of a command run (its first exec row): the
    exec's stack VMA predates its recording (S2); else {}."""
    ex = rec.execs
    if (rec.meta.get("target") or {}).get("mode") != "command" or ex is None or not len(ex):
        return {}
    return {int(ex["tgid"].iloc[0]): 1}


def _census_vmas(census):
    """{tgid: census VMA rows (VMAs with an anon_vma at the start)}."""
    if census is None or not len(census):
        return {}
    rows = census[census["object"].astype(str) == "vm_area_struct"]
    t, k = np.unique(rows["tgid"].to_numpy(), return_counts=True)
    return dict(zip(t.tolist(), k.tolist()))


def extra(rec, cap, upto=None, kinds=ALLOCATING):
    """{object: objects at most added by the rows of ``kinds`` (at replay
    positions <= ``upto``, or all)}, or None for an object when a row's
    process has no bound (M4) or move rows were lost; ``rec`` the
    recording, ``cap`` the per-process bounds (:class:`Caps`;
    docs/models.md#moves)."""
    m = _rows(rec)
    lost = (rec.meta.get("lost_by_event") or {}).get("move", 0)
    if m is None:
        return {o: (None if lost else 0) for o in RMAP_OBJECTS}
    if lost:
        return {o: None for o in RMAP_OBJECTS}
    kind = m["move_kind"].astype(str).to_numpy()
    sel = np.isin(kind, kinds) & (True if upto is None else m["pos"].to_numpy() <= upto)
    av = avc = 0
    for tgid in np.unique(m["owner_tgid"].to_numpy()[sel]).tolist():
        v = cap.vmas(int(tgid))
        if v is None:
            return {o: None for o in RMAP_OBJECTS}
        mine = kind[sel & (m["owner_tgid"].to_numpy() == tgid)]
        # M3 rows may touch any of the process's tokens: v each
        tokens = sum(int((mine == k).sum()) * TOKENS_PER_ROW.get(k, v) for k in KINDS)
        av += min(tokens, v)
        avc += v                                # one AVC per piece of every upgraded token
    return {"anon_vma": av, "anon_vma_chain": avc}


def widened(model, eager_model, add, sizes):
    """A copy of a design's model entry with each rmap object's upper end
    raised by ``add[object]`` (docs/models.md#moves, M1, M2, M4; None: no
    upper end); ``sizes`` prices the bytes, ``eager_model`` the saved
    percentage's range."""
    out = dict(model)
    for obj in RMAP_OBJECTS:
        entry = dict(model[obj])
        lo, hi = entry["allocated_range"]
        new_hi = None if add[obj] is None or hi is None else hi + add[obj]
        entry["allocated_range"] = [lo, new_hi]
        entry["bytes_range"] = [lo * sizes[obj], None if new_hi is None else new_hi * sizes[obj]]
        if new_hi != hi:
            entry["range_see"] = [entry.get("range_see"), RULES] if entry.get("range_see") else RULES
        out[obj] = entry
    ranges = model.get("saved_pct_range")
    if ranges is not None:
        out["saved_pct_range"] = {
            o: [None if out[o]["allocated_range"][1] is None
                else saved_pct(eager_model[o]["allocated"], out[o]["allocated_range"][1]), ranges[o][1]]
            for o in RMAP_OBJECTS}
    out["moves_widening"] = {"added": add, "see": RULES}
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
