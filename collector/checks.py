"""Arguments checked before anything slow (reading the host and compiling
the BPF program take seconds): each failure is one line and exit 2."""

import os
import shutil
from typing import List, Optional

from . import segments
from .errors import EXIT_USAGE, CollectError

#: include/linux/sched.h: TASK_COMM_LEN 16, the name and its NUL.
COMM_MAX = 15


def command(argv: List[str]) -> str:
    """The executable ``-- CMD`` runs (as execvp finds it)."""
    name = argv[0] if argv else ""
    if not name:
        raise CollectError("empty command after --", EXIT_USAGE)
    path = name if "/" in name else shutil.which(name)
    if path is None:
        raise CollectError(f"cannot execute {name}: not found in PATH", EXIT_USAGE)
    if not os.path.exists(path):
        raise CollectError(f"cannot execute {name}: No such file or directory", EXIT_USAGE)
    if os.path.isdir(path):
        raise CollectError(f"cannot execute {name}: Is a directory", EXIT_USAGE)
    if not os.access(path, os.X_OK):
        raise CollectError(f"cannot execute {name}: Permission denied", EXIT_USAGE)
    return path


def process(pid: int, proc: str = "/proc") -> None:
    """``-p PID`` names a live process (a thread group leader)."""
    try:
        with open(os.path.join(proc, str(pid), "status")) as f:
            status = f.read()
    except OSError:
        raise CollectError(f"-p {pid}: no such process", EXIT_USAGE) from None
    for line in status.splitlines():
        if line.startswith("Tgid:"):
            tgid = int(line.split()[1])
            if tgid != pid:
                raise CollectError(f"-p {pid}: a thread of process {tgid}; give the process id", EXIT_USAGE)


def comm(name: str) -> None:
    """``--comm NAME`` is not empty and at most COMM_MAX bytes, the name the
    kernel keeps (``TASK_COMM_LEN``)."""
    size = len(name.encode())
    if not size:
        raise CollectError("--comm: empty name", EXIT_USAGE)
    if size > COMM_MAX:
        raise CollectError(f"--comm {name!r} is {size} bytes: the kernel keeps at most {COMM_MAX} "
                           "(TASK_COMM_LEN); give the first 15, as ps -o comm shows them", EXIT_USAGE)


def output(path: str, force: bool) -> None:
    """The -o file can be written; an earlier run's data is not in the way."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CollectError(f"cannot write {path}: no directory {directory}", EXIT_USAGE)
    if not os.access(directory, os.W_OK):
        raise CollectError(f"cannot write {path}: {directory} is not writable", EXIT_USAGE)
    if os.path.isdir(path):
        raise CollectError(f"cannot write {path}: it is a directory", EXIT_USAGE)
    partial = segments.partial_dir(path)
    if os.path.exists(partial) and not force:
        raise CollectError(f"{partial} holds the segments of an earlier run that did not finish "
                           f"(anonanalyze report {path} reads them): move it away, or --force to "
                           "delete it", EXIT_USAGE)


def all_arguments(command_argv: List[str], pid: Optional[int], comm_name: Optional[str],
                  path: str, force: bool) -> None:
    """Check the arguments given: the command, ``-p``, ``--comm``, then ``-o``;
    the first that fails raises its CollectError."""
    if command_argv:
        command(command_argv)
    if pid is not None:
        process(pid)
    if comm_name is not None:
        comm(comm_name)
    output(path, force)
