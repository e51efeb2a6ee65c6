"""The Parquet file(s) of one recording, read as one (docs/schema.md, "Segments").

A recording is one Parquet file, or the committed segments of a run that
was never joined: ``NAME.partial/seg-NNNNNN.parquet`` (the collector was
killed, crashed or lost power, or could not join them). ``anonanalyze
report NAME`` finds ``NAME.partial/`` when ``NAME`` does not exist. Row
groups are read one at a time: one that cannot be read, a segment that
cannot be opened and a segment missing from the sequence are skipped and
described in :attr:`RecordingFiles.gaps` (rows and time range where the
footers tell), never dropped silently.
"""

import os
from dataclasses import dataclass
from typing import Iterator, List, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from anonscope.collector import segments

from .errors import EXIT_UNREADABLE, AnalyzerError


@dataclass
class Gap:
    """Rows of the recording that could not be read."""
    what: str                     # one line: which segment or row group, and why
    rows: Optional[int] = None    # rows lost, where a footer says
    first_ns: Optional[int] = None  # ts_ns range of those rows, where statistics say
    last_ns: Optional[int] = None

    def as_dict(self):
        """The gap as a dict (an entry of the report's
        ``run.data_missing``)."""
        return {"what": self.what, "rows": self.rows, "first_ns": self.first_ns, "last_ns": self.last_ns}


def _one_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def resolve(path: str) -> str:
    """The file or segment directory that holds the recording ``path``."""
    if os.path.exists(path):
        return path
    alt = segments.partial_dir(path)
    if os.path.isdir(alt):
        return alt
    raise AnalyzerError(f"{path}: no such file", EXIT_UNREADABLE)


def _ts_range(rg, ts_index):
    """(min, max) ts_ns of a row group from its statistics, or (None, None)."""
    if ts_index is None:
        return None, None
    col = rg.column(ts_index)
    st = col.statistics if col.is_stats_set else None
    if st is None or not st.has_min_max:
        return None, None
    return int(st.min), int(st.max)


class RecordingFiles:
    """One recording's Parquet files, in order, with what could not be read."""

    def __init__(self, path: str):
        self.path = path
        self.where = resolve(path)
        self.segmented = os.path.isdir(self.where)
        self.gaps: List[Gap] = []
        self.files: List[pq.ParquetFile] = []
        self.names: List[str] = []           # file name of each entry of files
        self.unknown_tail = False            # rows after the newest metadata may be missing
        if self.segmented:
            self._open_segments()
        else:
            self.files.append(self._open(self.where, single=True))
            self.names.append(os.path.basename(self.where))
        self.metadata = self._newest_metadata()

    def _open(self, file: str, single: bool = False) -> Optional[pq.ParquetFile]:
        try:
            with open(file, "rb"):
                pass
        except OSError as exc:
            if single:
                raise AnalyzerError(f"{file}: cannot read: {exc.strerror}", EXIT_UNREADABLE) from None
            self.gaps.append(Gap(f"segment {os.path.basename(file)} cannot be read: {exc.strerror}"))
            return None
        if os.path.getsize(file) == 0:
            if single:
                raise AnalyzerError(f"{file}: empty file", EXIT_UNREADABLE)
            self.gaps.append(Gap(f"segment {os.path.basename(file)} is empty"))
            return None
        try:
            return pq.ParquetFile(file, page_checksum_verification=True)
        except (pa.ArrowException, OSError, ValueError) as exc:
            if single:
                raise AnalyzerError(f"{file}: not a readable Parquet file: {_one_line(exc)}",
                                    EXIT_UNREADABLE) from None
            self.gaps.append(Gap(f"segment {os.path.basename(file)} unreadable: {_one_line(exc)}"))
            return None

    def _open_segments(self) -> None:
        paths = segments.list_segments(self.where)
        if not paths:
            raise AnalyzerError(f"{self.where}: is a directory holding no committed segment "
                                "(seg-NNNNNN.parquet): not a recording, or one stopped before its "
                                "first commit", EXIT_UNREADABLE)
        expected = 1
        for p in paths:
            index = segments.segment_index(p)
            for missing in range(expected, index):
                self.gaps.append(Gap(f"segment {segments.segment_name(missing)} missing"))
            expected = index + 1
            pf = self._open(p)
            if pf is not None:
                self.files.append(pf)
                self.names.append(os.path.basename(p))
        if not self.files:
            raise AnalyzerError(f"{self.where}: no segment is readable ({self.gaps[0].what})", EXIT_UNREADABLE)
        # the newest segment unreadable: its rows are not counted by the
        # metadata read (an older segment's)
        self.unknown_tail = self.names[-1] != os.path.basename(paths[-1])

    def _newest_metadata(self) -> dict:
        """Key-value metadata of the newest readable file (what was known last)."""
        pf = self.files[-1]
        raw = dict(pf.schema_arrow.metadata or {})
        raw.update(pf.metadata.metadata or {})
        return raw

    @property
    def schema_arrow(self) -> pa.Schema:
        """The Arrow schema of the first readable file."""
        return self.files[0].schema_arrow

    @property
    def num_rows(self) -> int:
        """Rows in the readable files, as their footers count them."""
        return sum(pf.metadata.num_rows for pf in self.files)

    def row_groups(self) -> Iterator:
        """(ParquetFile, index, RowGroupMetaData) of every row group."""
        for pf in self.files:
            md = pf.metadata
            for g in range(md.num_row_groups):
                yield pf, g, md.row_group(g)

    def column_index(self, pf: pq.ParquetFile, name: str) -> Optional[int]:
        """Index of the column ``name`` in ``pf``, or None."""
        md = pf.metadata
        for i in range(md.num_columns):
            if md.schema.column(i).name == name:
                return i
        return None

    def ts_floors(self) -> List[float]:
        """For every row group (in :meth:`row_groups` order), the smallest
        ts_ns of it and of every row group after it: the earliest time any
        later row can have (statistics; a group without them is read for its
        ts_ns; one that cannot be read counts as +inf, :meth:`row_group_batches`
        skips it)."""
        mins = []
        for pf, g, rg in self.row_groups():
            lo, _ = _ts_range(rg, self.column_index(pf, "ts_ns"))
            if lo is None and rg.num_rows:
                try:
                    ts = pf.read_row_group(g, columns=["ts_ns"]).column(0)
                    lo = pc.min(ts).as_py()
                except (pa.ArrowException, OSError, ValueError):
                    lo = None
            mins.append(float("inf") if lo is None else lo)
        floors, low = [], float("inf")
        for lo in reversed(mins):
            low = min(low, lo)
            floors.append(low)
        return floors[::-1]

    def row_group_batches(self, batch_size: int, columns: List[str]) -> Iterator:
        """(row group number, its record batches of ``columns``) of every
        row group, in order; a row group that cannot be decoded is skipped and
        added to ``gaps``."""
        for i, (pf, g, rg) in enumerate(self.row_groups()):
            if rg.num_rows == 0:
                continue
            try:
                batches = list(pf.iter_batches(batch_size=batch_size, row_groups=[g], columns=columns))
            except (pa.ArrowException, OSError, ValueError) as exc:
                first, last = _ts_range(rg, self.column_index(pf, "ts_ns"))
                self.gaps.append(Gap(f"row group {g} of {self.names[self.files.index(pf)]} unreadable: "
                                     f"{_one_line(exc)}",
                                     rg.num_rows, first, last))
                continue
            yield i, batches
