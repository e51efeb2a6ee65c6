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
import pandas as pd

from anonscope import schema as S

from . import forktree, live, mmowner
from .frees import FreeMatcher
from .live import NEVER
from .load import CALLER_CODE, OBJECT_CODE, PATH_CODE
from .order import stable_argsort

RMAP_OBJECTS = ("anon_vma", "anon_vma_chain")
SECTION = "docs/models.md#eager"


class Replay:
    """A recording prepared for the models.

    ``partner[i]`` is, for an alloc row, the row of its matched free and, for
    a free row, the row of its matched alloc (-1: none); ``free_pos(rows)``
    the position of each alloc's matched free (:data:`NEVER` when it is live
    at the end); ``count(obj, net)`` the object type's live.LiveCount."""

    def __init__(self, rec, partner, tree, sizes):
        self.rec = rec
        self.ob = rec.objects
        self.partner = partner
        self.tree = tree
        self.sizes = sizes
        self._rows = {}
        self._counts = count_live(self.ob, partner, probes(rec))

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
        0), read at :func:`probes`."""
        return self._counts[obj, net]


#: Points of the live-over-time series (docs/models.md section 1).
SERIES_POINTS = 20


def series_points(rec):
    """[(time in ns, position of the last object row at or before it, -1
    when none)] of the live-over-time series: up to SERIES_POINTS evenly
    spaced times over the run."""
    end, ob = rec.end_ts_ns, rec.objects
    if end <= 0 or not len(ob):
        return []
    times = np.linspace(0, end, SERIES_POINTS + 1)[1:]
    # rows with ts <= t (integer ts: ts <= floor(t)); an int64 needle keeps
    # numpy from converting the whole column to float
    at = np.searchsorted(ob.ts_ns, np.floor(times).astype(np.int64), side="right")
    return [(float(t), int(ob.pos[i - 1]) if i > 0 else -1) for t, i in zip(times, at)]


def probes(rec):
    """The positions the live counts are read at: before the run (-1), the
    last census row, every slab row, every mark, the end, and the series'
    points."""
    at = [[-1, rec.positions], rec.slab["pos"].to_numpy(),
          [p for _, p in series_points(rec)]]
    for frame in (rec.marks, rec.census):
        if frame is not None and len(frame):
            at.append(frame["pos"].to_numpy())
    return np.concatenate([np.asarray(a, dtype=np.int64) for a in at])


def count_live(ob, partner, at):
    """{(object, net): live.LiveCount read at ``at``} of the object rows
    ``ob`` with their ``partner``, fed a chunk of rows at a time."""
    counts = {(obj, net): live.LiveCount(at) for obj in S.OBJECTS for net in (True, False)}
    n = len(ob)
    for lo in range(0, n, MATCH_CHUNK):
        part = slice(lo, min(lo + MATCH_CHUNK, n))
        pos, code, alloc = ob.pos[part], ob.object[part], ob.is_alloc[part]
        matched = ~alloc & (partner[part] >= 0)
        pre = ~alloc & ob.preexisting[part]
        for obj in S.OBJECTS:
            mine = code == OBJECT_CODE[obj]
            starts, ends = pos[mine & alloc], pos[mine & matched]
            counts[obj, False].add(starts, ends)
            counts[obj, True].add(starts, np.concatenate([ends, pos[mine & pre]]))
        for c in counts.values():
            c.settle(int(pos[-1]) + 1)
    return counts


#: Object rows given to the matcher at a time.
MATCH_CHUNK = 1 << 18


def match_frees(ob):
    """Match each run free to the latest earlier alloc with the same
    (object, obj_id); an alloc takes the first such free only
    (frees.FreeMatcher, fed the rows a chunk at a time). Returns the
    partner array (see Replay)."""
    n = len(ob)
    partner = np.full(n, -1, dtype=np.int32 if n < 2 ** 31 else np.int64)
    pre = ob.preexisting & ~ob.is_alloc
    matcher = FreeMatcher()
    for lo in range(0, n, MATCH_CHUNK):
        part = slice(lo, min(lo + MATCH_CHUNK, n))
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
    return Replay(rec, partner, forktree.build(rec), sizes)


def _counts(codes, table, keys):
    """{key: number of ``codes`` equal to table[key]} (codes >= 0)."""
    bc = np.bincount(codes[codes >= 0].astype(np.int64), minlength=len(table) + 1)
    return {k: int(bc[table[k]]) if k in table else 0 for k in keys}


def _time_series(rp, net):
    """Net live at the series' points (:func:`series_points`): [[seconds, live], ...]."""
    if not net.steps:
        return []
    return [[round(t / 1e9, 6), int(net.at(p)) if p >= 0 else 0] for t, p in series_points(rp.rec)]


