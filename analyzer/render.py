"""Render the report dict (report.py) as text, Markdown or JSON.

Its banners (lost object events, a recording cut short, rows missing) are
the first lines of every format.
"""

import json

from .tables import md_table, text_table

OBJS = ("anon_vma", "anon_vma_chain")
SHORT = {"anon_vma": "anon_vma", "anon_vma_chain": "AVC", "vm_area_struct": "VMA"}
MODEL_TITLE = {"eager": "eager (kernel today)", "lazy": "ANON_VMA_LAZY",
               "nofork": "no-fork (opt-out)", "nofork_clone": "no-fork set at clone"}


FORMATS = ("text", "markdown", "json", "csv", "html")
#: -o suffix -> format, when --format is not given
SUFFIX_FORMAT = {".md": "markdown", ".markdown": "markdown", ".json": "json", ".csv": "csv",
                 ".html": "html", ".htm": "html"}


def render(report, fmt, at=None, probes=None):
    """``at``: the snapshot label of the cover letter's table (markdown,
    text, html); None: the last mark, else the end (:func:`pick_snapshot`).
    ``probes``: the recording's metadata ``probes``, shown by html only."""
    if fmt == "html":
        from .htmlreport import render_html  # matplotlib: imported only for html
        return render_html(report, at, probes)
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "markdown":
        return render_markdown(report, at)
    return render_text(report, at)


class UnknownSnapshot(ValueError):
    """--at names no snapshot of the report."""


def pick_snapshot(report, at=None):
    """The snapshot labelled ``at``; None: the last mark, else the last snapshot (None if none)."""
    snaps = report.get("snapshots") or []
    if at is not None:
        for s in snaps:
            if s["label"] == at:
                return s
        raise UnknownSnapshot(f"no snapshot labelled {at!r}; the report has: "
                              + ", ".join(s["label"] for s in snaps))
    marks = [s for s in snaps if s["source"] == "mark"]
    return (marks or snaps)[-1] if snaps else None


CSV_COLUMNS = ("label", "source", "ts_s", "design", "object", "live", "live_low", "live_high",
               "kb", "kb_low", "kb_high", "slot_bytes")


def render_csv(report):
    """The snapshots as a time series: one line per snapshot, design and
    object (live objects and KB, with the range)."""
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for snap in report.get("snapshots") or []:
        for design, d in snap["designs"].items():
            for obj in SHORT:
                v = d[obj]
                w.writerow([snap["label"], snap["source"], f"{snap['ts_ns'] / 1e9:.6f}", design, obj,
                            _blank(v["live"]), _blank(v["live_range"][0]), _blank(v["live_range"][1]),
                            _blank(v["kb"]), _blank(v["kb_range"][0]), _blank(v["kb_range"][1]),
                            v["slot_bytes"]])
    return buf.getvalue()


def _blank(v):
    return "" if v is None else v


def render_json(report):
    """The report as indented JSON; with banners, they are the first keys
    (after the lost-events warning when object events were lost)."""
    data = dict(report)
    if report["banners"]:
        # first keys in the file, so the first lines say so
        data = {"banners": report["banners"], **report}
        if report["run"]["object_events_lost"]:
            data = {"lost_events_warning": report["banners"][0], **data}
    return json.dumps(data, indent=2, default=_jsonable) + "\n"


def _plain_warnings(r):
    """Warnings that are not banners."""
    return r["warnings"][len(r["banners"]):]


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def kb(nbytes):
    """Bytes as KB, with two decimals."""
    return f"{nbytes / 1024:.2f}"


def pct_change(before, after):
    """The change from ``before`` to ``after`` as a signed percentage; "n/a"
    when ``before`` is 0 and ``after`` is not, "0.0%" when both are."""
    if not before:
        return "n/a" if after else "0.0%"
    return f"{100.0 * (after - before) / before:+.1f}%"


def saved(value):
    """A saved percentage with one decimal; "n/a" for None."""
    return "n/a" if value is None else f"{value:.1f}%"


def _rng(r):
    """A [low, high] range; an end that is not known (None) prints as ?."""
    return "[" + ", ".join("?" if v is None else str(v) for v in r) + "]"


def _vma_growth(g):
    """The lazy VMA's growth in the slab's unit, the slot, beside the series' claim."""
    series = g["series_cover_letter_pct"]
    return (f"{g['bytes_per_vma']} B more per VMA, slab slot {g['slot_bytes'][0]} -> {g['slot_bytes'][1]} B "
            f"(+{g['slot_growth_pct']}%, range {_rng(g['slot_growth_range'])} B: 0 if the fields fit in holes; "
            f"the series' table: +{series['after_boot']}% after boot, +{series['24_apps_launched']}% "
            "with 24 apps)")


def ns(value):
    """Nanoseconds for people: 460 ns, 12.3 us, 50.7 ms, 2.03 s ('-' for None)."""
    if value is None:
        return "-"
    v = float(value)
    if v < 1e3:
        return f"{int(v)} ns"
    if v < 1e6:
        return f"{v / 1e3:.1f} us"
    if v < 1e9:
        return f"{v / 1e6:.1f} ms"
    return f"{v / 1e9:.2f} s"


def _pcts(st):
    return f"p50 {ns(st['p50'])}, p99 {ns(st['p99'])}, max {ns(st['max'])}"


def _run_line(run):
    dur = run.get("duration_s")
    dur = f"{dur:.1f} s" if isinstance(dur, (int, float)) else "? s"
    host = f"host {run['hostname']}, " if run.get("hostname") else ""
    return (f"{host}kernel {run.get('kernel_release')} {run.get('arch')}, backend "
            f"{run.get('backend')}, {dur}, {run.get('events')} events, "
            f"{run.get('lost_events')} lost")


# ---------------------------------------------- shared by text and Markdown

