"""Attach the function probes of bpf/fprobes.bpf.c, one by one.

Per probe: fentry/fexit where bcc supports kfuncs (x86_64 with BTF; bcc has
none on arm64) and the kernel accepts them, kprobe/kretprobe otherwise;
each probe that cannot attach is skipped with its reason, and the
recording goes on with the rest (and always with the tracepoints). The
results go into the metadata's ``probes``. Function names are those of
mm/rmap.c and mm/interval_tree.c as read in 6.12, 7.2 and 7.3 and probed in
Debian's 6.1, 6.12 and 7.3 (scripts/vm-test); a kernel that lacks one skips that probe
with the reason. The rmap_one callbacks are those of collector/sites.py:
WALK_SITES.
"""

import os
import re
from typing import Dict, List, NamedTuple, Optional, Tuple

from .sites import WALK_SITES

#: The interval-tree iterators of the walk loop, which count the AVCs a walk
#: visits: anon_rmap_tree_iter_first/_next behind anon_rmap_tree_foreach
#: (7.3 mm/interval_tree.c, include/linux/mm.h), anon_vma_interval_tree_*
#: up to 7.2 (7.2 and 6.12 mm/interval_tree.c). The program is built for
#: the pair BTF has (FP_ITER_RMAP_TREE, collector/program.py walk_layout).
ITERATORS_7_3 = ("anon_rmap_tree_iter_first", "anon_rmap_tree_iter_next")
ITERATORS = ("anon_vma_interval_tree_iter_first", "anon_vma_interval_tree_iter_next")


def function_probes(rmap_tree: bool = False) -> List[Tuple[str, Optional[str], Optional[str]]]:
    """(function, entry program, return program) for kprobe mode; in kfunc
    mode the same functions are fentry/fexit programs bcc attaches itself.
    ``rmap_tree``: the kernel's iterators are ITERATORS_7_3."""
    return [
        ("__anon_vma_prepare", "fp_enter_prepare", "fp_return_fn"),
        ("anon_vma_fork", "fp_enter_fork", "fp_return_fn"),
        ("anon_vma_clone", "fp_enter_clone", "fp_return_fn"),
        ("unlink_anon_vmas", "fp_enter_unlink", "fp_return_fn"),
        ("rmap_walk", "fp_enter_walk", "fp_return_walk"),
        ("rmap_walk_locked", "fp_enter_walk_locked", "fp_return_walk"),
    ] + [(f, None, "fp_return_iter") for f in (ITERATORS_7_3 if rmap_tree else ITERATORS)]


#: the probes of a kernel up to 7.2
FUNCTION_PROBES = function_probes()


def kprobes_available(tracing: Optional[str]) -> Tuple[bool, str]:
    """Whether this kernel can attach kprobes at all (CONFIG_KPROBE_EVENTS)."""
    if not tracing:
        return False, "no tracefs"
    if not os.path.exists(os.path.join(tracing, "kprobe_events")):
        return False, "kernel without kprobe events (CONFIG_KPROBES/CONFIG_KPROBE_EVENTS off)"
    return True, "kprobe_events present"


def symbols(bpf, names) -> Dict[str, Optional[str]]:
    """The traceable symbol for each of ``names``: itself, or a
    compiler-renamed copy (``name.isra.0``, ``name.constprop.0``...), or
    None. One bcc ``get_kprobe_functions()`` call for all of them: each call
    reads all of available_filter_functions (tens of thousands of lines)."""
    names = list(names)
    pattern = ("^(" + "|".join(re.escape(n) for n in names) + r")(\.\w+)*$").encode()
    found = [f.decode() for f in bpf.get_kprobe_functions(pattern)]
    out = {}
    for name in names:
        mine = [f for f in found if f == name or f.startswith(name + ".")]
        out[name] = name if name in mine else (mine[0] if mine else None)
    return out


#: rmap_walk_anon (mm/rmap.c, static) is what both rmap_walk and
#: rmap_walk_locked run for an anonymous folio; where the kernel keeps it as
#: a function (Debian's 6.1 and 6.18 do) the walk probes go there, so that no
#: walk is missed whichever entry point it came through. KSM folios are
#: walked by rmap_walk_ksm (mm/ksm.c) instead, probed alongside.
WALK_ENTRIES = ("rmap_walk", "rmap_walk_locked")
WALK_ANON = [("rmap_walk_anon", "fp_enter_walk_anon", "fp_return_walk"),
             ("rmap_walk_ksm", "fp_enter_walk", "fp_return_walk")]


#: The pages copy_page_range() gives a child at fork (bpf/fprobes.bpf.c
#: copy_enter).
COPY_PROBE = ("copy_page_range", "fp_enter_copy", "fp_return_fn")


def copy_probes(fp_rss: int):
    """The copy probe when the program can read the count (FP_RSS != 0)."""
    return [COPY_PROBE] if fp_rss else []


class Walks(NamedTuple):
    """Whether the program has the walk probes (FP_WALKS) and, if not, why;
    whether its iterators are ITERATORS_7_3 (FP_ITER_RMAP_TREE)."""
    built: bool = True
    missing: Optional[str] = None
    rmap_tree: bool = False


#: a program with the walk probes (the default)
WITH_WALKS = Walks()
#: the probes of walks: the walk entry points and the interval-tree iterators
WALK_FUNCTIONS = WALK_ENTRIES + ITERATORS + ITERATORS_7_3


