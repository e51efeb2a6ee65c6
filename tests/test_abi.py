"""The kernel/user interface exists once (collector/abi.py): the BPF sources
define none of its codes, the program gets them all, and the record layout
check compares field by field."""

import ctypes
import re

import pytest

from anonscope import bpf, schema
from anonscope.collector import abi, program

PREFIXES = tuple(abi.C_ENUMS)


def test_the_bpf_sources_define_no_interface_code():
    for name in ("anonscope.bpf.c", "fprobes.bpf.c"):
        src = bpf.source(name)
        own = re.findall(rf"^#define (({'|'.join(PREFIXES)})_\w+|C_\w+|BATCH|FLUSH_NS)\b", src, re.M)
        assert not own, (name, own)
        assert "struct event {" not in src, name


def test_every_code_the_sources_use_is_defined():
    used = set()
    for name in ("anonscope.bpf.c", "fprobes.bpf.c"):
        used |= set(re.findall(rf"\b((?:{'|'.join(PREFIXES)})_[A-Z_]+)\b", bpf.source(name)))
    defined = set(abi.defines())
    # the C sources also use the generated offsets' names (e.g. FP_*), not ours
    assert used - defined == set()


def test_defines_keep_aliases_and_values():
    d = abi.defines()
    assert d["FLAG_TRUNCATED"] == d["FLAG_LOCK_WRITE"] == 16
    assert d["EV_CENSUS"] == 9 and d["EV_MOVE"] == len(abi.KINDS) == 10
    assert d["MOVE_MREMAP_DONTUNMAP"] == schema.MOVE_KINDS.index("mremap_dontunmap") + 1
    assert d["OBJ_VMA"] == schema.OBJECTS.index("vm_area_struct") + 1
    assert d["NR_COUNTERS"] == len(abi.COUNTERS) and d["C_LIVE_FULL"] == abi.COUNTERS.index("live_map_full")
    assert [abi.PATH_NAMES[p] for p in abi.Path] == [
        "fault", "fork", "clone_fork", "clone_vma", "other", "alloc", "fork", "dup",
        "unlink", "put", "error", "vma_free", "other"]


def test_struct_event_text_follows_the_fields():
    text = abi.c_struct_event()
    names = re.findall(r"^\s+(?:u64|u32|u16|u8|char) (\w+)", text, re.M)
    assert names == [f[0] for f in abi.EVENT_FIELDS + abi.FPROBE_FIELDS]
    assert text.index("#if FUNC_PROBES") < text.index("vma_id")


_C = {"u64": ctypes.c_uint64, "u32": ctypes.c_uint32, "u16": ctypes.c_uint16, "u8": ctypes.c_uint8,
      "char[16]": ctypes.c_char * 16}


def leaf(fields, ncpus=2, batch=abi.BATCH):
    """What bcc makes of ``struct batch`` in a per-CPU array: C layout rules
    are ctypes' rules."""
    event = type("event", (ctypes.Structure,), {"_fields_": [(n, _C[t]) for n, t in fields]})
    head = type("batch_head", (ctypes.Structure,), {"_fields_": [("n", ctypes.c_uint32), ("busy", ctypes.c_uint32),
                                                                 ("first_ts", ctypes.c_uint64)]})
    b = type("batch", (ctypes.Structure,), {"_fields_": [("head", head), ("ev", event * batch)]})
    return b * ncpus


def plain(fields):
    return [(n, t) for n, t, _ in fields]


def test_layout_check_accepts_the_layout_and_names_a_difference():
    abi.check_layout(leaf(plain(abi.EVENT_FIELDS)), abi.EVENT_DTYPE)
    abi.check_layout(leaf(plain(abi.EVENT_FIELDS + abi.FPROBE_FIELDS)), abi.FPROBE_DTYPE)
    swapped = plain(abi.EVENT_FIELDS)
    swapped[3], swapped[4] = swapped[4], swapped[3]             # pid and tgid exchanged
    with pytest.raises(abi.InterfaceError, match="field tgid at offset 24"):
        abi.check_layout(leaf(swapped), abi.EVENT_DTYPE)
    widened = [(n, "u64" if n == "aux2" else t) for n, t in plain(abi.EVENT_FIELDS)]
    with pytest.raises(abi.InterfaceError, match="bytes, the decoder's 64"):
        abi.check_layout(leaf(widened), abi.EVENT_DTYPE)
    with pytest.raises(abi.InterfaceError, match="expected 16 and 64"):
        abi.check_layout(leaf(plain(abi.EVENT_FIELDS), batch=32), abi.EVENT_DTYPE)
    with pytest.raises(abi.InterfaceError, match="bytes, the decoder's 64"):
        abi.check_layout(leaf(plain(abi.EVENT_FIELDS + abi.FPROBE_FIELDS)), abi.EVENT_DTYPE)


def test_a_missing_splice_marker_raises():
    with pytest.raises(program.LayoutError, match="expected 1"):
        program.splice("int x;\n", program.STRUCT_MARKER, "struct event {};\n")
