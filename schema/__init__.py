"""The recording format: one Parquet file, one row per event.

This module is the contract between ``anoncollect`` (which writes it) and
``anonanalyze`` (which reads it). docs/schema.md documents every column and
metadata key; change both together and bump SCHEMA_VERSION when a column or
key changes meaning, appears or disappears.
"""

import pyarrow as pa

SCHEMA_VERSION = 11

#: Prefix of every key this tool writes into the Parquet key-value metadata.
META_PREFIX = "anonscope."

# Values of the dictionary-encoded string columns. The analyzer must accept
# only these; the collector must write only these.
EVENTS = ("alloc", "free", "fork", "exec", "exit", "lock", "call", "walk", "slab", "lost", "census", "mark", "move")
OBJECTS = ("anon_vma", "anon_vma_chain", "vm_area_struct")
ALLOC_PATHS = ("fault", "fork", "clone_fork", "clone_vma", "other")
VMA_ALLOC_PATHS = ("alloc", "fork", "dup", "other")
FREE_PATHS = ("unlink", "put", "error", "vma_free", "other")
#: v10: ``anon_fault`` and ``cow_fault`` on fault-path rows (docs/schema.md)
CALLERS = ("split", "merge", "mremap", "fork", "anon_fault", "cow_fault")
LOCK_FUNCS = ("fault", "fork", "clone", "unlink", "put", "walk", "split_merge", "mremap", "thp")
CALL_FUNCS = ("__anon_vma_prepare", "anon_vma_fork", "anon_vma_clone", "unlink_anon_vmas", "copy_page_range")
WALK_KINDS = ("reclaim", "migration", "ksm", "idle", "other")
#: v7 move rows: what re-pointed anonymous pages or took an anon_vma reference
MOVE_KINDS = ("ksm_merge", "uffd_move", "mremap_dontunmap")

_dict = pa.dictionary(pa.int8(), pa.string())
_dict32 = pa.dictionary(pa.int32(), pa.string())

