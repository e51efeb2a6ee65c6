import os
import re
import subprocess

import pytest

import hostcaps
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


def test_members_and_funcs_of_a_blob():
    b = BTF(make_btf({"anon_vma": (96, [("root", 0), ("rwsem", 64), ("refcount", 128)])},
                     funcs=["anon_vma_fork", "rmap_walk"]))
    assert b.members("anon_vma") == ["root", "rwsem", "refcount"]
    assert b.funcs(["anon_vma_fork", "rmap_walk", "rmap_walk_ksm", "anon_vma"]) == {"anon_vma_fork", "rmap_walk"}
    with pytest.raises(BTFError, match="not in BTF"):
        b.members("task_struct")


def bpftrace_members(text):
    """Member names of the struct ``bpftrace -lv 'struct NAME'`` prints: a
    nested struct or union without a name contributes its members in
    place, a named one its name (``} shared;``); padding (``long: 64;``)
    has no name."""
    stack = [[]]
    for line in text.splitlines()[1:]:
        line = line.strip()
        if line.endswith("{"):
            stack.append([])
        elif line.startswith("}"):
            if len(stack) == 1:             # the struct's own end
                break
            inner = stack.pop()
            name = re.match(r"\}\s*(\w*)\s*;", line).group(1)
            stack[-1] += [name] if name else inner
        elif line.endswith(";") and not re.match(r"^\w[\w ]*:\s*\d+;$", line):
            stack[-1].append(re.search(r"(\w+)(\[\d*\])?\s*(:\s*\d+)?;$", line).group(1))
    return stack[0]


@pytest.mark.skipif(not os.access("/sys/kernel/btf/vmlinux", os.R_OK), reason="host lacks: /sys/kernel/btf/vmlinux")
@pytest.mark.parametrize("struct", ["anon_vma", "anon_vma_chain", "vm_area_struct"])
def test_members_equal_bpftraces_view_of_the_running_kernel(struct):
    """members() of the running kernel's struct, as bpftrace (libbpf's BTF
    dump) lists them: an independent reading of the same BTF."""
    if hostcaps.bpftrace():
        pytest.skip(hostcaps.bpftrace())
    out = subprocess.run(["bpftrace", "-lv", f"struct {struct}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert BTF.from_file().members(struct) == bpftrace_members(out.stdout)
