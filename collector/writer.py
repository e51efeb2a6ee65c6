"""Stream decoded events to Parquet, bounded in memory.

Rows are buffered until a row group is full (ROW_GROUP rows) and then
written; the file is ``NAME.partial`` until ``close`` writes the footer with
the run metadata and renames it. Fork-path allocations are held back until
the ``fork`` row of their fork arrives, so that they can be charged to the
child (their ``owner_pid``); the ring buffer delivers a task's events in
order, so the wait is short.
"""

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import events, schema

ROW_GROUP = 65536
#: Nearly increasing integers: delta-encoded instead of dictionary-encoded.
DELTA_COLUMNS = ("ts_ns", "obj_id", "fork_id")
#: A fork-path allocation whose fork row has not come within this much event
#: time is written with an unknown owner (the fork failed).
FORK_WAIT_NS = 5_000_000_000


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
    """Writes one recording; ``add_events`` / ``add_user_rows``, then ``close``."""

    def __init__(self, path: str, t0_ns: int, raw_pointers: bool = False,
                 dtype: np.dtype = events.EVENT_DTYPE):
        self.path = path
        self.raw_pointers = raw_pointers
        self.dtype = dtype
        self.partial = path + ".partial"
        self.t0_ns = t0_ns
        self.rows = 0
        self._writer = pq.ParquetWriter(
            self.partial, schema.SCHEMA, compression="zstd", write_statistics=True,
            use_dictionary=[c for c in schema.SCHEMA.names if c not in DELTA_COLUMNS],
            column_encoding={c: "DELTA_BINARY_PACKED" for c in DELTA_COLUMNS})
        self._buffer: List[pa.RecordBatch] = []
        self._buffered = 0
        self._pending = np.empty(0, dtype=dtype)
        self._children: Dict[int, Tuple[int, int, int]] = {}   # fork_id -> (pid, tgid, ts)

    # -- kernel events ---------------------------------------------------
    def add_events(self, ev: np.ndarray) -> None:
        """Add decoded kernel events (events.EVENT_DTYPE), in arrival order."""
        if len(self._pending):
            ev = np.concatenate([self._pending, ev])
        if not len(ev):
            return
        forks = ev[ev["kind"] == events.EV_FORK]
        for fid, cpid, ctgid, ts in zip(forks["fork_id"].tolist(), forks["aux1"].tolist(),
                                        forks["aux2"].tolist(), forks["ts"].tolist()):
            if fid:
                self._children[fid] = (cpid, ctgid, ts)
        owner_pid, owner_tgid, known = self._owners(ev)
        waiting = ~known & (ev["ts"] + FORK_WAIT_NS > ev["ts"].max())
        cut = int(np.argmax(waiting)) if waiting.any() else len(ev)
        self._pending = ev[cut:].copy()
        if cut:
            self._emit(ev[:cut], owner_pid[:cut], owner_tgid[:cut], known[:cut])
        self._forget_children(int(ev["ts"].max()))

    def _owners(self, ev: np.ndarray):
        """Owner pid/tgid of each row and whether it is known."""
        owner_pid = ev["pid"].astype(np.int64)
        owner_tgid = ev["tgid"].astype(np.int64)
        known = np.ones(len(ev), dtype=bool)
        fork_path = (ev["kind"] == events.EV_ALLOC) & (ev["fork_id"] != 0)
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

    def flush(self) -> None:
        """Write buffered rows (row groups of at most ROW_GROUP rows)."""
        if not self._buffered:
            return
        table = pa.Table.from_batches(self._buffer, schema.SCHEMA)
        # Per-CPU batches arrive out of time order; a row group sorted by
        # time (stably) delta-encodes its timestamps and ids in ~1.5 bytes.
        table = table.take(pc.sort_indices(table, [("ts_ns", "ascending")]))
        self._writer.write_table(table, row_group_size=ROW_GROUP)
        self.rows += table.num_rows
        self._buffer, self._buffered = [], 0

    def close(self, metadata: Dict[str, object]) -> str:
        """Write everything held back, the footer and ``metadata``; return the path."""
        if len(self._pending):
            ev, self._pending = self._pending, np.empty(0, dtype=self.dtype)
            self._emit(ev, *self._owners(ev))
        self.flush()
        meta = dict(metadata, events=self.rows, schema_version=schema.SCHEMA_VERSION)
        self._writer.add_key_value_metadata(
            {schema.META_PREFIX + k: json.dumps(v) for k, v in meta.items()})
        self._writer.close()
        os.replace(self.partial, self.path)
        return self.path

    @property
    def buffered(self) -> int:
        """Rows not yet written to the file."""
        return self._buffered + len(self._pending)

    @property
    def held_back(self) -> int:
        """Fork-path rows waiting for their fork row."""
        return len(self._pending)

    def abort(self) -> Optional[str]:
        """Close without metadata after a failure; leaves the .partial file."""
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001 - best effort on an error path
            return None
        return self.partial
