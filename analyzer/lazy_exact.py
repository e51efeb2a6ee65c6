"""Exact per-VMA ANON_VMA_LAZY replay on function-probe recordings
(docs/models.md#lazy-exact).

On a schema v3 recording from the function-probe backend, every anon_vma
and AVC allocation carries the VMA it was made for (``vma_id``) and, for
``anon_vma_fork()`` / ``anon_vma_clone()``, the VMA copied from
(``src_vma_id``). The tracepoint model (lazy.py) has to guess which VMA an
object serves; here each VMA's objects are known, so the rules of
docs/models.md section 2 and the explicit model W4 (section 4.3) are applied
VMA by VMA:

- a VMA's *birth* is the one call that gave it its first anon_vma link:
  ``__anon_vma_prepare()`` (a *fault* root), ``anon_vma_fork()`` (an
  *inherited* root: the child's copy), ``anon_vma_clone()`` outside fork
  (split / merge: a *piece* of its source's token; mremap: a copy of an
  upgraded VMA);
- a token (the lazy series' root VMA) is a fault or inherited root with the
  pieces split or merged off it while it is lazy; it is upgraded at the
  first process fork of its process after the root's birth, or at the first
  mremap of any of its pieces, whichever comes first; every piece alive then
  gets one AVC, the token one anon_vma.

Everything is vectorised over the VMAs: roots by pointer doubling, the next
fork by a sorted search (lazy._next_in_group), per-token minima with
``np.minimum.at``.
"""

import numpy as np

from . import live, moves
from .eager import RMAP_OBJECTS, rmap_allocs
from .lazy import Result, _next_in_group, saved_fields, vma_growth
from .live import NEVER
from .load import CALLER_CODE, OBJECT_CODE, PATH_CODE
from .objlookup import stats
from .order import unique

SECTION = "docs/models.md#lazy-exact"
COSTS = "docs/models.md#lazy-costs"
FIDELITY = "exact (function probes)"

FAULT, INHERITED, PIECE, MREMAP_COPY, PREPIECE, OTHER = range(6)
KIND_NAMES = ("fault", "inherited", "piece", "mremap_copy", "piece_of_prerun_vma", "other")


