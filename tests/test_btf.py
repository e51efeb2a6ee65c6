import os

import pytest

from anonscope.collector.btf import BTF, BTFError
from btfgen import make_btf


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


def test_functions_are_found_by_name():
    b = BTF(make_btf({"rmap_walk_control": (48, [("rmap_one", 128)])}, funcs=["rmap_walk_anon", "rmap_walk"]))
    assert b.has_func("rmap_walk_anon") and b.has_func("rmap_walk")
    assert not b.has_func("rmap_walk_ksm")
    assert not b.has_func("rmap_walk_control")  # a struct, not a function
    assert b.offsetof("rmap_walk_control", "rmap_one") == 16  # members after FUNCs still parse


def test_bad_blob():
    with pytest.raises(BTFError, match="magic"):
        BTF(b"\0" * 64)
    with pytest.raises(BTFError, match="cannot read"):
        BTF.from_file("/nonexistent/vmlinux")


@pytest.mark.skipif(not os.access("/sys/kernel/btf/vmlinux", os.R_OK), reason="host lacks: /sys/kernel/btf/vmlinux")
def test_running_kernel_has_our_structs():
    b = BTF.from_file()
    for s in ("anon_vma", "anon_vma_chain", "vm_area_struct", "task_struct"):
        assert b.sizeof(s) > 0
    assert b.offsetof("task_struct", "tgid") == b.offsetof("task_struct", "pid") + 4
    assert b.has_func("anon_vma_fork")  # mm/rmap.c, called from kernel/fork.c: never inlined
