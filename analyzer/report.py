"""Build the report: one JSON-ready dict from a loaded recording.

Every renderer (text, markdown, json) formats this dict and nothing else.
"""

from importlib import metadata as _md

from . import calls, census, eager, lazy, lazy_exact, locks, nofork, slabcheck, walks

REPORT_FORMAT = 1


def _tool_version():
    try:
        return _md.version("anonscope")
    except _md.PackageNotFoundError:   # pragma: no cover - running from a tree
        return None


def _int(value, default=0):
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def lost_summary(rec):
    lost = rec.meta.get("lost") or {}
    by_source = {str(k): _int(v) for k, v in lost.items()}
    total = sum(by_source.values())
    rows_total = int(rec.lost["count"].clip(lower=0).sum()) if len(rec.lost) else 0
    return by_source, total, rows_total


def warnings(rec, objects):
    out = []
    by_source, total, rows_total = lost_summary(rec)
    if total or rows_total:
        parts = ", ".join(f"{k}: {v}" for k, v in by_source.items() if v)
        n = max(total, rows_total)
        out.append(f"LOST EVENTS: {n} events were lost ({parts or 'lost rows'}); "
                   "every count below is a lower bound and frees of lost allocations "
                   "are unmatched")
    meta_events = rec.meta.get("events")
    if isinstance(meta_events, int) and meta_events != rec.rows:
        out.append(f"metadata says {meta_events} events, the file has {rec.rows} rows")
    for obj, st in objects.items():
        if st["object_size_source"] != "slab_size":
            out.append(f"{obj}: no slab_size in metadata object_sizes, bytes use "
                       f"{st['object_size_source']}")
        if st["unmatched_frees"]:
            out.append(f"{obj}: {st['unmatched_frees']} frees match no allocation in the run "
                       "and are not marked preexisting")
    out.extend(rec.notes)
    return out


def build(rec):
    rp = eager.prepare(rec)
    meta = rec.meta
    objects = {obj: eager.object_stats(rp, obj)
               for obj in ("anon_vma", "anon_vma_chain", "vm_area_struct")}
    by_source, total, rows_total = lost_summary(rec)
    ev = eager.model(rp)
    procs = dict(rp.tree.summary())
    procs.update(eager.processes(rp))
    report = {
        "report_format": REPORT_FORMAT,
        "schema_version": rec.schema_version,
        "analyzer_version": _tool_version(),
        "source": rec.path,
        "warnings": warnings(rec, objects),
        "run": {
            "kernel_release": meta.get("kernel_release"),
            "arch": meta.get("arch"),
            "backend": meta.get("backend"),
            "duration_s": meta.get("duration_s"),
            "events": meta.get("events"),
            "rows": rec.rows,
            "lost_events": max(total, rows_total),
            "lost_by_source": by_source,
            "alias_frees_skipped": meta.get("alias_frees_skipped"),
            "page_size": meta.get("page_size"),
            "target": meta.get("target"),
            "start_time": meta.get("start_time"),
            "end_time": meta.get("end_time"),
            "stop_reason": meta.get("stop_reason"),
            "tool_version": meta.get("tool_version"),
            "raw_pointers": bool(meta.get("raw_pointers", False)),
        },
        "objects": objects,
        "processes": procs,
        "slabinfo": slabcheck.check(rp),
    }
    rp.drop_curves()            # the eager live curves are done with: memory for the models
    lz = lazy.model(rp, ev)
    if rec.objects.has_vma:
        # function probes: each object's VMA is known; the tracepoint estimate
        # stays in the output (models.lazy.tracepoint_estimate)
        lz = lazy_exact.model(rp, ev, tracepoint=lz)
    report["models"] = {
        "eager": ev,
        "lazy": lz,
        "nofork": nofork.model(rp, ev),
    }
    report["locks"] = locks.summary(rp)
    report["walks"] = walks.summary(rp)
    report["calls"] = calls.summary(rec)
    report["census"] = census.summary(rec, {o: rp.sizes[o][0] for o in ("anon_vma", "anon_vma_chain")})
    return report
