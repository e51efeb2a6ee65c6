"""A collector recording written as the Perfetto trace a device would have
recorded of the same run, with Perfetto's own protos (tests of
``anonanalyze import perfetto``, docs/android.md).

Every field is the one the device's traced writes: raw ``call_site``
addresses (inside functions of a kallsyms file written alongside), raw
``ptr`` addresses (a freed slot is handed out again, as a slab does),
ftrace bundles per CPU whose order across CPUs is not time order,
``task_newtask``/``sched_process_fork`` for every fork, ``raw_syscalls``
around fork and exec, a ``ProcessTree`` of the tasks that existed at the
start, ``FtraceStats`` at the start and the end.

A Perfetto trace cannot carry what needs a kernel stack or a cache
(``strip`` makes the recording that remains): caller tags other than
``fork``, ``group_dead``, allocations at unknown call sites (path
``other``) and their frees, frees of objects older than the run except at
``unlink_anon_vmas``/``__put_anon_vma``, the census, slab, lock, call,
walk and move rows (marks travel as ``anonscope-mark: LABEL`` lines written
to trace_marker); and a trace is system-wide (STRIPPED_META).
"""

import json
import os
import shutil
import zlib
from collections import defaultdict

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

from anonscope.collector import sites
from anonscope.collector.perfetto.census import MARGIN_NS

#: The rows a trace carries: kernel events, and marks as trace_marker lines.
CARRIED_EVENTS = ("alloc", "free", "fork", "exec", "exit", "mark")
#: The functions whose call sites the trace uses, plus two that free
#: without being free sites of ours.
FUNCTIONS = sites.wanted_functions() + ["vm_area_free", "kfree_filler"]
TEXT_BASE = 0xFFFFFFFF81000000
SLAB_BASE = {"anon_vma": 0xFFFF888100000000, "anon_vma_chain": 0xFFFF888200000000,
             "vm_area_struct": 0xFFFF888300000000}
BOOT_T0 = 5_000_000_000_000      # the first event's boot-clock time (83 min after boot)
SYSCALLS_X86_64 = {"clone": 56, "execve": 59, "read": 0}
CLONE_VM, CLONE_THREAD = 0x100, 0x10000
BUNDLE_NS = 100_000_000           # traced's drain period: one bundle per CPU per period
ALLOC_FUNCTION = {("anon_vma", "fault"): "__anon_vma_prepare", ("anon_vma_chain", "fault"): "__anon_vma_prepare",
                  ("anon_vma", "fork"): "anon_vma_fork", ("anon_vma_chain", "fork"): "anon_vma_fork",
                  ("anon_vma_chain", "clone_fork"): "anon_vma_clone",
                  ("anon_vma_chain", "clone_vma"): "anon_vma_clone",
                  ("vm_area_struct", "alloc"): "vm_area_alloc", ("vm_area_struct", "fork"): "vm_area_dup",
                  ("vm_area_struct", "dup"): "vm_area_dup"}
FREE_FUNCTION = {"unlink": "unlink_anon_vmas", "put": "__put_anon_vma", "error": "anon_vma_clone",
                 "vma_free": "vm_area_free", "other": "kfree_filler"}
OLD_FREE_PATHS = ("unlink", "put")
#: What the stripped recording's metadata says, as the import's does: a
#: trace is system-wide, has no census and does not see a merged cache's
#: other users.
STRIPPED_META = {"target": {"mode": "system", "command": None, "pid": None, "comm": None},
                 "census": {"status": "not run", "reason": "a Perfetto trace has no census"},
                 "alias_traffic": None, "alias_frees_skipped": 0}


#: Where each function starts: FUNCTIONS' made-up addresses, or a real
#: kallsyms' (convert(kallsyms=...)).
TEXT = {name: TEXT_BASE + 0x1000 * i for i, name in enumerate(FUNCTIONS)}


def function_start(name, text=None):
    return (text or TEXT)[name]


def real_text(path):
    """Function starts from a real kallsyms: FUNCTIONS that are not free or
    allocation sites of ours stand for 'some other function' (kfree)."""
    from anonscope.collector import kallsyms
    with open(path) as f:
        ranges = kallsyms.function_ranges(f, FUNCTIONS + ["kfree"])
    text = {name: r[0][0] for name, r in ranges.items()}
    for name in ("vm_area_free", "kfree_filler"):
        text.setdefault(name, text["kfree"])
    return text


