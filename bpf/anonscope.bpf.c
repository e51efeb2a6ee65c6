// SPDX-License-Identifier: GPL-2.0
//
// anonscope tracepoint backend: the life of every anon_vma, anon_vma_chain
// (AVC) and vm_area_struct, plus the fork/exec/exit events that give them
// owners. collector/program.py prepends the configuration: #defines for
// struct sizes and offsets (from BTF), the target filter, and the call-site
// classifiers alloc_site(), free_site() and caller_site() generated from
// /proc/kallsyms. Nothing here depends on the layout in the kernel headers
// bcc compiles against. The generated functions go at the GENERATED line.

#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>

// The codes written into records (EV_*, OBJ_*, SITE_*, PATH_*, CALLER_*,
// FLAG_*, FN_*, WALK_*, RSS_*), the counters (C_*), BATCH and FLUSH_NS are
// #defines from collector/abi.py, which program.build() prepends.

// lock:contention_* flags (include/trace/events/lock.h, 5.19+: 16edd9b511a1)
#define LCB_F_SPIN (1U << 0)
#define LCB_F_READ (1U << 1)
#define LCB_F_WRITE (1U << 2)
#define LCB_F_PERCPU (1U << 4)
#define LCB_F_MUTEX (1U << 5)

// Per-CPU counters, read by user space: C_LOST + kind - 1 counts the events
// of each kind (EV_ALLOC..EV_LAST) the buffer could not take; then
// C_LIVE_FULL, C_ALIAS_SKIPPED, C_ALIAS_ALLOCS / C_ALIAS_FREES + object - 1
// (a merged cache's traffic that is not ours) and NR_COUNTERS (abi.COUNTERS).

// GENERATED: alloc_site(), free_site(), caller_site(), lock_site(), object_by_name()

// STRUCT EVENT: collector/abi.py EVENT_FIELDS and FPROBE_FIELDS go here

// Events travel to user space in per-CPU batches: one ring buffer record
// (one Python callback) per BATCH events. A batch is submitted when full,
// when its oldest event is FLUSH_NS old, and by flush_batches(), a per-CPU
// timer program. An event whose program interrupted another one on the
// same CPU (the batch is busy) goes out at once as a batch of one.

struct batch_head {
    u32 n;
    u32 busy;
    u64 first_ts;
};

struct batch {
    struct batch_head head;
    struct event ev[BATCH];
};

struct single {
    struct batch_head head;
    struct event ev;
};

struct live_val {
    u64 id;
    u8 object;
    u8 pre;           // a pre-run object first seen by a function probe
};

BPF_ARRAY(enabled, u32, 1);
BPF_PERCPU_ARRAY(counters, u64, NR_COUNTERS);
BPF_PERCPU_ARRAY(batches, struct batch, 1);
BPF_PERCPU_ARRAY(next_id, u64, 1);
BPF_HASH(live, u64, struct live_val, MAX_LIVE);
BPF_HASH(forking, u32, u64, 65536);
#if TARGET_TRACKED
// tgid -> 1 tracked, 2 armed (the command, tracked from its exec on)
BPF_HASH(tracked, u32, u8, 65536);
#endif
#if USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
#else
BPF_PERF_OUTPUT(events);
#endif

static __always_inline void count(u32 c, u64 n)
{
    u64 *v = counters.lookup(&c);
    if (v)
        *v += n;
}

static __always_inline int is_enabled(void)
{
    u32 zero = 0;
    u32 *on = enabled.lookup(&zero);
    return on && *on;
}

// A per-run id: a per-CPU sequence number with the CPU in the low 12 bits,
// unique without atomics (which need kernel 5.12 to return a value) where
// our programs cannot be preempted. From 6.19 (PREEMPTIBLE_BPF, docs/
// collector.md) a task can be preempted between the load and the store and
// another task's program take the same number: there the add is atomic.
// A census-only program tags its ids with bit 61 (ID_TAG) so that they
// never equal the main program's.
static __always_inline u64 new_id(void)
{
    u32 zero = 0;
    u64 *seq = next_id.lookup(&zero);
    if (!seq)
        return 0;
#if PREEMPTIBLE_BPF
    u64 n = __sync_fetch_and_add(seq, 1) + 1;
#else
    u64 n = ++(*seq);
#endif
    return (n << 12) | (bpf_get_smp_processor_id() & 0xfff) | ID_TAG;
}

