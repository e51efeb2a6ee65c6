"""Read a recording (docs/schema.md) for the models.

The ``alloc``/``free`` rows (nearly all of a recording) become numpy
columns in replay order (:class:`ObjectRows`: codes instead of strings, -1
for nulls); the few rows of the other kinds become small pandas frames. The
file is read once, in record batches of the columns the analyzer uses, so a
large recording never sits in memory as one wide table (docs/performance.md,
"Analyzer (P3)"). Every row carries ``pos``: its place in the replay order
(``ts_ns`` ascending, ties in file order), which all models compare.

Rows of later schema versions are read only when the file has them (Parquet
column statistics say whether a column is null throughout): ``lock`` rows
(v2), ``call`` and ``walk`` rows and the object rows' ``vma_id`` /
``src_vma_id`` (v3, function probes). A tracepoint-only recording reads the
same columns as before.
"""

import json
import os
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from anonscope import schema as S

from . import files, stream
from .codes import Codes
from .errors import EXIT_NEWER_SCHEMA, EXIT_NOT_A_RUN, EXIT_UNREADABLE, AnalyzerError
from .order import unique

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
               "lost": ("lost",), "lock": ("lock",), "call": ("call",),
               "walk": ("walk",), "census": ("census",), "mark": ("mark",), "move": ("move",)}

#: Kinds of later schema versions (v2: lock, v3: call and walk, v4: census, v6: mark, v7: move), read only
#: when the file has rows of them: their key column exists and is not null
#: in every row group (Parquet column statistics). Tracepoint-only recordings
#: then read exactly the columns of KIND_COLUMNS.
OPTIONAL_KIND_COLUMNS = {
    "lock": ("pid", "tgid", "comm", "lock_id", "wait_ns", "lock_write", "lock_func",
             "preexisting"),
    "call": ("pid", "tgid", "func", "vma_id", "src_vma_id", "mm_id", "reused",
             "call_objects", "duration_ns", "vma_file", "anon_pages", "vm_start", "vm_end", "vm_pgoff"),
    "walk": ("pid", "tgid", "comm", "walk_kind", "folio_order", "duration_ns", "vm_pgoff",
             "avcs_visited", "vmas_visited", "walk_locked", "anon_vma_id"),
    "census": ("pid", "tgid", "comm", "object", "obj_id", "vma_id", "mm_id", "vm_start", "vm_end", "vm_pgoff",
               "vma_file", "anon_vma_id", "chain_avcs", "chain_truncated", "root_id",
               "num_children", "num_active_vmas"),
    "mark": ("mark_label",),
    "move": ("pid", "tgid", "comm", "move_kind", "owner_tgid", "vm_start", "vm_end"),
}
OPTIONAL_KEY = {"lock": "lock_id", "call": "func", "walk": "walk_kind", "census": "chain_avcs",
                "mark": "mark_label", "move": "move_kind"}

#: Columns a later version added to a kind of an earlier one: read when the
#: file has them, else null (filled like any null).
LATER_COLUMNS = {"anon_pages": 4}

#: v8 slab rows: /proc/meminfo's denominators (kB) read with the sample.
MEMINFO_COLUMNS = ("mem_total_kb", "mem_slab_kb", "mem_sunreclaim_kb", "mem_page_tables_kb")

#: Columns later versions added to a base kind: read when the file has the
#: column, else filled with -1 (v5: exec rows' duration_ns, the time from
#: execve() entry to the exec tracepoint; v8: MEMINFO_COLUMNS).
LATER_KIND_COLUMNS = {"exec": ("duration_ns",), "slab": ("duration_ns", "slab_cpu_partial") + MEMINFO_COLUMNS}

#: Function-probe columns of the object rows (schema v3), read when present
#: and not all null: the VMA each anon_vma/AVC was made or freed for.
OBJECT_VMA_COLUMNS = ("vma_id", "src_vma_id")

#: Allowed values of the string columns (schema.py is the contract).
ALLOWED = {
    "event": set(S.EVENTS),
    "object": set(S.OBJECTS),
    "path": set(S.ALLOC_PATHS) | set(S.VMA_ALLOC_PATHS) | set(S.FREE_PATHS),
    "caller": set(S.CALLERS),
}

_INT_FILL = -1