def write_kallsyms(path):
    """A kallsyms file with FUNCTIONS, each followed by a filler symbol."""
    with open(path, "w") as f:
        for name in FUNCTIONS:
            f.write(f"{function_start(name):016x} T {name}\n{function_start(name) + 0x100:016x} t after_{name}\n")


def write_slab_dir(path, meta):
    """A copy of /sys/kernel/slab as the recording's metadata describes it."""
    for obj, entry in json.loads(meta[b"anonscope.object_sizes"]).items():
        os.makedirs(os.path.join(path, obj), exist_ok=True)
        for name in ("object_size", "slab_size", "align", "objs_per_slab"):
            if entry.get(name) is not None:
                with open(os.path.join(path, obj, name), "w") as f:
                    f.write(f"{entry[name]}\n")
        with open(os.path.join(path, obj, "aliases"), "w") as f:
            f.write("0\n")


def kernel_rows(path):
    """The recording's kernel event rows in replay order."""
    df = pq.read_table(path).to_pandas()
    df = df[df.event.isin(CARRIED_EVENTS)].copy()
    for c in ("event", "object", "path", "caller", "comm", "mark_label"):
        df[c] = df[c].astype(object)
    return df.sort_values("ts_ns", kind="stable").reset_index(drop=True)


def carried(df):
    """The rows a Perfetto trace carries (bool mask), see the module doc."""
    alloc, free = df.event == "alloc", df.event == "free"
    other_alloc = alloc & (df.path == "other")
    dropped_ids = set(df.obj_id[other_alloc])
    old = free & (df.preexisting == True)  # noqa: E712 - nullable column
    keep = ~other_alloc & ~(free & df.obj_id.isin(dropped_ids) & ~old)
    return keep & ~(old & ~df.path.isin(OLD_FREE_PATHS))


def strip(src, dst, census=False):
    """``src`` as the recording a Perfetto import of it can be: the rows of
    ``carried``, callers other than fork and group_dead nulled, the rest of
    the file (its metadata) unchanged. ``census``: as imported with
    ``--census src``: its census rows kept, the census window widened by
    the import's clock margin."""
    table = pq.read_table(src)
    df = table.to_pandas()
    kernel = df.event.isin(CARRIED_EVENTS)
    mask = kernel | (df.event == "census") if census else kernel.copy()
    mask[kernel] = carried(df[kernel].astype({"path": object})).to_numpy()
    df = df[mask].copy()
    df["caller"] = df.caller.where(df.caller.astype(object) == "fork")
    df["group_dead"] = None
    out = pa.Table.from_pandas(df, schema=table.schema.remove_metadata(), preserve_index=False)
    meta = dict(pq.read_metadata(src).metadata)
    over = dict(STRIPPED_META)
    if census:
        c = json.loads(meta[b"anonscope.census"])
        over["census"] = dict(c, started_ns=c["started_ns"] - MARGIN_NS, ended_ns=c["ended_ns"] + MARGIN_NS)
    meta.update({b"anonscope." + k.encode(): json.dumps(v).encode() for k, v in over.items()})
    meta[b"anonscope.events"] = str(len(df)).encode()
    pq.write_table(out.replace_schema_metadata(meta), dst)


class _Slabs:
    """Slot addresses per cache: a freed slot is reused first (LIFO)."""

    def __init__(self):
        self.free = defaultdict(list)
        self.next = dict(SLAB_BASE)
        self.of_id = {}

    def alloc(self, obj, obj_id):
        ptr = self.free[obj].pop() if self.free[obj] else self._fresh(obj)
        self.of_id[obj_id] = (obj, ptr)
        return ptr

    def _fresh(self, obj):
        ptr = self.next[obj]
        self.next[obj] += 0x100
        return ptr

    def release(self, obj_id, obj):
        """The pointer of the object freed (a never-seen one for an older object)."""
        if obj_id in self.of_id:
            obj, ptr = self.of_id.pop(obj_id)
            self.free[obj].append(ptr)
            return ptr
        return self._fresh(obj)


