"""Live memory per design at named points of the run (docs/models.md#snapshots).

The series' table is live slab memory at points in time ("after boot",
"after launching 24 apps", slabinfo's active KB). A snapshot is such a
point: the start of the run (the census), every mark, every slab sample and
the end. At each, per design and object, the live count is

    live = before-the-run part + run part

- run part: the run's objects live just after the point under the design
  (live.Spans each model returns beside its numbers, passed in by report.build);
- before-the-run part (S1-S3 of docs/models.md#snapshots): eager from the
  census, minus the run objects already live when it ran and the frees of
  older objects since; a design holds [that - its census saving (C2, C3,
  C3'), that].

Each value is a triple (low, best, high); None where it cannot be told.
"""

import numpy as np
import pandas as pd

from . import census, denominators, moves
from .eager import RMAP_OBJECTS

SECTION = "docs/models.md#snapshots"
OBJECTS = RMAP_OBJECTS + ("vm_area_struct",)
DESIGNS = ("eager", "lazy", "nofork", "nofork_clone")
#: design -> (spans of the low end, of the best value, of the high end)
#: of its run part; "eager" is the eager run spans (every deferred object
#: upgraded at once), to which lazy's high end adds the anon_vmas an upgrade
#: may allocate where eager reused one (``lazy_extra``, docs/models.md#snapshots S4)
RUN_SPANS = {"lazy": ("lazy_floor", "lazy", "eager"),
             "nofork": ("nofork", "nofork", "nofork_high"),
             "nofork_clone": ("nofork_clone", "nofork_clone", "nofork_clone_high")}


def points(rec, census_pos):
    """[(label, source, ts_ns, pos)] in replay order: start, slab samples,
    marks, end. ``census_pos``: the last census row's position (None: no census)."""
    out = [("start", "census" if census_pos is not None else "start",
            _ts_at(rec, census_pos), census_pos if census_pos is not None else -1)]
    slab = rec.slab
    if len(slab):
        g = slab.groupby("ts_ns", sort=True)["pos"].max()
        out += [(f"slab-{i + 1}", "slab", int(ts), int(p)) for i, (ts, p) in enumerate(g.items())]
    marks = rec.marks
    if marks is not None and len(marks):
        out += [(str(m.mark_label), "mark", int(m.ts_ns), int(m.pos)) for m in marks.itertuples()]
    out.append(("end", "end", int(rec.end_ts_ns), int(rec.positions)))
    return sorted(out, key=lambda p: (p[3], p[1] == "end"))


def _ts_at(rec, pos):
    if pos is None or not len(rec.census):
        return 0
    return int(rec.census["ts_ns"].max())


def eager_spans(rp):
    """{object: live count of the run's objects in the kernel as it is},
    read at the snapshot points (tally.probes)."""
    return {obj: rp.count(obj, net=False) for obj in OBJECTS}