def _moves_line(m):
    """The move rows (docs/models.md#moves): one sentence in text and Markdown."""
    n = m["rows"]
    head = (f"Moves (docs/models.md#moves): {n['ksm_merge']} KSM merges, {n['uffd_move']} UFFDIO_MOVE, "
            f"{n['mremap_dontunmap']} MREMAP_DONTUNMAP")
    widen = (" (the lazy and no-fork upper ends include them)" if any(n.values()) else "")
    return f"{head}{widen}; {m['note']}."


def _census_lines(c, md=False):
    """The census section: the same sentences in text and Markdown."""
    title = "Anon rmap at the start of the run (census, docs/models.md#census)"
    if c["status"] != "done":
        return [f"{title}: {c['status']} ({c['reason']})" + ("." if md else "")]
    av, avc = c["anon_vma"], c["anon_vma_chain"]
    out = [f"{title}: {c['processes']} processes, {c['vmas']} VMAs with an anon_vma "
           f"({c['file_vmas']} MAP_PRIVATE file), {av['count']} anon_vmas ({kb(av['bytes'])} KB; "
           f"{av['only_linked']} reachable only through AVCs) in {c['trees']} trees, "
           f"{avc['count']} AVCs ({kb(avc['bytes'])} KB)"
           + (f"; AVCs per VMA p50 {c['chain_avcs']['p50']}, p99 {c['chain_avcs']['p99']}, "
              f"max {c['chain_avcs']['max']}" if c["vmas"] else "")
           + (f"; {c['truncated_chains']} chains longer than the iterator follows" if c["truncated_chains"] else "")
           + (f"; {c['lost']} census rows LOST" if c["lost"] else "") + "."]
    d = c.get("designs")
    if d is None:
        out.append(("" if md else "  ") + f"Designs: not computed ({c['designs_note']}).")
        return out
    lz, nf, nc = d["lazy"], d["nofork"], d["nofork_clone"]

    def part(m):
        p = m["saved_pct"]
        return (f"anon_vma {_rng(m['anon_vma_saved'])} ({_rng(p['anon_vma'])} %), AVC "
                f"{_rng(m['anon_vma_chain_saved'])} ({_rng(p['anon_vma_chain'])} %), "
                f"{kb(m['bytes_saved'][1])} KB at most")
    out.append(("" if md else "  ") + "Saved in steady state (0 when every VMA was upgraded before the run; "
               f"the high end from structure alone): lazy ({lz['candidate_vmas']} candidate VMAs, "
               f"{lz['inherited_candidates']} of them inherited, rule C2) {part(lz)}; no-fork opt-out "
               f"({nf['candidate_processes']} leaf processes, rule C3) {part(nf)}; no-fork at clone "
               f"(rule C3') {part(nc)}.")
    return out


WALK_TITLE = {"eager": "eager (measured)", "lazy": "ANON_VMA_LAZY", "cow_context": "CoW context",
              "nofork": "no-fork (opt-out)", "nofork_clone": "no-fork at clone"}
WALK_DESIGNS = tuple(WALK_TITLE)


def _unknown_cell(x, n):
    """'unknown' for a design whose ``n`` walks of ``x['count']`` have an
    unknown lock or time ('unknown (n of count)' when not all do)."""
    return "unknown" if n >= x["count"] else f"unknown ({n} of {x['count']})"


def _wait(x):
    """Lock wait of a design: measured, or unknown (never 0 ns) when the
    design leaves the lock of any of its walks unknown; '-' without walks."""
    n_unknown = x.get("lock_wait_unknown_walks", 0)
    if not x["count"]:
        return "-"
    if n_unknown or x["lock_wait_ns"] is None:
        return _unknown_cell(x, n_unknown)
    return ns(x["lock_wait_ns"])


def _time(x):
    """Walk time of a design, p50/p99/max: measured, or unknown when the
    design leaves the time of any of its walks unknown; '-' without walks."""
    n_unknown = x["count"] - x.get("time_walks", x["count"])
    if not x["count"]:
        return "-"
    if n_unknown or x["time_ns"]["max"] is None:
        return _unknown_cell(x, n_unknown)
    return _v3(x["time_ns"], ns)


def _v3(st, fmt=str):
    return "/".join("-" if st[k] is None else fmt(st[k]) for k in ("p50", "p99", "max"))


def _walks_table(w):
    """The rmap walks per design (a table: header, rows), in text and Markdown."""
    table = [("design", "walks", "visits p50/p99/max", "unit", "time p50/p99/max", "lock wait")]
    for d in WALK_DESIGNS:
        x = w[d]
        table.append((WALK_TITLE[d], x["count"], _v3(x["visits"]), x["unit"], _time(x), _wait(x)))
    return table


def _lock_cell(x):
    """The locks a design's walks take, with their walk counts: the name
    before its parenthesis ('anon_vma root rwsem 7; unknown 3')."""
    return "; ".join(f"{name.split(' (')[0]} {n}" for name, n in x["lock"].items() if n) or "-"


def _walks_md_table(w):
    """The Markdown walks table: _walks_table with rmap_one calls, VMA-tree
    lookups (the CoW context's unit) and the locks taken in columns of their
    own (eager, lazy and no-fork visits are rmap_one calls; '-' where a
    design makes no VMA-tree lookup)."""
    head, *rows = _walks_table(w)
    table = [(*head, "rmap_one calls p50/p99/max", "VMA-tree lookups p50/p99/max", "locks (walks)")]
    for d, row in zip(WALK_DESIGNS, rows):
        x = w[d]
        calls = x.get("rmap_one_calls", x["visits"])
        lookups = _v3(x["tree_lookups"]) if "tree_lookups" in x else "-"
        if x.get("tree_lookups_high") and x["tree_lookups_high"] != x["tree_lookups"]:
            lookups += f" (high {_v3(x['tree_lookups_high'])})"
        table.append((*row, _v3(calls), lookups, _lock_cell(x)))
    return table