class VmaReplay:
    """The VMAs of a recording and, per VMA, its lazy token and upgrade.
    ``file_eager``: tokens whose root maps a file (MAP_PRIVATE) stay eager,
    the series' minimal variant."""

    def __init__(self, rp, file_eager=False):
        ob = rp.ob
        rows = rmap_allocs(rp)
        vid_all = ob.vma_id[rows]
        attributed = vid_all >= 0
        self.unattributed = rows[~attributed]
        rows = rows[attributed]
        self.rows = rows
        n = len(rows)
        self.pos = ob.pos[rows].astype(np.int64)
        self.is_av = ob.object[rows] == OBJECT_CODE["anon_vma"]
        self.path = ob.path[rows]
        self.owner = ob.owner[rows].astype(np.int64)
        self.tgid = ob.tgid[rows].astype(np.int64)
        self.fork_id = ob.fork_id[rows]
        self.free = rp.free_pos(rows).astype(np.int64)
        vid = vid_all[attributed]
        src = ob.src_vma_id[rows] if ob.src_vma_id is not None else np.full(n, -1)

        # one entry per VMA; rows are in replay order, so a VMA's first row is
        # the first row of its birth call
        self.vmas, first, self.vi = np.unique(vid, return_index=True, return_inverse=True)
        self.birth = self.pos[first]
        self.vowner = self.owner[first]
        self.src = src[first].astype(np.int64)
        self.kind, self.src_index = self._births(ob.caller[rows[first]], first)
        self.root = _roots(self.kind, self.src_index)
        self.file, self.capable = self._capable(rp, file_eager)
        self.upgrade_at, self.by_fork, self.lazy = self._upgrade_times(rp, src)
        self.deferred, self.root_kind = self._deferred_rows()
        self.row_upgrade_at, self.upgraded, self.tok_up, avc_up = self._upgrades()
        self.extra_start, self.extra_end = self._reuse_extra(avc_up)

    def _births(self, fcaller, first):
        """X1 birth: each VMA's kind by its first row (``first``, with its
        caller ``fcaller``): a fault root (X2), an inherited root (X3), a
        piece (X4), an mremap copy (X5), a piece of a VMA from before the
        run, or other. Returns (kind, src_index: the index of the VMA's
        source VMA, -1 when it has none in the run)."""
        nv = len(self.vmas)
        fpath = self.path[first]
        kind = np.full(nv, OTHER, dtype=np.int8)
        kind[fpath == PATH_CODE["fault"]] = FAULT
        kind[(fpath == PATH_CODE["fork"]) | (fpath == PATH_CODE["clone_fork"])] = INHERITED
        clone = fpath == PATH_CODE["clone_vma"]
        kind[clone] = PIECE
        kind[clone & (fcaller == CALLER_CODE["mremap"])] = MREMAP_COPY
        si = np.minimum(np.searchsorted(self.vmas, self.src), max(nv - 1, 0))
        src_in = (self.src >= 0) & (nv > 0) & (self.vmas[si] == self.src) if nv else \
            np.zeros(0, dtype=bool)
        src_index = np.where(src_in, si, -1)
        # a piece of a VMA whose first link predates the run: its state unknown
        kind[(kind == PIECE) & ~src_in] = PREPIECE
        return kind, src_index

    def _capable(self, rp, file_eager):
        """The VMAs that can be tokens, fault (X2) and inherited (X3) roots,
        and those that map a file (X8: with ``file_eager`` they stay eager).
        Returns (file, capable)."""
        kind = self.kind
        capable = (kind == FAULT) | (kind == INHERITED)
        calls = rp.rec.calls
        file_ids = calls.loc[calls["vma_file"].fillna(False).astype(bool), "vma_id"].to_numpy() \
            if len(calls) else np.zeros(0, np.int64)
        file = np.isin(self.vmas, file_ids)      # a MAP_PRIVATE file VMA (its call rows say)
        if file_eager:
            capable &= ~file
        return file, capable

    def _upgrade_times(self, rp, src):
        """X6 upgrade: per token, U(T), the earlier of its first copying
        fork (U1, _first_copy) and the first mremap of a piece (U2), -1 for
        a VMA that is no token; whether the fork came first; and which VMAs
        joined their token while it was lazy (X4). Returns (upgrade_at,
        by_fork, lazy)."""
        capable = self.capable
        nv = len(self.vmas)
        # upgrade triggers: the first process fork after the root's birth
        # that copies one of its pieces (U1: dup_mmap() skips VM_DONTCOPY and
        # gives a VM_WIPEONFORK copy no anon_vma; the pieces it copies with
        # anon_vma_fork() are the sources of that fork's clone_fork AVCs), and
        # the first mremap of a piece (U2)
        fork_at = np.where(capable, self._first_copy(rp, src, nv), NEVER)
        mre = self.kind == MREMAP_COPY
        moved = self.src_index[mre]
        ok = moved >= 0
        mre_at = np.full(nv, NEVER, dtype=np.int64)
        np.minimum.at(mre_at, self.root[moved[ok]], self.birth[mre][ok])
        mre_at[~capable] = NEVER
        upgrade_at = np.where(capable, np.minimum(fork_at, mre_at), -1)
        by_fork = capable & (fork_at <= mre_at) & (fork_at < NEVER)
        # a VMA is in its root's token when it joined before the upgrade
        r = self.root
        lazy = capable[r] & (self.birth < upgrade_at[r])
        return upgrade_at, by_fork, lazy

    def _deferred_rows(self):
        """The rows lazy does not allocate when made: a fault root's (L1,
        X2), an inherited root's own fork-path anon_vma and AVC (L2, X3),
        one AVC of a lazy piece (L3, X4); none in a token that stays eager.
        Returns (deferred, root_kind: the kind of each row's root)."""
        kind, r, vi = self.kind, self.root, self.vi
        nv, n = len(self.vmas), len(self.rows)
        # deferred rows: a fault root's objects (L1), an inherited root's own
        # fork-path anon_vma and AVC (L2), one AVC of a lazy piece (L3: the
        # link to the token's own anon_vma; the others link the parent's tree)
        rk = kind[r[vi]]
        own_root = np.zeros(nv, dtype=bool)            # the token has its own link
        own_avc = ~self.is_av & ((self.path == PATH_CODE["fault"])
                                 | (self.path == PATH_CODE["fork"]))
        np.logical_or.at(own_root, r[vi[own_avc]], True)
        deferred = np.zeros(n, dtype=bool)
        deferred[self.path == PATH_CODE["fault"]] = True
        deferred[self.path == PATH_CODE["fork"]] = True
        piece_rows = (kind[vi] == PIECE) & self.lazy[vi] & ~self.is_av
        last = np.full(nv, -1, dtype=np.int64)
        idx = np.flatnonzero(piece_rows)
        np.maximum.at(last, vi[idx], idx)
        pick = last[(last >= 0)]
        pick = pick[own_root[r[vi[pick]]]]
        deferred[pick] = True
        deferred &= self.capable[r[vi]]                # a token that stays eager defers nothing
        return deferred, rk

    def _upgrades(self):
        """X6: each deferred AVC whose VMA is alive at its token's upgrade
        is allocated then, and the token's deferred anon_vma with it.
        Returns (row_upgrade_at: each row's token's U(T), upgraded rows,
        tok_up: upgraded tokens, the upgraded AVC rows)."""
        r, vi, deferred = self.root, self.vi, self.deferred
        # upgrades: a deferred AVC whose VMA is alive at its token's upgrade;
        # the token's anon_vma when any of its AVCs is upgraded
        up_at = self.upgrade_at[r[vi]]
        avc_up = deferred & ~self.is_av & (up_at >= 0) & (up_at < NEVER) & (self.free > up_at)
        tok_up = np.zeros(len(self.vmas), dtype=bool)
        np.logical_or.at(tok_up, r[vi[avc_up]], True)
        av_up = deferred & self.is_av & tok_up[r[vi]]
        return up_at, avc_up | av_up, tok_up, avc_up

    def _reuse_extra(self, avc_up):
        """X6's high end: an upgraded fault root without an anon_vma row
        allocates one at its upgrade, live until its last upgraded AVC
        (``avc_up``) is freed. Returns (extra_start, extra_end)."""
        r, vi = self.root, self.vi
        nv = len(self.vmas)
        # a fault root that reused a neighbour's anon_vma (no anon_vma row):
        # the series does not say whether its upgrade reuses one again (as
        # eager's find_mergeable_anon_vma did) or allocates one (W4); the best
        # value reuses, the high end allocates one, live until its last
        # upgraded AVC (rule X6, one rule with the estimate's U1)
        has_av = np.zeros(nv, dtype=bool)
        np.logical_or.at(has_av, r[vi[self.deferred & self.is_av]], True)
        extra = np.flatnonzero(self.tok_up & ~has_av & (self.kind == FAULT))
        end = np.zeros(nv, dtype=np.int64)
        np.maximum.at(end, r[vi[avc_up]], self.free[avc_up])
        return self.upgrade_at[extra], end[extra]

    def _first_copy(self, rp, src, nv):
        """Per token: the position of the first process fork that copies one
        of its pieces (NEVER: none). Recordings whose clone_fork rows carry
        no source VMA fall back to the owner's next process fork."""
        forks = rp.tree.forks
        fid = forks["fork_id"].to_numpy().astype(np.int64)
        fpos = forks["pos"].to_numpy().astype(np.int64)
        clone_fork = self.path == PATH_CODE["clone_fork"]
        copies = clone_fork & (src >= 0) & (self.fork_id >= 0)
        out = np.full(nv, NEVER, dtype=np.int64)
        if clone_fork.any() and not copies.any():    # no source VMAs recorded
            ftg = forks["tgid"].to_numpy().astype(np.int64)
            _, nf = _next_in_group(ftg, fpos, self.vowner, self.birth)
            return np.where(nf >= 0, nf, NEVER)
        order = np.argsort(fid)
        j = np.minimum(np.searchsorted(fid[order], self.fork_id[copies]), max(len(fid) - 1, 0))
        at = fpos[order][j] if len(fid) else np.zeros(0, np.int64)
        known = (len(fid) > 0) & (fid[order][j] == self.fork_id[copies]) if len(fid) else at.astype(bool)
        piece = np.minimum(np.searchsorted(self.vmas, src[copies]), max(nv - 1, 0))
        ok = known & (self.vmas[piece] == src[copies])
        np.minimum.at(out, self.root[piece[ok]], at[ok])
        return out

    # ----------------------------------------------------------------- walks
    def lazy_until(self):
        """For each attributed alloc row: the position until which the object
        is lazy (-1: never lazy; NEVER: never upgraded)."""
        up = self.row_upgrade_at
        return np.where(self.deferred, np.where(self.upgraded, up, NEVER), -1)


