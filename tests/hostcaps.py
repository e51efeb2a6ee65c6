"""What this host can run, for the tests' skips.

Every skip reason starts with what is missing. Under CI (``CI`` set, as
root: how .ci/run runs scripts/test) tests/conftest.py turns a skip into a
failure unless its reason starts with HOST_LACKS: something the kernel or
the architecture truly does not have (kprobes, fentry, a kernel feature).
Everything else an integration test needs (root, tracefs, bcc, bpftrace,
the workload) the set-up provides, so its absence there is a failure to
set up, not a reason to pass.
"""

import os
import shutil
from typing import Optional

#: The only skip reasons CI accepts start with this.
HOST_LACKS = "host lacks: "
TRACING = "/sys/kernel/tracing"


def lacks(what: str) -> str:
    return HOST_LACKS + what


def strict() -> bool:
    """Skips must be justified (CI, as root)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no") and os.geteuid() == 0


def integration() -> Optional[str]:
    """Why the collector integration tests cannot run here, or None. As
    root, tracefs is mounted the way the collector mounts it."""
    if os.geteuid() != 0:
        return "integration tests need root (BPF)"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return lacks("BTF (/sys/kernel/btf/vmlinux)")
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc not importable (run scripts/setup)"
    from anonscope.collector import tracefs
    found, why = tracefs.ensure()
    if not found:
        return f"no tracefs: {why}"
    if not os.path.isdir(os.path.join(found, "events", "kmem")):
        return lacks("kmem tracepoints")
    return None


def bpftrace() -> Optional[str]:
    return None if shutil.which("bpftrace") else "bpftrace not installed (scripts/setup installs it)"


def lock_tracepoints() -> Optional[str]:
    base = integration()
    if base:
        return base
    if not os.path.exists(os.path.join(TRACING, "events", "lock", "contention_begin")):
        return lacks("lock:contention_begin/end tracepoints (kernel < 5.19)")
    return None


def kprobes() -> Optional[str]:
    base = integration()
    if base:
        return base
    if not os.path.exists(os.path.join(TRACING, "kprobe_events")):
        return lacks("kprobes (no kprobe_events): function probes run in scripts/vm-test guests")
    return None


def fentry() -> Optional[str]:
    try:
        from bcc import BPF
        if os.uname().machine == "x86_64" and BPF.support_kfunc():
            return None
    except ImportError:
        return "bcc not importable (run scripts/setup)"
    return lacks("fentry: bcc has no kfunc support here (arm64 bcc has none), kprobes only")


def systemd_analyze() -> Optional[str]:
    """systemd-analyze verify checks unit files without a running systemd."""
    return None if shutil.which("systemd-analyze") else "systemd-analyze not installed (scripts/setup installs systemd)"


def emulated() -> bool:
    """Inside a scripts/vm-test guest: software emulation (TCG), 10-20x
    slower than the host, so the collector's loop takes longer to notice a
    deadline."""
    return bool(os.environ.get("ANONSCOPE_VM"))