def _measured_parts(w):
    """Per design with walks both unknown and eager: what its walks that
    stay eager measured (the table's cell says unknown for the design)."""
    out = []
    for d in WALK_DESIGNS:
        x = w[d]
        kept = x.get("time_walks", 0)
        if 0 < kept < x["count"]:
            out.append(f"{WALK_TITLE[d]}: the {kept} walks that stay eager: time p50/p99/max "
                       f"{_v3(x['time_ns'], ns)}, lock wait {ns(x['lock_wait_ns'])}")
    return out


def _lock_takers_table(lk):
    """The lock waits per lock taker (a table: header, rows), in text and Markdown."""
    table = [("lock taker", "waits", "write", "total", "p50", "p99", "max")]
    for f, g in lk["by_func"].items():
        st = g["wait_ns"]
        table.append((f, g["waits"], g["write_waits"], ns(g["total_wait_ns"]),
                      ns(st["p50"]), ns(st["p99"]), ns(st["max"])))
    return table


def _lock_owner(e):
    """Who made a heavily waited root anon_vma: its owner, or the run's start."""
    return f"{e['owner_comm']} {e['owner_tgid']}" if e["in_run"] else "from before the run"


def _repointed(lz):
    """Re-pointed anonymous pages of the lazy upgrades, in words."""
    rp = lz["extra_costs"].get("repointed_pages")
    if "tracepoint_estimate" not in lz or rp is None:
        return "not measurable from tracepoints"
    if rp["fork"] is None:
        return "not measurable (" + rp["reason"].split(":")[0] + ")"
    return (f"{rp['fork']} {_rng(rp['fork_range'])} at fork upgrades (per upgrade "
            + ", ".join(f"{k} {v}" for k, v in rp["per_fork_upgrade"].items() if v is not None)
            + f"), at most {rp['mremap_upper_bound']} at mremap upgrades; base pages")


def _kb_cell(v, rng=None):
    """Live KB with its ``[low, high]`` range where they differ ('n/a' when unknown)."""
    if v is None and (rng is None or rng[0] is None):
        return "n/a"
    text = "n/a" if v is None else f"{v:.1f}"
    if rng is not None and rng[0] != rng[1]:
        hi = "?" if rng[1] is None else f"{rng[1]:.1f}"
        text += f" [{rng[0]:.1f}, {hi}]"
    return text


def _snap_change(before, after):
    """The change of a snapshot's KB, 'n/a' when either is unknown."""
    if before is None or after is None:
        return "n/a"
    return pct_change(before, after)


def snapshot_title(snap):
    """A snapshot in words: its label, source and time into the run."""
    return f"`{snap['label']}` ({snap['source']}, {snap['ts_ns'] / 1e9:.1f} s into the run)"


def holders_line(snap, shapes):
    """Who holds the anon rmap at ``snap`` and the fork shapes, in words."""
    h = snap.get("holders")
    if not h or not h["processes"]:
        return None
    def part(g, name):
        e = h[g]
        return f"{name} {e['processes']} ({_pct(e['share_processes'])} of processes, {_pct(e['share_bytes'])} of bytes)"
    out = (f"Who holds the {h['attributed_bytes'] / 1024:.1f} KB of anon_vma + AVC at `{snap['label']}` "
           f"({h['processes']} processes): " + "; ".join([
               part("never_forked", "never forked"), part("never_forked_whole_life", "never forked in a life "
                                                          "wholly in the run"),
               part("fork_servers", "fork servers"), part("fork_server_children", "their children"),
               part("self_forking", "self-forking")]) + ".")
    if shapes:
        c = shapes["self_forking_children"]
        out += (f" Process forks: {shapes['process_forks']}, at least {shapes['by_multithreaded_parent_at_least']} "
                f"by a multi-threaded parent (up to {shapes['max_threads_at_fork_at_least']} threads); "
                f"children of self-forking processes: {c['children']}, {c['outlived_fork_by_60s']} outlived "
                f"the fork by more than 60 s, {c['exited_within_60s']} exited within 60 s, "
                f"{c['alive_at_end_younger_than_60s']} undecided at the end (docs/models.md#holders).")
    return out


def _pct(v):
    return "n/a" if v is None else f"{v:.1f}%"


# --------------------------------------------------------------------- text

def render_text(r, at=None):
    """The plain-text report: a section after the other (``at``: the
    snapshot of the cover letter's lines, :func:`pick_snapshot`)."""
    lines = _header_text(r)
    lines += _objects_text(r)
    lines += _processes_text(r["processes"])
    lines += _snapshots_text(r, at)
    lines += _models_text(r["models"])
    lines += _slabinfo_text(r["slabinfo"])
    lines += _late_sections_text(r)
    return "\n".join(lines) + "\n"


def _header_text(r):
    """Banners, the report's title, the run and its target, the other warnings."""
    lines = ["!! " + b for b in r["banners"]]
    if lines:
        lines.append("")
    lines.append(f"anonscope report: {r['source']}")
    lines.append("run: " + _run_line(r["run"]))
    tgt = r["run"].get("target")
    if isinstance(tgt, dict):
        lines.append("target: " + ", ".join(f"{k}={v}" for k, v in tgt.items() if v is not None))
    for w in _plain_warnings(r):
        lines.append("warning: " + w)
    lines.append("")
    return lines


