"""The kernel program's rules, replayed over a Perfetto trace's events.

bpf/anonscope.bpf.c turns kmem, sched and syscall tracepoints into records
(collector/abi.py ``struct event``); this module makes the same records from
the same tracepoints as Perfetto typed them, with the same classifier
(collector/sites.py) over the trace's kallsyms, so that every later step
(the writer, the analyzer) is the collector's own. Where the program reads
something Perfetto does not record, the rule used instead is named here:

- the object type: the kernel program compares ``bytes_req`` with the
  struct sizes from BTF; here with ``sizes`` (the caches' ``object_size``
  from /sys/kernel/slab, or what the trace shows: see importer.py);
- the cache of a free: the program knows it (the ``struct kmem_cache``
  pointer or its name); ``KmemCacheFreeFtraceEvent`` has neither, so a free
  of an object allocated in the trace is matched by its pointer (after a
  lost free, another cache's object at the reused address would free ours:
  only then, and the loss is reported), and one of
  an older object is recognised only at the call sites that free nothing
  else (``unlink_anon_vmas``: AVCs; ``__put_anon_vma``: anon_vmas), as the
  program does on kernels whose free tracepoint has neither (checked on
  the trace's own objects: one of them freed at such a site as the other
  kind, as when a compiler inlines ``__put_anon_vma()`` into
  ``unlink_anon_vmas()``, is counted, ``site_rule_broken``, and makes the
  older objects' frees of unknown kind); frees of older VMAs are not
  recognised (nothing tells them from every other slab free);
- an allocation at a call site none of our functions covers (path
  ``other``) needs the cache: never made here (the program makes it only
  from a known cache);
- ``caller`` (split, merge, mremap, anon_fault, cow_fault) needs the kernel
  stack: always null; ``fork`` on fork-path rows, as the program sets it;
- the fork window: raw_syscalls ``sys_enter``/``sys_exit`` of clone,
  clone3, fork and vfork (by number, per architecture), as the program's
  ``HAVE_FORK_SYSCALLS`` branch; exec's start from ``sys_enter`` of execve
  and execveat;
- marks (``anoncollect mark LABEL``): a line ``anonscope-mark: LABEL``
  written to tracefs ``trace_marker`` (an ``ftrace/print`` event, on the
  trace's own clock);
- ``shares_mm``: ``CLONE_VM`` in ``task_newtask``'s ``clone_flags`` (the
  program compares the two mm pointers); ``group_dead`` is not in
  ``SchedProcessExitFtraceEvent``: null, as on kernels without the field.
"""

from typing import Dict, List, Optional

import numpy as np

from ..abi import EVENT_DTYPE, Caller, Ev, Flag, Obj, Path, Site
from ..marks import MarkError, check_label
from ..sites import Classifier
from .tasks import Tasks, exec_comm

#: Syscall numbers of the fork and exec syscalls (``sys_enter.id``) per
#: ``uname -m``: arch/x86/entry/syscalls/syscall_64.tbl;
#: include/uapi/asm-generic/unistd.h (arm64, riscv64: no fork, no vfork);
#: arch/arm/tools/syscall.tbl. A 32-bit task on a 64-bit kernel enters
#: with its compat numbers, which these tables do not cover.
FORK_SYSCALLS = {
    "x86_64": {56: "clone", 57: "fork", 58: "vfork", 435: "clone3"},
    "aarch64": {220: "clone", 435: "clone3"},
    "riscv64": {220: "clone", 435: "clone3"},
    "armv7l": {2: "fork", 120: "clone", 190: "vfork", 435: "clone3"},
}
EXEC_SYSCALLS = {
    "x86_64": {59: "execve", 322: "execveat"},
    "aarch64": {221: "execve", 281: "execveat"},
    "riscv64": {221: "execve", 281: "execveat"},
    "armv7l": {11: "execve", 387: "execveat"},
}
ARCH_ALIASES = {"arm64": "aarch64", "amd64": "x86_64", "armv8l": "armv7l", "arm": "armv7l"}

