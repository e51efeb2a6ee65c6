"""Which kernel functions make and free our objects, and what each means.

The tracepoints report a ``call_site`` (the return address in the function
that called the slab allocator); these tables turn the function it lies in
into a path. Function names are those of mm/rmap.c, mm/vma.c, mm/mremap.c,
kernel/fork.c and mm/vma_init.c as read in 6.12 and 7.3 and found in the
kallsyms of Debian's 6.1 (scripts/vm-test) and this project's 6.18 host;
each table entry's comment says where the name lives; names a kernel lacks
are simply not found (see ``Classifier.missing``).
"""

import bisect
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

from anonscope.schema import CALLERS, LOCK_FUNCS, WALK_KINDS

from .abi import Caller, Site
from .kallsyms import Range

# Tags and callers are the interface's (collector/abi.py Site, Caller).

#: Functions whose call sites allocate our objects.
ALLOC_SITES = {
    "__anon_vma_prepare": Site.PREPARE,   # mm/rmap.c: first anon fault in a VMA
    "anon_vma_fork": Site.FORK,           # mm/rmap.c: child's own anon_vma + AVC
    "anon_vma_clone": Site.CLONE,         # mm/rmap.c: copy of a VMA's AVC chain
    # kernel/fork.c; mm/vma_init.c from 6.16 ("mm: perform VMA allocation,
    # freeing, duplication in mm", the 6.16 mm pull; mainline hash not seen here)
    "vm_area_alloc": Site.VMA_ALLOC,
    "vm_area_dup": Site.VMA_DUP,
}

#: Functions whose call sites free our objects. anon_vma_fork and
#: anon_vma_clone free on their error paths.
FREE_SITES = {
    "unlink_anon_vmas": Site.UNLINK,      # mm/rmap.c: AVCs of a VMA going away
    "__put_anon_vma": Site.PUT,           # mm/rmap.c: last reference of an anon_vma
    "anon_vma_fork": Site.FORK,
    "anon_vma_clone": Site.CLONE,
}

#: Functions whose presence on the kernel stack of an anon_vma_clone or
#: vm_area_dup says why the chain or VMA is being copied.
CALLER_SITES = {
    # mm/vma.c from 6.12 ("mm: move internal core VMA manipulation functions
    # to own file"), mm/mmap.c before
    "__split_vma": Caller.SPLIT,
    "split_vma": Caller.SPLIT,
    "vma_expand": Caller.MERGE,           # mm/vma.c: merge growing a VMA
    "commit_merge": Caller.MERGE,         # mm/vma.c 6.12+
    "dup_anon_vma": Caller.MERGE,         # mm/vma.c, when not inlined
    "vma_merge": Caller.MERGE,            # mm/mmap.c before 6.12
    "vma_merge_existing_range": Caller.MERGE,
    "vma_merge_new_range": Caller.MERGE,
    "copy_vma": Caller.MREMAP,            # mm/vma.c: mremap move
    "move_vma": Caller.MREMAP,            # mm/mremap.c
    # mm/mremap.c 6.15+ (b714ccb02a76 "mm/mremap: complete refactor of move_vma()")
    "copy_vma_and_data": Caller.MREMAP,
    "anon_vma_fork": Caller.FORK,         # mm/rmap.c
    "dup_mmap": Caller.FORK,              # kernel/fork.c, mm/mmap.c from 6.16 ("mm: move dup_mmap() to mm")
    # On a __anon_vma_prepare() stack, the fault handler says what the VMA
    # is (mm/memory.c, 6.12 and 7.3): do_pte_missing() calls
    # do_anonymous_page() when vma_is_anonymous() (no vm_ops), else
    # do_fault(), whose only anon_vma user is do_cow_fault() (a private
    # VMA with vm_ops: a MAP_PRIVATE file); create_huge_pmd() calls
    # do_huge_pmd_anonymous_page() (mm/huge_memory.c) only when
    # vma_is_anonymous(). do_wp_page() (either kind) and the callers outside
    # the fault handler (expand_stack, userfaultfd, hugetlb) tell nothing:
    # no tag; GUP faults through handle_mm_fault() and is tagged. A handler
    # inlined where kallsyms lacks it tags nothing; the others still do.
    "do_anonymous_page": Caller.ANON_FAULT,
    "do_huge_pmd_anonymous_page": Caller.ANON_FAULT,
    "do_fault": Caller.COW_FAULT,
    "do_cow_fault": Caller.COW_FAULT,
}