def _roots(kind, src_index):
    """Each VMA's token root (X4: a piece joins its source's token; the
    others are their own root), by pointer doubling."""
    # tokens: a piece's root is its source's root (pointer doubling)
    parent = np.where(kind == PIECE, src_index, -1)
    anc = np.where(parent >= 0, parent, np.arange(len(kind)))
    for _ in range(64):                           # 2**64 levels: always enough
        nxt = anc[anc]
        if np.array_equal(nxt, anc):
            break
        anc = nxt
    return anc


def _last_before(keys, pos, q_keys, q_pos):
    """Index of the last row with key ``q_keys[i]`` and a position below
    ``q_pos[i]`` (-1 when none); ``keys``/``pos`` are the rows'. One sorted
    search on (key rank, position) composites."""
    if not len(keys) or not len(q_keys):
        return np.full(len(q_keys), -1, dtype=np.int64)
    uniq, rank = np.unique(np.concatenate([keys, q_keys]), return_inverse=True)
    r_rows, r_q = rank[:len(keys)], rank[len(keys):]
    span = int(max(pos.max(), q_pos.max())) + 2
    comp = r_rows * span + pos
    order = np.argsort(comp, kind="stable")
    j = np.searchsorted(comp[order], r_q * span + q_pos, side="left") - 1
    cand = order[np.maximum(j, 0)]
    ok = (j >= 0) & (r_rows[cand] == r_q)
    return np.where(ok, cand, -1)


