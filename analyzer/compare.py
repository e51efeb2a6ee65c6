"""Compare two reports (report.py build()): A and B side by side, per design
and object, with delta = B - A and pct = 100 * delta / A (docs/compare.md).

:func:`compare` makes one JSON-ready dict from the two report dicts; the
renderers (:func:`render_text`, :func:`render_markdown`, :func:`render_json`,
comparehtml.render_html) format that dict and nothing else. A design or object that only one report
has is listed with None for the other side (and named in ``missing``).
"""

import json

from . import rmapdiff
from .render import MODEL_TITLE, SHORT, _jsonable, _rng, kb, saved
from .tables import md_table, text_table

#: 2: rmap_layout (the two kernels' anon rmap layouts compared); 3: validation_candidates,
#: the live_end and live_end_kb headlines
COMPARE_FORMAT = 3
FORMATS = ("text", "markdown", "json", "html")
#: -o suffix -> format, when --format is not given
SUFFIX_FORMAT = {".md": "markdown", ".markdown": "markdown", ".json": "json", ".html": "html", ".htm": "html"}
DESIGNS = ("eager", "lazy", "nofork", "nofork_clone")
#: designs B's kernel may run (--b-design): validation compares A modelled as it with B measured
B_DESIGNS = ("lazy", "nofork", "nofork_clone")
OBJECTS = ("anon_vma", "anon_vma_chain", "vm_area_struct")
HEADLINES = ("allocated", "peak_live", "peak_live_bytes", "saved", "saved_pct", "live_end", "live_end_kb")
#: what a kernel measures: the numbers of validation
MEASURED = ("allocated", "peak_live", "peak_live_bytes")
RUN_KEYS = ("kernel_release", "arch", "backend", "duration_s")
RULE = "delta = B - A; pct = 100 * delta / A, rounded to 0.1 (null when A is 0 or a side is missing)"
METRIC_TITLE = {"allocated": "allocated", "peak_live": "peak live", "peak_live_bytes": "peak live KB",
                "saved": "saved vs eager", "saved_pct": "saved %", "live_end": "live at end",
                "live_end_kb": "live KB at end"}


def _num(v):
    """A plain Python number (numpy scalars from report.build become int/float)."""
    return v.item() if hasattr(v, "item") else v


def _sub(a, b):
    """b - a, or None when either is None (float noise rounded away)."""
    if a is None or b is None:
        return None
    d = _num(b) - _num(a)
    return round(d, 6) if isinstance(d, float) else d


def _range_delta(ra, rb):
    """The delta of each end of two [low, high] ranges (None where an end is unknown)."""
    if ra is None or rb is None:
        return None
    return [_sub(x, y) for x, y in zip(ra, rb)]


def diff(a, b, a_range=None, b_range=None):
    """{"a", "b", "delta", "pct"} of one number; with ``a_range`` or
    ``b_range``, also each side's range and the delta of its ends (a side
    with a value and no range counts as [value, value])."""
    delta = _sub(a, b)
    pct = round(100.0 * delta / a, 1) if delta is not None and a else None
    out = {"a": _num(a), "b": _num(b), "delta": delta, "pct": pct}
    if a_range is not None or b_range is not None:
        ra = _as_range(a, a_range)
        rb = _as_range(b, b_range)
        out.update(a_range=ra, b_range=rb, delta_range=_range_delta(ra, rb))
    return out


def _as_range(value, rng):
    """``rng`` as a plain list; [value, value] when there is a value and no range."""
    if rng is not None:
        return [_num(x) for x in rng]
    return None if value is None else [_num(value)] * 2


def _ordered(known, *collections):
    """The keys of ``known`` any collection has, in that order, then the others in first-seen order."""
    seen = [k for k in known if any(k in c for c in collections)]
    for c in collections:
        seen += [k for k in c if k not in seen]
    return seen


def _model_objects(model):
    """The object entries of one model: its dict values that have ``allocated``."""
    return {k: v for k, v in (model or {}).items() if isinstance(v, dict) and "allocated" in v}


