"""What the running kernel's anon rmap looks like, from BTF: the members
of its three structs and which anon rmap functions exist (metadata
``rmap_layout``, schema v9; docs/schema.md).

A kernel running another anon rmap design (the ANON_VMA_LAZY series, the
CoW-context draft, a no-fork opt-out) changes these: the series adds a
root-VMA pointer and a refcount to ``vm_area_struct``, a replacement drops
functions. Nothing here names a design: neither the series nor the draft
is merged, so their identifiers are not known from a released kernel.
``anonanalyze compare`` lists what differs between two recordings and the
user says which design B runs (``--b-design``, docs/compare.md).
"""

from typing import Dict, Optional

from .btf import BTF, BTFError

STRUCTS = ("anon_vma", "anon_vma_chain", "vm_area_struct")
#: the anon rmap's functions in mm/rmap.c (6.1 to 7.3) and the interval
#: tree's iterators under both names (anon_rmap_tree_* in 7.3)
FUNCTIONS = ("__anon_vma_prepare", "anon_vma_fork", "anon_vma_clone", "unlink_anon_vmas", "__put_anon_vma",
             "find_mergeable_anon_vma", "folio_lock_anon_vma_read", "rmap_walk_anon", "rmap_walk_ksm",
             "rmap_walk", "rmap_walk_locked", "folio_get_anon_vma", "anon_vma_interval_tree_iter_first",
             "anon_rmap_tree_iter_first")


def layout(btf: Optional[BTF]) -> Optional[Dict[str, object]]:
    """{"structs": {struct: {"size", "members"}}, "functions": {name: bool}}
    of the kernel ``btf`` describes; a struct BTF lacks is null; None
    without BTF."""
    if btf is None:
        return None
    structs = {}
    for name in STRUCTS:
        try:
            structs[name] = {"size": btf.sizeof(name), "members": btf.members(name)}
        except BTFError:
            structs[name] = None
    present = btf.funcs(FUNCTIONS)
    return {"structs": structs, "functions": {f: f in present for f in FUNCTIONS}}