def _objects_text(r):
    """The eager replay's objects: a table per object type, and the
    anon_vma_fork reuse pairs and clone_vma callers where there are any."""
    o = r["objects"]
    exact = "exact" if not r["banners"] else "exact for what was recorded, see above"
    out = [f"Objects, eager replay (the kernel today; {exact}; live = change since run start)"]
    out += text_table(_objects_table(o))
    tp = [o[obj].get("transient_fork_pairs", 0) for obj in ("anon_vma", "anon_vma_chain")]
    if any(tp):
        out.append(f"  7.x anon_vma_fork reuse pairs, allocated and freed at once (not counted above, "
                   f"docs/models.md rule E2'): {tp[0]} anon_vma, {tp[1]} AVC")
    cv = o["anon_vma_chain"].get("clone_vma_callers", {})
    if any(cv.values()):
        out.append("  clone_vma AVCs by caller: " + ", ".join(f"{k} {v}" for k, v in cv.items() if v))
    out += unknown_site_lines(o)
    out.append("")
    return out


def unknown_site_lines(o):
    """Rule E5's limits (eager.unknown_sites): what unknown call sites may
    hide, one line per merged cache, one when the tracepoint has no cache."""
    out = []
    for obj, name in (("anon_vma", "anon_vma"), ("anon_vma_chain", "AVC"), ("vm_area_struct", "VMA")):
        u = o[obj].get("unknown_sites") or {}
        if u.get("merged_cache_allocs"):
            n = u["merged_cache_allocs"]
            out.append(f"  {obj}'s cache is merged: {n} allocations into it at call sites no rule covers "
                       f"(any task) are not counted: the other caches' objects, and any {name} an inlined "
                       f"call site made (at most {n} missing; docs/models.md rule E5)")
    if any((o[obj].get("unknown_sites") or {}).get("cache_known") is False for obj in o
           if isinstance(o[obj], dict)):
        out.append("  the kmem tracepoint passes no cache on this kernel (before 6.0, b347aa7b5747): an "
                   "allocation at a call site no rule covers cannot be told from another cache's and is "
                   "not recorded (rule E5)")
    return out


def _objects_table(o):
    """The objects table: a row per quantity, a column per object type."""
    cols = ("anon_vma", "anon_vma_chain", "vm_area_struct")
    cells = [("object size (bytes)", lambda s: str(s["object_size"])),
             ("allocated", lambda s: str(s["allocated_total"]))]
    cells += [(f"  {p}", lambda s, p=p: str(s["allocated"][p]) if p in s["allocated"] else "")
              for p in ("fault", "fork", "clone_fork", "clone_vma", "other", "alloc", "dup")]
    cells += [("freed (preexisting)", lambda s: f"{s['freed']} ({s['freed_preexisting']})"),
              ("live at end (change)", lambda s: str(s["live_at_end"])),
              ("peak live (change)", lambda s: str(s["peak_live"])),
              ("run objects: peak live", lambda s: str(s["run_objects"]["peak_live"])),
              ("run objects: peak KB", lambda s: kb(s["run_objects"]["peak_live_bytes"]))]
    return [("", *cols)] + [(label, *(fn(o[c]) for c in cols)) for label, fn in cells]


def _processes_text(p):
    """The processes: counts, and the ten that hold the most (and made the most for their children)."""
    out = [f"Processes: {p['seen']} seen, {p['forking']} forking, {p['leaf']} leaf "
           f"({p['born_in_run']} born and {p['exited_in_run']} exited in the run, "
           f"{p['process_forks']} process forks, {p['threads_or_vforks']} threads/vforks, "
           f"fork depth {p['max_fork_depth']})"]
    if p["by_process"]:
        table = [("tgid", "comm", "anon_vma", "AVC", "KB", "forks", "for children: anon_vma", "AVC", "KB")]
        for e in p["by_process"][:10]:
            c = e["for_children"]
            table.append((e["tgid"], str(e["comm"])[:16], e["anon_vma"], e["anon_vma_chain"], kb(e["bytes"]),
                          e["process_forks"], c["anon_vma"], c["anon_vma_chain"], kb(c["bytes"])))
        out += text_table(table, "rl")
    if p.get("faults_through_another_process"):
        out.append(f"  {p['faults_through_another_process']} fault rows made through another process "
                   "(ptrace, /proc/PID/mem, uprobes) are charged to the process of their VMA "
                   "(docs/models.md#nofork-rules, N0')")
    out.append("")
    return out


def _snapshots_text(r, at):
    """Live KB per design at the start, each mark and the end (slab
    samples: JSON and CSV), and the cover letter's table at one of them."""
    snaps = r.get("snapshots") or []
    if not snaps:
        return []
    out = ["Live slab memory at snapshots (KB = live objects x slab slot, slabinfo's unit; "
           "[low, high] where it depends on what is not recorded; docs/models.md#snapshots)"]
    shown = [s for s in snaps if s["source"] != "slab"]
    table = [("snapshot", "design", "anon_vma", "AVC", "VMA")]
    for snap in shown:
        where = f"{snap['label']} ({snap['ts_ns'] / 1e9:.1f} s)"
        for design, d in snap["designs"].items():
            table.append((where, design, *(_kb_cell(d[o]["kb"], d[o]["kb_range"]) for o in SHORT)))
            where = ""
    out += text_table(table, "ll")
    n_slab = len(snaps) - len(shown)
    if n_slab:
        out.append(f"  and {n_slab} slab samples (--format json or csv)")
    out += _cover_text(r, pick_snapshot(r, at))
    out.append("")
    return out


def _cover_text(r, snap):
    """The cover letter's table at ``snap`` per design (before -> after),
    and who holds the anon rmap there."""
    out = [f"  at {snapshot_title(snap)}:"]
    for design in ("lazy", "nofork", "nofork_clone"):
        out.append(f"    {MODEL_TITLE[design]} ({snap['designs'][design]['fidelity']})")
        out += text_table(cover_table(snap, design), indent="      ")
    who = holders_line(snap, r["processes"].get("fork_shapes"))
    if who:
        out.append("  " + who)
    machine = machine_line(snap)
    if machine:
        out.append("  " + machine)
    return out