static __always_inline int want_task(u32 tgid, const char *comm)
{
#if TARGET_TRACKED
    u8 *t = tracked.lookup(&tgid);
    if (!t || *t != 1)
        return 0;
#endif
#ifdef COMM_FILTER
    char want[16] = COMM_FILTER;
#pragma unroll
    for (int i = 0; i < 16; i++) {
        if (comm[i] != want[i])
            return 0;
        if (want[i] == 0)
            break;
    }
#endif
    return 1;
}

static __always_inline int output(void *ctx, void *data, u32 size)
{
#if USE_RINGBUF
    // No wakeup per record: the reader drains the buffer every few ms
    // (collector/consumer.py) instead of being woken for each batch.
    return events.ringbuf_output(data, size, BPF_RB_NO_WAKEUP);
#else
    return events.perf_submit(ctx, data, size);
#endif
}

static __always_inline void count_lost(u8 kind)
{
    if (kind >= EV_ALLOC && kind <= EV_LAST)
        count(C_LOST + kind - EV_ALLOC, 1);
}

// Submit a batch and start a new one; the caller holds head.busy. Events the
// buffer could not take are counted by kind.
static __always_inline void submit(void *ctx, struct batch *b)
{
    u32 n = b->head.n;
    if (!n)
        return;
    if (output(ctx, b, sizeof(*b)) < 0) {
        u32 lost[EV_LAST] = {};
        if (n > BATCH)
            n = BATCH;
#pragma unroll
        for (int i = 0; i < BATCH; i++) {
            u8 k = b->ev[i].kind - EV_ALLOC;
            if (i < n && k < EV_LAST)
                lost[k]++;
        }
#pragma unroll
        for (int k = 0; k < EV_LAST; k++)
            if (lost[k])
                count(C_LOST + k, lost[k]);
    }
    b->head.n = 0;
}

// From 6.19 (PREEMPTIBLE_BPF) a program preempted between its test of
// head.busy and its store could share a batch slot with another task's:
// every event goes out as a batch of one there.
static __always_inline void emit(void *ctx, struct event *e)
{
    u32 zero = 0;
    struct batch *b = PREEMPTIBLE_BPF ? 0 : batches.lookup(&zero);
    if (!b || *(volatile u32 *)&b->head.busy) {
        struct single one = {.head = {.n = 1}, .ev = *e};
        if (output(ctx, &one, sizeof(one)) < 0)
            count_lost(e->kind);
        return;
    }
    *(volatile u32 *)&b->head.busy = 1;
    u32 idx = b->head.n;
    if (idx >= BATCH) {  // cannot happen: a full batch is submitted at once
        submit(ctx, b);
        idx = 0;
    }
    if (idx == 0)
        b->head.first_ts = e->ts;
    __builtin_memcpy(&b->ev[idx & (BATCH - 1)], e, sizeof(*e));
    b->head.n = idx + 1;
    if (idx + 1 == BATCH || e->ts - b->head.first_ts > FLUSH_NS)
        submit(ctx, b);
    *(volatile u32 *)&b->head.busy = 0;
}

// Attached to a per-CPU software timer: submits what a quiet CPU holds.
int flush_batches(struct bpf_perf_event_data *ctx)
{
    u32 zero = 0;
    struct batch *b = batches.lookup(&zero);
    if (!b || *(volatile u32 *)&b->head.busy)
        return 0;
    *(volatile u32 *)&b->head.busy = 1;
    submit(ctx, b);
    *(volatile u32 *)&b->head.busy = 0;
    return 0;
}

