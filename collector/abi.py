"""The interface between the BPF programs (bpf/*.bpf.c) and the collector,
defined once.

Every code the kernel side writes into a record (event kinds, objects, call
sites, paths, callers, flags, functions, walk kinds, counters) is an enum
here; program.build() emits them as C ``#define PREFIX_NAME value`` lines
and splices ``struct event``, generated from :data:`EVENT_FIELDS`, into the
program, and events.py decodes records with the numpy dtype made from the
same fields. After the program is loaded, :func:`check_layout` compares
that dtype field by field with bcc's own ctypes of the ``batches`` map's
leaf, i.e. with what clang laid out.
"""

import ctypes
from enum import IntEnum, IntFlag
from typing import Dict, List, Tuple

import numpy as np

from anonscope import schema


class InterfaceError(Exception):
    """The BPF program and the collector disagree on the record interface."""


class Ev(IntEnum):
    """Event kinds (``struct event.kind``): schema.EVENTS order + 1 for the
    kernel's rows; 0 is never written."""
    ALLOC = 1
    FREE = 2
    FORK = 3
    EXEC = 4
    EXIT = 5
    LOCK = 6
    CALL = 7
    WALK = 8
    CENSUS = 9
    MOVE = 10


class Obj(IntEnum):
    """``struct event.object``: schema.OBJECTS order + 1."""
    ANON_VMA = 1
    AVC = 2
    VMA = 3


class Site(IntEnum):
    """Call-site tags of sites.Classifier (alloc_site(), free_site())."""
    PREPARE = 1     # __anon_vma_prepare
    FORK = 2        # anon_vma_fork
    CLONE = 3       # anon_vma_clone
    VMA_ALLOC = 4   # vm_area_alloc
    VMA_DUP = 5     # vm_area_dup
    UNLINK = 6      # unlink_anon_vmas
    PUT = 7         # __put_anon_vma
    OTHER = 8       # one of our caches, a call site we do not know


class Path(IntEnum):
    """``struct event.path`` on alloc and free rows (:data:`PATH_NAMES`
    gives the schema's string); on call rows it holds an :class:`Fn`."""
    FAULT = 1
    FORK = 2
    CLONE_FORK = 3
    CLONE_VMA = 4
    OTHER = 5
    VMA_ALLOC = 6
    VMA_FORK = 7
    VMA_DUP = 8
    UNLINK = 9
    PUT = 10
    ERROR = 11
    VMA_FREE = 12
    FREE_OTHER = 13


class Caller(IntEnum):
    """``struct event.caller`` on alloc rows: schema.CALLERS order + 1."""
    SPLIT = 1
    MERGE = 2
    MREMAP = 3
    FORK = 4
    ANON_FAULT = 5
    COW_FAULT = 6


class Flag(IntFlag):
    """``struct event.flags``. A bit may mean different things on rows of
    different kinds: TRUNCATED (census rows) is LOCK_WRITE's bit."""
    PREEXISTING = 1
    SHARES_MM = 2
    GROUP_DEAD = 4
    GROUP_DEAD_KNOWN = 8
    LOCK_WRITE = 16
    TRUNCATED = 16
    REUSED = 32
    FILE = 64
    LOCKED = 128


class Fn(IntEnum):
    """Function of a call row (in ``path``): schema.CALL_FUNCS order + 1."""
    PREPARE = 1
    FORK = 2
    CLONE = 3
    UNLINK = 4
    COPY = 5


class Walk(IntEnum):
    """``struct event.caller`` on walk rows: schema.WALK_KINDS order + 1."""
    RECLAIM = 1
    MIGRATION = 2
    KSM = 3
    IDLE = 4
    OTHER = 5


class Move(IntEnum):
    """``struct event.path`` on move rows (v7): schema.MOVE_KINDS order + 1."""
    KSM_MERGE = 1
    UFFD_MOVE = 2
    MREMAP_DONTUNMAP = 3


class Rss(IntEnum):
    """How the kernel keeps mm->rss_stat (FP_RSS): an atomic_long_t up to
    6.1, a percpu_counter from 6.2 (commit f1a7941243c1, "mm: convert
    mm's rss stats into percpu_counter"); NONE: BTF has neither, the copy
    probe is left out)."""
    NONE = 0
    ATOMIC = 1
    PERCPU = 2


#: C prefix of each enum's #defines.
C_ENUMS = {"EV": Ev, "OBJ": Obj, "SITE": Site, "PATH": Path, "CALLER": Caller, "FLAG": Flag,
           "FN": Fn, "WALK": Walk, "MOVE": Move, "RSS": Rss}

