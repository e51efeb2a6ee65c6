"""Decode the BPF program's fixed-size event records into schema columns.

Records arrive as bytes, many at a time; they are decoded together with
numpy (no per-event Python work) and turned into Arrow arrays of the
schema in schema/ (anonscope.schema).
"""

from typing import Dict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from anonscope import schema

from . import abi

# The record layout and codes are collector/abi.py's.
EVENT_DTYPE, FPROBE_DTYPE = abi.EVENT_DTYPE, abi.FPROBE_DTYPE
Ev, Flag, Fn = abi.Ev, abi.Flag, abi.Fn
#: Path code -> schema path string.
PATH_NAMES = {int(code): name for code, name in abi.PATH_NAMES.items()}
PATH_DICTIONARY = sorted(set(PATH_NAMES.values()))


def _dictionary(codes: np.ndarray, names, code_to_index: np.ndarray) -> pa.DictionaryArray:
    """Dictionary array of ``names`` from C codes; code 0 (or unknown) is null."""
    idx = code_to_index[codes]
    mask = idx < 0
    return pa.DictionaryArray.from_arrays(pa.array(idx.astype(np.int8), mask=mask),
                                          pa.array(list(names), pa.string()))


def _lookup_table(size: int, mapping: Dict[int, int]) -> np.ndarray:
    table = np.full(size, -1, dtype=np.int16)
    for code, index in mapping.items():
        table[code] = index
    return table


_EVENT_INDEX = _lookup_table(256, {**{i + 1: i for i in range(8)},  # alloc..walk
                                   Ev.CENSUS: schema.EVENTS.index("census"),
                                   Ev.MOVE: schema.EVENTS.index("move")})
_OBJECT_INDEX = _lookup_table(256, {i + 1: i for i in range(len(schema.OBJECTS))})
_CALLER_INDEX = _lookup_table(256, {i + 1: i for i in range(len(schema.CALLERS))})
_LOCK_FUNC_INDEX = _lookup_table(256, {i + 1: i for i in range(len(schema.LOCK_FUNCS))})
_CALL_INDEX = _lookup_table(256, {i + 1: i for i in range(len(schema.CALL_FUNCS))})
_WALK_INDEX = _lookup_table(256, {i + 1: i for i in range(len(schema.WALK_KINDS))})
_MOVE_INDEX = _lookup_table(256, {i + 1: i for i in range(len(schema.MOVE_KINDS))})
_PATH_INDEX = _lookup_table(256, {c: PATH_DICTIONARY.index(n) for c, n in PATH_NAMES.items()})


def comm_array(comms: np.ndarray) -> pa.DictionaryArray:
    """Dictionary-encoded command names; undecodable bytes are replaced."""
    uniq, inverse = np.unique(comms, return_inverse=True)
    names = [u.decode("utf-8", "replace") for u in uniq]
    return pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), pa.array(names, pa.string()))


def _masked(values: np.ndarray, keep: np.ndarray, typ: pa.DataType) -> pa.Array:
    return pa.array(values, type=typ, mask=~keep)


def to_record_batch(ev: np.ndarray, t0_ns: int, owner_pid: np.ndarray,
                    owner_tgid: np.ndarray, owner_known: np.ndarray) -> pa.RecordBatch:
    """Arrow batch in schema.SCHEMA from decoded kernel events.

    ``owner_*`` are computed by the writer (fork-path objects belong to the
    child); ``owner_known`` is false where a fork never completed.
    """
    k = _Kinds(ev)
    cols = {**_task_columns(ev, t0_ns), **_object_columns(ev, k),
            **_owner_columns(ev, k, owner_pid, owner_tgid, owner_known),
            **_fork_exit_columns(ev, k), **_lock_columns(ev, k)}
    if k[Ev.MOVE].any():         # rare rows: the other batches get nulls (_schema_batch)
        cols.update(_move_columns(ev, k[Ev.MOVE]))
    cols["duration_ns"] = _exec_duration(ev, k)
    if "vma_id" in ev.dtype.names:
        cols.update(_function_probe_columns(ev, k, cols))
    return _schema_batch(cols, len(ev))


