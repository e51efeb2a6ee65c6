"""Runs the kernel skipped of other tools' BPF programs (bpftrace's), read
as the collector reads its own: ``bpf_prog_info.recursion_misses``
(collector/progstats.py), here for every loaded program whose name holds a
given part. A BPF program is skipped when another one runs on the same CPU
at that moment (the kernel's recursion protection), so two tools counting
the same tracepoint can each miss a few runs on a busy CPU."""

import ctypes
import os
import sys

from anonscope.collector.btf import BTF


def recursion_misses(name_part):
    """Sum of recursion_misses of the loaded programs whose name contains
    ``name_part``; None when the kernel or libbcc cannot tell."""
    try:
        from bcc.libbcc import lib
        btf = BTF.from_file()
        size = btf.sizeof("bpf_prog_info")
        off_miss = btf.offsetof("bpf_prog_info", "recursion_misses")
        off_name = btf.offsetof("bpf_prog_info", "name")
    except Exception:               # no BTF, no libbcc, an older bpf_prog_info
        return None
    lib.bpf_prog_get_next_id.argtypes = [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
    lib.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
    lib.bpf_obj_get_info.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    total, prog = 0, ctypes.c_uint32(0)
    while lib.bpf_prog_get_next_id(prog.value, ctypes.byref(prog)) == 0:
        fd = lib.bpf_prog_get_fd_by_id(prog.value)
        if fd < 0:
            continue
        buf, length = ctypes.create_string_buffer(size), ctypes.c_uint32(size)
        try:
            if lib.bpf_obj_get_info(fd, buf, ctypes.byref(length)) != 0 or length.value < off_miss + 8:
                return None
        finally:
            os.close(fd)
        name = buf.raw[off_name:off_name + 16].split(b"\0")[0].decode("ascii", "replace")
        if name_part in name:
            total += int.from_bytes(buf.raw[off_miss:off_miss + 8], sys.byteorder)
    return total
