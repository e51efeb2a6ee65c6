"""Synthetic schema-v1 recordings for analyzer tests.

A tiny simulator of the kernel's anon rmap (docs/models.md section 1, the
eager rules E1-E4): processes own VMAs, a VMA has an anon_vma and a chain of
AVCs, and each operation emits the rows the collector would write for it:

- ``fault``: ``__anon_vma_prepare`` (AVC + anon_vma, or AVC only when
  reusing a neighbour's anon_vma);
- ``split`` / ``merge`` / ``mremap``: ``anon_vma_clone`` (one AVC per chain
  AVC, caller split / merge / mremap), mremap then unmaps the source;
- ``fork``: ``dup_mmap`` -> ``anon_vma_fork`` per VMA with an anon_vma
  (``clone_fork`` AVCs, then the child's own anon_vma and AVC), then the
  ``fork`` row; the generator never produces the anon_vma reuse case;
- ``unmap`` / ``exit``: ``unlink_anon_vmas`` (AVC frees) and
  ``__put_anon_vma`` (an anon_vma is freed when no AVC links it and, for a
  root, no child anon_vma is left).

``prerun_vma`` makes a VMA whose objects exist before the run (their frees
are ``preexisting``); ``losing()`` drops the rows made inside it and counts
them in metadata ``lost``.
"""

import contextlib
import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from anonscope.collector import schema as S

SIZES = {"anon_vma": {"btf_size": 88, "slab_size": 104},
         "anon_vma_chain": {"btf_size": 40, "slab_size": 64},
         "vm_area_struct": {"btf_size": 176, "slab_size": 192}}


@dataclass(eq=False)
class AnonVma:
    id: int
    root: "AnonVma" = None
    pre: bool = False
    avcs: set = field(default_factory=set)
    children: int = 0           # live non-root anon_vmas whose root is this one
    freed: bool = False


@dataclass(eq=False)
class Vma:
    id: int
    pre: bool = False
    anon_vma: AnonVma = None
    chain: list = field(default_factory=list)   # [(avc id, AnonVma, pre)]


@dataclass
class Proc:
    tgid: int
    comm: str
    vmas: list = field(default_factory=list)


