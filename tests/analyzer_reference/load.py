"""Read a recording (schema v1, docs/schema.md) into per-event-kind frames.

The file is read in record batches with only the columns each event kind
needs, so a large system-wide recording never sits in memory as one wide
table. Every frame carries ``pos``: the row's place in the replay order
(``ts_ns`` ascending, ties in file order), which all models compare.
"""

import json
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from anonscope.collector import schema as S

from .errors import EXIT_NEWER_SCHEMA, EXIT_NOT_A_RUN, EXIT_UNREADABLE, AnalyzerError

#: Metadata keys (without the prefix) the report cannot do without.
REQUIRED_METADATA = ("schema_version", "kernel_release", "arch", "backend",
                     "duration_s", "events", "lost", "object_sizes")

#: Columns read per event kind (``ts_ns`` and ``event`` always).
KIND_COLUMNS = {
    "object": ("pid", "tgid", "comm", "object", "path", "caller", "obj_id",
               "preexisting", "owner_tgid", "fork_id"),
    "fork": ("pid", "tgid", "comm", "child_pid", "child_tgid", "shares_mm",
             "fork_id"),
    "exit": ("pid", "tgid", "group_dead"),
    "exec": ("pid", "tgid", "comm"),
    "slab": ("slab_cache", "slab_active", "slab_total", "slab_objsize",
             "slab_aliases"),
    "lost": ("lost_source", "count"),
}
KIND_EVENTS = {"object": ("alloc", "free"), "fork": ("fork",),
               "exit": ("exit",), "exec": ("exec",), "slab": ("slab",),
               "lost": ("lost",)}

#: Allowed values of the string columns (schema.py is the contract).
ALLOWED = {
    "event": set(S.EVENTS),
    "object": set(S.OBJECTS),
    "path": set(S.ALLOC_PATHS) | set(S.VMA_ALLOC_PATHS) | set(S.FREE_PATHS),
    "caller": set(S.CALLERS),
}

_INT_FILL = -1


@dataclass
class Recording:
    """One loaded run. Frames are sorted by ``pos`` (replay order)."""
    path: str
    meta: dict
    rows: int
    objects: pd.DataFrame
    forks: pd.DataFrame
    exits: pd.DataFrame
    execs: pd.DataFrame
    slab: pd.DataFrame
    lost: pd.DataFrame
    end_ts_ns: int = 0
    notes: list = field(default_factory=list)

    @property
    def schema_version(self):
        return self.meta["schema_version"]

    def object_size(self, obj):
        """(bytes per object, source) from metadata object_sizes."""
        sizes = self.meta.get("object_sizes") or {}
        entry = sizes.get(obj) or {}
        if isinstance(entry, dict):
            if entry.get("slab_size"):
                return int(entry["slab_size"]), "slab_size"
            if entry.get("btf_size"):
                return int(entry["btf_size"]), "btf_size"
        return 0, "missing"


