"""Eager model: replay of what the kernel did (docs/models.md section 1).

mm/rmap.c: __anon_vma_prepare (fault), anon_vma_fork / anon_vma_clone
(fork, clone_fork), anon_vma_clone from mm/vma.c __split_vma, vma_expand,
copy_vma (clone_vma), unlink_anon_vmas / __put_anon_vma (frees).

Everything works on the object rows' numpy columns (load.ObjectRows, in
replay order), a chunk of rows at a time where the step is done
(docs/streaming.md): a free is matched to its alloc once (frees.FreeMatcher),
and each object type's live count (live.LiveCount) is built once and shared
by the object statistics, the eager model, the slabinfo check and the
snapshots.
"""

import dataclasses

import numpy as np

from anonscope import schema as S

from . import forktree, mmowner
from .frees import FreeMatcher
from .keyed import KeyedTable, by_task
from .live import NEVER
from .load import CALLER_CODE, OBJECT_CODE, PATH_CODE
from .stream import chunks
from .tally import count_objects, probes, series_points

RMAP_OBJECTS = ("anon_vma", "anon_vma_chain")
SECTION = "docs/models.md#eager"


class Replay:
    """A recording prepared for the models.

    ``partner[i]`` is, for an alloc row, the row of its matched free and, for
    a free row, the row of its matched alloc (-1: none); ``free_pos(rows)``
    the position of each alloc's matched free (:data:`NEVER` when it is live
    at the end); ``tallies[obj]`` the object type's tally.Tally,
    ``count(obj, net)`` its live.LiveCount."""

    def __init__(self, rec, partner, sizes):
        self.rec = rec
        self.ob = rec.objects
        self.partner = partner
        self.sizes = sizes
        self._rows = {}
        self.counts = count_objects(self.ob, partner, probes(rec))
        self.tallies = self.counts.tallies
        self.tree = forktree.build(rec, self.counts.tgids)

    def free_pos(self, rows):
        """For the alloc rows ``rows``: the position of each one's matched
        free, :data:`NEVER` when it has none (live at the end)."""
        p = self.partner[rows]
        return np.where(p >= 0, self.ob.pos[np.maximum(p, 0)], NEVER)

    def rows(self, obj):
        """Rows (alloc and free) of object type ``obj``, in replay order."""
        if obj not in self._rows:
            r = np.flatnonzero(self.ob.object == OBJECT_CODE[obj])
            self._rows[obj] = r.astype(np.int32) if len(self.ob) < 2 ** 31 else r
        return self._rows[obj]

    def allocs(self, obj):
        """Alloc rows of object type ``obj``, in replay order."""
        r = self.rows(obj)
        return r[self.ob.is_alloc[r]]

    def frees(self, obj):
        """Free rows of object type ``obj``, in replay order."""
        r = self.rows(obj)
        return r[~self.ob.is_alloc[r]]

    def count(self, obj, net):
        """The live.LiveCount of ``obj``: +1 per alloc, -1 per matched free,
        and with ``net`` -1 per preexisting free too (docs/models.md section
        0), read at tally.probes."""
        return self.tallies[obj].live[net]


def match_frees(ob):
    """Match each run free to the latest earlier alloc with the same
    (object, obj_id); an alloc takes the first such free only
    (frees.FreeMatcher, fed the rows a chunk at a time). Returns the
    partner array (see Replay)."""
    n = len(ob)
    partner = np.full(n, -1, dtype=np.int32 if n < 2 ** 31 else np.int64)
    pre = ob.preexisting & ~ob.is_alloc
    matcher = FreeMatcher()
    for part in chunks(n):
        fr, al = matcher.feed(np.arange(part.start, part.stop), ob.object[part], ob.obj_id[part],
                              ob.is_alloc[part], pre[part])
        partner[fr] = al
        partner[al] = fr
    return partner