#: Code tables of the object rows' string columns (-1: null). The analyzer
#: compares codes, never strings, on the object rows.
OBJECT_NAMES = tuple(S.OBJECTS)
PATH_NAMES = tuple(dict.fromkeys(S.ALLOC_PATHS + S.VMA_ALLOC_PATHS + S.FREE_PATHS))
CALLER_NAMES = tuple(S.CALLERS)
OBJECT_CODE = {n: i for i, n in enumerate(OBJECT_NAMES)}
PATH_CODE = {n: i for i, n in enumerate(PATH_NAMES)}
CALLER_CODE = {n: i for i, n in enumerate(CALLER_NAMES)}


class ObjectRows:
    """The ``alloc`` and ``free`` rows, in replay order, as numpy arrays (one
    entry per row). Nulls: -1 in the integer and code columns, False in
    ``preexisting``. ``object``, ``path`` and ``caller`` are codes into
    OBJECT_NAMES, PATH_NAMES and CALLER_NAMES; ``comm`` codes into
    ``comm_names`` (ordered as pandas would order the categories).
    ``owner`` is ``owner_tgid``, or ``tgid`` when that is null."""

    FIELDS = ("pos", "ts_ns", "is_alloc", "pid", "tgid", "owner", "comm", "object",
              "path", "caller", "obj_id", "preexisting", "fork_id")
    #: function-probe columns (schema v3): arrays, or None when the file has none
    OPTIONAL = OBJECT_VMA_COLUMNS

    def __init__(self, comm_names=(), **arrays):
        self.comm_names = list(comm_names)
        for name in self.FIELDS:
            setattr(self, name, arrays[name])
        for name in self.OPTIONAL:
            setattr(self, name, arrays.get(name))

    @property
    def has_vma(self):
        """True when the rows carry the VMA of each object (function probes)."""
        return self.vma_id is not None

    def __len__(self):
        return len(self.pos)

    def take(self, idx):
        """Rows ``idx`` (an index array or mask) as a new ObjectRows."""
        return ObjectRows(self.comm_names, **{n: getattr(self, n)[idx] for n in self.FIELDS
                                              + self.OPTIONAL if getattr(self, n) is not None})

    def with_owner(self, owner):
        """These rows (their arrays shared, not copied) with ``owner``."""
        return ObjectRows(self.comm_names, **{n: getattr(self, n) for n in self.FIELDS + self.OPTIONAL
                                              if n != "owner"}, owner=owner)

    def comm_name(self, code):
        """The comm of a ``comm`` code; None for -1 (null)."""
        return None if code < 0 else self.comm_names[code]


@dataclass
class Recording:
    """One loaded run. Frames are sorted by ``pos`` (replay order)."""
    path: str
    meta: dict
    rows: int
    objects: ObjectRows
    forks: pd.DataFrame
    exits: pd.DataFrame
    execs: pd.DataFrame
    slab: pd.DataFrame
    lost: pd.DataFrame
    locks: pd.DataFrame = None   # schema v2 lock rows (empty frame when none)
    calls: pd.DataFrame = None   # schema v3 call rows
    walks: pd.DataFrame = None   # schema v3 walk rows
    census: pd.DataFrame = None  # schema v4 census rows (the topology at start)
    marks: pd.DataFrame = None   # schema v6 mark rows (mark_label)
    moves: pd.DataFrame = None   # schema v7 move rows (move_kind)
    end_ts_ns: int = 0
    positions: int = 0          # rows in the replay order (pos is 0 .. positions-1)
    notes: list = field(default_factory=list)
    gaps: list = field(default_factory=list)   # files.Gap: rows that could not be read
    rows_missing: int = None    # rows the metadata counts that were not read (None: unknown)
    transient: dict = field(default_factory=dict)   # {object: 7.x anon_vma_fork reuse pairs} (eager.prepare's copy)
    remote_faults: int = 0      # fault rows given to their VMA's process (mmowner; eager.prepare's copy)
    segmented: bool = False     # read from the segments of a run that was never joined

    @property
    def cut_short(self):
        """The collector did not finish the recording (schema v5 ``complete``
        false: killed, crashed, lost power, or failed while recording)."""
        return self.meta.get("complete") is False

    @property
    def schema_version(self):
        """The schema version the recording was written with (metadata
        ``schema_version``)."""
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


