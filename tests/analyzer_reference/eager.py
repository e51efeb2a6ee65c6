"""Eager model: replay of what the kernel did (docs/models.md section 1).

mm/rmap.c: __anon_vma_prepare (fault), anon_vma_fork / anon_vma_clone
(fork, clone_fork), anon_vma_clone from mm/vma.c __split_vma, vma_expand,
copy_vma (clone_vma), unlink_anon_vmas / __put_anon_vma (frees).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from anonscope.collector import schema as S

from . import forktree, live
from .live import NEVER

RMAP_OBJECTS = ("anon_vma", "anon_vma_chain")
SECTION = "docs/models.md#eager"


@dataclass
class Replay:
    """A recording prepared for the models: allocs with their free position."""
    rec: object
    allocs: pd.DataFrame
    frees: pd.DataFrame
    tree: forktree.ProcessTree
    sizes: dict

    def of(self, obj):
        return self.allocs[self.allocs["object"] == obj]


def prepare(rec):
    ob = rec.objects
    ob = ob.assign(ocode=ob["object"].cat.codes.astype(np.int16))
    allocs = ob[ob["is_alloc"]].drop(columns=["is_alloc", "preexisting"]).reset_index(drop=True)
    frees = ob[~ob["is_alloc"]].drop(columns=["is_alloc"]).reset_index(drop=True)

    # match each run free to the latest earlier alloc with the same (object, obj_id)
    run_free = frees.loc[~frees["preexisting"], ["pos", "ocode", "obj_id"]]
    right = allocs[["pos", "ocode", "obj_id"]].rename(columns={"pos": "alloc_pos"})
    if len(run_free) and len(right):
        m = pd.merge_asof(run_free, right, left_on="pos", right_on="alloc_pos",
                          by=["ocode", "obj_id"], direction="backward",
                          allow_exact_matches=False)
        m = m.dropna(subset=["alloc_pos"])
        m["alloc_pos"] = m["alloc_pos"].astype(np.int64)
        m = m.drop_duplicates("alloc_pos", keep="first")
        free_of = pd.Series(m["pos"].to_numpy(), index=m["alloc_pos"].to_numpy())
        alloc_of = pd.Series(m["alloc_pos"].to_numpy(), index=m["pos"].to_numpy())
    else:
        free_of = pd.Series(dtype=np.int64)
        alloc_of = pd.Series(dtype=np.int64)
    allocs["free_pos"] = free_of.reindex(allocs["pos"].to_numpy()).fillna(NEVER) \
        .to_numpy().astype(np.int64)
    frees["alloc_pos"] = alloc_of.reindex(frees["pos"].to_numpy()).fillna(-1) \
        .to_numpy().astype(np.int64)
    sizes = {obj: rec.object_size(obj) for obj in S.OBJECTS}
    return Replay(rec=rec, allocs=allocs, frees=frees, tree=forktree.build(rec), sizes=sizes)


def _counts(series, keys):
    vc = series.value_counts()
    return {k: int(vc.get(k, 0)) for k in keys}


def _time_series(rp, pos_sorted, run, points=20):
    """Net live sampled at up to ``points`` evenly spaced times: [[seconds, live], ...]."""
    end = rp.rec.end_ts_ns
    if not len(run) or end <= 0:
        return []
    # positions -> ts: every position has a row in some frame; use the alloc/free rows
    ob = rp.rec.objects
    times = np.linspace(0, end, points + 1)[1:]
    at = np.searchsorted(ob["ts_ns"].to_numpy(), times, side="right")
    obpos = ob["pos"].to_numpy()
    # the object row just before each time (or none)
    vals = []
    for t, i in zip(times, at):      # <= points iterations, not per event
        p = obpos[i - 1] if i > 0 else -1
        vals.append([round(float(t) / 1e9, 6), int(live.value_at(pos_sorted, run, p)) if p >= 0 else 0])
    return vals


def object_stats(rp, obj):
    size, size_source = rp.sizes[obj]
    a = rp.of(obj)
    f = rp.frees[rp.frees["object"] == obj]
    paths = S.ALLOC_PATHS if obj in RMAP_OBJECTS else S.VMA_ALLOC_PATHS
    allocated = _counts(a["path"], paths)
    total = int(len(a))
    pre = f.loc[f["preexisting"], "pos"].to_numpy()
    net = live.summary(a["pos"].to_numpy(), a["free_pos"].to_numpy(), extra_minus=pre)
    runl = live.summary(a["pos"].to_numpy(), a["free_pos"].to_numpy())
    pos_sorted, run = live.curve(a["pos"].to_numpy(), a["free_pos"].to_numpy(), extra_minus=pre)
    unmatched = int(((~f["preexisting"]) & (f["alloc_pos"] < 0)).sum())
    out = {
        "object_size": size,
        "object_size_source": size_source,
        "allocated": allocated,
        "allocated_total": total,
        "allocated_bytes": total * size,
        "freed": int(len(f)),
        "freed_by_path": _counts(f["path"], S.FREE_PATHS),
        "freed_preexisting": int(len(pre)),
        "unmatched_frees": unmatched,
        "live_at_end": net["end"],
        "peak_live": net["peak"],
        "min_live": net["min"],
        "peak_live_bytes": net["peak"] * size,
        "live_basis": "net change from the start of the run (preexisting objects' frees count)",
        "run_objects": {
            "live_at_end": runl["end"],
            "peak_live": runl["peak"],
            "peak_live_bytes": runl["peak"] * size,
        },
        "live_over_time": _time_series(rp, pos_sorted, run),
        "fidelity": "exact",
        "see": SECTION,
    }
    if obj in RMAP_OBJECTS:
        cv = a[a["path"] == "clone_vma"]
        callers = _counts(cv["caller"], ("split", "merge", "mremap", "fork"))
        callers["unknown"] = int(cv["caller"].isna().sum())
        out["clone_vma_callers"] = callers
    return out


def processes(rp, top=50):
    """Per-owner and per-comm allocations of anon_vma and AVC (exact)."""
    a = rp.allocs[rp.allocs["object"].isin(RMAP_OBJECTS)]
    tree = rp.tree
    av_size, avc_size = rp.sizes["anon_vma"][0], rp.sizes["anon_vma_chain"][0]
    result = {"by_process": [], "by_comm": [], "top": top}
    if len(a):
        byp = a.groupby(["owner", "object"], observed=True).size().unstack(fill_value=0)
        byp = byp.reindex(columns=list(RMAP_OBJECTS), fill_value=0)
        byp["bytes"] = byp["anon_vma"] * av_size + byp["anon_vma_chain"] * avc_size
        last_comm = a.drop_duplicates("owner", keep="last").set_index("owner")["comm"]
        forks = tree.forks.groupby("tgid").size()
        forking = set(tree.forking.tolist())
        byp = byp.sort_values(["bytes"], ascending=False, kind="stable")
        result["processes_with_objects"] = int(len(byp))
        for tgid, row in byp.head(top).iterrows():   # at most `top` rows
            result["by_process"].append({
                "tgid": int(tgid),
                "comm": None if pd.isna(last_comm.get(tgid)) else str(last_comm.get(tgid)),
                "anon_vma": int(row["anon_vma"]),
                "anon_vma_chain": int(row["anon_vma_chain"]),
                "bytes": int(row["bytes"]),
                "process_forks": int(forks.get(tgid, 0)),
                "leaf": int(tgid) not in forking,
            })
        byc = a.groupby(["comm", "object"], observed=True).size().unstack(fill_value=0)
        byc = byc.reindex(columns=list(RMAP_OBJECTS), fill_value=0)
        byc["bytes"] = byc["anon_vma"] * av_size + byc["anon_vma_chain"] * avc_size
        byc = byc.sort_values("bytes", ascending=False, kind="stable")
        result["comms_with_objects"] = int(len(byc))
        for comm, row in byc.head(top).iterrows():
            result["by_comm"].append({"comm": str(comm), "anon_vma": int(row["anon_vma"]),
                                      "anon_vma_chain": int(row["anon_vma_chain"]),
                                      "bytes": int(row["bytes"])})
    else:
        result["processes_with_objects"] = 0
        result["comms_with_objects"] = 0
    result["fidelity"] = "exact"
    result["note"] = ("owner = the process an object serves (the child for fork paths); "
                      "comm = the allocating task's command name")
    return result


def model(rp):
    """The eager model's numbers in the common model layout (report.models.eager)."""
    out = {"fidelity": "exact", "see": SECTION}
    for obj in RMAP_OBJECTS + ("vm_area_struct",):
        size = rp.sizes[obj][0]
        a = rp.of(obj)
        s = live.summary(a["pos"].to_numpy(), a["free_pos"].to_numpy())
        n = int(len(a))
        out[obj] = {"allocated": n, "bytes": n * size, "allocated_range": [n, n],
                    "peak_live": s["peak"], "peak_live_bytes": s["peak"] * size,
                    "fidelity": "exact", "see": SECTION}
    out["saved_pct"] = {"anon_vma": 0.0, "anon_vma_chain": 0.0}
    out["peak_saved_pct"] = {"anon_vma": 0.0, "anon_vma_chain": 0.0}
    out["extra_costs"] = {}
    return out


def saved_pct(eager_n, model_n):
    if not eager_n:
        return None
    return round(100.0 * (eager_n - model_n) / eager_n, 1)