static __always_inline void fill_task(struct event *e, u8 kind)
{
    u64 pid_tgid = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_ns();
    e->pid = (u32)pid_tgid;
    e->tgid = pid_tgid >> 32;
    e->cpu = bpf_get_smp_processor_id();
    e->kind = kind;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

// The first known caller on the kernel stack: split, merge, mremap or fork;
// on a fault path, the fault handler (the caller table of collector/sites.py).
static __always_inline u8 stack_caller(void *ctx)
{
    u64 ips[STACK_DEPTH] = {};
    int n = bpf_get_stack(ctx, ips, sizeof(ips), 0);
    if (n <= 0)
        return 0;
#pragma unroll
    for (int i = 0; i < STACK_DEPTH; i++) {
        u8 c = caller_site(ips[i]);
        if (c)
            return c;
    }
    return 0;
}

// The fork this allocation belongs to, 0 when the task is not forking.
static __always_inline u64 fork_of(void *ctx, u32 tid, u8 site, u8 *caller)
{
    u64 *f = forking.lookup(&tid);
#if HAVE_FORK_SYSCALLS
    return f ? *f : 0;
#else
    // No syscall tracepoints: anon_vma_fork is always fork; anon_vma_clone
    // and vm_area_dup are fork when anon_vma_fork or dup_mmap is on the
    // stack. The fork id is made at the first such allocation and retired
    // by sched_process_fork.
    if (site != SITE_FORK) {
        *caller = stack_caller(ctx);
        if (*caller != CALLER_FORK)
            return 0;
    }
    if (f)
        return *f;
    u64 id = new_id();
    forking.update(&tid, &id);
    return id;
#endif
}

// FPROBES: bpf/fprobes.bpf.c goes here when FUNC_PROBES

#if !CENSUS_ONLY
// Everything below is probes; a census-only program (collector/census.py,
// tracepoint-only runs) stops here.

// kmem tracepoints are used raw: no trace record is formatted (the classic
// tracepoint copies every field, the cache name included, for every slab
// operation in the system before a program runs), and the kernel's recursion
// guard is per program instead of global. Argument positions and types come
// from BTF (KA_* / KF_*, see collector/program.py).

// The struct kmem_cache of each of our objects, learnt from allocations at
// our call sites; frees are matched against them (caches[OBJ_*]).
struct caches {
    u64 ptr[4];
};
BPF_ARRAY(known_caches, struct caches, 1);

#if KA_CACHE >= 0
// An allocation from one of our caches at a call site none of our
// functions covers (an allocation helper inlined elsewhere, an LTO kernel):
// recorded as path `other`, never dropped. A merged cache's other users
// allocate from the same cache (fs_struct from anon_vma_chain's): there an
// unknown site cannot be ours for sure; it is left out and counted as the
// aliases' own traffic (while recording, whatever the task filter: slabinfo's
// line counts every task's objects).
static __always_inline u8 alias_alloc(u8 object)
{
    if (is_enabled())
        count(C_ALIAS_ALLOCS + object - 1, 1);
    return 0;
}

static __always_inline u8 unknown_site_object(u64 cache)
{
    u32 zero = 0;
    struct caches *known = known_caches.lookup(&zero);
    if (!known || !cache)
        return 0;
    if (cache == known->ptr[OBJ_ANON_VMA])
        return MERGED_ANON_VMA ? alias_alloc(OBJ_ANON_VMA) : OBJ_ANON_VMA;
    if (cache == known->ptr[OBJ_AVC])
        return MERGED_AVC ? alias_alloc(OBJ_AVC) : OBJ_AVC;
    if (cache == known->ptr[OBJ_VMA])
        return MERGED_VMA ? alias_alloc(OBJ_VMA) : OBJ_VMA;
    return 0;
}
#endif

RAW_TRACEPOINT_PROBE(kmem_cache_alloc)
{
    u8 site = alloc_site(ctx->args[KA_CALL_SITE]);
#if KA_CACHE >= 0
    u8 unknown = 0;
    if (!site) {
        unknown = unknown_site_object(ctx->args[KA_CACHE]);
        if (!unknown)
            return 0;
        site = SITE_OTHER;
    }
    void *cache = (void *)ctx->args[KA_CACHE];
    u32 req = 0, slot = 0;
    bpf_probe_read_kernel(&req, sizeof(req), cache + KMEM_CACHE_OBJECT_SIZE_OFF);
    bpf_probe_read_kernel(&slot, sizeof(slot), cache + KMEM_CACHE_SIZE_OFF);
#else
    if (!site)
        return 0;
    u64 req = ctx->args[KA_BYTES_REQ], slot = ctx->args[KA_BYTES_ALLOC];
#endif
    struct event e = {};
#if KA_CACHE >= 0
    if (site == SITE_OTHER)
        e.object = unknown;
    else
#endif
    if (site == SITE_VMA_ALLOC || site == SITE_VMA_DUP)
        e.object = req == VMA_SIZE ? OBJ_VMA : 0;
    else if (site == SITE_CLONE)
        e.object = req == AVC_SIZE ? OBJ_AVC : 0;
    else
        e.object = req == ANON_VMA_SIZE ? OBJ_ANON_VMA : req == AVC_SIZE ? OBJ_AVC : 0;
    if (!e.object)
        return 0;  // another cache allocated from the same function
#if KA_CACHE >= 0
    u32 zero = 0;
    struct caches *known = known_caches.lookup(&zero);
    if (known && known->ptr[e.object & 3] != (u64)cache)
        known->ptr[e.object & 3] = (u64)cache;
#endif
    if (!is_enabled())
        return 0;
    fill_task(&e, EV_ALLOC);
    if (!want_task(e.tgid, e.comm))
        return 0;

    u8 caller = 0;
    e.fork_id = fork_of(ctx, e.pid, site, &caller);
    if (site == SITE_OTHER)
        e.path = PATH_OTHER;
    else if (site == SITE_PREPARE)
        e.path = PATH_FAULT;
    else if (site == SITE_FORK)
        e.path = PATH_FORK;
    else if (site == SITE_CLONE)
        e.path = e.fork_id ? PATH_CLONE_FORK : PATH_CLONE_VMA;
    else if (site == SITE_VMA_ALLOC)
        e.path = PATH_VMA_ALLOC;
    else
        e.path = e.fork_id ? PATH_VMA_FORK : PATH_VMA_DUP;
    if (e.path == PATH_CLONE_VMA || e.path == PATH_VMA_DUP || e.path == PATH_FAULT)
        e.caller = caller ? caller : stack_caller(ctx);   // fault: CALLER_ANON_FAULT or CALLER_COW_FAULT
    else if (e.fork_id && site != SITE_FORK)
        e.caller = CALLER_FORK;

    u64 ptr = ctx->args[KA_PTR];
#if RAW_POINTERS
    e.obj_id = ptr;
#else
    e.obj_id = new_id();
#endif
    struct live_val v = {.id = e.obj_id, .object = e.object};
    if (live.update(&ptr, &v) < 0)
        count(C_LIVE_FULL, 1);
    e.aux1 = slot;
#if FUNC_PROBES
    fp_tag(&e, 1);
#endif
    emit(ctx, &e);
    return 0;
}


// Whether a free of a pre-run object from a merged cache can be trusted to
// be ours: only when it comes from a function that frees our objects.
static __always_inline int site_frees(u8 site, u8 object)
{
    if (object == OBJ_AVC)
        return site == SITE_UNLINK || site == SITE_FORK || site == SITE_CLONE;
    if (object == OBJ_ANON_VMA)
        return site == SITE_PUT || site == SITE_FORK;
    return 0;
}

static __always_inline int merged(u8 object)
{
    return (object == OBJ_ANON_VMA && MERGED_ANON_VMA) ||
           (object == OBJ_AVC && MERGED_AVC) ||
           (object == OBJ_VMA && MERGED_VMA);
}

RAW_TRACEPOINT_PROBE(kmem_cache_free)
{
    struct event e = {};
    // Cheapest test first: every slab free in the system comes here, and
    // only frees into our three caches can be ours.
    u8 named = 0;
#if KF_CACHE >= 0
    u64 cache = ctx->args[KF_CACHE];
    u32 zero = 0;
    struct caches *known = known_caches.lookup(&zero);
    if (!known)
        return 0;
    named = cache == known->ptr[OBJ_ANON_VMA] ? OBJ_ANON_VMA :
            cache == known->ptr[OBJ_AVC] ? OBJ_AVC :
            cache == known->ptr[OBJ_VMA] ? OBJ_VMA : 0;
    if (!named)
        return 0;
#elif KF_NAME >= 0
    char name[16] = {};
    bpf_probe_read_kernel_str(name, sizeof(name), (void *)ctx->args[KF_NAME]);
    named = object_by_name(name);
    if (!named)
        return 0;
#endif
    u64 ptr = ctx->args[KF_PTR];
    u8 site = free_site(ctx->args[KF_CALL_SITE]);
    struct live_val *v = live.lookup(&ptr);
    if (v) {
        // Allocated during the run by a recorded task: record wherever freed,
        // while recording (one window for every kind of event).
        if (!is_enabled()) {
            live.delete(&ptr);
            return 0;
        }
        e.object = v->object;
        e.obj_id = v->id;
        if (v->pre)
            e.flags = FLAG_PREEXISTING;
        live.delete(&ptr);
        fill_task(&e, EV_FREE);
    } else {
        if (!is_enabled())
            return 0;
#if KF_CACHE >= 0 || KF_NAME >= 0
        e.object = named;
#else
        e.object = site == SITE_PUT ? OBJ_ANON_VMA : site == SITE_UNLINK ? OBJ_AVC : 0;
#endif
        if (!e.object)
            return 0;
        if (merged(e.object) && !site_frees(site, e.object)) {
            count(C_ALIAS_SKIPPED, 1);
            count(C_ALIAS_FREES + e.object - 1, 1);
            return 0;
        }
        fill_task(&e, EV_FREE);
        if (!want_task(e.tgid, e.comm))
            return 0;
#if RAW_POINTERS
        e.obj_id = ptr;
#else
        e.obj_id = new_id();
#endif
        e.flags = FLAG_PREEXISTING;
    }
    if (e.object == OBJ_VMA)
        e.path = PATH_VMA_FREE;
    else if (site == SITE_UNLINK)
        e.path = PATH_UNLINK;
    else if (site == SITE_PUT)
        e.path = PATH_PUT;
    else if (site == SITE_FORK || site == SITE_CLONE)
        e.path = PATH_ERROR;
    else
        e.path = PATH_FREE_OTHER;
#if FUNC_PROBES
    fp_tag(&e, 0);
#endif
    emit(ctx, &e);
    return 0;
}

#if HAVE_FORK_SYSCALLS
// The fork window: from entry into clone/fork/vfork/clone3 to its return.
static __always_inline int fork_enter(void)
{
    if (!is_enabled())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 id = new_id();
    forking.update(&tid, &id);
    return 0;
}

static __always_inline int fork_exit(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    forking.delete(&tid);
    return 0;
}

FORK_SYSCALL_PROBES
#endif

RAW_TRACEPOINT_PROBE(sched_process_fork)
{
    void *child = (void *)ctx->args[1];
    struct event e = {};
    fill_task(&e, EV_FORK);
    u32 child_pid = 0, child_tgid = 0;
    void *child_mm = 0, *parent_mm = 0;
    bpf_probe_read_kernel(&child_pid, sizeof(child_pid), child + TASK_PID_OFF);
    bpf_probe_read_kernel(&child_tgid, sizeof(child_tgid), child + TASK_TGID_OFF);
    bpf_probe_read_kernel(&child_mm, sizeof(child_mm), child + TASK_MM_OFF);
    bpf_probe_read_kernel(&parent_mm, sizeof(parent_mm), (void *)ctx->args[0] + TASK_MM_OFF);
#if TARGET_TRACKED
    // Descendants of a tracked process are tracked; a recycled tgid is not.
    u8 *pt = tracked.lookup(&e.tgid);
    if (pt && *pt == 1) {
        u8 one = 1;
        tracked.update(&child_tgid, &one);
    } else if (child_tgid != e.tgid) {
        tracked.delete(&child_tgid);
    }
#endif
    u64 *f = forking.lookup(&e.pid);
    u64 fork_id = f ? *f : 0;
#if !HAVE_FORK_SYSCALLS
    forking.delete(&e.pid);
#endif
    if (!is_enabled() || !want_task(e.tgid, e.comm))
        return 0;
    e.fork_id = fork_id;
    e.aux1 = child_pid;
    e.aux2 = child_tgid;
    if (child_mm == parent_mm)
        e.flags = FLAG_SHARES_MM;
    emit(ctx, &e);
    return 0;
}

#if TARGET_TRACKED
// The held command becomes recorded when exec renames it (begin_new_exec:
// after exec_mmap dropped the collector's copied mm, before the new image's
// segments, brk and stack are set up); at sched_process_exec where the
// kernel lacks task_rename.
static __always_inline void arm_to_tracked(u32 tgid)
{
    u8 *t = tracked.lookup(&tgid);
    if (t && *t == 2) {
        u8 one = 1;
        tracked.update(&tgid, &one);
    }
}
#endif

#if TARGET_TRACKED && HAVE_TASK_RENAME
TRACEPOINT_PROBE(task, task_rename)
{
    arm_to_tracked(bpf_get_current_pid_tgid() >> 32);
    return 0;
}
#endif

#if HAVE_EXEC_SYSCALLS
// When an exec began: from execve()/execveat() entry on, what the task
// allocates is for the new mm (fs/exec.c bprm_mm_init makes it first, the
// new stack's VMA and argument pages included), while sched_process_exec
// fires only once the image is loaded. The exec row carries the time
// between the two (`fork_id` of the record, `duration_ns` of the row).
BPF_HASH(execing, u32, u64, 16384);

static __always_inline int exec_enter(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 ts = bpf_ktime_get_ns();
    execing.update(&tid, &ts);
    return 0;
}

static __always_inline int exec_exit(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    execing.delete(&tid);
    return 0;
}

EXEC_SYSCALL_PROBES
#endif

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    struct event e = {};
    fill_task(&e, EV_EXEC);
#if TARGET_TRACKED
    arm_to_tracked(e.tgid);
#endif
#if HAVE_EXEC_SYSCALLS
    u32 old = args->old_pid;   // the thread that called execve, before de_thread()
    u64 *start = execing.lookup(&old);
    if (start) {
        e.fork_id = e.ts - *start;
        execing.delete(&old);
    }
#endif
    if (!is_enabled() || !want_task(e.tgid, e.comm))
        return 0;
    emit(args, &e);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    if (!is_enabled())
        return 0;
    struct event e = {};
    fill_task(&e, EV_EXIT);
    if (!want_task(e.tgid, e.comm))
        return 0;
#if HAVE_GROUP_DEAD
    e.flags = FLAG_GROUP_DEAD_KNOWN | (args->group_dead ? FLAG_GROUP_DEAD : 0);
#endif
    emit(args, &e);
    return 0;
}