def _first(keys, pos, q_keys):
    """Index of the first row (lowest position) with key ``q_keys[i]``, -1 when none."""
    order = np.lexsort((pos, keys))
    k = keys[order]
    i = np.minimum(np.searchsorted(k, q_keys), max(len(k) - 1, 0))
    ok = (len(k) > 0) & (k[i] == q_keys)
    return np.where(ok, order[i], -1)


def repointed_pages(rp, x, fork_up, mremap_up, pre_src):
    """Anonymous pages the upgrades re-point (docs/models.md#lazy-costs): at
    a fork upgrade, the pages of each upgraded piece that copy_page_range()
    copied to the child at that fork (``anon_pages`` of its call row); at an
    mremap upgrade only a bound, the pieces' sizes. ``fork_up``/``mremap_up``:
    the upgraded AVC rows of x; ``pre_src``: VMAs from before the run copied
    at their process's first fork (the range's high end)."""
    c = rp.rec.calls
    copy = c[c["func"].astype(str) == "copy_page_range"]
    attached = _copy_probe_attached(rp.rec.meta)
    if not len(copy) and not attached:
        return {"fork": None, "fidelity": "not measurable",
                "reason": "no copy_page_range rows (schema before 4, or the probe did not attach): "
                          "an upgrade re-points every anonymous folio of the token",
                "see": COSTS}
    return {
        **_fork_repointed(x, copy, fork_up, pre_src),
        **_mremap_repointed_bound(rp, x, c, mremap_up),
        "unit": "base pages (a large folio counts each page: folios re-pointed <= pages)",
        "fidelity": "exact for fork upgrades of fault roots (copy_page_range: the child mm's MM_ANONPAGES "
                    "gain, present pages, swapped-out ones not counted); inherited roots: [0, their pages] "
                    "(pages still shared with the parent point at its anon_vma); mremap: upper bound (VMA sizes)",
        "see": COSTS,
    }


def _copy_probe_attached(meta):
    """Whether the recording's copy_page_range() probe attached (its rows
    may then be absent only because no fork copied a VMA)."""
    return any(isinstance(p, dict) and p.get("attached") and str(p.get("name", "")).endswith(":copy_page_range")
               for p in meta.get("probes") or [])


def _fork_repointed(x, copy, fork_up, pre_src):
    """The fork entries of repointed_pages (U1): per upgraded AVC row of
    ``fork_up``, the ``anon_pages`` of the last copy_page_range() row
    (``copy``) from its VMA before the upgrade; the range's high end adds
    the inherited roots' pages and those of ``pre_src`` (_prerun_copied_pages)."""
    src = copy["src_vma_id"].to_numpy().astype(np.int64)
    cpos = copy["pos"].to_numpy().astype(np.int64)
    pages = copy["anon_pages"].to_numpy().astype(np.int64)
    fr = np.flatnonzero(fork_up)
    hit = _last_before(src, cpos, x.vmas[x.vi[fr]], x.row_upgrade_at[fr])
    got_all = np.where(hit >= 0, pages[np.maximum(hit, 0)], 0) if len(pages) else np.zeros(len(hit), np.int64)
    # a fault root's anonymous pages are all its token's: exact; an inherited
    # root's copy also counts the pages it still shares with its parent,
    # which point at the parent's (upgraded) anon_vma: [0, pages]
    fault_root = x.root_kind[fr] == FAULT
    n_fork = int(got_all[fault_root].sum())
    inherited = int(got_all[~fault_root].sum())
    extra = _prerun_copied_pages(src, cpos, pages, pre_src)
    return {
        "fork": n_fork, "fork_range": [n_fork, n_fork + inherited + extra],
        "fork_inherited_roots_upper": inherited,
        "per_fork_upgrade": stats(got_all[hit >= 0]),
        "fork_upgrades_without_copy_row": int((hit < 0).sum()),
    }


