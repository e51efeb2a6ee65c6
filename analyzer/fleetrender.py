"""Text, Markdown and JSON of a fleet report (analyzer/fleet.py): each table
built once (analyzer/tables.py) and rendered per format."""

import json

from .fleet import OBJECTS, SAVING_DESIGNS
from .tables import md_table, text_table

FORMATS = ("text", "markdown", "json")
SHORT = {"anon_vma": "AV", "anon_vma_chain": "AVC"}


def render(fleet, fmt):
    """The fleet report in ``fmt``."""
    if fmt == "json":
        return json.dumps(fleet, indent=2) + "\n"
    md = fmt == "markdown"
    out = [("## " if md else "") + f"anonscope fleet: {fleet['analysed']} recordings analysed, "
           f"{fleet['failed']} failed ({_engine(fleet['engine'])})", ""]
    for title, table, align in _tables(fleet):
        if len(table) == 1:
            continue
        out += [("### " if md else "") + title, ""]
        out += md_table(table, align) if md else text_table(table, align)
        out.append("")
    out += _failures(fleet["recordings"], md)
    return "\n".join(out).rstrip("\n") + "\n"


def _engine(e):
    """``dask at ADDRESS, N workers``."""
    return f"{e['kind']} at {e['scheduler']}, {e['workers']} workers"


def _tables(fleet):
    """(title, table, column alignment) of each section."""
    ok = [r for r in fleet["recordings"] if "error" not in r]
    return [
        ("Recordings (eager allocations; saved % AV/AVC per design)", _recordings(ok),
         "lllll"),
        ("Totals (sum of the single reports)", _totals(fleet["totals"]),
         "ll"),
        ("Saved % over the recordings", _spread(fleet["distributions"]),
         "ll"),
        ("Totals per label", _labels(fleet["by_label"]),
         "l"),
    ]


def _recordings(ok):
    """One row per analysed recording."""
    head = ["recording", "host", "kernel", "arch", "backend", "seconds", "lost", "eager AV/AVC",
            *SAVING_DESIGNS]
    rows = [[_short(r["path"]), r["host"] or "-", r["kernel"], r["arch"], r["backend"],
             f"{r['duration_s']:.1f}", r["lost"], _pair(r["designs"]["eager"], "allocated"),
             *(_saved(r["designs"].get(d)) for d in SAVING_DESIGNS)] for r in ok]
    return [head] + rows


def _short(path, width=28):
    """The last ``width`` characters of ``path``."""
    return path if len(path) <= width else "..." + path[-(width - 3):]


def _pair(d, key):
    """``AV/AVC`` values of ``key``."""
    return "/".join(str(d[o][key]) for o in OBJECTS)


def _saved(d):
    """``AV%/AVC%`` saved."""
    pct = (d or {}).get("saved_pct") or {}
    return "/".join("-" if pct.get(o) is None else f"{pct[o]:.1f}" for o in OBJECTS)


def _rng(r):
    """``[low, high]`` with ``-`` for an unknown end."""
    return "[" + ", ".join("-" if v is None else str(v) for v in r) + "]" if r else "-"


def _totals(t):
    """Design, object, allocated (range), live at the end (range)."""
    head = ["design", "object", "allocated", "range", "live at end", "range"]
    rows = [[design, obj, _dash(v["allocated"]), _rng(v["allocated_range"]), _dash(v["live_at_end"]),
             _rng(v["live_at_end_range"])] for design, objs in t.items() for obj, v in objs.items()]
    return [head] + rows


def _dash(v):
    """``-`` for None."""
    return "-" if v is None else v


def _spread(dist):
    """Design, object, n, median, p10, p90 of the saved %."""
    head = ["design", "object", "n", "median", "p10", "p90"]
    rows = [[design, obj, s["n"], _dash(s["median"]), _dash(s["p10"]), _dash(s["p90"])]
            for design, objs in dist.items() for obj, s in objs.items()]
    return [head] + rows


def _labels(by):
    """Label, recordings, then allocated AV and AVC per design."""
    designs = ("eager",) + SAVING_DESIGNS
    head = ["label", "recordings"] + [f"{d} {SHORT[o]}" for d in designs for o in OBJECTS]
    rows = [[label, g["recordings"]] + [_dash(g["totals"].get(d, {}).get(o, {}).get("allocated"))
                                          for d in designs for o in OBJECTS] for label, g in by.items()]
    return [head] + rows


def _failures(recordings, md):
    """The recordings that could not be analysed, with their errors."""
    bad = [r for r in recordings if "error" in r]
    if not bad:
        return []
    out = [("### " if md else "") + "Not analysed", ""]
    return out + [f"- {r['path']}: {r['error']} (exit {r['exit_code']})" for r in bad]