class BeforeRun:
    """The part of each object's live count made before the run, at the
    snapshot points (the probes of tally.probes), as (low, best, high)
    arrays (S1-S3)."""

    def __init__(self, rp, run, census_section):
        rec = rp.rec
        self.meta = rec.meta.get("census") if isinstance(rec.meta.get("census"), dict) else {}
        c = rec.census
        self.census_pos = int(c["pos"].max()) if c is not None and len(c) else None
        done = self.meta.get("status") == "done" and census_section.get("status") == "done"
        target = rec.meta.get("target") or {}
        self.mode = target.get("mode", "system") if isinstance(target, dict) else "system"
        self.basis = "census" if done else "command" if self.mode == "command" else "unknown"
        self.counts = {}
        if done:
            self.counts = {"anon_vma": census_section["anon_vma"]["count"],
                           "anon_vma_chain": census_section["anon_vma_chain"]["count"],
                           "vm_area_struct": self.meta.get("vmas")}
        self.run = run
        self.rp = rp
        self.cands = census.candidates(rec) if done else None
        forks = rp.tree.forks
        first = forks[forks["first"]]
        self.first_fork = pd.Series(first["pos"].to_numpy(dtype=np.int64), index=first["tgid"].to_numpy())

    def _prefreed(self, obj, pos):
        """Frees of older objects at or before each position ``pos`` (a
        probe): the run count less the net count."""
        return self.run[obj].at(pos) - self.rp.count(obj, net=True).at(pos)

    def rows_between(self, obj, t0, t1):
        """Object rows of ``obj`` with t0 <= ts_ns <= t1 (a window of tally.probes)."""
        return self.rp.tallies[obj].rows_between(t0, t1)

    def churn(self, obj):
        """Object rows while the census ran (metadata census started_ns to
        ended_ns, v6; else its first to last row): each may or may not be in it."""
        t0, t1 = self.meta.get("started_ns"), self.meta.get("ended_ns")
        if isinstance(t0, int) and isinstance(t1, int):
            return self.rows_between(obj, t0, t1)
        return self.rp.tallies[obj].in_span if self.census_pos is not None else 0

    def unvisited(self):
        """Processes with an address space the census did not visit (v6
        metadata census.unvisited; 0 when not recorded)."""
        u = self.meta.get("unvisited")
        return int(u.get("count", 0)) if isinstance(u, dict) else 0

    def eager(self, obj, pos):
        """(low, best, high) arrays; best/high None where unknown."""
        pos = np.asarray(pos, dtype=np.int64)
        freed_total = self.rp.tallies[obj].preexisting
        n0 = self.counts.get(obj)
        if self.basis == "census" and n0 is not None:
            c = self.census_pos if self.census_pos is not None else -1   # a census that found nothing
            v = n0 - int(self.run[obj].at(c)) - (self._prefreed(obj, pos) - self._prefreed(obj, c))
            k = self.churn(obj)
            # processes the iterator did not visit: their older objects are not in it
            hi = None if self.unvisited() else np.maximum(v + k, 0)
            return np.maximum(v - k, 0), np.maximum(v, 0), hi
        known = freed_total - self._prefreed(obj, pos)   # older objects still live: freed later
        if self.basis == "command":
            # recorded from its exec on, with a new mm: nothing older (S2)
            return known, known, known
        return known, None, None

    def saving(self, design, obj, pos):
        """The census saving still in force at each position (S5): a lazy
        candidate until its process's first fork in the run (U1 upgrades
        what the fork copies), a no-fork candidate only if its process
        makes no fork in the run (its generation never opts out)."""
        by = self.cands.by_process(design)[obj]
        ff = self.first_fork.reindex(by.index).to_numpy(dtype=float)
        never = int(by[np.isnan(ff)].sum())
        if design != "lazy":
            return np.full(len(pos), never, dtype=np.int64)
        forked = ~np.isnan(ff)
        order = np.argsort(ff[forked])
        at, n = ff[forked][order].astype(np.int64), by.to_numpy()[forked][order]
        gone = np.concatenate([[0], np.cumsum(n)])[np.searchsorted(at, pos, side="right")]
        return never + int(n.sum()) - gone

    def design(self, design, obj, pos, overlap):
        """(low, best, high) of ``design``'s part before the run.
        ``overlap``: the run's objects live at the census that the design
        defers (the census saw them: best does not save them twice)."""
        lo, best, hi = self.eager(obj, pos)
        if obj == "vm_area_struct":
            return lo, best, hi
        if self.cands is None:
            return np.zeros_like(lo), best, hi
        s = self.saving(design, obj, pos)
        if design == "lazy" and obj == "anon_vma" and hi is not None:
            hi = hi + self.cands.shared_anon_vmas()      # X6's high end: an upgrade's own anon_vma
        best = None if best is None else np.maximum(best - np.maximum(s - overlap, 0), 0)
        return np.maximum(lo - s, 0), best, hi


def _kb(n, slot):
    return None if n is None else round(int(n) * slot / 1024.0, 1)


def unvisited_warning(meta):
    """A warning naming the processes the census did not visit, or None."""
    c = meta.get("census") if isinstance(meta.get("census"), dict) else {}
    u = c.get("unvisited")
    if not isinstance(u, dict) or not u.get("count"):
        return None
    names = ", ".join(f"pid {p['pid']} {p['comm']} ({p['rss_anon_kb']} KB anon)" for p in u["processes"])
    return (f"the census did not visit {u['count']} process(es) with an address space that existed when it "
            f"ran ({names}): eager's objects from before the run leave theirs out, so every snapshot's "
            "count is low by them and has no upper bound (docs/models.md#snapshots S1)")


