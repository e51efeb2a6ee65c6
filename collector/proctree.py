"""The processes that exist now, from /proc: ``-p PID`` records PID and its
descendants, the ones alive at start included."""

import os
from typing import Dict, List, Optional


def stat_fields(pid, proc: str = "/proc") -> Optional[List[str]]:
    """The fields of /proc/PID/stat after the command name in parentheses
    (which may itself hold them): index 0 is field 3 (state); None when the
    process is gone."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()


def start_ticks(pid, proc: str = "/proc") -> Optional[int]:
    """When process ``pid`` started, in clock ticks since boot (field 22 of
    /proc/PID/stat); with the pid it names one process for the whole boot,
    whereas a pid alone is reused. None when the process is gone."""
    fields = stat_fields(pid, proc)
    return int(fields[19]) if fields and len(fields) > 19 else None


def parent_of(proc: str = "/proc") -> Dict[int, int]:
    """{tgid: parent tgid} of every process (field 4 of /proc/PID/stat,
    after the command name in parentheses, which may itself hold them)."""
    out = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry, proc)   # None: exited meanwhile
        if fields and len(fields) > 1:
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
