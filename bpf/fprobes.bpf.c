// SPDX-License-Identifier: GPL-2.0
//
// anonscope function-probe backend, appended to anonscope.bpf.c when the
// kernel allows function probes (FUNC_PROBES): fentry/fexit where bcc
// supports them (FP_KFUNC), kprobes/kretprobes otherwise, attached per
// probe by collector/fprobes.py. Adds to the tracepoint events:
//  - the VMA every anon_vma/AVC is made or freed for (vma_id on alloc/free
//    rows, through the per-task call context below);
//  - `call` rows for __anon_vma_prepare, anon_vma_fork, anon_vma_clone and
//    unlink_anon_vmas: the VMA(s), their range and mm, how many objects the
//    call allocated or freed, whether an anon_vma was reused; and for
//    copy_page_range of a VMA with an anon_vma (dup_mmap at fork): the
//    anonymous pages the child's copy got (FP_RSS: how to read the count);
//  - `walk` rows for rmap walks of anonymous and KSM folios (rmap_walk_anon
//    and rmap_walk_ksm where rmap_walk_anon is a function, rmap_walk and
//    rmap_walk_locked otherwise): folio order and index, duration, kind (from rwc->rmap_one),
//    AVCs the interval tree returned, VMAs the callback ran on.
// Struct offsets are #defines from BTF (FP_* in collector/program.py).

// FN_*, RSS_*, WALK_* and FLAG_* codes: collector/abi.py (walk_kind() is
// generated).

// Per task: the outermost anon_vma function it is in.
struct fctx {
    u64 vma;
    u64 src;
    u64 t0;
    u64 target;   // copy_page_range: the child mm's MM_ANONPAGES counter
    s64 pages;    // copy_page_range: minus its value at entry
    u32 count;
    u8 fn;
    u8 depth;
    u8 new_anon_vma;
    u8 caller;    // anon_vma_clone's operation as a CALLER_* code (FP_CLONE_OP), else 0
};
BPF_HASH(fctx_map, u32, struct fctx, 16384);

// Per task: the rmap walk it is in.
struct wctx {
    u64 t0;
    u64 anon_vma;
    u64 index;      // folio->index: the folio's first page offset (v8 walk rows' vm_pgoff)
    u32 avcs;
    u32 vmas;
    u8 order;
    u8 kind;
    u8 flags;
};
BPF_HASH(wctx_map, u32, struct wctx, 16384);

BPF_HASH(mm_ids, u64, u64, 65536);

// Per-run id of an object: its alloc id when it was allocated in the run,
// otherwise a new id, entered in `live` (flagged pre-run) so that its free
// carries the same id.
static __always_inline u64 pre_id_of(u64 ptr, u8 object)
{
    struct live_val *v = live.lookup(&ptr);
    if (v)
        return v->id;
    struct live_val n = {.id = new_id(), .object = object, .pre = 1};
    if (live.update(&ptr, &n) < 0)
        count(C_LIVE_FULL, 1);
    return n.id;
}

static __always_inline u64 vma_id_of(u64 vma)
{
    return vma ? pre_id_of(vma, OBJ_VMA) : 0;
}

// The id of a VMA without making one: for a task that is not recorded, so
// that a pre-run VMA it touches is not entered in `live` (whose entries'
// frees are recorded wherever they happen: docs/collector.md#targets).
static __always_inline u64 known_vma_id(u64 vma)
{
    struct live_val *v = vma ? live.lookup(&vma) : 0;
    return v ? v->id : 0;
}

static __always_inline u64 mm_id_of(u64 mm)
{
    if (!mm)
        return 0;
    u64 *id = mm_ids.lookup(&mm);
    if (id)
        return *id;
    u64 n = new_id();
    mm_ids.update(&mm, &n);
    return n;
}

