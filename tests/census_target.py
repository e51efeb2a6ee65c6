"""A process with a known anon_vma topology, for the census tests.

Maps N private anonymous regions, each between two read-only ones (so no
two of them merge and none can reuse a neighbour's anon_vma), writes one
byte in each (__anon_vma_prepare gives each its own anon_vma and AVC),
prints the regions' ranges as JSON and waits for lines on stdin: "unmap K"
unmaps region K, anything else or EOF exits.
"""

import ctypes
import json
import mmap
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
        if words[:1] != ["unmap"]:
            break
        start, end = regions[int(words[1])]
        libc.munmap(start, end - start)
        print("done", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))