def transient_fork_pairs(rec, partner):
    """Rows of E2' (docs/models.md#eager): since 7.0 anon_vma_fork() allocates
    the child's anon_vma and AVC before anon_vma_clone() and frees both at
    once when that reused an anon_vma (7.3 mm/rmap.c:395-414; 6.x allocates
    them only when it did not). Such a ``fork``-path object is freed by the
    allocating task before its fork's ``fork`` row. Returns the mask of those
    allocs and their frees."""
    ob = rec.objects
    mask = np.zeros(len(ob), dtype=bool)
    f = rec.forks
    if not len(ob) or not len(f):
        return mask
    a = np.flatnonzero(ob.is_alloc & (ob.path == PATH_CODE["fork"]) & (ob.object != OBJECT_CODE["vm_area_struct"])
                       & (ob.fork_id >= 0) & (partner >= 0))
    if not len(a):
        return mask
    fid = f["fork_id"].to_numpy().astype(np.int64)
    fpos = f["pos"].to_numpy().astype(np.int64)
    ok = fid >= 0
    order = np.argsort(fid[ok])
    fid, fpos = fid[ok][order], fpos[ok][order]
    j = np.minimum(np.searchsorted(fid, ob.fork_id[a]), max(len(fid) - 1, 0))
    has_row = (len(fid) > 0) & (fid[j] == ob.fork_id[a]) if len(fid) else np.zeros(len(a), bool)
    fr = partner[a]
    inside = has_row & (ob.pos[fr] < fpos[j]) & (ob.pid[fr] == ob.pid[a])
    mask[a[inside]] = True
    mask[fr[inside]] = True
    return mask


def prepare(rec):
    """``rec`` prepared for the models, as a :class:`Replay`: frees matched to
    allocs, the E2' transient fork pairs taken out of the object rows, and the
    process tree built, faults made through another process given to the
    process whose VMA they served (mmowner). ``rec`` is not changed: the
    Replay's ``rec`` is a copy without those pairs, counted in its
    ``transient`` field, with the changed owners counted in
    ``remote_faults``."""
    sizes = {obj: rec.object_size(obj) for obj in S.OBJECTS}
    partner = match_frees(rec.objects)
    pairs = transient_fork_pairs(rec, partner)
    counted = {obj: int((pairs & rec.objects.is_alloc & (rec.objects.object == OBJECT_CODE[obj])).sum())
               for obj in RMAP_OBJECTS}
    owner, remote = mmowner.remote_fault_owners(rec, rec.objects.owner)
    rec = dataclasses.replace(rec, transient=counted, remote_faults=remote)
    if owner is not rec.objects.owner:
        rec.objects = rec.objects.with_owner(owner)
    if pairs.any():              # they never served a VMA: out of every model (kept apart)
        rec.objects = rec.objects.take(~pairs)
        partner = match_frees(rec.objects)
    return Replay(rec, partner, sizes)


def _named(counts, table, keys):
    """{key: counts[table[key]]} (0 for a key not in ``table``)."""
    return {k: int(counts[table[k]]) if k in table else 0 for k in keys}


def _time_series(rp, net):
    """Net live at the series' points (tally.series_points): [[seconds, live], ...]."""
    if not net.steps:
        return []
    return [[round(t / 1e9, 6), int(net.at(p)) if p >= 0 else 0] for t, p in series_points(rp.rec)]


