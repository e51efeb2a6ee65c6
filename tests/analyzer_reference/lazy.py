"""ANON_VMA_LAZY model (docs/models.md section 2).

Rules L1-L8 decide which eager objects the lazy kernel defers; U1 (fork,
kernel/fork.c dup_mmap -> anon_vma_fork) and U2 (mremap, mm/vma.c copy_vma)
decide when a deferred object is allocated after all, as an *upgrade*.
Everything is vectorised: one merge_asof finds each object's next fork of
its owner, another the source of each mremap copy.
"""

import numpy as np
import pandas as pd

from . import live
from .eager import RMAP_OBJECTS, saved_pct

SECTION = "docs/models.md#lazy"
RULES = "docs/models.md#lazy-rules"
BOUNDS = "docs/models.md#lazy-bounds"
COSTS = "docs/models.md#lazy-costs"

POINTER_BYTES = {"x86_64": 8, "aarch64": 8, "arm64": 8, "ppc64le": 8, "ppc64": 8,
                 "s390x": 8, "riscv64": 8, "loongarch64": 8, "mips64": 8, "sparc64": 8,
                 "i386": 4, "i486": 4, "i586": 4, "i686": 4, "armv7l": 4, "armv6l": 4,
                 "arm": 4, "riscv32": 4, "mips": 4, "ppc": 4}
REFCOUNT_BYTES = 4


def pointer_bytes(arch):
    """(pointer size, how it was found) for a uname -m string."""
    if arch in POINTER_BYTES:
        return POINTER_BYTES[arch], "arch"
    if isinstance(arch, str) and "64" in arch:
        return 8, "guessed from arch name"
    return 8, "unknown arch: assumed 64-bit"


def _frame(rp):
    """av/AVC allocs with owner's prior/next process fork."""
    a = rp.allocs[rp.allocs["object"].isin(RMAP_OBJECTS)]
    a = a[["pos", "pid", "object", "path", "caller", "owner", "fork_id", "free_pos"]].copy()
    a["is_av"] = (a["object"] == "anon_vma").to_numpy()
    forks = rp.tree.forks
    first_fork = forks.groupby("tgid")["pos"].min()
    ff = first_fork.reindex(a["owner"].to_numpy()).to_numpy()
    a["prior"] = np.nan_to_num(ff, nan=np.inf) < a["pos"].to_numpy()
    right = forks[["pos", "tgid", "fork_id"]].rename(
        columns={"pos": "nf_pos", "tgid": "owner", "fork_id": "nf_id"})
    right["owner"] = right["owner"].astype(a["owner"].dtype)
    if len(a) and len(right):
        m = pd.merge_asof(a[["pos", "owner"]].reset_index(), right.sort_values("nf_pos"),
                          left_on="pos", right_on="nf_pos", by="owner",
                          direction="forward", allow_exact_matches=False)
        m = m.set_index("index").reindex(a.index)
        a["nf_pos"] = m["nf_pos"].fillna(-1).to_numpy().astype(np.int64)
        a["nf_id"] = m["nf_id"].fillna(-1).to_numpy().astype(np.int64)
    else:
        a["nf_pos"] = -1
        a["nf_id"] = -1
    path = a["path"]
    caller = a["caller"]
    a["base_deferred"] = path.isin(["fault", "fork"]).to_numpy()
    a["splitlike"] = ((path == "clone_vma") & ~(caller == "mremap").fillna(False)).to_numpy()
    a["mremap"] = ((path == "clone_vma") & (caller == "mremap").fillna(False)).to_numpy()
    a["own_av"] = _fault_pairs(a)
    return a