// Move rows (docs/collector.md#moves): what re-points anonymous pages or
// takes a reference on an anon_vma outside the paths above, which the lazy
// and no-fork designs must answer for (docs/models.md M1-M3).
// The process an mm belongs to (mm->owner, CONFIG_MEMCG: MM_OWNER_OFF >= 0):
// its tgid, 0 when unknown, and its comm into ``comm``.
static __always_inline u32 mm_owner_tgid(u64 mm, char *comm)
{
    u32 tgid = 0;
#if MM_OWNER_OFF >= 0
    u64 owner = 0;
    if (mm)
        bpf_probe_read_kernel(&owner, sizeof(owner), (void *)(mm + MM_OWNER_OFF));
    if (owner) {
        bpf_probe_read_kernel(&tgid, sizeof(tgid), (void *)(owner + TASK_TGID_OFF));
        bpf_probe_read_kernel(comm, 16, (void *)(owner + TASK_COMM_OFF));
    }
#endif
    return tgid;
}

#if HAVE_KSM_MERGE
// A page merged into a KSM page: its rmap item now holds a reference on
// the VMA's anon_vma (mm/ksm.c try_to_merge_with_ksm_page(), the only
// caller of this tracepoint; err 0: merged). ksmd runs it for another
// process's mm: the row's owner is mm->owner (CONFIG_MEMCG), 0 if unknown.
TRACEPOINT_PROBE(ksm, ksm_merge_with_ksm_page)
{
    if (args->err || !is_enabled())
        return 0;
    struct event e = {};
    fill_task(&e, EV_MOVE);
    char comm[16] = {};
    u32 owner_tgid = mm_owner_tgid((u64)args->mm, comm);
    // a filtered run keeps merges it cannot attribute: a bound stays a bound
    if (owner_tgid && !want_task(owner_tgid, comm))
        return 0;
    e.path = MOVE_KSM_MERGE;
    e.aux1 = owner_tgid;
    emit(args, &e);
    return 0;
}
#endif