def object_stats(rp, obj):
    """The statistics of object type ``obj``: allocations and frees per path,
    preexisting and unmatched frees, net and run-object live counts and live
    over time; for anon_vma and AVC also the transient fork pairs and the
    callers of ``clone_vma`` allocations."""
    size, size_source = rp.sizes[obj]
    t = rp.tallies[obj]
    paths = S.ALLOC_PATHS if obj in RMAP_OBJECTS else S.VMA_ALLOC_PATHS
    total = t.allocated
    net = t.live[True].summary()
    runl = t.live[False].summary()
    out = {
        "object_size": size,
        "object_size_source": size_source,
        "allocated": _named(t.alloc_path, PATH_CODE, paths),
        "allocated_total": total,
        "allocated_bytes": total * size,
        "freed": t.freed,
        "freed_by_path": _named(t.free_path, PATH_CODE, S.FREE_PATHS),
        "freed_preexisting": t.preexisting,
        "unmatched_frees": t.unmatched,
        "live_at_end": net["end"],
        "peak_live": net["peak"],
        "min_live": net["min"],
        "peak_live_bytes": net["peak"] * size,
        "live_basis": "net change from the start of the run (preexisting objects' frees count)",
        "run_objects": {
            "live_at_end": runl["end"],
            "peak_live": runl["peak"],
            "peak_live_bytes": runl["peak"] * size,
        },
        "live_over_time": _time_series(rp, t.live[True]),
        "fidelity": "exact",
        "see": SECTION,
    }
    if obj in RMAP_OBJECTS:
        out["transient_fork_pairs"] = rp.rec.transient.get(obj, 0)
        callers = _named(t.clone_caller, CALLER_CODE, ("split", "merge", "mremap", "fork"))
        callers["unknown"] = int(t.clone_caller[-1])
        out["clone_vma_callers"] = callers
        kinds = _named(t.fault_caller, CALLER_CODE, ("anon_fault", "cow_fault"))
        kinds["unknown"] = int(t.fault_caller[-1])
        out["fault_vma_kinds"] = kinds
    return out


def clone_calls(rp, a, single=False):
    """For the alloc rows ``a`` (replay order): True on one AVC of each
    anon_vma_clone() call outside fork (split, merge: not mremap), the one
    the designs drop; with ``single``, only of the calls that clone one AVC
    (a source chain of one: the VMA's own root anon_vma). A call's AVCs
    are the rows with its VMA (``vma_id``, function probes) or, on
    tracepoint recordings, a run of ``clone_vma`` rows of one task and
    caller with no other allocation of that task between them (__split_vma
    and copy_vma allocate the new VMA, vm_area_dup, first; a merge's
    dup_anon_vma() clones the source's whole chain, and two merges in a row
    count as one call: fewer AVCs taken as saved, never more)."""
    ob = rp.ob
    clone = (ob.path[a] == PATH_CODE["clone_vma"]) & (ob.caller[a] != CALLER_CODE["mremap"])
    first = np.zeros(len(a), dtype=bool)
    if not clone.any():
        return first
    call = _call_ids(rp, a, clone)
    _, at, size = np.unique(call[clone], return_index=True, return_counts=True)
    if single:
        at = at[size == 1]
    first[np.flatnonzero(clone)[at]] = True
    return first


def _call_ids(rp, a, clone):
    """One id per anon_vma_clone() call on the ``clone`` rows of ``a``
    (clone_calls): the VMA's id (function probes) or the row of the call's
    first row in the task's run of clone rows (tracepoints: _CloneRuns,
    a chunk of rows at a time)."""
    ob = rp.ob
    if ob.has_vma and (ob.vma_id[a][clone] >= 0).all():
        return ob.vma_id[a]
    out = np.full(len(a), -1, dtype=np.int64)
    runs = _CloneRuns()
    for part in chunks(len(ob)):
        rows = part.start + np.flatnonzero(ob.is_alloc[part])
        call = runs.feed(rows, ob.pid[rows], ob.path[rows], ob.caller[rows])
        lo, hi = np.searchsorted(a, [part.start, part.stop])
        out[lo:hi] = call[np.searchsorted(rows, a[lo:hi])]
    return out


