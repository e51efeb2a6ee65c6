"""A recording's rows in replay order, a chunk at a time.

The replay order is ``ts_ns`` ascending, ties in file order (docs/schema.md:
``pos``). The collector sorts each row group, but row groups can overlap in
time (rows held back for a fork window are written with a later group), and
other writers need not sort at all. The reader holds the rows read but not
yet released and, after each record batch, releases, in replay order,
those no later row can precede: ``ts_ns`` at most the smallest ``ts_ns``
of the row group's later batches and of every later row group
(files.RecordingFiles.ts_floors; a later row with an equal ``ts_ns`` comes
later in the file, so after them). What it holds is the rows of the
overlap, not the file: a file in order is released batch by batch as read.

Only the rows of an event kind the caller reads are kept and numbered: the
rows of no kind (events of a kind the file has no values for) are counted in
``rows`` and left out of the positions, as they always were.
"""

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from anonscope import schema as S

from .codes import Codes
from .errors import EXIT_NOT_A_RUN, AnalyzerError

#: Rows per record batch while reading (bounds Arrow's decode buffers).
BATCH_ROWS = 1 << 18


#: Object rows a chunk consumer is given at a time.
CHUNK_ROWS = 1 << 18


def chunks(n):
    """Slices of ``n`` rows, CHUNK_ROWS at a time, in order."""
    for lo in range(0, n, CHUNK_ROWS):
        yield slice(lo, min(lo + CHUNK_ROWS, n))


class Chunk(NamedTuple):
    """Kept rows in replay order."""
    batch: object          # pa.RecordBatch or pa.Table of the columns read
    ts: np.ndarray         # their ts_ns (int64)
    kind: np.ndarray       # their kind code (int8, >= 0)
    is_alloc: np.ndarray   # event == "alloc"
    first: int             # the position of the first


class _Held(NamedTuple):
    """Kept rows read, not yet numbered: in file order, or sorted first."""
    batch: object          # pa.RecordBatch or pa.Table
    ts: np.ndarray
    kind: np.ndarray
    is_alloc: np.ndarray


class ReplayReader:
    """Chunks of the kept rows of ``src`` (a files.RecordingFiles) in replay
    order; ``kind_of_event``: event name -> kind code (events not in it: rows
    of no kind); ``on_read``, when given, is called with each batch's kept
    rows (batch, ts, kind, is_alloc) in file order, before any is held. After :meth:`chunks` is consumed: ``rows`` read,
    ``positions`` kept, ``end_ts`` the largest kept ``ts_ns`` (0: none)."""

    def __init__(self, src, path, columns, kind_of_event, on_read=None):
        self.src, self.path, self.columns = src, path, columns
        self.on_read = on_read
        self.kind_of_event = kind_of_event
        self.rows = self.positions = 0
        self._end = None
        self.events = Codes(S.EVENTS)
        self._ev_kind = []                        # event code -> kind code (-1: none)
        self._alloc = self.events.index["alloc"]

    @property
    def end_ts(self):
        """The largest ts_ns of the kept rows numbered so far (0: none)."""
        return 0 if self._end is None else self._end

    def _kinds(self, ecol):
        """A batch's ``event`` column -> (kind codes, is-alloc), one entry
        per row; refuses events outside schema v1."""
        ev = self.events.codes(ecol, np.int16)
        names = self.events.names
        if len(names) > self.events.known:
            bad = sorted(names[i] for i in set(np.unique(ev).tolist()) if i >= self.events.known)
            if bad:
                raise AnalyzerError("column event has value(s) " + ", ".join(map(repr, bad))
                                    + " not in schema v1", EXIT_NOT_A_RUN)
        while len(self._ev_kind) < len(names):
            self._ev_kind.append(self.kind_of_event.get(names[len(self._ev_kind)], -1))
        return np.array(self._ev_kind, dtype=np.int8)[ev], ev == self._alloc

    def _read(self, batch):
        """A record batch -> its kept rows as _Held (None when it has none)."""
        if not batch.num_rows:
            return None
        ix = batch.schema.get_field_index
        tcol, ecol = batch.column(ix("ts_ns")), batch.column(ix("event"))
        if tcol.null_count or ecol.null_count:
            raise AnalyzerError(f"{self.path}: rows with null ts_ns or event", EXIT_NOT_A_RUN)
        self.rows += batch.num_rows
        kind, alloc = self._kinds(ecol)
        ts = tcol.to_numpy()
        kept = kind >= 0
        if not kept.all():
            if not kept.any():
                return None
            batch, ts, kind, alloc = batch.filter(pa.array(kept)), ts[kept], kind[kept], alloc[kept]
        return _Held(batch, ts, kind, alloc)

    def _chunk(self, held):
        """Number the rows of ``held`` (in replay order) -> Chunk."""
        first = self.positions
        self.positions += len(held.ts)
        top = int(held.ts.max())
        self._end = top if self._end is None else max(self._end, top)
        return Chunk(held.batch, held.ts, held.kind, held.is_alloc, first)

    def chunks(self):
        """Yield Chunks, in replay order, every kept row once."""
        floors = self.src.ts_floors()
        held = None
        for i, batches in self.src.row_group_batches(BATCH_ROWS, self.columns):
            read = [r for r in map(self._read, batches) if r is not None]
            for rows in read if self.on_read else ():
                self.on_read(rows)
            after = floors[i + 1] if i + 1 < len(floors) else float("inf")
            for floor, rows in zip(_batch_floors(read, after), read):
                if held is None and _sorted(rows.ts) and rows.ts[-1] <= floor:
                    yield self._chunk(rows)       # in order: as read
                    continue
                held = _join(held, rows)
                out, held = _release(held, floor)
                if out is not None:
                    yield self._chunk(out)
        if held is not None:
            out, _ = _release(held, float("inf"))
            yield self._chunk(out)


def _batch_floors(read, after):
    """For each batch of one row group (its kept rows ``read``): the
    smallest ts_ns of the group's later batches and of the later row groups
    (``after``), the earliest time a row still to come can have."""
    floors, low = [], after
    for rows in reversed(read):
        floors.append(low)
        low = min(low, int(rows.ts.min()))
    return floors[::-1]


def _sorted(ts):
    return len(ts) < 2 or bool((ts[1:] >= ts[:-1]).all())


def _join(held, rows):
    """``rows`` after ``held`` (None: nothing held)."""
    table = table_of(rows.batch)
    if held is None:
        return _Held(table, rows.ts, rows.kind, rows.is_alloc)
    return _Held(pa.concat_tables([held.batch, table], promote_options="permissive"),
                 np.concatenate([held.ts, rows.ts]), np.concatenate([held.kind, rows.kind]),
                 np.concatenate([held.is_alloc, rows.is_alloc]))


def table_of(batch):
    """A record batch or table as a table."""
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def _take(held, idx):
    return _Held(table_of(held.batch).take(pa.array(idx)), held.ts[idx], held.kind[idx], held.is_alloc[idx])


def _release(held, floor):
    """(the held rows with ts_ns <= ``floor`` in replay order or None, the
    rest, sorted, or None)."""
    order = None if _sorted(held.ts) else np.argsort(held.ts, kind="stable")
    ts = held.ts if order is None else held.ts[order]
    n = int(np.searchsorted(ts, floor, side="right")) if floor != float("inf") else len(ts)
    if order is None and n == len(ts):
        return held, None
    order = np.arange(len(ts)) if order is None else order
    out = _take(held, order[:n]) if n else None
    rest = _take(held, order[n:]) if n < len(ts) else None
    return out, rest