#if HAVE_UFFD_MOVE
// The mm a userfaultfd works on (its ctx->mm: a handler process may hold
// another process's uffd): fd -> current->files->fdt->fd[fd]->private_data
// (struct userfaultfd_ctx) -> mm, at BTF offsets; 0 when an offset is
// missing or the fd is out of range.
static __always_inline u64 uffd_mm(u64 fd)
{
    u64 mm = 0;
#if UFFD_MM_KNOWN
    u64 task = bpf_get_current_task(), files = 0, fdt = 0, fds = 0, file = 0, ctx = 0;
    u32 max = 0;
    bpf_probe_read_kernel(&files, sizeof(files), (void *)(task + TASK_FILES_OFF));
    if (!files)
        return 0;
    bpf_probe_read_kernel(&fdt, sizeof(fdt), (void *)(files + FILES_FDT_OFF));
    if (!fdt)
        return 0;
    bpf_probe_read_kernel(&max, sizeof(max), (void *)(fdt + FDT_MAX_FDS_OFF));
    if (fd >= max)
        return 0;
    bpf_probe_read_kernel(&fds, sizeof(fds), (void *)(fdt + FDT_FD_OFF));
    if (fds)
        bpf_probe_read_kernel(&file, sizeof(file), (void *)(fds + fd * sizeof(u64)));
    if (file)
        bpf_probe_read_kernel(&ctx, sizeof(ctx), (void *)(file + FILE_PRIVATE_DATA_OFF));
    if (ctx)
        bpf_probe_read_kernel(&mm, sizeof(mm), (void *)(ctx + UFFD_CTX_MM_OFF));
#endif
    return mm;
}

