"""What the rmap's slab memory is worth against the machine
(docs/models.md#snapshots, S7): at each snapshot, every design's anon_vma +
AVC bytes (and with the VMAs) as a share of /proc/meminfo's MemTotal,
Slab, SUnreclaim and PageTables, sampled with the slab samples (schema
v8)."""

import numpy as np

from .load import MEMINFO_COLUMNS

#: slab-row column -> /proc/meminfo field
FIELDS = dict(zip(MEMINFO_COLUMNS, ("MemTotal", "Slab", "SUnreclaim", "PageTables")))
RMAP = ("anon_vma", "anon_vma_chain")


def samples(rec):
    """(ts_ns sorted, {field: kB array}) of the slab samples that carry
    meminfo (one per sample time); None when the recording has none."""
    slab = rec.slab
    if not len(slab) or MEMINFO_COLUMNS[0] not in slab:
        return None
    one = slab[slab[MEMINFO_COLUMNS[0]] > 0].drop_duplicates("ts_ns").sort_values("ts_ns")
    if not len(one):
        return None
    return (one["ts_ns"].to_numpy().astype(np.int64),
            {FIELDS[c]: one[c].to_numpy().astype(np.int64) for c in MEMINFO_COLUMNS})


def _pct(nbytes, kb):
    """``nbytes`` as a percentage of ``kb`` kB (None when either is unknown;
    a negative ``nbytes`` gives a negative share)."""
    if nbytes is None or kb is None or kb <= 0:
        return None
    return float(f"{100.0 * nbytes / (kb * 1024):.6g}")      # 6 significant digits: never a false 0


def at(meminfo, snap):
    """The ``denominators`` entry of one snapshot: the meminfo sample at or
    before it (else the first after), and per design the anon_vma + AVC
    bytes, the same with the VMAs and the anon_vma + AVC bytes it saves
    against eager (best values; negative: it holds more), each as a share
    of every field."""
    ts, kb = meminfo
    i = int(np.searchsorted(ts, snap["ts_ns"], side="right")) - 1
    i = max(i, 0)
    fields = {f: (int(v[i]) if v[i] >= 0 else None) for f, v in kb.items()}
    out = {"sample_ts_ns": int(ts[i]), "kb": fields, "designs": {}}
    eager = _bytes(snap["designs"]["eager"], RMAP)
    for design, d in snap["designs"].items():
        rmap = _bytes(d, RMAP)
        with_vma = _bytes(d, RMAP + ("vm_area_struct",))
        saved = None if rmap is None or eager is None else eager - rmap
        out["designs"][design] = {
            "rmap_bytes": rmap, "with_vma_bytes": with_vma, "saved_bytes": saved,
            "rmap_pct": {f: _pct(rmap, v) for f, v in fields.items()},
            "with_vma_pct": {f: _pct(with_vma, v) for f, v in fields.items()},
            "saved_pct": {f: _pct(saved, v) for f, v in fields.items()},
        }
    return out


def _bytes(d, objects):
    """Bytes of ``objects`` live in design entry ``d`` (best values x slot);
    None when one is unknown."""
    vals = [d[o]["live"] for o in objects]
    if any(v is None for v in vals):
        return None
    return int(sum(v * d[o]["slot_bytes"] for v, o in zip(vals, objects)))