class Gen:
    def __init__(self, arch="x86_64", step_ns=1000, reuse_ids=False):
        self.reuse_ids = reuse_ids      # like raw_pointers: a freed id is handed out again
        self._free_ids = []
        self.rows = []
        self.ts = 0
        self.step = step_ns
        self._id = 0
        self._fork_id = 0
        self.procs = {}
        self.lost = {"ringbuf": 0, "perfbuf": 0, "live_map_full": 0, "prog_misses": 0}
        self.arch = arch
        self._losing = None
        self.live = {o: 0 for o in S.OBJECTS}   # objects of the simulated kernel (incl. pre-run)

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
            return
        row.setdefault("cpu", 0)
        row["ts_ns"] = self.ts
        self.rows.append(row)

    def _ctx(self, pid):
        p = self.procs[pid]
        return {"pid": pid, "tgid": pid, "comm": p.comm}

    def _alloc(self, pid, obj, path, owner=None, caller=None, fork_id=None):
        oid = self._new_id()
        owner = pid if owner is None else owner
        self.live[obj] += 1
        self._emit(event="alloc", object=obj, path=path, caller=caller, obj_id=oid,
                   bytes=SIZES[obj]["slab_size"], owner_pid=owner, owner_tgid=owner,
                   fork_id=fork_id, **self._ctx(pid))
        return oid

    def _free(self, pid, obj, path, oid, pre):
        self.live[obj] -= 1
        self._emit(event="free", object=obj, path=path,
                   obj_id=self._new_id() if pre else oid, preexisting=bool(pre),
                   **self._ctx(pid))
        if not pre:
            self._free_ids.append(oid)

    @contextlib.contextmanager
    def losing(self, source="ringbuf"):
        """Rows emitted inside are lost (not written) and counted in metadata lost."""
        self._losing = source
        try:
            yield
        finally:
            self._losing = None

    def lose(self, source, count):
        """A lost row (and metadata count) without dropping any simulated row."""
        self.lost[source] += count
        self._emit(event="lost", cpu=-1, lost_source=source, count=count)

    # ------------------------------------------------------------ processes
    def process(self, pid, comm="proc"):
        """A process that exists when the run starts."""
        self.procs[pid] = Proc(pid, comm)
        return pid

    def mmap(self, pid):
        vma = Vma(self._alloc(pid, "vm_area_struct", "alloc"))
        self.procs[pid].vmas.append(vma)
        return vma

    def prerun_vma(self, pid):
        """A VMA with an anon_vma and one AVC, all made before the run (no rows)."""
        av = AnonVma(self._new_id(), pre=True)
        av.root = av
        vma = Vma(self._new_id(), pre=True, anon_vma=av)
        avc = self._new_id()
        av.avcs.add(avc)
        vma.chain.append((avc, av, True))
        for o in S.OBJECTS:
            self.live[o] += 1
        self.procs[pid].vmas.append(vma)
        return vma

    def fault(self, pid, vma=None, reuse=None):
        """First anonymous fault: __anon_vma_prepare. ``reuse``: a neighbour VMA
        whose anon_vma find_mergeable_anon_vma() returns (no anon_vma row)."""
        if vma is None:
            vma = self.mmap(pid)
        if vma.anon_vma is not None:
            return vma
        avc = self._alloc(pid, "anon_vma_chain", "fault")
        if reuse is not None:
            av = reuse.anon_vma
        else:
            av = AnonVma(self._alloc(pid, "anon_vma", "fault"))
            av.root = av
        vma.anon_vma = av
        av.avcs.add(avc)
        vma.chain.append((avc, av, False))
        return vma

    def faults(self, pid, n):
        return [self.fault(pid) for _ in range(n)]

    def _clone(self, pid, dst, src, path, caller=None, owner=None, fork_id=None):
        for _, av, _ in src.chain:
            avc = self._alloc(pid, "anon_vma_chain", path, owner=owner, caller=caller,
                              fork_id=fork_id)
            av.avcs.add(avc)
            dst.chain.append((avc, av, False))

    def split(self, pid, vma):
        """__split_vma: a new VMA copying the chain (anon_vma_clone, caller split)."""
        new = Vma(self._alloc(pid, "vm_area_struct", "dup", caller="split"))
        new.anon_vma = vma.anon_vma
        self._clone(pid, new, vma, "clone_vma", caller="split")
        p = self.procs[pid]
        p.vmas.insert(p.vmas.index(vma) + 1, new)
        return new

    def merge(self, pid, dst, src):
        """vma_expand/dup_anon_vma: dst absorbs src; dst without anon_vma clones src's chain."""
        if src.anon_vma is not None and dst.anon_vma is None:
            dst.anon_vma = src.anon_vma
            self._clone(pid, dst, src, "clone_vma", caller="merge")
        elif src.anon_vma is not None and dst.anon_vma is not src.anon_vma:
            raise ValueError("the kernel does not merge VMAs with different anon_vmas")
        self.unmap(pid, src)
        return dst

    def mremap(self, pid, vma):
        """move_vma: copy_vma (dup + anon_vma_clone, caller mremap), then unmap the source."""
        new = Vma(self._alloc(pid, "vm_area_struct", "dup", caller="mremap"))
        new.anon_vma = vma.anon_vma
        self._clone(pid, new, vma, "clone_vma", caller="mremap")
        p = self.procs[pid]
        p.vmas.insert(p.vmas.index(vma) + 1, new)
        self.unmap(pid, vma)
        return new

    def unmap(self, pid, vma):
        """unlink_anon_vmas + __put_anon_vma, then the VMA itself."""
        emptied = []
        for avc, av, pre in vma.chain:
            av.avcs.discard(avc)
            self._free(pid, "anon_vma_chain", "unlink", avc, pre)
            if not av.avcs:
                emptied.append(av)
        vma.chain = []
        vma.anon_vma = None
        for av in emptied:
            self._maybe_put(pid, av)
        self._free(pid, "vm_area_struct", "vma_free", vma.id, vma.pre)
        self.procs[pid].vmas.remove(vma)

    def _maybe_put(self, pid, av):
        if av.freed or av.avcs or av.children:
            return
        av.freed = True
        self._free(pid, "anon_vma", "put", av.id, av.pre)
        if av.root is not av:
            av.root.children -= 1
            self._maybe_put(pid, av.root)

    def fork(self, parent, child, comm=None):
        """dup_mmap: per VMA a vm_area_struct copy and, with an anon_vma,
        anon_vma_fork (clone_fork AVCs, own anon_vma + AVC); then the fork row."""
        self._fork_id += 1
        fid = self._fork_id
        pp = self.procs[parent]
        cp = Proc(child, comm or pp.comm)
        self.procs[child] = cp
        for vma in list(pp.vmas):
            new = Vma(self._alloc(parent, "vm_area_struct", "fork", owner=child, fork_id=fid))
            if vma.anon_vma is not None:
                self._clone(parent, new, vma, "clone_fork", owner=child, fork_id=fid)
                av = AnonVma(self._alloc(parent, "anon_vma", "fork", owner=child, fork_id=fid))
                av.root = vma.anon_vma.root
                av.root.children += 1
                avc = self._alloc(parent, "anon_vma_chain", "fork", owner=child, fork_id=fid)
                av.avcs.add(avc)
                new.chain.append((avc, av, False))
                new.anon_vma = av
            cp.vmas.append(new)
        self._emit(event="fork", child_pid=child, child_tgid=child, shares_mm=False,
                   fork_id=fid, **self._ctx(parent))
        return child

    def thread(self, pid, tid):
        """clone(CLONE_VM|CLONE_THREAD): a fork row that copies no mm."""
        self._fork_id += 1
        self._emit(event="fork", child_pid=tid, child_tgid=pid, shares_mm=True,
                   fork_id=self._fork_id, **self._ctx(pid))

    def exit(self, pid):
        for vma in list(self.procs[pid].vmas):
            self.unmap(pid, vma)
        self._emit(event="exit", group_dead=True, **self._ctx(pid))

    def exec(self, pid, filename="/bin/true", comm=None):
        for vma in list(self.procs[pid].vmas):
            self.unmap(pid, vma)
        if comm:
            self.procs[pid].comm = comm
        self._emit(event="exec", filename=filename, **self._ctx(pid))

    def slab_sample(self, baseline=None, alias_objects=0):
        """slab rows: active = simulated live objects + baseline; the AVC cache
        has 2 aliases and ``alias_objects`` of their objects."""
        baseline = baseline or {}
        for obj in S.OBJECTS:
            aliases = 2 if obj == "anon_vma_chain" else 0
            active = self.live[obj] + baseline.get(obj, 0) + (alias_objects if aliases else 0)
            self._emit(event="slab", cpu=-1, slab_cache=obj, slab_active=active,
                       slab_total=active + 10, slab_objsize=SIZES[obj]["slab_size"],
                       slab_aliases=aliases)

    # ---------------------------------------------------------------- file
    def metadata(self, **overrides):
        meta = {
            "schema_version": S.SCHEMA_VERSION,
            "tool_version": "eventgen",
            "command_line": ["anoncollect", "synthetic"],
            "kernel_release": "6.18.0-synthetic",
            "arch": self.arch,
            "page_size": 4096,
            "object_sizes": SIZES,
            "btf": True,
            "backend": "tracepoint",
            "probes": [],
            "target": {"mode": "command", "command": "synthetic", "pid": None, "comm": None},
            "start_time": "2026-01-01T00:00:00+00:00",
            "end_time": "2026-01-01T00:00:01+00:00",
            "duration_s": self.ts / 1e9,
            "stop_reason": "command-exited",
            "events": len(self.rows),
            "lost": dict(self.lost),
            "alias_frees_skipped": 0,
            "slab_aliases": {"anon_vma_chain": ["fs_cache", "eventpoll_pwq"]},
            "classification": {},
            "raw_pointers": False,
        }
        meta.update(overrides)
        return meta

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