def _share(pct):
    return "?" if pct is None else f"{pct:.3g}%"


def machine_line(snap):
    """What each design's anon_vma + AVC bytes are worth against the
    machine at ``snap`` (rule S7), or None without meminfo."""
    den = snap.get("denominators")
    if not den:
        return None
    parts = []
    for design in ("eager", "lazy", "nofork", "nofork_clone"):
        d = den["designs"][design]
        p = d["rmap_pct"]
        line = (f"{design} {kb(d['rmap_bytes']) if d['rmap_bytes'] is not None else '?'} KB = "
                f"{_share(p['Slab'])} of Slab, {_share(p['SUnreclaim'])} of SUnreclaim, "
                f"{_share(p['MemTotal'])} of MemTotal")
        if design != "eager" and d["saved_bytes"] is not None:
            s = d["saved_pct"]
            line += (f" (saves {kb(d['saved_bytes'])} KB: {_share(s['MemTotal'])} of MemTotal, "
                     f"{_share(s['Slab'])} of Slab)")
        if d.get("with_vma_bytes") is not None:
            line += f", with VMAs {kb(d['with_vma_bytes'])} KB = {_share(d['with_vma_pct']['Slab'])} of Slab"
        parts.append(line)
    return (f"Against the machine (/proc/meminfo at {den['sample_ts_ns'] / 1e9:.1f} s; anon_vma + AVC, "
            "docs/models.md#snapshots S7): " + "; ".join(parts))


def _models_text(models):
    """The models: objects allocated over the run per model (a table),
    then the costs of the lazy design and the savings of the no-fork ones."""
    out = ["Models: objects allocated over the run, [range], saved vs eager, peak live KB"]
    out += text_table(models_table(models), "lrrrrrrrl")
    out += _lazy_text(models["lazy"])
    out += _nofork_text(models)
    out.append("  rules and fidelity: docs/models.md")
    out.append("")
    return out


def _file_vmas(lz):
    """Lazy's savings by VMA kind and the series' minimal variant (X8), in
    words; None when the report has no split."""
    fv = lz.get("file_vmas") or {}
    if "saved" not in fv:
        return None
    saved = ", ".join(f"{k} {v}" for k, v in fv["saved"]["anon_vma"].items())
    eager = fv.get("file_vmas_eager")
    if eager is None:
        variant = "no file VMA: the same"
    else:
        variant = ", ".join(f"{SHORT[o]} " + (f"{v[0]}" if v[0] == v[1] else _rng(v)) if isinstance(v, list)
                            else f"{SHORT[o]} {v}" for o, v in eager.items())
    return (f"anon_vmas saved by VMA kind: {saved}; with file VMAs eager (the series' minimal "
            f"variant): {variant} ({fv['fidelity'].split(':')[0]})")


def _lazy_text(lz):
    """ANON_VMA_LAZY's costs: upgrades, VMA growth, fork-time objects,
    re-pointed pages, and the tracepoint estimate beside the exact replay."""
    up = lz["upgrades"]
    g = lz["vma_growth"]
    ft = lz["extra_costs"]["fork_time_objects"]
    out = [f"  lazy upgrades: fork {up['fork']} {_rng(up['fork_range'])}, mremap "
           f"{up['mremap']} {_rng(up['mremap_range'])}; upgrade objects: "
           f"{up['objects']['anon_vma']} anon_vma, {up['objects']['anon_vma_chain']} AVC"]
    out.append(f"  lazy VMA growth: {_vma_growth(g)}, +{kb(g['peak_extra_bytes'])} KB "
               f"at the peak of {g['run_vmas_peak_live']} run VMAs"
               + (f", +{kb(g['slabinfo_extra_bytes_peak'])} KB for slabinfo's peak of "
                  f"{g['slabinfo_vmas_peak']} VMAs" if "slabinfo_vmas_peak" in g else ""))
    out.append(f"  lazy fork-time objects: eager {ft['eager']}, lazy {ft['lazy']}; "
               "re-pointed anon pages: " + _repointed(lz))
    fv = _file_vmas(lz)
    if fv:
        out.append("  lazy " + fv)
    if "tracepoint_estimate" in lz:
        te = lz["tracepoint_estimate"]
        out.append("  lazy is the exact per-VMA replay (function probes); the tracepoint "
                   f"estimate on the same rows: anon_vma {te['anon_vma']['allocated']} "
                   f"{_rng(te['anon_vma']['allocated_range'])}, AVC "
                   f"{te['anon_vma_chain']['allocated']} {_rng(te['anon_vma_chain']['allocated_range'])}, "
                   f"fork upgrades {te['upgrades']['fork']} {_rng(te['upgrades']['fork_range'])}; "
                   "exact within its bounds: "
                   + ("yes" if all(te["exact_within_bounds"].values()) else
                      "no (" + ", ".join(k for k, v in te["exact_within_bounds"].items() if not v) + ")"))
    return out


def _nofork_text(models):
    """The no-fork designs: the generations that opt out, and what each design saves."""
    gens = models["nofork"]["generations"]
    out = [f"  no-fork: {gens['leaf']} of {gens['generations']} process generations make no fork and "
           f"opt out ({gens['leaf_whole_life_in_run']} with their whole life in the run, "
           f"{gens['fork_then_exec']} forked children that exec: what is saved in those dies at the "
           "exec anyway); clone_fork links stay in both no-fork designs"]
    for v in ("nofork", "nofork_clone"):
        m = models[v]
        out.append(f"  {MODEL_TITLE[v]}: saved anon_vma {m['anon_vma']['saved']} "
                   f"({m['anon_vma']['saved_in_fork_then_exec']} in fork-then-exec children), AVC "
                   f"{m['anon_vma_chain']['saved']} ({m['anon_vma_chain']['saved_in_fork_then_exec']})")
    return out


