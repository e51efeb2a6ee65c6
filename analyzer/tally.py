"""One pass over the object rows, a chunk at a time (docs/streaming.md):
per object type its counts and live counts (Tally), the tgids the process
tree needs, per fork its own anon_vmas and AVCs, per owner its VMAs."""

from typing import NamedTuple

import numpy as np
import pandas as pd

from anonscope import schema as S

from . import live
from .keyed import KeyedTable
from .load import CALLER_CODE, OBJECT_CODE, PATH_CODE
from .stream import chunks

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


class Probes(NamedTuple):
    """Where the object rows are read besides their totals: live counts
    just after ``at`` (positions), rows counted in each time window of
    ``windows`` ((first ns, last ns), both included) and in the position
    range ``span`` (None: none)."""
    at: np.ndarray
    windows: list
    span: tuple


def probes(rec):
    """The run's Probes: positions before the run (-1), of the census rows,
    every slab row, every mark, the end and the series' points; windows of
    the census (metadata census started_ns to ended_ns) and of each slab
    row's read (ts_ns to ts_ns + duration_ns); the census rows' span."""
    at = [[-1, rec.positions], rec.slab["pos"].to_numpy(), [p for _, p in series_points(rec)]]
    for frame in (rec.marks, rec.census):
        if frame is not None and len(frame):
            at.append(frame["pos"].to_numpy())
    cmeta = rec.meta.get("census") if isinstance(rec.meta.get("census"), dict) else {}
    t0, t1 = cmeta.get("started_ns"), cmeta.get("ended_ns")
    windows = [(t0, t1)] if isinstance(t0, int) and isinstance(t1, int) else []
    slab = rec.slab
    if len(slab):
        ts, took = slab["ts_ns"].to_numpy(dtype=np.int64), slab["duration_ns"].to_numpy(dtype=np.int64)
        windows += list(zip(ts.tolist(), (ts + np.maximum(took, 0)).tolist()))
    c = rec.census
    span = (int(c["pos"].min()), int(c["pos"].max())) if c is not None and len(c) else None
    return Probes(np.concatenate([np.asarray(a, dtype=np.int64) for a in at]), windows, span)


INT64 = np.iinfo(np.int64)


class Tally:
    """One object type's counts, a chunk of rows at a time: code counts
    (bincounts over the code tables, index -1 for null) of the allocs'
    ``path``, the frees' ``path``, the ``caller`` of clone_vma and of fault
    allocs; frees that were preexisting and frees matched to nothing; and
    the live counts (``live[net]``, live.LiveCount)."""

    def __init__(self, probes):
        self.alloc_path = np.zeros(len(PATH_CODE) + 1, dtype=np.int64)
        self.free_path = np.zeros(len(PATH_CODE) + 1, dtype=np.int64)
        self.clone_caller = np.zeros(len(CALLER_CODE) + 1, dtype=np.int64)
        self.fault_caller = np.zeros(len(CALLER_CODE) + 1, dtype=np.int64)
        self.preexisting = self.unmatched = 0
        self.live = {net: live.LiveCount(probes.at) for net in (True, False)}
        self._windows = {w: i for i, w in enumerate(dict.fromkeys(probes.windows))}
        # ts_ns is int64: a window end beyond it counts the same clipped
        w = np.clip(np.array(list(self._windows) or np.zeros((0, 2)), dtype=object),
                    INT64.min, INT64.max).astype(np.int64).reshape(-1, 2)
        self._w0, self._w1 = w[:, 0], w[:, 1]
        self._in_window = np.zeros(len(w), dtype=np.int64)
        self.span = probes.span
        self.in_span = 0

    def rows_between(self, t0, t1):
        """Rows with t0 <= ts_ns <= t1, a window of the Probes."""
        return int(self._in_window[self._windows[(t0, t1)]])

    @property
    def allocated(self):
        """Alloc rows."""
        return int(self.alloc_path.sum())

    @property
    def freed(self):
        """Free rows."""
        return int(self.free_path.sum())

    def feed(self, pos, ts, alloc, path, caller, matched, pre):
        """One chunk's rows of this object type."""
        self._in_window += np.searchsorted(ts, self._w1, side="right") - np.searchsorted(ts, self._w0)
        if self.span is not None:
            self.in_span += int(np.searchsorted(pos, self.span[1], side="right")
                                - np.searchsorted(pos, self.span[0]))
        self.alloc_path += _code_counts(path[alloc], len(self.alloc_path))
        self.free_path += _code_counts(path[~alloc], len(self.free_path))
        self.clone_caller += _code_counts(caller[alloc & (path == PATH_CODE["clone_vma"])],
                                          len(self.clone_caller))
        self.fault_caller += _code_counts(caller[alloc & (path == PATH_CODE["fault"])], len(self.fault_caller))
        self.preexisting += int(pre.sum())
        self.unmatched += int((~alloc & ~pre & ~matched).sum())
        starts, ends = pos[alloc], pos[matched]
        self.live[False].add(starts, ends)
        self.live[True].add(starts, np.concatenate([ends, pos[pre]]))

    def settle(self, upto):
        """Settle both live counts up to position ``upto``."""
        for c in self.live.values():
            c.settle(upto)


def _code_counts(codes, n):
    """Counts of each code (the last entry: -1, null)."""
    return np.bincount(codes.astype(np.int64) % n, minlength=n)


class Counts(NamedTuple):
    """What one pass over the object rows counts (:func:`count_objects`)."""
    tallies: dict          # object -> Tally
    tgids: np.ndarray      # every tgid and owner of the rows, ascending
    fork_pairs: KeyedTable  # fork_id -> (own anon_vmas, own AVCs) of its fork-path rows
    vmas: KeyedTable       # owner -> VMAs allocated for it


def count_objects(ob, partner, where):
    """The Counts of the object rows ``ob`` with their ``partner``, read at
    the Probes ``where``, fed a chunk of rows at a time."""
    tallies = {obj: Tally(where) for obj in S.OBJECTS}
    tgids, pairs, vmas = np.zeros(0, dtype=np.int64), KeyedTable([0, 0]), KeyedTable([0])
    av, vma = OBJECT_CODE["anon_vma"], OBJECT_CODE["vm_area_struct"]
    for part in chunks(len(ob)):
        pos, code, alloc = ob.pos[part], ob.object[part], ob.is_alloc[part]
        matched = ~alloc & (partner[part] >= 0)
        pre = ~alloc & ob.preexisting[part]
        path, caller, ts = ob.path[part], ob.caller[part], ob.ts_ns[part]
        for obj, t in tallies.items():
            mine = code == OBJECT_CODE[obj]
            t.feed(pos[mine], ts[mine], alloc[mine], path[mine], caller[mine], matched[mine], pre[mine])
            t.settle(int(pos[-1]) + 1)
        # pd.unique (hashing) first: sorting every row's tgid is slower
        seen = [pd.unique(ob.tgid[part]), pd.unique(ob.owner[part])]
        tgids = np.union1d(tgids, np.concatenate([np.asarray(a, dtype=np.int64) for a in seen]))
        fork = alloc & (path == PATH_CODE["fork"]) & (ob.fork_id[part] >= 0) & (code != vma)
        is_av = (code[fork] == av).astype(np.int64)
        pairs.add(ob.fork_id[part][fork], np.stack([is_av, 1 - is_av], axis=1))
        made = alloc & (code == vma)
        vmas.add(ob.owner[part][made], np.ones(int(made.sum()), dtype=np.int64))
    return Counts(tallies, tgids, pairs, vmas)