class _Kinds:
    """The row mask of each event kind in one batch, each computed once."""

    def __init__(self, ev):
        self._kind, self._masks = ev["kind"], {}

    def __getitem__(self, kind) -> np.ndarray:
        m = self._masks.get(kind)
        if m is None:
            m = self._masks[kind] = self._kind == kind
        return m


def _task_columns(ev, t0_ns) -> Dict[str, pa.Array]:
    """Columns every row has: time since ``t0_ns``, event, CPU and task."""
    return {
        "ts_ns": pa.array(ev["ts"].astype(np.int64) - t0_ns, pa.int64()),
        "event": _dictionary(ev["kind"], schema.EVENTS, _EVENT_INDEX),
        "cpu": pa.array(ev["cpu"].astype(np.int16), pa.int16()),
        "pid": pa.array(ev["pid"].astype(np.int32), pa.int32()),
        "tgid": pa.array(ev["tgid"].astype(np.int32), pa.int32()),
        "comm": comm_array(ev["comm"]),
    }


def _object_columns(ev, k) -> Dict[str, pa.Array]:
    """Columns of alloc/free rows (and the object of census rows, the
    obj_id of their anon_vma rows; preexisting also on lock rows)."""
    is_alloc, is_free, is_lock, is_census = k[Ev.ALLOC], k[Ev.FREE], k[Ev.LOCK], k[Ev.CENSUS]
    is_obj = is_alloc | is_free
    return {
        "object": _dictionary(np.where(is_obj | is_census, ev["object"], 0), schema.OBJECTS, _OBJECT_INDEX),
        "path": _dictionary(np.where(is_obj, ev["path"], 0), PATH_DICTIONARY, _PATH_INDEX),
        "caller": _dictionary(np.where(is_alloc, ev["caller"], 0), schema.CALLERS, _CALLER_INDEX),
        "obj_id": _masked(ev["obj_id"].astype(np.int64),
                          is_obj | (is_census & (ev["object"] == 1)), pa.int64()),
        "preexisting": _masked((ev["flags"] & Flag.PREEXISTING) != 0, is_free | is_lock, pa.bool_()),
        "bytes": _masked(ev["aux1"].astype(np.int32), is_alloc, pa.int32()),
    }


def _owner_columns(ev, k, owner_pid, owner_tgid, owner_known) -> Dict[str, pa.Array]:
    """The owner of alloc rows where known (the writer's ``owner_*``) and,
    on move rows, the process whose pages moved (aux1; 0: not known)."""
    is_alloc, is_move = k[Ev.ALLOC], k[Ev.MOVE]
    return {
        "owner_pid": _masked(owner_pid.astype(np.int32), is_alloc & owner_known, pa.int32()),
        "owner_tgid": _masked(np.where(is_move, ev["aux1"], owner_tgid).astype(np.int32),
                              (is_alloc & owner_known) | (is_move & (ev["aux1"] != 0)), pa.int32()),
    }


def _fork_exit_columns(ev, k) -> Dict[str, pa.Array]:
    """Columns of fork rows (the fork id also on alloc rows made inside a
    fork) and of exit rows (group_dead, where the probe knew it)."""
    flags = ev["flags"]
    is_fork, is_exit = k[Ev.FORK], k[Ev.EXIT]
    has_fork_id = (ev["fork_id"] != 0) & (k[Ev.ALLOC] | is_fork)
    return {
        "fork_id": _masked(ev["fork_id"].astype(np.int64), has_fork_id, pa.int64()),
        "child_pid": _masked(ev["aux1"].astype(np.int32), is_fork, pa.int32()),
        "child_tgid": _masked(ev["aux2"].astype(np.int32), is_fork, pa.int32()),
        "shares_mm": _masked((flags & Flag.SHARES_MM) != 0, is_fork, pa.bool_()),
        "group_dead": _masked((flags & Flag.GROUP_DEAD) != 0,
                              is_exit & ((flags & Flag.GROUP_DEAD_KNOWN) != 0), pa.bool_()),
    }