def read_metadata(pf):
    """Decode the anonscope.* key-value metadata; raise when not a run."""
    # the collector writes the footer's key-value metadata at the end of the
    # run (docs/schema.md); files written with Arrow schema metadata have it too
    raw = dict(pf.schema_arrow.metadata or {})
    raw.update(pf.metadata.metadata or {})
    meta = {}
    for key, value in raw.items():
        key = key.decode("utf-8", "replace")
        if not key.startswith(S.META_PREFIX):
            continue
        name = key[len(S.META_PREFIX):]
        try:
            meta[name] = json.loads(value.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AnalyzerError(
                f"metadata key {key} is not valid JSON ({exc})", EXIT_NOT_A_RUN) from exc
    if "schema_version" not in meta:
        raise AnalyzerError(
            "not an anonscope recording: no anonscope.schema_version metadata",
            EXIT_NOT_A_RUN)
    version = meta["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise AnalyzerError(
            f"anonscope.schema_version is {version!r}, expected a positive integer",
            EXIT_NOT_A_RUN)
    if version > S.SCHEMA_VERSION:
        raise AnalyzerError(
            f"recording has schema version {version}, this anonanalyze reads "
            f"up to {S.SCHEMA_VERSION}: upgrade anonscope", EXIT_NEWER_SCHEMA)
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise AnalyzerError(
            "recording metadata lacks " + ", ".join(S.META_PREFIX + k for k in missing),
            EXIT_NOT_A_RUN)
    if not isinstance(meta["lost"], dict):
        raise AnalyzerError("metadata anonscope.lost is not an object", EXIT_NOT_A_RUN)
    if not isinstance(meta["object_sizes"], dict):
        raise AnalyzerError("metadata anonscope.object_sizes is not an object",
                            EXIT_NOT_A_RUN)
    return meta


def _check_columns(pf):
    names = set(pf.schema_arrow.names)
    needed = {"ts_ns", "event"}
    for cols in KIND_COLUMNS.values():
        needed.update(cols)
    missing = sorted(needed - names)
    if missing:
        raise AnalyzerError("recording lacks column(s) " + ", ".join(missing),
                            EXIT_NOT_A_RUN)
    for name in needed:
        want = S.COLUMNS[name][0]
        got = pf.schema_arrow.field(name).type
        if pa.types.is_dictionary(want):
            ok = (pa.types.is_dictionary(got) and pa.types.is_string(got.value_type)) \
                or pa.types.is_string(got) or pa.types.is_large_string(got)
        elif pa.types.is_integer(want):
            ok = pa.types.is_integer(got)
        else:
            ok = got == want
        if not ok:
            raise AnalyzerError(f"column {name} has type {got}, schema v1 says {want}",
                                EXIT_NOT_A_RUN)


def _strings(arr):
    """Arrow string or dictionary column -> dictionary array (for pandas categorical)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    return arr


def _to_frame(table, kind):
    """Filtered arrow table of one kind -> pandas frame with filled nulls."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        typ = S.COLUMNS[name][0] if name in S.COLUMNS else col.type
        if name == "__row":
            out[name] = col.to_numpy()
        elif pa.types.is_dictionary(typ):
            ser = col.to_pandas()
            if not isinstance(ser.dtype, pd.CategoricalDtype):
                ser = ser.astype("category")
            out[name] = pd.Categorical(ser)
        elif pa.types.is_boolean(typ):
            # null -> pandas NA-free: keep a separate "known" notion where needed
            out[name] = col.to_pandas().astype("boolean")
        else:
            filled = pc.fill_null(col, _INT_FILL)
            out[name] = filled.to_numpy()
    return pd.DataFrame(out)


def _check_values(frame, name):
    if name not in frame or name not in ALLOWED:
        return
    cats = set(frame[name].cat.categories) if len(frame) else set()
    used = set(frame[name].dropna().unique()) if cats - ALLOWED[name] else set()
    bad = sorted(v for v in used if v not in ALLOWED[name])
    if bad:
        raise AnalyzerError(f"column {name} has value(s) {', '.join(map(repr, bad))} "
                            f"not in schema v1", EXIT_NOT_A_RUN)


def load(path):
    """Read ``path`` into a :class:`Recording`; raise AnalyzerError on bad input."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AnalyzerError(f"{path}: no such file", EXIT_UNREADABLE)
    if os.path.isdir(path):
        raise AnalyzerError(f"{path}: is a directory, not a recording", EXIT_UNREADABLE)
    if os.path.getsize(path) == 0:
        raise AnalyzerError(f"{path}: empty file", EXIT_UNREADABLE)
    hint = " (a .partial file from a killed collector has no footer)" \
        if path.endswith(".partial") else ""
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise AnalyzerError(f"{path}: not a readable Parquet file{hint}: "
                            f"{_one_line(exc)}", EXIT_UNREADABLE) from exc
    meta = read_metadata(pf)
    _check_columns(pf)
    try:
        return _read(pf, path, meta)
    except AnalyzerError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise AnalyzerError(f"{path}: cannot read the data (truncated or corrupt?): "
                            f"{_one_line(exc)}", EXIT_UNREADABLE) from exc


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read(pf, path, meta):
    columns = ["ts_ns", "event"] + sorted({c for cols in KIND_COLUMNS.values() for c in cols})
    parts = {kind: [] for kind in KIND_COLUMNS}
    offset = 0
    for batch in pf.iter_batches(batch_size=262144, columns=columns):
        n = batch.num_rows
        if n == 0:
            continue
        if batch.column(batch.schema.get_field_index("ts_ns")).null_count or \
                batch.column(batch.schema.get_field_index("event")).null_count:
            raise AnalyzerError(f"{path}: rows with null ts_ns or event", EXIT_NOT_A_RUN)
        event = _strings(batch.column(batch.schema.get_field_index("event")))
        names = event.dictionary.to_pylist()
        bad = set(names) - ALLOWED["event"]
        codes = event.indices.to_numpy(zero_copy_only=False)
        if bad:
            used = {names[i] for i in np.unique(codes)}
            if used & bad:
                raise AnalyzerError(
                    "column event has value(s) " + ", ".join(map(repr, sorted(used & bad)))
                    + " not in schema v1", EXIT_NOT_A_RUN)
        rowidx = pa.array(np.arange(offset, offset + n, dtype=np.int64))
        for kind, events in KIND_EVENTS.items():
            wanted = [i for i, v in enumerate(names) if v in events]
            if not wanted:
                continue
            mask = np.isin(codes, wanted)
            if not mask.any():
                continue
            cols = ["ts_ns"] + (["event"] if kind == "object" else []) + list(KIND_COLUMNS[kind])
            sub = pa.Table.from_batches([batch.select(cols)]).append_column("__row", rowidx)
            parts[kind].append(sub.filter(pa.array(mask)))
        offset += n

    frames = {}
    for kind, tables in parts.items():
        cols = ["ts_ns"] + (["event"] if kind == "object" else []) + list(KIND_COLUMNS[kind])
        if tables:
            table = pa.concat_tables(tables, promote_options="permissive")
        else:
            table = pa.schema([pa.field(c, S.COLUMNS[c][0]) for c in cols]
                              + [pa.field("__row", pa.int64())]).empty_table()
        parts[kind] = None
        frames[kind] = _to_frame(table, kind)
        del table

    # replay order: ts_ns, then file order; pos is the rank in that order
    all_ts = np.concatenate([f["ts_ns"].to_numpy() for f in frames.values()])
    all_row = np.concatenate([f["__row"].to_numpy() for f in frames.values()])
    order = np.lexsort((all_row, all_ts))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    del all_row, order
    start = 0
    for kind, frame in frames.items():
        n = len(frame)
        frame["pos"] = rank[start:start + n]
        start += n
        frames[kind] = frame.drop(columns="__row").sort_values(
            "pos", kind="stable").reset_index(drop=True)
    end_ts = int(all_ts.max()) if len(all_ts) else 0
    del rank, all_ts

    objects = frames["object"]
    for name in ("object", "path", "caller", "event"):
        _check_values(objects, name)
    objects["is_alloc"] = (objects["event"] == "alloc").to_numpy()
    objects = objects.drop(columns="event")
    # owner: owner_tgid, the task's tgid when null
    owner = objects["owner_tgid"].to_numpy().copy()
    tg = objects["tgid"].to_numpy()
    owner[owner == _INT_FILL] = tg[owner == _INT_FILL]
    objects["owner"] = owner
    objects["preexisting"] = objects["preexisting"].fillna(False).astype(bool)

    rec = Recording(path=path, meta=meta, rows=offset, objects=objects,
                    forks=frames["fork"], exits=frames["exit"], execs=frames["exec"],
                    slab=frames["slab"], lost=frames["lost"], end_ts_ns=end_ts)
    if offset == 0:
        rec.notes.append("the recording has no rows")
    return rec
