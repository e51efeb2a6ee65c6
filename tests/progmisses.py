"""Runs the kernel skipped of other tools' BPF programs (bpftrace's), read
as the collector reads its own: ``bpf_prog_info.recursion_misses``
(collector/progstats.py).

A program attached to a perf tracepoint (bpftrace's ``tracepoint:``) is
skipped while any other BPF program or a BPF syscall's map operation is
active on its CPU (``trace_call_bpf()``: ``bpf_prog_active``, 6.12 and 7.3
kernel/trace/bpf_trace.c), and a raw tracepoint program (the collector's)
while the same program runs there (``__bpf_trace_run()``: ``prog->active``);
either run is counted in the program's recursion_misses. On one busy CPU
two tools counting the same tracepoint can so each miss a few runs.

bpftrace names its programs after the probe in some versions (0.17:
``kmem_cache_allo``) and after the probe type in others, so its programs
are found as the ones loaded between two :func:`loaded` calls, not by name.
"""

import ctypes
import os
import sys

from anonscope.collector.btf import BTF


def _lib():
    """libbcc's bpf syscall wrappers with their argument types."""
    from bcc.libbcc import lib
    lib.bpf_prog_get_next_id.argtypes = [ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32)]
    lib.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
    lib.bpf_obj_get_info.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    return lib


def loaded():
    """{program id: (name, recursion_misses)} of every loaded BPF program;
    None when the kernel or libbcc cannot tell."""
    try:
        lib = _lib()
        btf = BTF.from_file()
        size = btf.sizeof("bpf_prog_info")
        off_miss = btf.offsetof("bpf_prog_info", "recursion_misses")
        off_name = btf.offsetof("bpf_prog_info", "name")
    except Exception:               # no BTF, no libbcc, an older bpf_prog_info
        return None
    out, prog = {}, ctypes.c_uint32(0)
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
        out[prog.value] = (name, int.from_bytes(buf.raw[off_miss:off_miss + 8], sys.byteorder))
    return out


def new_programs(before, after):
    """{id: (name, recursion_misses)} of the programs in ``after`` that
    ``before`` lacks (both from :func:`loaded`); None if either is None."""
    if before is None or after is None:
        return None
    return {i: p for i, p in after.items() if i not in before}