def _saved(model, eager, obj, o):
    """(saved, range) of one object: the report's own ``saved`` (no-fork
    designs), else eager's allocated minus the design's (range from the
    design's allocated range)."""
    if "saved" in o:
        return o["saved"], o.get("saved_range")
    e = _model_objects(eager).get(obj, {}).get("allocated")
    if e is None:
        return None, None
    rng = o.get("allocated_range")
    return _sub(o["allocated"], e), (None if rng is None else [_sub(rng[1], e), _sub(rng[0], e)])


def headline(model, eager, obj, end=None):
    """{metric: (value, range)} of the headline numbers of ``obj`` in one
    design (:data:`HEADLINES`), the live ones from ``end``, the design's
    entry in the report's last snapshot (the cover letter's table at the
    end); (None, None) for what the report lacks."""
    o = _model_objects(model).get(obj)
    if o is None:
        return {m: (None, None) for m in HEADLINES}
    out = {m: (o.get(m), o.get(f"{m}_range")) for m in ("allocated", "peak_live", "peak_live_bytes")}
    out["saved"] = _saved(model, eager, obj, o)
    out["saved_pct"] = ((model.get("saved_pct") or {}).get(obj), (model.get("saved_pct_range") or {}).get(obj))
    e = (end or {}).get(obj) or {}
    out["live_end"] = (e.get("live"), e.get("live_range"))
    out["live_end_kb"] = (e.get("kb"), e.get("kb_range"))
    return out


def _end(report, design):
    """The design's entry in the report's last snapshot (None without snapshots)."""
    snaps = report.get("snapshots") or []
    return (snaps[-1].get("designs") or {}).get(design) if snaps else None


def _side(report, path):
    """The run of one side: its path and kernel, arch, backend, duration."""
    run = report.get("run") or {}
    return {"path": path if path is not None else report.get("source"),
            **{k: _num(run.get(k)) for k in RUN_KEYS}}


def _objects_delta(ra, rb):
    """Per object: eager's allocated (objects.OBJECT.allocated_total) of A and B, their delta and pct."""
    oa, ob = _totals(ra), _totals(rb)
    out = {}
    for obj in _ordered(OBJECTS, oa, ob):
        d = diff(oa.get(obj), ob.get(obj))
        out[obj] = {"allocated_total": d["delta"], "a": d["a"], "b": d["b"], "pct": d["pct"]}
    return out


def _totals(report):
    """{object: allocated_total} of a report: objects' totals, else models.eager's allocated."""
    objs = {k: v["allocated_total"] for k, v in (report.get("objects") or {}).items()
            if isinstance(v, dict) and "allocated_total" in v}
    eager = _model_objects((report.get("models") or {}).get("eager"))
    return {**{k: v["allocated"] for k, v in eager.items()}, **objs}


def _models_delta(ra, rb, missing):
    """Per design and object, every headline number as :func:`diff`;
    what one side lacks goes to ``missing``."""
    ma, mb = ra.get("models") or {}, rb.get("models") or {}
    out = {}
    for design in _ordered(DESIGNS, ma, mb):
        da, db = ma.get(design), mb.get(design)
        _note_missing(missing, f"models.{design}", da, db)
        objs = _ordered(OBJECTS, _model_objects(da), _model_objects(db))
        out[design] = {}
        for obj in objs:
            if da is not None and db is not None:
                _note_missing(missing, f"models.{design}.{obj}", _model_objects(da).get(obj),
                              _model_objects(db).get(obj))
            ha = headline(da, ma.get("eager"), obj, _end(ra, design))
            hb = headline(db, mb.get("eager"), obj, _end(rb, design))
            out[design][obj] = {m: diff(ha[m][0], hb[m][0], ha[m][1], hb[m][1]) for m in HEADLINES}
    return out


def _note_missing(missing, key, a, b):
    """Add "KEY: only in A/B" to ``missing`` when one side is None."""
    if a is None and b is not None:
        missing.append(f"{key}: only in B")
    elif b is None and a is not None:
        missing.append(f"{key}: only in A")


