"""A small, explicit model of address spaces for `anonanalyze simulate`.

Processes (mm) own VMAs; a VMA is ``[start, end)`` in *pages* (addresses are
page numbers, never bytes) with a ``pgoff`` (the page offset the anon rmap
keys its interval trees by: ``vm_pgoff``) and is either anonymous or a
``MAP_PRIVATE`` file mapping (``file`` names the file). Folios are mapped
in VMAs through a per-VMA page table ``{page: folio}``.

Operations: ``mmap``, ``fault`` (a new folio, or a CoW copy of a folio that
another mm maps too), ``fork`` (the child copies every VMA and its page
table), ``munmap`` (with splits at the edges), ``mprotect`` (splits only),
``mremap`` (moves a whole VMA), ``exit``, and ``walk`` (an rmap walk of the
folio mapped at an address). The address space itself is design-neutral:
every *design* (analyzer/rmapsim.py) is told about each operation through
the hooks of :class:`Design` and builds its own rmap structures, so all
designs see exactly the same history. docs/models.md section 4 ("rmap
walks") lists the rules and what is not modelled.
"""

import bisect
import itertools


class SimError(Exception):
    """A scenario asked for something the model cannot do (a bad script)."""


class Vma:
    """A VMA of one mm: ``[start, end)`` in pages, its ``pgoff``
    (``vm_pgoff``), its ``file`` (None: anonymous, else a MAP_PRIVATE file
    mapping) and its page table ``pt`` ``{page: Folio}``."""

    __slots__ = ("id", "mm", "start", "end", "pgoff", "file", "pt")

    def __init__(self, vid, mm, start, end, pgoff, file=None):
        self.id = vid
        self.mm = mm
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.file = file        # None: anonymous; else a MAP_PRIVATE file mapping
        self.pt = {}            # page -> Folio

    @property
    def anonymous(self):
        """True for an anonymous VMA (``file`` is None), False for a
        MAP_PRIVATE file mapping."""
        return self.file is None

    @property
    def pgoff_last(self):
        """``vma_last_pgoff()``: the last page offset the VMA covers."""
        return self.pgoff + (self.end - self.start) - 1

    def linear_index(self, page):
        """``linear_page_index()``: the page offset of ``page`` in this VMA."""
        return self.pgoff + (page - self.start)

    def __repr__(self):
        return f"Vma({self.mm.pid}:{self.start}-{self.end} pgoff={self.pgoff})"


class Folio:
    """A folio: ``index`` (``folio->index``, the page offset of its first
    page), ``nr`` pages, the mm that allocated it and its first page's address
    there, and ``maps``, the pages of it each mm maps."""

    __slots__ = ("id", "index", "nr", "mm", "addr", "maps")

    def __init__(self, fid, index, nr, mm, addr):
        self.id = fid
        self.index = index      # folio->index: page offset of its first page
        self.nr = nr            # pages (1, or a large folio)
        self.mm = mm            # the mm that allocated it (fault or CoW copy)
        self.addr = addr        # its first page's address there, at allocation
        self.maps = {}          # mm -> pages of this folio mapped in that mm

    def __repr__(self):
        return f"Folio({self.id} index={self.index} nr={self.nr} mm={self.mm.pid})"