#: Free call sites that free only one of our objects, for frees of objects
#: older than the trace (bpf/anonscope.bpf.c, the branch without a cache).
OLD_FREE_OBJECT = {Site.PUT: Obj.ANON_VMA, Site.UNLINK: Obj.AVC}
#: How a mark reaches the trace: a line written to tracefs trace_marker.
MARK_PREFIX = "anonscope-mark: "


def arch_tables(arch: str):
    """(fork syscalls, exec syscalls) of ``uname -m`` ``arch``; KeyError
    when unknown."""
    a = ARCH_ALIASES.get(arch, arch)
    return FORK_SYSCALLS[a], EXEC_SYSCALLS[a]


def _not_fork(row: tuple) -> tuple:
    """A row held in a window that was no fork, as the row outside a fork
    it is: clone_vma and dup instead of clone_fork and fork, no fork id,
    no fork caller."""
    path = {Path.CLONE_FORK: Path.CLONE_VMA, Path.VMA_FORK: Path.VMA_DUP}.get(row[10], row[10])
    caller = 0 if row[11] == Caller.FORK else row[11]
    return row[:2] + (0,) + row[3:10] + (path, caller) + row[12:]


class Replay:
    """Turns time-ordered trace events into ``struct event`` records."""

    def __init__(self, classifier: Classifier, sizes: Dict[int, int], arch: str):
        self.sites = classifier
        self.sizes = sizes                       # Obj -> bytes_req
        self.fork_calls, self.exec_calls = arch_tables(arch)
        self.tasks = Tasks()
        self.records: List[tuple] = []
        self.marks: List[tuple] = []             # (ts, label)
        self.slots: Dict[int, int] = {}          # Obj -> bytes_alloc, the slot
        self._ids = 0
        self._live: Dict[int, tuple] = {}        # ptr -> (obj_id, Obj)
        self._forking: Dict[int, int] = {}       # tid -> fork id
        self._held: Dict[int, List[tuple]] = {}  # tid -> its window's rows, until the window is a fork
        self._execing: Dict[int, int] = {}       # tid -> execve entry ts
        self._renamed: Dict[int, int] = {}       # tid -> ts of its last task_rename
        self.counts = {"allocs_other_sizes": 0, "frees_unmatched": 0, "forks_without_newtask": 0,
                       "syscalls_fork": 0, "syscalls_exec": 0, "marks_refused": 0,
                       "site_rule_broken": 0, "windows_not_forks": 0}

    def skip_ids(self, last: int) -> None:
        """Make ids above ``last`` from now on (another source's ids, a
        census's, stay unique)."""
        self._ids = max(self._ids, last)

    def _new_id(self) -> int:
        self._ids += 1
        return self._ids

    def _record(self, ts, cpu, tid, kind, obj_id=0, fork_id=0, aux1=0, aux2=0, obj=0, path=0,
                caller=0, flags=0, comm: Optional[str] = None) -> None:
        tgid, known_comm = self.tasks.of(tid, cpu)
        name = (known_comm if comm is None else comm).encode()[:15]
        row = (ts, obj_id, fork_id, tid, tgid, aux1, aux2, cpu, kind, obj, path, caller, flags, 0, name)
        held = self._held.get(tid) if fork_id and kind == Ev.ALLOC else None
        (self.records if held is None else held).append(row)

    def take(self) -> np.ndarray:
        """The records made since the last call."""
        out = np.array(self.records, dtype=EVENT_DTYPE) if self.records else np.empty(0, EVENT_DTYPE)
        self.records = []
        return out

    # -- kmem ------------------------------------------------------------
    def _object(self, site: int, req: int) -> int:
        if site in (Site.VMA_ALLOC, Site.VMA_DUP):
            return Obj.VMA if req == self.sizes.get(Obj.VMA) else 0
        if site == Site.CLONE:
            return Obj.AVC if req == self.sizes.get(Obj.AVC) else 0
        if req == self.sizes.get(Obj.ANON_VMA):
            return Obj.ANON_VMA
        return Obj.AVC if req == self.sizes.get(Obj.AVC) else 0

    def alloc(self, ts, cpu, tid, ev) -> None:
        """``kmem_cache_alloc``: one of our objects when the call site is
        one of our functions and the size is the object's."""
        site = self.sites.alloc_site(ev.call_site)
        if not site:
            return
        obj = self._object(site, ev.bytes_req)
        if not obj:
            self.counts["allocs_other_sizes"] += 1   # another cache's object from the same function
            return
        fork_id = self._forking.get(tid, 0)
        if site == Site.PREPARE:
            path = Path.FAULT
        elif site == Site.FORK:
            path = Path.FORK
        elif site == Site.CLONE:
            path = Path.CLONE_FORK if fork_id else Path.CLONE_VMA
        elif site == Site.VMA_ALLOC:
            path = Path.VMA_ALLOC
        else:
            path = Path.VMA_FORK if fork_id else Path.VMA_DUP
        caller = Caller.FORK if fork_id and site != Site.FORK and path != Path.FAULT else 0
        self.slots.setdefault(obj, ev.bytes_alloc)
        obj_id = self._new_id()
        self._live[ev.ptr] = (obj_id, obj)
        self._record(ts, cpu, tid, Ev.ALLOC, obj_id=obj_id, fork_id=fork_id, aux1=ev.bytes_alloc,
                     obj=obj, path=path, caller=caller)

    def free(self, ts, cpu, tid, ev) -> None:
        """``kmem_cache_free``: an object allocated in the trace (by its
        pointer), or an older one freed where only our objects are."""
        site = self.sites.free_site(ev.call_site)
        known = self._live.pop(ev.ptr, None)
        if known is not None:
            obj_id, obj = known
            flags = 0
            if OLD_FREE_OBJECT.get(site, obj) != obj:
                self.counts["site_rule_broken"] += 1   # e.g. __put_anon_vma inlined into unlink_anon_vmas
        else:
            obj = OLD_FREE_OBJECT.get(site, 0)
            if not obj:
                return
            obj_id, flags = self._new_id(), Flag.PREEXISTING
        if obj == Obj.VMA:
            path = Path.VMA_FREE
        elif site == Site.UNLINK:
            path = Path.UNLINK
        elif site == Site.PUT:
            path = Path.PUT
        elif site in (Site.FORK, Site.CLONE):
            path = Path.ERROR
        else:
            path = Path.FREE_OTHER
        self._record(ts, cpu, tid, Ev.FREE, obj_id=obj_id, obj=obj, path=path, flags=flags)

    # -- syscalls --------------------------------------------------------
    def sys_enter(self, ts, cpu, tid, ev) -> None:
        """``raw_syscalls:sys_enter``: a fork window or an exec opens. The
        window's rows wait until a ``task_newtask`` of the task shows it is
        a fork: a 32-bit task on a 64-bit kernel enters with its compat
        numbers (arm64: 220 is compat madvise), which raw_syscalls does not
        tell from the native ones."""
        if ev.id in self.fork_calls:
            self.counts["syscalls_fork"] += 1
            self._forking[tid] = self._new_id()
            self._held[tid] = []
        elif ev.id in self.exec_calls:
            self.counts["syscalls_exec"] += 1
            self._execing[tid] = ts

    def sys_exit(self, ts, cpu, tid, ev) -> None:
        """``raw_syscalls:sys_exit``: the window closes. Rows still held
        were not a fork's: a failed clone (negative return) keeps them as
        the program would (fork-path, owner unknown); a syscall that
        returned and made no task was not a fork at all (compat numbers),
        and they become the split/merge/mremap rows they were."""
        if ev.id in self.fork_calls:
            self._forking.pop(tid, None)
            held = self._held.pop(tid, None)
            if held:
                self.records.extend(held if ev.ret < 0 else map(_not_fork, held))
                self.counts["windows_not_forks"] += ev.ret >= 0
        elif ev.id in self.exec_calls:
            self._execing.pop(tid, None)

    def _confirm(self, tid: int) -> None:
        """The task's window is a fork: its rows go out as fork-path rows."""
        held = self._held.pop(tid, None)
        if held:
            self.records.extend(held)

    # -- tasks -----------------------------------------------------------
    def newtask(self, ts, cpu, tid, ev) -> None:
        """``task_newtask``: the clone flags of the child to come; the
        parent's window is a fork."""
        self.tasks.newtask(tid, ev.pid, ev.comm, ev.clone_flags)
        self._confirm(tid)

    def fork(self, ts, cpu, tid, ev) -> None:
        """``sched_process_fork``: the fork row (child pid and tgid). The
        window closes here: ``kernel_clone()`` allocates none of our objects
        after it, and a lost ``sys_exit`` then cannot leave it open."""
        if not self.tasks.knows_clone(ev.child_pid):
            self.counts["forks_without_newtask"] += 1
        self._confirm(tid)
        child_tgid, shares_mm = self.tasks.fork(tid, ev.child_pid, ev.child_comm)
        self._record(ts, cpu, tid, Ev.FORK, fork_id=self._forking.pop(tid, 0), aux1=ev.child_pid,
                     aux2=child_tgid, flags=Flag.SHARES_MM if shares_mm else 0)

    def exec(self, ts, cpu, tid, ev) -> None:
        """``sched_process_exec``: the exec row, with the time since
        execve() entered (``fork_id`` of the record, as the program). The
        new comm is the file name's last part, unless the task was renamed
        since execve() entered: ``begin_new_exec()`` renames it through
        ``__set_task_comm()`` (``task_rename``), and from 6.14 names it
        after the file's dentry for an execveat() of an fd (whose file name
        is ``/dev/fd/N``)."""
        start = self._execing.pop(ev.old_pid, None)
        renamed = start is not None and self._renamed.get(tid, -1) >= start
        self.tasks.exec(tid, self.tasks.of(tid, cpu)[1] if renamed else exec_comm(ev.filename))
        self._record(ts, cpu, tid, Ev.EXEC, fork_id=ts - start if start is not None else 0)

    def exit(self, ts, cpu, tid, ev) -> None:
        """``sched_process_exit``: the exit row (group_dead unknown); the
        task's windows close."""
        self.tasks.exit(tid, ev.tgid, ev.comm)
        for state in (self._forking, self._execing, self._renamed):
            state.pop(tid, None)
        self._confirm(tid)
        self._record(ts, cpu, tid, Ev.EXIT)

    def rename(self, ts, cpu, tid, ev) -> None:
        """``task_rename``: no row; later rows carry the new comm. The
        renamed task is the event's ``pid`` field (a write to
        /proc/PID/comm renames another thread), which 6.13-6.17 dropped
        (e3f6a42272e0, brought back by a6f22e50c7d5 in 7.0 and 6.18.y):
        then the task renaming itself."""
        pid = ev.pid if ev.HasField("pid") else tid
        self._renamed[pid] = ts
        self.tasks.rename(pid, ev.newcomm)

    def print_(self, ts, cpu, tid, ev) -> None:
        """``ftrace/print`` (a write to tracefs ``trace_marker``): a mark
        when it is ``MARK_PREFIX`` LABEL (scripts/android/mark writes
        them); any other print is not ours."""
        if ev.buf.startswith(MARK_PREFIX):
            label = ev.buf[len(MARK_PREFIX):].strip()
            try:
                self.marks.append((ts, check_label(label)))
            except MarkError:
                self.counts["marks_refused"] += 1

    #: FtraceEvent oneof name -> handler
    HANDLERS = {"kmem_cache_alloc": alloc, "kmem_cache_free": free, "sys_enter": sys_enter,
                "sys_exit": sys_exit, "task_newtask": newtask, "sched_process_fork": fork,
                "sched_process_exec": exec, "sched_process_exit": exit, "task_rename": rename,
                "print": print_}
