"""Faults made through another process (docs/models.md#nofork-rules, rule
N0'): the process whose mm a fault-path object serves.

A task can fault in another process's mm: ``access_remote_vm()`` and
``get_user_pages_remote()`` (``ptrace(PTRACE_POKEDATA)``, writes to
``/proc/PID/mem``, ``process_vm_writev()``) and uprobes'
``uprobe_write_opcode()`` reach ``handle_mm_fault()`` on the target's VMA,
so ``__anon_vma_prepare()`` runs in the writer's task and the object rows
carry the writer's tgid. Function-probe rows name the VMA the anon_vma was
made for (``vma_id``) and, on the call row, its mm (``mm_id``).

Whose a VMA is: a VMA born by ``mmap()`` or exec (path ``alloc``) is born
in its mm's own process (a vfork child's, before its exec, in its
parent's), a fork's copy (path ``fork``) carries the child as owner; a
split's or merge's copy (``dup``) can be made by another process
(``UFFDIO_REGISTER``, DAMON's ``do_madvise()``), so it is not trusted. A
fault in a VMA with a trusted birth goes to that birth's process; any
other goes to the process of its mm: the latest trusted birth in that mm
(by the call rows' ``mm_id``), or the census's process of it, as long as
that process has not exec'd or exited since (an mm id is an address: it can
name a new mm after that); otherwise it stays the task's.
"""

import numpy as np

from . import generations
from .load import OBJECT_CODE, PATH_CODE

PREPARE = "__anon_vma_prepare"
TRUSTED = (PATH_CODE["alloc"], PATH_CODE["fork"])       # VMA births in the mm's own process
_SHIFT = 40


def _latest_before(ids, pos, want_id, want_pos):
    """Index into (``ids``, ``pos``), sorted by id then pos, of the latest
    entry with id ``want_id`` and pos < ``want_pos``; -1 where none.
    Positions are at least -1 and below 2**40."""
    out = np.full(len(want_id), -1, dtype=np.int64)
    if not len(ids):
        return out
    uniq, rank = np.unique(ids, return_inverse=True)
    key = (rank.astype(np.int64) << _SHIFT) | (pos + 1)
    r = np.minimum(np.searchsorted(uniq, want_id), len(uniq) - 1)
    known = uniq[r] == want_id
    k = np.searchsorted(key, (r.astype(np.int64) << _SHIFT) | (want_pos + 1), side="left") - 1
    hit = known & (k >= 0)
    hit[hit] = rank[k[hit]] == r[hit]
    out[hit] = k[hit]
    return out


def _sorted(ids, pos, *cols):
    """The arrays ordered by id, then pos."""
    order = np.lexsort((pos, ids))
    return tuple(np.asarray(c, dtype=np.int64)[order] for c in (ids, pos) + cols)


def trusted_births(rec):
    """(VMA ids, positions, owners) of the VMAs born with path ``alloc``
    or ``fork``, sorted by id then position; a vfork child's ``alloc``
    rows before its exec are its parent's."""
    ob = rec.objects
    v = np.flatnonzero(ob.is_alloc & (ob.object == OBJECT_CODE["vm_area_struct"]) & np.isin(ob.path, TRUSTED))
    owner = ob.owner[v].astype(np.int64)
    mmap = ob.path[v] == PATH_CODE["alloc"]
    owner[mmap] = generations.vfork_owners(rec, owner[mmap], ob.ts_ns[v][mmap].astype(np.int64))
    return _sorted(ob.obj_id[v], ob.pos[v], owner)


def _gone(rec):
    """(tgid, ts) sorted: every time a process's mm went away: its group
    exit (``group_dead``; where the kernel has no such field, the exit of
    the thread whose pid is the tgid) and each exec's start."""
    ex = rec.exits
    dead = ex["pid"].to_numpy() == ex["tgid"].to_numpy()
    if "group_dead" in ex:
        known = ex["group_dead"].notna().to_numpy()
        dead = np.where(known, ex["group_dead"].fillna(False).to_numpy().astype(bool), dead)
    etgid, ets = generations.exec_starts(rec)
    tgid = np.concatenate([ex["tgid"].to_numpy()[dead].astype(np.int64), etgid])
    ts = np.concatenate([ex["ts_ns"].to_numpy()[dead].astype(np.int64), ets])
    order = np.lexsort((ts, tgid))
    return tgid[order], ts[order]


def _lasted(gone, tgid, since, until):
    """Whether each process ``tgid`` kept its mm from ``since`` to
    ``until`` (no exit or exec start in between)."""
    g_tgid, g_ts = gone
    if not len(g_tgid):
        return np.ones(len(tgid), dtype=bool)
    k = _latest_before(g_tgid, g_ts, tgid, until + 1)          # the last one at or before until
    ok = k < 0
    ok[~ok] = g_ts[k[~ok]] < since[~ok]
    return ok


