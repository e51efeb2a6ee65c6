import os
import struct

import pytest

from anonscope.collector.btf import BTF, BTFError


def make_btf(structs):
    """A minimal BTF blob: one INT type and the given structs
    {name: (size, [(member, bit_offset)])}, members typed INT."""
    strings = b"\0"
    def s(name):
        nonlocal strings
        off = len(strings)
        strings += name.encode() + b"\0"
        return off
    types = struct.pack("<III", s("int"), 1 << 24, 4) + struct.pack("<I", 32)  # INT, 4 bytes
    for name, (size, members) in structs.items():
        types += struct.pack("<III", s(name), (4 << 24) | len(members), size)
        for m, bits in members:
            types += struct.pack("<III", s(m), 1, bits)
    hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return hdr + types + strings


def test_sizes_and_offsets():
    blob = make_btf({"anon_vma": (96, [("root", 0), ("refcount", 128)]),
                     "anon_vma_chain": (64, [("vma", 0), ("anon_vma", 64)])})
    b = BTF(blob)
    assert b.sizeof("anon_vma") == 96
    assert b.sizeof("anon_vma_chain") == 64
    assert b.offsetof("anon_vma", "refcount") == 16
    assert b.offsetof("anon_vma_chain", "anon_vma") == 8
    with pytest.raises(BTFError, match="no member"):
        b.offsetof("anon_vma", "nope")
    with pytest.raises(BTFError, match="not in BTF"):
        b.sizeof("task_struct")


def test_bad_blob():
    with pytest.raises(BTFError, match="magic"):
        BTF(b"\0" * 64)
    with pytest.raises(BTFError, match="cannot read"):
        BTF.from_file("/nonexistent/vmlinux")


@pytest.mark.skipif(not os.access("/sys/kernel/btf/vmlinux", os.R_OK), reason="no /sys/kernel/btf/vmlinux")
def test_running_kernel_has_our_structs():
    b = BTF.from_file()
    for s in ("anon_vma", "anon_vma_chain", "vm_area_struct", "task_struct"):
        assert b.sizeof(s) > 0
    assert b.offsetof("task_struct", "tgid") == b.offsetof("task_struct", "pid") + 4
