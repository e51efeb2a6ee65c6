"""The Perfetto replay's rules one by one (collector/perfetto/replay.py,
tasks.py): small event sequences, each with the rows the kernel program
would have made from the same tracepoints, or the reason it cannot."""

from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from anonscope.collector import sites
from anonscope.collector.abi import Caller, Ev, Obj, Path
from anonscope.collector.perfetto.replay import Replay

C = sites.placeholder()
SIZES = {Obj.ANON_VMA: 96, Obj.AVC: 64, Obj.VMA: 192}
CLONE_VM, CLONE_THREAD = 0x100, 0x10000


def site(name):
    return C.ranges[name][0][0] + 8


def event(kind, **fields):
    ev = pb.FtraceEvent()
    msg = getattr(ev, kind)
    msg.SetInParent()
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


class Run:
    def __init__(self, arch="x86_64"):
        self.r = Replay(C, SIZES, arch)
        self.ts = 0
        self.ptr = 0xFFFF888000000000

    def __call__(self, tid, kind, cpu=0, **fields):
        self.ts += 10
        Replay.HANDLERS[kind](self.r, self.ts, cpu, tid, event(kind, **fields))

    def alloc(self, tid, fn, size):
        self.ptr += 0x100
        self(tid, "kmem_cache_alloc", call_site=site(fn), ptr=self.ptr, bytes_req=size, bytes_alloc=size)

    def rows(self):
        return [dict(zip(r.dtype.names, r.item())) for r in self.r.take()]


def test_a_compat_syscall_number_that_made_no_task_is_not_a_fork():
    """arm64: 220 is clone for a 64-bit task and madvise for a 32-bit one;
    a window that returns without a task_newtask made split rows."""
    run = Run("aarch64")
    run(5, "sys_enter", id=220)
    run.alloc(5, "vm_area_dup", 192)
    run.alloc(5, "anon_vma_clone", 64)
    run(5, "sys_exit", id=220, ret=0)
    rows = run.rows()
    assert [(r["path"], r["fork_id"], r["caller"]) for r in rows] == [(Path.VMA_DUP, 0, 0), (Path.CLONE_VMA, 0, 0)]
    assert run.r.counts["windows_not_forks"] == 1


def test_a_failed_clone_keeps_its_fork_path_rows():
    run = Run()
    run(5, "sys_enter", id=56)
    run.alloc(5, "anon_vma_clone", 64)
    run(5, "sys_exit", id=56, ret=-12)
    (row,) = run.rows()
    assert row["path"] == Path.CLONE_FORK and row["fork_id"] and row["caller"] == Caller.FORK


def test_a_fork_window_is_a_fork_once_task_newtask_says_so_and_closes_at_the_fork():
    run = Run()
    run(5, "sys_enter", id=56)
    run.alloc(5, "vm_area_dup", 192)
    run(5, "task_newtask", pid=6, comm="p", clone_flags=0)
    run(5, "sched_process_fork", parent_pid=5, child_pid=6, parent_comm="p", child_comm="p")
    run.alloc(5, "anon_vma_clone", 64)       # after the fork row, before sys_exit: not the fork's
    rows = run.rows()
    assert [r["kind"] for r in rows] == [Ev.ALLOC, Ev.FORK, Ev.ALLOC]
    assert rows[0]["path"] == Path.VMA_FORK and rows[0]["fork_id"] == rows[1]["fork_id"] != 0
    assert rows[1]["aux1"] == 6 and rows[1]["aux2"] == 6
    assert rows[2]["path"] == Path.CLONE_VMA and rows[2]["fork_id"] == 0


def test_an_io_worker_without_a_fork_event_belongs_to_its_process():
    """create_io_thread() calls copy_process() directly: task_newtask, no
    sched_process_fork."""
    run = Run()
    run(10, "task_newtask", pid=11, comm="iou-wrk-10", clone_flags=CLONE_VM | CLONE_THREAD)
    run.alloc(11, "__anon_vma_prepare", 96)
    (row,) = run.rows()
    assert (row["pid"], row["tgid"], row["comm"]) == (11, 10, b"iou-wrk-10")
    assert run.r.tasks.unknown == {10}


def test_task_rename_without_its_pid_field_renames_the_task_itself():
    """6.13-6.17 dropped task_rename's pid (Perfetto then leaves it unset)."""
    run = Run()
    run(7, "task_rename", oldcomm="a", newcomm="b")
    run(7, "task_rename", pid=8, oldcomm="c", newcomm="d")   # /proc/8/comm written by 7
    run.alloc(7, "__anon_vma_prepare", 96)
    run.alloc(8, "__anon_vma_prepare", 96)
    assert [r["comm"] for r in run.rows()] == [b"b", b"d"]


def test_exec_by_a_thread_makes_it_the_leader_and_a_rename_names_it():
    """de_thread(): the exec'ing thread 12 of process 10 continues as 10;
    a task_rename since execve() entered (6.14's name from the dentry of an
    fd) wins over the file name."""
    run = Run()
    run(12, "sys_enter", id=322)
    run(10, "task_rename", pid=10, oldcomm="x", newcomm="tool")
    run(10, "sched_process_exec", filename="/dev/fd/3", pid=10, old_pid=12)
    run.alloc(10, "vm_area_alloc", 192)
    rows = run.rows()
    assert rows[0]["kind"] == Ev.EXEC and rows[0]["fork_id"] == 20     # ns since execveat() entered
    assert (rows[1]["tgid"], rows[1]["comm"]) == (10, b"tool")
    run(13, "sched_process_exec", filename="/usr/bin/env", pid=13, old_pid=13)
    assert run.r.tasks.of(13) == (13, "env")


def test_the_idle_task_is_named_per_cpu():
    run = Run()
    run.alloc(0, "vm_area_alloc", 192)
    run(0, "kmem_cache_free", cpu=3, call_site=site("unlink_anon_vmas"), ptr=1)
    assert [r["comm"] for r in run.rows()] == [b"swapper/0", b"swapper/3"]


def test_an_exit_closes_the_windows_of_the_task():
    """A lost sys_exit cannot leave a fork window open past the task."""
    run = Run()
    run(5, "sys_enter", id=56)
    run(5, "sched_process_exit", comm="p", pid=5, tgid=5, prio=120)
    run(5, "task_newtask", pid=6, comm="p", clone_flags=0)  # a reused tid's later fork: no window
    run.alloc(5, "anon_vma_clone", 64)
    rows = run.rows()
    assert rows[-1]["path"] == Path.CLONE_VMA and rows[-1]["fork_id"] == 0
