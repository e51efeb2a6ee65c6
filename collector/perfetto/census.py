"""A census for a Perfetto import (``--census RECORDING``): the census rows
of an anoncollect recording made on the same device and boot (bcc in a
Debian chroot, docs/android.md), put on the trace's clock.

The census must have been taken while the trace recorded: the analyzer
counts the trace's object rows during the census window as objects that
may or may not be in it (docs/models.md#snapshots S4), which needs the
trace to hold that window. The two clocks meet through the wall clock:
the recording's ``start_time`` (REALTIME at its ``ts_ns`` 0) and the
trace's clock snapshot (REALTIME against the ftrace clock, BOOTTIME);
``MARGIN_NS`` widens the window by the error that may add.
"""

import datetime
import json
from typing import Dict, List, Optional, Tuple

import pyarrow.compute as pc
import pyarrow.parquet as pq

from anonscope import schema

from .facts import CLOCK_BOOTTIME, CLOCK_REALTIME

#: Added on each side of the census window: the collector's start_time is
#: read just after its ts 0 (microseconds), NTP slewing between the two
#: readings of REALTIME is far below it.
MARGIN_NS = 10_000_000


class CensusError(Exception):
    """A census that cannot be merged: one line for the user."""


class Census:
    """The census rows and metadata of one recording."""

    def __init__(self, path: str):
        self.path = path
        try:
            meta = {k.decode()[len(schema.META_PREFIX):]: json.loads(v)
                    for k, v in (pq.read_metadata(path).metadata or {}).items()
                    if k.startswith(schema.META_PREFIX.encode())}
            table = pq.read_table(path)
        except (OSError, ValueError) as e:
            raise CensusError(f"{path}: not a readable anoncollect recording ({e})") from e
        c = meta.get("census")
        if not isinstance(c, dict) or c.get("status") != "done":
            raise CensusError(f"{path}: its census did not run ({(c or {}).get('reason', 'no census metadata')})")
        if not meta.get("start_time"):
            raise CensusError(f"{path}: no start_time: its census cannot be put on the trace's clock")
        self.meta, self.census = meta, c
        self.rows = table.filter(pc.equal(table["event"].cast("string"), "census")).to_pylist()

    def max_id(self) -> int:
        """The largest id the census rows use (the import's ids start above)."""
        ids = [r[k] for r in self.rows for k in ("obj_id", "vma_id", "anon_vma_id", "root_id", "mm_id")
               if r.get(k) is not None]
        return max(ids, default=0)

    def shift(self, clocks: Dict[int, int], first_ts: int) -> int:
        """ns to add to the census recording's ts_ns to get the import's."""
        if CLOCK_REALTIME not in clocks or CLOCK_BOOTTIME not in clocks:
            raise CensusError("the trace has no clock snapshot of REALTIME and BOOTTIME: the census cannot be "
                              "put on its clock")
        start = datetime.datetime.fromisoformat(self.meta["start_time"])
        wall_ns = int(start.timestamp()) * 10 ** 9 + start.microsecond * 1000
        return clocks[CLOCK_BOOTTIME] + (wall_ns - clocks[CLOCK_REALTIME]) - first_ts

    def merged(self, clocks: Dict[int, int], first_ts: int, last_ts: int,
               kernel_release: Optional[str]) -> Tuple[List[dict], Dict[str, object]]:
        """(census rows on the import's clock, the census metadata entry)."""
        if kernel_release and self.meta.get("kernel_release") not in (None, kernel_release):
            raise CensusError(f"{self.path}: recorded on kernel {self.meta.get('kernel_release')}, the trace on "
                              f"{kernel_release}: not the same boot")
        d = self.shift(clocks, first_ts)
        started, ended = self.census.get("started_ns"), self.census.get("ended_ns")
        if not isinstance(started, int) or not isinstance(ended, int):
            raise CensusError(f"{self.path}: its census has no started_ns/ended_ns (schema v6+ needed)")
        if started + d - MARGIN_NS < 0 or ended + d + MARGIN_NS > last_ts - first_ts:
            raise CensusError(f"{self.path}: its census ran {(started + d) / 1e9:.3f} s to {(ended + d) / 1e9:.3f} s "
                              "from the trace's start, not inside the trace: take it while the trace records")
        rows = [dict(r, ts_ns=r["ts_ns"] + d) for r in self.rows]
        entry = dict(self.census, started_ns=started + d - MARGIN_NS, ended_ns=ended + d + MARGIN_NS,
                     source=self.path, reason=f"{self.census.get('reason')}, from {self.path}")
        return rows, entry
