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
    slab = rp.rec.slab
    out = {}
    if not len(slab):
        return {"samples": 0, "note": "no slab rows in the recording: no cross-check"}
    target = rp.rec.meta.get("target") or {}
    mode = target.get("mode", "system") if isinstance(target, dict) else "system"
    system = mode == "system"
    out["mode"] = mode
    out["checks"] = ("slabinfo's error: the trace holds every object of the cache" if system else
                     "nothing of slabinfo's error: it counts the whole system, the trace only the "
                     f"recorded {mode}; the difference is the rest of the system")
    alias_names = rp.rec.meta.get("slab_aliases") or {}
    for obj in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        s = slab[slab["slab_cache"] == obj]
        if not len(s):
            continue
        size = rp.sizes[obj][0]
        net, run = rp.curve(obj, net=True), rp.curve(obj, net=False)
        first, last = s.iloc[0], s.iloc[-1]
        active_first, active_last = int(first["slab_active"]), int(last["slab_active"])
        net_first = int(net.value_at(int(first["pos"])))
        net_last = int(net.value_at(int(last["pos"])))
        run_last = int(run.value_at(int(last["pos"])))
        slab_change = active_last - active_first
        traced_change = net_last - net_first
        diff = slab_change - traced_change
        aliases = int(last["slab_aliases"]) if int(last["slab_aliases"]) >= 0 else 0
        # our objects at the last sample lie in [run_last, active_first + traced_change]
        minus_lo = active_last - (active_first + traced_change)
        minus_hi = active_last - run_last
        out[obj] = {
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
            # what slabinfo's line holds beyond our objects: never negative (a
            # negative low end is slabinfo lagging the trace: per-CPU slabs)
            lo, hi = max(int(minus_lo), 0), max(int(minus_hi), 0)
            out[obj]["slabinfo_overstates_range"] = [lo, hi]
            out[obj]["slabinfo_overstates_bytes_range"] = [lo * size, hi * size]
            if obj == "anon_vma_chain" and aliases:
                out[obj]["alias_frees_skipped"] = rp.rec.meta.get("alias_frees_skipped")
        if aliases:
            out[obj]["note"] = (f"cache merged with {aliases} other cache(s): slabinfo's "
                                f"{obj} line counts their objects too")
    out["samples"] = int(slab["ts_ns"].nunique())
    return out
