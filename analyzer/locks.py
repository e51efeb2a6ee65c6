"""Waits for anon_vma root rwsems (schema v2 ``lock`` rows; docs/models.md#locks).

``anon_vma_lock_write()`` / ``anon_vma_lock_read()`` (include/linux/rmap.h)
take ``anon_vma->root->rwsem`` with ``down_write()`` / ``down_read()``; a
task that has to sleep for it passes ``lock:contention_begin`` and
``lock:contention_end`` (kernel/locking/rwsem.c), which the collector pairs
into one row per wait. Every number here is a sum or an order statistic of
those rows: exact for the waits that slept, blind to uncontended
acquisitions and to optimistic spinning.
"""

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


def summary(rp, top=20):
    rec = rp.rec
    lk = rec.locks if rec.locks is not None else None
    attached, reason = probe_status(rec.meta)
    out = {"see": SECTION, "probe": {"name": PROBE, "attached": attached, "reason": reason}}
    n = 0 if lk is None else len(lk)
    if not n:
        if attached is False:
            out.update(status="not available", available=False, waits=None,
                       note=f"the kernel had no usable contention tracepoints ({reason}): "
                            "lock waits were not recorded, which is not the same as none")
        elif attached is None:
            out.update(status="not recorded", available=False, waits=None,
                       note="the recording has no lock probe (schema v1, or a collector "
                            "that did not try lock:contention_*): lock waits unknown")
        else:
            out.update(status="no waits", available=True, waits=0, total_wait_ns=0,
                       wait_ns=stats([]), fidelity=FIDELITY,
                       note="lock:contention_* attached; no task slept waiting for an "
                            "anon_vma root rwsem during the run")
        return out

    wait = lk["wait_ns"].to_numpy().astype(np.int64)
    wait = np.maximum(wait, 0)
    write = lk["lock_write"].fillna(False).to_numpy(dtype=bool)
    fnames, fcode = categories(lk["lock_func"], "unknown")
    cnames, ccode = categories(lk["comm"], "?")
    lock_id = lk["lock_id"].to_numpy().astype(np.int64)
    pos = lk["pos"].to_numpy().astype(np.int64)
    pre = lk["preexisting"].fillna(False).to_numpy(dtype=bool)
    dur = rec.meta.get("duration_s")

    out.update(status="recorded", available=True, **_group(wait), fidelity=FIDELITY)
    if isinstance(dur, (int, float)) and dur > 0:
        out["wait_ns_per_s"] = round(float(wait.sum()) / dur, 1)
    if attached is False:
        out["note"] = "lock rows present although the metadata says the probe did not attach"

    by_func = {}
    ftot = np.bincount(fcode, weights=wait, minlength=len(fnames))
    for i in np.argsort(-ftot, kind="stable"):             # one entry per lock taker
        m = fcode == i
        if not m.any():
            continue
        f = fnames[i]
        g = _group(wait[m])
        g["write_waits"] = int((write & m).sum())
        g["meaning"] = FUNC_MEANING.get(f, f)
        by_func[f] = g
    out["by_func"] = by_func
    out["by_mode"] = {"read": _group(wait[~write]), "write": _group(wait[write])}

    # roots: one row per distinct lock_id, the heaviest first
    uid, inv = np.unique(lock_id, return_inverse=True)
    tot = np.bincount(inv, weights=wait, minlength=len(uid)).astype(np.int64)
    cnt = np.bincount(inv, minlength=len(uid))
    mx = np.zeros(len(uid), dtype=np.int64)
    np.maximum.at(mx, inv, wait)
    first = np.full(len(uid), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, inv, pos)
    rpre = np.zeros(len(uid), dtype=bool)
    np.logical_or.at(rpre, inv, pre)
    order = np.argsort(-tot, kind="stable")[:top]
    arow = last_alloc(rp, "anon_vma", uid[order], first[order])
    ob = rp.ob
    roots = []
    for k, i in enumerate(order):
        entry = {"lock_id": int(uid[i]), "waits": int(cnt[i]), "total_wait_ns": int(tot[i]),
                 "max_wait_ns": int(mx[i]), "preexisting": bool(rpre[i])}
        r = int(arow[k])
        if r >= 0:
            entry.update(in_run=True, owner_tgid=int(ob.owner[r]),
                         owner_comm=ob.comm_name(int(ob.comm[r])),
                         alloc_path=_path_name(ob.path[r]))
        else:
            entry.update(in_run=False, owner_tgid=None, owner_comm=None,
                         note="root anon_vma allocated before the run: owner unknown")
        roots.append(entry)
    out["roots"] = int(len(uid))
    out["top_roots"] = roots

    # waiters by command name
    ctot = np.bincount(ccode, weights=wait, minlength=len(cnames)).astype(np.int64)
    ccnt = np.bincount(ccode, minlength=len(cnames))
    corder = [i for i in np.argsort(-ctot, kind="stable") if ccnt[i]][:top]
    out["by_comm"] = [dict(comm=cnames[i], **_group(wait[ccode == i])) for i in corder]
    out["comms"] = int((ccnt > 0).sum())
    return out


def _path_name(code):
    from .load import PATH_NAMES
    return None if code < 0 else PATH_NAMES[int(code)]
