"""Render the report dict (report.py) as one self-contained HTML file.

``anonanalyze report RUN --format html -o report.html`` (docs/html.md):
styles inline, plots drawn with matplotlib (Agg, no display) as SVG and
inlined, no script and no URL outside the file, so it opens offline in
any browser. Every text of the report is escaped (:func:`html.escape`);
the tables' cells are the values the text and Markdown reports print
(render.py's helpers), and every fidelity and rule ("see") of the report
is listed at the end.
"""

import html
import io
import re

from . import render

DESIGNS = ("eager", "lazy", "nofork", "nofork_clone")
OBJECTS = ("anon_vma", "anon_vma_chain", "vm_area_struct")
#: one colour per design in every plot
COLORS = {"eager": "#1f77b4", "lazy": "#d62728", "nofork": "#2ca02c", "nofork_clone": "#9467bd",
          "cow_context": "#ff7f0e"}
#: the objects of the stacked process bars
OBJ_COLORS = {"anon_vma": "#1f77b4", "anon_vma_chain": "#ff7f0e", "vm_area_struct": "#7f7f7f"}
TOP_PROCESSES = 15
#: the walk designs' tick labels, short enough not to overlap
WALK_LABEL = {"eager": "eager\n(measured)", "lazy": "ANON_VMA\n_LAZY", "cow_context": "CoW\ncontext",
              "nofork": "no-fork\n(opt-out)", "nofork_clone": "no-fork\nat clone"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em auto;
       max-width: 1180px; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.5em; border-bottom: 2px solid #1f77b4; padding-bottom: .2em; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .5em 0 1em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .2em .5em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f0f4f8; }
.banner { background: #fde8e8; border: 1px solid #d62728; padding: .5em; margin: .5em 0; font-weight: bold; }
.warn { color: #8a4b00; }
.note { color: #555; font-size: .9em; }
.fid { color: #555; font-size: .85em; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: .85em; }
code { background: #f4f4f4; padding: 0 .2em; }
"""


# ------------------------------------------------------------------ HTML bits

def esc(value):
    """Any value as escaped HTML text (None as an empty string)."""
    return "" if value is None else html.escape(str(value), quote=True)


def _is_num(value):
    """Whether a cell reads as a number (right-aligned)."""
    return bool(re.fullmatch(r"[-+]?[\d.,]+(e[-+]?\d+)?( ?(%|KB|B|ns|us|ms|s))?( \[.*\])?", str(value).strip()))


def table_html(table, cls=None):
    """A table (render.py's form: the header row, then the rows) as an
    HTML table; every cell escaped, numbers right-aligned."""
    head, *rows = table
    out = [f'<table{f" class={esc(cls)!r}" if cls else ""}>', "<thead><tr>"
           + "".join(f"<th>{esc(c)}</th>" for c in head) + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="num">{esc(c)}</td>' if _is_num(c) else f"<td>{esc(c)}</td>"
                                    for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def para(text, cls=None):
    """One escaped paragraph."""
    return f'<p{f" class={esc(cls)!r}" if cls else ""}>{esc(text)}</p>'


def fid(node):
    """A node's fidelity and rule as a small paragraph ('' without either)."""
    if not isinstance(node, dict) or not (node.get("fidelity") or node.get("see")):
        return ""
    parts = []
    if node.get("fidelity"):
        parts.append(f"fidelity: {node['fidelity']}")
    if node.get("see"):
        parts.append(f"see {node['see']}")
    return para("; ".join(parts), "fid")


def section(title, body, ident):
    """An <h2> section."""
    return f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>\n{body}\n</section>'


# ------------------------------------------------------------------- plots

def _mpl():
    """matplotlib on the Agg backend (no display), with SVG settings that
    make a file independent of fonts and stable from run to run."""
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "anonscope",
                                "font.size": 10, "axes.titlesize": 11})
    from matplotlib.figure import Figure
    return Figure


class Plots:
    """Counts the figures of one document, so that the ids inside each
    inlined SVG (clip paths, glyphs) are unique in the page."""

    def __init__(self):
        self.n = 0

    def figure(self, width=9.0, height=3.6, ncols=1):
        """A new figure with ``ncols`` axes side by side (constrained layout: no overlapping text)."""
        fig = _mpl()(figsize=(width, height), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
        return fig, list(axes)

    def svg(self, fig, caption):
        """The figure as an inline <svg> in a <figure> with its caption."""
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
        text = buf.getvalue()
        text = text[text.index("<svg"):]
        self.n += 1
        prefix = f"f{self.n}-"
        text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
        text = re.sub(r'(url\(#|href="#)([^")]+)', lambda m: f"{m.group(1)}{prefix}{m.group(2)}", text)
        return f"<figure>{text}<figcaption>{esc(caption)}</figcaption></figure>"


def _nan(v):
    """None as NaN (a gap in a curve)."""
    return float("nan") if v is None else float(v)


def _snapshot_series(snaps, design, objs):
    """Seconds, KB, low KB and high KB of ``objs`` summed, per snapshot (None
    where one of them is unknown), and whether an upper end is unknown."""
    xs, ys, lo, hi = [], [], [], []
    for s in snaps:
        d = s["designs"].get(design)
        if d is None:
            continue
        vals = [d[o]["kb"] for o in objs]
        lows = [d[o]["kb_range"][0] for o in objs]
        highs = [d[o]["kb_range"][1] for o in objs]
        xs.append(s["ts_ns"] / 1e9)
        ys.append(None if None in vals else sum(vals))
        lo.append(None if None in lows else sum(lows))
        hi.append(None if None in highs else sum(highs))
    return xs, ys, lo, hi


def live_plot(plots, snaps, objs, title):
    """Live KB per design over the run at every snapshot, the [low, high]
    range as a band (the low end dotted where no upper end is known)."""
    fig, (ax,) = plots.figure()
    open_high = False
    for design in DESIGNS:
        xs, ys, lo, hi = _snapshot_series(snaps, design, objs)
        if not xs:
            continue
        c = COLORS[design]
        ax.plot(xs, [_nan(v) for v in ys], marker="o", ms=3, color=c, label=render.MODEL_TITLE[design])
        known = [(x, a, b) for x, a, b in zip(xs, lo, hi) if a is not None and b is not None]
        if known:
            ax.fill_between([k[0] for k in known], [k[1] for k in known], [k[2] for k in known],
                            color=c, alpha=0.15, linewidth=0)
        if any(b is None for b in hi) and any(a is not None and y is not None and a != y
                                              for a, y in zip(lo, ys)):
            open_high = True
            ax.plot(xs, [_nan(v) for v in lo], linestyle=":", color=c, linewidth=1)
    for s in snaps:
        if s["source"] == "mark":
            ax.axvline(s["ts_ns"] / 1e9, color="#999", linestyle="--", linewidth=0.8)
    ax.set_xlabel("time into the run (s)")
    ax.set_ylabel("live KB (objects x slab slot)")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    # beside the axes, never over a curve (constrained layout makes room)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)
    marks = [s["label"] for s in snaps if s["source"] == "mark"]
    caption = (f"{title}: live KB per design at each snapshot ({len(snaps)}: start, marks, slab samples, end); "
               "band: the [low, high] range where the design's answer depends on what is not recorded")
    if open_high:
        caption += "; dotted: the low end where no upper end is known (range [low, ?])"
    if marks:
        caption += "; dashed vertical lines: the marks " + ", ".join(marks)
    return plots.svg(fig, caption + " (docs/models.md#snapshots).")


def curve_plot(plots, r):
    """Without snapshots: the eager live curves the report has (change since
    the run's start, objects x object size)."""
    fig, (ax,) = plots.figure()
    drawn = False
    for obj in OBJECTS:
        o = r["objects"].get(obj) or {}
        pts = o.get("live_over_time") or []
        if pts:
            size = o.get("object_size") or 0
            ax.plot([p[0] for p in pts], [p[1] * size / 1024 for p in pts], label=render.SHORT[obj],
                    color=OBJ_COLORS[obj])
            drawn = True
    ax.set_xlabel("time into the run (s)")
    ax.set_ylabel("live KB, change since start")
    ax.set_title("Eager live objects over the run (no snapshots)")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(loc="best", fontsize=8)
    return plots.svg(fig, "Eager live KB over the run (objects x object size, change since the run's start; "
                          "docs/models.md#eager).")


def _hbars(ax, labels, series, xlabel, title):
    """Horizontal stacked bars: ``series`` is [(name, values, colour)]."""
    ys = list(range(len(labels)))
    left = [0.0] * len(labels)
    for name, values, color in series:
        ax.barh(ys, values, left=left, color=color, label=name)
        left = [a + b for a, b in zip(left, values)]
    ax.set_yticks(ys, labels=labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    if labels:
        ax.legend(loc="lower right", fontsize=8)


def _grouped_bars(ax, groups, series, ylabel, title, log=False):
    """Vertical grouped bars: one group per ``groups`` label, ``series`` is
    [(name, values, colour)] with None for a bar that is not known."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (name, values, color) in enumerate(series):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [0 if v is None else v for v in values], width=width, color=color, label=name)
    ax.set_xticks(range(len(groups)), labels=groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if log:
        ax.set_yscale("symlog", linthresh=1)
    ax.grid(axis="y", alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize=8)


# ---------------------------------------------------------------- sections

def header_html(r):
    """Title, banners and the warnings that are not banners."""
    run = r["run"]
    out = [f"<h1>anonscope report: anon_vma / anon_vma_chain on {esc(run.get('kernel_release'))} "
           f"({esc(run.get('arch'))})</h1>", para(f"Recording: {r.get('source')}; {render._run_line(run)}.")]
    out += [f'<div class="banner">{esc(b)}</div>' for b in r["banners"]]
    plain = render._plain_warnings(r)
    if plain:
        out.append('<ul class="warn">' + "".join(f"<li>warning: {esc(w)}</li>" for w in plain) + "</ul>")
    return "\n".join(out)


def _fmt_duration(v):
    return f"{v:.3f} s" if isinstance(v, (int, float)) else "?"


def run_html(r, probes):
    """The run's metadata, lost events by source and kind, and the probes
    attached and why the others were not."""
    run = r["run"]
    tgt = run.get("target")
    target = ", ".join(f"{k}={v}" for k, v in tgt.items() if v is not None) if isinstance(tgt, dict) else tgt
    rows = [("host", run.get("hostname")), ("kernel", run.get("kernel_release")), ("arch", run.get("arch")),
            ("backend", run.get("backend")),
            ("duration", _fmt_duration(run.get("duration_s"))), ("events", run.get("events")),
            ("rows", run.get("rows")), ("lost events", run.get("lost_events")),
            ("object events lost", run.get("object_events_lost")), ("target", target),
            ("start", run.get("start_time")), ("end", run.get("end_time")),
            ("stop reason", run.get("stop_reason")), ("complete", run.get("complete")),
            ("cut short", run.get("cut_short")), ("page size", run.get("page_size")),
            ("collector version", run.get("tool_version")), ("schema version", r.get("schema_version")),
            ("analyzer version", r.get("analyzer_version")),
            ("object sizes", ", ".join(f"{k} {v['object_size']} B" for k, v in r["objects"].items()))]
    out = [table_html([("", "value"), *rows])]
    lost = [("source", "lost")] + list((run.get("lost_by_source") or {}).items())
    kinds = run.get("lost_by_event")
    out.append("<h3>Lost events</h3>")
    out.append(table_html(lost))
    if kinds is None:
        out.append(para("Lost events by kind: not recorded (schema before v5): every lost event may have "
                        "been an object event."))
    else:
        possibly = run.get("possibly_lost_by_event") or {}
        out.append(table_html([("event kind", "lost (buffer)", "possibly lost (skipped program runs)"),
                               *((k, v, possibly.get(k, 0)) for k, v in kinds.items())]))
    out.append("<h3>Probes</h3>")
    if probes:
        out.append(table_html([("probe", "attached", "why / what for"),
                               *((p.get("name"), "yes" if p.get("attached") else "no", p.get("reason"))
                                 for p in probes if isinstance(p, dict))]))
    else:
        out.append(para("The recording's metadata lists no probes."))
    return section("Run", "\n".join(out), "run")


def _sorted_snaps(r):
    return sorted(r.get("snapshots") or [], key=lambda s: s["ts_ns"])


def live_html(r, plots):
    """Live KB per design over time: anon_vma + AVC, then each object."""
    snaps = _sorted_snaps(r)
    if not snaps:
        return section("Live memory over the run", curve_plot(plots, r), "live")
    out = [live_plot(plots, snaps, ("anon_vma", "anon_vma_chain"), "anon_vma + AVC")]
    out += [live_plot(plots, snaps, (obj,), obj) for obj in OBJECTS]
    table = [("snapshot", "source", "time (s)", "design", "anon_vma KB", "AVC KB", "VMA KB")]
    for s in snaps:
        for design, d in s["designs"].items():
            table.append((s["label"], s["source"], f"{s['ts_ns'] / 1e9:.3f}", design,
                          *(render._kb_cell(d[o]["kb"], d[o]["kb_range"]) for o in OBJECTS)))
    out.append("<details><summary>Every snapshot's values</summary>" + table_html(table) + "</details>")
    return section("Live slab memory per design over the run", "\n".join(out), "live")


def machine_table(snap):
    """The "Against the machine" shares at ``snap`` (rule S7), or None without meminfo."""
    den = snap.get("denominators")
    if not den:
        return None
    share = render._share
    table = [("design", "anon_vma + AVC KB", "% of Slab", "% of SUnreclaim", "% of MemTotal", "% of PageTables",
              "saved KB", "saved % of MemTotal", "saved % of Slab")]
    for design in DESIGNS:
        d = den["designs"].get(design)
        if d is None:
            continue
        p, s = d["rmap_pct"], d["saved_pct"]
        saved = design != "eager" and d["saved_bytes"] is not None
        table.append((design, render.kb(d["rmap_bytes"]) if d["rmap_bytes"] is not None else "?",
                      share(p["Slab"]), share(p["SUnreclaim"]), share(p["MemTotal"]), share(p.get("PageTables")),
                      render.kb(d["saved_bytes"]) if saved else "-", share(s["MemTotal"]) if saved else "-",
                      share(s["Slab"]) if saved else "-"))
    return table


def _cover_block(r, snap):
    """The cover-letter tables of one snapshot, who holds the memory and the machine's shares."""
    out = []
    for design in ("lazy", "nofork", "nofork_clone"):
        d = snap["designs"][design]
        out.append(f"<h3>{esc(render.MODEL_TITLE[design])}</h3>")
        out.append(table_html(render.cover_table(snap, design), "cover"))
        out.append(fid(d))
    out.append(para(f"Eager: {snap['designs']['eager']['fidelity']}.", "fid"))
    who = render.holders_line(snap, r["processes"].get("fork_shapes"))
    if who:
        out.append(para(who))
    mt = machine_table(snap)
    if mt:
        den = snap["denominators"]
        out.append(f"<h3>Against the machine (/proc/meminfo at {den['sample_ts_ns'] / 1e9:.1f} s; "
                   "anon_vma + AVC, docs/models.md#snapshots S7)</h3>")
        out.append(table_html(mt, "machine"))
        out.append(para("meminfo (KB): " + ", ".join(f"{k} {v}" for k, v in den["kb"].items())))
    else:
        out.append(para("Against the machine: no /proc/meminfo sample at this snapshot."))
    return "\n".join(out)


def cover_html(r, at):
    """The cover letter's table at the chosen snapshot (render.pick_snapshot),
    and at the other marks folded away."""
    snap = render.pick_snapshot(r, at)
    if snap is None:
        return section("Cover letter table", para("No snapshot in the report."), "cover")
    out = [para(f"Live slab memory at snapshot {snap['label']} ({snap['source']}, {snap['ts_ns'] / 1e9:.1f} s "
                "into the run): eager kernel (before) vs each design (after), KB = live objects x slab slot, "
                "slabinfo's active KB; [low, high] where the design's answer depends on what is not recorded "
                "(docs/models.md#snapshots)."), f'<div id="chosen-snapshot" data-label="{esc(snap["label"])}">',
           _cover_block(r, snap), "</div>"]
    for other in r.get("snapshots") or []:
        if other["source"] == "mark" and other is not snap:
            out.append(f"<details><summary>At mark {esc(other['label'])} ({other['ts_ns'] / 1e9:.1f} s)</summary>"
                       + _cover_block(r, other) + "</details>")
    return section(f"Cover letter table at {snap['label']}", "\n".join(out), "cover")


def models_html(r, plots):
    """Objects allocated over the run per design: bars with their range, and the table."""
    models = r["models"]
    names = list(models)
    fig, axes = plots.figure(ncols=2)
    for ax, obj in zip(axes, ("anon_vma", "anon_vma_chain")):
        vals = [models[m][obj]["allocated"] for m in names]
        rng = [models[m][obj].get("allocated_range") or [v, v] for m, v in zip(names, vals)]
        lo = [v - (a if a is not None else v) for v, (a, _) in zip(vals, rng)]
        hi = [(b if b is not None else v) - v for v, (_, b) in zip(vals, rng)]
        ax.bar(range(len(names)), vals, color=[COLORS.get(m, "#777") for m in names],
               yerr=[lo, hi], capsize=4, ecolor="#333")
        ax.set_xticks(range(len(names)), labels=[render.MODEL_TITLE.get(m, m).replace(" (", "\n(") for m in names],
                      fontsize=8)
        ax.set_ylabel("objects allocated over the run")
        ax.set_title(f"{render.SHORT[obj]} allocated per design")
        ax.grid(axis="y", alpha=0.3)
    out = [plots.svg(fig, "Objects allocated over the run per design; error bars: the [low, high] range "
                          "(docs/models.md#lazy-bounds, #nofork-bounds)."),
           table_html(render.models_table(models))]
    return section("Models: objects allocated over the run", "\n".join(out), "models")


def processes_html(r, plots):
    """The processes holding the most anon_vma + AVC bytes (eager), stacked bars and a table."""
    p = r["processes"]
    top = sorted(p.get("by_process") or [], key=lambda e: -e["bytes"])[:TOP_PROCESSES]
    out = [para(f"Processes: {p['seen']} seen, {p['forking']} forking, {p['leaf']} leaf "
                f"({p['born_in_run']} born and {p['exited_in_run']} exited in the run, "
                f"{p['process_forks']} process forks).")]
    if not top:
        out.append(para("No process made an anon_vma or AVC during the run."))
        return section("Top processes by anon_vma + AVC bytes", "\n".join(out + [fid(p)]), "processes")
    sizes = {o: r["objects"][o]["object_size"] for o in ("anon_vma", "anon_vma_chain")}
    labels = [f"{e['comm']} {e['tgid']}" for e in top]
    fig, (ax,) = plots.figure(height=max(2.5, 0.32 * len(top) + 1.2))
    _hbars(ax, labels, [(render.SHORT[o], [e[o] * sizes[o] / 1024 for e in top], OBJ_COLORS[o])
                        for o in ("anon_vma", "anon_vma_chain")],
           "KB (objects x object size)", f"Top {len(top)} processes by anon_vma + AVC bytes (eager)")
    out.append(plots.svg(fig, "anon_vma and AVC bytes each process made during the run under the eager kernel "
                              "(objects x object size), largest first."))
    table = [("tgid", "comm", "anon_vma", "AVC", "KB", "forks", "for children: anon_vma", "AVC", "KB")]
    for e in top:
        c = e["for_children"]
        table.append((e["tgid"], e["comm"], e["anon_vma"], e["anon_vma_chain"], render.kb(e["bytes"]),
                      e["process_forks"], c["anon_vma"], c["anon_vma_chain"], render.kb(c["bytes"])))
    out += [table_html(table), fid(p)]
    return section("Top processes by anon_vma + AVC bytes", "\n".join(out), "processes")


def allocations_html(r, plots):
    """Allocations by path per object (eager), one bar chart per object, and a table."""
    objs = [o for o in OBJECTS if o in r["objects"]]
    fig, axes = plots.figure(height=3.2, ncols=len(objs))
    table = [("object", "path", "allocated")]
    for ax, obj in zip(axes, objs):
        paths = r["objects"][obj]["allocated"]
        ax.bar(range(len(paths)), list(paths.values()), color=OBJ_COLORS[obj])
        ax.set_xticks(range(len(paths)), labels=list(paths), fontsize=8, rotation=30, ha="right")
        ax.set_ylabel("objects allocated")
        ax.set_title(f"{render.SHORT[obj]} by allocation path")
        ax.grid(axis="y", alpha=0.3)
        table += [(obj, k, v) for k, v in paths.items()]
    out = [plots.svg(fig, "Eager allocations over the run by the path that made them (docs/models.md#eager)."),
           table_html(table)] + [fid(r["objects"][o]) for o in objs[:1]]
    return section("Allocations by path", "\n".join(out), "allocations")


def _hist_rows(hists):
    """{low: (high, {design: count})} over the buckets of every histogram
    in ``hists`` ({design: [[low, high, count]]}), lows in order."""
    rows = {}
    for design, hist in hists.items():
        for low, high, count in hist or []:
            rows.setdefault(low, (high, {}))[1][design] = count
    return dict(sorted(rows.items()))


def _bucket(low, high, fmt=str):
    """A histogram bucket's tick label."""
    return fmt(low) if low == high else f"{fmt(low)}-\n{fmt(high)}"


def hist_plot(ax, hists, fmt, xlabel, title):
    """Per design, the log2 histogram bars of one walk statistic
    (walks.py visits_hist / time_hist_ns), on the union of their buckets;
    a log count axis when the counts span more than 50x."""
    rows = _hist_rows(hists)
    labels = [_bucket(low, high, fmt) for low, (high, _) in rows.items()]
    series = [(render.WALK_TITLE[d], [c.get(d, 0) for _, c in rows.values()], COLORS[d]) for d in hists]
    counts = [v for _, values, _ in series for v in values if v]
    _grouped_bars(ax, labels, series, "walks", title, log=bool(counts) and max(counts) > 50 * min(counts))
    ax.set_xlabel(xlabel)
    if ax.get_legend():
        ax.get_legend().remove()


def walks_html(r, plots):
    """rmap walks per design: visits and durations (log2 histograms) and the table."""
    w = r.get("walks")
    if not w or not w.get("available"):
        note = (w or {}).get("note", "no walks section in the report")
        return section("rmap walks per design", para(f"Walk visits and durations: not recorded ({note}).")
                       + fid(w), "walks")
    designs = [d for d in render.WALK_DESIGNS if d in w]
    fig, axes = plots.figure(height=4.2, ncols=2)
    hist_plot(axes[0], {d: w[d].get("visits_hist") for d in designs}, str,
              "visits per walk (VMAs; CoW context: mms)", "Walk visits")
    timed = {d: w[d]["time_hist_ns"] for d in designs if w[d].get("time_hist_ns")}
    hist_plot(axes[1], timed, render.ns, "walk time", "Walk durations (measured walks)")
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=8)
    unknown = [render.WALK_TITLE[d] for d in designs if w[d]["count"] and w[d].get("time_walks", 0) < w[d]["count"]]
    out = [plots.svg(fig, f"rmap walks of {w['walks']} measured folios re-costed per design, power-of-two "
                          "histograms (walks per bucket): visits (eager, lazy, no-fork: VMAs; "
                          "CoW context: mms) and the time of the walks whose time is measured; "
                          + (f"time unknown, never 0, for the re-costed walks of {', '.join(unknown)} "
                             if unknown else "") + "(docs/models.md#walks-recorded)."),
           table_html(render._walks_md_table(w))]
    out += [para(m) for m in render._measured_parts(w)]
    out += [para(f"{render.WALK_TITLE[d]}: fidelity: {w[d].get('fidelity')}", "fid") for d in designs]
    if w.get("see"):
        out.append(para(f"see {w['see']}", "fid"))
    return section("rmap walks per design", "\n".join(out), "walks")


def locks_html(r, plots):
    """Lock waits on anon_vma root rwsems: per lock taker (bars) and the heaviest roots."""
    lk = r.get("locks")
    title = "Lock waits on anon_vma root rwsems"
    if not lk:
        return section(title, para("No lock section in the report."), "locks")
    if lk["status"] in ("not available", "not recorded", "no waits"):
        return section(title, para(f"{lk['status']}: {lk['note']}.") + fid(lk), "locks")
    out = [para(f"{lk['waits']} waits on {lk['roots']} roots, {render.ns(lk['total_wait_ns'])} in total, "
                f"wait {render._pcts(lk['wait_ns'])}.")]
    funcs = list(lk["by_func"])
    fig, axes = plots.figure(height=3.4, ncols=2)
    axes[0].bar(range(len(funcs)), [lk["by_func"][f]["waits"] for f in funcs], color="#3182bd")
    axes[0].set_xticks(range(len(funcs)), labels=funcs, fontsize=8)
    axes[0].set_ylabel("waits")
    axes[0].set_title("Waits per lock taker")
    axes[0].grid(axis="y", alpha=0.3)
    stat_colors = {"p50": "#9ecae1", "p99": "#3182bd", "max": "#08519c"}
    _grouped_bars(axes[1], funcs, [(k, [_us(lk["by_func"][f]["wait_ns"][k]) for f in funcs], c)
                                   for k, c in stat_colors.items()], "wait (us)", "Wait per lock taker")
    out.append(plots.svg(fig, "Waits that slept for an anon_vma root rwsem, per lock taker: count and "
                              "p50/p99/max wait (docs/models.md#locks)."))
    out.append(table_html(render._lock_takers_table(lk)))
    roots = [("root (lock_id)", "owner", "waits", "total", "max")]
    roots += [(e["lock_id"], render._lock_owner(e), e["waits"], render.ns(e["total_wait_ns"]),
               render.ns(e["max_wait_ns"])) for e in lk["top_roots"][:10]]
    out += ["<h3>Heaviest roots</h3>", table_html(roots), fid(lk)]
    return section(title, "\n".join(out), "locks")


def _us(v):
    """Nanoseconds as microseconds (None stays None)."""
    return None if v is None else v / 1e3


def other_html(r):
    """The census and the moves, in the Markdown report's sentences."""
    out = []
    if "census" in r:
        out += [para(line) for line in render._census_lines(r["census"], md=True)]
    if "moves" in r:
        out.append(para(render._moves_line(r["moves"])))
    return section("Census and moves", "\n".join(out), "census") if out else ""


def fidelity_rows(node, path=""):
    """(path, fidelity, see) of every node of ``node`` that has a fidelity
    or a rule, with its path in the report."""
    rows = []
    if isinstance(node, dict):
        if isinstance(node.get("fidelity"), str) or isinstance(node.get("see"), str):
            rows.append((path or "(report)", node.get("fidelity") or "", node.get("see") or ""))
        for key, value in node.items():
            rows += fidelity_rows(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            rows += fidelity_rows(value, f"{path}[{i}]")
    return rows


def fidelity_html(r, at):
    """Every number's fidelity and rule, as the text report gives them (a table)."""
    rows = fidelity_rows({k: v for k, v in r.items() if k != "snapshots"})
    snap = render.pick_snapshot(r, at)
    if snap is not None:
        rows += fidelity_rows(snap, f"snapshots[{snap['label']}]")
    return section("Fidelity and rules of every number",
                   para("Where each number comes from: its fidelity (exact, estimate, bounds) and the rule "
                        "(docs/models.md) it follows. Snapshots: the chosen one; the others share its rules.")
                   + table_html([("number", "fidelity", "see"), *rows], "fidelity"), "fidelity")


def render_html(report, at=None, probes=None):
    """The report as one self-contained HTML page (no script, no external
    URL). ``at``: the snapshot of the cover letter's table
    (render.pick_snapshot: None for the last mark, else the end);
    ``probes``: the recording's metadata ``probes`` (attached and why
    not), which the report dict does not hold."""
    r = report
    plots = Plots()
    parts = [header_html(r), run_html(r, probes), cover_html(r, at), live_html(r, plots), models_html(r, plots),
             processes_html(r, plots), allocations_html(r, plots), walks_html(r, plots), locks_html(r, plots),
             other_html(r), fidelity_html(r, at)]
    return page(f"anonscope report: {r.get('source')}", parts,
                f"anonscope {r.get('analyzer_version')}; report format {r.get('report_format')}; "
                "plots: matplotlib (SVG, inline).")


def page(title, parts, footer):
    """A whole page: ``title``, the non-empty HTML ``parts`` in order, and
    the ``footer`` text; the styles inline."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(p for p in parts if p)
            + f'\n<footer class="note">{esc(footer)}</footer>\n</body>\n</html>\n')