#: Functions that take an anon_vma's root rwsem (anon_vma_lock_write/read,
#: vma_prepare, take_rmap_locks, rmap walks): the first of them on a
#: waiter's kernel stack says why it waited (tag = index + 1 in LOCK_FUNCS).
LOCK_SITES = {
    "__anon_vma_prepare": 1,
    "anon_vma_fork": 2,
    "anon_vma_clone": 3,
    "unlink_anon_vmas": 4,
    "__put_anon_vma": 5,
    "rmap_walk": 6, "rmap_walk_locked": 6, "rmap_walk_anon": 6, "folio_lock_anon_vma_read": 6,
    "vma_prepare": 7, "__split_vma": 7, "commit_merge": 7, "vma_expand": 7, "vma_shrink": 7, "vma_merge": 7,
    "take_rmap_locks": 8, "move_page_tables": 8, "move_vma": 8,
    "collapse_huge_page": 9, "__folio_split": 9, "split_huge_page_to_list_to_order": 9,
    "split_huge_page_to_list": 9,
}

#: rmap_walk_control.rmap_one callbacks (mm/rmap.c, mm/migrate.c,
#: mm/page_idle.c, mm/damon/paddr.c) -> walk kind (index + 1 in
#: schema.WALK_KINDS); any other callback is "other".
WALK_SITES = {
    "try_to_unmap_one": 1, "folio_referenced_one": 1,                 # reclaim
    "try_to_migrate_one": 2, "remove_migration_pte": 2,               # migration
    "page_idle_clear_pte_refs_one": 4, "damon_folio_mkold_one": 4,    # idle tracking
    "damon_folio_young_one": 4, "__damon_pa_mkold": 4, "__damon_pa_young": 4,
    "page_mkclean_one": 5,                                            # other
}

#: Present when the kernel frees VMAs from an RCU callback (softirq), as
#: 6.4-6.14 do with per-VMA locks; absent when VMAs are freed directly
#: (from 6.15: 3104138517fc "mm: make vma cache SLAB_TYPESAFE_BY_RCU").
VMA_RCU_FREE = "vm_area_free_rcu_cb"

#: The functions without which the collector cannot classify anything.
REQUIRED = ("__anon_vma_prepare", "anon_vma_fork", "anon_vma_clone")

_PATH_OF_SITE = {
    Site.PREPARE: "fault", Site.FORK: "fork", Site.CLONE: "clone",
    Site.VMA_ALLOC: "vma alloc", Site.VMA_DUP: "vma dup",
    Site.UNLINK: "unlink", Site.PUT: "put",
}


def wanted_functions() -> List[str]:
    """Every function name the classifiers look up in kallsyms."""
    return sorted(set(ALLOC_SITES) | set(FREE_SITES) | set(CALLER_SITES) | set(LOCK_SITES) | set(WALK_SITES)
                  | {VMA_RCU_FREE})