class Mm:
    """A process's address space: its VMAs (sorted by start, never
    overlapping), its parent, whether it is alive and how many process forks it
    made."""

    __slots__ = ("pid", "name", "parent", "vmas", "_starts", "alive", "forks")

    def __init__(self, pid, name, parent=None):
        self.pid = pid
        self.name = name
        self.parent = parent
        self.vmas = []          # sorted by start, never overlapping
        self._starts = None     # cache of [v.start for v in vmas]
        self.alive = True
        self.forks = 0          # process forks made by this mm

    def find(self, page):
        """The VMA containing ``page`` (``vma_lookup()``), or None."""
        if self._starts is None:
            self._starts = [v.start for v in self.vmas]
        i = bisect.bisect_right(self._starts, page) - 1
        if i >= 0 and self.vmas[i].end > page:
            return self.vmas[i]
        return None

    def insert(self, vma):
        """Put ``vma`` into the VMA list at its place by start."""
        if self._starts is None:
            self._starts = [v.start for v in self.vmas]
        i = bisect.bisect_left(self._starts, vma.start)
        self.vmas.insert(i, vma)
        self._starts.insert(i, vma.start)

    def remove(self, vma):
        """Take ``vma`` out of the VMA list."""
        self.vmas.remove(vma)
        self._starts = None

    def neighbours(self, vma):
        """(prev, next): the VMAs right before and after ``vma`` in this mm."""
        i = self.vmas.index(vma)
        prev = self.vmas[i - 1] if i > 0 else None
        nxt = self.vmas[i + 1] if i + 1 < len(self.vmas) else None
        return prev, nxt

    def __repr__(self):
        return f"Mm({self.pid} {self.name})"


class Design:
    """Hooks a design implements to build its rmap structures. Every hook is
    called after the address space made the change it names, unless said."""

    name = "design"

    def new_mm(self, mm):
        """A process (mm) was created: a root process, or a fork's child
        (called before ``fork_begin``)."""

    def prepare(self, vma):
        """Before the first folio is put in a VMA that may have none yet
        (the kernel's ``anon_vma_prepare()`` on the fault path)."""

    def new_folio(self, folio, vma):
        """A folio was allocated and mapped in ``vma`` (fault or CoW copy)."""

    def reuse_folio(self, folio, vma):
        """A write fault hit a folio only this mm maps, allocated elsewhere
        (``do_wp_page()`` reuse, ``folio_move_anon_rmap()``)."""

    def fork_begin(self, parent, child):
        """Before any VMA of ``parent`` is copied into ``child``."""

    def fork_vma(self, pvma, cvma):
        """``cvma`` is ``child``'s copy of ``pvma`` (``dup_mmap()``)."""

    def fork_transient(self, parent, child, pvmas):
        """Copies of ``pvmas`` were made and unmapped at once (``fork`` with
        ``keep``): count what they allocated and freed, keep no objects."""

    def split(self, vma, new):
        """``__split_vma()``: ``new`` is the upper piece cut from ``vma``."""

    def mremap(self, old, new):
        """``copy_vma()``: ``new`` is the moved copy; ``old`` is unmapped next."""

    def unmap_vma(self, vma):
        """``vma`` leaves its mm (munmap, exit); its pages are already unmapped."""

    def folio_freed(self, folio):
        """The last mapping of ``folio`` went away."""

    def exit_mm(self, mm):
        """``mm`` exited; all its VMAs were unmapped before."""

    def walk(self, folio):
        """An rmap walk of ``folio``: return a dict with ``visits`` (int),
        ``lock`` (str) and design-specific integer extras."""
        raise NotImplementedError

    def memory(self):
        """{object: {"allocated", "live", "peak_live"}} of this design."""
        return {}


