"""Rmap structures and walks of each design, on the address spaces of
analyzer/aspace.py (docs/models.md section 4, "rmap walks").

- :class:`Eager`: the kernel today, the rules of analyzer/kernel.py:
  ``__anon_vma_prepare()`` (with ``find_mergeable_anon_vma()``, found here),
  ``anon_vma_clone()``, ``anon_vma_fork()`` with its reuse rule,
  ``unlink_anon_vmas()`` / ``__put_anon_vma()``, and
  ``rmap_walk_anon()`` iterating the folio's anon_vma interval tree
  (``anon_vma_interval_tree_foreach``), here a list filtered by pgoff.
- :class:`Lazy`: ANON_VMA_LAZY. A faulted VMA gets no anon_vma; its folios
  point at it (a *token* shared by its split pieces stands for the root VMA);
  a fork upgrades the parent's lazy VMAs, a child VMA copies the parent's
  chain but gets no anon_vma of its own; mremap upgrades the moved VMA.
- :class:`NoFork`: processes that never fork opt out (PR_SET_NOFORK): they
  never call ``__anon_vma_prepare()``; what a forking parent builds for them
  at fork is kept (docs/models.md N2, best estimate).
- :class:`CowContext`: the rmap maintainer's draft: one context per mm,
  parent/children links made at fork, remap entries; a walk visits every
  live mm of the folio context's subtree.
"""

import itertools

from . import kernel
from .aspace import Design

AV, AVC = "anon_vma", "anon_vma_chain"
AnonVma, Avc = kernel.AnonVma, kernel.Avc     # the eager structures

LOCK_ROOT = "anon_vma root rwsem (read)"
#: a folio that points at its VMA (lazy, and no-fork opt-outs): the series
#: claims no anon_vma lock, which the maintainers disputed on the list
LOCK_NONE_LAZY = "unknown (the series claims no anon_vma lock; disputed on the list)"
LOCK_COW = "unknown (the draft: RCU, with TODOs; assumed: no anon_vma rwsem, one RCU VMA-tree lookup per mm)"


class Counts:
    """Allocated / live / peak-live counters of some object kinds."""

    def __init__(self, kinds):
        self.alloc = dict.fromkeys(kinds, 0)
        self.live = dict.fromkeys(kinds, 0)
        self.peak = dict.fromkeys(kinds, 0)

    def add(self, kind, n=1):
        """``n`` objects of ``kind`` allocated: allocated and live go up, and
        the peak with live."""
        self.alloc[kind] += n
        self.live[kind] += n
        if self.live[kind] > self.peak[kind]:
            self.peak[kind] = self.live[kind]

    def sub(self, kind, n=1):
        """``n`` objects of ``kind`` freed: only live goes down."""
        self.live[kind] -= n

    def transient(self, kind, n):
        """``n`` objects allocated now and freed before anything else happens."""
        self.alloc[kind] += n
        if self.live[kind] + n > self.peak[kind]:
            self.peak[kind] = self.live[kind] + n

    def report(self):
        """{kind: {"allocated", "live", "peak_live"}}, the layout of
        ``Design.memory()``."""
        return {k: {"allocated": self.alloc[k], "live": self.live[k], "peak_live": self.peak[k]}
                for k in self.alloc}


# --------------------------------------------------------------------- eager

class Node(kernel.Vma):
    """A design's own ``vma->anon_vma`` and ``anon_vma_chain`` of a VMA of the
    address space (every design builds its rmap on the same VMAs)."""

    __slots__ = ("vma",)

    def __init__(self, vma):
        super().__init__()
        self.vma = vma


