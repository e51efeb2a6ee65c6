"""Do two recordings' kernels have the same anon rmap? Their metadata
``rmap_layout`` (schema v9, collector/rmaplayout.py: the members of
anon_vma, anon_vma_chain and vm_area_struct and which anon rmap functions
BTF has) compared (docs/compare.md, "Which anon rmap B runs").

A difference says B's kernel changed its anon rmap, not which design it
runs: neither the ANON_VMA_LAZY series nor the CoW-context draft is
merged, so no released kernel gives their identifiers. The user names the
design (``--b-design``).
"""

UNKNOWN = "unknown"
SAME = "same"
DIFFERS = "differs"


def diff(layout_a, layout_b):
    """{"status": same|differs|unknown, "structs": {struct: {"added",
    "removed", "size": [a, b]}} for each struct that differs, "functions":
    {"only_a", "only_b"}, "unknown": [the sides without a layout]}."""
    missing = [side for side, lay in (("A", layout_a), ("B", layout_b)) if not lay]
    if missing:
        return {"status": UNKNOWN, "structs": {}, "functions": {"only_a": [], "only_b": []}, "unknown": missing}
    structs = {}
    for name in sorted(set(layout_a["structs"]) | set(layout_b["structs"])):
        d = _struct_diff(layout_a["structs"].get(name), layout_b["structs"].get(name))
        if d is not None:
            structs[name] = d
    fa, fb = (_present(lay["functions"]) for lay in (layout_a, layout_b))
    functions = {"only_a": sorted(fa - fb), "only_b": sorted(fb - fa)}
    same = not structs and not functions["only_a"] and not functions["only_b"]
    return {"status": SAME if same else DIFFERS, "structs": structs, "functions": functions, "unknown": []}


def rmap_changed(d):
    """Whether a ``diff`` shows the anon rmap itself changed, not just the
    VMA: anon_vma or anon_vma_chain differ, the rmap functions differ, or
    vm_area_struct gains or loses a member named ``anon*`` (stock kernels
    change vm_area_struct between releases: 6.12's vm_lock and detached,
    7.3's vm_refcnt)."""
    if d["status"] != DIFFERS:
        return False
    if any(name != "vm_area_struct" for name in d["structs"]) or d["functions"]["only_a"] or d["functions"]["only_b"]:
        return True
    v = d["structs"].get("vm_area_struct") or {"added": [], "removed": []}
    return any(m.startswith("anon") for m in v["added"] + v["removed"])


def _present(functions):
    """The names of ``functions`` ({name: bool}) the kernel has."""
    return {f for f, there in functions.items() if there}


def _struct_diff(a, b):
    """{"added", "removed", "size": [a, b]} of one struct (None: the same;
    a side without it has no members and size null)."""
    ma, mb = (a or {}).get("members") or [], (b or {}).get("members") or []
    sa, sb = (a or {}).get("size"), (b or {}).get("size")
    added, removed = [m for m in mb if m not in ma], [m for m in ma if m not in mb]
    if not added and not removed and sa == sb:
        return None
    return {"added": added, "removed": removed, "size": [sa, sb]}


def line(d):
    """The comparison in one sentence."""
    if d["status"] == UNKNOWN:
        return (f"anon rmap layout: unknown ({' and '.join(d['unknown'])} recorded without it: schema before "
                "v9 or no BTF)")
    if d["status"] == SAME:
        return "anon rmap layout (BTF): the same in A and B"
    parts = [f"{name} {_members(s)} ({s['size'][0]} -> {s['size'][1]} B)" for name, s in d["structs"].items()]
    f = d["functions"]
    parts += [f"functions only in {side}: {', '.join(names)}"
              for side, names in (("A", f["only_a"]), ("B", f["only_b"])) if names]
    return "anon rmap layout (BTF) differs: " + "; ".join(parts)


def _members(s):
    """``+[new] -[gone]`` of a struct's members."""
    return " ".join(f"{sign}[{', '.join(names)}]" for sign, names in (("+", s["added"]), ("-", s["removed"]))
                    if names) or "members the same"
