"""Frees matched to their allocs a chunk of rows at a time (docs/models.md
section 0): each free of the run goes to the latest earlier alloc with the
same (object, obj_id), an alloc takes the first such free only, and a
preexisting free matches nothing.

The matcher keeps one entry per object that can still be freed: for each
(object, obj_id), its latest alloc while no free has taken it. An older alloc
of an id allocated again can never be taken (a later free's latest earlier
alloc is the newer one), and a taken alloc matches no later free, so neither
is kept: what is held grows with the live objects, not with the rows
(docs/streaming.md).
"""

import numpy as np

from .order import stable_argsort


class _Live:
    """The entries of one object type: ``ids`` ascending, ``rows`` the row
    of each one's untaken latest alloc."""

    def __init__(self, dtype):
        self.ids = np.zeros(0, dtype=dtype)
        self.rows = np.zeros(0, dtype=np.int64)

    def held(self, ids):
        """The entries (ascending indices) of the ids among ``ids``."""
        at = np.searchsorted(self.ids, ids)
        hit = at < len(self.ids)
        hit[hit] = self.ids[at[hit]] == ids[hit]
        mark = np.zeros(len(self.ids), dtype=bool)
        mark[at[hit]] = True
        return np.flatnonzero(mark)

    def replace(self, drop, ids, rows):
        """Drop the entries ``drop``; add ``ids`` (ascending, unique, none
        of them held after the drop) with their ``rows``."""
        keep = np.ones(len(self.ids), dtype=bool)
        keep[drop] = False
        kept_ids, kept_rows = self.ids[keep], self.rows[keep]
        where = np.searchsorted(kept_ids, ids)
        self.ids = np.insert(kept_ids, where, ids)
        self.rows = np.insert(kept_rows, where, rows)


class FreeMatcher:
    """Feed it the object rows in replay order, a chunk at a time
    (:meth:`feed`); it returns the pairs each chunk closes."""

    def __init__(self):
        self._live = {}

    def held(self):
        """Entries kept: the allocs no free has taken yet."""
        return sum(len(v.ids) for v in self._live.values())

    def feed(self, rows, obj, obj_id, is_alloc, pre_free):
        """One chunk: ``rows`` (ascending row numbers, any numbering the
        caller keeps), their object code, obj_id, alloc flag and
        preexisting-free flag. Returns (free rows, their alloc rows) of the
        pairs matched in this chunk, the frees ascending."""
        frees, allocs = [], []
        cand = np.flatnonzero(~pre_free)
        cand = cand[np.argsort(obj[cand], kind="stable")]        # by object type, rows in order
        codes = obj[cand]
        cuts = np.r_[0, np.flatnonzero(codes[1:] != codes[:-1]) + 1, len(cand)] if len(cand) else []
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            sel = cand[lo:hi]
            live = self._live.setdefault(int(codes[lo]), _Live(obj_id.dtype))
            f, a = _match(live, rows[sel], obj_id[sel], is_alloc[sel])
            frees.append(f)
            allocs.append(a)
        if not frees:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        f, a = np.concatenate(frees), np.concatenate(allocs)
        order = np.argsort(f)
        return f[order], a[order]


def _match(live, rows, ids, is_alloc):
    """Match one object type's rows of a chunk against ``live`` (updated in
    place) -> (free rows, alloc rows)."""
    held = live.held(ids)
    # the held allocs of the chunk's ids first: a stable sort keeps them
    # before the chunk's rows of the same id
    order, keys = stable_argsort(np.concatenate([live.ids[held], ids]), sorted_keys=True)
    src = np.concatenate([live.rows[held], rows.astype(np.int64, copy=False)])[order]
    alloc = np.concatenate([np.ones(len(held), dtype=bool), is_alloc])[order]
    j = np.arange(len(keys))
    last = np.maximum.accumulate(np.where(alloc, j, -1))   # latest alloc at or before j
    fj = np.flatnonzero(~alloc)
    aj = last[fj]
    ok = aj >= 0
    ok[ok] = keys[aj[ok]] == keys[fj[ok]]
    fj, aj = fj[ok], aj[ok]
    first = np.ones(len(aj), dtype=bool)                   # the first free after an alloc takes it
    first[1:] = aj[1:] != aj[:-1]
    fj, aj = fj[first], aj[first]
    taken = np.zeros(len(keys), dtype=bool)
    taken[aj] = True
    # what each id leaves behind: its latest alloc, unless taken
    end = np.r_[np.flatnonzero(keys[1:] != keys[:-1]), len(keys) - 1]
    la = last[end]
    stays = la >= 0
    stays[stays] = (keys[la[stays]] == keys[end[stays]]) & ~taken[la[stays]]
    live.replace(held, keys[end[stays]], src[la[stays]])
    return src[fj], src[aj]
