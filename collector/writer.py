"""Stream decoded events to Parquet in committed segments, bounded in memory.

While a run records, ``NAME.partial/`` is a directory of segments
(docs/schema.md, "Segments"): rows are buffered until a row group is full
(ROW_GROUP rows) and written to the open segment; ``commit`` closes it with
the metadata known so far (its footer), fsyncs it and renames it into place,
so that a killed collector leaves every committed segment readable.
``close`` commits the last segment with the final metadata and joins the
segments into ``NAME`` (segments.join). Fork-path allocations are held back
until the ``fork`` row of their fork arrives, so that they can be charged to
the child (their ``owner_pid``); the wait is at most FORK_WAIT_NS.
"""

import json
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from anonscope import schema

from . import abi, events, segments

ROW_GROUP = 65536
#: Nearly increasing integers: delta-encoded instead of dictionary-encoded.
DELTA_COLUMNS = ("ts_ns", "obj_id", "fork_id")
#: How every segment and the joined recording are written.
#: (Page checksums let a reader tell a damaged page from data.)
PARQUET_OPTIONS = dict(
    compression="zstd", write_statistics=True, write_page_checksum=True,
    use_dictionary=[c for c in schema.SCHEMA.names if c not in DELTA_COLUMNS],
    column_encoding={c: "DELTA_BINARY_PACKED" for c in DELTA_COLUMNS})
#: A fork-path allocation whose fork row has not come within this much time
#: (CLOCK_MONOTONIC, the events' clock) is written with an unknown owner (the
#: fork failed). Batches reach user space within 0.2 s (FLUSH_NS, FLUSH_HZ).
FORK_WAIT_NS = 1_000_000_000


#: Kernel addresses on 64-bit Linux (x86_64, arm64) have the top bit set;
#: per-run ids, (sequence << 12) | cpu, never come near it.
KERNEL_ADDRESS_MIN = 1 << 63


class PointerLeak(Exception):
    """An id column holds what looks like a kernel address."""


def check_no_pointers(ev: np.ndarray) -> None:
    """Refuse to write kernel addresses as ids (the kernel side makes per-run
    ids unless --raw-pointers); a failure here is a bug, never data."""
    for col in ("obj_id", "fork_id", "vma_id", "src_vma_id", "mm_id"):  # fork_id: wait_ns on lock rows
        if col in ev.dtype.names and len(ev) and int(ev[col].max()) >= KERNEL_ADDRESS_MIN:
            raise PointerLeak(f"{col} holds a kernel address; refusing to write it")


