"""Find tracefs, and mount it where it is not mounted (as trace-cmd does).

A fresh machine may boot with tracefs unmounted; nothing attaches to a
tracepoint by name until it is. As root, :func:`ensure` mounts it at
/sys/kernel/tracing (the kernel's own mount point since 4.1) and says so;
the mount stays, like trace-cmd's and perf's.
"""

import ctypes
import ctypes.util
import os
from typing import Optional, Tuple

CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
MOUNT_POINT = CANDIDATES[0]


def find() -> Optional[str]:
    """The mounted tracefs directory (one with ``events/``), or None."""
    for d in CANDIDATES:
        if os.path.isdir(os.path.join(d, "events")):
            return d
    return None


def mount(target: str = MOUNT_POINT) -> Optional[str]:
    """mount -t tracefs nodev TARGET; None on success, else why not."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
    if not os.path.isdir(target):
        return f"{target} does not exist (kernel without CONFIG_TRACING?)"
    if libc.mount(b"nodev", target.encode(), b"tracefs", 0, None) != 0:
        return f"mount -t tracefs nodev {target}: {os.strerror(ctypes.get_errno())}"
    return None


def ensure() -> Tuple[Optional[str], Optional[str]]:
    """(tracefs directory or None, a note for the user or the reason it is
    missing). Mounts it when it is not mounted and this process is root."""
    found = find()
    if found:
        return found, None
    if os.geteuid() != 0:
        return None, "tracefs is not mounted (root mounts it: mount -t tracefs nodev /sys/kernel/tracing)"
    why = mount()
    if why:
        return None, f"tracefs is not mounted and could not be: {why}"
    found = find()
    if not found:
        return None, f"mounted tracefs at {MOUNT_POINT}, but it has no events/ directory"
    return found, f"tracefs was not mounted: mounted it at {MOUNT_POINT}"
