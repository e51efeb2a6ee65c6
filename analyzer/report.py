"""Build the report: one JSON-ready dict from a loaded recording.

Every renderer (text, markdown, json) formats this dict and nothing else.
"""

from importlib import metadata as _md

from . import (
    calls,
    census,
    eager,
    holders,
    lazy,
    lazy_exact,
    locks,
    moves,
    nofork,
    processes,
    slabcheck,
    snapshots,
    walks,
)

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


#: Event kinds whose loss makes the object counts lower bounds.
OBJECT_KINDS = ("alloc", "free")
#: Rows still on their way when a segment was committed (collector
#: writer.FORK_WAIT_NS plus the batches' flush, docs/schema.md "Segments").
IN_FLIGHT_S = 1.2


def lost_summary(rec):
    """Lost events: (per source, from the metadata's ``lost``; their total; the
    sum of the ``lost`` rows' counts)."""
    lost = rec.meta.get("lost") or {}
    by_source = {str(k): _int(v) for k, v in lost.items()}
    total = sum(by_source.values())
    rows_total = int(rec.lost["count"].clip(lower=0).sum()) if len(rec.lost) else 0
    return by_source, total, rows_total


def _kinds(value):
    """A {kind: count} metadata entry (schema v5), or None when absent."""
    if not isinstance(value, dict):
        return None
    return {str(k): _int(v) for k, v in value.items()}


def loss(rec):
    """What was lost: per source (``lost``), per event kind where the
    recording says (v5 ``lost_by_event``: the buffer, exact;
    ``prog_misses_by_event``: skipped program runs that may have been events),
    and how many of them were object events (None: unknown kinds, every
    lost event may have been one)."""
    by_source, total, rows_total = lost_summary(rec)
    by_event = _kinds(rec.meta.get("lost_by_event"))
    possibly = _kinds(rec.meta.get("prog_misses_by_event"))
    if by_event is None:
        objects = max(total, rows_total)
    else:
        objects = sum(by_event.get(k, 0) for k in OBJECT_KINDS)
        objects += sum((possibly or {}).get(k, 0) for k in OBJECT_KINDS) if possibly is not None \
            else _int(by_source.get("prog_misses"))
    return {"by_source": by_source, "total": max(total, rows_total), "by_event": by_event,
            "possibly_by_event": possibly, "objects": objects}


def completeness(rec):
    """Whether the recording holds the whole run: cut short (the collector
    never finished it) and rows that could not be read (files.Gap)."""
    gaps = [g.as_dict() for g in rec.gaps]
    return {"complete": not rec.cut_short and not gaps, "cut_short": rec.cut_short,
            "segmented": rec.segmented, "recorded_until_s": rec.meta.get("duration_s"),
            "data_missing": gaps, "rows_missing": rec.rows_missing if gaps else 0}


def banners(rec, lost, whole):
    """Lines every format shows first: what makes the numbers below partial."""
    out = []
    if lost["objects"]:
        parts = ", ".join(f"{k}: {v}" for k, v in (lost["by_event"] or lost["by_source"]).items()
                          if v and (lost["by_event"] is None or k in OBJECT_KINDS))
        out.append(f"LOST EVENTS: {lost['objects']} events were lost ({parts or 'lost rows'}); "
                   "every count below is a lower bound, frees of lost allocations are unmatched, "
                   f"and live and peak values may be up to {lost['objects']} off either way (a lost "
                   "free leaves its object live)")
    if whole["cut_short"]:
        until = whole["recorded_until_s"]
        until = f"{until:.1f} s" if isinstance(until, (int, float)) else "its last commit"
        out.append(f"CUT SHORT: the collector did not finish this recording (killed, crashed, out of "
                   f"space, or the machine went down); it covers the run up to {until}, its last "
                   f"committed segment, and events of the last {IN_FLIGHT_S} s before that may not "
                   "have reached it; live-at-end numbers are at that point")
    if whole["data_missing"]:
        n = whole["rows_missing"]
        what = "; ".join(g["what"] for g in whole["data_missing"])
        bound = (f"every count below is a lower bound, at most {n} below the truth, and live and "
                 f"peak values are within {n} of it" if n is not None else
                 "every count below is a lower bound by an unknown amount")
        out.append(f"DATA MISSING: {what}; {bound}")
    return out


