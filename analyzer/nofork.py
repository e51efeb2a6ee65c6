"""Leaf / no-fork model, the PR_SET_NOFORK idea (docs/models.md section 3).

A process (tgid) that makes no process fork during the run opts out: its own
anon_vma and AVC allocations (mm/rmap.c __anon_vma_prepare, anon_vma_clone
outside fork) are not made (N1). Objects its forking parent made for it in
kernel/fork.c dup_mmap -> anon_vma_fork are kept in the best estimate (N2)
and dropped at the low end of the range.
"""

import numpy as np

from . import live
from .eager import RMAP_OBJECTS, rmap_allocs, saved_pct
from .load import OBJECT_CODE, PATH_CODE

SECTION = "docs/models.md#nofork"
RULES = "docs/models.md#nofork-rules"
BOUNDS = "docs/models.md#nofork-bounds"


def model(rp, eager_model):
    ob = rp.ob
    a = rmap_allocs(rp)
    tree = rp.tree
    owner = ob.owner[a]
    leaf = np.isin(owner, tree.leaf)
    certain = np.isin(owner, np.intersect1d(tree.born, tree.exited))
    path = ob.path[a]
    own = np.isin(path, [PATH_CODE["fault"], PATH_CODE["clone_vma"], PATH_CODE["other"]])
    forkpath = np.isin(path, [PATH_CODE["fork"], PATH_CODE["clone_fork"]])
    saved = {"best": own & leaf,
             "low": (own | forkpath) & leaf,       # fewest allocated
             "high": own & leaf & certain}         # most allocated
    is_av = ob.object[a] == OBJECT_CODE["anon_vma"]
    pos, free = ob.pos[a], rp.free_pos(a)
    out = {"fidelity": "exact (best), bounds (range)", "see": SECTION}
    for obj, sel in (("anon_vma", is_av), ("anon_vma_chain", ~is_av)):
        size = rp.sizes[obj][0]
        n = {k: int((sel & ~v).sum()) for k, v in saved.items()}
        keep = sel & ~saved["best"]
        s = live.summary_intervals(pos[keep], free[keep])
        out[obj] = {
            "allocated": n["best"], "bytes": n["best"] * size,
            "allocated_range": [n["low"], n["high"]],
            "bytes_range": [n["low"] * size, n["high"] * size],
            "peak_live": s["peak"], "peak_live_bytes": s["peak"] * size,
            "fidelity": "exact for the run window's leaves", "see": RULES,
            "range_see": BOUNDS,
        }
    ev = eager_model
    out["vm_area_struct"] = dict(ev["vm_area_struct"], fidelity="exact (unchanged)", see=RULES)
    out["saved_pct"] = {o: saved_pct(ev[o]["allocated"], out[o]["allocated"]) for o in RMAP_OBJECTS}
    out["saved_pct_range"] = {
        o: [saved_pct(ev[o]["allocated"], out[o]["allocated_range"][1]),
            saved_pct(ev[o]["allocated"], out[o]["allocated_range"][0])] for o in RMAP_OBJECTS}
    out["peak_saved_pct"] = {o: saved_pct(ev[o]["peak_live"], out[o]["peak_live"]) for o in RMAP_OBJECTS}
    out["leaf_processes"] = int(len(tree.leaf))
    out["leaf_processes_whole_life_in_run"] = int(len(np.intersect1d(
        tree.leaf, np.intersect1d(tree.born, tree.exited))))
    out["forking_processes"] = int(len(tree.forking))
    out["extra_costs"] = {
        "slab_bytes": 0,
        "note": ("no slab memory; a process that opts in can no longer fork, and rmap of its "
                 "pages needs another way to find the VMA (not counted)"),
        "see": BOUNDS,
    }
    return out