def disagreements(snaps):
    """Warnings for slab samples where slabinfo is below eager by more than
    the census churn and lost events allow (S6)."""
    out = []
    for snap in snaps:
        for obj, c in (snap.get("slabinfo") or {}).items():
            if isinstance(c, dict) and c.get("consistent") is False:
                d = c["slabinfo_minus_eager"]
                why = (f"slabinfo can be below eager only by the census churn, lost events, KFENCE and the "
                       f"read ({c['allowed_below']}): an object the census or the trace counts was not there"
                       if d < 0 else
                       f"slabinfo can be above eager only by the free slots of the CPUs' slabs and sheaves "
                       f"and the churn ({c['allowed_above']}): at least {c['census_missed_at_least']} objects "
                       "eager does not count (processes the census did not visit, exiting ones, anon_vmas "
                       "held only by a reference)")
                out.append(f"{obj} at {snap['label']}: /proc/slabinfo counts {c['active_objs']} active, "
                           f"eager {c['eager_live']} live; {why} (docs/models.md#snapshots S6)")
    return out


def _moves_widened(value, added):
    """(lo, best, hi) with the high end raised by what the move rows so far
    may add (docs/models.md#moves M1-M4; None: no upper end at that point)."""
    lo, best, hi = value
    if hi is None or not any(a != 0 for a in added):
        return value
    raised = [None if a is None or h is None else h + a for h, a in zip(np.asarray(hi, dtype=object), added)]
    return lo, best, raised


def _design_parts(design, obj, pos, run, spans, before):
    """(run part, part before the run), each (low, best, high), of a design
    other than eager at ``pos``: the run part from its RUN_SPANS (S4; lazy's
    high end adds the anon_vmas of ``lazy_extra``, its VMAs the pinned root
    VMAs of X9), the part before the run by S5."""
    names = RUN_SPANS[design] if obj != "vm_area_struct" else ("eager",) * 3
    lo, best, hi = (spans[n][obj].at(pos) for n in names)
    if design == "lazy" and obj != "vm_area_struct":
        hi = hi + spans["lazy_extra"][obj].at(pos)
    elif design == "lazy" and "lazy_pinned" in spans:
        # root VMAs lazy keeps after eager frees them (X9)
        pinned = spans["lazy_pinned"][obj].at(pos)
        best, hi = best + pinned, hi + pinned
    # the ends hold the best value whatever the model (an exact
    # replay's value is inside the estimate's range by construction)
    run3 = (np.minimum(lo, best), best, np.maximum(hi, best))
    overlap = 0
    if before.census_pos is not None and obj != "vm_area_struct":
        c = before.census_pos
        overlap = int(run[obj].at(c)) - int(spans[names[1]][obj].at(c))
    return run3, before.design(design, obj, pos, max(overlap, 0))


def _value(design, obj, pos, run, spans, before, added):
    """(low, best, high) live counts of ``obj`` under ``design`` at the
    positions ``pos``: the part before the run (S1-S3, S5) plus the run
    part (S4), the high end raised by the move rows ``added`` (M1-M4)."""
    if design == "eager":
        r = run[obj].at(pos)
        run3 = (r, r, r)
        pre = before.eager(obj, pos)
    else:
        run3, pre = _design_parts(design, obj, pos, run, spans, before)
    value = tuple(None if p is None else p + r for p, r in zip(pre, run3))
    if design != "eager" and obj != "vm_area_struct":
        value = _moves_widened(value, [a[obj] for a in added])
    if design == "lazy" and obj == "vm_area_struct" and "lazy_pinned" not in spans:
        # tracepoints cannot tell the root VMAs lazy would keep (X9): no upper bound
        value = value[:2] + (None,)
    return value