def _slabinfo_text(s):
    """The slabinfo cross-check: slabinfo's change beside the traced one, per cache."""
    out = [f"Slabinfo cross-check ({s.get('samples', 0)} samples"
           + (f"; {s['mode']} run: checks {s['checks']}" if "mode" in s else "") + ")"]
    if not any(k in s for k in ("anon_vma", "anon_vma_chain", "vm_area_struct")):
        out.append("  " + s.get("note", "no samples of our caches"))
    for obj in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        if obj not in s:
            continue
        c = s[obj]
        over = (f"slabinfo overstates by {_rng(c['slabinfo_overstates_range'])} objects"
                if "slabinfo_overstates_range" in c else "the rest of the system is not traced")
        out.append(f"  {obj}: slabinfo change {c['slab_change']:+d}, traced change "
                   f"{c['traced_change']:+d}, difference {c['difference']:+d}; aliases "
                   f"{c['aliases']}; {over}"
                   + (f"; {c['alias_frees_skipped']} frees of the merged caches' own objects skipped "
                      "(their allocations are not traced)" if c.get("alias_frees_skipped") else ""))
    return out


def _late_sections_text(r):
    """The sections of the newer row kinds, each after a blank line:
    locks, walks, calls (when measured), census, moves."""
    out = []
    if "locks" in r:
        out += ["", *_locks_text(r["locks"])]
    if "walks" in r:
        out += ["", *_walks_text(r["walks"])]
    if r.get("calls", {}).get("available"):
        out += ["", *_calls_text(r["calls"])]
    if "census" in r:
        out += ["", *_census_lines(r["census"])]
    if "moves" in r:
        out += ["", _moves_line(r["moves"])]
    return out


def _locks_text(lk):
    """Lock waits on anon_vma root rwsems: totals, by mode, by lock taker,
    the heaviest roots and the waiters."""
    out = ["Lock waits on anon_vma root rwsems (lock:contention_begin/end; docs/models.md#locks)"]
    if lk["status"] in ("not available", "not recorded"):
        out.append(f"  {lk['status']}: {lk['note']}")
        return out
    if lk["status"] == "no waits":
        out.append("  none: " + lk["note"])
        return out
    per_s = f" ({ns(lk['wait_ns_per_s'])} per second of run)" if "wait_ns_per_s" in lk else ""
    out.append(f"  {lk['waits']} waits on {lk['roots']} roots, {ns(lk['total_wait_ns'])} in total"
               f"{per_s}; wait {_pcts(lk['wait_ns'])}")
    m = lk["by_mode"]
    out.append(f"  read (down_read): {m['read']['waits']} waits, {ns(m['read']['total_wait_ns'])}; "
               f"write (down_write): {m['write']['waits']} waits, {ns(m['write']['total_wait_ns'])}")
    out += text_table(_lock_takers_table(lk))
    roots = [("root (lock_id)", "owner", "waits", "total", "max")]
    for e in lk["top_roots"][:10]:
        owner = f"{e['owner_tgid']} {e['owner_comm']}" if e["in_run"] else "before the run"
        roots.append((e["lock_id"], owner[:24], e["waits"], ns(e["total_wait_ns"]), ns(e["max_wait_ns"])))
    out += text_table(roots)
    out.append("  waiters by comm: " + ", ".join(
        f"{c['comm']} {c['waits']} ({ns(c['total_wait_ns'])})" for c in lk["by_comm"][:10]))
    out.append("  fidelity: " + lk["fidelity"])
    return out


def _walks_text(w):
    """rmap walks: the table per design, eager's details by kind, what
    the other designs leave unknown, the fidelity of each."""
    out = ["rmap walks per design (function probes; docs/models.md#walks-recorded)"]
    if not w.get("available"):
        out.append("  " + w["note"])
        return out
    out += text_table(_walks_table(w), "lrrlrr")
    out += [f"  {m}" for m in _measured_parts(w)]
    e = w["eager"]
    out.append(f"  eager AVCs visited p50/p99/max {_v3(e['avcs_visited'])}; {e['lock_waits']} lock "
               f"waits in walks ({e['lock_waits_matched']} matched to a walk); "
               f"{e['locked_walks']} rmap_walk_locked; {e['large_folios']} large folios")
    for k, s in e["by_kind"].items():
        out.append(f"    {k}: {s['count']} walks, VMAs {_v3(s['visits'])}, AVCs "
                   f"{_v3(s['avcs_visited'])}, time {_v3(s['time_ns'], ns)}, lock wait "
                   f"{ns(s['lock_wait_ns'])}")
    lz, nf, nc, cw = w["lazy"], w["nofork"], w["nofork_clone"], w["cow_context"]
    out.append(f"  lazy: {lz['lazy_walks']} walks of still-lazy folios (through the root VMA; lazy state: "
               f"{lz['lazy_state']}); no-fork: {nf['leaf_walks']} (opt-out) and {nc['leaf_walks']} (at clone) "
               "walks of folios without an anon_vma; the lock and time of those are unknown")
    high = cw.get("tree_lookups_high")
    high = f" (high {_v3(high)}: an exclusive folio's one mapping in a descendant)" \
        if high and high != cw["tree_lookups"] else ""
    out.append(f"  CoW context: VMA-tree lookups {_v3(cw['tree_lookups'])}{high}, rmap_one calls "
               f"{_v3(cw['rmap_one_calls'])}, {cw['exclusive_walks']} exclusive folios stop at their own mm "
               "at the low end, "
               f"descendant mms {_v3(cw['descendant_mms'])}; {cw['unknown_context']} walks of pre-run "
               "anon_vmas left out; lock and time unknown")
    for d in WALK_DESIGNS:
        out.append(f"  fidelity {d}: {w[d]['fidelity']}")
    return out


