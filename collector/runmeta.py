"""The run metadata each segment's footer carries (docs/schema.md, "Metadata").

Every commit writes what is known at that moment; the last segment's
footer (``complete`` true) has the final values.
"""

import datetime
import os
import platform
import socket
from typing import Dict

from . import rmaplayout, sites, slab


def metadata(rec, end_ns: int, final: bool) -> Dict[str, object]:
    """``rec``: the session.Recording; ``end_ns``: how far it has recorded."""
    prep, cfg = rec.prep, rec.cfg
    sizes = slab.read_slabinfo()
    target = cfg.target()
    if cfg.pid:
        target["descendants_at_start"] = sorted(p for p in rec.pids if p != cfg.pid)
    return {
        "tool_version": tool_version(),
        "command_line": cfg.argv,
        "kernel_release": prep.facts.release,
        "arch": prep.facts.arch,
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "object_sizes": {o: object_size(o, prep.facts.sizes[o], sizes) for o in prep.facts.sizes},
        "kfence": slab.kfence(),
        "topology": slab.topology(),
        "btf": prep.btf is not None,
        "backend": prep.backend,
        "probes": prep.probes,
        "target": target,
        "start_time": rec.start_wall.isoformat(),
        "end_time": (rec.start_wall + datetime.timedelta(microseconds=end_ns / 1000)).isoformat(),
        "duration_s": end_ns / 1e9,
        "stop_reason": (rec.stop_reason or "duration") if final else None,
        "command_exit_status": rec.exit_status,
        "lost": rec.lost,
        "lost_by_event": rec.lost_by_event(),
        "prog_misses_by_event": misses_by_event(rec.misses_by_program,
                                                interrupt_only_programs(prep.classifier, prep.facts.preemptible)),
        "alias_frees_skipped": rec.alias_skipped,
        "alias_traffic": rec.alias_traffic,
        "hostname": socket.gethostname(),
        "rmap_layout": rmaplayout.layout(prep.btf),
        "prog_misses_by_program": rec.misses_by_program,
        "prog_misses_not_ours": rec.misses_not_ours,
        "slab_aliases": prep.aliases,
        "classification": prep.classifier.describe(),
        "raw_pointers": cfg.raw_pointers,
        "headers": prep.headers.how if prep.headers else None,
        "buffer": "ringbuf" if prep.options.ringbuf else "perfbuf",
        "caches_known_at_start": rec.caches_known,
        "python": platform.python_version(),
        "census": rec.census,
    }


#: (part of a BPF program's name, the event kind its skipped runs may have
#: been), first match wins: bcc names programs after their probe
#: (raw_tracepoint__kmem_cache_alloc, tracepoint__sched__sched_process_exec,
#: kfunc__vmlinux__anon_vma_fork) or after the function (fp_enter_walk, ...).
PROGRAM_KINDS = (("kmem_cache_alloc", "alloc"), ("kmem_cache_free", "free"),
                 ("sched_process_fork", "fork"), ("sys_enter_", "fork"), ("sys_exit_", "fork"),
                 ("sched_process_exec", "exec"), ("task_rename", "exec"), ("sched_process_exit", "exit"),
                 ("contention_", "lock"), ("bpf_iter", "census"), ("walk", "walk"), ("iter", "walk"))


def program_kind(name: str) -> str:
    """The event kind a program's skipped run may have been (function
    probes that are not walks: ``call``)."""
    return next((kind for part, kind in PROGRAM_KINDS if part in name), "call")


def misses_by_event(by_program: Dict[str, int], not_ours: set) -> Dict[str, int]:
    """Skipped program runs (recursion_misses) that may have been events,
    by kind; the runs of ``not_ours`` programs cannot have been."""
    out = {}
    for name, n in by_program.items():
        if name not in not_ours:
            kind = program_kind(name)
            out[kind] = out.get(kind, 0) + n
    return out


def object_size(obj: str, btf_size: int, lines) -> Dict[str, object]:
    """The metadata's object_sizes entry: sizeof from BTF, the slot from
    /proc/slabinfo, and (schema v5) the cache's object_size and align from
    /sys/kernel/slab."""
    geo = slab.geometry(obj)
    return {"btf_size": btf_size, "slab_size": lines[obj].objsize if obj in lines else None,
            "object_size": geo.get("object_size"), "align": geo.get("align"), **slab.counts(obj)}


def interrupt_only_programs(classifier: sites.Classifier, preemptible: bool) -> set:
    """Programs whose skipped runs cannot have been our objects' events.

    A raw tracepoint program is skipped when it runs while an earlier run of
    it has not finished on the same CPU (__bpf_trace_run's per-program
    ``active`` guard). Up to 6.18 tracepoints run with preemption disabled,
    so the earlier run was interrupted: every skipped run was an allocation
    or free in interrupt context. anon_vma, AVC and VMA allocations never
    happen there (anon_vma_alloc, anon_vma_chain_alloc, vm_area_alloc/_dup
    use GFP_KERNEL); their frees neither, except VMAs on kernels that free
    them from an RCU callback (vm_area_free_rcu_cb). From 6.19
    (``preemptible``: KernelFacts.preemptible) a task can be preempted
    inside our program, and every allocation of the next task on that CPU
    is skipped until it runs again: those may be ours (seen in the 1-CPU 7.3 guest: one whole
    fork's objects), so no program is exempt. Classic tracepoint and kprobe
    programs share a global guard and are always counted as possible
    losses.
    """
    if preemptible:
        return set()
    progs = {"raw_tracepoint__kmem_cache_alloc"}
    if sites.VMA_RCU_FREE in classifier.missing:
        progs.add("raw_tracepoint__kmem_cache_free")
    return progs


def tool_version() -> str:
    """The installed anonscope version; "unknown" when running from a tree that
    is not installed."""
    try:
        from importlib.metadata import version
        return version("anonscope")
    except Exception:  # noqa: BLE001 - running from a tree that is not installed
        return "unknown"
