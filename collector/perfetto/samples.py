"""Slab samples for a Perfetto import (``--samples DIR``): the
/proc/slabinfo and /proc/meminfo that scripts/android/record reads just
after each mark (``LABEL.slabinfo``, ``LABEL.meminfo``), as the collector's
``slab`` rows at that mark's moment. They are what the series' own table
counted (slabinfo's active objects), and what the report sets beside its
models at each mark (docs/models.md#snapshots S6)."""

import os
from typing import Dict, List

from .. import meminfo, slab


class SamplesError(Exception):
    """Samples that cannot be placed: one line for the user."""


def labels(directory: str) -> List[str]:
    """The labels DIR has slabinfo samples of, sorted."""
    try:
        names = os.listdir(directory)
    except OSError as e:
        raise SamplesError(f"{directory}: {e.strerror}") from e
    return sorted(n[:-len(".slabinfo")] for n in names if n.endswith(".slabinfo"))


def rows(directory: str, at: Dict[str, int], aliases: Dict[str, int]) -> List[dict]:
    """Slab rows of every sample in ``directory``: ``at`` maps each label
    to its mark's ts_ns ("end": the trace's end); ``aliases``: per cache,
    how many caches are merged into it (from --slab-dir; 0 unknown)."""
    out = []
    for label in labels(directory):
        if label not in at:
            raise SamplesError(f"{directory}/{label}.slabinfo: no mark {label!r} in the trace to place it at")
        with open(os.path.join(directory, f"{label}.slabinfo")) as f:
            lines = slab.parse_slabinfo(f.read())
        mem = meminfo.read(os.path.join(directory, f"{label}.meminfo"))
        out.extend(slab.sample_rows(at[label], lines, aliases, mem))
    return out