def validation(ra, rb, design):
    """"A modelled as ``design``" (A's models.DESIGN) against "B measured"
    (B's models.eager: what B's kernel, running ``design``, really did):
    per object, :data:`MEASURED` as :func:`diff` (delta = B measured - A modelled)."""
    ma = _model_objects((ra.get("models") or {}).get(design))
    mb = _model_objects((rb.get("models") or {}).get("eager"))
    objects = {}
    for obj in _ordered(OBJECTS, ma, mb):
        oa, ob = ma.get(obj) or {}, mb.get(obj) or {}
        objects[obj] = {m: diff(oa.get(m), ob.get(m), oa.get(f"{m}_range"), ob.get(f"{m}_range"))
                        for m in MEASURED}
    return {"design": design, "a": f"A modelled as {design}", "b": "B measured (its eager numbers)",
            "objects": objects}


def compare(ra, rb, b_design=None, a_path=None, b_path=None):
    """The compare dict of reports ``ra`` (A) and ``rb`` (B): each side's
    run, their banners, delta.objects (eager's allocated totals),
    delta.models (every headline per design and object) and, with
    ``b_design`` (the design B's kernel ran), ``validation``; and whether
    the two kernels' anon rmap layouts differ (``rmap_layout``, rmapdiff.py)."""
    missing = []
    models = _models_delta(ra, rb, missing)
    layout = rmapdiff.diff(*((r.get("run") or {}).get("rmap_layout") for r in (ra, rb)))
    return {
        "compare_format": COMPARE_FORMAT,
        "rule": RULE,
        "see": "docs/compare.md",
        "a": _side(ra, a_path),
        "b": _side(rb, b_path),
        "banners": [f"A: {x}" for x in ra.get("banners") or []] + [f"B: {x}" for x in rb.get("banners") or []],
        "missing": missing,
        "delta": {"objects": _objects_delta(ra, rb), "models": models},
        "rmap_layout": layout,
        "validation": validation(ra, rb, b_design) if b_design else None,
        "validation_candidates": candidates(ra, rb, layout) if not b_design else None,
    }


def candidates(ra, rb, layout):
    """When B's anon rmap differs from A's (rmapdiff.rmap_changed) and no
    design is named, {design: validation} for every design B's kernel may
    run, eager included: which one it is no metadata can say, so each is
    put beside B measured. None otherwise."""
    if not rmapdiff.rmap_changed(layout):
        return None
    return {d: validation(ra, rb, d) for d in ("eager",) + B_DESIGNS}


# ------------------------------------------------------------------ rendering

def render(data, fmt):
    """The compare dict as ``fmt``: text, markdown, json or html (comparehtml.py)."""
    if fmt == "html":
        from .comparehtml import render_html
        return render_html(data)
    return {"json": render_json, "markdown": render_markdown}.get(fmt, render_text)(data)


def render_json(data):
    """The compare dict as indented JSON."""
    return json.dumps(data, indent=2, default=_jsonable) + "\n"


def _fmt(metric, v):
    """One value of ``metric``: KB for bytes and _kb, a percentage for saved_pct; "-" for a missing side."""
    if v is None:
        return "-"
    if metric.endswith("_bytes"):
        return kb(v)
    if metric.endswith("_kb"):
        return f"{v:.2f}"
    return saved(v) if metric.endswith("_pct") else str(v)


def _fmt_delta(metric, d):
    """A signed delta of ``metric``."""
    if d is None:
        return "-"
    if metric.endswith("_bytes"):
        return f"{d / 1024:+.2f}"
    return f"{d:+d}" if isinstance(d, int) and not metric.endswith("_pct") else f"{d:+.1f}"


def _cell(metric, v, rng, fmt):
    """A value, with its [low, high] when the range is not just the value."""
    if rng is None or rng == [v, v]:
        return fmt(metric, v)
    return f"{fmt(metric, v)} " + _rng([None if x is None else fmt(metric, x) for x in rng])