def _calls_text(c):
    """The anon_vma functions measured with function probes: a table of
    calls, duration percentiles, total, objects made and reused."""
    out = ["anon_vma functions, measured (function probes: entry to return)"]
    table = [("function", "calls", "p50", "p99", "max", "total", "objects", "reused")]
    for f, e in c["by_func"].items():
        d = e["duration_ns"]
        table.append((f, e["calls"], ns(d["p50"]), ns(d["p99"]), ns(d["max"]), ns(e["total_duration_ns"]),
                      e["objects"], e.get("reused", "")))
    out += text_table(table)
    return out


# ----------------------------------------------------------------- markdown

def render_markdown(r, at=None):
    """The Markdown report, for a cover letter: a section after the other
    (``at``: the snapshot of the cover letter's table, :func:`pick_snapshot`)."""
    lines = _header_markdown(r)
    lines += _snapshot_markdown(r, at)
    lines += _peaks_markdown(r)
    lines += _models_markdown(r["models"])
    lines += _eager_markdown(r)
    lines += _lazy_markdown(r["models"]["lazy"])
    lines += _slabinfo_markdown(r["slabinfo"])
    lines += _late_sections_markdown(r)
    lines.append("")
    return "\n".join(lines)


def _header_markdown(r):
    """Banners, the title (kernel, arch), the recording and object sizes, the other warnings."""
    lines = [f"> **Warning: {b}**" for b in r["banners"]]
    run = r["run"]
    if lines:
        lines.append("")
    lines.append(f"### anonscope: anon_vma / anon_vma_chain on {run.get('kernel_release')} "
                 f"({run.get('arch')})")
    lines.append("")
    tgt = run.get("target")
    what = ""
    if isinstance(tgt, dict):
        what = ", ".join(f"{k} `{v}`" for k, v in tgt.items() if v is not None) + "; "
    lines.append(f"Recording: {what}{_run_line(run)}. Object sizes: "
                 + ", ".join(f"{k} {v['object_size']} B" for k, v in r["objects"].items()) + ".")
    for w in _plain_warnings(r):
        lines.append(f"- warning: {w}")
    lines += ["- " + x.strip() for x in unknown_site_lines(r["objects"])]
    lines.append("")
    return lines


def _snapshot_markdown(r, at):
    """The cover letter's table per design at one snapshot, and who holds the anon rmap there."""
    snap = pick_snapshot(r, at)
    if snap is None:
        return []
    out = [f"Live slab memory at snapshot {snapshot_title(snap)}: eager kernel (before) vs each design "
           "(after), KB = live objects x slab slot, slabinfo's active KB; `[low, high]` where the design's "
           "answer depends on what is not recorded (docs/models.md#snapshots):", ""]
    for design in ("lazy", "nofork", "nofork_clone"):
        d = snap["designs"][design]
        out.append(f"**{MODEL_TITLE[design]}** ({d['fidelity']})")
        out.append("")
        out.extend(md_table(cover_table(snap, design)))
        out.append("")
    out.append(f"Eager: {snap['designs']['eager']['fidelity']}.")
    out.append("")
    who = holders_line(snap, r["processes"].get("fork_shapes"))
    if who:
        out.extend([who, ""])
    machine = machine_line(snap)
    if machine:
        out.extend([machine, ""])
    return out


def cover_table(snap, design):
    """The series' table at one snapshot: eager (before) vs ``design``
    (after), live KB = live objects x slab slot (slabinfo's active KB); a
    table for every format."""
    ev, d = snap["designs"]["eager"], snap["designs"][design]
    table = [("object", "before (active KB)", "after (active KB)", "change")]
    for obj in ("vm_area_struct", "anon_vma_chain", "anon_vma"):
        b, a = ev[obj], d[obj]
        table.append((obj, _kb_cell(b["kb"], b["kb_range"]), _kb_cell(a["kb"], a["kb_range"]),
                      _snap_change(b["kb"], a["kb"])))
    return table


def _peaks_markdown(r):
    """The run window's peak, eager vs each design: a paragraph and a table each."""
    out = ["Window peak: the most objects made during the run that were live at once "
           "(KB = objects x slab slot; not slabinfo's active KB, which counts every live "
           "object), eager kernel vs **ANON_VMA_LAZY** (model, estimate; docs/models.md#lazy):", ""]
    out += _peak_table(r, "lazy")
    out.append("")
    for v, how in (("nofork", "processes that make no fork opt out after they start"),
                   ("nofork_clone", "the fork server sets the opt-out at clone")):
        out += [f"Window peak, eager vs **{MODEL_TITLE[v]}** ({how}; docs/models.md#nofork):", ""]
        out += _peak_table(r, v)
        out.append("")
    return out


def _peak_table(r, model):
    """The run window's peak of objects made in it: not slabinfo's unit."""
    ev, m = r["models"]["eager"], r["models"][model]
    table = [("object", "eager window peak (KB)", "design window peak (KB)", "change")]
    for obj in ("vm_area_struct", "anon_vma_chain", "anon_vma"):
        before = ev[obj]["peak_live_bytes"]
        after = m[obj]["peak_live_bytes"]
        table.append((obj, kb(before), kb(after), pct_change(before, after)))
    return md_table(table)


def models_table(models):
    """Objects allocated over the run per model, one table for every
    format: count, range and saved of each rmap object, peak live KB,
    fidelity."""
    table = [("model", "anon_vma", "range", "saved", "AVC", "range", "saved", "peak KB av/AVC", "fidelity")]
    for name, m in models.items():
        a, c = m["anon_vma"], m["anon_vma_chain"]
        table.append((MODEL_TITLE[name], a["allocated"], _rng(a["allocated_range"]),
                      saved(m["saved_pct"]["anon_vma"]), c["allocated"], _rng(c["allocated_range"]),
                      saved(m["saved_pct"]["anon_vma_chain"]),
                      f"{kb(a['peak_live_bytes'])}/{kb(c['peak_live_bytes'])}", a["fidelity"]))
    return table