#: Column name -> (arrow type, one-line meaning). Order is the file's order.
COLUMNS = {
    "ts_ns": (pa.int64(), "CLOCK_MONOTONIC nanoseconds since the run started"),
    "event": (_dict, "event kind: " + ", ".join(EVENTS)),
    "cpu": (pa.int16(), "CPU the event happened on (-1 for user-space rows)"),
    "pid": (pa.int32(), "kernel pid (thread id) of the task in whose context the event happened"),
    "tgid": (pa.int32(), "thread group id (user-space pid) of that task"),
    "comm": (_dict32, "command name of that task at the time of the event"),
    "object": (_dict, "alloc/free: " + ", ".join(OBJECTS)),
    "path": (_dict, "alloc/free: which kernel path made or freed the object (docs/schema.md)"),
    "caller": (_dict, "clone_vma and VMA dup: split, merge, mremap or fork when the kernel stack tells; fault (v10): "
                       "anon_fault (an anonymous VMA) or cow_fault (a VMA with vm_ops) when it tells"),
    "obj_id": (pa.int64(), "alloc/free: per-run object id; an alloc and its free share it"),
    "preexisting": (pa.bool_(), "free: the object was allocated before the run started; lock: so was the root "
                                "anon_vma"),
    "bytes": (pa.int32(), "alloc: bytes the slab allocator handed out (bytes_alloc)"),
    "owner_pid": (pa.int32(), "alloc: pid of the process the object serves (the child for fork paths)"),
    "owner_tgid": (pa.int32(), "alloc: tgid of that process; move (v7): the process whose pages moved"),
    "fork_id": (pa.int64(), "fork-path allocs and fork rows: per-run id of the fork"),
    "child_pid": (pa.int32(), "fork: pid of the new task"),
    "child_tgid": (pa.int32(), "fork: tgid of the new task (equal to the parent's for a thread)"),
    "shares_mm": (pa.bool_(), "fork: the child shares the parent's mm (thread or vfork): no mm was copied"),
    "group_dead": (pa.bool_(), "exit: the last thread of the process exited"),
    "lock_id": (pa.int64(), "lock: per-run id of the root anon_vma whose rwsem was waited for (its obj_id if "
                            "allocated in the run)"),
    "wait_ns": (pa.int64(), "lock: nanoseconds from contention_begin to contention_end"),
    "lock_write": (pa.bool_(), "lock: waited to write (down_write) rather than read"),
    "lock_func": (_dict, "lock: the first anon_vma lock taker on the waiter's stack: " + ", ".join(LOCK_FUNCS)),
    "vma_id": (pa.int64(), "function probes: alloc/free: the VMA the object was made or freed for; call: the VMA"),
    "src_vma_id": (pa.int64(), "function probes: fork/clone allocs and calls: the VMA copied from"),
    "mm_id": (pa.int64(), "call: per-run id of the VMA's mm"),
    "vm_start": (pa.int64(), "call: the VMA's start address when the call returned; move (v7): start of the "
                             "range moved"),
    "vm_end": (pa.int64(), "call: the VMA's end address; move (v7): end of the range moved"),
    "vm_pgoff": (pa.int64(), "call: the VMA's vm_pgoff; walk (v8): the folio's index (folio->index)"),
    "vma_file": (pa.bool_(), "call: the VMA maps a file (MAP_PRIVATE: its CoW copies are anonymous)"),
    "func": (_dict, "call: " + ", ".join(CALL_FUNCS)),
    "reused": (pa.bool_(), "call: __anon_vma_prepare/anon_vma_fork returned 0 without allocating an anon_vma"),
    "call_objects": (pa.int32(), "call: anon_vmas and AVCs the call allocated (unlink: freed)"),
    "anon_pages": (pa.int64(), "call copy_page_range: present anonymous pages the child's copy of the VMA got"),
    "duration_ns": (pa.int64(), "call, walk: nanoseconds from entry to return; exec: from execve() entry; "
                                "slab (v6): how long the /proc/slabinfo read took"),
    "walk_kind": (_dict, "walk: " + ", ".join(WALK_KINDS) + " (from rmap_walk_control.rmap_one)"),
    "folio_order": (pa.int16(), "walk: order of the folio walked"),
    "avcs_visited": (pa.int32(), "walk: AVCs the anon_vma interval tree returned"),
    "vmas_visited": (pa.int32(), "walk: VMAs the rmap_one callback ran on"),
    "walk_locked": (pa.bool_(), "walk: rmap_walk_locked (the caller holds the anon_vma lock)"),
    "anon_vma_id": (pa.int64(), "walk: obj_id of the folio's anon_vma (null when allocated before the run "
                                "and not in the census); census VMA rows: the VMA's anon_vma"),
    "root_id": (pa.int64(), "census anon_vma rows: id of its root anon_vma"),
    "num_children": (pa.int32(), "census anon_vma rows: anon_vma.num_children (6.0+, else null)"),
    "num_active_vmas": (pa.int32(), "census anon_vma rows: anon_vma.num_active_vmas (6.0+, else null)"),
    "chain_avcs": (pa.int32(), "census VMA rows: AVCs on the VMA's anon_vma_chain"),
    "chain_truncated": (pa.bool_(), "census VMA rows: the chain was longer than the iterator follows (1024)"),
    "slab_cache": (_dict, "slab: cache name as in /proc/slabinfo"),
    "slab_active": (pa.int64(), "slab: active objects (/proc/slabinfo active_objs)"),
    "slab_total": (pa.int64(), "slab: allocated object slots (/proc/slabinfo num_objs)"),
    "slab_objsize": (pa.int32(), "slab: object slot size in bytes"),
    "slab_aliases": (pa.int32(), "slab: number of other caches merged into this one (/sys/kernel/slab/*/aliases)"),
    "slab_cpu_partial": (pa.int32(), "slab (v6): slabs on the CPUs' partial lists "
                                     "(/sys/kernel/slab/*/slabs_cpu_partial)"),
    "mem_total_kb": (pa.int64(), "slab (v8): /proc/meminfo MemTotal (kB) read with the sample"),
    "mem_slab_kb": (pa.int64(), "slab (v8): /proc/meminfo Slab (kB)"),
    "mem_sunreclaim_kb": (pa.int64(), "slab (v8): /proc/meminfo SUnreclaim (kB)"),
    "mem_page_tables_kb": (pa.int64(), "slab (v8): /proc/meminfo PageTables (kB)"),
    "lost_source": (_dict, "lost: which source lost events"),
    "count": (pa.int64(), "lost: events lost since the previous lost row of the same source"),
    "mark_label": (_dict32, "mark (v6): the mark's label (mark-N for kill -USR1, else anoncollect mark LABEL)"),
    "move_kind": (_dict, "move (v7): " + ", ".join(MOVE_KINDS)),
}

