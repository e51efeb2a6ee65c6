"""Which process (tgid) and command name (comm) each thread id is.

An ftrace event in a Perfetto trace carries only the thread id of its task
(``FtraceEvent.pid``); the collector's rows carry the task's tgid and comm
as the kernel had them at that moment. They are rebuilt from what the trace
says about tasks:

- ``ProcessTree`` packets (the ``linux.process_stats`` data source, which
  scans /proc when the trace starts): every thread's tgid and name;
- ``task_newtask`` (in the parent, from ``copy_process()``): the new
  thread's comm and ``clone_flags`` (``CLONE_THREAD``: the parent's
  process; ``CLONE_VM``: the parent's mm);
- ``sched_process_fork``: the child's comm;
- ``task_rename`` (``__set_task_comm()``: prctl PR_SET_NAME, and exec on
  kernels where exec renames through it) and ``sched_process_exec`` (the new
  comm is the file name's last part, fs/exec.c ``begin_new_exec()``, cut to
  15 bytes; ``old_pid`` is the thread that called exec, which takes the
  thread-group leader's id in ``de_thread()``);
- ``sched_process_exit``: its comm (and a tgid where Perfetto's event has
  one: upstream's tracepoint has none, and the field is then 0).

A thread with an event before the trace describes it is taken to be its
own process's leader (tgid = tid) with an empty comm until then, and is
counted (``unknown``: the importer's metadata says how many).
"""

from typing import Dict, Tuple

#: include/uapi/linux/sched.h
CLONE_VM, CLONE_THREAD = 0x00000100, 0x00010000
TASK_COMM_LEN = 16


def exec_comm(filename: str) -> str:
    """The comm exec gives a task: ``kbasename(bprm->filename)`` cut to
    TASK_COMM_LEN - 1 bytes (``__set_task_comm()``)."""
    return filename.rsplit("/", 1)[-1].encode()[:TASK_COMM_LEN - 1].decode(errors="replace")


class Tasks:
    """tid -> (tgid, comm), as the trace has told so far."""

    def __init__(self):
        self._tasks: Dict[int, Tuple[int, str]] = {}
        self._clones: Dict[int, int] = {}   # child tid -> clone_flags, until its fork event or exit
        self.unknown = set()                # tids taken as leaders, never described

    def of(self, tid: int, cpu: int = 0) -> Tuple[int, str]:
        """(tgid, comm) of thread ``tid`` (tid 0: CPU ``cpu``'s idle task)."""
        if tid == 0:
            return 0, f"swapper/{cpu}"
        t = self._tasks.get(tid)
        if t is None:
            self.unknown.add(tid)
            t = self._tasks[tid] = (tid, "")
        return t

    def process_tree(self, tree) -> None:
        """A ``ProcessTree`` packet: processes (pid, cmdline) and threads
        (tid, tgid, name)."""
        for p in tree.processes:
            name = p.cmdline[0] if p.cmdline else ""
            comm = name if p.cmdline_is_comm else name.rsplit("/", 1)[-1][:TASK_COMM_LEN - 1]
            if p.pid not in self._tasks or p.pid in self.unknown:
                self._tasks[p.pid] = (p.pid, comm)
        for t in tree.threads:
            if t.tid in self._tasks and t.tid not in self.unknown:
                continue   # the events told more recently than the scan
            self._tasks[t.tid] = (t.tgid or t.tid, t.name or self._tasks.get(t.tgid, (0, ""))[1])

    def newtask(self, parent: int, child: int, comm: str, clone_flags: int) -> None:
        """``task_newtask`` (in ``parent``, from ``copy_process()``):
        ``child`` was made with ``clone_flags``. Its tgid is known now: an
        io_uring or vhost worker (``create_io_thread()``,
        ``vhost_task_create()``) never gets a ``sched_process_fork``, which
        only ``kernel_clone()`` fires."""
        self._clones[child] = clone_flags
        tgid = self.of(parent)[0] if clone_flags & CLONE_THREAD else child
        self._tasks[child] = (tgid, comm)
        self.unknown.discard(child)

    def fork(self, parent: int, child: int, child_comm: str) -> Tuple[int, bool]:
        """``sched_process_fork``: the child's (tgid, shares the parent's mm)."""
        flags = self._clones.pop(child, None)
        tgid = self.of(parent)[0] if flags is not None and flags & CLONE_THREAD else child
        self._tasks[child] = (tgid, child_comm)
        self.unknown.discard(child)
        return tgid, bool(flags is not None and flags & CLONE_VM)

    def knows_clone(self, child: int) -> bool:
        """Whether ``task_newtask`` described ``child``'s clone flags."""
        return child in self._clones

    def rename(self, tid: int, comm: str) -> None:
        """``task_rename``: the task's new comm."""
        self._tasks[tid] = (self.of(tid)[0], comm)

    def exec(self, tid: int, comm: str) -> None:
        """``sched_process_exec``: ``tid`` runs a new image named ``comm``;
        it leads its thread group now (``de_thread()`` gave a non-leader
        that called exec the leader's pid), so its tgid is ``tid``."""
        self._tasks[tid] = (tid, comm)
        self.unknown.discard(tid)

    def exit(self, tid: int, tgid: int, comm: str) -> None:
        """``sched_process_exit``: the comm of the task, and its tgid where
        Perfetto's event has one (0 otherwise: upstream's tracepoint has no
        tgid field)."""
        self._clones.pop(tid, None)
        self._tasks[tid] = (tgid or self.of(tid)[0], comm or self.of(tid)[1])