def walk_probes(walk_anon: bool, walk_ksm: bool, walks: Walks = WITH_WALKS):
    """FUNCTION_PROBES with the walk probed in rmap_walk_anon (and
    rmap_walk_ksm, where the kernel has it) when ``walk_anon``, plus a note
    for the metadata; as they are, with no note, otherwise. Without the walk
    probes (``walks.built`` false: BTF lacks struct folio's fields) only the
    call probes, and a note saying why."""
    every = function_probes(walks.rmap_tree)
    if not walks.built:
        calls = [p for p in every if p[0] not in WALK_FUNCTIONS]
        return calls, [{"name": "rmap walk probes", "attached": False,
                        "reason": f"left out: BTF lacks what they read ({walks.missing}); the call probes "
                                  "need no struct folio and run"}]
    if not walk_anon:
        return every, []
    probes = [p for p in every if p[0] not in WALK_ENTRIES] + WALK_ANON[:1 + int(walk_ksm)]
    return probes, [{"name": "rmap_walk+rmap_walk_locked", "attached": False,
                     "reason": "walks probed in rmap_walk_anon" + (" and rmap_walk_ksm" if walk_ksm else "")
                     + " instead (functions in this kernel)"}]


def attach_kprobes(bpf, fp_rss: int, walks: Walks = WITH_WALKS) -> List[Dict[str, object]]:
    """Attach every probe as a kprobe/kretprobe; report each one.
    ``fp_rss``: the program's FP_RSS (which copy probes it has); ``walks``:
    whether it has the walk probes."""
    every = function_probes(walks.rmap_tree) + WALK_ANON + [COPY_PROBE]
    syms = symbols(bpf, [p[0] for p in every] + (sorted(WALK_SITES) if walks.built else []))
    probes, out = walk_probes(syms["rmap_walk_anon"] is not None, syms["rmap_walk_ksm"] is not None, walks)
    probes = probes + copy_probes(fp_rss)
    for func, enter, ret in probes:
        sym = syms[func]
        for kind, fn in (("kprobe", enter), ("kretprobe", ret)):
            if fn is None:
                continue
            name = f"{kind}:{func}"
            if sym is None:
                out.append({"name": name, "attached": False,
                            "reason": "not traceable (inlined, or not in available_filter_functions)"})
                continue
            try:
                if kind == "kprobe":
                    bpf.attach_kprobe(event=sym, fn_name=fn)
                else:
                    bpf.attach_kretprobe(event=sym, fn_name=fn, maxactive=64)
                out.append({"name": name, "attached": True, "reason": f"as {sym}"})
            except Exception as e:  # noqa: BLE001 - bcc raises plain Exception
                out.append({"name": name, "attached": False, "reason": str(e).splitlines()[0]})
    return out + (attach_rmap_one(bpf, syms) if walks.built else [])


def attach_rmap_one(bpf, syms: Optional[Dict[str, Optional[str]]] = None) -> List[Dict[str, object]]:
    """kprobes on the rmap_one callbacks: each call in a walk is one VMA.
    ``syms``: their symbols (``symbols``), looked up here when not given."""
    out = []
    syms = syms if syms is not None else symbols(bpf, sorted(WALK_SITES))
    for func in sorted(WALK_SITES):
        sym = syms[func]
        if sym is None:
            continue  # not in this kernel (DAMON off, renamed): nothing to count
        name = f"kprobe:{func}"
        try:
            bpf.attach_kprobe(event=sym, fn_name="fp_enter_rmap_one")
            out.append({"name": name, "attached": True, "reason": "VMAs visited by walks"})
        except Exception as e:  # noqa: BLE001
            out.append({"name": name, "attached": False, "reason": str(e).splitlines()[0]})
    return out


def kfunc_report(bpf, walk_anon: bool, walk_ksm: bool, fp_rss: int,
                 walks: Walks = WITH_WALKS) -> List[Dict[str, object]]:
    """What bcc attached itself in kfunc mode (fentry/fexit programs are
    attached when the program loads: all of them, or the load fails), plus
    the rmap_one kprobes. ``walk_anon``/``walk_ksm``/``fp_rss`` say which
    functions the program was built with (FP_WALK_ANON/FP_WALK_KSM/FP_RSS). bcc
    0.26 names the programs kfunc__FUNC (later versions kfunc__vmlinux__FUNC)
    and keeps the attached ones in kfunc_entry_fds and kfunc_exit_fds."""
    def names(fds):
        return {k.decode() if isinstance(k, bytes) else k for k in fds}
    entry, exit_ = names(getattr(bpf, "kfunc_entry_fds", {})), names(getattr(bpf, "kfunc_exit_fds", {}))
    probes, out = walk_probes(walk_anon, walk_ksm, walks)
    for func, enter, ret in probes + copy_probes(fp_rss):
        for kind, wanted, attached, prefix in (("fentry", enter, entry, "kfunc__"),
                                               ("fexit", ret, exit_, "kretfunc__")):
            if wanted is not None:
                ok = prefix + func in attached or prefix + "vmlinux__" + func in attached
                out.append({"name": f"{kind}:{func}", "attached": ok, "reason": "bcc kfunc"})
    return out + (attach_rmap_one(bpf) if walks.built else [])


def clone_op_note(clone_op: bool) -> Dict[str, object]:
    """Where the ``caller`` of split, merge and mremap AVCs comes from:
    anon_vma_clone()'s operation argument (FP_CLONE_OP, 7.x) or the stack."""
    if clone_op:
        return {"name": "anon_vma_clone operation", "attached": True,
                "reason": "caller of clone_vma AVCs from anon_vma_clone()'s enum vma_operation argument"}
    return {"name": "anon_vma_clone operation", "attached": False,
            "reason": "this kernel's anon_vma_clone() takes no operation (before 7.x): caller from the kernel stack"}
