"""Integer columns per key (a tgid, a fork id), grown a chunk of rows at a
time: what is held grows with the keys (processes, forks), not the rows."""

from typing import NamedTuple

import numpy as np
import pandas as pd


class KeyedTable:
    """``keys`` (int64, ascending) and ``vals[i]``, the int64 row of
    ``keys[i]``; a new key's row starts as ``fill`` (one value per column)."""

    def __init__(self, fill):
        self.fill = np.asarray(fill, dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.int64)
        self.vals = np.zeros((0, len(self.fill)), dtype=np.int64)

    def rows(self, uniq):
        """The row index of each of ``uniq`` (ascending, unique), adding the
        keys not held yet."""
        uniq = np.asarray(uniq, dtype=np.int64)
        new = np.setdiff1d(uniq, self.keys, assume_unique=True)
        if len(new):
            union = np.union1d(self.keys, new)
            vals = np.empty((len(union), len(self.fill)), dtype=np.int64)
            vals[:] = self.fill
            vals[np.searchsorted(union, self.keys)] = self.vals
            self.keys, self.vals = union, vals
        return np.searchsorted(self.keys, uniq)

    def add(self, keys, values):
        """Add ``values`` (one row of len(fill) numbers per key in
        ``keys``) to the keys' rows."""
        if not len(keys):
            return
        codes, uniq = pd.factorize(np.asarray(keys, dtype=np.int64), sort=True)
        values = np.asarray(values, dtype=np.int64).reshape(len(keys), -1)
        sums = np.stack([np.bincount(codes, values[:, j], len(uniq)) for j in range(values.shape[1])], axis=1)
        rows = self.rows(uniq)                    # before self.vals is read: it may grow
        self.vals[rows] += sums.astype(np.int64)


class ByTask(NamedTuple):
    """A chunk's rows grouped by task, replay order kept inside each task
    (:func:`by_task`): ``order`` the rows in that order, ``first`` true on
    each task's first row there, ``group`` each row's task among the
    chunk's, ``end`` each task's last row, ``at`` the tasks' rows in the
    table and ``held`` what the table carried for them from earlier chunks."""
    order: np.ndarray
    first: np.ndarray
    group: np.ndarray
    end: np.ndarray
    at: np.ndarray
    held: np.ndarray

    def previous(self, values, column):
        """Each row's task's previous row's ``values`` (in this order); for a
        task's first row, column ``column`` of what the table carried."""
        shifted = np.r_[values[:1], values[:-1]]     # a task's first row takes the table's instead
        return np.where(self.first, self.held[self.group, column], shifted)


def by_task(table, pid):
    """The ByTask of a chunk's rows with tasks ``pid``, against ``table``
    (a KeyedTable by task, grown to hold the chunk's tasks)."""
    order = np.argsort(pid, kind="stable")
    p = pid[order].astype(np.int64)
    n = len(p)
    first = np.r_[True, p[1:] != p[:-1]] if n else np.zeros(0, dtype=bool)
    at = table.rows(p[first])                 # before vals is read: it may grow
    end = np.r_[np.flatnonzero(first[1:]), n - 1] if n else np.zeros(0, dtype=np.int64)
    return ByTask(order, first, np.cumsum(first) - 1, end, at, table.vals[at])