#: Path code -> schema path string.
PATH_NAMES = {
    Path.FAULT: "fault", Path.FORK: "fork", Path.CLONE_FORK: "clone_fork", Path.CLONE_VMA: "clone_vma",
    Path.OTHER: "other", Path.VMA_ALLOC: "alloc", Path.VMA_FORK: "fork", Path.VMA_DUP: "dup",
    Path.UNLINK: "unlink", Path.PUT: "put", Path.ERROR: "error", Path.VMA_FREE: "vma_free",
    Path.FREE_OTHER: "other",
}

#: Event kinds by their Ev code - 1 (schema.EVENTS minus the user-space rows).
KINDS = tuple(m.name.lower() for m in Ev)

#: Per-CPU counters of the C program, by index: events of each kind the
#: buffer could not take (C_LOST + kind - 1), then C_LIVE_FULL and
#: C_ALIAS_SKIPPED, then per object (C_ALIAS_ALLOCS / C_ALIAS_FREES + object
#: - 1, the Obj order) the merged cache's allocations and frees that are
#: not ours: its aliases' own traffic (schema v8 ``alias_traffic``).
ALIAS_OBJECTS = schema.OBJECTS     # Obj - 1
COUNTERS = (tuple(f"lost_{k}" for k in KINDS) + ("live_map_full", "alias_frees_skipped")
            + tuple(f"alias_allocs_{o}" for o in ALIAS_OBJECTS)
            + tuple(f"alias_frees_{o}" for o in ALIAS_OBJECTS))

#: Events per ring-buffer record, and the age at which a batch is sent.
BATCH = 64
FLUSH_NS = 100_000_000
#: ``struct batch_head``: every ring/perf buffer record starts with it and
#: is followed by ``n`` events.
BATCH_HEAD_SIZE = 16
FLUSH_HZ = 20  # flush_batches() timer frequency per CPU
NOT_IN_KERNEL = 0xFFFFFFFF  # census: the kernel has no such anon_vma field

#: ioctl(2) command of UFFDIO_MOVE (6.8+): _IOWR(UFFDIO 0xAA, _UFFDIO_MOVE
#: 0x05, struct uffdio_move of 5 x 8 bytes), include/uapi/linux/userfaultfd.h,
#: in the generic _IOC layout of x86_64 and arm64 (dir << 30 | size << 16 |
#: type << 8 | nr).
UFFDIO_MOVE_CMD = (3 << 30) | (40 << 16) | (0xAA << 8) | 0x05
#: mremap(2) flag (include/uapi/linux/mman.h, 5.7+)
MREMAP_DONTUNMAP = 4

#: ``struct event``: (name, C type, what the field holds). The function-probe
#: fields follow under ``#if FUNC_PROBES``.
EVENT_FIELDS: List[Tuple[str, str, str]] = [
    ("ts", "u64", "bpf_ktime_get_ns()"),
    ("obj_id", "u64", "alloc/free; lock: the root anon_vma's id"),
    ("fork_id", "u64", "fork-path allocs, fork; lock: wait in ns; exec: ns since execve()"),
    ("pid", "u32", ""),
    ("tgid", "u32", ""),
    ("aux1", "u32", "alloc: bytes_alloc; fork: child pid"),
    ("aux2", "u32", "fork: child tgid"),
    ("cpu", "u16", ""),
    ("kind", "u8", "Ev"),
    ("object", "u8", "Obj"),
    ("path", "u8", "Path; call rows: Fn"),
    ("caller", "u8", "Caller; lock: lock_site() of the waiter; walk: Walk"),
    ("flags", "u8", "Flag"),
    ("pad", "u8", ""),
    ("comm", "char[16]", ""),
]
FPROBE_FIELDS: List[Tuple[str, str, str]] = [
    ("vma_id", "u64", "alloc/free, call: the VMA"),
    ("src_vma_id", "u64", "fork/clone allocs and calls: the source VMA"),
    ("mm_id", "u64", "call: the VMA's mm"),
    ("vm_start", "u64", "call: the VMA's range at return"),
    ("vm_end", "u64", ""),
    ("vm_pgoff", "u64", ""),
    ("count", "u32", "call: objects allocated/freed; walk: AVCs visited"),
    ("count2", "u32", "walk: VMAs the rmap_one callback ran on"),
    ("duration", "u64", "call, walk: ns"),
]

_NUMPY = {"u64": "u8", "u32": "u4", "u16": "u2", "u8": "u1", "char[16]": "S16"}


def _dtype(fields) -> np.dtype:
    return np.dtype([(name, _NUMPY[ctype]) for name, ctype, _ in fields])


#: Layout of ``struct event`` (native endian), without and with function probes.
EVENT_DTYPE = _dtype(EVENT_FIELDS)
FPROBE_DTYPE = _dtype(EVENT_FIELDS + FPROBE_FIELDS)