// Called by the alloc/free programs: tag the object with the VMA of the
// anon_vma function the task is in, and count it.
// `count` is what the call allocated (unlink_anon_vmas: freed). Since 7.0
// (91901a441fa1 "mm/rmap: eliminate partial anon_vma tear-down in
// anon_vma_fork()", 7.0 by its date) anon_vma_fork() allocates the child's
// anon_vma and AVC before anon_vma_clone() and frees both at once when it reuses an anon_vma (7.3
// mm/rmap.c:395-414): that pair is not counted and the call is a reuse.
static __always_inline void fp_tag(struct event *e, u8 is_alloc)
{
    u32 tid = e->pid;
    struct fctx *c = fctx_map.lookup(&tid);
    if (!c)
        return;
    // an alloc is only recorded in a recorded task; a free of a run object
    // is recorded in any task, which may only look ids up
    if (is_alloc || want_task(e->tgid, e->comm)) {
        e->vma_id = vma_id_of(c->vma);
        e->src_vma_id = vma_id_of(c->src);
    } else {
        e->vma_id = known_vma_id(c->vma);
        e->src_vma_id = known_vma_id(c->src);
    }
    if (e->object == OBJ_VMA)
        return;
    // an AVC of a split, merge or mremap clone: the caller from the
    // operation anon_vma_clone() was given (7.x), not from the stack
    if (is_alloc && c->caller && e->path == PATH_CLONE_VMA)
        e->caller = c->caller;
    if (is_alloc || c->fn == FN_UNLINK)
        c->count++;
    else if (c->count)
        c->count--;
    if (e->object == OBJ_ANON_VMA)
        c->new_anon_vma = is_alloc;
}

static __always_inline int fn_enter_as(u8 fn, u64 vma, u64 src, u8 caller)
{
    if (!is_enabled())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct fctx *c = fctx_map.lookup(&tid);
    if (c) {
        c->depth++;  // anon_vma_clone inside anon_vma_fork: same VMAs
        return 0;
    }
    struct fctx n = {.vma = vma, .src = src, .t0 = bpf_ktime_get_ns(), .fn = fn, .depth = 1,
                     .caller = caller};
    fctx_map.update(&tid, &n);
    return 0;
}

static __always_inline int fn_enter(u8 fn, u64 vma, u64 src)
{
    return fn_enter_as(fn, vma, src, 0);
}

// anon_vma_clone(dst, src, operation): since d17f02417a33 (7.0 by its date;
// 7.2 and 7.3 mm/internal.h enum vma_operation; 6.18 has no such argument) the caller says why it
// clones; FP_VMA_OP_* are the enumerators' values from BTF.
static __always_inline int clone_enter(u64 dst, u64 src, int op)
{
    u8 caller = 0;
#if FP_CLONE_OP
    if (op == FP_VMA_OP_SPLIT)
        caller = CALLER_SPLIT;
    else if (op == FP_VMA_OP_MERGE)
        caller = CALLER_MERGE;
    else if (op == FP_VMA_OP_REMAP)
        caller = CALLER_MREMAP;
    else if (op == FP_VMA_OP_FORK)
        caller = CALLER_FORK;
#endif
    return fn_enter_as(FN_CLONE, dst, src, caller);
}

#if FP_RSS
// copy_page_range(dst_vma, src_vma) (mm/memory.c), called by dup_mmap for
// every VMA it copies; only VMAs with an anon_vma have anonymous pages
// (vma_needs_copy()). The child's mm is not running yet and only this task
// changes it, so what its MM_ANONPAGES counter gains during the call is the
// present anonymous pages of the parent VMA. The counter is read at entry
// and at return: up to 6.1 an atomic_long_t; from 6.2 a percpu_counter,
// whose value is its count plus every possible CPU's share (the per-CPU
// address of the share is counters + __per_cpu_offset[cpu]).
static __always_inline s64 anon_rss(u64 counter)
{
    s64 value = 0;
#if FP_RSS == RSS_ATOMIC
    bpf_probe_read_kernel(&value, sizeof(value), (void *)counter);
#else
    u64 shares = 0, off = 0;
    bpf_probe_read_kernel(&value, sizeof(value), (void *)(counter + PCC_COUNT_OFF));
    bpf_probe_read_kernel(&shares, sizeof(shares), (void *)(counter + PCC_COUNTERS_OFF));
    for (int cpu = 0; cpu < NR_CPUS_POSSIBLE; cpu++) {
        s32 share = 0;
        bpf_probe_read_kernel(&off, sizeof(off), (void *)(PER_CPU_OFFSET_ADDR + 8ULL * cpu));
        bpf_probe_read_kernel(&share, sizeof(share), (void *)(shares + off));
        value += share;
    }
#endif
    return value;
}

