"""/proc/meminfo fields sampled with the slab samples (schema v8): the
denominators a saving is weighed against (the machine's memory, all slab,
unreclaimable slab, page tables)."""

from typing import Dict, Optional

MEMINFO = "/proc/meminfo"
#: /proc/meminfo field -> slab-row column (kB, as the file gives them)
FIELDS = {"MemTotal": "mem_total_kb", "Slab": "mem_slab_kb", "SUnreclaim": "mem_sunreclaim_kb",
          "PageTables": "mem_page_tables_kb"}


def parse(text: str) -> Dict[str, Optional[int]]:
    """The FIELDS columns from /proc/meminfo text; None for a field the
    kernel does not have."""
    out = dict.fromkeys(FIELDS.values())
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in FIELDS and rest.split():
            out[FIELDS[name]] = int(rest.split()[0])
    return out


def read(path: str = MEMINFO) -> Dict[str, Optional[int]]:
    """:func:`parse` of /proc/meminfo; every column None when unreadable."""
    try:
        with open(path) as f:
            return parse(f.read())
    except OSError:
        return dict.fromkeys(FIELDS.values())