def _pct_cell(p):
    return "n/a" if p is None else f"{p:+.1f}%"


def _row(label, metric, d):
    """The cells of one :func:`diff`: label, number, A, B, delta, %."""
    return (label, METRIC_TITLE.get(metric, metric), _cell(metric, d["a"], d.get("a_range"), _fmt),
            _cell(metric, d["b"], d.get("b_range"), _fmt),
            _cell(metric, d["delta"], d.get("delta_range"), _fmt_delta), _pct_cell(d["pct"]))


def _table(per_object, a="A", b="B"):
    """One table of {object: {metric: diff}}: a row per object and number."""
    table = [("object", "number", a, b, "delta", "%")]
    for obj, metrics in per_object.items():
        for i, (metric, d) in enumerate(metrics.items()):
            table.append((SHORT.get(obj, obj) if i == 0 else "", metric, d))
    return [table[0]] + [_row(*r) for r in table[1:]]


def _objects_table(objects):
    table = [("object", "number", "A", "B", "delta", "%")]
    for obj, o in objects.items():
        d = {"a": o["a"], "b": o["b"], "delta": o["allocated_total"], "pct": o["pct"]}
        table.append(_row(SHORT.get(obj, obj), "allocated", d))
    return table


def _sections(data):
    """(title, table) of every table: objects, each design, validation."""
    out = [("Objects allocated over the run (eager, the kernel's own numbers)",
            _objects_table(data["delta"]["objects"]))]
    for design, per_object in data["delta"]["models"].items():
        out.append((MODEL_TITLE.get(design, design), _table(per_object)))
    for v in [data["validation"]] + list((data.get("validation_candidates") or {}).values()):
        if v is not None:
            out.append((f"Validation: A modelled as {MODEL_TITLE.get(v['design'], v['design'])} "
                        "against B measured (B's eager numbers)",
                        _table(v["objects"], f"A as {v['design']}", "B measured")))
    return out


def ask(data, tick=""):
    """What the text says about validation when none was asked for
    (``tick``: the quote around the option, "`" in Markdown)."""
    if data.get("validation_candidates"):
        return ("validation: B's anon rmap differs from A's, and no metadata says into which design: "
                f"A modelled as each design (eager too) against B measured above; {tick}--b-design{tick} "
                "names the one B runs")
    return (f"validation: not asked. When B ran a kernel with another anon rmap, {tick}--b-design "
            + "|".join(B_DESIGNS) + f"{tick} compares A modelled as that design with B measured")


def _side_line(name, s):
    dur = s["duration_s"]
    dur = f"{dur:.1f} s" if isinstance(dur, (int, float)) else "? s"
    return f"{name}: {s['path']} (kernel {s['kernel_release']} {s['arch']}, backend {s['backend']}, {dur})"


def _header(data, bang):
    """Banners, both sides, the rule, what one side lacks."""
    lines = [bang + b for b in data["banners"]]
    lines += [_side_line("A", data["a"]), _side_line("B", data["b"]),
              f"{data['rule']} ({data['see']})"]
    lines += [f"missing: {m}" for m in data["missing"]]
    lines.append(rmapdiff.line(data["rmap_layout"]))
    return lines


def render_text(data):
    """The plain-text comparison: header, then a table per section."""
    lines = ["anonscope compare"] + _header(data, "!! ") + [""]
    for title, table in _sections(data):
        lines.append(title)
        lines += text_table(table, "ll")
        lines.append("")
    if data["validation"] is None:
        lines.append(ask(data))
    return "\n".join(lines) + "\n"


def render_markdown(data):
    """The comparison as Markdown: header lines, then a pipe table per section."""
    lines = ["## anonscope compare", ""] + [f"- {x}" for x in _header(data, "**warning:** ")] + [""]
    for title, table in _sections(data):
        lines += [f"### {title}", "", *md_table(table, "ll"), ""]
    if data["validation"] is None:
        lines.append(ask(data, "`"))
    return "\n".join(lines) + "\n"