def _lock_columns(ev, k) -> Dict[str, pa.Array]:
    """Columns of lock rows: the root anon_vma whose rwsem was waited for
    (obj_id), the wait (fork_id), read or write, and the locking function
    (caller)."""
    is_lock = k[Ev.LOCK]
    return {
        "lock_id": _masked(ev["obj_id"].astype(np.int64), is_lock, pa.int64()),
        "wait_ns": _masked(ev["fork_id"].astype(np.int64), is_lock, pa.int64()),
        "lock_write": _masked((ev["flags"] & Flag.LOCK_WRITE) != 0, is_lock, pa.bool_()),
        "lock_func": _dictionary(np.where(is_lock, ev["caller"], 0), schema.LOCK_FUNCS, _LOCK_FUNC_INDEX),
    }


def _exec_duration(ev, k) -> pa.Array:
    """``duration_ns`` of exec rows that carry one (in fork_id)."""
    is_exec = k[Ev.EXEC] & (ev["fork_id"] != 0)     # ns from execve() entry
    return _masked(ev["fork_id"].astype(np.int64), is_exec, pa.int64())


def _function_probe_columns(ev, k, cols) -> Dict[str, pa.Array]:
    """Columns of records with the function-probe fields (vma_id and on):
    those of call and walk rows, and of census rows in this batch, merged
    with the exec and move rows' columns already in ``cols``."""
    flags = ev["flags"]
    fp = _fprobe_columns(ev, k[Ev.ALLOC] | k[Ev.FREE], k[Ev.CALL], k[Ev.WALK], flags)
    for name in ("duration_ns", "vm_start", "vm_end"):   # exec, move rows: in cols
        if name in cols:
            fp[name] = pc.coalesce(fp[name], cols[name])
    is_census = k[Ev.CENSUS]
    if is_census.any():  # once per run, at start: not worth the work on other batches
        for name, arr in _census_columns(ev, is_census, flags).items():
            # columns census rows share with call/walk rows: each row has one kind
            fp[name] = pc.coalesce(fp[name], arr) if name in fp else arr
    return fp


def _schema_batch(cols, n) -> pa.RecordBatch:
    """``cols`` as a batch of ``n`` rows in schema.SCHEMA's column order;
    the schema's columns not in ``cols`` are all null."""
    arrays = [cols[name] if name in cols else pa.nulls(n, schema.SCHEMA.field(name).type)
              for name in schema.SCHEMA.names]
    return pa.RecordBatch.from_arrays(arrays, schema=schema.SCHEMA)


def _move_columns(ev, is_move) -> Dict[str, pa.Array]:
    """Columns of move rows (v7): the kind, and the range where known (the
    record's obj_id and fork_id hold start and length)."""
    start, length = ev["obj_id"].astype(np.int64), ev["fork_id"].astype(np.int64)
    ranged = is_move & (start != 0)
    return {"move_kind": _dictionary(np.where(is_move, ev["path"], 0), schema.MOVE_KINDS, _MOVE_INDEX),
            "vm_start": _masked(start, ranged, pa.int64()),
            "vm_end": _masked(start + length, ranged, pa.int64())}