class _CloneRuns:
    """Runs of clone rows per task, across chunks: a ``clone_vma`` row (not
    mremap) continues its task's run when the task's previous allocation
    was one too, with the same caller; each run is one call, named by the
    row of its first row. Holds per task its last allocation's (clone?,
    caller, call)."""

    def __init__(self):
        self.last = KeyedTable([0, -2, -1])

    def feed(self, rows, pid, path, caller):
        """A chunk's allocation rows (ascending) -> each one's call (-1 on a
        row that is no clone row)."""
        g = by_task(self.last, pid)                            # per task, in replay order
        c, r = caller[g.order].astype(np.int64), rows[g.order]
        clone = (path[g.order] == PATH_CODE["clone_vma"]) & (c != CALLER_CODE["mremap"])
        n = len(r)
        start = clone & ~((g.previous(clone, 0) == 1) & (c == g.previous(c, 1)))
        j = np.arange(n)
        at = np.maximum.accumulate(np.where(start, j, -1)) if n else j
        begins = np.flatnonzero(g.first)[g.group]
        call = np.where(at >= begins, r[np.maximum(at, 0)], g.held[g.group, 2])
        call = np.where(clone, call, -1)
        self.last.vals[g.at] = np.stack([clone[g.end], c[g.end], call[g.end]], axis=1)
        out = np.empty(n, dtype=np.int64)
        out[g.order] = call
        return out


def unknown_sites(rec, objects):
    """Rule E5's limits, per object: ``other``, the allocations of an
    unmerged cache at unknown call sites (counted, kept by every design);
    ``merged_cache_allocs``, in a merged cache the allocations at call sites
    no rule covers (metadata ``alias_traffic``, every task): the aliases'
    own objects and any of ours an inlined call site made, so at most that
    many are missing (None: not merged, or not recorded); ``cache_known``,
    False where the kmem tracepoint passes no cache (before 6.0,
    b347aa7b5747): an unknown site's allocation cannot be told from any
    other cache's and is not recorded."""
    traffic = rec.meta.get("alias_traffic") or {}
    no_cache = any("bytes_req/bytes_alloc" in str(p.get("reason", "")) for p in rec.meta.get("probes") or []
                   if isinstance(p, dict) and p.get("name") == "raw_tracepoint:kmem_cache_alloc")
    out = {}
    for obj in objects:
        t = traffic.get(obj)
        out[obj] = {"other": int(objects[obj]["allocated"].get("other", 0)),
                    "merged_cache_allocs": int(t["allocs"]) if isinstance(t, dict) else None,
                    "cache_known": not no_cache}
    return out


def fork_path_mismatches(rp):
    """Forks whose own anon_vmas and AVCs (``fork`` path) differ in number:
    anon_vma_fork() makes them in pairs (rule E2; 7.x reuse pairs are left
    out already), so a difference means an allocation lost or classified
    elsewhere. Returns (forks checked, forks that differ)."""
    pairs = rp.counts.fork_pairs.vals
    return int(len(pairs)), int((pairs[:, 0] != pairs[:, 1]).sum())


def rmap_allocs(rp):
    """Alloc rows of anon_vma and AVC, in replay order."""
    ob = rp.ob
    sel = ob.is_alloc & ((ob.object == OBJECT_CODE["anon_vma"])
                         | (ob.object == OBJECT_CODE["anon_vma_chain"]))
    return np.flatnonzero(sel)


def model(rp):
    """The eager model's numbers in the common model layout
    (report.models.eager) from the Replay ``rp`` (docs/models.md#eager,
    section 1: exact)."""
    out = {"fidelity": "exact", "see": SECTION}
    for obj in RMAP_OBJECTS + ("vm_area_struct",):
        size = rp.sizes[obj][0]
        s = rp.count(obj, net=False).summary()
        n = rp.tallies[obj].allocated
        out[obj] = {"allocated": n, "bytes": n * size, "allocated_range": [n, n],
                    "peak_live": s["peak"], "peak_live_bytes": s["peak"] * size,
                    "fidelity": "exact", "see": SECTION}
    out["saved_pct"] = {"anon_vma": 0.0, "anon_vma_chain": 0.0}
    out["peak_saved_pct"] = {"anon_vma": 0.0, "anon_vma_chain": 0.0}
    out["extra_costs"] = {}
    return out


def saved_pct(eager_n, model_n):
    """The percentage of ``eager_n`` a design saves by making ``model_n`` (one
    decimal); None when ``eager_n`` is 0."""
    if not eager_n:
        return None
    return round(100.0 * (eager_n - model_n) / eager_n, 1)