class Eager(Design):
    """The kernel's anon rmap today: the rules of analyzer/kernel.py."""

    name = "eager"
    unit = "VMA (AVC iterated)"

    def __init__(self, kernel_rules="6.x"):
        self.n = Counts((AV, AVC))
        self.k = kernel.Rmap(kernel_rules)   # anon_vma_clone()'s order (kernel.Rmap.clone_order)
        self.nodes = {}     # vma -> Node: its anon_vma and chain
        self.fav = {}       # folio -> anon_vma (folio->mapping)
        self._ids = itertools.count(1)
        self._version = 0   # bumped on every link/unlink (root_mms cache)
        self._root_mms = {}

    # ---------------------------------------------------------- primitives
    def node(self, vma):
        """``vma``'s Node (its anon_vma and chain), made empty on first use."""
        n = self.nodes.get(vma)
        if n is None:
            n = self.nodes[vma] = Node(vma)
        return n

    def av(self, vma):
        """``vma->anon_vma``, or None."""
        n = self.nodes.get(vma)
        return None if n is None else n.anon_vma

    def chain(self, vma):
        """``vma``'s AVCs, oldest first (empty when it has none)."""
        n = self.nodes.get(vma)
        return () if n is None else n.chain

    def _made(self, objs):
        """Count what a kernel operation allocated."""
        for o in objs:
            if isinstance(o, kernel.AnonVma):
                o.id = next(self._ids)
                self.n.add(AV)
            else:
                self.n.add(AVC)
                self._version += 1

    def _new_root(self):
        av = self.k.new_root()
        self._made((av,))
        return av

    def _child_av(self, parent_av):
        av = self.k.new_child(parent_av)
        self._made((av,))
        return av

    def _link(self, vma, av):
        """``anon_vma_chain_link()``: one AVC, in the VMA's chain and the tree."""
        self._made((self.k.link(self.node(vma), av),))

    def _find_mergeable(self, vma):
        """``find_mergeable_anon_vma()``: a neighbour's anon_vma when
        ``anon_vma_compatible()`` (adjacent, same file, pgoff continuous; flags
        are not modelled) and its chain is a single AVC (``reusable_anon_vma()``);
        next is tried before prev."""
        prev, nxt = vma.mm.neighbours(vma)
        for old, a, b in ((nxt, vma, nxt), (prev, prev, vma)):
            if old is None or a.end != b.start or a.file != b.file:
                continue
            if b.pgoff != a.pgoff + (b.start - a.start):
                continue
            av = self.av(old)
            if av is not None and len(self.chain(old)) == 1:
                return av
        return None

    def anon_vma_prepare(self, vma):
        """``__anon_vma_prepare()``: one AVC, and a new anon_vma (a root) unless a
        mergeable neighbour's is reused."""
        self._made(self.k.prepare(self.node(vma), self._find_mergeable(vma)))

    def anon_vma_clone(self, dst, src):
        """``anon_vma_clone()`` as split / merge / ``copy_vma()`` call it: an exact
        copy (``dst->anon_vma`` already set, so no reuse)."""
        self._made(self.k.clone(self.node(dst), self.node(src)))

    def anon_vma_fork(self, pvma, cvma):
        """``anon_vma_fork()``: clone the parent's chain (reusing an anon_vma of
        it when ``anon_vma_clone()``'s rule allows), else a new anon_vma (root =
        parent's root, which it pins) and one more AVC."""
        if self.av(pvma) is None:
            return                           # "Don't bother if the parent has no anon_vma"
        clones, own, _ = self.k.fork(self.nodes[pvma], self.node(cvma))
        self._made(clones)
        self._made(own)

    def unlink_anon_vmas(self, vma):
        """``unlink_anon_vmas()``: every AVC of the VMA freed; an anon_vma whose
        tree empties is put (``__put_anon_vma()``)."""
        n = self.nodes.pop(vma, None)
        if n is None:
            return
        avcs, avs = self.k.unlink(n)
        if avcs:
            self._version += 1
            self.n.sub(AVC, len(avcs))
        self.n.sub(AV, len(avs))

    # ------------------------------------------------------------------ hooks
    def prepare(self, vma):
        """On the fault path: ``__anon_vma_prepare()``
        (:meth:`anon_vma_prepare`) when the VMA has no anon_vma yet."""
        if self.av(vma) is None:
            self.anon_vma_prepare(vma)

    def new_folio(self, folio, vma):
        """``__folio_set_anon()``: the new folio's anon_vma is its VMA's."""
        self.fav[folio] = self.nodes[vma].anon_vma    # __folio_set_anon(): vma->anon_vma

    def reuse_folio(self, folio, vma):
        """``folio_move_anon_rmap()``: the reused folio moves to the reusing
        VMA's anon_vma, when that VMA has one."""
        av = self.av(vma)
        if av is not None:
            self.fav[folio] = av            # folio_move_anon_rmap()

    def fork_vma(self, pvma, cvma):
        """``anon_vma_fork()`` of the child's copy ``cvma`` of ``pvma``
        (:meth:`anon_vma_fork`)."""
        self.anon_vma_fork(pvma, cvma)

    def fork_transient(self, parent, child, pvmas):
        """Count what ``anon_vma_fork()`` allocates for the dropped copies and
        their munmap frees again: per parent VMA with an anon_vma, an AVC per
        AVC of its chain, plus an anon_vma and its AVC when
        ``anon_vma_clone()``'s rule finds no reusable one."""
        clones = own = 0
        for n in map(self.nodes.get, pvmas):
            if n is None or n.anon_vma is None:
                continue
            chain = n.chain
            clones += len(chain)
            if kernel.reusable(self.k.clone_order(chain)) is None:
                own += 1
        # the copies' AVCs and own anon_vmas, all freed again by their munmap:
        # an own anon_vma's tree holds only its AVC (no folio was faulted in it)
        self.n.transient(AVC, clones + own)
        self.n.transient(AV, own)

    def split(self, vma, new):
        """``__split_vma()``: ``anon_vma_clone()`` of ``vma``'s chain into the
        new piece."""
        self.anon_vma_clone(new, vma)

    def mremap(self, old, new):
        """``copy_vma()``: ``anon_vma_clone()`` of ``old``'s chain into the
        moved copy."""
        self.anon_vma_clone(new, old)

    def unmap_vma(self, vma):
        """``unlink_anon_vmas()`` of the VMA that leaves its mm."""
        self.unlink_anon_vmas(vma)

    def folio_freed(self, folio):
        """Forget the freed folio's anon_vma."""
        self.fav.pop(folio, None)

    # ------------------------------------------------------------------- walk
    def eager_walk(self, folio, av):
        """``rmap_walk_anon()``: the root's rwsem read-locked, then every AVC
        ``anon_vma_interval_tree_iter_first/_next`` return for the folio's
        ``[index, index + nr - 1]``; ``rmap_one`` runs on each AVC's VMA."""
        assert not av.freed, "walk of a folio whose anon_vma was freed"
        lo, hi = folio.index, folio.index + folio.nr - 1
        visits = 0
        for avc in av.tree:
            v = avc.vma.vma
            if v.pgoff <= hi and v.pgoff + (v.end - v.start) - 1 >= lo:
                visits += 1
        return {"visits": visits, "lock": LOCK_ROOT, "tree_avcs": len(av.tree),
                "root_mms": self.root_mms(av.root)}

    def root_mms(self, root):
        """Live mms with a VMA linked into any anon_vma under ``root``: the
        processes whose rmap work takes this root's rwsem."""
        hit = self._root_mms.get(root)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        mms = {avc.vma.vma.mm for av in root.members for avc in av.tree}
        self._root_mms[root] = (self._version, len(mms))
        return len(mms)

    def walk(self, folio):
        """``rmap_walk_anon()`` of the folio's anon_vma
        (:meth:`eager_walk`)."""
        return self.eager_walk(folio, self.fav[folio])

    def memory(self):
        """The anon_vma and anon_vma_chain counts (:meth:`Counts.report`)."""
        return self.n.report()