def warnings(rec, objects, lost, mismatched_forks=0):
    """The report's warnings: forks with unequal numbers of own anon_vmas and
    AVCs, lost events and skipped program runs of kinds other than objects,
    missing slab sizes, unmatched frees, and the loader's notes."""
    out = []
    if mismatched_forks:
        out.append(f"{mismatched_forks} forks made unequal numbers of their own anon_vmas and AVCs "
                   "(anon_vma_fork makes them in pairs): an allocation was lost or not classified")
    other = {k: v for k, v in (lost["by_event"] or {}).items() if v and k not in OBJECT_KINDS}
    if other:
        out.append("events of other kinds lost (the buffer was full): "
                   + ", ".join(f"{k} {v}" for k, v in other.items()))
    maybe = {k: v for k, v in (lost["possibly_by_event"] or {}).items() if v and k not in OBJECT_KINDS}
    if maybe:
        out.append("program runs the kernel skipped (recursion_misses), events of other kinds: "
                   + ", ".join(f"{k} {v}" for k, v in maybe.items()))
    for obj, st in objects.items():
        if st["object_size_source"] != "slab_size":
            out.append(f"{obj}: no slab_size in metadata object_sizes, bytes use "
                       f"{st['object_size_source']}")
        if st["unmatched_frees"]:
            out.append(f"{obj}: {st['unmatched_frees']} frees match no allocation in the run "
                       "and are not marked preexisting")
    out.extend(rec.notes)
    return out