SCHEMA = pa.schema([pa.field(name, typ) for name, (typ, _) in COLUMNS.items()])

#: Metadata keys (without META_PREFIX) -> meaning. Values are JSON text.
METADATA = {
    "schema_version": "integer, SCHEMA_VERSION of the writer",
    "tool_version": "anonscope version that wrote the file",
    "command_line": "argv of anoncollect",
    "kernel_release": "uname -r",
    "arch": "uname -m",
    "page_size": "bytes",
    "object_sizes": "{object: {btf_size, slab_size, object_size, align}}: sizeof from BTF, the slab slot from "
                    "/proc/slabinfo, the cache's object_size and align from /sys/kernel/slab (v5)",
    "btf": "true when /sys/kernel/btf/vmlinux was present and used",
    "backend": "tracepoint, kprobe or fentry: how the function probes attached (tracepoint: none did); perfetto "
               "(v11): imported from a Perfetto trace (anonanalyze import perfetto)",
    "probes": "[{name, attached, reason}] every probe tried, attached or skipped with the reason",
    "target": "{mode: system|command|pid|comm, command, pid, comm[, descendants_at_start]}: what was recorded",
    "start_time": "ISO 8601 wall-clock time of ts_ns == 0",
    "end_time": "ISO 8601 wall-clock time the run stopped",
    "duration_s": "seconds between start and stop",
    "stop_reason": "duration, command-exited, size-limit (v6), SIGINT, SIGTERM, SIGHUP; null in a segment that is "
                   "not the last",
    "command_exit_status": "exit status of the recorded command (command mode), else null",
    "events": "rows written (in a segment: rows of the recording up to and including it)",
    "complete": "true in the last segment of a run that finished (and in the joined file); false before",
    "segment": "{index, rows, final}: the segment this footer closed (docs/schema.md#segments)",
    "lost": "{source: count} events lost, per source, over the whole run",
    "lost_by_event": "{kind: count} events of each kind the buffer could not take (exact, counted in the kernel)",
    "prog_misses_by_event": "{kind: count} program runs the kernel skipped that may have been events of that kind",
    "slab_aliases": "{cache: [aliases]} merged caches at start, from /sys/kernel/slab",
    "alias_frees_skipped": "frees from merged-cache aliases that were not frees of our objects",
    "alias_traffic": "{object: {allocs, frees} or null} (v8): the merged cache's allocations and frees that were "
                     "not ours (its aliases' own traffic, every task's, while recording); null: not merged, or "
                     "the kernel's tracepoints give no cache",
    "hostname": "the collecting host's name (v8, socket.gethostname())",
    "rmap_layout": "{structs: {struct: {size, members} or null}, functions: {name: bool}} (v9): the members of "
                   "anon_vma, anon_vma_chain and vm_area_struct and which anon rmap functions the kernel has, from "
                   "BTF (null without BTF): what tells a kernel with another anon rmap design apart",
    "prog_misses_by_program": "{program: recursion_misses} of every program the kernel skipped at least once",
    "prog_misses_not_ours": "skipped runs that cannot have been our events (docs/collector.md), not in "
                            "lost.prog_misses",
    "classification": "{function: path} call-site functions found in kallsyms and what they classify as",
    "raw_pointers": "true when obj_id holds raw kernel addresses (--raw-pointers)",
    "headers": "what bcc compiled against",
    "buffer": "ringbuf or perfbuf; perfetto (v11): an imported trace",
    "caches_known_at_start": "{object: bool}: frees into that cache were recognised from the start (null: told by "
                             "name or call site)",
    "python": "Python version of the collector",
    "perfetto": "v11, imported recordings only: {trace, kallsyms, slab_dir, packets, events_read, lost_by_cpu, "
                "ftrace_stats, bundles_flagged_lost, buffer_loss, loss_unknown, late_events, tasks_undescribed, "
                "sizes_from, allocs_other_sizes, forks_without_newtask, syscalls_fork, syscalls_exec, "
                "marks_refused, site_rule_broken, windows_not_forks} (docs/schema.md#perfetto)",
    "census": "{status, reason, vma_rows, anon_vma_rows, anon_vmas_linked, vmas, seconds, lost, started_ns, "
              "ended_ns, unvisited}: the task_vma iterator run at start (docs/schema.md#census; the last four: v6)",
}