def read_metadata(src):
    """Decode the anonscope.* key-value metadata of a files.RecordingFiles
    (its newest file's footer); raise when not a run."""
    raw = src.metadata
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


def _trace_losses(rec, meta):
    """A Perfetto import's losses of unknown size (metadata
    ``perfetto.loss_unknown``, docs/schema.md#perfetto): each a gap of
    unknown rows, so every count is a lower bound by an unknown amount."""
    pf = meta.get("perfetto")
    losses = pf.get("loss_unknown") if isinstance(pf, dict) else None
    if not isinstance(losses, list) or not losses:
        return
    rec.gaps.extend(files.Gap(f"the trace lost events: {what}") for what in losses)
    rec.rows_missing = None


def _check_columns(pf):
    """``pf``: a files.RecordingFiles (or anything with ``schema_arrow``)."""
    names = set(pf.schema_arrow.names)
    needed = {"ts_ns", "event"}
    for cols in KIND_COLUMNS.values():
        needed.update(cols)
    missing = sorted(needed - names)
    if missing:
        raise AnalyzerError("recording lacks column(s) " + ", ".join(missing),
                            EXIT_NOT_A_RUN)
    optional = {c for cols in OPTIONAL_KIND_COLUMNS.values() for c in cols}
    optional.update(OBJECT_VMA_COLUMNS)
    for name in sorted(needed | (optional & names)):
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


def _has_values(src, name):
    """Whether column ``name`` exists and may hold a non-null value: False
    only when it is missing or every row group's statistics count all of its
    rows as null (the collector writes statistics; without them: True)."""
    if name not in src.schema_arrow.names:
        return False
    for pf, _g, rg in src.row_groups():
        idx = src.column_index(pf, name)
        if idx is None:
            return True
        if rg.num_rows == 0:
            continue
        col = rg.column(idx)
        if not col.is_stats_set or col.statistics is None \
                or not col.statistics.has_null_count \
                or col.statistics.null_count < rg.num_rows:
            return True
    return False


def optional_kinds(pf):
    """(optional kinds with rows in the file, object rows carry VMA ids)."""
    kinds = [k for k, key in OPTIONAL_KEY.items()
             if all(c in pf.schema_arrow.names for c in OPTIONAL_KIND_COLUMNS[k] if c not in LATER_COLUMNS)
             and _has_values(pf, key)]
    vma = all(c in pf.schema_arrow.names for c in OBJECT_VMA_COLUMNS) \
        and _has_values(pf, "vma_id")
    return kinds, vma


def _to_frame(table, kind):
    """Filtered arrow table of one kind -> pandas frame with filled nulls."""
    out = {}
    for name in table.column_names:
        col = table.column(name)
        typ = S.COLUMNS[name][0] if name in S.COLUMNS else col.type
        if pa.types.is_dictionary(typ):
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


def load(path):
    """Read ``path`` (a recording file, or the segments of one: docs/schema.md,
    "Segments") into a :class:`Recording`; raise AnalyzerError on bad input."""
    path = os.fspath(path)
    try:
        src = files.RecordingFiles(path)
    except OSError as exc:
        raise AnalyzerError(f"{path}: cannot read: {exc.strerror or exc}", EXIT_UNREADABLE) from None
    meta = read_metadata(src)
    _check_columns(src)
    try:
        rec = _read(src, path, meta)
    except AnalyzerError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise AnalyzerError(f"{path}: cannot read the data (truncated or corrupt?): "
                            f"{_one_line(exc)}", EXIT_UNREADABLE) from exc
    rec.segmented = src.segmented
    rec.gaps = list(src.gaps)
    events = meta.get("events")
    if isinstance(events, int) and not isinstance(events, bool) and not src.unknown_tail:
        rec.rows_missing = max(events - rec.rows, 0)   # the metadata counts every row before it
        unaccounted = rec.rows_missing - sum(g.rows or 0 for g in rec.gaps)
        unsized = [g for g in rec.gaps if g.rows is None]
        if unaccounted > 0 and len(unsized) == 1:
            unsized[0].rows = unaccounted              # the one gap whose size no footer gave
        elif unaccounted > 0 and not unsized:
            rec.gaps.append(files.Gap(f"{unaccounted} rows the metadata counts are not in the file",
                                      unaccounted))
    _trace_losses(rec, meta)
    return rec