def _prerun_copied_pages(src, cpos, pages, pre_src):
    """Pages of the pre-run parent VMAs (``pre_src``) copied at their
    process's first fork in the run: each one's first copy_page_range() row
    (``src``, ``cpos``, ``pages``: the copy rows' columns)."""
    if not len(pre_src):
        return 0
    first = _first(src, cpos, pre_src.astype(np.int64))
    return int(pages[first[first >= 0]].sum())


def _mremap_repointed_bound(rp, x, c, mremap_up):
    """The mremap entries of repointed_pages (U2): only a bound, the sizes
    in pages of the upgraded pieces (``mremap_up``) at their last call row
    (of ``c``) before the upgrade."""
    # mremap: the pieces' sizes at their last call row before the upgrade
    page = int(rp.rec.meta.get("page_size") or 4096)
    mr = np.flatnonzero(mremap_up)
    vma_of_call = c["vma_id"].to_numpy().astype(np.int64)
    last = _last_before(vma_of_call, c["pos"].to_numpy().astype(np.int64), x.vmas[x.vi[mr]], x.row_upgrade_at[mr])
    size = (c["vm_end"].to_numpy().astype(np.int64) - c["vm_start"].to_numpy().astype(np.int64)) // page
    return {"mremap": None, "mremap_upper_bound": int(size[last[last >= 0]].sum()),
            "mremap_upgrades_without_size": int((last < 0).sum())}


def _with_pinned_peak(rp, entry, pinned, slot):
    """Lazy's VMA peak (rule X9): eager's run VMAs plus the pinned root VMAs,
    each pin starting just after its VMA's eager free (positions doubled so
    that a pin's start never shares one with that free). Updates ``entry``."""
    r = rp.rows("vm_area_struct")
    a = r[rp.ob.is_alloc[r]]
    ends = rp.free_pos(a)

    def twice(p, plus=0):
        p = np.asarray(p, dtype=np.int64)
        return np.where(p < NEVER, 2 * p + plus, NEVER)
    s = live.summary_intervals(np.concatenate([twice(rp.ob.pos[a]), twice(pinned.starts, 1)]),
                               np.concatenate([twice(ends), twice(pinned.ends)]))
    entry["peak_live"] = max(entry["peak_live"], s["peak"])
    entry["peak_live_bytes"] = entry["peak_live"] * slot


def pinned_roots(rp, x, slot):
    """Root VMAs the lazy kernel must keep (rule X9): a token's root VMA that
    eager frees (munmap, a merge that removes it) while a piece of the token
    is still mapped and the token is still lazy stays allocated, pinned by
    the pieces' and folios' references, until the last piece goes or the
    token is upgraded. ``slot``: bytes per lazy VMA. Returns (the
    ``pinned_root_vmas`` entry, {"vm_area_struct": live.Spans} of the pinned
    roots, the snapshots' ``lazy_pinned``)."""
    ob = rp.ob
    vf = np.flatnonzero(~ob.is_alloc & (ob.object == OBJECT_CODE["vm_area_struct"]))
    ids, fpos = ob.obj_id[vf], ob.pos[vf].astype(np.int64)
    order = np.argsort(ids, kind="stable")
    ids, fpos = ids[order], fpos[order]
    nv = len(x.vmas)
    vfree = np.full(nv, NEVER, dtype=np.int64)
    if len(ids) and nv:
        i = np.minimum(np.searchsorted(ids, x.vmas), len(ids) - 1)
        ok = ids[i] == x.vmas
        vfree[ok] = fpos[i[ok]]
    last = np.full(nv, -1, dtype=np.int64)                    # the token's last lazy member to go
    members = np.flatnonzero(x.lazy)
    np.maximum.at(last, x.root[members], vfree[members])
    up = x.upgrade_at
    pinned = x.capable & (vfree < NEVER) & (vfree < last) & (vfree < up)
    start = vfree[pinned]
    end = np.minimum(last[pinned], up[pinned])
    s = live.summary_intervals(start, end)
    return ({"count": int(pinned.sum()), "peak_live": s["peak"], "peak_live_bytes": s["peak"] * slot,
             "live_at_end": s["end"], "fidelity": FIDELITY, "see": COSTS},
            {"vm_area_struct": live.Spans(start, end)})