# ---------------------------------------------------------------------- lazy

class Token:
    """A lazy VMA's identity (the series' ``root_vma``): its split pieces share
    it; its lazy folios point at it."""

    __slots__ = ("vmas", "folios", "av")

    def __init__(self):
        self.vmas = set()
        self.folios = set()
        self.av = None          # the anon_vma it was upgraded to


class Lazy(Eager):
    """ANON_VMA_LAZY (docs/models.md section 2, the design in domain.md)."""

    name = "lazy"
    unit = "VMA"

    def __init__(self):
        super().__init__()
        self.tok = {}           # vma -> Token: lazy VMAs and inherited, not-upgraded VMAs
        self.tparent = {}       # inherited vma -> the parent's anon_vma ("tree parent")
        self.ftok = {}          # lazy folio -> Token
        self.upgrades = {"fork": 0, "mremap": 0, "folios_repointed": 0}

    def _token(self, vma):
        t = self.tok.get(vma)
        if t is None:
            t = self.tok[vma] = Token()
            t.vmas.add(vma)
        return t

    def upgrade(self, vma, why):
        """Upgrade every piece of ``vma``'s token: one anon_vma (shared by the
        pieces, as eager pieces share theirs), one AVC per piece, the lazy
        folios re-pointed. An inherited VMA's anon_vma follows
        ``anon_vma_fork()``: a reusable anon_vma of its chain, else a new one
        under its tree parent."""
        t = self.tok[vma]
        av = t.av
        if av is None:
            chain = self.chain(vma)
            if chain:
                av = kernel.reusable(chain) or self._child_av(self.tparent[vma])
            else:
                av = self._new_root()
            t.av = av
            for folio in t.folios:
                self.fav[folio] = av
                del self.ftok[folio]
            self.upgrades["folios_repointed"] += len(t.folios)
            t.folios = set()
        for piece in list(t.vmas):
            self.upgrades[why] += 1
            del self.tok[piece]
            self.tparent.pop(piece, None)
            node = self.node(piece)
            self.k.set_anon_vma(node, av)
            if not any(a.av is av for a in node.chain):
                self._link(piece, av)
        t.vmas = set()

    # ------------------------------------------------------------------ hooks
    def prepare(self, vma):
        """L1: a VMA with no anon_vma gets a token (its root VMA identity)
        instead of ``__anon_vma_prepare()``: no anon_vma, no AVC."""
        if self.av(vma) is None:
            self._token(vma)                # L1: no anon_vma, no AVC

    def new_folio(self, folio, vma):
        """The new folio takes its VMA's anon_vma when the VMA has one, else it
        points at the VMA's token."""
        av = self.av(vma)
        if av is not None:
            self.fav[folio] = av
        else:
            t = self.tok[vma]
            self.ftok[folio] = t
            t.folios.add(folio)

    def reuse_folio(self, folio, vma):
        """When the reusing VMA has an anon_vma, the folio moves to it
        (``folio_move_anon_rmap()``) and leaves the token it pointed at;
        otherwise nothing changes."""
        av = self.av(vma)
        if av is not None:
            t = self.ftok.pop(folio, None)
            if t is not None:
                t.folios.discard(folio)
            self.fav[folio] = av

    def fork_begin(self, parent, child):
        """U1: before any copy, every VMA of ``parent`` with a token and no
        anon_vma is upgraded (:meth:`upgrade`)."""
        for vma in list(parent.vmas):       # U1: a fork upgrades every lazy VMA
            if vma in self.tok and self.av(vma) is None:
                self.upgrade(vma, "fork")

    def fork_vma(self, pvma, cvma):
        """L4, L2: the child's copy of a VMA with an anon_vma is linked into
        every anon_vma of the parent VMA's chain but gets no anon_vma of its
        own; the parent VMA's anon_vma becomes its tree parent and it gets a
        token."""
        pav = self.av(pvma)
        if pav is None:
            return
        for avc in self.nodes[pvma].chain:  # L4: the child is linked into the chain
            self._link(cvma, avc.av)
        self.tparent[cvma] = pav            # L2: no anon_vma of its own
        self._token(cvma)

    def fork_transient(self, parent, child, pvmas):
        """Count the AVCs the dropped copies' chains would allocate and their
        munmap free again (no anon_vma of their own: L2)."""
        self.n.transient(AVC, sum(len(n.chain) for n in map(self.nodes.get, pvmas)
                                  if n is not None and n.anon_vma is not None))

    def split(self, vma, new):
        """A VMA with an anon_vma: ``anon_vma_clone()``, as eager; otherwise
        the new piece is linked into the anon_vmas of ``vma``'s inherited
        chain and takes its tree parent and its token (L3), where it has
        them."""
        if self.av(vma) is not None:
            self.anon_vma_clone(new, vma)
            return
        for avc in self.chain(vma):             # an inherited VMA keeps its chain
            self._link(new, avc.av)
        if vma in self.tparent:
            self.tparent[new] = self.tparent[vma]
        t = self.tok.get(vma)
        if t is not None:                       # L3: pieces point at the root VMA
            self.tok[new] = t
            t.vmas.add(new)

    def mremap(self, old, new):
        """U2: a VMA with a token and no anon_vma is upgraded first; then
        ``anon_vma_clone()`` into the moved copy (``copy_vma()``)."""
        if self.av(old) is None and old in self.tok:
            self.upgrade(old, "mremap")         # U2
        self.anon_vma_clone(new, old)

    def unmap_vma(self, vma):
        """The VMA leaves its token and its tree parent, then
        ``unlink_anon_vmas()``."""
        t = self.tok.pop(vma, None)
        if t is not None:
            t.vmas.discard(vma)
        self.tparent.pop(vma, None)
        self.unlink_anon_vmas(vma)

    def folio_freed(self, folio):
        """Forget the freed folio's anon_vma or token."""
        self.fav.pop(folio, None)
        t = self.ftok.pop(folio, None)
        if t is not None:
            t.folios.discard(folio)

    def walk(self, folio):
        """An upgraded folio: ``rmap_walk_anon()`` (:meth:`eager_walk`); a lazy
        folio: the pieces of its token's VMA (:meth:`pointer_walk`)."""
        av = self.fav.get(folio)
        if av is not None:
            return self.eager_walk(folio, av)
        return self.pointer_walk(folio, self.ftok[folio])

    @staticmethod
    def pointer_walk(folio, t):
        """A folio that points at its VMA: the pieces of that VMA (in the one mm
        that maps it) that map the folio, i.e. 1 unless a large folio
        straddles a split; lock unknown (the series claims no anon_vma lock;
        disputed on the list)."""
        visits = sum(1 for v in t.vmas if any(f is folio for f in v.pt.values()))
        return {"visits": visits, "lock": LOCK_NONE_LAZY}

    def memory(self):
        """The anon_vma and anon_vma_chain counts (:meth:`Counts.report`)."""
        return self.n.report()


