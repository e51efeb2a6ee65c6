"""Waits for anon_vma root rwsems (schema v2 ``lock`` rows; docs/models.md#locks).

``anon_vma_lock_write()`` / ``anon_vma_lock_read()`` (include/linux/rmap.h)
take ``anon_vma->root->rwsem`` with ``down_write()`` / ``down_read()``; a
task that has to sleep for it passes ``lock:contention_begin`` and
``lock:contention_end`` (kernel/locking/rwsem.c), which the collector pairs
into one row per wait. Every number here is a sum or an order statistic of
those rows: exact for the waits that slept, blind to uncontended
acquisitions and to optimistic spinning.
"""

from typing import NamedTuple

import numpy as np

from .objlookup import categories, last_alloc, stats

SECTION = "docs/models.md#locks"
PROBE = "tracepoint:lock:contention_begin+contention_end"
FUNC_MEANING = {
    "fault": "__anon_vma_prepare (first fault)",
    "fork": "anon_vma_fork",
    "clone": "anon_vma_clone",
    "unlink": "unlink_anon_vmas (munmap, exit, exec)",
    "put": "__put_anon_vma",
    "walk": "rmap walk (rmap_walk_anon, folio_lock_anon_vma_read)",
    "split_merge": "VMA split or merge (vma_prepare, __split_vma, commit_merge, vma_expand)",
    "mremap": "mremap (take_rmap_locks, move_page_tables)",
    "thp": "THP collapse or split",
    "unknown": "no anon_vma lock taker on the 12 stack frames",
}
FIDELITY = ("exact for waits that slept (lock:contention_begin/end); uncontended "
            "acquisitions and optimistic spinning leave no row")


def probe_status(meta):
    """(attached: True/False/None when the metadata has no such probe, reason)."""
    for p in meta.get("probes") or []:
        if isinstance(p, dict) and p.get("name") == PROBE:
            return bool(p.get("attached")), p.get("reason")
    return None, None


def _group(wait, total_only=False):
    out = {"waits": int(len(wait)), "total_wait_ns": int(wait.sum())}
    if not total_only:
        out["wait_ns"] = stats(wait)
    return out


class _LockRows(NamedTuple):
    """The lock rows as arrays, one entry per wait."""
    wait: np.ndarray          # wait_ns (negative as 0)
    write: np.ndarray         # lock_write: down_write, else down_read
    fnames: list              # lock_func names
    fcode: np.ndarray         # lock_func of each wait, an index into fnames
    cnames: list              # comm names
    ccode: np.ndarray         # comm of each waiter, an index into cnames
    lock_id: np.ndarray       # the root anon_vma whose rwsem was waited for
    pos: np.ndarray           # position of the lock row
    pre: np.ndarray           # preexisting


class _RootWaits(NamedTuple):
    """The waits per root (distinct lock_id), in lock_id order."""
    uid: np.ndarray           # lock_id of each root
    tot: np.ndarray           # total wait_ns
    cnt: np.ndarray           # waits
    mx: np.ndarray            # max wait_ns
    first: np.ndarray         # position of its first wait
    pre: np.ndarray           # any of its waits preexisting


def _status_without_rows(attached, reason):
    """Takes the lock probe's (attached, reason) (probe_status); returns the
    fields of a recording without lock rows: ``not available``, ``not
    recorded`` or ``no waits`` (docs/models.md section 5, "Status")."""
    if attached is False:
        return dict(status="not available", available=False, waits=None,
                    note=f"the kernel had no usable contention tracepoints ({reason}): "
                         "lock waits were not recorded, which is not the same as none")
    if attached is None:
        return dict(status="not recorded", available=False, waits=None,
                    note="the recording has no lock probe (schema v1, or a collector "
                         "that did not try lock:contention_*): lock waits unknown")
    return dict(status="no waits", available=True, waits=0, total_wait_ns=0,
                wait_ns=stats([]), fidelity=FIDELITY,
                note="lock:contention_* attached; no task slept waiting for an "
                     "anon_vma root rwsem during the run")


def _lock_rows(lk):
    """Takes the non-empty lock rows; returns them as _LockRows (a null
    lock_func is ``unknown``, a null comm ``?``)."""
    wait = lk["wait_ns"].to_numpy().astype(np.int64)
    fnames, fcode = categories(lk["lock_func"], "unknown")
    cnames, ccode = categories(lk["comm"], "?")
    return _LockRows(wait=np.maximum(wait, 0), write=lk["lock_write"].fillna(False).to_numpy(dtype=bool),
                     fnames=fnames, fcode=fcode, cnames=cnames, ccode=ccode,
                     lock_id=lk["lock_id"].to_numpy().astype(np.int64),
                     pos=lk["pos"].to_numpy().astype(np.int64),
                     pre=lk["preexisting"].fillna(False).to_numpy(dtype=bool))


def _recorded(rows, attached, duration_s):
    """Takes _LockRows, whether the probe attached and the run's duration_s;
    returns the ``recorded`` status fields: ``waits``, ``total_wait_ns``,
    ``wait_ns`` and ``wait_ns_per_s`` (section 5 table), and a note when the
    metadata says the probe did not attach."""
    wait = rows.wait
    out = dict(status="recorded", available=True, **_group(wait), fidelity=FIDELITY)
    if isinstance(duration_s, (int, float)) and duration_s > 0:
        out["wait_ns_per_s"] = round(float(wait.sum()) / duration_s, 1)
    if attached is False:
        out["note"] = "lock rows present although the metadata says the probe did not attach"
    return out


