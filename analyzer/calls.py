"""Measured cost of the anon_vma functions (schema v3 ``call`` rows,
function probes; docs/models.md#walks-recorded): per function the calls,
their duration (entry to return) and the objects each allocated or freed.
``anon_vma_fork`` is the per-VMA rmap work of fork that ANON_VMA_LAZY
changes; its duration is what the series' "slight improvement in fork
performance" would be measured against."""

import numpy as np

from .objlookup import categories, stats

SECTION = "docs/models.md#walks-recorded"


def summary(rec):
    """Per function of the ``call`` rows: calls, duration (ns), objects per
    call and, for ``__anon_vma_prepare`` and ``anon_vma_fork``, the calls that
    reused an anon_vma; ``available`` False when the recording ``rec`` has
    no call rows (docs/schema.md, function-probe rows; measured, no model)."""
    c = rec.calls
    if c is None or not len(c):
        return {"available": False, "see": SECTION,
                "note": "no call rows (function probes did not attach or schema before v3)"}
    fnames, fcode = categories(c["func"], "unknown")
    dur = np.maximum(c["duration_ns"].to_numpy().astype(np.int64), 0)
    objs = np.maximum(c["call_objects"].to_numpy().astype(np.int64), 0)
    reused = c["reused"].fillna(False).to_numpy(dtype=bool)
    out = {"available": True, "calls": int(len(c)), "see": SECTION,
           "fidelity": "exact (measured: entry to return of each call, the objects it "
                       "allocated or, for unlink_anon_vmas, freed)",
           "by_func": {}}
    for i in np.argsort(fnames):
        m = fcode == i
        if not m.any():
            continue
        f = fnames[i]
        e = {"calls": int(m.sum()), "duration_ns": stats(dur[m]),
             "total_duration_ns": int(dur[m].sum()), "objects": int(objs[m].sum()),
             "objects_per_call": stats(objs[m])}
        if f in ("__anon_vma_prepare", "anon_vma_fork"):
            e["reused"] = int((reused & m).sum())
        out["by_func"][f] = e
    return out