def counter_defines() -> Dict[str, int]:
    """The C program's counter indices (C_LOST, C_LIVE_FULL, C_ALIAS_SKIPPED,
    C_ALIAS_ALLOCS, C_ALIAS_FREES, NR_COUNTERS)."""
    return {"C_LOST": 0, "C_LIVE_FULL": COUNTERS.index("live_map_full"),
            "C_ALIAS_SKIPPED": COUNTERS.index("alias_frees_skipped"),
            "C_ALIAS_ALLOCS": COUNTERS.index(f"alias_allocs_{ALIAS_OBJECTS[0]}"),
            "C_ALIAS_FREES": COUNTERS.index(f"alias_frees_{ALIAS_OBJECTS[0]}"),
            "NR_COUNTERS": len(COUNTERS)}


def defines() -> Dict[str, int]:
    """Every #define of the interface: the enums (aliases included), the
    counters and the batching constants."""
    out = {f"{prefix}_{name}": int(member)
           for prefix, enum in C_ENUMS.items() for name, member in enum.__members__.items()}
    out["EV_LAST"] = max(Ev)
    out.update(counter_defines())
    out.update({"BATCH": BATCH, "FLUSH_NS": f"{FLUSH_NS}ULL", "UFFDIO_MOVE_CMD": f"{UFFDIO_MOVE_CMD:#x}U",
                "MREMAP_DONTUNMAP_FLAG": MREMAP_DONTUNMAP})
    return out


def _c_field(name: str, ctype: str, note: str) -> str:
    decl = f"    char {name}[16];" if ctype == "char[16]" else f"    {ctype} {name};"
    return f"{decl:<24}// {note}" if note else decl


def c_struct_event() -> str:
    """The C definition of ``struct event``."""
    lines = ["struct event {"] + [_c_field(*f) for f in EVENT_FIELDS]
    lines += ["#if FUNC_PROBES"] + [_c_field(*f) for f in FPROBE_FIELDS] + ["#endif", "};"]
    return "\n".join(lines) + "\n"


def check_layout(leaf: type, dtype: np.dtype) -> None:
    """Compare ``dtype`` with bcc's ctypes of the ``batches`` leaf
    (``struct batch {struct batch_head head; struct event ev[BATCH];}``):
    the head's size, the number of events and each event field's offset
    and size. A per-CPU map's leaf is an array of the struct, one per CPU.
    Raises InterfaceError naming the first difference."""
    while not hasattr(leaf, "_fields_") and hasattr(leaf, "_type_"):
        leaf = leaf._type_
    fields = dict(leaf._fields_)
    head, ev = fields.get("head"), fields.get("ev")
    if head is None or ev is None:
        raise InterfaceError(f"struct batch has fields {list(fields)}, expected head and ev")
    if ctypes.sizeof(head) != BATCH_HEAD_SIZE or ev._length_ != BATCH:
        raise InterfaceError(f"struct batch: head of {ctypes.sizeof(head)} bytes and {ev._length_} events, "
                          f"expected {BATCH_HEAD_SIZE} and {BATCH}")
    event = ev._type_
    if ctypes.sizeof(event) != dtype.itemsize:
        raise InterfaceError(f"struct event is {ctypes.sizeof(event)} bytes, the decoder's {dtype.itemsize}")
    got = [(name, getattr(event, name).offset, getattr(event, name).size) for name, _ in event._fields_]
    want = [(name, dtype.fields[name][1], dtype.fields[name][0].itemsize) for name in dtype.names]
    for g, w in zip(got, want):
        if g != w:
            raise InterfaceError(f"struct event field {g[0]} at offset {g[1]} ({g[2]} bytes), "
                              f"the decoder has {w[0]} at {w[1]} ({w[2]} bytes)")
    if len(got) != len(want):
        raise InterfaceError(f"struct event has {len(got)} fields, the decoder {len(want)}")


def _check_orders() -> None:
    """The enums that index schema tuples follow their order."""
    for enum, names in ((Obj, schema.OBJECTS), (Caller, schema.CALLERS), (Walk, schema.WALK_KINDS),
                        (Fn, schema.CALL_FUNCS), (Move, schema.MOVE_KINDS)):
        if len(enum) != len(names):
            raise InterfaceError(f"{enum.__name__} has {len(enum)} codes, schema {len(names)} names")
    kernel_events = [e for e in schema.EVENTS if e in KINDS]
    if list(KINDS[:8]) != kernel_events[:8] or not {"census", "move"} <= set(schema.EVENTS):
        raise InterfaceError(f"Ev {KINDS} does not follow schema.EVENTS {schema.EVENTS}")


_check_orders()