def build(rp, report, spans):
    """The report's ``snapshots`` list (docs/models.md#snapshots, S1-S7)
    from the Replay ``rp``, the report built so far (``census``, ``run``,
    the lazy VMA growth) and ``spans``: {name: {object: live.Spans}}, the
    run parts the models return (lazy.Result.spans and nofork.Result.spans;
    RUN_SPANS names them, S4)."""
    run = dict(eager_spans(rp))
    spans = dict(spans, eager=run)
    before = BeforeRun(rp, run, report["census"])
    pts = points(rp.rec, before.census_pos)
    pos = np.array([p[3] for p in pts], dtype=np.int64)
    slots = {o: rp.sizes[o][0] for o in OBJECTS}
    lazy_vma_slot = _lazy_slot(report, slots["vm_area_struct"])
    cap = moves.Caps(rp)
    added = [moves.extra(rp.rec, cap, upto=int(p), kinds=moves.KINDS) for p in pos]   # M1-M4
    values = {design: {obj: _value(design, obj, pos, run, spans, before, added) for obj in OBJECTS}
              for design in DESIGNS}
    slab = _slab_samples(rp)
    meminfo = denominators.samples(rp.rec)
    out = []
    for i, (label, source, ts, p) in enumerate(pts):
        snap = {"label": label, "source": source, "ts_ns": ts, "pos": p, "designs": {}}
        for design in DESIGNS:
            d = {}
            for obj in OBJECTS:
                lo, best, hi = (None if v is None or v[i] is None else int(v[i]) for v in values[design][obj])
                slot = lazy_vma_slot if (design == "lazy" and obj == "vm_area_struct") else slots[obj]
                d[obj] = {"live": best, "live_range": [lo, hi], "kb": _kb(best, slot),
                          "kb_range": [_kb(lo, slot), _kb(hi, slot)], "slot_bytes": slot}
            d["fidelity"] = fidelity(design, before)
            d["see"] = SECTION
            snap["designs"][design] = d
        if source == "slab" and ts in slab:
            snap["slabinfo"] = slabinfo_check(rp, ts, slab[ts], snap["designs"]["eager"], before,
                                              report["run"]["object_events_lost"])
        if meminfo is not None:
            snap["denominators"] = denominators.at(meminfo, snap)      # S7
        out.append(snap)
    return out


def _lazy_slot(report, eager_slot):
    g = report.get("models", {}).get("lazy", {}).get("vma_growth") or {}
    slot = g.get("slot_bytes")
    return int(slot[1]) if isinstance(slot, list) and len(slot) == 2 and slot[1] else eager_slot


#: count_partial_free_approx() counts exactly up to this many partial slabs
#: per node (mm/slub.c MAX_PARTIAL_TO_SCAN, 6.12 and 7.3)
MAX_PARTIAL_TO_SCAN = 10000
#: full sheaves a node's barn keeps (7.3 mm/slub.c MAX_FULL_SHEAVES)
MAX_FULL_SHEAVES = 10


def _slab_samples(rp):
    """{ts_ns: {cache: (active, aliases, total, read_ns, cpu partial slabs or None)}}."""
    out = {}
    for r in rp.rec.slab.itertuples():
        took = int(r.duration_ns) if int(r.duration_ns) >= 0 else 0
        cpu = int(r.slab_cpu_partial) if int(r.slab_cpu_partial) >= 0 else None
        out.setdefault(int(r.ts_ns), {})[str(r.slab_cache)] = (int(r.slab_active), int(r.slab_aliases),
                                                              int(r.slab_total), took, cpu)
    return out


def hidden_free(meta, obj, cpu_partial):
    """The most free objects slabinfo can count as active for ``obj`` (S6):
    every slot of one active slab per CPU and of the CPUs' partial slabs,
    and of the per-CPU sheaves (main and spare) and the barns' full
    sheaves; None when not known."""
    size = (meta.get("object_sizes") or {}).get(obj) or {}
    topo = meta.get("topology") if isinstance(meta.get("topology"), dict) else {}
    per_slab, sheaf = size.get("objs_per_slab"), size.get("sheaf_capacity")
    cpus, nodes = topo.get("cpus"), topo.get("nodes")
    if cpu_partial is None or not per_slab or not cpus or not nodes:
        return None
    # no sheaf_capacity file: a SLUB before sheaves (6.18 added them with it: 2d517aa09bbc)
    sheaf = sheaf or 0
    return (cpus + cpu_partial) * per_slab + (2 * cpus + MAX_FULL_SHEAVES * nodes) * sheaf


