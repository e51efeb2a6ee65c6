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

from .btf import BTF
from .sites import Classifier

TRACEFS_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
FORK_SYSCALLS = ("clone", "clone3", "fork", "vfork")
STACK_DEPTH = 12


def tracefs() -> Optional[str]:
    """Mounted tracefs directory, or None."""
    for d in TRACEFS_CANDIDATES:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


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


@dataclass
class KernelFacts:
    """What the program must know about the running kernel."""

    sizes: Dict[str, int]              # sizeof from BTF
    task_offsets: Dict[str, int]       # task_struct pid, tgid, mm
    free_has_name: bool                # kmem_cache_free has `name` (5.12+)
    exit_has_group_dead: bool          # sched_process_exit has `group_dead`
    fork_syscalls: List[str]           # syscalls with enter/exit tracepoints
    task_rename: bool                  # task:task_rename exists
    merged: Dict[str, bool]            # cache merged with others
    free_names: Dict[str, str]         # name kmem tracepoints report per object
    anon_vma_offsets: Dict[str, int] = field(default_factory=lambda: {"root": 0, "rwsem": 8})
    lock_contention: bool = False      # lock:contention_begin/end with lock_addr, flags
    release: str = field(default_factory=platform.release)
    arch: str = field(default_factory=platform.machine)

    @classmethod
    def probe(cls, btf: BTF, merged: Dict[str, bool], free_names: Dict[str, str],
              tracing: Optional[str]) -> "KernelFacts":
        sizes = {s: btf.sizeof(s) for s in ("anon_vma", "anon_vma_chain", "vm_area_struct")}
        offs = {m: btf.offsetof("task_struct", m) for m in ("pid", "tgid", "mm")}
        free_fields = tracepoint_fields("kmem", "kmem_cache_free", tracing) or []
        exit_fields = tracepoint_fields("sched", "sched_process_exit", tracing) or []
        syscalls = [s for s in FORK_SYSCALLS
                    if tracepoint_fields("syscalls", f"sys_enter_{s}", tracing) is not None
                    and tracepoint_fields("syscalls", f"sys_exit_{s}", tracing) is not None]
        rename = tracepoint_fields("task", "task_rename", tracing) is not None
        av = {m: btf.offsetof("anon_vma", m) for m in ("root", "rwsem")}
        begin = tracepoint_fields("lock", "contention_begin", tracing) or []
        end = tracepoint_fields("lock", "contention_end", tracing) or []
        contention = {"lock_addr", "flags"} <= set(begin) and "lock_addr" in end
        return cls(sizes, offs, "name" in free_fields, "group_dead" in exit_fields, syscalls, rename, merged,
                   free_names, av, contention)

    @classmethod
    def example(cls) -> "KernelFacts":
        """Facts of 6.18 x86_64 with BTF, for ``--ebpf`` where BTF or
        tracefs cannot be read."""
        return cls({"anon_vma": 96, "anon_vma_chain": 64, "vm_area_struct": 192},
                   {"pid": 1264, "tgid": 1268, "mm": 1136}, True, True, list(FORK_SYSCALLS), True,
                   {"anon_vma": False, "anon_vma_chain": True, "vm_area_struct": False},
                   {o: o for o in ("anon_vma", "anon_vma_chain", "vm_area_struct")},
                   {"root": 0, "rwsem": 8}, True)


@dataclass
class Options:
    tracked: bool = False            # record only tracked tgids (command, -p)
    comm: Optional[str] = None       # record only this comm
    ringbuf: bool = True             # BPF ring buffer, else perf buffer
    ringbuf_pages: int = 4096        # 16 MiB with 4 KiB pages
    max_live: int = 1 << 20          # in-kernel object id map entries
    raw_pointers: bool = False


def _fork_syscall_probes(syscalls: List[str]) -> str:
    out = []
    for s in syscalls:
        out.append(f"TRACEPOINT_PROBE(syscalls, sys_enter_{s}) {{ return fork_enter(); }}")
        out.append(f"TRACEPOINT_PROBE(syscalls, sys_exit_{s}) {{ return fork_exit(); }}")
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


def c_string(s: str) -> str:
    """A C string literal for a comm (printable ASCII, at most 15 bytes)."""
    s = s[:15]
    return '"' + "".join(c if c.isalnum() or c in " _-.:/+@" else f"\\x{ord(c):02x}" for c in s) + '"'


def build(facts: KernelFacts, classifier: Classifier, opts: Options) -> str:
    """The complete C text handed to bcc."""
    defines = {
        "TARGET_TRACKED": int(opts.tracked),
        "USE_RINGBUF": int(opts.ringbuf),
        "RINGBUF_PAGES": opts.ringbuf_pages,
        "MAX_LIVE": opts.max_live,
        "RAW_POINTERS": int(opts.raw_pointers),
        "STACK_DEPTH": STACK_DEPTH,
        "ANON_VMA_SIZE": facts.sizes["anon_vma"],
        "AVC_SIZE": facts.sizes["anon_vma_chain"],
        "VMA_SIZE": facts.sizes["vm_area_struct"],
        "TASK_PID_OFF": facts.task_offsets["pid"],
        "TASK_TGID_OFF": facts.task_offsets["tgid"],
        "TASK_MM_OFF": facts.task_offsets["mm"],
        "HAVE_FREE_NAME": int(facts.free_has_name),
        "HAVE_GROUP_DEAD": int(facts.exit_has_group_dead),
        "HAVE_FORK_SYSCALLS": int(bool(facts.fork_syscalls)),
        "HAVE_TASK_RENAME": int(facts.task_rename),
        "HAVE_LOCK_CONTENTION": int(facts.lock_contention),
        "ANON_VMA_ROOT_OFF": facts.anon_vma_offsets["root"],
        "ANON_VMA_RWSEM_OFF": facts.anon_vma_offsets["rwsem"],
        "MERGED_ANON_VMA": int(facts.merged.get("anon_vma", False)),
        "MERGED_AVC": int(facts.merged.get("anon_vma_chain", False)),
        "MERGED_VMA": int(facts.merged.get("vm_area_struct", False)),
    }
    head = [f"// Generated by anoncollect for {facts.release} {facts.arch}."]
    head += [f"#define {k} {v}" for k, v in defines.items()]
    if opts.comm:
        head.append(f"#define COMM_FILTER {c_string(opts.comm)}")
    head.append("#define FORK_SYSCALL_PROBES " + _fork_syscall_probes(facts.fork_syscalls))
    # The generated functions use the program's types and OBJ_* codes.
    marker = "// GENERATED: alloc_site(), free_site(), caller_site(), lock_site(), object_by_name()\n"
    generated = classifier.c_functions() + name_matcher(facts.free_names)
    source = bpf.source("anonscope.bpf.c")
    assert marker in source
    body = source.replace(marker, marker + generated, 1)
    return "\n".join(head) + "\n" + body
