"""Assemble the BPF C program for one running kernel.

The source in bpf/anonscope.bpf.c is completed with #defines taken at run
time from BTF (struct sizes, task_struct offsets), the tracepoint format
files (which optional fields exist), /sys/kernel/slab (merged caches) and
/proc/kallsyms (call-site classifiers). ``--ebpf`` prints the result.
"""

import os
import platform
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from anonscope import bpf

from . import abi, fprobes, headers, kallsyms
from .abi import Rss
from .btf import BTF, BTFError
from .sites import Classifier

FORK_SYSCALLS = ("clone", "clone3", "fork", "vfork")
EXEC_SYSCALLS = ("execve", "execveat")
STACK_DEPTH = 12


def tracepoint_fields(category: str, event: str, tracing: Optional[str]) -> Optional[List[str]]:
    """Field names of a tracepoint from its format file, None if it is absent."""
    if not tracing:
        return None
    path = os.path.join(tracing, "events", category, event, "format")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    return parse_format_fields(text)


def parse_format_fields(text: str) -> List[str]:
    """Names of the ``field:TYPE NAME;`` lines of a tracepoint format file."""
    names = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("field:"):
            continue
        decl = line[len("field:"):].split(";", 1)[0]
        name = decl.split()[-1].split("[", 1)[0]
        names.append(name)
    return names


class LayoutError(Exception):
    """The kernel's BTF lacks something the program needs."""


def kmem_arg_layout(alloc_args: Optional[List[str]], free_args: Optional[List[str]]) -> Dict[str, int]:
    """Positions of the kmem raw tracepoints' arguments, by type.

    ``alloc_args``/``free_args`` are BTF.raw_tracepoint_args() of
    kmem_cache_alloc and kmem_cache_free. kmem_cache_alloc passes ``struct
    kmem_cache *s`` from 6.0 (b347aa7b5747 "mm/tracing: add 'accounted'
    entry into output of allocation tracepoints"; sizes and identity come
    from it), before that ``size_t bytes_req, bytes_alloc``;
    kmem_cache_free passes ``s`` from 6.1 (2c1d697fb8ba "mm/slab_common:
    drop kmem_alloc & avoid dereferencing fields when not using"), the
    cache's ``const char *name`` in 5.12-6.0 (3544de8ee6e4 "mm, tracing:
    record slab name for kmem_cache_free()") and nothing but the call site
    and pointer before. Positions are found by type, so each combination
    works. -1 marks an argument the kernel does not pass.
    """
    if not alloc_args or not free_args:
        raise LayoutError("no btf_trace_kmem_cache_alloc/free in BTF (kernel before 5.5?)")

    def find(args, pred, nth=0):
        hits = [i for i, t in enumerate(args) if pred(t)]
        return hits[nth] if len(hits) > nth else -1

    unsigned_long = lambda t: t in ("long unsigned int", "unsigned long")  # noqa: E731
    void_ptr = lambda t: t.replace("const ", "") == "void *"  # noqa: E731
    cache = lambda t: t.replace("const ", "") == "struct kmem_cache *"  # noqa: E731
    size_t = lambda t: t == "size_t"  # noqa: E731
    layout = {
        "KA_CALL_SITE": find(alloc_args, unsigned_long), "KA_PTR": find(alloc_args, void_ptr),
        "KA_CACHE": find(alloc_args, cache),
        "KA_BYTES_REQ": find(alloc_args, size_t), "KA_BYTES_ALLOC": find(alloc_args, size_t, 1),
        "KF_CALL_SITE": find(free_args, unsigned_long), "KF_PTR": find(free_args, void_ptr),
        "KF_CACHE": find(free_args, cache), "KF_NAME": find(free_args, lambda t: t == "const char *"),
    }
    if min(layout["KA_CALL_SITE"], layout["KA_PTR"], layout["KF_CALL_SITE"], layout["KF_PTR"]) < 0 or \
            (layout["KA_CACHE"] < 0 and layout["KA_BYTES_ALLOC"] < 0):
        raise LayoutError(f"unexpected kmem tracepoint arguments: alloc {alloc_args}, free {free_args}")
    return layout