static __always_inline int copy_enter(u64 dst, u64 src)
{
    if (!is_enabled())
        return 0;
    u64 av = 0, mm = 0;
    bpf_probe_read_kernel(&av, sizeof(av), (void *)(src + VMA_ANON_VMA_OFF));
    if (!av)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (fctx_map.lookup(&tid))
        return 0;
    bpf_probe_read_kernel(&mm, sizeof(mm), (void *)(dst + VMA_MM_OFF));
    struct fctx n = {.vma = dst, .src = src, .t0 = bpf_ktime_get_ns(), .fn = FN_COPY, .depth = 1,
                     .target = mm + MM_ANON_RSS_OFF};
    n.pages = -anon_rss(n.target);
    fctx_map.update(&tid, &n);
    return 0;
}
#endif

static __always_inline void read_vma(struct event *e, u64 vma)
{
    u64 mm = 0, file = 0;
    bpf_probe_read_kernel(&e->vm_start, sizeof(u64), (void *)(vma + VMA_START_OFF));
    bpf_probe_read_kernel(&e->vm_end, sizeof(u64), (void *)(vma + VMA_END_OFF));
    bpf_probe_read_kernel(&e->vm_pgoff, sizeof(u64), (void *)(vma + VMA_PGOFF_OFF));
    bpf_probe_read_kernel(&mm, sizeof(mm), (void *)(vma + VMA_MM_OFF));
    bpf_probe_read_kernel(&file, sizeof(file), (void *)(vma + VMA_FILE_OFF));
    e->mm_id = mm_id_of(mm);
    if (file)
        e->flags |= FLAG_FILE;
}

static __always_inline int fn_return(void *ctx, long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct fctx *c = fctx_map.lookup(&tid);
    if (!c)
        return 0;
    if (c->depth > 1) {
        c->depth--;
        return 0;
    }
    if (!is_enabled()) {  // entered while recording, returned after
        fctx_map.delete(&tid);
        return 0;
    }
    struct event e = {};
    fill_task(&e, EV_CALL);
    if (!want_task(e.tgid, e.comm)) {  // before any id is made for its VMAs
        fctx_map.delete(&tid);
        return 0;
    }
    e.path = c->fn;
    e.vma_id = vma_id_of(c->vma);
    e.src_vma_id = vma_id_of(c->src);
    e.count = c->count;
    e.duration = e.ts - c->t0;
#if FP_RSS
    if (c->fn == FN_COPY) {
        s64 pages = c->pages + anon_rss(c->target);
        e.count2 = pages > 0 ? (u32)pages : 0;
    }
#endif
    e.aux1 = (u32)ret;
    // Reused: the call linked the VMA (it made AVCs) without allocating an
    // anon_vma. anon_vma_fork is called for every VMA dup_mmap copies and
    // returns at once (no objects) when the parent VMA has no anon_vma.
    if ((c->fn == FN_PREPARE || c->fn == FN_FORK) && !c->new_anon_vma && ret == 0 && c->count)
        e.flags |= FLAG_REUSED;
    read_vma(&e, c->vma);
    fctx_map.delete(&tid);
    emit(ctx, &e);
    return 0;
}

#if FP_WALKS
// Walk probes: need struct folio's fields (FP_WALKS 0: BTF lacks them).
static __always_inline int walk_enter(u64 folio, u64 rwc, u8 locked)
{
    if (!is_enabled())
        return 0;
    u64 mapping = 0, flags = 0, rmap_one = 0;
    bpf_probe_read_kernel(&mapping, sizeof(mapping), (void *)(folio + FOLIO_MAPPING_OFF));
    if (!(mapping & 1))
        return 0;  // file folio: rmap_walk_file, not the anon rmap
    struct wctx w = {.t0 = bpf_ktime_get_ns(), .anon_vma = mapping & ~3ULL};
    bpf_probe_read_kernel(&w.index, sizeof(w.index), (void *)(folio + FOLIO_INDEX_OFF));
    bpf_probe_read_kernel(&rmap_one, sizeof(rmap_one), (void *)(rwc + RWC_RMAP_ONE_OFF));
    u8 kind = walk_kind(rmap_one);
    w.kind = (mapping & 3) == 3 ? WALK_KSM : kind ? kind : WALK_OTHER;
    bpf_probe_read_kernel(&flags, sizeof(flags), (void *)(folio + FOLIO_FLAGS_OFF));
    if (flags & (1ULL << PG_HEAD_BIT))
        bpf_probe_read_kernel(&w.order, sizeof(w.order), (void *)(folio + FOLIO_ORDER_OFF));
    if (locked)
        w.flags = FLAG_LOCKED;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    wctx_map.update(&tid, &w);
    return 0;
}

