"""Cross-check traced live objects against /proc/slabinfo samples (``slab`` rows).

/proc/slabinfo counts the whole system; the trace counts what the run
recorded. Only a system-wide run records every object of the cache, so
only there is the difference slabinfo's own error: merged caches
(``slab_aliases`` > 0, e.g. anon_vma_chain with fs_cache and eventpoll_pwq)
make ``active_objs`` count other caches' objects too, and SLUB counts
objects of per-CPU slabs as active. In a command, ``-p`` or ``--comm`` run
the difference is the rest of the system: nothing about slabinfo's error
can be told (docs/models.md section 1).
"""

SECTION = "docs/models.md#eager"


def check(rp):
    """The report's ``slabinfo`` section: the slabinfo cross-check of
    docs/models.md section 1 (#eager, "slabinfo cross-check"). Per cache,
    the change in ``active_objs`` between the first and the last ``slab``
    sample beside the change in net live traced objects; a check of
    slabinfo's error only in a system-wide run. (Eager beside slabinfo at
    each sample, with ``consistent`` and ``allowed_below``/``allowed_above``,
    is section 8's S6: snapshots.slabinfo_check, not this.)

    Takes the Replay ``rp`` (its recording's ``slab`` rows and metadata
    ``target`` and ``slab_aliases``, its live counts and sizes). Returns
    ``{"samples": 0, "note"}`` without slab rows, else ``mode``, ``checks``,
    one entry per sampled cache (:func:`_cache_check`) and ``samples``, the
    number of sample times."""
    slab = rp.rec.slab
    out = {}
    if not len(slab):
        return {"samples": 0, "note": "no slab rows in the recording: no cross-check"}
    mode, system = _mode(rp.rec.meta)
    out["mode"] = mode
    out["checks"] = ("slabinfo's error: the trace holds every object of the cache" if system else
                     "nothing of slabinfo's error: it counts the whole system, the trace only the "
                     f"recorded {mode}; the difference is the rest of the system")
    alias_names = rp.rec.meta.get("slab_aliases") or {}
    for obj in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        s = slab[slab["slab_cache"] == obj]
        if not len(s):
            continue
        out[obj] = _cache_check(rp, obj, s, mode, system, alias_names)
    out["samples"] = int(slab["ts_ns"].nunique())
    return out


def _mode(meta):
    """The run's target mode from the metadata ``meta`` (``target.mode``,
    "system" when absent). Returns ``(mode, system)``, ``system`` true for a
    system-wide run: the only one where slabinfo's error can be told."""
    target = meta.get("target") or {}
    mode = target.get("mode", "system") if isinstance(target, dict) else "system"
    return mode, mode == "system"


def _traced(rp, obj, first, last):
    """The trace at the ``first`` and ``last`` slab samples of cache ``obj``
    (rows with ``pos``): ``(traced_change, run_last)``, the change in net
    live objects between them and the run objects live at the last one."""
    net, run = rp.count(obj, net=True), rp.count(obj, net=False)
    net_first = int(net.at(int(first["pos"])))
    net_last = int(net.at(int(last["pos"])))
    run_last = int(run.at(int(last["pos"])))
    return net_last - net_first, run_last


def _cache_check(rp, obj, s, mode, system, alias_names):
    """One cache's entry: its slab rows ``s`` (in order) beside the trace.
    Our objects at the last sample lie between the run objects still live
    and the first sample's ``active_objs`` plus the traced net change, so
    slabinfo minus ours is ``slabinfo_minus_traced_range``; in a
    system-wide run (``system``) that range cut at 0 is slabinfo's
    overstatement (:func:`_overstates`). ``mode`` names the run in the
    fidelity; ``alias_names`` is the metadata's ``slab_aliases``. Returns
    the entry (bounds: per-CPU slabs and a merged cache's aliases)."""
    size = rp.sizes[obj][0]
    first, last = s.iloc[0], s.iloc[-1]
    active_first, active_last = int(first["slab_active"]), int(last["slab_active"])
    traced_change, run_last = _traced(rp, obj, first, last)
    slab_change = active_last - active_first
    diff = slab_change - traced_change
    aliases = int(last["slab_aliases"]) if int(last["slab_aliases"]) >= 0 else 0
    # our objects at the last sample lie in [run_last, active_first + traced_change]
    minus_lo = active_last - (active_first + traced_change)
    minus_hi = active_last - run_last
    entry = {
        "samples": int(len(s)),
        "aliases": aliases,
        "alias_names": list(alias_names.get(obj, [])) if isinstance(alias_names, dict) else [],
        "active_first": active_first,
        "active_last": active_last,
        "active_peak": int(s["slab_active"].max()),
        "slab_objsize": int(last["slab_objsize"]),
        "slab_change": slab_change,
        "traced_change": traced_change,
        "difference": diff,
        "difference_bytes": diff * size,
        "run_objects_live_at_last_sample": run_last,
        "slabinfo_minus_traced_range": [int(minus_lo), int(minus_hi)],
        "fidelity": "bounds (slabinfo counts per-CPU slabs as active; aliases add other caches' objects)"
                    if system else "not a check: the trace covers only the recorded " + mode,
        "see": SECTION,
    }
    if system:
        entry.update(_overstates(rp.rec.meta, obj, minus_lo, minus_hi, size, aliases))
        entry.update(_alias_traffic(rp.rec.meta, obj, diff, aliases))
    if aliases:
        entry["note"] = (f"cache merged with {aliases} other cache(s): slabinfo's "
                         f"{obj} line counts their objects too")
    return entry


def _alias_traffic(meta, obj, diff, aliases):
    """A system-wide run's merged cache: its aliases' own allocations and
    frees while recording (metadata ``alias_traffic``, schema v8), their net
    change, and the slabinfo change left after ours and theirs
    (``difference_with_aliases``: per-CPU slabs and sheaves, and the
    window's edges). Null fields without the counts."""
    if not aliases:
        return {}
    t = (meta.get("alias_traffic") or {}).get(obj)
    if not isinstance(t, dict):
        return {"alias_traffic": None, "alias_net_change": None, "difference_with_aliases": None}
    net = int(t["allocs"]) - int(t["frees"])
    return {"alias_traffic": {"allocs": int(t["allocs"]), "frees": int(t["frees"])},
            "alias_net_change": net, "difference_with_aliases": diff - net}


def _overstates(meta, obj, minus_lo, minus_hi, size, aliases):
    """A system-wide run's additions to cache ``obj``'s entry: slabinfo's
    overstatement, ``[minus_lo, minus_hi]`` cut at 0, in objects and bytes
    (``size`` each), and for a merged (``aliases``) anon_vma_chain the
    metadata ``meta``'s ``alias_frees_skipped``. Returns them as a dict."""
    out = {}
    # what slabinfo's line holds beyond our objects: never negative (a
    # negative low end is slabinfo lagging the trace: per-CPU slabs)
    lo, hi = max(int(minus_lo), 0), max(int(minus_hi), 0)
    out["slabinfo_overstates_range"] = [lo, hi]
    out["slabinfo_overstates_bytes_range"] = [lo * size, hi * size]
    if obj == "anon_vma_chain" and aliases:
        out["alias_frees_skipped"] = meta.get("alias_frees_skipped")
    return out