// ioctl(UFFDIO_MOVE) (6.8+, mm/userfaultfd.c move_pages()): the pages of
// [src, src + len) of the uffd's mm are re-pointed to the destination VMA's
// anon_vma (folio_move_anon_rmap()). The row has the destination range;
// its owner is the uffd's mm's (the caller's when that cannot be read).
// cmd is compared as the 32 bits the kernel uses: a libc whose ioctl()
// takes an int request sign-extends it in the register the tracepoint sees.
TRACEPOINT_PROBE(syscalls, sys_enter_ioctl)
{
    if ((u32)args->cmd != UFFDIO_MOVE_CMD || !is_enabled())
        return 0;
    struct event e = {};
    fill_task(&e, EV_MOVE);
    char comm[16] = {};
    u32 owner_tgid = mm_owner_tgid(uffd_mm(args->fd), comm);
    if (owner_tgid ? !want_task(owner_tgid, comm) : !want_task(e.tgid, e.comm))
        return 0;
    u64 mv[3] = {};   // struct uffdio_move: dst, src, len (then mode, move)
    bpf_probe_read_user(mv, sizeof(mv), (void *)args->arg);
    e.path = MOVE_UFFD_MOVE;
    e.aux1 = owner_tgid ? owner_tgid : e.tgid;
    e.obj_id = mv[0];
    e.fork_id = mv[2];
    emit(args, &e);
    return 0;
}
#endif