def fprobe_layout(btf: BTF) -> Dict[str, int]:
    """Offsets the function probes read, from BTF: vm_area_struct's range,
    mm, file and anon_vma, the anonymous-page counter of an mm (rss_layout)
    and, for the walk probes, walk_layout() (FP_WALKS 0 without it: the
    call probes need no struct folio). Raises BTFError when the VMA fields
    are missing (then no function probe can run)."""
    vma = {f"VMA_{m.upper().replace('VM_', '')}_OFF": btf.offsetof("vm_area_struct", m)
           for m in ("vm_start", "vm_end", "vm_mm", "vm_pgoff", "vm_file")}
    return dict(vma, **rss_layout(btf), **walk_layout(btf), **clone_op_layout(btf),
                VMA_ANON_VMA_OFF=btf.offsetof("vm_area_struct", "anon_vma"))


#: enum vma_operation's enumerators (7.2 and 7.3 mm/internal.h) and the
#: FP_VMA_OP_* defines that get their values
VMA_OPS = {"FP_VMA_OP_SPLIT": "VMA_OP_SPLIT", "FP_VMA_OP_MERGE": "VMA_OP_MERGE_UNFAULTED",
           "FP_VMA_OP_REMAP": "VMA_OP_REMAP", "FP_VMA_OP_FORK": "VMA_OP_FORK"}


def clone_op_layout(btf: BTF) -> Dict[str, int]:
    """FP_CLONE_OP: whether anon_vma_clone() takes the operation argument
    (``enum vma_operation``: Debian's 7.2.13 and 7.3.4 sources have it,
    the 6.18 host's BTF does not; added by d17f02417a33 "mm/rmap: separate
    out fork-only logic on anon_vma_clone()", 7.0 by its date, the release
    tag not checked here), and its values. The
    clone probe then declares three arguments (fexit reads the return value
    after them) and takes the AVCs' caller (split, merge, mremap) from it."""
    try:
        return dict({d: btf.enumerator(n, "vma_operation") for d, n in VMA_OPS.items()}, FP_CLONE_OP=1)
    except BTFError:
        return dict(dict.fromkeys(VMA_OPS, -1), FP_CLONE_OP=0)


#: walk_layout()'s offsets when BTF lacks them (FP_WALKS 0: never read).
NO_WALKS = {"FOLIO_FLAGS_OFF": 0, "FOLIO_MAPPING_OFF": 0, "FOLIO_INDEX_OFF": 0, "FOLIO_ORDER_OFF": 0, "PG_HEAD_BIT": 0,
            "RWC_RMAP_ONE_OFF": 0, "FP_WALK_ANON": 0, "FP_WALK_KSM": 0, "FP_ITER_RMAP_TREE": 0, "FP_WALKS": 0}


def walk_layout(btf: BTF) -> Dict[str, int]:
    """What the walk probes read: the folio's flags, mapping, index (its
    first page's offset in the anon_vma's pgoff space, schema v8) and order, valid
    with PG_head set: ``folio._folio_order`` from v6.1 (commit 379708ffde1b,
    "mm: add the first tail page to struct folio") to v6.5, the low byte of
    ``folio._flags_1`` from v6.6 (commit ebc1baf5c9b4, "mm: free up a word in
    the first tail page"), as drgn's ``folio_order()`` reads it;
    rmap_walk_control.rmap_one; FP_WALK_ANON: whether BTF has rmap_walk_anon
    (mm/rmap.c, static) as a function, so that fentry can probe the walk
    there, and FP_WALK_KSM: whether it has rmap_walk_ksm (mm/ksm.c,
    CONFIG_KSM); FP_ITER_RMAP_TREE: whether the interval-tree iterators are
    anon_rmap_tree_iter_first/_next (7.3 mm/interval_tree.c; 7.2 and
    earlier: anon_vma_interval_tree_iter_first/_next; read in Debian's 7.2.13
    and 7.3.4 sources; renamed by "mm/rmap: rename anon_vma_interval_tree_*()
    to anon_rmap_tree_*()", seen only as mm-tree commit b1e71c05fa37, whose
    mainline hash is not established here). A
    kernel with neither order field (before 6.1; struct folio itself is from
    v5.16, commit 7b230db3b8d3, "mm: Introduce struct folio") gets NO_WALKS
    plus the reason (``WALKS_MISSING``)."""
    try:
        try:
            order = btf.offsetof("folio", "_folio_order")
        except BTFError:
            order = btf.offsetof("folio", "_flags_1")
        return dict(FOLIO_FLAGS_OFF=btf.offsetof("folio", "flags"),
                    FOLIO_MAPPING_OFF=btf.offsetof("folio", "mapping"),
                    FOLIO_INDEX_OFF=btf.offsetof("folio", "index"), FOLIO_ORDER_OFF=order,
                    PG_HEAD_BIT=btf.enumerator("PG_head", "pageflags"),
                    RWC_RMAP_ONE_OFF=btf.offsetof("rmap_walk_control", "rmap_one"),
                    FP_WALK_ANON=int(btf.has_func("rmap_walk_anon")),
                    FP_WALK_KSM=int(btf.has_func("rmap_walk_ksm")),
                    FP_ITER_RMAP_TREE=int(btf.has_func(fprobes.ITERATORS_7_3[0])), FP_WALKS=1)
    except BTFError as e:
        return dict(NO_WALKS, WALKS_MISSING=str(e))