def _fault_pairs(a):
    """For each ``fault`` AVC: the position in ``a`` of the anon_vma that the
    same __anon_vma_prepare() call allocated (the same task's next av/AVC
    allocation, when it is a ``fault`` anon_vma), else -1. The AVC is
    allocated first; without the anon_vma row a neighbour's was reused."""
    n = len(a)
    out = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return out
    pid = a["pid"].to_numpy()
    order = np.argsort(pid, kind="stable")          # a is in replay order
    cur, nxt = order[:-1], order[1:]
    path = a["path"].to_numpy()
    is_av = (a["object"] == "anon_vma").to_numpy()
    fault = path == "fault"
    ok = (pid[cur] == pid[nxt]) & fault[cur] & ~is_av[cur] & fault[nxt] & is_av[nxt]
    out[cur[ok]] = nxt[ok]
    return out


def _mremap_sources(rp, a):
    """For each lazy-context mremap AVC: pos of the alloc of the first AVC the
    same task frees after it (-1: no free, -2: a preexisting/unmatched one)."""
    m = a[a["mremap"] & ~a["prior"]][["pos", "pid", "free_pos"]]
    f = rp.frees[rp.frees["object"] == "anon_vma_chain"][["pos", "pid", "alloc_pos"]]
    if not len(m):
        return m.assign(src=np.zeros(0, dtype=np.int64))
    if not len(f):
        return m.assign(src=-1)
    f = f.rename(columns={"pos": "fpos"})
    f["pid"] = f["pid"].astype(m["pid"].dtype)
    j = pd.merge_asof(m.reset_index(), f, left_on="pos", right_on="fpos", by="pid",
                      direction="forward", allow_exact_matches=False).set_index("index")
    src = np.where(j["fpos"].isna(), -1, j["alloc_pos"].fillna(-2)).astype(np.int64)
    return m.assign(src=src)


def _variant(rp, a, name):
    """Allocation counts (and best-variant timing) for best / low / high."""
    if name == "best":
        deferred = a["base_deferred"] | (a["splitlike"] & ~a["prior"])
    elif name == "low":
        deferred = a["base_deferred"] | a["splitlike"]
    else:
        deferred = a["base_deferred"].copy()
    deferred = deferred.to_numpy()
    nf = a["nf_pos"].to_numpy()
    upgraded = deferred & (nf >= 0) & (a["free_pos"].to_numpy() > nf)

    # U2: mremap sources that are deferred and not upgraded at a fork
    srcs = _mremap_sources(rp, a)
    deferred_pos = pd.Index(a["pos"].to_numpy()[deferred & ~upgraded])
    found = srcs[srcs["src"] >= 0]
    found = found[found["src"].isin(deferred_pos)].drop_duplicates("src", keep="first")
    unknown = srcs[srcs["src"] < 0]
    # the mremap upgrade's anon_vma lives until the mremap copy is freed ...
    mre_av_free = found["free_pos"].to_numpy().astype(np.int64)
    if name == "best" and len(found):
        # ... unless the moved VMA's own fault anon_vma is known: then the
        # upgrade allocates that object, at the mremap, until its eager
        # free, and U1 does not upgrade it again at a later fork
        src_idx = pd.Index(a["pos"].to_numpy()).get_indexer(found["src"].to_numpy())
        pair = a["own_av"].to_numpy()[src_idx]
        has = pair >= 0
        has[has] = deferred[pair[has]]
        upgraded = upgraded.copy()
        upgraded[pair[has]] = False
        mre_av_free[has] = a["free_pos"].to_numpy()[pair[has]]
    mremap_up = int(len(found))
    if name == "high":
        # upper bound: every mremap AVC whose source is unknown is an upgrade
        mremap_up += int(unknown["pos"].nunique())

    is_av = a["is_av"].to_numpy()
    kept = ~deferred
    up_av = int((upgraded & is_av).sum())
    up_avc = int((upgraded & ~is_av).sum())
    fk = rp.tree.forks
    if name in ("low", "high") and len(fk):
        # per process fork (keyed by its position): upgrades, clone_fork AVCs,
        # fork-path anon_vmas of that fork (docs/models.md#lazy-bounds)
        fpos = fk["pos"].to_numpy()
        fid = fk["fork_id"].to_numpy()
        tagged = fid >= 0
        uav = pd.Series(nf[upgraded & is_av]).value_counts().reindex(fpos).fillna(0).to_numpy()
        uavc = pd.Series(nf[upgraded & ~is_av]).value_counts().reindex(fpos).fillna(0).to_numpy()
        tag = a["fork_id"].to_numpy() >= 0
        cf = a[(a["path"] == "clone_fork").to_numpy() & tag].groupby("fork_id").size()
        fav = a[(a["path"] == "fork").to_numpy() & is_av & tag].groupby("fork_id").size()
        cfv = cf.reindex(fid).fillna(0).to_numpy()
        favv = np.where(tagged & fk["first"].to_numpy(), fav.reindex(fid).fillna(0).to_numpy(), 0)
        if name == "low":
            uav = np.where(tagged, np.minimum(uav, cfv), uav)
            uavc = np.where(tagged, np.minimum(uavc, cfv), uavc)
        else:
            uav = np.maximum(uavc, favv)
            uavc = np.maximum(uavc, favv)
        up_av, up_avc = int(uav.sum()), int(uavc.sum())
        if name == "low" and len(found):
            # a VMA upgraded at mremap and still mapped at its process's next
            # fork: its eager fault anon_vma was counted as a fork upgrade too
            m = a.set_index("pos").loc[found["pos"].to_numpy(), ["nf_pos", "free_pos"]]
            twice = int(((m["nf_pos"] >= 0) & (m["free_pos"] > m["nf_pos"])).sum())
            up_av -= min(twice, up_av)
    av = int((kept & is_av).sum()) + up_av + mremap_up
    avc = int((kept & ~is_av).sum()) + up_avc + mremap_up
    out = {"anon_vma": av, "anon_vma_chain": avc,
           "fork_upgrades": up_avc,
           "fork_upgrade_anon_vma": up_av,
           "mremap_upgrades": mremap_up,
           "mremap_unknown_sources": int(unknown["pos"].nunique())}
    if name == "best":
        out["_timing"] = (kept, upgraded, found, deferred, mre_av_free)
    return out


