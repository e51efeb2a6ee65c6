"""Kernel text ranges of named functions, from /proc/kallsyms.

A tracepoint's ``call_site`` is a return address inside the function that
called the allocator (the slab helpers are inlined), so classifying it means
knowing where each function starts and ends. kallsyms gives start addresses
only; a function ends where the next text symbol starts.

Compilers rename functions they clone or split: ``foo.isra.0``,
``foo.constprop.0``, ``foo.part.0``, ``foo.cold`` (GCC) and
``foo.llvm.1234567`` (clang LTO). All of them are ``foo`` here. Covers the
kallsyms format of every kernel since 2.6 ("ADDR TYPE NAME [MODULE]").
"""

import re
from typing import Dict, Iterable, List, Tuple

KALLSYMS = "/proc/kallsyms"

_SUFFIX = re.compile(r"\.(isra|constprop|part|cold|llvm|lto_priv|localalias)(\.\w+)*$")
_TEXT_TYPES = frozenset("tTwW")

Range = Tuple[int, int]


class KallsymsError(Exception):
    """kallsyms is unreadable or hides addresses (not root, kptr_restrict)."""


def base_name(symbol: str) -> str:
    """The source-level function name of a possibly compiler-renamed symbol."""
    return _SUFFIX.sub("", symbol)


def function_ranges(lines: Iterable[str], wanted: Iterable[str]) -> Dict[str, List[Range]]:
    """Map each wanted function name to the [start, end) ranges of its symbols.

    ``lines`` are kallsyms lines. A function may have several ranges (a
    ``.cold`` part, or several ``.constprop`` clones). Functions not found
    are absent from the result. Module symbols are ignored: the anon rmap
    lives in the core kernel.
    """
    wanted = set(wanted)
    starts = []  # (address, base name or None) of every core text symbol
    for line in lines:
        parts = line.split()
        if len(parts) < 3 or len(parts) > 3 or parts[1] not in _TEXT_TYPES:
            continue  # data symbol, or a module symbol ("[module]" column)
        addr = int(parts[0], 16)
        name = base_name(parts[2])
        starts.append((addr, name if name in wanted else None))
    if starts and all(a == 0 for a, _ in starts):
        raise KallsymsError("kallsyms shows zero addresses (run as root, or kernel.kptr_restrict hides them)")
    starts.sort(key=lambda s: s[0])
    ranges: Dict[str, List[Range]] = {}
    for i, (addr, name) in enumerate(starts):
        if name is None:
            continue
        # The next symbol with a higher address ends this one (aliases share
        # an address; __pfx_ padding symbols start the next function).
        j = i + 1
        while j < len(starts) and starts[j][0] == addr:
            j += 1
        if j == len(starts):
            continue
        end = starts[j][0]
        ranges.setdefault(name, []).append((addr, end))
    return ranges


def read_function_ranges(wanted: Iterable[str], path: str = KALLSYMS) -> Dict[str, List[Range]]:
    """``function_ranges`` of the running kernel."""
    try:
        with open(path) as f:
            return function_ranges(f, wanted)
    except OSError as e:
        raise KallsymsError(f"cannot read {path}: {e.strerror}") from None


def symbol_address(name: str, path: str = KALLSYMS) -> int:
    """Address of symbol ``name`` (any type: data symbols are listed when the
    kernel has CONFIG_KALLSYMS_ALL, as Debian's do); 0 when it is not
    listed or addresses are hidden."""
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == name:
                    return int(parts[0], 16)
    except OSError:
        return 0
    return 0