def qualify(node, note):
    """Append ``note`` to every ``fidelity`` of the report (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "fidelity" and isinstance(value, str):
                node[key] = f"{value}; {note}"
            else:
                qualify(value, note)
    elif isinstance(node, list):
        for value in node:
            qualify(value, note)


def fidelity_note(lost, whole):
    """What every fidelity must add when the recording is partial, or None."""
    parts = []
    if whole["cut_short"]:
        parts.append("for the run up to its cut (see run.cut_short)")
    if whole["data_missing"]:
        n = whole["rows_missing"]
        parts.append(f"for the rows read: {n if n is not None else 'some'} rows missing "
                     "(run.data_missing), counts are lower bounds")
    if lost["objects"]:
        parts.append(f"{lost['objects']} object events lost (run.lost_by_event): counts are lower bounds, "
                     f"live and peak values within {lost['objects']} of the truth")
    return "; ".join(parts) or None


def _run(rec, lost, whole, checked, mismatched):
    """The report's ``run`` section: the recording's metadata, what was lost
    (``loss``), whether it is whole (``completeness``) and the fork pairs
    checked (docs/models.md section 1, E5)."""
    meta = rec.meta
    return {
        "hostname": meta.get("hostname"),
        "kernel_release": meta.get("kernel_release"),
        "arch": meta.get("arch"),
        "backend": meta.get("backend"),
        "duration_s": meta.get("duration_s"),
        "events": meta.get("events"),
        "rows": rec.rows,
        "lost_events": lost["total"],
        "lost_by_source": lost["by_source"],
        "lost_by_event": lost["by_event"],
        "possibly_lost_by_event": lost["possibly_by_event"],
        "object_events_lost": lost["objects"],
        **whole,
        "fork_pairs_checked": checked, "fork_pairs_mismatched": mismatched,
        "alias_frees_skipped": meta.get("alias_frees_skipped"),
        "page_size": meta.get("page_size"),
        "target": meta.get("target"),
        "start_time": meta.get("start_time"),
        "end_time": meta.get("end_time"),
        "stop_reason": meta.get("stop_reason"),
        "tool_version": meta.get("tool_version"),
        "raw_pointers": bool(meta.get("raw_pointers", False)),
        "rmap_layout": meta.get("rmap_layout"),
    }


def _eager_sections(rec, rp, lost, whole):
    """The sections from the kernel as it is (docs/models.md section 1,
    E1-E5): the report up to its models, and the eager model. Returns
    (report, eager model)."""
    objects = {obj: eager.object_stats(rp, obj)
               for obj in ("anon_vma", "anon_vma_chain", "vm_area_struct")}
    top = banners(rec, lost, whole)
    for obj, u in eager.unknown_sites(rec, objects).items():
        objects[obj]["unknown_sites"] = u
    checked, mismatched = eager.fork_path_mismatches(rp)
    ev = eager.model(rp)
    procs = dict(rp.tree.summary())
    procs.update(processes.processes(rp))
    report = {
        "report_format": REPORT_FORMAT,
        "schema_version": rec.schema_version,
        "analyzer_version": _tool_version(),
        "source": rec.path,
        "banners": top,
        "warnings": top + warnings(rec, objects, lost, mismatched),
        "run": _run(rec, lost, whole, checked, mismatched),
        "objects": objects,
        "processes": procs,
        "slabinfo": slabcheck.check(rp),
    }
    return report, ev


def _lazy(rec, rp, ev):
    """The lazy model (docs/models.md section 2): the tracepoint estimate
    (L1-L8, U1-U2) and, on function-probe recordings, the exact replay
    (X1-X9) in its place. Returns a lazy.Result whose spans hold the
    estimate's ``lazy_floor`` and the exact replay's other spans."""
    lz = lazy.model(rp, ev)
    if rec.objects.has_vma:
        # function probes: each object's VMA is known; the tracepoint estimate
        # stays in the output (models.lazy.tracepoint_estimate)
        exact = lazy_exact.model(rp, ev, tracepoint=lz.report)
        lz = lazy.Result(exact.report, {**lz.spans, **exact.spans}, exact.lazy_state, lz.tracepoint)
    return lz


def _models(rec, rp, ev, lz, nf):
    """The report's ``models``: eager, lazy and the no-fork designs (N1-N8),
    each but eager widened by the move rows (docs/models.md#moves M1-M4)."""
    designs = {"lazy": lz.report, **nf.report}
    add = moves.extra(rec, moves.Caps(rp))
    sizes = {o: rp.sizes[o][0] for o in ("anon_vma", "anon_vma_chain")}
    return {"eager": ev, **{d: moves.widened(m, ev, add, sizes) if any(add.values()) or
                            None in add.values() else m for d, m in designs.items()}}


def _snapshots(rec, rp, report, spans):
    """The report's ``snapshots`` (docs/models.md#snapshots S1-S6) from the
    models' run ``spans``, their warnings, and who holds the memory at each
    (docs/models.md#holders H1-H2) with the fork shapes (H3-H4)."""
    report["snapshots"] = snapshots.build(rp, report, spans)
    report["warnings"].extend(snapshots.disagreements(report["snapshots"]))
    missed = snapshots.unvisited_warning(rec.meta)
    if missed:
        report["warnings"].append(missed)
    who = holders.Holders(rp, report["census"].get("status") == "done",
                          [s["pos"] for s in report["snapshots"] if s["source"] != "slab"])
    groups = holders.classes(rp)
    for snap in report["snapshots"]:
        if snap["source"] != "slab":
            ev = snap["designs"]["eager"]
            live = [ev[o]["live"] for o in ("anon_vma", "anon_vma_chain")]
            nbytes = None if None in live else live[0] * ev["anon_vma"]["slot_bytes"] + \
                live[1] * ev["anon_vma_chain"]["slot_bytes"]
            snap["holders"] = holders.at_snapshot(who, groups, snap["pos"], nbytes)
    report["processes"]["fork_shapes"] = holders.fork_shapes(rp, groups)


#: The steps of build(), in order, for a progress bar (its ``step`` callback).
STAGES = ("eager", "lazy", "nofork", "models", "locks and walks", "census", "snapshots")


def build(rec, step=None):
    """The whole report of a loaded recording. The models return what they
    compute (lazy.Result, nofork.Result): their run spans go to the
    snapshots, the lazy state to the walks. ``step(name)``, when given, is
    called as each of STAGES ends."""
    step = step or (lambda name: None)
    rp = eager.prepare(rec)
    rec = rp.rec                # without the 7.x transient fork pairs (rule E2')
    lost = loss(rec)
    whole = completeness(rec)
    report, ev = _eager_sections(rec, rp, lost, whole)
    step("eager")
    lz = _lazy(rec, rp, ev)
    step("lazy")
    nf = nofork.model(rp, ev, lz)
    step("nofork")
    report["models"] = _models(rec, rp, ev, lz, nf)
    report["moves"] = moves.summary(rec)
    step("models")
    report["locks"] = locks.summary(rp)
    report["walks"] = walks.summary(rp, lz.lazy_state)
    report["calls"] = calls.summary(rec)
    step("locks and walks")
    report["census"] = census.summary(rec, {o: rp.sizes[o][0] for o in ("anon_vma", "anon_vma_chain")})
    step("census")
    _snapshots(rec, rp, report, {**lz.spans, **nf.spans})
    step("snapshots")
    note = fidelity_note(lost, whole)
    if note:
        qualify(report, note)
    return report
