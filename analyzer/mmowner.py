"""Faults made through another process (docs/models.md#nofork-rules, rule
N0'): the process whose mm a fault-path object serves.

A task can fault in another process's mm: ``access_remote_vm()`` and
``get_user_pages_remote()`` (``ptrace(PTRACE_POKEDATA)``, writes to
``/proc/PID/mem``, ``process_vm_writev()``) and uprobes'
``uprobe_write_opcode()`` reach ``handle_mm_fault()`` on the target's VMA,
so ``__anon_vma_prepare()`` runs in the writer's task and the object rows
carry the writer's tgid. Function-probe rows name the VMA the anon_vma was
made for (``vma_id``); a VMA belongs to the process whose mm holds it: the
owner of its own ``vm_area_struct`` alloc row (``mmap``, exec and split
run in that process; a fork's copies carry the child as ``owner_tgid``).
A VMA from before the run without an anon_vma has no row of its own (the
census lists VMAs with one): its ``__anon_vma_prepare`` call row names its
mm (``mm_id``), and the census names the process of each mm it visited,
while that process has neither exited nor exec'd (an mm id is an address:
after that it may name a new mm).
"""

import numpy as np
import pandas as pd

from .load import OBJECT_CODE, PATH_CODE

PREPARE = "__anon_vma_prepare"


def _latest_before(ids, pos, want_id, want_pos):
    """Index into (``ids``, ``pos``), sorted by id then pos, of the latest
    entry with id ``want_id`` and pos < ``want_pos``; -1 where none.
    Positions are at least -1 and below 2**40."""
    out = np.full(len(want_id), -1, dtype=np.int64)
    if not len(ids):
        return out
    uniq, rank = np.unique(ids, return_inverse=True)
    key = (rank.astype(np.int64) << 40) | (pos + 1)
    r = np.minimum(np.searchsorted(uniq, want_id), len(uniq) - 1)
    known = uniq[r] == want_id
    k = np.searchsorted(key, (r.astype(np.int64) << 40) | (want_pos + 1), side="left") - 1
    hit = known & (k >= 0)
    hit[hit] = rank[k[hit]] == r[hit]
    out[hit] = k[hit]
    return out


def vma_births(rec):
    """(ids, pos, owner) of every VMA born in the run, sorted by id then
    pos: the ``vm_area_struct`` alloc rows and their owners."""
    ob = rec.objects
    v = np.flatnonzero(ob.is_alloc & (ob.object == OBJECT_CODE["vm_area_struct"]))
    ids, pos, owner = (np.asarray(x, dtype=np.int64) for x in (ob.obj_id[v], ob.pos[v], ob.owner[v]))
    order = np.lexsort((pos, ids))
    return ids[order], pos[order], owner[order]


def _lookup(keys, values, want, missing=-1):
    """values[i] where keys[i] == want (``keys`` sorted), else ``missing``."""
    if not len(keys):
        return np.full(len(want), missing, dtype=np.int64)
    i = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[i] == want, values[i], missing)


def _gone(rec):
    """(tgids sorted, first position at which each one's mm is gone): its
    group exit or its first exec row (an exec's new mm exists from execve()
    entry, before the row; bounding by the row keeps the census's mm a
    little long)."""
    parts = []
    for frame in (rec.exits, rec.execs):
        if len(frame) and "group_dead" in frame:
            frame = frame[frame["group_dead"].fillna(True).astype(bool)]
        parts.append(frame[["tgid", "pos"]])
    both = pd.concat(parts).groupby("tgid")["pos"].min()
    return both.index.to_numpy().astype(np.int64), both.to_numpy().astype(np.int64)


def census_mm_owners(rec, rows):
    """Per fault row of ``rows`` (alloc rows with a VMA), the process the
    census found the mm of its ``__anon_vma_prepare`` call (the task's next
    call row, on the same VMA) in, while that process lasts; -1 where not
    known."""
    ob, calls, cen = rec.objects, rec.calls, rec.census
    out = np.full(len(rows), -1, dtype=np.int64)
    if not len(rows) or calls is None or cen is None or not len(cen) or "mm_id" not in cen:
        return out
    calls = calls[calls["func"] == PREPARE]
    if not len(calls):
        return out
    cen = cen[(cen["object"] == "vm_area_struct") & cen["mm_id"].notna()].drop_duplicates("mm_id")
    cen = cen.sort_values("mm_id")
    key = (calls["pid"].to_numpy().astype(np.int64) << 40) | calls["pos"].to_numpy().astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    want = (ob.pid[rows].astype(np.int64) << 40) | ob.pos[rows].astype(np.int64)
    j = np.minimum(np.searchsorted(key, want, side="right"), len(key) - 1)
    c = order[j]
    same = ((key[j] >> 40) == (want >> 40)) & (calls["vma_id"].to_numpy()[c] == ob.vma_id[rows])
    mm = calls["mm_id"].fillna(-1).to_numpy().astype(np.int64)[c]
    tgid = _lookup(cen["mm_id"].to_numpy().astype(np.int64), cen["tgid"].to_numpy().astype(np.int64), mm)
    g_tgid, g_pos = _gone(rec)
    gone = _lookup(g_tgid, g_pos, tgid, missing=np.iinfo(np.int64).max)
    ok = same & (tgid >= 0) & (gone > ob.pos[rows])
    out[ok] = tgid[ok]
    return out


def remote_fault_owners(rec, owner):
    """``owner`` (per object row) with each ``fault``-path alloc row of a
    function-probe recording given to the process of its VMA: the owner of
    the latest birth of that VMA id before the row, else the census's
    process of the VMA's mm (census_mm_owners), where either is known.
    Returns (owner, rows whose owner changed)."""
    ob = rec.objects
    if ob.vma_id is None:
        return owner, 0
    rows = np.flatnonzero(ob.is_alloc & (ob.path == PATH_CODE["fault"]) & (ob.vma_id >= 0))
    ids, pos, vowner = vma_births(rec)
    k = _latest_before(ids, pos, ob.vma_id[rows].astype(np.int64), ob.pos[rows].astype(np.int64))
    new = np.where(k >= 0, vowner[np.maximum(k, 0)] if len(vowner) else -1, -1)
    pre = np.flatnonzero(new < 0)
    new[pre] = census_mm_owners(rec, rows[pre])
    rows, new = rows[new >= 0], new[new >= 0]
    changed = int((owner[rows] != new).sum())
    if changed:
        owner = owner.copy()
        owner[rows] = new
    return owner, changed