def _call_rows(rec, rows):
    """Per object row of ``rows``, the index into ``rec.calls`` of its
    ``__anon_vma_prepare`` call row (the task's next call row, on the same
    VMA, with an mm); -1 where none."""
    ob, calls = rec.objects, rec.calls
    out = np.full(len(rows), -1, dtype=np.int64)
    prep = np.flatnonzero(((calls["func"] == PREPARE) & (calls["mm_id"] >= 0)).to_numpy())
    if not len(prep) or not len(rows):
        return out
    key = (calls["pid"].to_numpy()[prep].astype(np.int64) << _SHIFT) | calls["pos"].to_numpy()[prep]
    order = np.argsort(key, kind="stable")
    key = key[order]
    want = (ob.pid[rows].astype(np.int64) << _SHIFT) | ob.pos[rows].astype(np.int64)
    j = np.minimum(np.searchsorted(key, want, side="right"), len(key) - 1)
    c = prep[order[j]]
    ok = (key[j] > want) & ((key[j] >> _SHIFT) == (want >> _SHIFT)) & \
        (calls["vma_id"].to_numpy()[c] == ob.vma_id[rows])
    out[ok] = c[ok]
    return out


def _mm_evidence(rec, births):
    """(mm ids, ts, tgid) sorted by mm then ts: each call row on a VMA
    with a trusted birth before it names that birth's process as its mm's;
    each census VMA row names the census's process (at ts -1)."""
    calls = rec.calls
    ids, pos, owner = births
    c_vma, c_pos = calls["vma_id"].to_numpy().astype(np.int64), calls["pos"].to_numpy().astype(np.int64)
    k = _latest_before(ids, pos, c_vma, c_pos)
    ok = (k >= 0) & (calls["mm_id"].to_numpy() >= 0)
    mm, ts, tgid = [calls["mm_id"].to_numpy()[ok]], [calls["ts_ns"].to_numpy()[ok]], [owner[k[ok]]]
    cen = rec.census
    if cen is not None and len(cen) and "mm_id" in cen:
        cen = cen[(cen["object"] == "vm_area_struct") & (cen["mm_id"] >= 0)]
        mm.append(cen["mm_id"].to_numpy())
        ts.append(np.full(len(cen), -1))
        tgid.append(cen["tgid"].to_numpy())
    return _sorted(np.concatenate(mm), np.concatenate(ts), np.concatenate(tgid))


def mm_owners(rec, rows, births):
    """Per fault row of ``rows``, the process of the mm its call row names
    (_mm_evidence, the latest before the row, if that process kept its mm
    until the row); -1 where not known."""
    out = np.full(len(rows), -1, dtype=np.int64)
    calls = rec.calls
    c = _call_rows(rec, rows)
    has = c >= 0
    if not has.any():
        return out
    ev_mm, ev_ts, ev_tgid = _mm_evidence(rec, births)
    mm = calls["mm_id"].to_numpy().astype(np.int64)[c[has]]
    ts = rec.objects.ts_ns[rows[has]].astype(np.int64)
    k = _latest_before(ev_mm, ev_ts, mm, ts + 1)
    found = k >= 0
    tgid = np.where(found, ev_tgid[np.maximum(k, 0)] if len(ev_tgid) else -1, -1)
    since = np.where(found, ev_ts[np.maximum(k, 0)] if len(ev_ts) else 0, 0)
    ok = found & _lasted(_gone(rec), tgid, since, ts)
    idx = np.flatnonzero(has)
    out[idx[ok]] = tgid[ok]
    return out


def remote_fault_owners(rec, owner):
    """``owner`` (per object row) with each ``fault``-path alloc row of a
    function-probe recording given to the process of its VMA (the module's
    rules). Returns (owner, rows given to another process than the task's,
    a vfork child's in its parent's mm counting as the parent's)."""
    ob = rec.objects
    if ob.vma_id is None or rec.calls is None or not len(rec.calls):
        return owner, 0
    rows = np.flatnonzero(ob.is_alloc & (ob.path == PATH_CODE["fault"]) & (ob.vma_id >= 0))
    births = trusted_births(rec)
    k = _latest_before(births[0], births[1], ob.vma_id[rows].astype(np.int64), ob.pos[rows].astype(np.int64))
    new = np.where(k >= 0, births[2][np.maximum(k, 0)] if len(births[2]) else -1, -1)
    rest = np.flatnonzero(new < 0)
    new[rest] = mm_owners(rec, rows[rest], births)
    rows, new = rows[new >= 0], new[new >= 0]
    base = generations.vfork_owners(rec, owner[rows].astype(np.int64), ob.ts_ns[rows].astype(np.int64))
    changed = int((base != new).sum())
    if (owner[rows] != new).any():
        owner = owner.copy()
        owner[rows] = new
    return owner, changed