def file_vmas(rp, x, kept, up, is_av):
    """The lazy savings split by the root VMA of each token: anonymous or a
    MAP_PRIVATE file (whose CoW pages are anonymous; a reviewer called lazy
    broken for them), and the counts of the series' minimal variant in which
    file VMAs stay eager (docs/models.md#lazy-exact, X8)."""
    saved = ~kept & ~up
    file_row = x.file[x.root[x.vi]]
    out = {"tokens": {"anon": int((x.capable & ~x.file).sum()), "file": int((x.capable & x.file).sum())},
           "saved": {o: {"anon": int((saved & sel & ~file_row).sum()), "file": int((saved & sel & file_row).sum())}
                     for o, sel in (("anon_vma", is_av), ("anon_vma_chain", ~is_av))}}
    if not (x.capable & x.file).any():
        out["file_vmas_eager"] = None
    else:
        y = VmaReplay(rp, file_eager=True)
        is_av = rp.ob.object[y.unattributed] == OBJECT_CODE["anon_vma"]
        n_un = {"anon_vma": int(is_av.sum()), "anon_vma_chain": int((~is_av).sum())}
        kept_y = ~y.deferred | y.upgraded
        out["file_vmas_eager"] = {o: int((kept_y & sel).sum()) + n_un[o]
                                  for o, sel in (("anon_vma", y.is_av), ("anon_vma_chain", ~y.is_av))}
    out["fidelity"] = FIDELITY + ": file or not from vma_file on the VMA's call rows"
    out["see"] = SECTION
    return out


def _first_fork_ids(forks):
    fid = forks["fork_id"].to_numpy().astype(np.int64)
    first = forks["first"].to_numpy(dtype=bool)
    return fid[first & (fid >= 0)]


def _prerun_range(rp, x):
    """The range's VMAs from before the run (docs/models.md#lazy-exact):
    (pre_src: such parent VMAs copied at their process's first fork in the
    run, high_extra: their number, low_drop: the AVCs of pieces split off
    such VMAs)."""
    # range: VMAs whose first anon_vma link predates the run, lazy or not
    # before it (docs/models.md#lazy-exact): high adds one anon_vma and AVC
    # per such parent VMA copied at its process's first fork in the run (the
    # upgrade it would need if it were lazy); low drops the AVCs of pieces
    # split off such VMAs (deferred if those were lazy)
    vi = x.vi
    pre_parent = (x.kind == INHERITED) & (x.src_index < 0) & (x.src >= 0)
    first_fork = np.isin(x.fork_id, _first_fork_ids(rp.tree.forks))
    row_pre_parent = pre_parent[vi] & first_fork
    pre_src = unique(x.src[vi[row_pre_parent]]) if row_pre_parent.any() else np.zeros(0)
    high_extra = int(len(pre_src))
    low_drop = int(((x.kind[vi] == PREPIECE) & ~x.is_av).sum())
    return pre_src, high_extra, low_drop