class NoFork(Lazy):
    """Leaf processes opted out (PR_SET_NOFORK). ``optout``: pids of the mms
    that never fork in the scenario (known from a first pass)."""

    name = "nofork"
    unit = "VMA"

    def __init__(self, optout):
        super().__init__()
        self.optout = frozenset(optout)

    def prepare(self, vma):
        """N1: a VMA with no anon_vma in an opted-out mm gets a token, never
        ``__anon_vma_prepare()``; in any other mm, ``__anon_vma_prepare()`` as
        eager."""
        if self.av(vma) is not None:
            return
        if vma.mm.pid in self.optout:
            self._token(vma)                # N1: never __anon_vma_prepare()
        else:
            self.anon_vma_prepare(vma)

    def fork_begin(self, parent, child):
        """Nothing to upgrade: a forking process never opted out, so its VMAs
        have no token."""
        pass                                # a forking process never opted out

    def fork_vma(self, pvma, cvma):
        """N2: ``anon_vma_fork()`` as eager; what the parent builds for the
        child is kept."""
        self.anon_vma_fork(pvma, cvma)      # N2: kept (best estimate)

    def fork_transient(self, parent, child, pvmas):
        """As eager (:meth:`Eager.fork_transient`)."""
        Eager.fork_transient(self, parent, child, pvmas)

    def split(self, vma, new):
        """The new piece shares ``vma``'s token when it has one (no AVC);
        otherwise ``anon_vma_clone()``, as eager."""
        t = self.tok.get(vma)
        if t is not None:
            self.tok[new] = t
            t.vmas.add(new)
        else:
            self.anon_vma_clone(new, vma)

    # mremap: Lazy's (U2): the moved VMA gets an anon_vma first, then
    # anon_vma_clone(); no-fork has no folio-to-VMA pointer that can follow a
    # move (N5), so a moved VMA keeps its anon_vma as eager's does