def _one_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _numpy(col, fill, dtype):
    if col.null_count:
        col = pc.fill_null(col, fill)
    return col.to_numpy(zero_copy_only=False).astype(dtype, copy=False)



def _put(arrays, name, dst, sel, values):
    """Store a batch's object-row values (``sel``: which rows are object rows,
    None for all) into the slice ``dst`` of the column ``name``."""
    arrays[name][dst] = values if sel is None else values[sel]


class _Layout(NamedTuple):
    """What the pass over the rows reads and how its rows are told apart."""
    kind_columns: dict    # kind -> columns read for its rows
    kinds: list           # kind code = index; "object" is 0
    kind_of_event: dict   # event name -> kind code
    with_vma: bool        # object rows carry VMA ids (OBJECT_VMA_COLUMNS)
    columns: list         # columns read from the file
    small_cols: list      # columns of the other kinds' rows


class _ObjectColumns(NamedTuple):
    """The object rows' columns: ``arrays`` (name -> numpy array, one entry
    per object row), ``int_cols`` (integer column -> null fill) and
    ``codes`` (code column -> its codes.Codes)."""
    arrays: dict
    int_cols: dict
    codes: dict


def _layout(pf):
    """``pf`` (a files.RecordingFiles) -> the _Layout of its pass: the base
    kinds, plus the optional kinds and later columns the file has."""
    schema = pf.schema_arrow
    extra_kinds, with_vma = optional_kinds(pf)
    kind_columns = dict(KIND_COLUMNS)
    kind_columns.update({k: tuple(c for c in OPTIONAL_KIND_COLUMNS[k]
                                  if c not in LATER_COLUMNS or c in schema.names) for k in extra_kinds})
    for k, cols in LATER_KIND_COLUMNS.items():
        kind_columns[k] += tuple(c for c in cols if c in schema.names)
    kinds = list(kind_columns)                    # kind code = index; "object" is 0
    kind_of_event = {e: kinds.index(k) for k, evs in KIND_EVENTS.items() for e in evs
                     if k in kind_columns}
    columns = ["ts_ns", "event"] + sorted({c for cols in kind_columns.values() for c in cols}
                                          | (set(OBJECT_VMA_COLUMNS) if with_vma else set()))
    small_cols = list(dict.fromkeys(["ts_ns"] + [c for k in kinds[1:] for c in kind_columns[k]]))
    return _Layout(kind_columns, kinds, kind_of_event, with_vma, columns, small_cols)


def _object_columns(n_rows, schema, with_vma):
    """Preallocated (uninitialised) object columns for up to ``n_rows`` rows
    of a file of ``schema`` -> _ObjectColumns."""
    arrays = {"is_alloc": np.empty(n_rows, dtype=bool),
              "preexisting": np.empty(n_rows, dtype=bool),
              "pos": np.empty(n_rows, dtype=np.int64), "ts_ns": np.empty(n_rows, dtype=np.int64)}
    int_cols = {"pid": -1, "tgid": -1, "owner_tgid": -1, "obj_id": -1, "fork_id": -1}
    if with_vma:
        int_cols.update({c: -1 for c in OBJECT_VMA_COLUMNS})
    for c in int_cols:
        arrays[c] = np.empty(n_rows, dtype=schema.field(c).type.to_pandas_dtype())
    codes = {"object": Codes(OBJECT_NAMES), "path": Codes(PATH_NAMES),
             "caller": Codes(CALLER_NAMES), "comm": Codes()}
    for c in codes:
        arrays[c] = np.empty(n_rows, dtype=np.int32 if c == "comm" else np.int8)
    return _ObjectColumns(arrays, int_cols, codes)


def _put_object_rows(objects, chunk, sel, dst):
    """Store a chunk's object rows (``sel``: which rows they are, None for
    all) into the slice ``dst`` of the columns of ``objects`` (an
    _ObjectColumns)."""
    arrays, batch = objects.arrays, chunk.batch
    ix = batch.schema.get_field_index
    _put(arrays, "is_alloc", dst, sel, chunk.is_alloc)
    _put(arrays, "ts_ns", dst, sel, chunk.ts)
    _put(arrays, "pos", dst, sel, np.arange(chunk.first, chunk.first + len(chunk.ts)))
    for c, fill in objects.int_cols.items():
        _put(arrays, c, dst, sel, _numpy(batch.column(ix(c)), fill, arrays[c].dtype))
    _put(arrays, "preexisting", dst, sel, _numpy(batch.column(ix("preexisting")), False, bool))
    for c, cc in objects.codes.items():
        _put(arrays, c, dst, sel, cc.codes(batch.column(ix(c)), arrays[c].dtype))


