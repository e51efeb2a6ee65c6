"""``anonanalyze compare A B --format html``: the comparison (compare.py's
dict) as one self-contained page, with the tables of the text and Markdown
comparison (compare._sections, the same cells) and a plot of what each
design allocates on A and on B (matplotlib SVG inline, as htmlreport.py
draws; docs/compare.md)."""

from . import compare, rmapdiff
from .htmlreport import Plots, _grouped_bars, esc, page, para, section, table_html
from .render import MODEL_TITLE

#: the two sides' colours in the plot
SIDE_COLORS = {"A": "#1f77b4", "B": "#ff7f0e"}


def render_html(data):
    """The comparison as an HTML page."""
    plots = Plots()
    parts = [_header_html(data), allocated_plot(plots, data)]
    for i, (title, table) in enumerate(compare._sections(data)):
        parts.append(section(title, table_html(table, "compare"), f"table-{i}"))
    if data["validation"] is None:
        parts.append(para(compare.ask(data), "note"))
    return page(f"anonscope compare: {data['a']['path']} and {data['b']['path']}", parts,
                f"anonscope compare format {data['compare_format']}; plots: matplotlib (SVG, inline).")


def _header_html(data):
    """Title, banners, both sides, the rule and what one side lacks."""
    out = ["<h1>anonscope compare</h1>"]
    out += [f'<div class="banner">{esc(b)}</div>' for b in data["banners"]]
    out += [para(compare._side_line(name, data[key])) for name, key in (("A", "a"), ("B", "b"))]
    out.append(para(f"{data['rule']} ({data['see']})", "note"))
    out.append(para(rmapdiff.line(data["rmap_layout"])))
    if data["missing"]:
        out.append('<ul class="warn">' + "".join(f"<li>missing: {esc(m)}</li>" for m in data["missing"]) + "</ul>")
    return "\n".join(out)


def allocated_plot(plots, data):
    """anon_vma + AVC allocated over the run per design, A beside B (a bar
    is left at 0 where a side lacks the number)."""
    models = data["delta"]["models"]
    designs = list(models)
    series = [(side, [_rmap_allocated(models[d], key) for d in designs], SIDE_COLORS[side])
              for side, key in (("A", "a"), ("B", "b"))]
    fig, (ax,) = plots.figure(height=3.4)
    _grouped_bars(ax, [MODEL_TITLE.get(d, d) for d in designs], series, "objects allocated",
                  "anon_vma + anon_vma_chain allocated over the run, per design")
    return plots.svg(fig, "Bars: models.DESIGN.anon_vma.allocated + anon_vma_chain.allocated of each "
                          "recording (compare JSON delta.models.DESIGN.OBJECT.allocated.a and .b).")


def _rmap_allocated(per_object, side):
    """anon_vma + AVC ``allocated`` of one side, None when either is unknown."""
    values = [per_object.get(o, {}).get("allocated", {}).get(side) for o in ("anon_vma", "anon_vma_chain")]
    return None if None in values else sum(values)