class NoForkClone(NoFork):
    """PR_SET_NOFORK set at clone (docs/models.md section 3, N4 under
    ``nofork_clone``): an opted-out child's copy is linked into the parent
    VMA's chain (the clone_fork links stay, N4') but gets no anon_vma of its
    own and no AVC to one; it takes a token, as a lazy child does (L2, L4).
    Its splits keep the n-1 links into the parent's tree (L3)."""

    name = "nofork_clone"

    def fork_vma(self, pvma, cvma):
        """N4 and N4': for an opted-out child :meth:`Lazy.fork_vma`, else
        ``anon_vma_fork()`` as eager."""
        if cvma.mm.pid in self.optout:
            Lazy.fork_vma(self, pvma, cvma)
        else:
            self.anon_vma_fork(pvma, cvma)

    def fork_transient(self, parent, child, pvmas):
        """As the child's design: :meth:`Lazy.fork_transient` for an
        opted-out child, else eager's."""
        if child.pid in self.optout:
            Lazy.fork_transient(self, parent, child, pvmas)
        else:
            Eager.fork_transient(self, parent, child, pvmas)

    def split(self, vma, new):
        """:meth:`Lazy.split`: a piece of an inherited VMA keeps the links
        into the parent's tree and shares the token; a VMA with an anon_vma
        is cloned as eager."""
        Lazy.split(self, vma, new)