def _collect_other_rows(parts, chunk, is_obj, layout):
    """Append a chunk's rows of the other kinds (``is_obj``: object-row
    mask) to ``parts`` (kind -> arrow tables, each with ``pos``)."""
    # the few other rows: one filter of the chunk, then split by kind
    rest = ~is_obj
    idx = np.flatnonzero(rest)
    few = stream.table_of(chunk.batch).select(layout.small_cols).filter(pa.array(rest))
    few = few.append_column("pos", pa.array(idx + chunk.first))
    kr = chunk.kind[idx]
    for code, kname in enumerate(layout.kinds[1:], start=1):
        mask = kr == code
        if mask.any():
            parts[kname].append(few.select(["ts_ns", *layout.kind_columns[kname], "pos"])
                                .filter(pa.array(mask)))


class _Names:
    """The names of the dictionary columns in the order the batches bring
    them, file order, whenever their rows are released (stream.ReplayReader
    ``on_read``): the object rows' code tables register a batch's
    dictionaries when it has object rows, and each other kind's frame gets
    the categories of the batches with rows of that kind, as when every
    batch was taken whole in file order."""

    def __init__(self, objects, layout, schema):
        self.objects = objects
        self.kinds = layout.kinds
        self.columns = {k: [c for c in layout.kind_columns[k] if pa.types.is_dictionary(schema.field(c).type)]
                        for k in layout.kinds[1:]}
        self.names = {k: {c: {} for c in cols} for k, cols in self.columns.items()}

    def __call__(self, rows):
        batch = rows.batch
        ix = batch.schema.get_field_index
        present = np.bincount(rows.kind.astype(np.int64), minlength=len(self.kinds))
        if present[0]:
            for c, cc in self.objects.codes.items():
                cc.register(batch.column(ix(c)))
        for code in np.flatnonzero(present[1:]) + 1:
            kname = self.kinds[code]
            for c in self.columns[kname]:
                self.names[kname][c].update(dict.fromkeys(batch.column(ix(c)).dictionary.to_pylist()))

    def categories(self, kname):
        """{column: category names} of kind ``kname``'s frame."""
        return {c: list(n) for c, n in self.names.get(kname, {}).items()}


def _read_chunks(pf, path, layout):
    """One pass over ``pf`` (a files.RecordingFiles) in replay order
    (stream.ReplayReader): the object rows' columns are appended to
    preallocated arrays (pages past the end are never touched); the other
    kinds' rows are collected as arrow tables. Returns (the _ObjectColumns,
    the other kinds' tables, the reader, the _Names)."""
    objects = _object_columns(pf.num_rows, pf.schema_arrow, layout.with_vma)
    parts = {k: [] for k in layout.kinds[1:]}
    names = _Names(objects, layout, pf.schema_arrow)
    reader = stream.ReplayReader(pf, path, layout.columns, layout.kind_of_event, on_read=names)
    n_obj = 0
    for chunk in reader.chunks():
        n = len(chunk.ts)
        is_obj = chunk.kind == 0
        m = int(np.count_nonzero(is_obj))
        if m:
            _put_object_rows(objects, chunk, None if m == n else is_obj, slice(n_obj, n_obj + m))
            n_obj += m
        if m < n:
            _collect_other_rows(parts, chunk, is_obj, layout)
    arrays = objects.arrays
    for c in arrays:
        arrays[c] = arrays[c][:n_obj]             # a view: the unused tail stays untouched
    return objects, parts, reader, names


def _sorted_comm(comm, comm_names):
    """Codes and names of a plain string ``comm`` column -> (codes, names)
    with the used names sorted, as pandas would sort the categories."""
    used = unique(comm[comm >= 0])
    names = sorted(comm_names[i] for i in used)
    remap = np.full(len(comm_names) + 1, -1, dtype=np.int32)
    for i, nm in enumerate(names):
        remap[comm_names.index(nm)] = i
    return remap[comm], names