static __always_inline int walk_return(void *ctx)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct wctx *w = wctx_map.lookup(&tid);
    if (!w)
        return 0;
    if (!is_enabled()) {
        wctx_map.delete(&tid);
        return 0;
    }
    struct event e = {};
    fill_task(&e, EV_WALK);
    e.duration = e.ts - w->t0;
    e.count = w->avcs;
    e.count2 = w->vmas;
    e.caller = w->kind;
    e.aux1 = w->order;
    e.vm_pgoff = w->index;
    e.flags = w->flags;
    struct live_val *v = live.lookup(&w->anon_vma);
    e.obj_id = v ? v->id : 0;
    wctx_map.delete(&tid);
    if (want_task(e.tgid, e.comm))
        emit(ctx, &e);
    return 0;
}

static __always_inline int walk_avc(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct wctx *w = wctx_map.lookup(&tid);
    if (w && ret)
        w->avcs++;
    return 0;
}

static __always_inline int walk_vma(void)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct wctx *w = wctx_map.lookup(&tid);
    if (w)
        w->vmas++;
    return 0;
}

#endif

// The probes. Each has an entry and/or a return program; FP_KFUNC builds
// them as fentry/fexit (auto-attached by bcc), otherwise as kprobe and
// kretprobe functions that collector/fprobes.py attaches one by one.
#if FP_KFUNC
KFUNC_PROBE(__anon_vma_prepare, void *vma) { return fn_enter(FN_PREPARE, (u64)vma, 0); }
KRETFUNC_PROBE(__anon_vma_prepare, void *vma, int ret) { return fn_return(ctx, ret); }
KFUNC_PROBE(anon_vma_fork, void *vma, void *pvma) { return fn_enter(FN_FORK, (u64)vma, (u64)pvma); }
KRETFUNC_PROBE(anon_vma_fork, void *vma, void *pvma, int ret) { return fn_return(ctx, ret); }
#if FP_CLONE_OP
// (fexit reads the return value after every argument: the operation must be declared)
KFUNC_PROBE(anon_vma_clone, void *dst, void *src, int op) { return clone_enter((u64)dst, (u64)src, op); }
KRETFUNC_PROBE(anon_vma_clone, void *dst, void *src, int op, int ret) { return fn_return(ctx, ret); }
#else
KFUNC_PROBE(anon_vma_clone, void *dst, void *src) { return clone_enter((u64)dst, (u64)src, 0); }
KRETFUNC_PROBE(anon_vma_clone, void *dst, void *src, int ret) { return fn_return(ctx, ret); }
#endif
KFUNC_PROBE(unlink_anon_vmas, void *vma) { return fn_enter(FN_UNLINK, (u64)vma, 0); }
KRETFUNC_PROBE(unlink_anon_vmas, void *vma) { return fn_return(ctx, 0); }
#if FP_WALKS && FP_WALK_ANON
// rmap_walk_anon (static) is where rmap_walk and rmap_walk_locked meet for
// anonymous folios; KSM folios take rmap_walk_ksm instead.
KFUNC_PROBE(rmap_walk_anon, void *folio, void *rwc, u8 locked)
{ return walk_enter((u64)folio, (u64)rwc, locked ? 1 : 0); }
KRETFUNC_PROBE(rmap_walk_anon, void *folio, void *rwc, u8 locked) { return walk_return(ctx); }
#if FP_WALK_KSM
KFUNC_PROBE(rmap_walk_ksm, void *folio, void *rwc) { return walk_enter((u64)folio, (u64)rwc, 0); }
KRETFUNC_PROBE(rmap_walk_ksm, void *folio, void *rwc) { return walk_return(ctx); }
#endif
#elif FP_WALKS
KFUNC_PROBE(rmap_walk, void *folio, void *rwc) { return walk_enter((u64)folio, (u64)rwc, 0); }
KRETFUNC_PROBE(rmap_walk, void *folio, void *rwc) { return walk_return(ctx); }
KFUNC_PROBE(rmap_walk_locked, void *folio, void *rwc) { return walk_enter((u64)folio, (u64)rwc, 1); }
KRETFUNC_PROBE(rmap_walk_locked, void *folio, void *rwc) { return walk_return(ctx); }
#endif
#if FP_RSS
KFUNC_PROBE(copy_page_range, void *dst, void *src) { return copy_enter((u64)dst, (u64)src); }
KRETFUNC_PROBE(copy_page_range, void *dst, void *src, int ret) { return fn_return(ctx, ret); }
#endif
#if FP_WALKS
// the interval-tree iterators of anon_vma_interval_tree_foreach (up to 7.2),
// anon_rmap_tree_foreach (7.3: FP_ITER_RMAP_TREE); both take three arguments
#if FP_ITER_RMAP_TREE
#define FP_ITER_FIRST anon_rmap_tree_iter_first
#define FP_ITER_NEXT anon_rmap_tree_iter_next
#else
#define FP_ITER_FIRST anon_vma_interval_tree_iter_first
#define FP_ITER_NEXT anon_vma_interval_tree_iter_next
#endif
// (one more macro level, so that the names are expanded before bcc pastes them)
#define KRETFUNC_PROBE_OF(f, ...) KRETFUNC_PROBE(f, __VA_ARGS__)
KRETFUNC_PROBE_OF(FP_ITER_FIRST, void *root, unsigned long first, unsigned long last, void *ret)
{ return walk_avc((long)ret); }
KRETFUNC_PROBE_OF(FP_ITER_NEXT, void *node, unsigned long first, unsigned long last, void *ret)
{ return walk_avc((long)ret); }
#endif
#else
int fp_enter_prepare(struct pt_regs *ctx, void *vma) { return fn_enter(FN_PREPARE, (u64)vma, 0); }
int fp_enter_fork(struct pt_regs *ctx, void *vma, void *pvma) { return fn_enter(FN_FORK, (u64)vma, (u64)pvma); }
int fp_enter_clone(struct pt_regs *ctx, void *dst, void *src, int op) { return clone_enter((u64)dst, (u64)src, op); }
int fp_enter_unlink(struct pt_regs *ctx, void *vma) { return fn_enter(FN_UNLINK, (u64)vma, 0); }
int fp_return_fn(struct pt_regs *ctx) { return fn_return(ctx, PT_REGS_RC(ctx)); }
#if FP_RSS
int fp_enter_copy(struct pt_regs *ctx, void *dst, void *src) { return copy_enter((u64)dst, (u64)src); }
#endif

