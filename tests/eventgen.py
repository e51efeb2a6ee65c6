"""Synthetic schema-v1 recordings for analyzer tests.

The kernel's anon rmap (docs/models.md section 1, the eager rules E1-E4, as
analyzer/kernel.py has them): processes own VMAs, a VMA has an anon_vma and
a chain of AVCs, and each operation emits the rows the collector would write
for it:

- ``fault``: ``__anon_vma_prepare`` (AVC + anon_vma, or AVC only when
  reusing a neighbour's anon_vma);
- ``split`` / ``merge`` / ``mremap``: ``anon_vma_clone`` (one AVC per chain
  AVC, caller split / merge / mremap), mremap then unmaps the source;
- ``fork``: ``dup_mmap`` -> ``anon_vma_fork`` per VMA with an anon_vma
  (``clone_fork`` AVCs, then the child's own anon_vma and AVC), then the
  ``fork`` row; an anon_vma is reused where ``anon_vma_clone()``'s rule
  finds one (an ancestor's with no VMA and fewer than 2 children), and
  ``Gen(kernel="7.x")`` writes 7.x's order (the pair first, freed at once
  on reuse: rule E2');
- ``unmap`` / ``exit``: ``unlink_anon_vmas`` (AVC frees) and
  ``__put_anon_vma`` (an anon_vma is freed when no AVC links it and, for a
  root, no child anon_vma is left).

``prerun_vma`` makes a VMA whose objects exist before the run (their frees
are ``preexisting``); ``losing()`` drops the rows made inside it and counts
them in metadata ``lost``.

Later schema versions (docs/schema.md):

- ``lock()`` writes a v2 ``lock`` row: a wait for the root anon_vma's rwsem;
- ``mark()`` writes a v6 ``mark`` row; the census metadata counts every VMA
  (``vmas``, v6);
- with ``Gen(fprobes=True)`` the rows are those of the function-probe
  backend (v3, metadata ``backend`` kprobe): every anon_vma/AVC alloc and
  free made inside ``__anon_vma_prepare``, ``anon_vma_fork``,
  ``anon_vma_clone`` or ``unlink_anon_vmas`` carries ``vma_id`` (and
  ``src_vma_id``), each of those functions writes a ``call`` row when it
  returns, and ``walk()`` writes a ``walk`` row: an rmap walk of a folio of
  a VMA in that VMA's anon_vma, visiting the AVCs of that anon_vma whose VMA
  covers the folio (the VMA's copies made by fork and mremap, not the other
  pieces of a split), i.e. ``avcs_visited`` = ``vmas_visited`` follow from
  the chains the generator built.
"""

import contextlib
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from anonscope import schema as S
from anonscope.analyzer import kernel
from anonscope.collector.abi import KINDS

#: As on the project's 6.18 host (/sys/kernel/slab): anon_vma's free pointer
#: is outside the object (SLAB_TYPESAFE_BY_RCU with a constructor), the VMA
#: cache is SLAB_HWCACHE_ALIGN.
SIZES = {"anon_vma": {"btf_size": 96, "slab_size": 104, "object_size": 96, "align": 8,
                      "objs_per_slab": 39, "sheaf_capacity": 0},
         "anon_vma_chain": {"btf_size": 64, "slab_size": 64, "object_size": 64, "align": 8,
                            "objs_per_slab": 64, "sheaf_capacity": 0},
         "vm_area_struct": {"btf_size": 192, "slab_size": 192, "object_size": 192, "align": 64,
                            "objs_per_slab": 21, "sheaf_capacity": 32}}


class AnonVma(kernel.AnonVma):
    __slots__ = ("pre",)

    def __init__(self):
        super().__init__()
        self.pre = False        # made before the run (its free is preexisting)


class Avc(kernel.Avc):
    __slots__ = ("pre",)

    def __init__(self, vma=None, av=None):
        super().__init__(vma, av)
        self.pre = False


class Rmap(kernel.Rmap):
    AnonVma = AnonVma
    Avc = Avc


@dataclass(eq=False)
class Vma:
    id: int
    pre: bool = False
    anon_vma: AnonVma = None
    chain: list = field(default_factory=list)   # [Avc] oldest first
    span: int = 0               # address range identity: fork/mremap copies share it
    pages: int = 0              # anonymous pages present (copy_page_range copies them at fork)
    file: bool = False          # a MAP_PRIVATE file mapping (its CoW pages are anonymous)