class _Trace:
    """FtraceEvents per CPU, then written as bundles and packets."""

    def __init__(self):
        self.events = []      # (ts, cpu, seq, FtraceEvent)

    def add(self, ts, cpu, task, kind, **fields):
        ev = pb.FtraceEvent(timestamp=BOOT_T0 + int(ts), pid=int(task))
        getattr(ev, kind).SetInParent()
        for k, v in fields.items():
            setattr(getattr(ev, kind), k, v)
        self.events.append((BOOT_T0 + int(ts), max(int(cpu), 0), len(self.events), ev))

    def bundles(self, omit=(), flag_lost=()):
        """FtraceEventBundles: per drain period, one per CPU, CPUs in
        descending order (so the file is not in time order); no events of
        the kinds in ``omit``; the first bundle of each CPU in ``flag_lost``
        says events were lost before it."""
        by_period = defaultdict(lambda: defaultdict(list))
        for ts, cpu, _, ev in sorted(self.events, key=lambda e: (e[0], e[2])):
            if ev.WhichOneof("event") in omit:
                continue
            by_period[(ts - BOOT_T0) // BUNDLE_NS][cpu].append(ev)
        for period in sorted(by_period):
            for cpu in sorted(by_period[period], reverse=True):
                b = pb.FtraceEventBundle(cpu=cpu, lost_events=cpu in flag_lost)
                flag_lost = tuple(c for c in flag_lost if c != cpu)
                b.event.extend(by_period[period][cpu])
                yield b


def _comm(row):
    return row.comm if isinstance(row.comm, str) else ""


def convert(src, out_dir, lost_by_cpu=None, compress=False, omit=(), flag_lost=(), stats=True, free_at=None,
            late_cpu=None, tree_after=0, ftrace_clock=0, kallsyms=None):
    """Write ``src`` as OUT/trace.pftrace (+ kallsyms, slab/); the paths
    {"trace", "kallsyms", "slab_dir"}. ``lost_by_cpu``: FtraceStats overruns
    to write at the end; ``compress``: the bundles in deflated packets;
    ``omit``: FtraceEvent kinds left out (of the events and the config);
    ``flag_lost``: CPUs whose first bundle has ``lost_events`` set;
    ``stats``: write the FtraceStats packets; ``free_at``: {path: function}
    overriding FREE_FUNCTION (a kernel that inlined one into another);
    ``late_cpu``: that CPU's bundles all written at the end of the file;
    ``tree_after``: the ProcessTree packet written after that many bundles
    (traced writes it from another buffer); ``ftrace_clock``: the bundles'
    FtraceClock (0: unset, the boot clock); ``kallsyms``: call sites inside
    that kallsyms' functions (a real one), copied beside the trace."""
    os.makedirs(out_dir, exist_ok=True)
    meta = pq.read_metadata(src).metadata
    df = kernel_rows(src)
    df = df[carried(df)].reset_index(drop=True)
    sizes = {o: e.get("object_size") or e.get("btf_size")
             for o, e in json.loads(meta[b"anonscope.object_sizes"]).items()}
    t = _Trace()
    tree = _first_tasks(df)
    comm_of = {pid: comm for pid, (_, comm) in tree.items()}
    first_fork_row = df[df.fork_id.notna()].groupby("fork_id").ts_ns.min()
    opened = set()
    slabs = _Slabs()
    slabs.free_function = {**FREE_FUNCTION, **(free_at or {})}
    slabs.text = real_text(kallsyms) if kallsyms else TEXT
    tasks = df[df.event != "mark"]
    t.add(0, max(int(tasks.cpu.iloc[0]), 0) if len(tasks) else 0, tasks.pid.iloc[0] if len(tasks) else 1,
          "sys_enter", id=SYSCALLS_X86_64["read"])
    for row in df.itertuples(index=False):
        comm = _comm(row)
        if row.event == "mark":
            _mark(t, row, sizes, slabs, comm_of)
            continue
        if row.event not in ("exec", "fork") and comm_of.get(row.pid, comm) != comm:
            t.add(row.ts_ns, row.cpu, row.pid, "task_rename", pid=int(row.pid), oldcomm=comm_of[row.pid],
                  newcomm=comm)
        comm_of[row.pid] = comm if row.event != "fork" else comm_of.get(row.pid, comm)
        if pd.notna(row.fork_id) and row.fork_id not in opened and row.event in ("alloc", "fork"):
            opened.add(row.fork_id)
            start = min(first_fork_row.get(row.fork_id, row.ts_ns), row.ts_ns) - 1
            t.add(start, row.cpu, row.pid, "sys_enter", id=SYSCALLS_X86_64["clone"])
        _EMIT[row.event](t, row, sizes, slabs, comm_of)
    end_ns = int(float(json.loads(meta[b"anonscope.duration_s"])) * 1e9)
    if len(tasks):
        t.add(max(end_ns, int(df.ts_ns.max())), max(int(tasks.cpu.iloc[-1]), 0), tasks.pid.iloc[-1], "sys_exit",
              id=SYSCALLS_X86_64["read"])
    paths = {"trace": os.path.join(out_dir, "trace.pftrace"), "kallsyms": os.path.join(out_dir, "kallsyms"),
             "slab_dir": os.path.join(out_dir, "slab")}
    if kallsyms:
        shutil.copyfile(kallsyms, paths["kallsyms"])
    else:
        write_kallsyms(paths["kallsyms"])
    write_slab_dir(paths["slab_dir"], meta)
    cpus = sorted({max(int(c), 0) for c in df.cpu}) or [0]
    head = _head_packets(meta, tree, cpus, omit)[:None if stats else -1]
    tail = [_stats(2, cpus, lost_by_cpu or {})] if stats else []
    with open(paths["trace"], "wb") as f:
        tree = [p for p in head if p.HasField("process_tree")]
        for p in head:
            if not (tree_after and p.HasField("process_tree")):
                _write_packet(f, p)
        body = [pb.TracePacket(ftrace_events=b, trusted_packet_sequence_id=1) for b in t.bundles(omit, flag_lost)]
        body.sort(key=lambda p: p.ftrace_events.cpu == late_cpu)
        for p in body:
            p.ftrace_events.ftrace_clock = ftrace_clock
        if compress:
            inner = pb.Trace(packet=body).SerializeToString()
            _write_packet(f, pb.TracePacket(compressed_packets=zlib.compress(inner)))
        else:
            for i, p in enumerate(body):
                if tree_after and i == tree_after:
                    _write_packet(f, tree[0])
                _write_packet(f, p)
        for p in tail:
            _write_packet(f, p)
    return paths


def _first_tasks(df):
    """{pid: (tgid, comm)} of the tasks that existed before the run (not
    the children of its fork rows): the ProcessTree's."""
    born = set(df.child_pid[df.event == "fork"].dropna().astype(int))
    out = {}
    for row in df[df.event != "mark"].itertuples(index=False):
        if row.pid not in born and row.pid not in out:
            out[int(row.pid)] = (int(row.tgid), _comm(row))
    return out


def _alloc(t, row, sizes, slabs, comm_of):
    fn = ALLOC_FUNCTION[(row.object, row.path)]
    ptr = slabs.alloc(row.object, int(row.obj_id))
    t.add(row.ts_ns, row.cpu, row.pid, "kmem_cache_alloc", call_site=function_start(fn, slabs.text) + 8, ptr=ptr,
          bytes_req=int(sizes[row.object]), bytes_alloc=int(row.bytes), gfp_flags=0xCC0)


def _free(t, row, sizes, slabs, comm_of):
    ptr = slabs.release(int(row.obj_id), row.object)
    fn = slabs.free_function[row.path] if row.object != "vm_area_struct" else "vm_area_free"
    t.add(row.ts_ns, row.cpu, row.pid, "kmem_cache_free", call_site=function_start(fn, slabs.text) + 8, ptr=ptr)


def _fork(t, row, sizes, slabs, comm_of):
    child, parent_comm = int(row.child_pid), comm_of.get(row.pid, _comm(row))
    thread = int(row.child_tgid) != child
    flags = (CLONE_VM if row.shares_mm else 0) | (CLONE_THREAD if thread else 0)
    t.add(row.ts_ns, row.cpu, row.pid, "task_newtask", pid=child, comm=parent_comm, clone_flags=flags,
          oom_score_adj=0)
    t.add(row.ts_ns, row.cpu, row.pid, "sched_process_fork", parent_comm=parent_comm, parent_pid=int(row.pid),
          child_comm=parent_comm, child_pid=child)
    comm_of[child] = parent_comm
    if pd.notna(row.fork_id):
        t.add(row.ts_ns + 1, row.cpu, row.pid, "sys_exit", id=SYSCALLS_X86_64["clone"], ret=child)


def _exec(t, row, sizes, slabs, comm_of):
    if pd.notna(row.duration_ns):
        t.add(row.ts_ns - int(row.duration_ns), row.cpu, row.pid, "sys_enter", id=SYSCALLS_X86_64["execve"])
    t.add(row.ts_ns, row.cpu, row.pid, "sched_process_exec", filename="/usr/bin/" + _comm(row),
          pid=int(row.pid), old_pid=int(row.pid))
    t.add(row.ts_ns + 1, row.cpu, row.pid, "sys_exit", id=SYSCALLS_X86_64["execve"], ret=0)
    comm_of[row.pid] = _comm(row)


def _exit(t, row, sizes, slabs, comm_of):
    t.add(row.ts_ns, row.cpu, row.pid, "sched_process_exit", comm=_comm(row), pid=int(row.pid),
          tgid=int(row.tgid), prio=120)


def _mark(t, row, sizes, slabs, comm_of):
    t.add(row.ts_ns, 0, 1, "print", ip=0, buf=f"anonscope-mark: {row.mark_label}\n")


_EMIT = {"alloc": _alloc, "free": _free, "fork": _fork, "exec": _exec, "exit": _exit}


def _head_packets(meta, tree, cpus, omit):
    """SystemInfo, the trace config, a clock snapshot, the process tree and
    the start-of-trace FtraceStats."""
    release = json.loads(meta[b"anonscope.kernel_release"])
    arch = json.loads(meta[b"anonscope.arch"])
    info = pb.SystemInfo(utsname=pb.Utsname(sysname="Linux", release=release, machine=arch, version="#1 SMP"),
                         page_size=json.loads(meta[b"anonscope.page_size"]), num_cpus=len(cpus))
    cfg = pb.TraceConfig()
    cfg.data_sources.add().config.name = "linux.process_stats"
    ds = cfg.data_sources.add()
    ds.config.name = "linux.ftrace"
    ds.config.ftrace_config.ftrace_events.extend(
        e for e in ["kmem/kmem_cache_alloc", "kmem/kmem_cache_free", "sched/sched_process_fork",
                    "sched/sched_process_exec", "sched/sched_process_exit", "task/task_newtask", "task/task_rename",
                    "raw_syscalls/sys_enter", "raw_syscalls/sys_exit", "ftrace/print"]
        if e.split("/")[1] not in omit)
    start = json.loads(meta.get(b"anonscope.start_time", b"null"))
    clocks = pb.ClockSnapshot()
    if start:
        wall = int(pd.Timestamp(start).value)
        clocks.clocks.add(clock_id=1, timestamp=wall)
        clocks.clocks.add(clock_id=6, timestamp=BOOT_T0)
    pt = pb.ProcessTree()
    for pid, (tgid, comm) in sorted(tree.items()):
        if pid == tgid:
            pt.processes.add(pid=tgid, ppid=1, cmdline=[comm], cmdline_is_comm=True)
        pt.threads.add(tid=pid, tgid=tgid, name=comm)
    return [pb.TracePacket(system_info=info), pb.TracePacket(trace_config=cfg),
            pb.TracePacket(clock_snapshot=clocks), pb.TracePacket(process_tree=pt), _stats(1, cpus, {})]


def _stats(phase, cpus, lost_by_cpu):
    st = pb.FtraceStats(phase=phase)
    for cpu in cpus:
        st.cpu_stats.add(cpu=cpu, entries=0, overrun=int(lost_by_cpu.get(cpu, 0)), commit_overrun=0,
                         dropped_events=0)
    return pb.TracePacket(ftrace_stats=st)


def _write_packet(f, packet):
    data = packet.SerializeToString()
    f.write(b"\x0a" + _varint(len(data)) + data)


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