class Space:
    """The address spaces of a scenario, shared by the designs in ``designs``."""

    def __init__(self, designs=()):
        self.designs = list(designs)
        self.mms = {}
        self._pid = itertools.count(1)
        self._vid = itertools.count(1)
        self._fid = itertools.count(1)
        self.walks = []         # (group, mms mapping the folio, {design name: result})
        self.snapshots = {}     # label -> {design name: Design.memory()}

    # ---------------------------------------------------------------- helpers
    def _each(self, hook, *args):
        for d in self.designs:
            getattr(d, hook)(*args)

    def _vma(self, mm, start, end, pgoff, file=None):
        return Vma(next(self._vid), mm, start, end, pgoff, file)

    def _unmap_pages(self, vma, pages):
        """Drop ``vma``'s mappings of ``pages`` (an iterable of page numbers)."""
        mm = vma.mm
        for page in pages:
            folio = vma.pt.pop(page, None)
            if folio is None:
                continue
            n = folio.maps[mm] - 1
            if n:
                folio.maps[mm] = n
            else:
                del folio.maps[mm]
                if not folio.maps:
                    self._each("folio_freed", folio)

    @staticmethod
    def _next_start(mm, page):
        """Start of the first VMA of ``mm`` starting after ``page`` (or infinity)."""
        mm.find(page)           # builds mm._starts
        i = bisect.bisect_right(mm._starts, page)
        return mm._starts[i] if i < len(mm._starts) else float("inf")

    def _vma_at(self, mm, page):
        vma = mm.find(page)
        if vma is None:
            raise SimError(f"no VMA at page {page} in pid {mm.pid}")
        return vma

    # -------------------------------------------------------------- processes
    def process(self, name="proc"):
        """A new root process (mm) named ``name``, announced to the designs
        (``new_mm``)."""
        pid = next(self._pid)
        mm = Mm(pid, name)
        self.mms[pid] = mm
        self._each("new_mm", mm)
        return mm

    def mmap(self, mm, start, npages, file=None, pgoff=None):
        """A new VMA ``[start, start + npages)``. Anonymous VMAs get
        ``pgoff = start`` (``vm_pgoff`` of an anonymous mmap is its address in
        pages); a MAP_PRIVATE file VMA gets the file offset ``pgoff`` (0)."""
        if npages <= 0:
            raise SimError("mmap of no pages")
        if mm.find(start) is not None or self._next_start(mm, start) < start + npages:
            raise SimError(f"mmap over an existing VMA in pid {mm.pid}")
        if pgoff is None:
            pgoff = start if file is None else 0
        vma = self._vma(mm, start, start + npages, pgoff, file)
        mm.insert(vma)
        return vma

    def fault(self, mm, page, nr=1):
        """A write fault at ``page`` (``nr`` > 1: a large folio of ``nr`` pages
        starting there, all unmapped). A page already mapped by this mm alone
        is reused; one this mm shares with another mm is copied (CoW)."""
        vma = self._vma_at(mm, page)
        if nr > 1 and (page + nr > vma.end or any(p in vma.pt for p in range(page, page + nr))):
            raise SimError("a large folio must fit in its VMA and in unmapped pages")
        old = vma.pt.get(page)
        if old is not None:
            if len(old.maps) == 1:
                if old.mm is not mm:
                    self._each("reuse_folio", old, vma)
                return old
            self._unmap_pages(vma, [page])          # CoW: this mm's copy replaces it
            nr = 1
        self._each("prepare", vma)
        folio = Folio(next(self._fid), vma.linear_index(page), nr, mm, page)
        for p in range(page, page + nr):
            vma.pt[p] = folio
        folio.maps[mm] = nr
        self._each("new_folio", folio, vma)
        return folio

    def fork(self, parent, keep=None, name=None):
        """A process fork: the child copies every VMA of ``parent`` and its page
        table (``dup_mmap()``). With ``keep`` (a predicate on the parent's VMA),
        the copies it rejects are unmapped right after the fork, before any
        other operation; they are accounted for, not built (Design.fork_transient)."""
        child = Mm(next(self._pid), name or parent.name, parent)
        self.mms[child.pid] = child
        parent.forks += 1
        self._each("new_mm", child)
        self._each("fork_begin", parent, child)
        dropped = []
        for pvma in parent.vmas:
            if keep is not None and not keep(pvma):
                dropped.append(pvma)
                continue
            cvma = self._vma(child, pvma.start, pvma.end, pvma.pgoff, pvma.file)
            cvma.pt = dict(pvma.pt)
            counts = {}
            for folio in cvma.pt.values():
                counts[folio] = counts.get(folio, 0) + 1
            for folio, n in counts.items():
                folio.maps[child] = folio.maps.get(child, 0) + n
            child.vmas.append(cvma)
            self._each("fork_vma", pvma, cvma)
        if dropped:
            self._each("fork_transient", parent, child, dropped)
        return child

    def split(self, vma, page):
        """``__split_vma()`` at ``page``: ``vma`` keeps ``[start, page)``, a new
        VMA takes ``[page, end)`` with its pgoff and its pages."""
        if not vma.start < page < vma.end:
            raise SimError("split point outside the VMA")
        new = self._vma(vma.mm, page, vma.end, vma.linear_index(page), vma.file)
        new.pt = {p: f for p, f in vma.pt.items() if p >= page}
        for p in new.pt:
            del vma.pt[p]
        vma.end = page
        vma.mm.insert(new)
        self._each("split", vma, new)
        return new

    def _carve(self, mm, start, npages):
        """Split VMAs at ``start`` and ``start + npages``; the VMAs inside."""
        end = start + npages
        for edge in (start, end):
            vma = mm.find(edge)
            if vma is not None and vma.start < edge:
                self.split(vma, edge)
        return [v for v in mm.vmas if v.start >= start and v.end <= end]

    def munmap(self, mm, start, npages):
        """Unmap ``[start, start + npages)`` of ``mm``: the VMAs at its edges
        are split and every VMA inside is unmapped (:meth:`unmap_vma`)."""
        for vma in self._carve(mm, start, npages):
            self.unmap_vma(vma)

    def unmap_vma(self, vma):
        """Unmap every page of ``vma`` (a folio whose last mapping goes is
        freed), take it out of its mm, then call the designs' ``unmap_vma``."""
        self._unmap_pages(vma, list(vma.pt))
        vma.mm.remove(vma)
        self._each("unmap_vma", vma)

    def mprotect(self, mm, start, npages):
        """Only the splits of mprotect (no merge is modelled)."""
        return self._carve(mm, start, npages)

    def mremap(self, mm, start, new_start):
        """Move the whole VMA starting at ``start`` to ``new_start`` (``move_vma()``:
        ``copy_vma()`` keeps ``vm_pgoff``, so folios keep their index; then the
        source is unmapped without touching the moved pages)."""
        old = mm.find(start)
        if old is None or old.start != start:
            raise SimError("mremap needs the start of a VMA")
        n = old.end - old.start
        if any(v is not old and v.start < new_start + n and v.end > new_start for v in mm.vmas):
            raise SimError("mremap target overlaps a VMA")
        if old.pt and any(f.nr > 1 for f in old.pt.values()):
            raise SimError("mremap of a VMA with large folios is not modelled")
        new = self._vma(mm, new_start, new_start + n, old.pgoff, old.file)
        new.pt = {p - start + new_start: f for p, f in old.pt.items()}
        old.pt = {}
        self._each("mremap", old, new)
        mm.remove(old)
        self._each("unmap_vma", old)
        mm.insert(new)
        return new

    def exit(self, mm):
        """``mm`` exits: every VMA is unmapped (:meth:`unmap_vma`), the mm is
        marked dead, then the designs' ``exit_mm`` is called."""
        for vma in list(mm.vmas):
            self.unmap_vma(vma)
        mm.alive = False
        self._each("exit_mm", mm)

    # ------------------------------------------------------------------ walks
    def folio_at(self, mm, page):
        """The folio ``mm`` maps at ``page``; SimError when no VMA or no folio
        is there."""
        folio = self._vma_at(mm, page).pt.get(page)
        if folio is None:
            raise SimError(f"no folio at page {page} in pid {mm.pid}")
        return folio

    def walk(self, mm, page, group="all"):
        """An rmap walk (``rmap_walk()``) of the folio mapped at ``page``: every
        design reports what it visits."""
        folio = self.folio_at(mm, page)
        res = {d.name: d.walk(folio) for d in self.designs}
        self.walks.append((group, len(folio.maps), res))
        return res

    def snapshot(self, label):
        """Remember every design's memory counts now (e.g. when the walks run)."""
        self.snapshots[label] = {d.name: d.memory() for d in self.designs}