@dataclass
class Proc:
    tgid: int
    comm: str
    vmas: list = field(default_factory=list)
    shared_mm: bool = False     # a vfork child before its exec
    mm: int = 0                 # mm_id of its mm (set by Gen)


class Gen:
    def __init__(self, arch="x86_64", step_ns=1000, reuse_ids=False, fprobes=False,
                 lock_probe=True, move_probes=True, kernel="6.x", fault_stacks=True):
        self.fault_stacks = fault_stacks  # v10: fault rows name the fault handler (anon_fault, cow_fault)
        self.reuse_ids = reuse_ids      # like raw_pointers: a freed id is handed out again
        self.fprobes = fprobes          # function-probe backend rows (schema v3)
        self.lock_probe = lock_probe    # metadata: lock:contention_* attached
        self.move_probes = move_probes  # metadata: the v7 move tracepoints attached
        self.k = Rmap(kernel)           # the simulated kernel's rules (analyzer/kernel.py)
        self._span = 0
        self._free_ids = []
        self.rows = []
        self.ts = 0
        self.step = step_ns
        self._id = 0
        self._fork_id = 0
        self.procs = {}
        self.lost = {"ringbuf": 0, "perfbuf": 0, "live_map_full": 0, "prog_misses": 0}
        self.lost_by_event = {k: 0 for k in KINDS}   # rows dropped by losing() (v5)
        self.arch = arch
        self._losing = None
        self.live = {o: 0 for o in S.OBJECTS}   # objects of the simulated kernel (incl. pre-run)
        self.census_meta = None         # metadata census entry once census() ran

    # ---------------------------------------------------------------- rows
    def _new_id(self):
        if self.reuse_ids and self._free_ids:
            return self._free_ids.pop()
        self._id += 1
        return self._id

    def _emit(self, **row):
        self.ts += self.step
        if self._losing:
            self.lost[self._losing] += 1
            if self._losing in ("ringbuf", "perfbuf"):
                self.lost_by_event[row["event"]] += 1
            return
        row.setdefault("cpu", 0)
        row["ts_ns"] = self.ts
        self.rows.append(row)

    def _ctx(self, pid):
        p = self.procs[pid]
        return {"pid": pid, "tgid": pid, "comm": p.comm}

    def _vma_cols(self, obj, vma, src):
        if not self.fprobes or obj == "vm_area_struct" or vma is None:
            return {}
        return {"vma_id": vma.id, "src_vma_id": None if src is None else src.id}

    def _alloc(self, pid, obj, path, owner=None, caller=None, fork_id=None, vma=None,
               src=None):
        oid = self._new_id()
        owner = pid if owner is None else owner
        self.live[obj] += 1
        self._emit(event="alloc", object=obj, path=path, caller=caller, obj_id=oid,
                   bytes=SIZES[obj]["slab_size"], owner_pid=owner, owner_tgid=owner,
                   fork_id=fork_id, **self._vma_cols(obj, vma, src), **self._ctx(pid))
        return oid

    def _made(self, pid, objs, path, **cols):
        """Alloc rows of the anon_vmas and AVCs a kernel operation made."""
        for o in objs:
            o.id = self._alloc(pid, "anon_vma" if isinstance(o, AnonVma) else "anon_vma_chain",
                               path, **cols)

    def _free(self, pid, obj, path, oid, pre, vma=None):
        self.live[obj] -= 1
        self._emit(event="free", object=obj, path=path,
                   obj_id=self._new_id() if pre else oid, preexisting=bool(pre),
                   **self._vma_cols(obj, vma, None), **self._ctx(pid))
        if not pre:
            self._free_ids.append(oid)

    def _call(self, pid, func, vma, src=None, objects=0, reused=None, anon_pages=None, mm=None):
        """The call row a probed function writes when it returns (VMAs are
        one page long in call rows); ``mm``: the VMA's mm, when it is not
        the task's (a fork's child, a remote fault)."""
        if not self.fprobes:
            return
        start = 0x10000000 + vma.span * 0x10000
        self._emit(event="call", func=func, vma_id=vma.id,
                   src_vma_id=None if src is None else src.id,
                   mm_id=self.procs[pid].mm if mm is None else mm,
                   vm_start=start, vm_end=start + 0x1000, vm_pgoff=start >> 12,
                   vma_file=vma.file, reused=reused, call_objects=objects, anon_pages=anon_pages,
                   duration_ns=self.step // 2, **self._ctx(pid))

    def _new_span(self):
        self._span += 1
        return self._span

    @contextlib.contextmanager
    def losing(self, source="ringbuf"):
        """Rows emitted inside are lost (not written) and counted in metadata lost."""
        self._losing = source
        try:
            yield
        finally:
            self._losing = None

    def lose(self, source, count, kind="alloc"):
        """A lost row (and metadata count) without dropping any simulated row;
        buffer losses (ringbuf, perfbuf) are of ``kind`` (lost_by_event)."""
        self.lost[source] += count
        if source in ("ringbuf", "perfbuf"):
            self.lost_by_event[kind] += count
        self._emit(event="lost", cpu=-1, lost_source=source, count=count)

    # ------------------------------------------------------------ processes
    def process(self, pid, comm="proc"):
        """A process that exists when the run starts."""
        self.procs[pid] = Proc(pid, comm, mm=1_000_000 + pid)
        return pid

    def mmap(self, pid, file=False):
        """A new VMA (``file``: a MAP_PRIVATE file mapping)."""
        vma = Vma(self._alloc(pid, "vm_area_struct", "alloc"), span=self._new_span(), file=file)
        self.procs[pid].vmas.append(vma)
        return vma

    def prerun_vma(self, pid, anon=True, file=False):
        """A VMA with an anon_vma and one AVC, all made before the run (no
        rows); ``anon`` false: the VMA only (no anonymous page yet);
        ``file``: a MAP_PRIVATE file VMA (its CoW pages anonymous)."""
        if not anon:
            vma = Vma(self._new_id(), pre=True, span=self._new_span())
            self.live["vm_area_struct"] += 1
            self.procs[pid].vmas.append(vma)
            return vma
        aid = self._new_id()
        vma = Vma(self._new_id(), pre=True, span=self._new_span(), file=file)
        avc, av = self.k.prepare(vma)
        av.id, avc.id = aid, self._new_id()
        av.pre = avc.pre = True
        for o in S.OBJECTS:
            self.live[o] += 1
        self.procs[pid].vmas.append(vma)
        return vma

    def prerun_fork(self, parent, child, comm=None):
        """A fork made before the run (no rows): each child VMA copies the
        parent VMA's chain and gets an anon_vma of its own whose parent is
        the parent VMA's (anon_vma_fork)."""
        pp = self.procs[parent]
        cp = Proc(child, comm or pp.comm, mm=1_000_000 + child)
        self.procs[child] = cp
        for vma in pp.vmas:
            new = Vma(self._new_id(), pre=True, span=vma.span)
            clones, own, _ = self.k.fork(vma, new)
            for o in clones + own:
                o.id, o.pre = self._new_id(), True
                self.live["anon_vma" if isinstance(o, AnonVma) else "anon_vma_chain"] += 1
            self.live["vm_area_struct"] += 1
            cp.vmas.append(new)
        return child

    def prerun_exit(self, pid):
        """A process that exited before the run: its VMAs and their AVCs are
        gone; its anon_vmas stay while a child's chain links them."""
        for vma in self.procs.pop(pid).vmas:
            avcs, _ = self.k.unlink(vma, put=False)   # no anon_vma is put (freed)
            self.live["anon_vma_chain"] -= len(avcs)
            self.live["vm_area_struct"] -= 1

    def _prerun_link(self, vma, av):
        avc = self.k.link(vma, av)
        avc.id, avc.pre = self._new_id(), True
        self.live["anon_vma_chain"] += 1

    def census(self):
        """The rows the collector's task_vma iterator writes for the current
        state (docs/schema.md#census), and the metadata entry."""
        vmas = [(pid, v) for pid, p in self.procs.items() for v in p.vmas if v.anon_vma is not None]
        linked = {avc.av for _pid, v in vmas for avc in v.chain}
        seen = set()
        for pid, vma in vmas:
            av = vma.anon_vma
            start = 0x10000000 + vma.span * 0x10000
            self._emit(event="census", object="vm_area_struct", vma_id=vma.id, mm_id=self.procs[pid].mm,
                       vm_start=start, vm_end=start + 0x1000, vm_pgoff=start >> 12, vma_file=vma.file,
                       anon_vma_id=av.id, chain_avcs=len(vma.chain), chain_truncated=False,
                       **self._ctx(pid))
            if av in seen:
                continue
            seen.add(av)
            # children counted are those of pre-run forks (prerun_fork), as ever
            self._emit(event="census", object="anon_vma", obj_id=av.id, root_id=av.root.id,
                       num_children=(av.root is av) + sum(1 for o in linked if o.pre and o.root is not o
                                                          and o.parent is av),
                       num_active_vmas=sum(1 for _p, w in vmas if w.anon_vma is av), **self._ctx(pid))
        every = {id(v) for p in self.procs.values() for v in p.vmas}   # a vfork child shares its parent's
        self.census_meta = {"status": "done", "reason": "eventgen", "vma_rows": len(vmas),
                            "anon_vma_rows": len(seen), "anon_vmas_linked": len(linked),
                            "vmas": len(every), "seconds": 0.0, "lost": 0}

    def mark(self, label):
        """A v6 mark row (kill -USR1 / anoncollect mark); the simulated
        kernel's live objects then (eager's answer)."""
        self._emit(event="mark", cpu=-1, mark_label=label)
        return dict(self.live)

    def fault(self, pid, vma=None, reuse=None, pages=1, by=None):
        """First anonymous fault: __anon_vma_prepare, ``pages`` written.
        ``reuse``: a neighbour VMA whose anon_vma find_mergeable_anon_vma()
        returns (no anon_vma row). ``by``: another process's task makes the
        fault in ``pid``'s VMA (ptrace POKEDATA, /proc/PID/mem): the rows
        are that task's, the call row's mm is ``pid``'s."""
        if vma is None:
            vma = self.mmap(pid)
        vma.pages += pages
        if vma.anon_vma is not None:
            return vma
        task = pid if by is None else by
        new = self.k.prepare(vma, None if reuse is None else reuse.anon_vma)
        kind = ("cow_fault" if vma.file else "anon_fault") if self.fault_stacks else None
        self._made(task, new, "fault", vma=vma, caller=kind)
        self._call(task, "__anon_vma_prepare", vma, objects=len(new), reused=reuse is not None,
                   mm=self.procs[pid].mm)
        return vma

    def faults(self, pid, n):
        return [self.fault(pid) for _ in range(n)]

    def _clone(self, pid, dst, src, caller, mm=None):
        """anon_vma_clone of split, merge, mremap (caller): clone_vma AVCs."""
        new = self.k.clone(dst, src)
        self._made(pid, new, "clone_vma", caller=caller, vma=dst, src=src)
        self._call(pid, "anon_vma_clone", dst, src, objects=len(new), mm=mm)

    def split(self, pid, vma, by=None):
        """__split_vma: a new VMA copying the chain (anon_vma_clone, caller
        split). ``by``: another process's task splits ``pid``'s VMA
        (UFFDIO_REGISTER, DAMON): the rows are that task's."""
        task = pid if by is None else by
        new = Vma(self._alloc(task, "vm_area_struct", "dup", caller="split"),
                  span=self._new_span())
        self._clone(task, new, vma, "split", mm=self.procs[pid].mm)
        p = self.procs[pid]
        p.vmas.insert(p.vmas.index(vma) + 1, new)
        return new

    def merge(self, pid, dst, src):
        """vma_expand/dup_anon_vma: dst absorbs src; dst without anon_vma clones src's chain."""
        if src.anon_vma is not None and dst.anon_vma is None:
            self._clone(pid, dst, src, "merge")
        elif src.anon_vma is not None and dst.anon_vma is not src.anon_vma:
            raise ValueError("the kernel does not merge VMAs with different anon_vmas")
        self.unmap(pid, src)
        return dst

    def mremap(self, pid, vma):
        """move_vma: copy_vma (dup + anon_vma_clone, caller mremap), then unmap the source."""
        new = Vma(self._alloc(pid, "vm_area_struct", "dup", caller="mremap"), span=vma.span)
        self._clone(pid, new, vma, "mremap")
        p = self.procs[pid]
        p.vmas.insert(p.vmas.index(vma) + 1, new)
        self.unmap(pid, vma)
        return new

    def unmap(self, pid, vma):
        """unlink_anon_vmas + __put_anon_vma, then the VMA itself."""
        avcs, avs = self.k.unlink(vma)
        for avc in avcs:
            self._free(pid, "anon_vma_chain", "unlink", avc.id, avc.pre, vma=vma)
        for av in avs:
            self._free(pid, "anon_vma", "put", av.id, av.pre, vma=vma)
        self._call(pid, "unlink_anon_vmas", vma, objects=len(avcs) + len(avs))
        self._free(pid, "vm_area_struct", "vma_free", vma.id, vma.pre)
        self.procs[pid].vmas.remove(vma)

    def _anon_vma_fork(self, parent, child, fid, new, vma):
        """``anon_vma_fork()`` of ``vma`` into the child's copy ``new``, with
        the kernel's reuse rule (analyzer/kernel.py ``reusable``): 6.x
        clones the chain, then makes the child's own anon_vma and AVC unless
        one was reused; 7.x makes the pair first and, when one was reused,
        frees it at once (__put_anon_vma: ``put``; the AVC at anon_vma_fork's
        own call site: ``error``; rule E2')."""
        cols = {"owner": child, "fork_id": fid, "vma": new, "src": vma}
        prealloc = self.k.kernel == "7.x"
        clones, own, freed = self.k.fork(vma, new, prealloc=prealloc)
        if prealloc:
            self._made(parent, own, "fork", **cols)
        self._made(parent, clones, "clone_fork", **cols)
        if not prealloc:
            self._made(parent, own, "fork", **cols)
        if freed:
            av, avc = freed
            self._free(parent, "anon_vma", "put", av.id, False, vma=new)
            self._free(parent, "anon_vma_chain", "error", avc.id, False, vma=new)
        reused = bool(freed) or not own
        self._call(parent, "anon_vma_fork", new, vma, objects=len(clones) + (0 if reused else len(own)),
                   reused=reused, mm=self.procs[child].mm)

    def fork(self, parent, child, comm=None, dontcopy=(), wipeonfork=()):
        """dup_mmap: per VMA a vm_area_struct copy and, with an anon_vma,
        anon_vma_fork (:meth:`_anon_vma_fork`); then the fork row.
        ``dontcopy``: parent VMAs not copied (VM_DONTCOPY); ``wipeonfork``:
        copied without anon_vma (VM_WIPEONFORK: no anon_vma_fork)."""
        self._fork_id += 1
        fid = self._fork_id
        pp = self.procs[parent]
        cp = Proc(child, comm or pp.comm, mm=1_000_000 + child)
        self.procs[child] = cp
        for vma in list(pp.vmas):
            if any(vma is d for d in dontcopy):
                continue
            new = Vma(self._alloc(parent, "vm_area_struct", "fork", owner=child, fork_id=fid),
                      span=vma.span)
            if any(vma is w for w in wipeonfork):
                cp.vmas.append(new)
                continue
            if vma.anon_vma is not None:
                self._anon_vma_fork(parent, child, fid, new, vma)
                new.pages = vma.pages  # shared copy-on-write
                self._call(parent, "copy_page_range", new, vma, anon_pages=vma.pages, mm=cp.mm)
            cp.vmas.append(new)
        self._emit(event="fork", child_pid=child, child_tgid=child, shares_mm=False,
                   fork_id=fid, **self._ctx(parent))
        return child

    def thread(self, pid, tid):
        """clone(CLONE_VM|CLONE_THREAD): a fork row that copies no mm."""
        self._fork_id += 1
        self._emit(event="fork", child_pid=tid, child_tgid=pid, shares_mm=True,
                   fork_id=self._fork_id, **self._ctx(pid))

    def vfork(self, parent, child, comm=None):
        """clone(CLONE_VM|CLONE_VFORK), posix_spawn: a new process on the
        parent's mm (its faults land in the parent's VMAs) until it execs."""
        self._fork_id += 1
        cp = Proc(child, comm or self.procs[parent].comm, mm=self.procs[parent].mm)
        cp.vmas = self.procs[parent].vmas          # the same mm
        cp.shared_mm = True
        self.procs[child] = cp
        self._emit(event="fork", child_pid=child, child_tgid=child, shares_mm=True,
                   fork_id=self._fork_id, **self._ctx(parent))
        return child

    def exit(self, pid):
        for vma in list(self.procs[pid].vmas):
            self.unmap(pid, vma)
        self._emit(event="exit", group_dead=True, **self._ctx(pid))

    def exec(self, pid, filename="/bin/true", comm=None):
        p = self.procs[pid]
        if p.shared_mm:                            # a vfork child leaves the parent's mm alone
            p.vmas, p.shared_mm = [], False
        for vma in list(p.vmas):
            self.unmap(pid, vma)
        p.mm = 2_000_000 + len(self.rows)          # a new mm
        if comm:
            self.procs[pid].comm = comm
        self._emit(event="exec", filename=filename, **self._ctx(pid))

    def lock(self, pid, vma_or_av, wait_ns, write=False, func="walk"):
        """A v2 lock row: ``pid`` waited ``wait_ns`` for the rwsem of the root
        of ``vma_or_av``'s anon_vma (anon_vma_lock_read/_write lock the root)."""
        av = vma_or_av.anon_vma if isinstance(vma_or_av, Vma) else vma_or_av
        root = av.root
        self._emit(event="lock", lock_id=root.id, wait_ns=wait_ns, lock_write=bool(write),
                   lock_func=func, preexisting=bool(root.pre), **self._ctx(pid))

    def walk_targets(self, vma, anon_vma=None):
        """The VMAs an rmap walk of a folio of ``vma`` visits: AVCs of the
        folio's anon_vma (``anon_vma``, else ``vma.anon_vma``) whose VMA
        covers the folio (same span)."""
        return [a.vma for a in sorted((anon_vma or vma.anon_vma).tree, key=lambda a: a.id)
                if a.vma.span == vma.span]

    def walk(self, pid, vma, kind="reclaim", order=0, duration_ns=None, locked=False,
             lock_wait_ns=0, straddles=(), index=True, anon_vma=None):
        """rmap_walk of a folio of ``vma`` (in ``anon_vma``, else
        ``vma.anon_vma``: pass it for a folio of a VMA since unmapped, whose
        copies in children still map it) by task ``pid``
        (e.g. kswapd): a v3 walk row; with ``lock_wait_ns`` the walk first
        waits that long for the root's rwsem (a lock row inside the walk).
        ``straddles``: other VMAs a large folio also maps (the other piece of
        a split it straddles). ``index``: the row carries the folio's index
        (v8 ``vm_pgoff``: the VMA's first page, as its call rows give it).
        Returns the VMAs visited."""
        av = anon_vma or vma.anon_vma
        n = len(self.walk_targets(vma, av)) + sum(len(self.walk_targets(p)) for p in straddles)
        if lock_wait_ns:
            self.lock(pid, av, lock_wait_ns, write=False, func="walk")
        self._emit(event="walk", walk_kind=kind, folio_order=order,
                   duration_ns=duration_ns if duration_ns is not None else 3 * self.step,
                   avcs_visited=n, vmas_visited=n, walk_locked=bool(locked),
                   anon_vma_id=None if av.pre else av.id,
                   vm_pgoff=(0x10000000 + vma.span * 0x10000) >> 12 if index else None, **self._ctx(pid))
        return n

    def slab_sample(self, baseline=None, alias_objects=0, cpu_partial=None, meminfo=None):
        """slab rows: active = simulated live objects + baseline; the AVC cache
        has 2 aliases and ``alias_objects`` of their objects; ``cpu_partial``:
        {cache: slabs on the CPUs' partial lists} (v6); ``meminfo``:
        {column: kB} of the v8 mem_*_kb columns (null without)."""
        baseline = baseline or {}
        cpu_partial = cpu_partial or {}
        for obj in S.OBJECTS:
            aliases = 2 if obj == "anon_vma_chain" else 0
            active = self.live[obj] + baseline.get(obj, 0) + (alias_objects if aliases else 0)
            self._emit(event="slab", cpu=-1, slab_cache=obj, slab_active=active,
                       slab_total=active + 10, slab_objsize=SIZES[obj]["slab_size"],
                       slab_aliases=aliases, slab_cpu_partial=cpu_partial.get(obj), **(meminfo or {}))
        sample = [r for r in self.rows[-len(S.OBJECTS):] if r["event"] == "slab"]
        for r in sample:                # one sample, one time (collector/session.py slab_rows)
            r["ts_ns"] = sample[0]["ts_ns"]

    # ---------------------------------------------------------------- file
    def metadata(self, **overrides):
        meta = {
            "schema_version": S.SCHEMA_VERSION,
            "tool_version": "eventgen",
            "command_line": ["anoncollect", "synthetic"],
            "kernel_release": "6.18.0-synthetic" if self.k.kernel == "6.x" else "7.3.0-synthetic",
            "arch": self.arch,
            "page_size": 4096,
            "object_sizes": SIZES,
            "btf": True,
            "backend": "kprobe" if self.fprobes else "tracepoint",
            "probes": self.probes(),
            "target": {"mode": "command", "command": "synthetic", "pid": None, "comm": None},
            "start_time": "2026-01-01T00:00:00+00:00",
            "end_time": "2026-01-01T00:00:01+00:00",
            "duration_s": self.ts / 1e9,
            "stop_reason": "command-exited",
            "events": len(self.rows),
            "lost": dict(self.lost),
            "lost_by_event": dict(self.lost_by_event),
            "complete": True,
            "alias_frees_skipped": 0,
            "alias_traffic": {"anon_vma": None, "anon_vma_chain": {"allocs": 0, "frees": 0},
                              "vm_area_struct": None},
            "hostname": "eventgen",
            "slab_aliases": {"anon_vma_chain": ["fs_cache", "eventpoll_pwq"]},
            "classification": {},
            "kfence": {"enabled": False, "num_objects": None},
            "topology": {"cpus": 2, "nodes": 1},
            "raw_pointers": False,
        }
        if self.census_meta is not None:
            meta["census"] = self.census_meta
        meta.update(overrides)
        return meta

    def move(self, pid, kind, owner=None, start=None, length=4096):
        """A v7 move row (docs/schema.md#moves): ``kind`` ksm_merge (in
        ksmd's context ``pid``, for ``owner``), uffd_move or mremap_dontunmap
        (by ``pid`` itself). The simulated kernel's objects do not change:
        what the move's anon_vma functions make is recorded as their own rows."""
        ctx = self._ctx(pid)
        rng = {} if start is None else {"vm_start": start, "vm_end": start + length}
        self._emit(event="move", move_kind=kind, owner_tgid=owner if owner is not None else ctx["tgid"],
                   **rng, **ctx)

    def probes(self):
        out = [{"name": "tracepoint:lock:contention_begin+contention_end",
                "attached": bool(self.lock_probe),
                "reason": "waits for anon_vma rwsems" if self.lock_probe
                else "kernel without lock:contention_begin (needs 5.19)"}]
        for name in ("__anon_vma_prepare", "anon_vma_fork", "anon_vma_clone",
                     "unlink_anon_vmas", "rmap_walk", "rmap_walk_locked", "copy_page_range"):
            out.append({"name": f"kprobe:{name}", "attached": self.fprobes,
                        "reason": "function probe" if self.fprobes
                        else "kernel without kprobe events"})
        for name in ("ksm:ksm_merge_with_ksm_page", "syscalls:sys_enter_ioctl", "syscalls:sys_enter_mremap"):
            out.append({"name": f"tracepoint:{name}", "attached": self.move_probes, "reason": "move rows"})
        return out

    def table(self):
        cols = {name: [r.get(name) for r in self.rows] for name in S.COLUMNS}
        arrays = [pa.array(cols[name], type=S.COLUMNS[name][0]) for name in S.COLUMNS]
        return pa.Table.from_arrays(arrays, schema=S.SCHEMA)

    def write(self, path, **meta_overrides):
        """Write like the collector: rows, then the footer's key-value metadata."""
        meta = {S.META_PREFIX + k: json.dumps(v)
                for k, v in self.metadata(**meta_overrides).items() if v is not _DROP}
        with pq.ParquetWriter(path, S.SCHEMA, compression="zstd", use_dictionary=True) as w:
            w.write_table(self.table(), row_group_size=65536)
            w.add_key_value_metadata(meta)
        return path


#: pass as a metadata override to leave a key out
_DROP = object()
DROP = _DROP