def census_layout(btf: BTF) -> Dict[str, int]:
    """Offsets the census iterator (bpf/fprobes.bpf.c, FP_CENSUS) reads, from
    BTF: the task's comm, the VMA's anon_vma and anon_vma_chain list, the
    AVC's same_vma link and anon_vma, the anon_vma's num_children and
    num_active_vmas (both from v6.0, commit 2555283eb40d, "mm/rmap: Fix
    anon_vma->degree ambiguity leading to double-reuse", which replaced
    ``degree``: -1 before, and the columns stay null). Raises BTFError when
    the kernel has no task_vma iterator (``struct bpf_iter__task_vma``, from
    v5.12, commit 3a7b35b899de, "bpf: Introduce task_vma bpf_iter")."""
    btf.sizeof("bpf_iter__task_vma")

    def maybe(member):
        try:
            return btf.offsetof("anon_vma", member)
        except BTFError:
            return -1
    return {"TASK_COMM_OFF": btf.offsetof("task_struct", "comm"),
            "VMA_ANON_VMA_OFF": btf.offsetof("vm_area_struct", "anon_vma"),
            "VMA_CHAIN_OFF": btf.offsetof("vm_area_struct", "anon_vma_chain"),
            "AVC_SAME_VMA_OFF": btf.offsetof("anon_vma_chain", "same_vma"),
            "AVC_ANON_VMA_OFF": btf.offsetof("anon_vma_chain", "anon_vma"),
            "ANON_VMA_NUM_CHILDREN_OFF": maybe("num_children"),
            "ANON_VMA_NUM_ACTIVE_VMAS_OFF": maybe("num_active_vmas")}