def _objects(rp, x, start, kept, up, high_extra, low_drop):
    """Per object: the count (the kept and upgraded rows, X2-X6, plus the
    unattributed ones, kept as in eager, X7), its range (_prerun_range, and
    X6's high end) and the peak live from ``start``. Returns (per_obj,
    {object: live.Spans}: the run spans of the snapshots, S4)."""
    ob = rp.ob
    is_av = x.is_av
    un_is_av = ob.object[x.unattributed] == OBJECT_CODE["anon_vma"]
    per_obj, spans = {}, {}
    for obj, sel, un_sel, new_av in (("anon_vma", is_av, un_is_av, len(x.extra_start)),
                                     ("anon_vma_chain", ~is_av, ~un_is_av, 0)):
        size = rp.sizes[obj][0]
        live_rows = sel & (start >= 0)
        s_pos = np.concatenate([start[live_rows], ob.pos[x.unattributed[un_sel]]])
        s_free = np.concatenate([x.free[live_rows], rp.free_pos(x.unattributed[un_sel])])
        s = live.summary_intervals(s_pos, s_free)
        spans[obj] = live.Spans(s_pos, s_free)
        nobj = int((sel & (kept | up)).sum()) + int(un_sel.sum())
        lo = nobj - (low_drop if obj == "anon_vma_chain" else 0)
        hi = nobj + high_extra + new_av
        per_obj[obj] = {
            "allocated": nobj, "bytes": nobj * size, "allocated_range": [max(lo, 0), hi],
            "bytes_range": [max(lo, 0) * size, hi * size],
            "peak_live": s["peak"], "peak_live_bytes": s["peak"] * size,
            "fidelity": FIDELITY if lo == hi else
            FIDELITY + "; range: VMAs whose first anon_vma predates the run",
            "see": SECTION,
        }
    return per_obj, spans


def _upgraded_avcs(x):
    """(fork_up, mremap_up): the upgraded AVC rows of tokens upgraded at a
    fork (U1) and at an mremap (U2), X6."""
    # upgrades: VMAs (one AVC each) and tokens (one anon_vma each)
    avc_up = x.upgraded & ~x.is_av
    rr = x.root[x.vi]
    return avc_up & x.by_fork[rr], avc_up & ~x.by_fork[rr]


def _upgrades(x, fork_up, mremap_up, high_extra):
    """The ``upgrades`` entry (X6): one AVC per upgraded VMA, one anon_vma
    per upgraded token, by fork (U1) and mremap (U2)."""
    n_fork, n_mre = int(fork_up.sum()), int(mremap_up.sum())
    tok_fork = int((x.tok_up & x.by_fork).sum())
    tok_mre = int((x.tok_up & ~x.by_fork).sum())
    return {
        "fork": n_fork, "mremap": n_mre,
        "fork_range": [n_fork, n_fork + high_extra], "mremap_range": [n_mre, n_mre],
        "objects": {"anon_vma": tok_fork + tok_mre, "anon_vma_chain": n_fork + n_mre},
        "tokens": {"fork": tok_fork, "mremap": tok_mre},
        "mremap_unknown_sources": 0,
        "fidelity": FIDELITY, "see": SECTION,
    }


def _extra_costs(rp, x, slot, upgrades, fork_up, mremap_up, pre_src):
    """The ``extra_costs`` entry (docs/models.md#lazy-costs): the upgrades
    (X6), the objects allocated inside fork, the re-pointed pages and the
    pinned root VMAs (X9) at the lazy VMA's ``slot`` bytes. Returns (the
    entry, the pinned root VMAs' spans for the snapshots, S4)."""
    ob = rp.ob
    clone_fork = int((x.path == PATH_CODE["clone_fork"]).sum()) + int(
        (ob.path[x.unattributed] == PATH_CODE["clone_fork"]).sum())
    fork_eager = int(np.isin(x.path, [PATH_CODE["fork"], PATH_CODE["clone_fork"]]).sum()) + int(
        np.isin(ob.path[x.unattributed], [PATH_CODE["fork"], PATH_CODE["clone_fork"]]).sum())
    n_fork, n_mre, tok_fork = upgrades["fork"], upgrades["mremap"], upgrades["tokens"]["fork"]
    out = {
        "upgrades": {"fork": n_fork, "mremap": n_mre, "objects": upgrades["objects"]},
        "fork_time_objects": {
            "eager": fork_eager, "lazy": clone_fork + n_fork + tok_fork,
            "note": "anon_vma + AVC allocated inside fork: eager fork + clone_fork rows; "
                    "lazy clone_fork + fork upgrades (one AVC per VMA, one anon_vma per token)",
            "fidelity": FIDELITY, "see": COSTS,
        },
        "repointed_pages": repointed_pages(rp, x, fork_up, mremap_up, pre_src),
    }
    out["pinned_root_vmas"], pinned = pinned_roots(rp, x, slot)
    return out, pinned


