"""Find the alloc row of an object named by id in another kind of row (the
root anon_vma of a ``lock`` row, the folio's anon_vma of a ``walk`` row), and
percentile summaries shared by the lock and walk sections.

Vectorised: the queried ids are few (one per lock or walk row); the object
rows are filtered to those ids with one ``np.isin`` before any sort.
"""

import math

import numpy as np
import pandas as pd

from .order import unique

_SHIFT = 40                      # positions stay below 2**40 rows


def last_alloc(rp, obj, ids, pos):
    """For each (``ids[i]``, ``pos[i]``): the row (index into the object rows)
    of the latest ``obj`` alloc with that ``obj_id`` before position
    ``pos[i]``, or -1 (allocated before the run, or not an ``obj``). With
    per-run ids an id has one alloc; with raw pointers the latest one
    before the query is the object the address named then."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.int64)
    out = np.full(len(ids), -1, dtype=np.int64)
    if not len(ids):
        return out
    allocs = rp.allocs(obj)
    aid = rp.ob.obj_id[allocs]
    keep = np.isin(aid, ids)
    allocs, aid = allocs[keep], aid[keep]
    if not len(allocs):
        return out
    uid = unique(aid)
    acode = np.searchsorted(uid, aid).astype(np.int64)
    akey = (acode << _SHIFT) | rp.ob.pos[allocs].astype(np.int64)
    order = np.argsort(akey, kind="stable")
    akey, allocs = akey[order], allocs[order]
    qi = np.minimum(np.searchsorted(uid, ids), len(uid) - 1)
    found = uid[qi] == ids
    qkey = (qi.astype(np.int64) << _SHIFT) | np.maximum(pos, 0)
    j = np.searchsorted(akey, qkey, side="left") - 1       # last alloc strictly before
    ok = found & (j >= 0)
    ok[ok] = (akey[j[ok]] >> _SHIFT) == qi[ok]
    out[ok] = allocs[j[ok]]
    return out


def percentile(sorted_values, p):
    """Nearest rank (as ``anonanalyze simulate``): the smallest value v such
    that at least p % of the values are <= v."""
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[k - 1]


def stats(values):
    """{p50, p99, max} of ``values`` (nearest rank; None when empty)."""
    v = np.sort(np.asarray(values))
    if not len(v):
        return {"p50": None, "p99": None, "max": None}
    return {"p50": int(percentile(v, 50)), "p99": int(percentile(v, 99)), "max": int(v[-1])}


def log2_hist(values):
    """The power-of-two histogram of non-negative integers ``values``, as
    bcc's ``print_log2_hist``: [low, high, count] for 0, then [1, 1], [2, 3],
    [4, 7], ... from the smallest value's bucket to the largest's, empty
    buckets between them included; [] when there are no values."""
    v = np.asarray(values, dtype=np.int64)
    if not len(v):
        return []
    if (v < 0).any():
        raise ValueError("log2_hist: negative value")
    # bucket k = bit length: 0 for 0, k >= 1 for [2**(k-1), 2**k - 1]
    b, x = np.zeros(len(v), dtype=np.int64), v.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = x >= (1 << shift)
        b[big] += shift
        x[big] >>= shift
    b += x > 0
    counts = np.bincount(b)
    lo = int(b.min())
    return [[0 if k == 0 else 1 << (k - 1), 0 if k == 0 else (1 << k) - 1, int(counts[k])]
            for k in range(lo, len(counts))]


def categories(series, null_name):
    """(names, codes) of a string column of a small frame: codes index
    ``names``; nulls get ``null_name``. No Python pass over the rows."""
    cat = pd.Categorical(series)
    names = [str(c) for c in cat.categories]
    codes = np.asarray(cat.codes, dtype=np.int64)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(null_name)
    return names, codes
