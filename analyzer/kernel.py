"""The eager kernel's anon rmap rules, once (docs/models.md section 1, E1-E4).

Three simulators replay them: tests/eventgen.py (synthetic recordings for
the scenario tests), scripts/make-synthetic (benchmark and golden
recordings) and analyzer/rmapsim.py (``simulate``'s walk costs). They share
this state and these operations; each turns what an operation allocated or
freed into what it needs (rows, row arrays, counts).

State, as the kernel's structures (6.12 / 7.3 ``mm/rmap.c``):

- :class:`AnonVma`: ``root``, ``parent`` (both itself for a root),
  ``num_children`` (children whose tree is not empty, plus a root's
  self-parent link), ``num_active_vmas`` (VMAs whose ``anon_vma`` it is),
  ``refcount`` (its own reference, dropped when its tree empties, plus on a
  root one per live anon_vma under it), ``tree``, the interval tree
  (``rb_root``) of AVCs, as a list, ``members`` (on a root: the live
  anon_vmas under it, what its rwsem covers) and ``freed``;
- :class:`Avc`: ``vma`` and ``av`` (``anon_vma``);
- a VMA is any object with ``anon_vma`` (an AnonVma or None) and ``chain``
  (its AVCs, oldest first: ``anon_vma_chain`` read in reverse);
  :class:`Vma` is the smallest one.

Operations of :class:`Rmap` return the objects they made and freed, in the
order the simulators write them; ids (``id``) are the caller's to give.
"""


class AnonVma:
    """``struct anon_vma`` as the rules use it: root, parent, num_children,
    num_active_vmas, refcount, its interval tree (a list of AVCs) and, on a
    root, the live anon_vmas under it."""

    __slots__ = ("id", "root", "parent", "num_children", "num_active_vmas", "refcount",
                 "tree", "members", "freed")

    def __init__(self):
        self.id = None
        self.root = self            # anon_vma_alloc(): root and parent are itself
        self.parent = self
        self.num_children = 0
        self.num_active_vmas = 0
        self.refcount = 1
        self.tree = []              # the interval tree of AVCs, as a list
        self.members = {self}       # on a root: the live anon_vmas whose root it is
        self.freed = False

    def __repr__(self):
        return f"AnonVma({self.id})"


class Avc:
    """``struct anon_vma_chain``: one link of a VMA to an anon_vma."""

    __slots__ = ("id", "vma", "av")

    def __init__(self, vma=None, av=None):
        self.id = None
        self.vma = vma
        self.av = av


class Vma:
    """A VMA's anon rmap fields: ``anon_vma`` and its ``anon_vma_chain``
    (tail to head of the kernel's list: Rmap's docstring)."""

    __slots__ = ("anon_vma", "chain")

    def __init__(self, anon_vma=None, chain=None):
        self.anon_vma = anon_vma
        self.chain = [] if chain is None else chain


def reusable(chain):
    """``anon_vma_clone()``'s reuse test at fork (6.x; 7.x
    ``maybe_reuse_anon_vma()`` is the same): the first anon_vma of ``chain``,
    in the order the kernel tries them (:meth:`Rmap.clone_order`), with no
    active VMA and fewer than 2 children, or None."""
    for avc in chain:
        av = avc.av
        if av.num_children < 2 and av.num_active_vmas == 0:
            return av
    return None


