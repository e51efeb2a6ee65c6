"""Events the kernel dropped before our BPF programs ran.

The kernel skips a tracing BPF program when another one is already running
on the same CPU (trace_call_bpf's bpf_prog_active guard, and the per-program
recursion guard of raw tracepoints): for example a VMA freed from an RCU
softirq while our program runs for a process. Since 5.12 it counts such
skips in ``bpf_prog_info.recursion_misses``; we read that counter through
BPF_OBJ_GET_INFO_BY_FD, at the offset BTF gives for the running kernel.
"""

import ctypes
import sys
from typing import Dict, Optional

from .btf import BTF, BTFError


def recursion_misses(fds: Dict[str, int], btf: Optional[BTF]) -> Optional[Dict[str, int]]:
    """{program name: recursion_misses}, or None where the kernel or libbcc
    cannot tell (no BTF, kernel before 5.12, old libbcc)."""
    if btf is None:
        return None
    try:
        size = btf.sizeof("bpf_prog_info")
        offset = btf.offsetof("bpf_prog_info", "recursion_misses")
        from bcc.libbcc import lib
        get_info = lib.bpf_obj_get_info
    except (BTFError, ImportError, AttributeError):
        return None
    get_info.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
    get_info.restype = ctypes.c_int
    out = {}
    for name, fd in fds.items():
        buf = ctypes.create_string_buffer(size)
        length = ctypes.c_uint32(size)
        if get_info(fd, buf, ctypes.byref(length)) != 0 or length.value < offset + 8:
            return None
        out[name] = int.from_bytes(buf.raw[offset:offset + 8], sys.byteorder)
    return out
