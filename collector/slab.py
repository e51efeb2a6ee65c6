"""/proc/slabinfo lines and /sys/kernel/slab merge aliases of our caches.

SLUB merges caches of compatible size and flags (unless booted with
slab_nomerge); a merged cache keeps one name, and its slabinfo line counts
every user's objects. On 6.18 x86_64 anon_vma_chain is merged with fs_cache
and eventpoll_pwq, so slabinfo overstates AVCs. anon_vma is never merged (it
has a constructor and SLAB_TYPESAFE_BY_RCU). Covers SLUB's sysfs layout
(2.6.22+); SLAB (removed in 6.8) has no /sys/kernel/slab and no aliases.
"""

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

CACHES = ("anon_vma", "anon_vma_chain", "vm_area_struct")
SLABINFO = "/proc/slabinfo"
SYS_SLAB = "/sys/kernel/slab"


@dataclass
class SlabLine:
    """One /proc/slabinfo line: the cache, its active and total objects and the
    object size."""
    cache: str
    active: int
    total: int
    objsize: int


def parse_slabinfo(text: str, caches=CACHES) -> Dict[str, SlabLine]:
    """Lines of the wanted caches from /proc/slabinfo text (format 2.1);
    ``caches=None`` keeps every line."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] != "#" and (caches is None or parts[0] in caches) \
                and parts[1].isdigit():
            out[parts[0]] = SlabLine(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))
    return out


def read_slabinfo(path: str = SLABINFO, caches=CACHES) -> Dict[str, SlabLine]:
    """The lines of the wanted caches in /proc/slabinfo
    (:func:`parse_slabinfo`)."""
    with open(path) as f:
        return parse_slabinfo(f.read(), caches)


def aliases(cache: str, sys_slab: str = SYS_SLAB) -> List[str]:
    """Other caches merged into ``cache`` (empty when it is not merged).

    A merged cache appears in /sys/kernel/slab as a symlink to a ``:X-SIZE``
    directory, with one symlink per cache sharing that directory.
    """
    link = os.path.join(sys_slab, cache)
    if not os.path.islink(link):
        return []
    target = os.path.realpath(link)
    try:
        names = os.listdir(sys_slab)
    except OSError:
        return []
    return sorted(n for n in names if n != cache and not n.startswith(":")
                  and os.path.islink(os.path.join(sys_slab, n))
                  and os.path.realpath(os.path.join(sys_slab, n)) == target)


def geometry(cache: str, sys_slab: str = SYS_SLAB) -> Dict[str, int]:
    """object_size, align and slab_size (the slot: mm/slub.c calculate_sizes)
    of a cache from /sys/kernel/slab (empty where SLUB's sysfs is absent)."""
    out = {}
    for name in ("object_size", "align", "slab_size"):
        try:
            with open(os.path.join(sys_slab, cache, name)) as f:
                out[name] = int(f.read().strip())
        except (OSError, ValueError):
            return {}
    return out


def counts(cache: str, sys_slab: str = SYS_SLAB) -> Dict[str, Optional[int]]:
    """objs_per_slab and (SLUB sheaves, 6.18+: 2d517aa09bbc) sheaf_capacity of a cache, each
    None where /sys/kernel/slab has no such file."""
    out = {}
    for name in ("objs_per_slab", "sheaf_capacity"):
        try:
            with open(os.path.join(sys_slab, cache, name)) as f:
                out[name] = int(f.read().strip())
        except (OSError, ValueError):
            out[name] = None
    return out


def cpu_partial_slabs(cache: str, sys_slab: str = SYS_SLAB) -> Optional[int]:
    """Slabs on the CPUs' partial lists of a cache (the count in
    parentheses of /sys/kernel/slab/NAME/slabs_cpu_partial, summed over the
    online CPUs: 6.12 mm/slub.c slabs_cpu_partial_show()); with one active
    slab per CPU, their free objects are the ones /proc/slabinfo counts as
    active. (``cpu_slabs`` would not do: it skips a CPU's partial list when
    the CPU has no active slab.) None where absent."""
    try:
        with open(os.path.join(sys_slab, cache, "slabs_cpu_partial")) as f:
            first = f.read().split()[0]
        return int(first[first.index("(") + 1:first.index(")")])
    except (OSError, ValueError, IndexError):
        return None


def topology() -> Dict[str, Optional[int]]:
    """CPUs and NUMA nodes online (bounds on the per-CPU and per-node
    caches of free objects); None where unreadable."""
    def count(path):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            return None
        n = 0
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
        return n
    return {"cpus": count("/sys/devices/system/cpu/online"), "nodes": count("/sys/devices/system/node/online")}


def kfence(sys_module: str = "/sys/module/kfence", config_dir: str = "/boot") -> Dict[str, object]:
    """KFENCE serves some slab allocations from its own pool, which
    /proc/slabinfo does not count (mm/kfence): whether it samples here, and
    its pool size (CONFIG_KFENCE_NUM_OBJECTS from /boot/config-RELEASE, None
    when unreadable)."""
    try:
        with open(os.path.join(sys_module, "parameters", "sample_interval")) as f:
            enabled = int(f.read().strip()) > 0
    except (OSError, ValueError):
        return {"enabled": False, "num_objects": None}
    n = None
    try:
        with open(os.path.join(config_dir, f"config-{os.uname().release}")) as f:
            for line in f:
                if line.startswith("CONFIG_KFENCE_NUM_OBJECTS="):
                    n = int(line.split("=", 1)[1])
    except (OSError, ValueError):
        pass
    return {"enabled": enabled, "num_objects": n}


def all_aliases(sys_slab: str = SYS_SLAB) -> Dict[str, List[str]]:
    """The merge aliases of each of our caches (:func:`aliases`)."""
    return {c: aliases(c, sys_slab) for c in CACHES}


def reported_name(cache: str, group: List[str], lines: Dict[str, "SlabLine"]) -> str:
    """The name the kmem tracepoints report for ``cache``'s objects.

    A merged cache is one ``struct kmem_cache`` named after the first cache
    created in it; /proc/slabinfo lists it once, under that name. So the
    name is whichever of ``cache`` and its ``group`` of aliases slabinfo
    shows (``cache`` itself when it is not merged or slabinfo is silent).
    """
    for name in [cache] + sorted(group):
        if name in lines:
            return name
    return cache


def sample_rows(ts_ns: int, lines: Dict[str, SlabLine], alias_counts: Dict[str, int], mem: Dict[str, object],
                cpu_partial=None, duration_ns: Optional[int] = None) -> List[dict]:
    """``slab`` rows of one slabinfo sample at ``ts_ns``: per cache of
    ``lines``, with its number of merge aliases, /proc/meminfo's columns
    ``mem``, ``cpu_partial(cache)`` (None: not read) and how long the read
    took."""
    return [{"ts_ns": ts_ns, "event": "slab", "cpu": -1, "slab_cache": c, "slab_active": s.active,
             "slab_total": s.total, "slab_objsize": s.objsize, "slab_aliases": alias_counts.get(c, 0),
             "slab_cpu_partial": cpu_partial(c) if cpu_partial else None, "duration_ns": duration_ns, **mem}
            for c, s in sorted(lines.items())]