def _fprobe_columns(ev, is_obj, is_call, is_walk, flags) -> Dict[str, pa.Array]:
    """Columns only function probes fill (docs/schema.md, version 3)."""
    i64 = pa.int64()
    vma = ev["vma_id"].astype(np.int64)
    src = ev["src_vma_id"].astype(np.int64)
    dur = ev["duration"].astype(np.int64)
    return {
        "vma_id": _masked(vma, (is_obj & (vma != 0)) | is_call, i64),
        "src_vma_id": _masked(src, src != 0, i64),
        "mm_id": _masked(ev["mm_id"].astype(np.int64), is_call, i64),
        "vm_start": _masked(ev["vm_start"].astype(np.int64), is_call, i64),
        "vm_end": _masked(ev["vm_end"].astype(np.int64), is_call, i64),
        "vm_pgoff": _masked(ev["vm_pgoff"].astype(np.int64), is_call | is_walk, i64),
        "vma_file": _masked((flags & Flag.FILE) != 0, is_call, pa.bool_()),
        "func": _dictionary(np.where(is_call, ev["path"], 0), schema.CALL_FUNCS, _CALL_INDEX),
        "reused": _masked((flags & Flag.REUSED) != 0, is_call & (ev["path"] <= 2), pa.bool_()),
        "call_objects": _masked(ev["count"].astype(np.int32), is_call, pa.int32()),
        "anon_pages": _masked(ev["count2"].astype(np.int64), is_call & (ev["path"] == Fn.COPY), i64),
        "duration_ns": _masked(dur, is_call | is_walk, i64),
        "walk_kind": _dictionary(np.where(is_walk, ev["caller"], 0), schema.WALK_KINDS, _WALK_INDEX),
        "folio_order": _masked(ev["aux1"].astype(np.int16), is_walk, pa.int16()),
        "avcs_visited": _masked(ev["count"].astype(np.int32), is_walk, pa.int32()),
        "vmas_visited": _masked(ev["count2"].astype(np.int32), is_walk, pa.int32()),
        "walk_locked": _masked((flags & Flag.LOCKED) != 0, is_walk, pa.bool_()),
        "anon_vma_id": _masked(ev["obj_id"].astype(np.int64), is_walk & (ev["obj_id"] != 0), i64),
    }


def _census_columns(ev, is_census, flags) -> Dict[str, pa.Array]:
    """Columns of census rows (docs/schema.md#census, version 4): VMA rows
    (object vm_area_struct) share the call rows' VMA columns; anon_vma rows
    (object anon_vma) have obj_id, root_id and the two counters."""
    i64, i32 = pa.int64(), pa.int32()
    vma_row = is_census & (ev["object"] == 3)
    av_row = is_census & (ev["object"] == 1)
    children, active = ev["aux1"], ev["aux2"]
    return {
        "vma_id": _masked(ev["vma_id"].astype(np.int64), vma_row, i64),
        "mm_id": _masked(ev["mm_id"].astype(np.int64), vma_row, i64),
        "vm_start": _masked(ev["vm_start"].astype(np.int64), vma_row, i64),
        "vm_end": _masked(ev["vm_end"].astype(np.int64), vma_row, i64),
        "vm_pgoff": _masked(ev["vm_pgoff"].astype(np.int64), vma_row, i64),
        "vma_file": _masked((flags & Flag.FILE) != 0, vma_row, pa.bool_()),
        "anon_vma_id": _masked(ev["obj_id"].astype(np.int64), vma_row, i64),
        "chain_avcs": _masked(ev["count"].astype(np.int32), vma_row, i32),
        "chain_truncated": _masked((flags & Flag.TRUNCATED) != 0, vma_row, pa.bool_()),
        "root_id": _masked(ev["fork_id"].astype(np.int64), av_row & (ev["fork_id"] != 0), i64),
        "num_children": _masked(children.astype(np.int32), av_row & (children != abi.NOT_IN_KERNEL), i32),
        "num_active_vmas": _masked(active.astype(np.int32), av_row & (active != abi.NOT_IN_KERNEL), i32),
    }


def user_rows(rows: list) -> pa.RecordBatch:
    """Arrow batch in schema.SCHEMA from rows made in user space (slab, lost):
    a list of dicts with some of the schema's columns."""
    cols = []
    for f in schema.SCHEMA:
        values = [r.get(f.name) for r in rows]
        if pa.types.is_dictionary(f.type):
            cols.append(pa.array(values, pa.string()).dictionary_encode().cast(f.type))
        else:
            cols.append(pa.array(values, f.type))
    return pa.RecordBatch.from_arrays(cols, schema=schema.SCHEMA)
