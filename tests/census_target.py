"""A process with a known anon_vma topology, for the census tests.

Maps N private anonymous regions, each between two read-only ones (so no
two of them merge and none can reuse a neighbour's anon_vma), writes one
byte in each (__anon_vma_prepare gives each its own anon_vma and AVC),
prints the regions' ranges as JSON and waits for lines on stdin: "unmap K"
unmaps region K; "fork" forks a child that exits at once, repeating until
the process's anonymous memory (``Anonymous:`` of the VMAs a fork copies,
from /proc/self/smaps) is the same
just before and just after the fork, and prints "forked CHILD KB"; anything
else or EOF exits.
"""

import ctypes
import json
import mmap
import os
import sys

PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED = 0x02, 0x20, 0x10


def main(n: int) -> None:
    size = PAGE * (2 * n + 1)
    base = libc.mmap(None, size, mmap.PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    assert base not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    regions = []
    for k in range(n):
        start = base + PAGE * (2 * k + 1)
        # a writable page remapped over the read-only one: its own VMA
        got = libc.mmap(start, PAGE, mmap.PROT_READ | mmap.PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0)
        assert got == start, ctypes.get_errno()
        ctypes.c_char.from_address(start).value = b"x"
        regions.append([start, start + PAGE])
    print(json.dumps(regions), flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[:1] == ["unmap"]:
            start, end = regions[int(words[1])]
            libc.munmap(start, end - start)
            print("done", flush=True)
        elif words[:1] == ["fork"]:
            print("forked %d %d" % fork_steady(), flush=True)
        else:
            break


def anonymous_kb() -> int:
    """The anonymous memory a fork copies: ``Anonymous:`` of every VMA in
    /proc/self/smaps but those with VM_WIPEONFORK (VmFlags ``wf``), whose
    pages dup_mmap() does not copy (6.12 kernel/fork.c:760, 7.3
    mm/mmap.c:1818). MAP_DROPPABLE sets it (6.12 mm/mmap.c:479, 7.3 :543):
    glibc 2.41's getrandom() keeps its vDSO state in such a page."""
    total, anon, seen = 0, 0, False
    with open("/proc/self/smaps", "rb") as f:
        for line in f:
            if line.startswith(b"Anonymous:"):
                anon, seen = int(line.split()[1]), True
            elif line.startswith(b"VmFlags:"):
                if b"wf" not in line.split()[1:]:
                    total += anon
                anon = 0
    if not seen:
        raise RuntimeError("no Anonymous: in /proc/self/smaps")
    return total


def fork_steady(tries: int = 20):
    """Fork until no anonymous page appeared between the two readings."""
    for _ in range(tries):
        before = anonymous_kb()
        child = os.fork()
        if child == 0:
            os._exit(0)
        after = anonymous_kb()
        os.waitpid(child, 0)
        if before == after:
            return child, before
    raise RuntimeError("anonymous memory kept changing around fork")


if __name__ == "__main__":
    main(int(sys.argv[1]))