#if FP_WALKS
int fp_enter_walk(struct pt_regs *ctx, void *folio, void *rwc) { return walk_enter((u64)folio, (u64)rwc, 0); }
int fp_enter_walk_locked(struct pt_regs *ctx, void *folio, void *rwc) { return walk_enter((u64)folio, (u64)rwc, 1); }
int fp_enter_walk_anon(struct pt_regs *ctx, void *folio, void *rwc, u8 locked)
{ return walk_enter((u64)folio, (u64)rwc, locked ? 1 : 0); }
int fp_return_walk(struct pt_regs *ctx) { return walk_return(ctx); }
int fp_return_iter(struct pt_regs *ctx) { return walk_avc(PT_REGS_RC(ctx)); }
#endif
#endif
#if FP_WALKS
// The rmap_one callbacks are probed with kprobes in both modes (they are
// static functions bcc's fentry cannot always resolve): one VMA visited.
int fp_enter_rmap_one(struct pt_regs *ctx) { return walk_vma(); }
#endif

#if FP_CENSUS
// The anon_vma topology that exists when the run starts: a task_vma
// iterator (kernel/bpf/task_iter.c, 5.12+) that collector/census.py runs
// once, before the recorded command starts. One `census` row per VMA with
// an anon_vma (its range, its anon_vma, the AVCs on its anon_vma_chain) and
// one per anon_vma some VMA points at (root, num_children, num_active_vmas).
// VMAs and anon_vmas get their run ids here (pre-run entries in `live`), so
// later call, free and walk rows name the same objects. Anon_vmas reached
// only through AVCs (their own VMAs gone) are counted in census_anon_vmas,
// not given rows.
struct bpf_iter__task_vma {
    u64 meta;
    u64 task;
    u64 vma;
};
#define CENSUS_MAX 262144
#define CENSUS_MAX_CHAIN 1024
BPF_F_TABLE("hash", u64, u8, census_vmas, CENSUS_MAX, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", u64, u8, census_anon_vmas, CENSUS_MAX, BPF_F_NO_PREALLOC);
// every VMA of a recorded mm, with or without an anon_vma (metadata
// census.vmas): each mm counted once, in the first task that shows it
BPF_F_TABLE("hash", u64, u64, census_mms, CENSUS_MAX, BPF_F_NO_PREALLOC);
BPF_ARRAY(census_all_vmas, u64, 1);
// the processes whose VMAs the iterator visited (metadata census.unvisited)
BPF_F_TABLE("hash", u32, u8, census_tgids, CENSUS_MAX, BPF_F_NO_PREALLOC);

static __always_inline void census_count_vma(u64 task, u64 vma, u32 tgid)
{
    u8 one = 1;
    census_tgids.update(&tgid, &one);
    u64 mm = 0;
    bpf_probe_read_kernel(&mm, sizeof(mm), (void *)(vma + VMA_MM_OFF));
    if (!mm)
        return;
    u64 *first = census_mms.lookup(&mm);
    if (!first) {
        census_mms.update(&mm, &task);
        first = census_mms.lookup(&mm);
    }
    int zero = 0;
    u64 *n = census_all_vmas.lookup(&zero);
    if (first && *first == task && n)
        __sync_fetch_and_add(n, 1);
}

int bpf_iter__task_vma(struct bpf_iter__task_vma *ctx)
{
    u64 task = 0, vma = 0, av = 0;
    bpf_probe_read_kernel(&task, sizeof(task), (u64 *)ctx + 1);  // ctx->task
    bpf_probe_read_kernel(&vma, sizeof(vma), (u64 *)ctx + 2);   // ctx->vma
    if (!task || !vma)
        return 0;
    struct event e = {};
    bpf_probe_read_kernel(&e.pid, sizeof(e.pid), (void *)(task + TASK_PID_OFF));
    bpf_probe_read_kernel(&e.tgid, sizeof(e.tgid), (void *)(task + TASK_TGID_OFF));
    bpf_probe_read_kernel(&e.comm, sizeof(e.comm), (void *)(task + TASK_COMM_OFF));
    if (!want_task(e.tgid, e.comm))
        return 0;
    census_count_vma(task, vma, e.tgid);
    bpf_probe_read_kernel(&av, sizeof(av), (void *)(vma + VMA_ANON_VMA_OFF));
    if (!av)
        return 0;
    u8 one = 1;
    if (census_vmas.lookup(&vma))
        return 0;  // a thread of a process already seen
    census_vmas.update(&vma, &one);
    e.ts = bpf_ktime_get_ns();
    e.kind = EV_CENSUS;
    e.cpu = bpf_get_smp_processor_id();

    // the anon_vma_chain: AVCs linked through same_vma (mm/rmap.c)
    u64 head = vma + VMA_CHAIN_OFF, node = 0, avc_av = 0;
    u32 avcs = 0;
    bpf_probe_read_kernel(&node, sizeof(node), (void *)head);
    for (int i = 0; i < CENSUS_MAX_CHAIN; i++) {
        if (!node || node == head)
            break;
        avcs++;
        bpf_probe_read_kernel(&avc_av, sizeof(avc_av), (void *)(node - AVC_SAME_VMA_OFF + AVC_ANON_VMA_OFF));
        if (avc_av)
            census_anon_vmas.insert(&avc_av, &one);  // keeps a 2 (row written)
        bpf_probe_read_kernel(&node, sizeof(node), (void *)node);
    }
    e.object = OBJ_VMA;
    e.vma_id = vma_id_of(vma);
    e.obj_id = pre_id_of(av, OBJ_ANON_VMA);
    e.count = avcs;
    if (node && node != head)
        e.flags |= FLAG_TRUNCATED;
    read_vma(&e, vma);
    emit(ctx, &e);

    // the VMA's anon_vma, once
    u8 two = 2;
    u8 *seen = census_anon_vmas.lookup(&av);
    if (seen && *seen == 2)
        return 0;
    census_anon_vmas.update(&av, &two);
    u64 root = 0;
    u32 children = (u32)-1, active = (u32)-1;
    bpf_probe_read_kernel(&root, sizeof(root), (void *)(av + ANON_VMA_ROOT_OFF));
#if ANON_VMA_NUM_CHILDREN_OFF >= 0
    bpf_probe_read_kernel(&children, sizeof(children), (void *)(av + ANON_VMA_NUM_CHILDREN_OFF));
#endif
#if ANON_VMA_NUM_ACTIVE_VMAS_OFF >= 0
    bpf_probe_read_kernel(&active, sizeof(active), (void *)(av + ANON_VMA_NUM_ACTIVE_VMAS_OFF));
#endif
    e.object = OBJ_ANON_VMA;
    e.fork_id = root ? pre_id_of(root, OBJ_ANON_VMA) : 0;
    e.aux1 = children;
    e.aux2 = active;
    e.flags = 0;
    emit(ctx, &e);
    return 0;
}
#endif