def object_stats(rp, obj):
    """The statistics of object type ``obj``: allocations and frees per path,
    preexisting and unmatched frees, net and run-object live counts and live
    over time; for anon_vma and AVC also the transient fork pairs and the
    callers of ``clone_vma`` allocations."""
    size, size_source = rp.sizes[obj]
    ob = rp.ob
    a, f = rp.allocs(obj), rp.frees(obj)
    paths = S.ALLOC_PATHS if obj in RMAP_OBJECTS else S.VMA_ALLOC_PATHS
    allocated = _counts(ob.path[a], PATH_CODE, paths)
    total = int(len(a))
    pre = ob.preexisting[f]
    net = rp.count(obj, net=True).summary()
    runl = rp.count(obj, net=False).summary()
    unmatched = int((~pre & (rp.partner[f] < 0)).sum())
    out = {
        "object_size": size,
        "object_size_source": size_source,
        "allocated": allocated,
        "allocated_total": total,
        "allocated_bytes": total * size,
        "freed": int(len(f)),
        "freed_by_path": _counts(ob.path[f], PATH_CODE, S.FREE_PATHS),
        "freed_preexisting": int(pre.sum()),
        "unmatched_frees": unmatched,
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
        "live_over_time": _time_series(rp, rp.count(obj, net=True)),
        "fidelity": "exact",
        "see": SECTION,
    }
    if obj in RMAP_OBJECTS:
        out["transient_fork_pairs"] = rp.rec.transient.get(obj, 0)
        cv = a[ob.path[a] == PATH_CODE["clone_vma"]]
        caller = ob.caller[cv]
        callers = _counts(caller, CALLER_CODE, ("split", "merge", "mremap", "fork"))
        callers["unknown"] = int((caller < 0).sum())
        out["clone_vma_callers"] = callers
        fault = ob.caller[a[ob.path[a] == PATH_CODE["fault"]]]
        kinds = _counts(fault, CALLER_CODE, ("anon_fault", "cow_fault"))
        kinds["unknown"] = int((fault < 0).sum())
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
    (clone_calls): the VMA's id (function probes) or the position of the
    call's first row in the task's run of clone rows (tracepoints)."""
    ob = rp.ob
    if ob.has_vma and (ob.vma_id[a][clone] >= 0).all():
        return ob.vma_id[a]
    # every allocation row of the tasks, in replay order per task
    every = np.flatnonzero(ob.is_alloc)
    order = every[stable_argsort(ob.pid[every])]
    is_clone = (ob.path[order] == PATH_CODE["clone_vma"]) & (ob.caller[order] != CALLER_CODE["mremap"])
    start = is_clone.copy()
    same_task = ob.pid[order][1:] == ob.pid[order][:-1]
    cont = same_task & is_clone[:-1] & is_clone[1:] & (ob.caller[order][1:] == ob.caller[order][:-1])
    start[1:] &= ~cont
    # a row's call: the last start at or before it in the per-task order
    call_of = np.empty(len(ob.is_alloc), dtype=np.int64)
    call_of[order] = order[np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))]
    return call_of[a]


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
    ob = rp.ob
    sel = ob.is_alloc & (ob.path == PATH_CODE["fork"]) & (ob.fork_id >= 0) & \
        (ob.object != OBJECT_CODE["vm_area_struct"])
    if not sel.any():
        return 0, 0
    fid = ob.fork_id[sel]
    is_av = ob.object[sel] == OBJECT_CODE["anon_vma"]
    forks, inv = np.unique(fid, return_inverse=True)
    av = np.bincount(inv, weights=is_av.astype(float), minlength=len(forks))
    avc = np.bincount(inv, weights=(~is_av).astype(float), minlength=len(forks))
    return int(len(forks)), int((av != avc).sum())


def rmap_allocs(rp):
    """Alloc rows of anon_vma and AVC, in replay order."""
    ob = rp.ob
    sel = ob.is_alloc & ((ob.object == OBJECT_CODE["anon_vma"])
                         | (ob.object == OBJECT_CODE["anon_vma_chain"]))
    return np.flatnonzero(sel)


def processes(rp, top=50):
    """Per-process and per-comm allocations of anon_vma and AVC (exact). A
    process row has what it owns (the child's for fork paths) and what its
    forks made for its children (``for_children``, the fork paths it ran),
    and is ordered by both, so that a fork server shows.

    Takes the Replay ``rp`` and ``top``, the most rows of each list; returns
    the report's ``processes`` entries: ``by_process`` (see
    :func:`_process_rows`), ``by_comm`` (:func:`_comm_rows`), ``top``,
    ``processes_with_objects``, ``comms_with_objects``,
    ``faults_through_another_process`` (mmowner), ``fidelity`` and
    ``note``."""
    ob = rp.ob
    a = rmap_allocs(rp)
    tree = rp.tree
    av_size, avc_size = rp.sizes["anon_vma"][0], rp.sizes["anon_vma_chain"][0]
    result = {"by_process": [], "by_comm": [], "top": top}
    if len(a):
        is_avc = (ob.object[a] == OBJECT_CODE["anon_vma_chain"]).astype(np.int64)
        result["by_process"], result["processes_with_objects"] = _process_rows(
            ob, tree, a, is_avc, (av_size, avc_size), top)
        result["by_comm"], result["comms_with_objects"] = _comm_rows(ob, a, is_avc, (av_size, avc_size), top)
    else:
        result["processes_with_objects"] = 0
        result["comms_with_objects"] = 0
    result["fidelity"] = "exact"
    result["faults_through_another_process"] = rp.rec.remote_faults
    result["note"] = ("owner = the process an object serves (the child for fork paths, the VMA's process "
                      "for a fault made through another one: faults_through_another_process rows, "
                      "function probes only); for_children = what the process's forks made for its "
                      "children; comm = the allocating task's command name")
    return result


def _process_counts(ob, a, is_avc):
    """Counts per process of the rmap alloc rows ``a`` (``is_avc``: 1 on an
    AVC row, 0 on an anon_vma row).

    Returns ``(procs, cnt, made, comm)``: ``procs`` the processes' tgids,
    sorted (each owner, and each process that ran a fork path);
    ``cnt[i]`` = (anon_vmas, AVCs) process ``i`` owns; ``made[i]`` the same
    for what its forks made for its children; ``comm[i]`` the comm code of
    the process's last row among ``a``."""
    fork_path = ob.fork_id[a] >= 0
    maker = np.where(fork_path, ob.tgid[a], -1)
    codes, procs = pd.factorize(np.concatenate([ob.owner[a], maker[fork_path]]), sort=True)
    own_codes, made_codes = codes[:len(a)], codes[len(a):]
    n = len(procs)
    cnt = np.bincount(own_codes * 2 + is_avc, minlength=2 * n).reshape(n, 2)
    made = np.bincount(made_codes * 2 + is_avc[fork_path], minlength=2 * n).reshape(n, 2)
    last = np.full(n, -1, dtype=np.int64)             # the process's last row, for its comm
    np.maximum.at(last, own_codes, np.arange(len(a)))
    np.maximum.at(last, made_codes, np.flatnonzero(fork_path))
    comm = ob.comm[a][np.maximum(last, 0)]
    return procs, cnt, made, comm