def slabinfo_check(rp, ts, sample, eager, before, lost):
    """Eager beside /proc/slabinfo's active objects at one sample (S6).
    ``lost``: object events lost in the run (each may move eager by one)."""
    meta = rp.rec.meta
    out = {"comparable": before.mode == "system" and before.basis == "census"}
    after_end = ts >= rp.rec.end_ts_ns          # read after recording stopped: unrecorded churn
    kf = meta.get("kfence") if isinstance(meta.get("kfence"), dict) else {}
    kfence = (kf.get("num_objects") if kf.get("enabled") else 0)
    sizes = meta.get("object_sizes") or {}
    for obj in OBJECTS:
        if obj not in sample:
            continue
        active, aliases, total, took, cpu = sample[obj]
        ev = eager[obj]["live"]
        diff = None if ev is None else active - ev
        per_slab = (sizes.get(obj) or {}).get("objs_per_slab") or 1
        approx = total / per_slab > MAX_PARTIAL_TO_SCAN
        churn = before.churn(obj) + lost + before.rows_between(obj, ts, ts + took)
        slack = None if kfence is None else churn + kfence
        hidden = hidden_free(meta, obj, cpu) if aliases <= 0 else None
        above = None if hidden is None else hidden + churn
        judged = diff is not None and out["comparable"] and not after_end and not approx and slack is not None
        out[obj] = {"active_objs": active, "aliases": max(aliases, 0), "eager_live": ev,
                    "slabinfo_minus_eager": diff,
                    # slabinfo may be below eager only by the census churn, lost
                    # events, KFENCE objects and the rows made while it was read;
                    # above by the free slots of the CPUs' slabs and sheaves
                    # (unbounded for a merged cache: its aliases' objects)
                    "consistent": (diff >= -slack and (above is None or diff <= above)) if judged else None,
                    "allowed_below": slack, "allowed_above": above,
                    # above by more: objects eager's census did not see, at least this many
                    "census_missed_at_least": diff - above if judged and above is not None and diff > above
                    else None,
                    "not_judged": None if judged or diff is None or not out["comparable"] else
                    ("read after recording stopped" if after_end else
                     "more slabs than count_partial_free_approx() counts exactly" if approx else
                     "KFENCE pool size unknown")}
    out["note"] = ("slabinfo's active objects include the free objects of per-CPU slabs (6.x), of "
                   "per-CPU sheaves and the node's barn (opt-in per cache from 6.18, every cache on 7.x), "
                   "and a merged cache's aliases' objects: it "
                   "is above eager by those; below only by the census churn, lost events, KFENCE "
                   "objects and what changed while it was read (docs/models.md#snapshots S6)"
                   if out["comparable"] else
                   "not comparable: slabinfo counts the whole system, this recording "
                   + ("only the recorded " + before.mode if before.mode != "system" else "has no census"))
    return out


def fidelity(design, before):
    """The fidelity of ``design``'s live memory at a snapshot: how the run's
    objects are counted, what is known of the objects from before the run
    (``before.basis``) and, for a design other than eager, the census objects
    it would not hold."""
    pre = {"census": "before the run: census (S1, exact for the processes it visited, but for objects made or "
                     "freed while it ran)",
           "command": "before the run: nothing, the command is recorded from its exec on (S2)",
           "unknown": "before the run: unknown (no census): only objects freed later are counted (S3)"}
    pre = pre[before.basis]
    if design == "eager":
        return f"exact for the run's objects; {pre}"
    run = {"lazy": ("run: tracepoint estimate (docs/models.md#lazy-rules) or exact replay "
                    "(function probes); range from the objects every lazy variant makes to eager and "
                    "the anon_vmas an upgrade may add; VMAs: pinned root VMAs (X9) with function probes, "
                    "else no upper bound"),
           "nofork": "run: exact (best); range to the whole-life-only variant",
           "nofork_clone": "run: exact (best); range to the whole-life-only variant"}[design]
    saved = {"lazy": "C2", "nofork": "C3", "nofork_clone": "C3'"}[design]
    return f"{run}; {pre}; what the design would not hold of it: census {saved} [0, upper bound]"