@dataclass
class Classifier:
    """Address ranges of the site functions of one running kernel."""

    ranges: Dict[str, List[Range]]
    missing: List[str] = field(default_factory=list)
    #: made-up ranges (placeholder()), not the running kernel's
    example: bool = False
    #: per table, its lookup function (built on first use)
    _sorted: Dict[int, Callable[[int], int]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_ranges(cls, ranges: Dict[str, List[Range]]) -> "Classifier":
        """A Classifier of ``ranges``; the wanted functions not in them are
        ``missing``."""
        return cls(ranges, [f for f in wanted_functions() if f not in ranges])

    def lookup(self, table: Dict[str, int]) -> Callable[[int], int]:
        """ip -> the tag of the ``table`` function it lies in (0: none), a
        bisect over the ranges sorted by start (where two names start at
        one address, the first in table order); built once per table."""
        fn = self._sorted.get(id(table))
        if fn is None:
            first: Dict[int, Tuple[int, int, int]] = {}
            for name, tag in table.items():
                for start, end in self.ranges.get(name, ()):
                    first.setdefault(start, (start, end, tag))
            rows = sorted(first.values())
            starts, ends, tags = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
            right = bisect.bisect_right

            def fn(ip: int) -> int:
                i = right(starts, ip) - 1
                return tags[i] if i >= 0 and ip < ends[i] else 0
            self._sorted[id(table)] = fn
        return fn

    def _lookup(self, table: Dict[str, int], ip: int) -> int:
        return self.lookup(table)(ip)

    def alloc_site(self, ip: int) -> int:
        """SITE_* of an allocation call site, 0 when not ours."""
        return self._lookup(ALLOC_SITES, ip)

    def free_site(self, ip: int) -> int:
        """SITE_* of a free call site, 0 when not one of ours."""
        return self._lookup(FREE_SITES, ip)

    def caller_site(self, ip: int) -> int:
        """CALLER_* of a kernel stack address, 0 when not a known caller."""
        return self._lookup(CALLER_SITES, ip)

    def lock_site(self, ip: int) -> int:
        """Index + 1 in LOCK_FUNCS of an anon_vma lock taker, 0 otherwise."""
        return self._lookup(LOCK_SITES, ip)

    def walk_kind(self, ip: int) -> int:
        """Index + 1 in WALK_KINDS of an rmap_one callback, 0 if unknown."""
        return self._lookup(WALK_SITES, ip)

    def c_functions(self) -> str:
        """C source of alloc_site(), free_site(), caller_site(), lock_site(),
        walk_kind().

        The same tables and ranges as the Python methods above, as range
        compares on constants, so the kernel does no map lookups.
        """
        out = []
        for fn, table in (("alloc_site", ALLOC_SITES), ("free_site", FREE_SITES),
                          ("caller_site", CALLER_SITES), ("lock_site", LOCK_SITES),
                          ("walk_kind", WALK_SITES)):
            out.append(f"static __always_inline u8 {fn}(u64 ip)\n{{")
            spans = [r for name in table for r in self.ranges.get(name, ())]
            if spans:  # most call sites in the kernel are far from ours
                lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
                out.append(f"    if (ip < 0x{lo:x}ULL || ip >= 0x{hi:x}ULL) return 0;")
            for name, tag in table.items():
                for start, end in self.ranges.get(name, ()):
                    out.append(f"    if (ip >= 0x{start:x}ULL && ip < 0x{end:x}ULL) return {tag};  // {name}")
            out.append("    return 0;\n}\n")
        return "\n".join(out)

    def describe(self) -> Dict[str, str]:
        """{function: what its call sites mean}, for the run metadata."""
        found = {}
        for table, kind in ((ALLOC_SITES, "alloc"), (FREE_SITES, "free"), (CALLER_SITES, "caller"),
                            (LOCK_SITES, "lock"), (WALK_SITES, "walk")):
            for name, tag in table.items():
                if name in self.ranges:
                    what = _PATH_OF_SITE[tag] if kind in ("alloc", "free") else \
                        CALLERS[tag - 1] if kind == "caller" else \
                        LOCK_FUNCS[tag - 1] if kind == "lock" else WALK_KINDS[tag - 1]
                    found.setdefault(name, []).append(f"{kind}:{what}")
        return {k: ",".join(v) for k, v in sorted(found.items())}


def placeholder() -> Classifier:
    """A classifier with one made-up range per function, for ``--ebpf``
    without root (kallsyms hides addresses from other users)."""
    base = 0xFFFFFFFF81000000
    ranges: Dict[str, List[Tuple[int, int]]] = {}
    for i, name in enumerate(wanted_functions()):
        ranges[name] = [(base + 0x1000 * i, base + 0x1000 * i + 0x100)]
    return Classifier(ranges, [], example=True)