def _process_rows(ob, tree, a, is_avc, sizes, top):
    """The ``by_process`` list: the ``top`` processes with the most bytes
    owned plus made for their children, most first (ties in tgid order).

    Takes the object rows ``ob``, the fork tree ``tree`` (forktree.build),
    the rmap alloc rows ``a`` with ``is_avc`` (as :func:`_process_counts`)
    and ``sizes`` = (anon_vma size, AVC size). Returns ``(rows,
    processes_with_objects)``: the rows as the report has them, and how many
    processes own at least one object."""
    av_size, avc_size = sizes
    procs, cnt, made, comm = _process_counts(ob, a, is_avc)
    nbytes = cnt[:, 0] * av_size + cnt[:, 1] * avc_size
    made_bytes = made[:, 0] * av_size + made[:, 1] * avc_size
    forks = tree.forks.groupby("tgid").size()
    forking = set(tree.forking.tolist())
    order = np.argsort(-(nbytes + made_bytes), kind="stable")
    with_objects = int((cnt.sum(axis=1) > 0).sum())
    rows = []
    for i in order[:top]:                             # at most `top` rows
        tgid = int(procs[i])
        rows.append({
            "tgid": tgid,
            "comm": ob.comm_name(int(comm[i])),
            "anon_vma": int(cnt[i, 0]),
            "anon_vma_chain": int(cnt[i, 1]),
            "bytes": int(nbytes[i]),
            "for_children": {"anon_vma": int(made[i, 0]), "anon_vma_chain": int(made[i, 1]),
                             "bytes": int(made_bytes[i])},
            "process_forks": int(forks.get(tgid, 0)),
            "leaf": tgid not in forking,
        })
    return rows, with_objects