def _models_markdown(models):
    """Objects allocated over the run per model (:func:`models_table`)."""
    return ["Objects allocated over the run:", "", *md_table(models_table(models), "lrrrrrrrl"), ""]


def _eager_markdown(r):
    """Eager's allocations by path and the processes, a sentence each."""
    o, procs = r["objects"], r["processes"]
    return ["Eager allocations by path: "
            + "; ".join(f"{obj}: " + ", ".join(f"{p} {n}" for p, n in o[obj]["allocated"].items() if n)
                        for obj in OBJS) + ".",
            f"Processes: {procs['seen']} seen, {procs['forking']} forked, {procs['leaf']} leaf "
            f"(no fork during the run)" + _remote_faults(procs) + "."]


def _remote_faults(procs):
    """The fault rows charged to their VMA's process (N0'), as a clause."""
    n = procs.get("faults_through_another_process")
    return f"; {n} fault rows made through another process charged to their VMA's process" if n else ""


def _lazy_markdown(lz):
    """ANON_VMA_LAZY's costs in a sentence, and the tracepoint estimate
    beside the exact replay when there is one."""
    up, g = lz["upgrades"], lz["vma_growth"]
    ft = lz["extra_costs"]["fork_time_objects"]
    out = [f"Lazy costs: {up['fork']} VMA upgrades at fork (range {_rng(up['fork_range'])}), "
           f"{up['mremap']} at mremap; VMAs grow: {_vma_growth(g)} "
           f"(+{kb(g['peak_extra_bytes'])} KB at the run's VMA peak); objects allocated "
           f"inside fork: {ft['eager']} eager, {ft['lazy']} lazy; anon pages re-pointed by "
           "upgrades: " + _repointed(lz) + "."]
    fv = _file_vmas(lz)
    if fv:
        out.append("Lazy " + fv + ".")
    if "tracepoint_estimate" in lz:
        te = lz["tracepoint_estimate"]
        out.append(f"Lazy numbers are an exact per-VMA replay (function probes, "
                   f"docs/models.md#lazy-exact); the tracepoint-only estimate of the same "
                   f"recording is anon_vma {te['anon_vma']['allocated']} "
                   f"{_rng(te['anon_vma']['allocated_range'])}, AVC "
                   f"{te['anon_vma_chain']['allocated']} "
                   f"{_rng(te['anon_vma_chain']['allocated_range'])}.")
    return out


def _slabinfo_markdown(s):
    """A note when the anon_vma_chain cache is merged with others and
    slabinfo overstates AVCs (else nothing)."""
    if "anon_vma_chain" in s and s["anon_vma_chain"]["aliases"] and \
            "slabinfo_overstates_range" in s["anon_vma_chain"]:
        c = s["anon_vma_chain"]
        return [f"Note: the anon_vma_chain slab cache is merged with {c['aliases']} other "
                f"cache(s) ({', '.join(c['alias_names']) or 'aliases'}); /proc/slabinfo "
                f"overstates AVCs by {_rng(c['slabinfo_overstates_range'])} objects here. "
                "These numbers classify by call site."]
    return []


def _late_sections_markdown(r):
    """The sections of the newer row kinds, each after a blank line:
    locks, walks, census, moves."""
    out = []
    if "locks" in r:
        out += ["", *_locks_markdown(r["locks"])]
    if "walks" in r:
        out += ["", *_walks_markdown(r["walks"])]
    if "census" in r:
        out += ["", *_census_lines(r["census"], md=True)]
    if "moves" in r:
        out += ["", _moves_line(r["moves"])]
    return out


def _locks_markdown(lk):
    """Waits for anon_vma root rwsems: a sentence, the lock takers' table, the heaviest roots."""
    out = ["Waits for anon_vma root rwsems (`lock:contention_begin`/`_end`, docs/models.md#locks):"]
    if lk["status"] in ("not available", "not recorded", "no waits"):
        out[0] += " " + lk["note"] + "."
        return out
    out[0] += (f" {lk['waits']} waits on {lk['roots']} roots, {ns(lk['total_wait_ns'])} in total, "
               f"wait {_pcts(lk['wait_ns'])}.")
    out.append("")
    out += md_table(_lock_takers_table(lk))
    top = lk["top_roots"][:5]
    if top:
        out.append("")
        out.append("Heaviest roots: " + "; ".join(
            f"{e['lock_id']} ({_lock_owner(e)}) "
            f"{e['waits']} waits, {ns(e['total_wait_ns'])}" for e in top) + ".")
    return out


def _walks_markdown(w):
    """rmap walks: a sentence, the table per design, what the other designs leave unknown."""
    if not w.get("available"):
        return ["rmap walks: " + w["note"] + "."]
    out = [f"rmap walks of anonymous folios ({w['walks']} measured with function probes; "
           "other designs re-cost the same walks, docs/models.md#walks-recorded):", ""]
    out += md_table(_walks_md_table(w), "lrrlrr")
    out.append("")
    out += [f"- {m}." for m in _measured_parts(w)] + ([""] if _measured_parts(w) else [])
    out.append("Eager is measured; lazy and no-fork walks of folios without an anon_vma go through "
               "the folio's VMA and still visit every VMA that maps it, with a lock and a time that "
               "are unknown, never 0 (the series claims no anon_vma lock; disputed on the list); "
               "CoW-context visits are VMA-tree lookups, one per live mm under the folio's context "
               "(its own alone for an exclusive folio), lock and time unknown (the draft names RCU, "
               "with TODOs).")
    return out