class RecordingWriter:
    """Writes one recording: ``add_events`` / ``add_user_rows``, ``commit``
    now and then, and ``close`` (or ``abort`` after a failure)."""

    def __init__(self, path: str, t0_ns: int, raw_pointers: bool = False,
                 dtype: np.dtype = events.EVENT_DTYPE):
        self.path = path
        self.raw_pointers = raw_pointers
        self.dtype = dtype
        self.partial = segments.partial_dir(path)
        self.t0_ns = t0_ns
        self.rows = 0                       # rows in committed segments
        self.segments = segments.SegmentDir(self.partial, create=True)
        self._writer: Optional[pq.ParquetWriter] = None
        self._segment_rows = 0
        self._buffer: List[pa.RecordBatch] = []
        self._buffered = 0
        self._pending = np.empty(0, dtype=dtype)
        self._children: Dict[int, Tuple[int, int, int]] = {}   # fork_id -> (pid, tgid, ts)

    # -- kernel events ---------------------------------------------------
    def add_events(self, ev: np.ndarray, now_ns: Optional[int] = None) -> None:
        """Add decoded kernel events (events.EVENT_DTYPE), in arrival order.
        ``now_ns``: CLOCK_MONOTONIC now (default: the newest event's time)."""
        if len(self._pending):
            ev = np.concatenate([self._pending, ev])
        if not len(ev):
            return
        forks = ev[ev["kind"] == abi.Ev.FORK]
        for fid, cpid, ctgid, ts in zip(forks["fork_id"].tolist(), forks["aux1"].tolist(),
                                        forks["aux2"].tolist(), forks["ts"].tolist()):
            if fid:
                self._children[fid] = (cpid, ctgid, ts)
        now = int(ev["ts"].max()) if now_ns is None else max(now_ns, int(ev["ts"].max()))
        owner_pid, owner_tgid, known = self._owners(ev)
        waiting = ~known & (ev["ts"].astype(np.int64) + FORK_WAIT_NS > now)
        cut = int(np.argmax(waiting)) if waiting.any() else len(ev)
        self._pending = ev[cut:].copy()
        if cut:
            self._emit(ev[:cut], owner_pid[:cut], owner_tgid[:cut], known[:cut])
        self._forget_children(now)

    def _owners(self, ev: np.ndarray):
        """Owner pid/tgid of each row and whether it is known."""
        owner_pid = ev["pid"].astype(np.int64)
        owner_tgid = ev["tgid"].astype(np.int64)
        known = np.ones(len(ev), dtype=bool)
        fork_path = (ev["kind"] == abi.Ev.ALLOC) & (ev["fork_id"] != 0)
        if fork_path.any():
            idx = np.flatnonzero(fork_path)
            fids = ev["fork_id"][idx]
            uniq, inverse = np.unique(fids, return_inverse=True)
            child = np.array([self._children.get(f, (-1, -1, 0))[:2] for f in uniq.tolist()],
                             dtype=np.int64).reshape(-1, 2)
            owner_pid[idx] = child[inverse, 0]
            owner_tgid[idx] = child[inverse, 1]
            known[idx] = child[inverse, 0] >= 0
        return owner_pid, owner_tgid, known

    def _forget_children(self, now_ns: int) -> None:
        if len(self._children) > 4096:
            old = [f for f, (_, _, ts) in self._children.items() if ts + 2 * FORK_WAIT_NS < now_ns]
            for f in old:
                del self._children[f]

    def _emit(self, ev, owner_pid, owner_tgid, known) -> None:
        if not self.raw_pointers:
            check_no_pointers(ev)
        self._append(events.to_record_batch(ev, self.t0_ns, owner_pid, owner_tgid, known))

    def add_census(self, ev: np.ndarray) -> None:
        """Add census rows made by a program of their own (events.FPROBE_DTYPE
        in any run): they need no fork owner, so they are written at once."""
        if len(ev):
            self._emit(ev, ev["pid"], ev["tgid"], np.ones(len(ev), dtype=bool))

    # -- user-space rows -------------------------------------------------
    def add_user_rows(self, rows: list) -> None:
        """Add rows made in user space (dicts of schema columns)."""
        if rows:
            self._append(events.user_rows(rows))

    # -- output ----------------------------------------------------------
    def _append(self, batch: pa.RecordBatch) -> None:
        self._buffer.append(batch)
        self._buffered += batch.num_rows
        if self._buffered >= ROW_GROUP:
            self.flush()

    def _open_segment(self) -> pq.ParquetWriter:
        return pq.ParquetWriter(self.segments.open_next(), schema.SCHEMA, **PARQUET_OPTIONS)

    def flush(self) -> None:
        """Write buffered rows into the open segment (row groups of at most
        ROW_GROUP rows); they are on disk for good at the next commit."""
        if not self._buffered:
            return
        table = pa.Table.from_batches(self._buffer, schema.SCHEMA)
        # Per-CPU batches arrive out of time order; a row group sorted by
        # time (stably) delta-encodes its timestamps and ids in ~1.5 bytes.
        table = table.take(pc.sort_indices(table, [("ts_ns", "ascending")]))
        if self._writer is None:
            self._writer = self._open_segment()
        self._writer.write_table(table, row_group_size=ROW_GROUP)
        self._segment_rows += table.num_rows
        self._buffer, self._buffered = [], 0

    def commit(self, metadata: Dict[str, object], final: bool = False) -> None:
        """Write what is buffered and close the open segment with
        ``metadata`` (what is known so far) in its footer; once this returns,
        the segment survives a crash of the collector or of the machine."""
        self.flush()
        if self._writer is None:
            if not final:
                return                      # nothing new since the last commit
            self._writer = self._open_segment()   # the final metadata needs a footer
        index = self.segments.count + 1
        meta = dict(metadata, events=self.rows + self._segment_rows, schema_version=schema.SCHEMA_VERSION,
                    complete=final, segment={"index": index, "rows": self._segment_rows, "final": final})
        self._writer.add_key_value_metadata({schema.META_PREFIX + k: json.dumps(v) for k, v in meta.items()})
        self._writer.close()
        self._writer = None
        self.segments.commit()
        self.rows += self._segment_rows
        self._segment_rows = 0

    def close(self, metadata: Dict[str, object]) -> str:
        """Write everything held back, commit the last segment with the final
        ``metadata``, and join the segments into the recording; its path."""
        if len(self._pending):
            ev, self._pending = self._pending, np.empty(0, dtype=self.dtype)
            self._emit(ev, *self._owners(ev))
        self.commit(metadata, final=True)
        return segments.join(self.partial, self.path, PARQUET_OPTIONS)

    @property
    def buffered(self) -> int:
        """Rows not yet in a committed segment."""
        return self._buffered + len(self._pending) + self._segment_rows

    @property
    def held_back(self) -> int:
        """Fork-path rows waiting for their fork row."""
        return len(self._pending)

    def abort(self) -> Optional[str]:
        """After a failure: drop the segment being written, keep the committed
        ones; the partial directory when it holds any (it reads as a
        recording cut short), else None (and nothing is left behind)."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # noqa: BLE001 - best effort on an error path (disk full, say)
                pass
            self._writer = None
        return self.segments.abandon()