def _by_func(rows):
    """Takes _LockRows; returns ``by_func``: the waits per lock taker
    (lock_func), the heaviest first, with write_waits and its meaning
    (section 5 table, ``by_func``)."""
    wait, fnames, fcode = rows.wait, rows.fnames, rows.fcode
    by_func = {}
    ftot = np.bincount(fcode, weights=wait, minlength=len(fnames))
    for i in np.argsort(-ftot, kind="stable"):             # one entry per lock taker
        m = fcode == i
        if not m.any():
            continue
        f = fnames[i]
        g = _group(wait[m])
        g["write_waits"] = int((rows.write & m).sum())
        g["meaning"] = FUNC_MEANING.get(f, f)
        by_func[f] = g
    return by_func


def _by_mode(rows):
    """Takes _LockRows; returns ``by_mode``: the waits of down_read and of
    down_write (section 5 table, ``by_mode``)."""
    return {"read": _group(rows.wait[~rows.write]), "write": _group(rows.wait[rows.write])}


def _root_waits(rows):
    """Takes _LockRows; returns _RootWaits: per root (lock_id) its waits,
    total and max wait, first position and whether it is preexisting
    (section 5 table, ``top_roots``)."""
    uid, inv = np.unique(rows.lock_id, return_inverse=True)
    tot = np.bincount(inv, weights=rows.wait, minlength=len(uid)).astype(np.int64)
    cnt = np.bincount(inv, minlength=len(uid))
    mx = np.zeros(len(uid), dtype=np.int64)
    np.maximum.at(mx, inv, rows.wait)
    first = np.full(len(uid), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inv, rows.pos)
    rpre = np.zeros(len(uid), dtype=bool)
    np.logical_or.at(rpre, inv, rows.pre)
    return _RootWaits(uid=uid, tot=tot, cnt=cnt, mx=mx, first=first, pre=rpre)


def _top_roots(rp, roots, top):
    """Takes the recording, _RootWaits and how many; returns ``top_roots``:
    the heaviest roots first, each with the owner from its root anon_vma's
    alloc row (the latest before its first wait) when allocated in the run
    (section 5 table, ``top_roots``)."""
    uid = roots.uid
    order = np.argsort(-roots.tot, kind="stable")[:top]
    arow = last_alloc(rp, "anon_vma", uid[order], roots.first[order])
    ob = rp.ob
    entries = []
    for k, i in enumerate(order):
        entry = {"lock_id": int(uid[i]), "waits": int(roots.cnt[i]), "total_wait_ns": int(roots.tot[i]),
                 "max_wait_ns": int(roots.mx[i]), "preexisting": bool(roots.pre[i])}
        r = int(arow[k])
        if r >= 0:
            entry.update(in_run=True, owner_tgid=int(ob.owner[r]),
                         owner_comm=ob.comm_name(int(ob.comm[r])),
                         alloc_path=_path_name(ob.path[r]))
        else:
            entry.update(in_run=False, owner_tgid=None, owner_comm=None,
                         note="root anon_vma allocated before the run: owner unknown")
        entries.append(entry)
    return entries


def _by_comm(rows, top):
    """Takes _LockRows and how many; returns (``by_comm``: the waits per
    command name of the waiting task, the heaviest first; ``comms``: how many
    command names waited) (section 5 table, ``by_comm``)."""
    wait, cnames, ccode = rows.wait, rows.cnames, rows.ccode
    ctot = np.bincount(ccode, weights=wait, minlength=len(cnames)).astype(np.int64)
    ccnt = np.bincount(ccode, minlength=len(cnames))
    corder = [i for i in np.argsort(-ctot, kind="stable") if ccnt[i]][:top]
    return [dict(comm=cnames[i], **_group(wait[ccode == i])) for i in corder], int((ccnt > 0).sum())


def summary(rp, top=20):
    """Takes the analysis of a recording and how many roots and commands to
    list; returns the ``locks`` section of the report (docs/models.md
    section 5): the status, and for recorded waits their totals, by_func,
    by_mode, top_roots and by_comm."""
    rec = rp.rec
    lk = rec.locks
    attached, reason = probe_status(rec.meta)
    out = {"see": SECTION, "probe": {"name": PROBE, "attached": attached, "reason": reason}}
    n = 0 if lk is None else len(lk)
    if not n:
        out.update(_status_without_rows(attached, reason))
        return out

    rows = _lock_rows(lk)
    out.update(_recorded(rows, attached, rec.meta.get("duration_s")))
    out["by_func"] = _by_func(rows)
    out["by_mode"] = _by_mode(rows)

    # roots: one row per distinct lock_id, the heaviest first
    roots = _root_waits(rows)
    out["roots"] = int(len(roots.uid))
    out["top_roots"] = _top_roots(rp, roots, top)

    # waiters by command name
    out["by_comm"], out["comms"] = _by_comm(rows, top)
    return out


def _path_name(code):
    from .load import PATH_NAMES
    return None if code < 0 else PATH_NAMES[int(code)]