def _vmas(x, high_extra):
    """The ``vmas`` entry: VMAs by birth (X1-X5), tokens, and the objects
    without a VMA (X7)."""
    n_un = len(x.unattributed)
    kinds = np.bincount(x.kind, minlength=len(KIND_NAMES))
    return {
        "with_anon_objects": int(len(x.vmas)),
        "by_birth": {k: int(kinds[i]) for i, k in enumerate(KIND_NAMES)},
        "tokens": int(x.capable.sum()),
        "tokens_upgraded": int(x.tok_up.sum()),
        "prerun_parent_vmas_at_first_fork": high_extra,
        "unattributed_objects": n_un,
        "note": "objects without vma_id (made outside the probed functions, or probes that "
                "did not attach) are kept as in eager" if n_un else None,
    }


def _tracepoint_estimate(tracepoint, per_obj, upgrades):
    """The tracepoint estimate of the same recording (lazy.model's report
    entry), with whether the exact replay lies within its bounds
    (docs/models.md#lazy-bounds)."""
    est = {o: {"allocated": tracepoint[o]["allocated"],
               "allocated_range": tracepoint[o]["allocated_range"],
               "peak_live": tracepoint[o]["peak_live"]} for o in RMAP_OBJECTS}
    tu = tracepoint["upgrades"]
    est["upgrades"] = {k: tu[k] for k in ("fork", "mremap", "fork_range", "mremap_range")}
    est["fidelity"] = "estimate"
    est["see"] = "docs/models.md#lazy-bounds"
    within = {o: est[o]["allocated_range"][0] <= per_obj[o]["allocated"]
              <= est[o]["allocated_range"][1] for o in RMAP_OBJECTS}
    # upgrades in total: the estimate calls the pieces left behind by a
    # moved piece fork upgrades, the exact replay (W4) upgrades the whole
    # token at the mremap
    within["upgrades"] = (tu["fork_range"][0] + tu["mremap_range"][0] <= upgrades["fork"] + upgrades["mremap"]
                          <= tu["fork_range"][1] + tu["mremap_range"][1])
    est["exact_within_bounds"] = within
    return est


def model(rp, eager_model, tracepoint=None):
    """The lazy model on a function-probe recording; ``tracepoint``: the
    tracepoint estimate (lazy.model) of the same recording, kept in the output
    with its bounds. Per VMA (X1-X9, docs/models.md#lazy-exact): VmaReplay,
    then the counts (_objects), upgrades and extra costs. Returns a
    lazy.Result whose spans are ``lazy``, ``lazy_extra`` and ``lazy_pinned``
    (the estimate's ``lazy_floor`` stays the snapshots' low end) and whose
    lazy state is the replay's, for the walks (W4)."""
    x = VmaReplay(rp)
    kept = ~x.deferred
    is_av, up = x.is_av, x.upgraded
    start = np.where(kept, x.pos, np.where(up, x.row_upgrade_at, -1))
    out = {"fidelity": FIDELITY, "see": SECTION}
    pre_src, high_extra, low_drop = _prerun_range(rp, x)
    per_obj, lazy_spans = _objects(rp, x, start, kept, up, high_extra, low_drop)
    out.update(per_obj)
    spans = {
        "lazy": lazy_spans,     # the exact replay replaces the estimate's (lazy_floor stays)
        # beyond eager: the high end's anon_vma per upgraded fault root that
        # reused a neighbour's (rule X6)
        "lazy_extra": {"anon_vma": live.Spans(x.extra_start, x.extra_end),
                       "anon_vma_chain": live.Spans([], [])},
    }
    ev = eager_model
    out.update(saved_fields(ev, per_obj))
    out["vm_area_struct"], out["vma_growth"] = vma_growth(rp, ev)
    fork_up, mremap_up = _upgraded_avcs(x)
    out["upgrades"] = _upgrades(x, fork_up, mremap_up, high_extra)
    slot = out["vma_growth"]["slot_bytes"][1]
    out["extra_costs"], spans["lazy_pinned"] = _extra_costs(rp, x, slot, out["upgrades"],
                                                            fork_up, mremap_up, pre_src)
    _with_pinned_peak(rp, out["vm_area_struct"], spans["lazy_pinned"]["vm_area_struct"], slot)
    out["file_vmas"] = file_vmas(rp, x, kept, up, is_av)
    out["not_modelled"] = moves.not_modelled(rp.rec.meta)
    out["vmas"] = _vmas(x, high_extra)
    if tracepoint is not None:
        out["tracepoint_estimate"] = _tracepoint_estimate(tracepoint, per_obj, out["upgrades"])
    lazy_state = {"rows": x.rows, "lazy_until": x.lazy_until(), "source": FIDELITY,
                  "replay": x}
    return Result(out, spans, lazy_state)