def _object_rows(objects, schema, with_vma):
    """The object columns in replay order (an _ObjectColumns; consumed) ->
    ObjectRows; refuses object, path and caller values outside schema v1."""
    arrays, codes = objects.arrays, objects.codes
    for c in ("object", "path", "caller"):
        _check_codes(arrays[c], codes[c], c)
    comm_names = codes["comm"].names
    comm_is_dict = pa.types.is_dictionary(schema.field("comm").type)
    if not comm_is_dict and len(comm_names):
        # a plain string column: pandas would sort the categories
        arrays["comm"], comm_names = _sorted_comm(arrays["comm"], comm_names)
    owner = arrays.pop("owner_tgid")
    np.copyto(owner, arrays["tgid"], where=owner == _INT_FILL)
    if with_vma and not (arrays["vma_id"] != _INT_FILL).any():
        for c in OBJECT_VMA_COLUMNS:              # only call rows had them
            del arrays[c]
    return ObjectRows(comm_names, owner=owner, **arrays)


def _kind_frame(kname, tables, cols, categories):
    """The arrow tables of kind ``kname``'s rows, in replay order (``cols``
    when there are none) -> its frame, with the columns of later versions
    the file lacks filled and its dictionary columns' ``categories``
    ({column: names}, _Names)."""
    if tables:
        table = pa.concat_tables(tables, promote_options="permissive")
    else:
        table = pa.schema([pa.field(c, S.COLUMNS[c][0]) for c in cols]
                          + [pa.field("pos", pa.int64())]).empty_table()
    frame = _to_frame(table, kname)
    del table
    for c, names in categories.items():
        if c in frame and len(frame):
            frame[c] = frame[c].cat.set_categories(names)
    for c in OPTIONAL_KIND_COLUMNS.get(kname, ()) + LATER_KIND_COLUMNS.get(kname, ()):
        if c not in frame:  # a column of a later version: null in this file
            frame[c] = _INT_FILL
    return frame


def _frames(parts, kind_columns, names):
    """The other kinds' rows (``parts``: kind -> arrow tables in replay
    order, consumed; ``names``: their _Names) -> {kind: frame}, one for
    every kind but "object", empty when the file has none."""
    frames = {}
    for kname in list(KIND_COLUMNS)[1:] + list(OPTIONAL_KIND_COLUMNS):
        cols = ["ts_ns"] + list(kind_columns.get(kname, OPTIONAL_KIND_COLUMNS.get(kname, ())))
        frames[kname] = _kind_frame(kname, parts.pop(kname, []), cols, names.categories(kname))
    return frames


def _read(pf, path, meta):
    """Read ``pf`` (a files.RecordingFiles; ``path`` and ``meta`` its name and
    metadata) in one pass, in replay order -> Recording."""
    layout = _layout(pf)
    objects, parts, reader, names = _read_chunks(pf, path, layout)
    obj_rows = _object_rows(objects, pf.schema_arrow, layout.with_vma)
    frames = _frames(parts, layout.kind_columns, names)
    pa.default_memory_pool().release_unused()

    rows, n_obj = reader.rows, len(obj_rows)
    rec = Recording(path=path, meta=meta, rows=rows, objects=obj_rows,
                    forks=frames["fork"], exits=frames["exit"], execs=frames["exec"],
                    slab=frames["slab"], lost=frames["lost"], locks=frames["lock"],
                    calls=frames["call"], walks=frames["walk"], census=frames["census"],
                    marks=frames["mark"], moves=frames["move"], end_ts_ns=reader.end_ts,
                    positions=reader.positions)
    if rows == 0:
        rec.notes.append("the recording has no rows")
    elif n_obj == 0:
        rec.notes.append("no alloc or free rows: nothing recorded made or freed an anon_vma, AVC or VMA")
    return rec


def _check_codes(codes, table, name):
    """Refuse values outside schema v1 that object rows use."""
    if len(table.names) == table.known:
        return
    used = unique(codes[codes >= table.known])
    bad = sorted(table.names[i] for i in used)
    if bad:
        raise AnalyzerError(f"column {name} has value(s) {', '.join(map(repr, bad))} "
                            f"not in schema v1", EXIT_NOT_A_RUN)