#if HAVE_MREMAP_DONTUNMAP
// mremap(MREMAP_DONTUNMAP): the old range stays mapped, empty; a partial
// move leaves the old VMA's anon_vma links in place (mm/mremap.c). The row
// has the old range.
TRACEPOINT_PROBE(syscalls, sys_enter_mremap)
{
    if (!(args->flags & MREMAP_DONTUNMAP_FLAG) || !is_enabled())
        return 0;
    struct event e = {};
    fill_task(&e, EV_MOVE);
    if (!want_task(e.tgid, e.comm))
        return 0;
    e.path = MOVE_MREMAP_DONTUNMAP;
    e.aux1 = e.tgid;
    e.obj_id = args->addr;
    e.fork_id = args->old_len;
    emit(args, &e);
    return 0;
}
#endif

#if HAVE_LOCK_CONTENTION
// Contention on an anon_vma's rwsem (always the root's: anon_vma_lock_*
// lock anon_vma->root->rwsem). A waited-on rwsem is an anon_vma's when
// lock - offsetof(anon_vma, rwsem) is an anon_vma allocated in the run, or
// when the waiter's stack passes through a function that takes the
// anon_vma lock (lock_site()) and that memory is a root anon_vma: its
// `root` points at itself. i_mmap_rwsem and mmap_lock, taken in the same
// functions, fail that test.
struct contention {
    u64 ts;
    u64 lock;
    u64 root_id;
    u8 func;
    u8 flags;
};

