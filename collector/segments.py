"""The on-disk layout of a recording in progress (docs/schema.md, "Segments").

While ``anoncollect -o NAME`` records, ``NAME.partial/`` holds the committed
segments ``seg-000001.parquet``, ``seg-000002.parquet``, ... in order: each
one a complete Parquet file of the schema whose footer carries the metadata
known when it was committed. A segment is written as a hidden
``.seg-NNNNNN.parquet.tmp``, fsynced, renamed into place and the directory
fsynced, so a crash of the collector or of the machine leaves only whole
segments. At the end of a run ``join`` makes ``NAME`` of them (one Parquet
file whose footer is the last segment's) and removes the directory; a
directory that was never joined still reads as the recording
(``anonanalyze report NAME`` finds it).
"""

import os
import re
import shutil
from typing import List, Optional

# pyarrow is imported by the functions that join: the argument checks
# (collector/checks.py) use this module's names before anything slow.

SUFFIX = ".partial"
_NAME = re.compile(r"^seg-(\d{6,})\.parquet$")
#: Rows per row group of a joined recording.
JOIN_ROW_GROUP = 1 << 16


def partial_dir(path: str) -> str:
    """Where the segments of the recording ``path`` are while it records."""
    return path + SUFFIX


def segment_name(index: int) -> str:
    """The file name of segment number ``index`` (``seg-NNNNNN.parquet``)."""
    return f"seg-{index:06d}.parquet"


def list_segments(directory: str) -> List[str]:
    """Paths of the committed segments in ``directory``, in order."""
    found = []
    for name in os.listdir(directory):
        m = _NAME.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return [p for _, p in sorted(found)]


def segment_index(path: str) -> Optional[int]:
    """The number of the segment file ``path``; None when its name is not a
    segment's."""
    m = _NAME.match(os.path.basename(path))
    return int(m.group(1)) if m else None


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SegmentDir:
    """The writer's side: ``open_next`` gives the file object the next
    segment is written to, ``commit`` makes it durable."""

    def __init__(self, directory: str, create: bool = False):
        self.directory = directory
        if create:
            os.mkdir(directory)
            _fsync_dir(os.path.dirname(os.path.abspath(directory)))
        self.count = len(list_segments(directory))
        self.bytes = 0          # committed by this writer (--max-mb)
        self._file = None
        self._tmp = None

    def open_next(self):
        """Open the next segment's hidden temporary file for writing;
        :meth:`commit` puts it in place."""
        name = segment_name(self.count + 1)
        self._tmp = os.path.join(self.directory, f".{name}.tmp")
        self._file = open(self._tmp, "wb")
        return self._file

    def commit(self) -> str:
        """fsync the segment written since ``open_next``, rename it into
        place and fsync the directory; its path."""
        f, self._file = self._file, None
        f.flush()
        os.fsync(f.fileno())
        self.bytes += os.fstat(f.fileno()).st_size
        f.close()
        self.count += 1
        final = os.path.join(self.directory, segment_name(self.count))
        os.rename(self._tmp, final)
        self._tmp = None
        _fsync_dir(self.directory)
        return final

    def abandon(self) -> Optional[str]:
        """Drop the segment being written; the directory if it holds
        committed segments, else None (the empty directory is removed)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self._tmp:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None
        if self.count:
            return self.directory
        shutil.rmtree(self.directory, ignore_errors=True)
        return None


class JoinError(Exception):
    """The segments could not be joined; they stay where they are."""


def join(directory: str, path: str, writer_options: Optional[dict] = None) -> str:
    """Make the recording ``path`` of the segments in ``directory`` and
    remove the directory; returns ``path``. One segment is renamed; several
    are rewritten into one file, row group by row group, with the last
    segment's metadata. Raises JoinError (the directory is left intact,
    and still reads as the recording) when that fails, for example for
    lack of space."""
    segs = list_segments(directory)
    if not segs:
        raise JoinError(f"{directory} holds no committed segment")
    if len(segs) == 1:
        os.replace(segs[0], path)
    else:
        _rewrite(segs, path, writer_options or {})
    _fsync_dir(os.path.dirname(os.path.abspath(path)))
    shutil.rmtree(directory, ignore_errors=True)
    return path


def _rewrite(segs: List[str], path: str, options: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    needed = sum(os.path.getsize(s) for s in segs)
    st = os.statvfs(os.path.dirname(os.path.abspath(path)))
    if st.f_bavail * st.f_frsize < needed + (1 << 20):
        raise JoinError(f"not enough space to join {len(segs)} segments ({needed >> 20} MiB) into {path}")
    tmp = path + ".joining"
    last = pq.ParquetFile(segs[-1])
    writer = None
    try:
        with open(tmp, "wb") as sink:
            writer = pq.ParquetWriter(sink, last.schema_arrow, **options)
            held, rows = [], 0
            for seg in segs:
                pf = pq.ParquetFile(seg)
                for g in range(pf.num_row_groups):
                    held.append(pf.read_row_group(g))
                    rows += held[-1].num_rows
                    if rows >= JOIN_ROW_GROUP:
                        _write_sorted(writer, held)
                        held, rows = [], 0
            _write_sorted(writer, held)
            writer.add_key_value_metadata(last.metadata.metadata or {})
            writer.close()
            writer = None
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
    except (OSError, pa.ArrowException) as e:
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already failing
                pass
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise JoinError(f"cannot join segments into {path}: {getattr(e, 'strerror', None) or e}") from None


def _write_sorted(writer, tables) -> None:
    """One row group of ``tables`` (pyarrow Tables), stably sorted by time
    (as the collector writes every row group)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    if not tables:
        return
    table = pa.concat_tables(tables)
    ts = table.column("ts_ns").to_numpy()
    if len(ts) > 1 and (ts[1:] < ts[:-1]).any():
        table = table.take(pc.sort_indices(table, [("ts_ns", "ascending")]))
    writer.write_table(table, row_group_size=max(table.num_rows, 1))
