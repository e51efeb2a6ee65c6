"""Give bcc a kernel headers tree to compile against.

bcc compiles BPF C with the kernel's headers: /lib/modules/$(uname -r)/build
(and ``source``), or the tree named by the BCC_KERNEL_SOURCE environment
variable, or /sys/kernel/kheaders.tar.xz (CONFIG_IKHEADERS). When the running
kernel has none of these, any installed linux-headers tree of the same
architecture lets bcc compile a program that, like ours, takes no struct
layout from the headers (layouts come from BTF and tracepoint formats). We
point BCC_KERNEL_SOURCE at such a tree for this process only: no system
directory is created or changed.

Debian and Ubuntu split a headers tree in two (``linux-headers-X-amd64``
with the generated files, ``linux-headers-X-common`` with the rest, joined
by ``/lib/modules/X/build`` and ``source``). BCC_KERNEL_SOURCE takes one
tree, so for a split tree we make a private directory of symlinks that
overlays the two, removed when the process exits.
"""

import atexit
import glob
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Optional

from .signals import deferred

# Debian/Ubuntu name arch-specific header trees by flavour.
_FLAVOURS = {"x86_64": ("amd64", "generic"), "aarch64": ("arm64", "generic")}


class HeadersError(Exception):
    """No usable headers tree."""


@dataclass
class HeadersChoice:
    """The headers tree bcc compiles against, why, and the flags it needs."""

    path: Optional[str]   # tree given to bcc, None when bcc finds its own
    how: str              # one line for the user and the metadata
    matching: bool        # headers of the running kernel
    cflags: tuple = ()    # clang flags these headers need (``cflags``)


def _usable(tree: str) -> bool:
    return os.path.isfile(os.path.join(tree, "include", "generated", "autoconf.h"))


def _complete(tree: str) -> bool:
    return os.path.isfile(os.path.join(tree, "include", "linux", "kconfig.h"))


def source_tree(tree: str) -> Optional[str]:
    """The ``-common`` tree a split Debian headers tree includes, if any."""
    try:
        with open(os.path.join(tree, "Makefile")) as f:
            m = re.search(r"^include\s+(\S+)/Makefile\s*$", f.read(), re.M)
    except OSError:
        return None
    return m.group(1) if m and os.path.isdir(m.group(1)) else None


def overlay(dst: str, sources) -> None:
    """Fill ``dst`` with symlinks so that it reads as ``sources`` merged,
    the first source winning; directories present in several are merged."""
    names = {}
    for src in sources:
        for name in os.listdir(src):
            names.setdefault(name, []).append(os.path.join(src, name))
    for name, paths in names.items():
        dirs = [p for p in paths if os.path.isdir(p)]
        target = os.path.join(dst, name)
        if len(dirs) > 1 and len(dirs) == len(paths):
            os.mkdir(target)
            overlay(target, dirs)
        else:
            os.symlink(paths[0], target)


def merged_tree(tree: str) -> str:
    """A one-directory view of a split headers tree, for BCC_KERNEL_SOURCE."""
    src = source_tree(tree)
    if _complete(tree) or not src:
        return tree
    with deferred():   # a signal between the two would leave the directory behind
        dst = tempfile.mkdtemp(prefix="anonscope-headers-")
        atexit.register(shutil.rmtree, dst, True)
    overlay(dst, [tree, src])
    return dst


def choose(release: Optional[str] = None, env: Optional[dict] = None,
           root: str = "/") -> HeadersChoice:
    """Find headers for bcc; the caller applies the choice with ``apply``."""
    release = release or platform.release()
    env = os.environ if env is None else env
    if env.get("BCC_KERNEL_SOURCE"):
        return HeadersChoice(env["BCC_KERNEL_SOURCE"], "BCC_KERNEL_SOURCE set by the user", False)
    build = os.path.join(root, "lib/modules", release, "build")
    if _usable(build):
        return HeadersChoice(None, f"matching headers in /lib/modules/{release}/build", True)
    if os.path.exists(os.path.join(root, "sys/kernel/kheaders.tar.xz")):
        return HeadersChoice(None, "kernel's own /sys/kernel/kheaders.tar.xz", True)
    arch = platform.machine()
    flavours = _FLAVOURS.get(arch, ())
    trees = sorted(
        (t for f in flavours for t in glob.glob(os.path.join(root, f"usr/src/linux-headers-*-{f}"))
         if _usable(t)),
        key=_version_key, reverse=True)
    if trees:
        tree = trees[0]
        return HeadersChoice(
            tree,
            f"no headers for {release}; compiling against {tree} via BCC_KERNEL_SOURCE, "
            "for this process only (struct layouts come from BTF, not from these headers)", False)
    raise HeadersError(
        f"no kernel headers for {release} and no other linux-headers tree for {arch}: "
        "install linux-headers-$(uname -r), or on Debian linux-headers-amd64/arm64 (scripts/setup does)")


#: Linux builds with -fms-extensions from v6.19 ("Kbuild: enable
#: -fms-extensions"), and its headers since use tagged anonymous members
#: (7.3 include/linux/ns/ns_common_types.h: ``struct ns_tree;`` inside
#: struct ns_common; include/linux/fs.h ``struct __filename_head;``): a
#: compile without the flag drops those members and fails (bcc issue #5501,
#: on 7.0). The same flags as the kernel's BPF selftests.
MS_EXTENSIONS = ["-fms-extensions", "-Wno-microsoft-anon-tag"]
MS_EXTENSIONS_SINCE = (6, 19)


def tree_release(choice: HeadersChoice, release: Optional[str] = None, root: str = "/") -> str:
    """The kernel release the chosen headers are of: their
    include/generated/utsrelease.h, else the running kernel's (bcc's own
    choice: /lib/modules/<release>/build or kheaders)."""
    release = release or platform.release()
    tree = choice.path or os.path.join(root, "lib/modules", release, "build")
    try:
        with open(os.path.join(tree, "include", "generated", "utsrelease.h")) as f:
            m = re.search(r'UTS_RELEASE\s+"([^"]+)"', f.read())
        return m.group(1) if m else release
    except OSError:
        return release


def release_version(kernel_release: str) -> tuple:
    """(major, minor) of a kernel release string; (0, 0) when it has none."""
    m = re.match(r"(\d+)\.(\d+)", kernel_release or "")
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def cflags(kernel_release: str) -> list:
    """The clang flags bcc needs for headers of ``kernel_release``."""
    return list(MS_EXTENSIONS) if release_version(kernel_release) >= MS_EXTENSIONS_SINCE else []


def _version_key(tree: str):
    name = os.path.basename(tree)
    parts = name.replace("linux-headers-", "").replace("-", ".").split(".")
    return [int(p) if p.isdigit() else 0 for p in parts]


def apply(choice: HeadersChoice) -> None:
    """Make bcc in this process use the chosen tree."""
    if choice.path:
        os.environ["BCC_KERNEL_SOURCE"] = merged_tree(choice.path)