# --------------------------------------------------------------- CoW context

class Ctx:
    """The CoW context of one mm: its parent's context, its children's contexts
    and whether it was freed."""

    __slots__ = ("mm", "parent", "children", "freed")

    def __init__(self, mm, parent):
        self.mm = mm
        self.parent = parent
        self.children = []
        self.freed = False


class Remap:
    """A remap entry of an mm's maple tree: ``kind`` mremap (``[lo, hi)`` is
    the source range of a moved anonymous VMA) or file (the range of a
    MAP_PRIVATE file VMA with CoW'd folios)."""

    __slots__ = ("kind", "lo", "hi", "refs")

    def __init__(self, kind, lo, hi):
        self.kind, self.lo, self.hi, self.refs = kind, lo, hi, 0


class CowContext(Design):
    """The CoW-context draft as domain.md describes it; see docs/models.md
    section 4 for the assumptions made where the draft says nothing."""

    name = "cow_context"
    unit = "mm"

    def __init__(self):
        self.n = Counts(("context", "remap_entry"))
        self.ctx = {}           # mm -> Ctx
        self.fctx = {}          # folio -> (Ctx, address in that context's mm)
        self.refs = {}          # vma -> [Remap]
        self.mm_remaps = {}     # mm -> {Remap}
        self._version = 0
        self._subtree = {}
        self._fork_map = None

    def _attach(self, vma, entry):
        entry.refs += 1
        self.refs.setdefault(vma, []).append(entry)
        self.mm_remaps.setdefault(vma.mm, set()).add(entry)

    def _new_entry(self, vma, kind, lo, hi):
        e = Remap(kind, lo, hi)
        self.n.add("remap_entry")
        self._attach(vma, e)

    # ------------------------------------------------------------------ hooks
    def new_mm(self, mm):
        """One context per mm, made a child of the parent mm's context when the
        mm is a fork's child."""
        parent = self.ctx.get(mm.parent) if mm.parent is not None else None
        c = self.ctx[mm] = Ctx(mm, parent)
        if parent is not None:
            parent.children.append(c)
        self.n.add("context")
        self._version += 1

    def fork_begin(self, parent, child):
        """Start this fork's map from the parent's remap entries to the child's
        copies."""
        self._fork_map = {}

    def fork_vma(self, pvma, cvma):
        """The child copies the remap entries of ``pvma``: one new entry per
        parent entry in this fork, shared by the child VMAs it describes."""
        for e in self.refs.get(pvma, ()):       # the child copies the remap tree
            ne = self._fork_map.get(e)
            if ne is None:
                ne = self._fork_map[e] = Remap(e.kind, e.lo, e.hi)
                self.n.add("remap_entry")
            self._attach(cvma, ne)

    def fork_transient(self, parent, child, pvmas):
        """Count the remap entries only the dropped copies would have copied,
        allocated and freed again."""
        only = {e for p in pvmas for e in self.refs.get(p, ())} - set(self._fork_map)
        self.n.transient("remap_entry", len(only))

    def prepare(self, vma):
        """A MAP_PRIVATE file VMA without a file remap entry gets one covering
        it; an anonymous VMA needs nothing."""
        if not vma.anonymous and not any(e.kind == "file" for e in self.refs.get(vma, ())):
            self._new_entry(vma, "file", vma.start, vma.end)

    def new_folio(self, folio, vma):
        """C1: the folio's context is its allocating mm's, at the address it
        had there."""
        self.fctx[folio] = (self.ctx[vma.mm], folio.addr)

    def reuse_folio(self, folio, vma):
        """C1: a reused folio moves to the reusing mm's context, at the page
        where ``vma`` maps it (assumed: like ``folio_move_anon_rmap()``)."""
        page = next(p for p, f in vma.pt.items() if f is folio)
        self.fctx[folio] = (self.ctx[vma.mm], page)     # assumed: like folio_move_anon_rmap()

    def split(self, vma, new):
        """The new piece shares ``vma``'s remap entries (a split adds none)."""
        for e in self.refs.get(vma, ()):
            self._attach(new, e)

    def mremap(self, old, new):
        """The moved copy shares ``old``'s remap entries; an anonymous VMA also
        gets a new mremap entry for its source range."""
        for e in self.refs.get(old, ()):
            self._attach(new, e)
        if old.anonymous:
            self._new_entry(new, "mremap", old.start, old.end)

    def unmap_vma(self, vma):
        """The VMA drops its remap entries; an entry no VMA refers to any more
        is freed."""
        for e in self.refs.pop(vma, ()):
            e.refs -= 1
            if not e.refs:
                self.n.sub("remap_entry")
                self.mm_remaps[vma.mm].discard(e)

    def exit_mm(self, mm):
        """C4: free the exited mm's context, and its dead ancestors' in turn,
        unless a live descendant keeps it."""
        self._version += 1
        self._maybe_free(self.ctx[mm])

    def _maybe_free(self, c):
        """A context lives while its mm does or while it links a live
        descendant (assumed)."""
        while c is not None and not c.freed and not c.mm.alive \
                and all(ch.freed for ch in c.children):
            c.freed = True
            self.n.sub("context")
            c = c.parent

    def folio_freed(self, folio):
        """Forget the freed folio's context."""
        self.fctx.pop(folio, None)

    # ------------------------------------------------------------------- walk
    def live_subtree(self, c):
        """Live mms of the subtree rooted at ``c`` (``c``'s own mm included)."""
        hit = self._subtree.get(c)
        if hit is not None and hit[0] == self._version:
            return hit[1]
        out, stack = [], [c]
        while stack:
            x = stack.pop()
            if x.mm.alive:
                out.append(x.mm)
            stack.extend(x.children)
        self._subtree[c] = (self._version, out)
        return out

    def walk(self, folio):
        """C2, C3: visit every live mm of the subtree of the folio's context;
        ``lookups`` adds the remap entries of those mms that cover the folio's
        address. C7: a folio that only its context's mm maps is exclusive
        (``folio_maybe_mapped_shared()`` false): the walk stops at that mm.
        C6 (exec cuts the subtree) does not arise: scenarios have no exec."""
        c, addr = self.fctx[folio]
        exclusive = len(folio.maps) == 1 and c.mm in folio.maps
        mms = [c.mm] if exclusive and c.mm.alive else self.live_subtree(c)
        extra = 0
        for mm in mms:
            for e in self.mm_remaps.get(mm, ()):
                if e.lo <= addr < e.hi:
                    extra += 1
        own = 1 if c.mm.alive else 0
        return {"visits": len(mms), "lock": LOCK_COW, "descendant_mms": len(mms) - own,
                "lookups": len(mms) + extra}

    def memory(self):
        """Counts of contexts and remap entries, with no anon_vma and no
        anon_vma_chain (C8)."""
        r = self.n.report()
        zero = {"allocated": 0, "live": 0, "peak_live": 0}
        return {AV: dict(zero), AVC: dict(zero), "context": r["context"],
                "remap_entry": r["remap_entry"]}