def _comm_rows(ob, a, is_avc, sizes, top):
    """The ``by_comm`` list: per command name of the allocating task, the
    rmap alloc rows ``a`` (``is_avc`` as :func:`_process_counts`) it made;
    the ``top`` comms with the most bytes (``sizes`` = (anon_vma size, AVC
    size)), most first (ties in category order).

    Returns ``(rows, comms_with_objects)``: the rows as the report has
    them, and how many comms made at least one object."""
    av_size, avc_size = sizes
    cc = ob.comm[a].astype(np.int64)
    has = cc >= 0
    ncomm = len(ob.comm_names)
    ccnt = np.bincount(cc[has] * 2 + is_avc[has], minlength=2 * ncomm).reshape(ncomm, 2)
    seen = np.flatnonzero(ccnt.sum(axis=1) > 0)       # observed comms, in category order
    cbytes = ccnt[seen, 0] * av_size + ccnt[seen, 1] * avc_size
    corder = np.argsort(-cbytes, kind="stable")
    rows = []
    for i in corder[:top]:
        c = seen[i]
        rows.append({"comm": ob.comm_names[c], "anon_vma": int(ccnt[c, 0]),
                     "anon_vma_chain": int(ccnt[c, 1]),
                     "bytes": int(cbytes[i])})
    return rows, int(len(seen))


def model(rp):
    """The eager model's numbers in the common model layout
    (report.models.eager) from the Replay ``rp`` (docs/models.md#eager,
    section 1: exact)."""
    out = {"fidelity": "exact", "see": SECTION}
    for obj in RMAP_OBJECTS + ("vm_area_struct",):
        size = rp.sizes[obj][0]
        s = rp.count(obj, net=False).summary()
        n = int(len(rp.allocs(obj)))
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