BPF_HASH(contending, u32, struct contention, 16384);
BPF_HASH(lock_roots, u64, u64, 65536);   // pre-run root anon_vma -> per-run id

static __always_inline u8 stack_lock_site(void *ctx)
{
    u64 ips[STACK_DEPTH] = {};
    if (bpf_get_stack(ctx, ips, sizeof(ips), 0) <= 0)
        return 0;
#pragma unroll
    for (int i = 0; i < STACK_DEPTH; i++) {
        u8 f = lock_site(ips[i]);
        if (f)
            return f;
    }
    return 0;
}

TRACEPOINT_PROBE(lock, contention_begin)
{
    u32 fl = args->flags;
    if (!(fl & (LCB_F_READ | LCB_F_WRITE)) || (fl & (LCB_F_SPIN | LCB_F_MUTEX | LCB_F_PERCPU)))
        return 0;  // not a sleeping rwsem
    if (!is_enabled())
        return 0;
    u64 root = (u64)args->lock_addr - ANON_VMA_RWSEM_OFF;
    struct contention c = {.lock = (u64)args->lock_addr};
    struct live_val *v = live.lookup(&root);
    if (v && v->object == OBJ_ANON_VMA) {
        c.root_id = v->id;
    } else {
        c.func = stack_lock_site(args);
        if (!c.func)
            return 0;
        u64 self = 0;
        bpf_probe_read_kernel(&self, sizeof(self), (void *)(root + ANON_VMA_ROOT_OFF));
        if (self != root)
            return 0;
        u64 *id = lock_roots.lookup(&root);
        if (id) {
            c.root_id = *id;
        } else {
            c.root_id = new_id();
            lock_roots.update(&root, &c.root_id);
        }
        c.flags = FLAG_PREEXISTING;
    }
    if (!c.func)
        c.func = stack_lock_site(args);
    if (fl & LCB_F_WRITE)
        c.flags |= FLAG_LOCK_WRITE;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    c.ts = bpf_ktime_get_ns();
    contending.update(&tid, &c);
    return 0;
}

TRACEPOINT_PROBE(lock, contention_end)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct contention *c = contending.lookup(&tid);
    if (!c)
        return 0;
    if (c->lock != (u64)args->lock_addr)
        return 0;  // another lock's end inside this wait (the rwsem's wait_lock)
    if (!is_enabled()) {
        contending.delete(&tid);
        return 0;
    }
    struct event e = {};
    fill_task(&e, EV_LOCK);
    e.obj_id = c->root_id;
    e.fork_id = e.ts - c->ts;
    e.caller = c->func;
    e.flags = c->flags;
    contending.delete(&tid);
    if (!want_task(e.tgid, e.comm))
        return 0;
    emit(args, &e);
    return 0;
}
#endif
#endif  // !CENSUS_ONLY