def model(rp, eager_model):
    a = _frame(rp)
    best = _variant(rp, a, "best")
    low = _variant(rp, a, "low")
    high = _variant(rp, a, "high")
    kept, upgraded, found, deferred, mre_av_free = best.pop("_timing")

    # peak live (best estimate): kept at eager times, fork upgrades from the
    # fork, mremap upgrades from the move (their AVC until its eager free,
    # their anon_vma until the mremap copy is freed)
    pos = a["pos"].to_numpy()
    free = a["free_pos"].to_numpy()
    nf = a["nf_pos"].to_numpy()
    is_av = a["is_av"].to_numpy()
    src_idx = pd.Index(pos).get_indexer(found["src"].to_numpy())
    mre_start = np.full(len(a), -1, dtype=np.int64)
    mre_start[src_idx] = found["pos"].to_numpy()
    start = np.where(kept, pos, np.where(upgraded, nf, mre_start))
    live_mask = start >= 0
    out = {"fidelity": "estimate", "see": SECTION}
    per_obj = {}
    for obj, sel in (("anon_vma", is_av), ("anon_vma_chain", ~is_av)):
        size = rp.sizes[obj][0]
        s_pos, s_free = start[live_mask & sel], free[live_mask & sel]
        if obj == "anon_vma":     # one anon_vma per mremap upgrade (U2)
            s_pos = np.concatenate([s_pos, found["pos"].to_numpy()])
            s_free = np.concatenate([s_free, mre_av_free])
        s = live.summary(s_pos, s_free)
        n = best[obj]
        lo, hi = min(low[obj], n), max(high[obj], n)
        per_obj[obj] = {
            "allocated": n, "bytes": n * size, "allocated_range": [lo, hi],
            "bytes_range": [lo * size, hi * size],
            "peak_live": s["peak"], "peak_live_bytes": s["peak"] * size,
            "fidelity": "estimate", "see": RULES, "range_see": BOUNDS,
        }
        out[obj] = per_obj[obj]
    ev = eager_model
    out["saved_pct"] = {o: saved_pct(ev[o]["allocated"], per_obj[o]["allocated"]) for o in RMAP_OBJECTS}
    out["saved_pct_range"] = {
        o: [saved_pct(ev[o]["allocated"], per_obj[o]["allocated_range"][1]),
            saved_pct(ev[o]["allocated"], per_obj[o]["allocated_range"][0])] for o in RMAP_OBJECTS}
    out["peak_saved_pct"] = {o: saved_pct(ev[o]["peak_live"], per_obj[o]["peak_live"]) for o in RMAP_OBJECTS}

    # VMAs: same count, larger objects
    ptr, ptr_source = pointer_bytes(rp.rec.meta.get("arch"))
    grow = ptr + REFCOUNT_BYTES
    vsize = rp.sizes["vm_area_struct"][0]
    v = ev["vm_area_struct"]
    out["vm_area_struct"] = {
        "allocated": v["allocated"], "bytes": v["allocated"] * (vsize + grow),
        "allocated_range": [v["allocated"], v["allocated"]],
        "peak_live": v["peak_live"], "peak_live_bytes": v["peak_live"] * (vsize + grow),
        "fidelity": "exact count, size estimate (slot rounding not modelled)", "see": COSTS,
    }
    growth = {
        "bytes_per_vma": grow, "pointer_bytes": ptr, "pointer_bytes_source": ptr_source,
        "refcount_bytes": REFCOUNT_BYTES,
        "run_vmas_peak_live": v["peak_live"],
        "peak_extra_bytes": v["peak_live"] * grow,
        "allocated_vmas_extra_bytes": v["allocated"] * grow,
        "fidelity": "exact count x constant", "see": COSTS,
    }
    slab = rp.rec.slab
    sv = slab[slab["slab_cache"] == "vm_area_struct"] if len(slab) else slab
    if len(sv):
        growth["slabinfo_vmas_last"] = int(sv["slab_active"].iloc[-1])
        growth["slabinfo_vmas_peak"] = int(sv["slab_active"].max())
        growth["slabinfo_extra_bytes_last"] = growth["slabinfo_vmas_last"] * grow
        growth["slabinfo_extra_bytes_peak"] = growth["slabinfo_vmas_peak"] * grow

    fork_eager = int(a["path"].isin(["fork", "clone_fork"]).sum())
    fork_lazy = int((a["path"] == "clone_fork").sum()) + int(upgraded.sum())
    out["upgrades"] = {
        "fork": best["fork_upgrades"],
        "mremap": best["mremap_upgrades"],
        # rule changed with analyzer/lazy.py (min/max over all variants)
        "fork_range": [min(low["fork_upgrades"], best["fork_upgrades"], high["fork_upgrades"]),
                       max(high["fork_upgrades"], best["fork_upgrades"], low["fork_upgrades"])],
        "mremap_range": [min(low["mremap_upgrades"], best["mremap_upgrades"]),
                         max(high["mremap_upgrades"], best["mremap_upgrades"])],
        "objects": {
            "anon_vma": best["fork_upgrade_anon_vma"] + best["mremap_upgrades"],
            "anon_vma_chain": best["fork_upgrades"] + best["mremap_upgrades"],
        },
        "mremap_unknown_sources": best["mremap_unknown_sources"],
        "fidelity": "estimate", "see": RULES,
    }
    out["extra_costs"] = {
        "vma_growth": growth,
        "upgrades": {"fork": out["upgrades"]["fork"], "mremap": out["upgrades"]["mremap"],
                     "objects": out["upgrades"]["objects"]},
        "fork_time_objects": {
            "eager": fork_eager, "lazy": fork_lazy,
            "note": "anon_vma + AVC allocated inside fork: eager fork + clone_fork rows; "
                    "lazy clone_fork + fork upgrades",
            "fidelity": "estimate", "see": COSTS,
        },
        "repointed_pages": {
            "value": None,
            "fidelity": "not measurable",
            "reason": "schema v1 records no anon page counts per VMA; an upgrade re-points "
                      "every anon folio of the VMA",
            "see": COSTS,
        },
    }
    return out