class Rmap:
    """The operations. ``AnonVma`` and ``Avc`` name the classes made (a
    subclass adds its own fields). A VMA's ``chain`` lists its AVCs from the
    tail of the kernel's ``anon_vma_chain`` list to its head
    (``anon_vma_chain_link()`` / ``_assign()`` do ``list_add()``: a new AVC
    goes to the head, here to the end).

    ``kernel``: "6.x" or "7.x", the order in which ``anon_vma_clone()`` walks
    the source chain (:meth:`clone_order`)."""

    AnonVma = AnonVma
    Avc = Avc

    def __init__(self, kernel="6.x"):
        if kernel not in ("6.x", "7.x"):
            raise ValueError(f"kernel {kernel!r}: 6.x or 7.x")
        self.kernel = kernel

    def clone_order(self, chain):
        """The source chain's AVCs in the order ``anon_vma_clone()`` copies
        them, which is the new chain's order here and the order a fork tries
        them for reuse. 6.12 ``mm/rmap.c: anon_vma_clone()`` walks the source
        list from its tail (``list_for_each_entry_reverse``, the root's AVC
        first) and links each copy at the new list's head: the same order,
        the oldest anon_vma tried first. 7.2 and 7.3 copy the source list from
        its head (``list_for_each_entry``) into the new list's head, then
        try reuse walking the new list from its tail
        (``list_for_each_entry_reverse`` -> ``maybe_reuse_anon_vma()``):
        the new chain is the source reversed, tried newest first."""
        return list(chain) if self.kernel == "6.x" else chain[::-1]

    # ---------------------------------------------------------- primitives
    def anon_vma_alloc(self):
        """``anon_vma_alloc()``: a new anon_vma, its own root and parent."""
        return self.AnonVma()

    def new_root(self):
        """A new root anon_vma, with the self-parent link ``__anon_vma_prepare()`` counts."""
        av = self.AnonVma()
        av.num_children += 1
        return av

    def new_child(self, parent, av=None):
        """``anon_vma_fork()``'s own anon_vma (``av``, or a new one) under
        ``parent``: the root's, which it pins (``get_anon_vma(root)``)."""
        if av is None:
            av = self.AnonVma()
        root = av.root = parent.root
        av.parent = parent
        root.refcount += 1
        root.members.add(av)
        parent.num_children += 1
        return av

    def link(self, vma, av, avc=None):
        """``anon_vma_chain_link()``: an AVC (``avc``, or a new one) in the
        VMA's chain and the anon_vma's tree."""
        if avc is None:
            avc = self.Avc(vma, av)
        else:
            avc.vma, avc.av = vma, av
        vma.chain.append(avc)
        av.tree.append(avc)
        return avc

    @staticmethod
    def set_anon_vma(vma, av):
        """``vma->anon_vma = av`` and one more active VMA on it."""
        vma.anon_vma = av
        av.num_active_vmas += 1

    # ---------------------------------------------------------- operations
    def prepare(self, vma, mergeable=None):
        """``__anon_vma_prepare()`` (E1): one AVC, and a new root anon_vma
        unless ``mergeable`` (what ``find_mergeable_anon_vma()`` returned) is
        reused. Returns the new objects: [avc] or [avc, anon_vma]."""
        avc = self.Avc()
        new = [avc]
        av = mergeable
        if av is None:
            av = self.new_root()
            new.append(av)
        self.set_anon_vma(vma, av)
        self.link(vma, av, avc)
        return new

    def clone(self, dst, src):
        """``anon_vma_clone()`` as split, merge and ``copy_vma()`` call it
        (E3): one AVC per AVC of ``src``'s chain; ``dst`` (without an
        anon_vma) takes ``src``'s. Returns the new AVCs."""
        new = [self.link(dst, avc.av) for avc in self.clone_order(src.chain)]
        if src.anon_vma is not None:
            self.set_anon_vma(dst, src.anon_vma)
        return new

    def fork(self, pvma, cvma, prealloc=False):
        """``anon_vma_fork()`` of parent VMA ``pvma`` into child VMA ``cvma``
        (E2): the parent's chain cloned, then, unless ``anon_vma_clone()``'s
        rule (:func:`reusable`) reuses an anon_vma, the child's own anon_vma
        under the parent's and one more AVC. ``prealloc``: as 7.x (E2'), the
        own anon_vma and AVC are allocated before the clone and freed at once
        when an anon_vma was reused.

        Returns (clones, own, freed): the cloned AVCs, the own [anon_vma, avc]
        (empty when 6.x reused), and what was freed again ([anon_vma, avc]
        when 7.x reused; the anon_vma is put, the AVC freed by
        ``anon_vma_fork()`` itself). Allocation order: 6.x clones then own,
        7.x own then clones."""
        pav = pvma.anon_vma
        if pav is None:
            return [], [], []                # "Don't bother if the parent has no anon_vma"
        chain = self.clone_order(pvma.chain)
        pick = reusable(chain)
        own = [self.anon_vma_alloc(), self.Avc()] if prealloc else []
        clones = [self.link(cvma, avc.av) for avc in chain]
        if pick is not None:
            self.set_anon_vma(cvma, pick)
            freed = self.put(own[0]) + own[1:] if own else []
            return clones, own, freed
        if own:
            av, avc = own
            self.new_child(pav, av)
        else:
            av, avc = self.new_child(pav), None
        self.set_anon_vma(cvma, av)
        avc = self.link(cvma, av, avc)
        return clones, own or [av, avc], []

    def unlink(self, vma, put=True):
        """``unlink_anon_vmas()`` (E4): every AVC of the VMA freed; an
        anon_vma whose tree empties leaves its parent's ``num_children`` and
        is put (:meth:`put`; ``put`` False: left as it is). Returns (the AVCs,
        the anon_vmas freed), in chain order (oldest first: the order the
        generators write; the kernel's list is newest first)."""
        chain = vma.chain
        emptied = []
        for avc in chain:
            av = avc.av
            av.tree.remove(avc)
            if not av.tree:
                av.parent.num_children -= 1
                emptied.append(av)
        vma.chain = []
        av = vma.anon_vma
        if av is not None:
            av.num_active_vmas -= 1
            vma.anon_vma = None
        freed = []
        if put:
            for av in emptied:
                freed += self.put(av)
        return chain, freed

    def put(self, av):
        """``put_anon_vma()`` / ``__put_anon_vma()``: drop a reference; at 0 the
        anon_vma is freed and drops its root's, which may free the root.
        Returns the anon_vmas freed."""
        av.refcount -= 1
        if av.refcount:
            return []
        freed = [self._free(av)]
        root = av.root
        if root is not av:
            root.refcount -= 1
            if not root.refcount:
                freed.append(self._free(root))
        return freed

    @staticmethod
    def _free(av):
        av.freed = True
        av.root.members.discard(av)
        return av
