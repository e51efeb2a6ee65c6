"""Cross-check traced live objects against /proc/slabinfo samples (``slab`` rows).

Merged caches (``slab_aliases`` > 0, e.g. anon_vma_chain with fs_cache and
eventpoll_pwq) make ``active_objs`` count other caches' objects too: the
check reports how far slabinfo's change differs from the traced change and
the range of slabinfo's overstatement (docs/models.md section 1).
"""


from . import live

SECTION = "docs/models.md#eager"


def check(rp):
    slab = rp.rec.slab
    out = {}
    if not len(slab):
        return {"samples": 0, "note": "no slab rows in the recording: no cross-check"}
    alias_names = rp.rec.meta.get("slab_aliases") or {}
    for obj in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        s = slab[slab["slab_cache"] == obj]
        if not len(s):
            continue
        size = rp.sizes[obj][0]
        a = rp.of(obj)
        f = rp.frees[rp.frees["object"] == obj]
        pre = f.loc[f["preexisting"], "pos"].to_numpy()
        npos, nrun = live.curve(a["pos"].to_numpy(), a["free_pos"].to_numpy(), extra_minus=pre)
        rpos, rrun = live.curve(a["pos"].to_numpy(), a["free_pos"].to_numpy())
        first, last = s.iloc[0], s.iloc[-1]
        active_first, active_last = int(first["slab_active"]), int(last["slab_active"])
        net_first = int(live.value_at(npos, nrun, int(first["pos"])))
        net_last = int(live.value_at(npos, nrun, int(last["pos"])))
        run_last = int(live.value_at(rpos, rrun, int(last["pos"])))
        slab_change = active_last - active_first
        traced_change = net_last - net_first
        diff = slab_change - traced_change
        aliases = int(last["slab_aliases"]) if int(last["slab_aliases"]) >= 0 else 0
        # our objects at the last sample lie in [run_last, active_first + traced_change]
        over_lo = active_last - (active_first + traced_change)
        over_hi = active_last - run_last
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
            "slabinfo_overstates_range": [int(over_lo), int(over_hi)],
            "slabinfo_overstates_bytes_range": [int(over_lo) * size, int(over_hi) * size],
            "fidelity": "bounds (slabinfo counts per-CPU slabs as active; aliases add other caches' objects)",
            "see": SECTION,
        }
        if aliases:
            out[obj]["note"] = (f"cache merged with {aliases} other cache(s): slabinfo's "
                                f"{obj} line counts their objects too")
    out["samples"] = int(slab["ts_ns"].nunique())
    return out
