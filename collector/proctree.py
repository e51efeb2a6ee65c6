"""The processes that exist now, from /proc: ``-p PID`` records PID and its
descendants, the ones alive at start included."""

import os
from typing import Dict, List


def parent_of(proc: str = "/proc") -> Dict[int, int]:
    """{tgid: parent tgid} of every process (field 4 of /proc/PID/stat,
    after the command name in parentheses, which may itself hold them)."""
    out = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "stat")) as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1:
            out[int(entry)] = int(fields[1])
    return out


def descendants(pid: int, proc: str = "/proc") -> List[int]:
    """Every live descendant process of ``pid`` (not ``pid`` itself), sorted."""
    children: Dict[int, List[int]] = {}
    for child, parent in parent_of(proc).items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), ()):
            if c not in found and c != pid:
                found.add(c)
                todo.append(c)
    return sorted(found)