def rss_layout(btf: BTF) -> Dict[str, int]:
    """Where an mm's count of anonymous pages is (MM_ANONPAGES of
    ``mm->rss_stat``), for the pages copy_page_range() copies at fork:
    RSS_ATOMIC up to 6.1 (``struct mm_rss_stat``: an atomic_long_t per
    counter), RSS_PERCPU from 6.2 (a ``struct percpu_counter`` per counter:
    its ``count`` plus every CPU's share in ``counters``), RSS_NONE when BTF
    has neither (the copy probe is then left out). MM_ANON_RSS_OFF is the
    offset of the counter in struct mm_struct."""
    try:
        anon = btf.enumerator("MM_ANONPAGES")
        base = btf.offsetof("mm_struct", "rss_stat")
        try:
            off = base + btf.offsetof("mm_rss_stat", "count") + 8 * anon
            return {"FP_RSS": int(Rss.ATOMIC), "MM_ANON_RSS_OFF": off}
        except BTFError:
            return {"FP_RSS": int(Rss.PERCPU), "MM_ANON_RSS_OFF": base + btf.sizeof("percpu_counter") * anon,
                    "PCC_COUNT_OFF": btf.offsetof("percpu_counter", "count"),
                    "PCC_COUNTERS_OFF": btf.offsetof("percpu_counter", "counters")}
    except BTFError:
        return {"FP_RSS": int(Rss.NONE), "MM_ANON_RSS_OFF": -1}


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """nr_cpu_ids: one more than the highest possible CPU ("0-3,8-11")."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return 0
    return max(int(part.split("-")[-1]) for part in text.split(",")) + 1 if text else 0


def percpu_facts(layout: Dict[str, int], per_cpu_offset: int, cpus: int) -> Dict[str, int]:
    """Add what summing a percpu_counter needs (the __per_cpu_offset array's
    address from kallsyms, the possible CPUs) to an RSS_PERCPU layout; an
    RSS_PERCPU layout without them becomes RSS_NONE (RSS_NO_PERCPU_REASON
    says why)."""
    if layout["FP_RSS"] != Rss.PERCPU:
        return layout
    if not per_cpu_offset or not 0 < cpus <= MAX_CPUS:
        return {"FP_RSS": int(Rss.NONE), "MM_ANON_RSS_OFF": -1}
    return dict(layout, PER_CPU_OFFSET_ADDR=per_cpu_offset, NR_CPUS_POSSIBLE=cpus)


#: Per-CPU shares the program sums at most (a bound for the verifier).
MAX_CPUS = 1024
RSS_NO_PERCPU_REASON = ("the kernel keeps RSS in percpu_counters (6.2+) and /proc/kallsyms does not list "
                        "__per_cpu_offset (CONFIG_KALLSYMS_ALL off), or more than 1024 possible CPUs")


def _fprobe_facts(btf: BTF, per_cpu_offset: int, cpus: int) -> Dict[str, object]:
    out: Dict[str, object] = {}
    try:
        layout = fprobe_layout(btf)
        missing = layout.pop("WALKS_MISSING", None)
        if missing:
            out["walks_missing"] = missing
        out["fprobe_offsets"] = dict(layout, **percpu_facts(layout, per_cpu_offset, cpus))
        if not out["fprobe_offsets"]["FP_RSS"]:
            out["rss_missing"] = RSS_NO_PERCPU_REASON if layout["FP_RSS"] == Rss.PERCPU else \
                "BTF has no MM_ANONPAGES rss_stat counter in struct mm_struct"
    except BTFError as e:
        out.update(fprobe_offsets=None, fprobe_missing=str(e))
    try:
        out["census_offsets"] = census_layout(btf)
    except BTFError as e:
        out.update(census_offsets=None, census_missing=str(e))
    return out


#: The first release whose tracepoints, and the BPF programs on them, run
#: preemptible. Read: 6.12 runs them with preemption off
#: (include/linux/tracepoint.h:226 preempt_disable_notrace() in __DO_TRACE,
#: kernel/trace/bpf_trace.c:2319 cant_sleep() in __bpf_trace_run); 7.3 under
#: SRCU-fast and migrate_disable() only (tracepoint.h:315
#: guard(srcu_fast_notrace), bpf_trace.c:2116 rcu_read_lock_dont_migrate()).
#: Releases between were not read (mainline a46023d5616e, f7d327654b88,
#: dated 2026-01: most likely 7.0, no tag checked): the change is taken to
#: come right after 6.18, the last one run with these rules (this project's
#: host); a miss counted as possibly ours where it was not only makes a
#: bound wider.
PREEMPTIBLE_TRACEPOINTS = (6, 19)


@dataclass
class KernelFacts:
    """What the program must know about the running kernel."""

    sizes: Dict[str, int]              # sizeof from BTF
    task_offsets: Dict[str, int]       # task_struct pid, tgid, mm
    kmem_args: Dict[str, int]          # kmem_arg_layout()
    kmem_cache_offsets: Dict[str, int]  # struct kmem_cache object_size, size
    exit_has_group_dead: bool          # sched_process_exit has `group_dead`
    fork_syscalls: List[str]           # syscalls with enter/exit tracepoints
    exec_syscalls: List[str]           # execve, execveat with enter/exit tracepoints
    task_rename: bool                  # task:task_rename exists
    merged: Dict[str, bool]            # cache merged with others
    free_names: Dict[str, str]         # name the kernel gives each object's cache
    anon_vma_offsets: Dict[str, int]   # struct anon_vma root, rwsem
    lock_contention: bool              # lock:contention_begin/end with lock_addr, flags
    move_probes: Dict[str, bool] = field(default_factory=dict)  # MOVE_PROBES present (v7 move rows)
    mm_owner_off: int = -1             # mm_struct.owner (CONFIG_MEMCG), -1 when absent
    uffd_offsets: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(UFFD_OFFSETS, -1))
    fprobe_offsets: Optional[Dict[str, int]] = None  # fprobe_layout(), None if BTF lacks something
    fprobe_missing: Optional[str] = None  # why fprobe_offsets is None
    walks_missing: Optional[str] = None  # why the walk probes are left out (FP_WALKS 0)
    rss_missing: Optional[str] = None  # why the copy_page_range probe is left out (FP_RSS 0)
    census_offsets: Optional[Dict[str, int]] = None  # census_layout(), None without a task_vma iterator
    census_missing: Optional[str] = None  # why census_offsets is None
    release: str = field(default_factory=platform.release)
    arch: str = field(default_factory=platform.machine)
    #: an example kernel's facts (example()), not the running kernel's
    is_example: bool = False

    @property
    def preemptible(self) -> bool:
        """Whether a task can be preempted inside one of our tracepoint
        programs on this kernel (PREEMPTIBLE_TRACEPOINTS)."""
        return headers.release_version(self.release) >= PREEMPTIBLE_TRACEPOINTS

    @classmethod
    def probe(cls, btf: BTF, merged: Dict[str, bool], free_names: Dict[str, str],
              tracing: Optional[str]) -> "KernelFacts":
        """The running kernel's facts: from ``btf``, the tracepoint format
        files under ``tracing`` and kallsyms, with the caches' ``merged`` and
        ``free_names`` as given."""
        exit_fields = tracepoint_fields("sched", "sched_process_exit", tracing) or []
        begin = tracepoint_fields("lock", "contention_begin", tracing) or []
        end = tracepoint_fields("lock", "contention_end", tracing) or []
        return cls(
            sizes={s: btf.sizeof(s) for s in ("anon_vma", "anon_vma_chain", "vm_area_struct")},
            task_offsets={m: btf.offsetof("task_struct", m) for m in ("pid", "tgid", "mm", "comm")},
            kmem_args=kmem_arg_layout(btf.raw_tracepoint_args("kmem_cache_alloc"),
                                      btf.raw_tracepoint_args("kmem_cache_free")),
            kmem_cache_offsets={m: btf.offsetof("kmem_cache", m) for m in ("object_size", "size")},
            exit_has_group_dead="group_dead" in exit_fields,
            fork_syscalls=[s for s in FORK_SYSCALLS if _syscall_traced(s, tracing)],
            exec_syscalls=[s for s in EXEC_SYSCALLS if _syscall_traced(s, tracing)],
            task_rename=tracepoint_fields("task", "task_rename", tracing) is not None,
            merged=merged, free_names=free_names,
            anon_vma_offsets={m: btf.offsetof("anon_vma", m) for m in ("root", "rwsem")},
            lock_contention={"lock_addr", "flags"} <= set(begin) and "lock_addr" in end,
            move_probes=move_probes(tracing), mm_owner_off=_offset_or(btf, "mm_struct", "owner", -1),
            uffd_offsets={d: _offset_or(btf, s, m, -1) for d, (s, m) in UFFD_OFFSETS.items()},
            **_fprobe_facts(btf, kallsyms.symbol_address("__per_cpu_offset"), possible_cpus()))

    @classmethod
    def example(cls) -> "KernelFacts":
        """Facts of 6.18 x86_64 with BTF, for ``--ebpf`` where BTF or
        tracefs cannot be read."""
        return cls(is_example=True, release="6.18 (example)", arch="x86_64",
            sizes={"anon_vma": 96, "anon_vma_chain": 64, "vm_area_struct": 192},
            task_offsets={"pid": 1264, "tgid": 1268, "mm": 1136, "comm": 1752},
            move_probes=dict.fromkeys(MOVE_PROBES, True), mm_owner_off=1000,
            kmem_args=kmem_arg_layout(["long unsigned int", "const void *", "struct kmem_cache *", "gfp_t", "int"],
                                      ["long unsigned int", "const void *", "const struct kmem_cache *"]),
            kmem_cache_offsets={"object_size": 36, "size": 32},
            exit_has_group_dead=True, fork_syscalls=list(FORK_SYSCALLS), exec_syscalls=list(EXEC_SYSCALLS),
            task_rename=True,
            merged={"anon_vma": False, "anon_vma_chain": True, "vm_area_struct": False},
            free_names={o: o for o in ("anon_vma", "anon_vma_chain", "vm_area_struct")},
            anon_vma_offsets={"root": 0, "rwsem": 8}, lock_contention=True,
            fprobe_offsets={"VMA_START_OFF": 0, "VMA_END_OFF": 8, "VMA_MM_OFF": 16, "VMA_PGOFF_OFF": 80,
                            "VMA_FILE_OFF": 88, "FOLIO_FLAGS_OFF": 0, "FOLIO_MAPPING_OFF": 24, "FOLIO_INDEX_OFF": 32,
                            "FOLIO_ORDER_OFF": 64, "PG_HEAD_BIT": 6, "RWC_RMAP_ONE_OFF": 16, "FP_WALK_ANON": 1,
                            "FP_WALKS": 1,
                            "FP_WALK_KSM": 1, "FP_RSS": 2, "MM_ANON_RSS_OFF": 1000, "VMA_ANON_VMA_OFF": 64,
                            "PCC_COUNT_OFF": 8, "PCC_COUNTERS_OFF": 32, "PER_CPU_OFFSET_ADDR": 0,
                            "NR_CPUS_POSSIBLE": 2},
            census_offsets={"TASK_COMM_OFF": 1752, "VMA_ANON_VMA_OFF": 64, "VMA_CHAIN_OFF": 48,
                            "AVC_SAME_VMA_OFF": 16, "AVC_ANON_VMA_OFF": 8, "ANON_VMA_NUM_CHILDREN_OFF": 56,
                            "ANON_VMA_NUM_ACTIVE_VMAS_OFF": 64})


@dataclass
class Options:
    """How the BPF program is built (:func:`build`): the task filter, ring or
    perf buffer, the in-kernel object id map's size, raw pointers, and which
    probes it carries."""
    tracked: bool = False            # record only tracked tgids (command, -p)
    comm: Optional[str] = None       # record only this comm
    ringbuf: bool = True             # BPF ring buffer, else perf buffer
    ringbuf_pages: int = 4096        # 16 MiB with 4 KiB pages
    max_live: int = 1 << 20          # in-kernel object id map entries
    raw_pointers: bool = False
    func_probes: bool = False        # add bpf/fprobes.bpf.c
    kfunc: bool = False              # ...as fentry/fexit rather than kprobes
    census_only: bool = False        # only the census iterator (collector/census.py)


#: Tracepoints of the v7 move rows (docs/collector.md#moves), by the HAVE_*
#: define that says the program attaches them. ksm: include/trace/events/ksm.h
#: (in 6.12 and 7.3; added in 6.4 by 739100c88f49 "mm: add tracepoints to ksm"); syscalls:
#: CONFIG_FTRACE_SYSCALLS.
MOVE_PROBES = {"HAVE_KSM_MERGE": ("ksm", "ksm_merge_with_ksm_page", ("mm", "err")),
               "HAVE_UFFD_MOVE": ("syscalls", "sys_enter_ioctl", ("cmd", "arg")),
               "HAVE_MREMAP_DONTUNMAP": ("syscalls", "sys_enter_mremap", ("addr", "old_len", "flags"))}


#: What the UFFDIO_MOVE probe reads to find the uffd's mm (uffd_mm() in
#: bpf/anonscope.bpf.c); -1 (BTF without it) falls back to the caller.
UFFD_OFFSETS = {"TASK_FILES_OFF": ("task_struct", "files"), "FILES_FDT_OFF": ("files_struct", "fdt"),
                "FDT_MAX_FDS_OFF": ("fdtable", "max_fds"), "FDT_FD_OFF": ("fdtable", "fd"),
                "FILE_PRIVATE_DATA_OFF": ("file", "private_data"), "UFFD_CTX_MM_OFF": ("userfaultfd_ctx", "mm")}


def move_probes(tracing: Optional[str]) -> Dict[str, bool]:
    """Which move tracepoints exist with the fields the program reads."""
    out = {}
    for define, (cat, event, needs) in MOVE_PROBES.items():
        fields = tracepoint_fields(cat, event, tracing)
        out[define] = fields is not None and set(needs) <= set(fields)
    return out


def _offset_or(btf: BTF, struct: str, member: str, default: int) -> int:
    try:
        return btf.offsetof(struct, member)
    except BTFError:
        return default


def _syscall_traced(name: str, tracing: Optional[str]) -> bool:
    return all(tracepoint_fields("syscalls", f"sys_{side}_{name}", tracing) is not None
               for side in ("enter", "exit"))


def _syscall_probes(syscalls: List[str], enter: str, leave: str) -> str:
    """TRACEPOINT_PROBE pairs calling ``enter()`` at entry and ``leave()`` at exit."""
    out = []
    for s in syscalls:
        out.append(f"TRACEPOINT_PROBE(syscalls, sys_enter_{s}) {{ return {enter}(); }}")
        out.append(f"TRACEPOINT_PROBE(syscalls, sys_exit_{s}) {{ return {leave}(); }}")
    return " \\\n".join(out) if out else ""


_OBJ_CODES = {"anon_vma": "OBJ_ANON_VMA", "anon_vma_chain": "OBJ_AVC", "vm_area_struct": "OBJ_VMA"}


def name_matcher(free_names: Dict[str, str]) -> str:
    """C function object_by_name(n): the object whose cache the 16-byte,
    NUL-padded name ``n`` is, 0 for any other cache; byte compares only."""
    out = ["static __always_inline u8 object_by_name(const char *n)\n{"]
    for obj, name in sorted(free_names.items()):
        b = name.encode()[:15] + b"\0"
        cond = " && ".join(f"n[{i}] == {c}" for i, c in enumerate(b))
        out.append(f"    if ({cond})  // {name}\n        return {_OBJ_CODES[obj]};")
    out.append("    return 0;\n}\n")
    return "\n".join(out)


#: Bit set in every id a census-only program makes (bpf/anonscope.bpf.c new_id).
CENSUS_ID_TAG = 1 << 61


def census_possible(facts: KernelFacts, opts: Options) -> Optional[str]:
    """None when the program can carry the census iterator, else why not."""
    if facts.census_offsets is None:
        return f"no task_vma iterator in BTF ({facts.census_missing})"
    if not opts.ringbuf:
        return "needs the BPF ring buffer (not --perf-buffer)"
    return None


def c_string(s: str) -> str:
    """A C string literal for a comm (printable ASCII, at most 15 bytes)."""
    s = s[:15]
    return '"' + "".join(c if c.isalnum() or c in " _-.:/+@" else f"\\x{ord(c):02x}" for c in s) + '"'


def build(facts: KernelFacts, classifier: Classifier, opts: Options) -> str:
    """The complete C text handed to bcc: the header (what it was built
    from, the interface's and the kernel's #defines), then bpf/anonscope.bpf.c
    with struct event, the generated classifiers and, with function probes,
    bpf/fprobes.bpf.c spliced in at their markers."""
    head = _header(facts, classifier) + [f"#define {k} {v}" for k, v in
                                         {**abi.defines(), **_kernel_defines(facts), **_option_defines(facts, opts)}
                                         .items()]
    if opts.comm:
        head.append(f"#define COMM_FILTER {c_string(opts.comm)}")
    head.append("#define FORK_SYSCALL_PROBES " + _syscall_probes(facts.fork_syscalls, "fork_enter", "fork_exit"))
    head.append("#define EXEC_SYSCALL_PROBES " + _syscall_probes(facts.exec_syscalls, "exec_enter", "exec_exit"))
    # The generated functions use the program's types and OBJ_* codes.
    body = splice(bpf.source("anonscope.bpf.c"), STRUCT_MARKER, abi.c_struct_event())
    body = splice(body, GENERATED_MARKER, classifier.c_functions() + name_matcher(facts.free_names))
    if opts.func_probes:
        body = splice(body, FPROBES_MARKER, bpf.source("fprobes.bpf.c"))
    return "\n".join(head) + "\n" + body


def _header(facts: KernelFacts, classifier: Classifier) -> List[str]:
    """Comment lines saying what the program was built for, and when its
    facts or call sites are not the running kernel's."""
    head = [f"// Generated by anoncollect for {facts.release} {facts.arch}."]
    if facts.is_example:
        head.append("// EXAMPLE FACTS: BTF or tracefs could not be read (not root?), so the struct sizes, "
                    "offsets and tracepoint fields below are an example 6.18 x86_64 kernel's, not this one's.")
    if classifier.example:
        head.append("// PLACEHOLDER CALL SITES: /proc/kallsyms shows no addresses to this user, so the "
                    "address ranges in alloc_site() and the other classifiers are made up.")
    return head


def _kernel_defines(facts: KernelFacts) -> Dict[str, object]:
    """The running kernel's layouts and capabilities (BTF, tracefs, slab)."""
    return {
        "STACK_DEPTH": STACK_DEPTH,
        "ANON_VMA_SIZE": facts.sizes["anon_vma"],
        "AVC_SIZE": facts.sizes["anon_vma_chain"],
        "VMA_SIZE": facts.sizes["vm_area_struct"],
        "TASK_PID_OFF": facts.task_offsets["pid"],
        "TASK_TGID_OFF": facts.task_offsets["tgid"],
        "TASK_MM_OFF": facts.task_offsets["mm"],
        "TASK_COMM_OFF": facts.task_offsets["comm"],
        "MM_OWNER_OFF": facts.mm_owner_off,
        **{k: int(facts.move_probes.get(k, False)) for k in MOVE_PROBES},
        **{k: facts.uffd_offsets.get(k, -1) for k in UFFD_OFFSETS},
        "UFFD_MM_KNOWN": int(all(facts.uffd_offsets.get(k, -1) >= 0 for k in UFFD_OFFSETS)),
        **facts.kmem_args,
        "KMEM_CACHE_OBJECT_SIZE_OFF": facts.kmem_cache_offsets["object_size"],
        "KMEM_CACHE_SIZE_OFF": facts.kmem_cache_offsets["size"],
        "HAVE_GROUP_DEAD": int(facts.exit_has_group_dead),
        "HAVE_FORK_SYSCALLS": int(bool(facts.fork_syscalls)),
        "PREEMPTIBLE_BPF": int(facts.preemptible),
        "HAVE_EXEC_SYSCALLS": int(bool(facts.exec_syscalls)),
        "HAVE_TASK_RENAME": int(facts.task_rename),
        "HAVE_LOCK_CONTENTION": int(facts.lock_contention),
        "ANON_VMA_ROOT_OFF": facts.anon_vma_offsets["root"],
        "ANON_VMA_RWSEM_OFF": facts.anon_vma_offsets["rwsem"],
        "MERGED_ANON_VMA": int(facts.merged.get("anon_vma", False)),
        "MERGED_AVC": int(facts.merged.get("anon_vma_chain", False)),
        "MERGED_VMA": int(facts.merged.get("vm_area_struct", False)),
    }


def _option_defines(facts: KernelFacts, opts: Options) -> Dict[str, object]:
    """The run's choices: target, buffer, id map, backend, census."""
    out = {
        "TARGET_TRACKED": int(opts.tracked),
        "USE_RINGBUF": int(opts.ringbuf),
        "RINGBUF_PAGES": opts.ringbuf_pages,
        "MAX_LIVE": opts.max_live,
        "RAW_POINTERS": int(opts.raw_pointers),
        "FUNC_PROBES": int(opts.func_probes),
        "CENSUS_ONLY": int(opts.census_only),
        "ID_TAG": CENSUS_ID_TAG if opts.census_only else 0,
    }
    if opts.func_probes:
        out["FP_KFUNC"] = int(opts.kfunc)
        out.update(facts.fprobe_offsets)
        out["FP_CENSUS"] = int(census_possible(facts, opts) is None)
        if out["FP_CENSUS"]:
            out.update(facts.census_offsets)
    return out


STRUCT_MARKER = "// STRUCT EVENT: collector/abi.py EVENT_FIELDS and FPROBE_FIELDS go here\n"
GENERATED_MARKER = "// GENERATED: alloc_site(), free_site(), caller_site(), lock_site(), object_by_name()\n"
FPROBES_MARKER = "// FPROBES: bpf/fprobes.bpf.c goes here when FUNC_PROBES\n"


def splice(source: str, marker: str, text: str) -> str:
    """``text`` inserted after the one line ``marker`` of ``source``."""
    if source.count(marker) != 1:
        raise LayoutError(f"the BPF source has {source.count(marker)} lines {marker.strip()!r}, expected 1")
    return source.replace(marker, marker + text, 1)
