"""ANON_VMA_LAZY model (docs/models.md section 2).

Rules L1-L8 decide which eager objects the lazy kernel defers; U1 (fork,
kernel/fork.c dup_mmap -> anon_vma_fork) and U2 (mremap, mm/vma.c copy_vma)
decide when a deferred object is allocated after all, as an *upgrade*.
Everything is vectorised on numpy columns: one sorted search finds each
object's next fork of its owner, another the source of each mremap copy.
"""

from typing import NamedTuple, Optional

import numpy as np
import pandas as pd

from . import live, moves
from .eager import RMAP_OBJECTS, clone_calls, rmap_allocs, saved_pct
from .keyed import KeyedTable, by_task
from .load import CALLER_CODE, OBJECT_CODE, PATH_CODE
from .order import stable_argsort, unique
from .stream import chunks

SECTION = "docs/models.md#lazy"
RULES = "docs/models.md#lazy-rules"
BOUNDS = "docs/models.md#lazy-bounds"
COSTS = "docs/models.md#lazy-costs"

POINTER_BYTES = {"x86_64": 8, "aarch64": 8, "arm64": 8, "ppc64le": 8, "ppc64": 8,
                 "s390x": 8, "riscv64": 8, "loongarch64": 8, "mips64": 8, "sparc64": 8,
                 "i386": 4, "i486": 4, "i586": 4, "i686": 4, "armv7l": 4, "armv6l": 4,
                 "arm": 4, "riscv32": 4, "mips": 4, "ppc": 4}
REFCOUNT_BYTES = 4


#: What the lazy models do not count, and why (docs/models.md#lazy-bounds).


def pointer_bytes(arch):
    """(pointer size, how it was found) for a uname -m string."""
    if arch in POINTER_BYTES:
        return POINTER_BYTES[arch], "arch"
    if isinstance(arch, str) and "64" in arch:
        return 8, "guessed from arch name"
    return 8, "unknown arch: assumed 64-bit"


_SHIFT = 40                      # positions stay below 2**40 rows
_LOW = (1 << _SHIFT) - 1


class Allocs:
    """anon_vma and AVC allocations in replay order, as numpy columns, with
    their owner's first and next process fork."""

    def __init__(self, rp):
        ob = rp.ob
        rows = rmap_allocs(rp)
        self.rows = rows
        self.pos = ob.pos[rows]
        self.pid = ob.pid[rows]
        self.is_av = ob.object[rows] == OBJECT_CODE["anon_vma"]
        self.path = ob.path[rows]
        self.caller = ob.caller[rows]
        self.owner = ob.owner[rows]
        self.fork_id = ob.fork_id[rows]
        self.free_pos = rp.free_pos(rows)
        forks = rp.tree.forks
        ftg = forks["tgid"].to_numpy().astype(np.int64)
        fpos = forks["pos"].to_numpy().astype(np.int64)
        # whether the owner's generation forked before each row (a fork
        # since its last exec: exec gives it a new mm), and its next fork
        _, self.nf_pos = _next_in_group(ftg, fpos, self.owner, self.pos)
        ex = rp.rec.execs
        last_exec = _last_before(ex["tgid"].to_numpy().astype(np.int64), ex["pos"].to_numpy().astype(np.int64),
                                 self.owner, self.pos)
        self.prior = _last_before(ftg, fpos, self.owner, self.pos) > last_exec
        # a process the census shows to have forked before the run (L5), until its first exec
        self.prior |= np.isin(self.owner, forked_before_run(rp.rec)) & (last_exec < 0)
        P = PATH_CODE
        mremap = self.caller == CALLER_CODE["mremap"]
        clone_vma = self.path == P["clone_vma"]
        self.base_deferred = (self.path == P["fault"]) | (self.path == P["fork"])
        self.splitlike = clone_vma & ~mremap
        # the one AVC of each split/merge call the lazy kernel may not make
        # (L3): the link to the token's own anon_vma; the other n-1 link the
        # piece into the parent's tree (an inherited VMA) and stay
        self.clone_first = clone_calls(rp, rows)
        self.mremap = clone_vma & mremap
        self.own_av = _fault_pairs(self)

    def __len__(self):
        return len(self.pos)

    def index_of(self, pos):
        """Index in these arrays of each position ``pos`` (all present)."""
        return np.searchsorted(self.pos, pos)


def forked_before_run(rec):
    """tgids the start-of-run census shows to have forked before the run: a
    VMA of theirs whose anon_vma has a child anon_vma (``num_children``
    above the root's self-link, mm/rmap.c __anon_vma_prepare / anon_vma_fork
    in 6.12 and 7.3); empty without a census or before 6.0 (no num_children)."""
    c = rec.census
    if c is None or not len(c):
        return np.zeros(0, dtype=np.int64)
    obj = c["object"].astype(str).to_numpy()
    v, av = c[obj == "vm_area_struct"], c[obj == "anon_vma"]
    ids = av["obj_id"].to_numpy().astype(np.int64)
    kids = av["num_children"].to_numpy().astype(np.int64)
    own = (av["root_id"].to_numpy().astype(np.int64) == ids).astype(np.int64)
    forked_av = ids[(kids >= 0) & (kids - own > 0)]
    return np.unique(v.loc[np.isin(v["anon_vma_id"].to_numpy(), forked_av), "tgid"].to_numpy().astype(np.int64))


def _keyed_events(gkeys, gpos, keys):
    """Events (``gkeys``, ``gpos``) sorted as (key index << _SHIFT | pos),
    the rows of ``keys`` whose key has events, and their key indices."""
    uk = unique(gkeys)
    ekey = np.sort((np.searchsorted(uk, gkeys).astype(np.int64) << _SHIFT) | np.asarray(gpos, dtype=np.int64))
    keys = np.asarray(keys)
    ki = np.minimum(np.searchsorted(uk, keys), len(uk) - 1)
    rows = np.flatnonzero(uk[ki] == keys)
    return ekey, rows, ki[rows].astype(np.int64)


def _next_in_group(gkeys, gpos, keys, pos):
    """For rows (``keys``, ``pos``) and events (``gkeys``, ``gpos``): whether
    the row's key had an event before it (``prior``), and the position of the
    first event of the same key after it (-1: none)."""
    n = len(keys)
    prior = np.zeros(n, dtype=bool)
    nxt_pos = np.full(n, -1, dtype=np.int64)
    if not len(gkeys) or not n:
        return prior, nxt_pos
    ekey, rows, kr = _keyed_events(gkeys, gpos, keys)
    if len(rows):
        kbase = kr << _SHIFT
        p = np.asarray(pos)[rows]
        fi = np.searchsorted(ekey, kbase)            # the key's first event
        prior[rows] = (ekey[fi] & _LOW) < p
        k = np.searchsorted(ekey, kbase | p, side="right")
        nxt = ekey[np.minimum(k, len(ekey) - 1)]
        ok = (k < len(ekey)) & ((nxt >> _SHIFT) == kr)
        nxt_pos[rows] = np.where(ok, nxt & _LOW, -1)
    return prior, nxt_pos


def _last_before(gkeys, gpos, keys, pos):
    """For rows (``keys``, ``pos``) and events (``gkeys``, ``gpos``): the
    position of the last event of the row's key before it (-1: none)."""
    n = len(keys)
    out = np.full(n, -1, dtype=np.int64)
    if not len(gkeys) or not n:
        return out
    ekey, rows, kr = _keyed_events(gkeys, gpos, keys)
    if len(rows):
        k = np.searchsorted(ekey, (kr << _SHIFT) | np.asarray(pos)[rows], side="left") - 1
        prev = ekey[np.maximum(k, 0)]
        ok = (k >= 0) & ((prev >> _SHIFT) == kr)
        out[rows] = np.where(ok, prev & _LOW, -1)
    return out


def _fault_pairs(a):
    """For each ``fault`` AVC: the index in ``a`` of the anon_vma that the
    same __anon_vma_prepare() call allocated (the same task's next av/AVC
    allocation, when it is a ``fault`` anon_vma), else -1. The AVC is
    allocated first; without the anon_vma row a neighbour's was reused.
    Found a chunk of rows at a time, each task's last row carried."""
    n = len(a)
    out = np.full(n, -1, dtype=np.int32 if n < 2 ** 31 else np.int64)
    last = KeyedTable([-1, 0])                  # per task: its last row, and whether a fault AVC
    fault_avc = (a.path == PATH_CODE["fault"]) & ~a.is_av
    fault_av = (a.path == PATH_CODE["fault"]) & a.is_av
    for part in chunks(n):
        g = by_task(last, a.pid[part])                      # per task, in replay order
        rows = part.start + g.order
        prev = g.previous(rows, 0)
        ok = (prev >= 0) & (g.previous(fault_avc[rows], 1) == 1) & fault_av[rows]
        out[prev[ok]] = rows[ok]
        last.vals[g.at] = np.stack([rows[g.end], fault_avc[rows[g.end]]], axis=1)
    return out


def mremap_sources(rp, a):
    """The lazy-context mremap AVCs (index into ``a``) and, for each, the
    position of the alloc of the first AVC the same task frees after it (-1:
    no such free, or one whose alloc is not in the run). Found a chunk of
    rows at a time: a copy waits for its task's next AVC free."""
    m = np.flatnonzero(a.mremap & ~a.prior)
    src = np.full(len(m), -1, dtype=np.int64)
    if not len(m):
        return m, src
    ob = rp.ob
    waiting = np.zeros(0, dtype=np.int64)          # indices into m, in replay order
    lo = 0
    for part in chunks(len(ob)):
        hi = int(np.searchsorted(a.rows[m], part.stop))
        waiting = np.concatenate([waiting, np.arange(lo, hi)])
        lo = hi
        free = part.start + np.flatnonzero(~ob.is_alloc[part] & (ob.object[part] == OBJECT_CODE["anon_vma_chain"]))
        if not len(waiting) or not len(free):
            continue
        row, found = _next_free(ob.pid[free], free, a.pid[m[waiting]], a.rows[m[waiting]])
        alloc = rp.partner[row[found]]
        src[waiting[found]] = np.where(alloc >= 0, ob.pos[np.maximum(alloc, 0)], -1)
        waiting = waiting[~found]
    return m, src


def _next_free(fpid, frow, pid, after):
    """For each task ``pid`` waiting since row ``after``: the first of the
    free rows ``frow`` (ascending, tasks ``fpid``) of the same task after
    it -> (that row, found)."""
    codes, _ = pd.factorize(np.concatenate([fpid, pid]))
    fkey = (codes[:len(fpid)].astype(np.int64) << _SHIFT) | frow
    order = np.argsort(fkey)
    fkey, frow = fkey[order], frow[order]
    wkey = codes[len(fpid):].astype(np.int64) << _SHIFT
    k = np.searchsorted(fkey, wkey | after, side="right")
    found = k < len(fkey)
    found[found] = (fkey[k[found]] >> _SHIFT) == (wkey[found] >> _SHIFT)
    return np.where(found, frow[np.minimum(k, len(frow) - 1)], -1), found


def _by_key(keys, values_mask, lookup):
    """Count rows of ``values_mask`` per key, read at ``lookup`` keys (0 when absent)."""
    k = keys[values_mask]
    if not len(k) or not len(lookup):
        return np.zeros(len(lookup), dtype=np.int64)
    uk, cnt = np.unique(k, return_counts=True)
    i = np.minimum(np.searchsorted(uk, lookup), len(uk) - 1)
    return np.where(uk[i] == lookup, cnt[i], 0)


class Result(NamedTuple):
    """What a lazy model computes (lazy.model, lazy_exact.model), returned
    instead of being left on the replay: ``report``, the ``models.lazy``
    entry of the report; ``spans``, {name: {object: live.Spans}} of its run
    part for the snapshots (docs/models.md#snapshots S4: ``lazy``,
    ``lazy_floor``, ``lazy_extra`` and, from the exact replay, X9's
    ``lazy_pinned``); ``lazy_state``, for the walk section (walks.summary,
    W4): the alloc rows, until when each object stays lazy and which model
    said so, or None (a tracepoint recording without walk rows);
    ``tracepoint``, the tracepoint estimate's (Allocs, mremap_sources),
    which the no-fork model reads too."""
    report: dict
    spans: dict
    lazy_state: Optional[dict]
    tracepoint: Optional[tuple] = None


class _Timing(NamedTuple):
    """The best variant's per-row state, for the live intervals: objects
    kept at eager times, upgraded at the next fork (U1), deferred at all,
    and the mremap upgrades (U2: the move's position, its source and when
    the upgrade's anon_vma is freed)."""
    kept: np.ndarray
    upgraded: np.ndarray
    found_pos: np.ndarray
    found_src: np.ndarray
    deferred: np.ndarray
    mre_av_free: np.ndarray


def _deferred(a, name):
    """(deferred, upgraded) masks over ``a`` for one variant: L1 (fault) and
    L2 (the child's own fork objects) always deferred; L3, the own link of
    each split/merge call, deferred for a process that has not forked (L5:
    in the run or, by the census, before it) in best, always in low, never
    in high (docs/models.md#lazy-bounds). U1: a deferred object still live
    at its owner's next process fork is upgraded there."""
    own_link = a.splitlike & a.clone_first
    if name == "best":
        deferred = a.base_deferred | (own_link & ~a.prior)
    elif name == "low":
        deferred = a.base_deferred | own_link
    else:
        deferred = a.base_deferred.copy()
    nf = a.nf_pos
    upgraded = deferred & (nf >= 0) & (a.free_pos > nf)
    return deferred, upgraded


def _mremap_upgrades(a, srcs, deferred, upgraded):
    """U2 (L6: the mremap copies themselves are kept): the first mremap AVC
    of each deferred source not upgraded at a fork. Returns (its index in
    ``a``, its source's position)."""
    # U2: mremap sources that are deferred and not upgraded at a fork
    m, src = srcs
    dpos = a.pos[deferred & ~upgraded]
    i = np.minimum(np.searchsorted(dpos, src), max(len(dpos) - 1, 0))
    isdef = (src >= 0) & (len(dpos) > 0) & (dpos[i] == src if len(dpos) else False)
    cand = np.flatnonzero(isdef)
    _, first = np.unique(src[cand], return_index=True)
    keep = cand[np.sort(first)]                 # the first mremap AVC of each source
    return m[keep], src[keep]


def _own_av_upgrades(a, deferred, upgraded, found_src, mre_av_free):
    """Best variant, U2 with U1: where the moved VMA's own fault anon_vma is
    known (the same __anon_vma_prepare() call, L1), the mremap upgrade
    allocates that object until its eager free, and U1 does not upgrade it
    again. Returns (upgraded, mre_av_free), updated."""
    # ... unless the moved VMA's own fault anon_vma is known: then the
    # upgrade allocates that object, at the mremap, until its eager
    # free, and U1 does not upgrade it again at a later fork
    pair = a.own_av[a.index_of(found_src)]
    has = pair >= 0
    has[has] = deferred[pair[has]]
    upgraded = upgraded.copy()
    upgraded[pair[has]] = False
    mre_av_free[has] = a.free_pos[pair[has]]
    return upgraded, mre_av_free


def _only_what_fork_copies(rp, a, upgraded):
    """U1 in the best variant: a fork upgrades only VMAs that dup_mmap()
    copies with anon_vma_fork() (not VM_DONTCOPY, not VM_WIPEONFORK: 6.12
    kernel/fork.c:677, :717; 7.3 mm/mmap.c:1745, :1774), each of which has
    at least one clone_fork AVC in that fork; so per tagged fork at most its
    clone_fork AVCs of anon_vmas and of AVCs are upgraded. Which deferred
    objects are the excess a tracepoint recording cannot tell: the latest
    allocated stay lazy. Returns the updated mask."""
    fk = rp.tree.forks
    fpos = fk["pos"].to_numpy().astype(np.int64)
    fid = fk["fork_id"].to_numpy().astype(np.int64)
    cap = _by_key(a.fork_id, (a.path == PATH_CODE["clone_fork"]) & (a.fork_id >= 0), fid)
    cap = np.where(fid >= 0, cap, np.iinfo(np.int64).max)
    upgraded = upgraded.copy()
    for sel in (a.is_av, ~a.is_av):
        rows = np.flatnonzero(upgraded & sel)
        if not len(rows):
            continue
        order = rows[stable_argsort(a.nf_pos[rows])]        # per fork, in replay order
        nf = a.nf_pos[order]
        rank = np.arange(len(order)) - np.searchsorted(nf, nf)   # the row's place within its fork
        i = np.minimum(np.searchsorted(fpos, nf), len(fpos) - 1)
        limit = np.where(fpos[i] == nf, cap[i], np.iinfo(np.int64).max)
        upgraded[order[rank >= limit]] = False
    return upgraded


def _fork_bounds(rp, a, name, upgraded, found_m, found_free):
    """(anon_vma, AVC) fork upgrades (U1) of the low or high variant,
    bounded per process fork by what that fork can upgrade: low at most its
    clone_fork AVCs (L4), high at least its fork-path anon_vmas (L2)
    (docs/models.md#lazy-bounds)."""
    is_av, nf = a.is_av, a.nf_pos
    fk = rp.tree.forks
    # per process fork (keyed by its position): upgrades, clone_fork AVCs,
    # fork-path anon_vmas of that fork (docs/models.md#lazy-bounds)
    fpos = fk["pos"].to_numpy().astype(np.int64)
    fid = fk["fork_id"].to_numpy().astype(np.int64)
    tagged = fid >= 0
    up_anon_vmas = _by_key(nf, upgraded & is_av, fpos)
    up_avcs = _by_key(nf, upgraded & ~is_av, fpos)
    tag = a.fork_id >= 0
    clone_fork_avcs = _by_key(a.fork_id, (a.path == PATH_CODE["clone_fork"]) & tag, fid)
    fork_anon_vmas = np.where(tagged & fk["first"].to_numpy(),
                              _by_key(a.fork_id, (a.path == PATH_CODE["fork"]) & is_av & tag, fid), 0)
    if name == "low":
        up_anon_vmas = np.where(tagged, np.minimum(up_anon_vmas, clone_fork_avcs), up_anon_vmas)
        up_avcs = np.where(tagged, np.minimum(up_avcs, clone_fork_avcs), up_avcs)
    else:
        # high: every upgraded AVC's piece gets its own anon_vma (the table's
        # "each lazy piece its own anon_vma"), so anon_vma upgrades are the
        # AVC upgrades, not the fault anon_vmas; at least the fork's own
        up_anon_vmas = np.maximum(up_avcs, fork_anon_vmas)
        up_avcs = np.maximum(up_avcs, fork_anon_vmas)
    up_av, up_avc = int(up_anon_vmas.sum()), int(up_avcs.sum())
    if name == "low" and len(found_m):
        # a VMA upgraded at mremap and still mapped at its process's next
        # fork: its eager fault anon_vma was counted as a fork upgrade too
        mnf = nf[found_m]
        twice = int(((mnf >= 0) & (found_free > mnf)).sum())
        up_av -= min(twice, up_av)
    return up_av, up_avc


def _variant(rp, a, srcs, name):
    """Allocation counts (and best-variant timing) for best / low / high.
    Returns (counts, _Timing of the best variant, None for the others): the
    kept objects (L1-L8, _deferred) plus the upgrades at forks (U1) and
    mremaps (U2, _mremap_upgrades), per fork bounded in low and high
    (_fork_bounds)."""
    deferred, upgraded = _deferred(a, name)
    if name == "best" and len(rp.tree.forks):
        upgraded = _only_what_fork_copies(rp, a, upgraded)
    found_m, found_src = _mremap_upgrades(a, srcs, deferred, upgraded)
    src = srcs[1]
    found_pos, found_free = a.pos[found_m], a.free_pos[found_m]
    n_unknown = int((src < 0).sum())
    mremap_up = int(len(found_m))
    if name == "high":
        # upper bound: every mremap AVC whose source is unknown is an upgrade
        mremap_up += n_unknown
    # the mremap upgrade's anon_vma lives until the mremap copy is freed ...
    mre_av_free = found_free.astype(np.int64)
    if name == "best" and len(found_m):
        upgraded, mre_av_free = _own_av_upgrades(a, deferred, upgraded, found_src, mre_av_free)

    is_av = a.is_av
    kept = ~deferred
    up_av = int((upgraded & is_av).sum())
    up_avc = int((upgraded & ~is_av).sum())
    if name in ("low", "high") and len(rp.tree.forks):
        up_av, up_avc = _fork_bounds(rp, a, name, upgraded, found_m, found_free)
    av = int((kept & is_av).sum()) + up_av + mremap_up
    avc = int((kept & ~is_av).sum()) + up_avc + mremap_up
    out = {"anon_vma": av, "anon_vma_chain": avc,
           "fork_upgrades": up_avc,
           "fork_upgrade_anon_vma": up_av,
           "mremap_upgrades": mremap_up,
           "mremap_unknown_sources": n_unknown}
    timing = None
    if name == "best":
        timing = _Timing(kept, upgraded, found_pos, found_src, deferred, mre_av_free)
    return out, timing


def _best_starts(a, t):
    """When each object of ``a`` starts to live under the best variant
    (-1: never): kept objects at their eager allocation, U1 upgrades at the
    fork, U2 upgrades at the mremap."""
    # peak live (best estimate): kept at eager times, fork upgrades from the
    # fork, mremap upgrades from the move (their AVC until its eager free,
    # their anon_vma until the mremap copy is freed)
    mre_start = np.full(len(a), -1, dtype=np.int64)
    mre_start[a.index_of(t.found_src)] = t.found_pos
    return np.where(t.kept, a.pos, np.where(t.upgraded, a.nf_pos, mre_start))


def _objects(rp, a, t, start, best, low, high):
    """Per object: the best count with the low/high range and the best peak
    live (L1-L8, U1, U2; docs/models.md#lazy-bounds), and the run spans of
    the snapshots (S4): ``lazy`` (best) and ``lazy_floor`` (the objects
    every variant makes, at eager times). Returns (per_obj, spans)."""
    pos, free, is_av = a.pos, a.free_pos, a.is_av
    live_mask = start >= 0
    # the objects every variant makes (low: every split's own link deferred),
    # at eager times: the run's floor for the snapshots, as if nothing had
    # been upgraded (docs/models.md#snapshots)
    floor = ~(a.base_deferred | (a.splitlike & a.clone_first))
    per_obj = {}
    spans = {"lazy": {}, "lazy_floor": {}}
    for obj, sel in (("anon_vma", is_av), ("anon_vma_chain", ~is_av)):
        size = rp.sizes[obj][0]
        s_pos, s_free = start[live_mask & sel], free[live_mask & sel]
        if obj == "anon_vma":     # one anon_vma per mremap upgrade (U2)
            s_pos = np.concatenate([s_pos, t.found_pos])
            s_free = np.concatenate([s_free, t.mre_av_free])
        s = live.summary_intervals(s_pos, s_free)
        spans["lazy"][obj] = live.Spans(s_pos, s_free)
        spans["lazy_floor"][obj] = live.Spans(pos[floor & sel], free[floor & sel])
        n = best[obj]
        lo, hi = min(low[obj], n), max(high[obj], n)
        per_obj[obj] = {
            "allocated": n, "bytes": n * size, "allocated_range": [lo, hi],
            "bytes_range": [lo * size, hi * size],
            "peak_live": s["peak"], "peak_live_bytes": s["peak"] * size,
            "fidelity": "estimate", "see": RULES, "range_see": BOUNDS,
        }
    return per_obj, spans


def saved_fields(ev, per_obj):
    """The savings against eager ``ev`` of a lazy model's ``per_obj``
    counts: ``saved_pct``, ``saved_pct_range`` (from the high end to the low
    end) and ``peak_saved_pct``."""
    return {
        "saved_pct": {o: saved_pct(ev[o]["allocated"], per_obj[o]["allocated"]) for o in RMAP_OBJECTS},
        "saved_pct_range": {
            o: [saved_pct(ev[o]["allocated"], per_obj[o]["allocated_range"][1]),
                saved_pct(ev[o]["allocated"], per_obj[o]["allocated_range"][0])] for o in RMAP_OBJECTS},
        "peak_saved_pct": {o: saved_pct(ev[o]["peak_live"], per_obj[o]["peak_live"]) for o in RMAP_OBJECTS},
    }


def _lazy_state(rp, a, t, start):
    """The lazy state of the walk section (W4, docs/models.md section 6
    "Lazy state"), or None without walk rows: per alloc row, until when it
    stays lazy (-1: never lazy; NEVER: never upgraded)."""
    if rp.rec.walks is None or not len(rp.rec.walks):
        return None
    # for the walk section (walks.py): until when each anon_vma stays lazy
    lazy_until = np.where(t.deferred, np.where(start >= 0, start, live.NEVER), -1)
    return {"rows": a.rows, "lazy_until": lazy_until,
            "source": "tracepoint estimate (docs/models.md#lazy-rules)"}


def _upgrades(best, low, high):
    """The ``upgrades`` entry: U1 fork and U2 mremap upgrades of the best
    variant, with their range over the variants."""
    return {
        "fork": best["fork_upgrades"],
        "mremap": best["mremap_upgrades"],
        # the variants are not monotonic in the upgrade count (the low variant
        # defers every split AVC, so more are upgraded): min and max over all
        "fork_range": [min(low["fork_upgrades"], best["fork_upgrades"], high["fork_upgrades"]),
                       max(high["fork_upgrades"], best["fork_upgrades"], low["fork_upgrades"])],
        "mremap_range": [min(low["mremap_upgrades"], best["mremap_upgrades"]),
                         max(high["mremap_upgrades"], best["mremap_upgrades"])],
        "objects": {
            "anon_vma": best["fork_upgrade_anon_vma"] + best["mremap_upgrades"],
            "anon_vma_chain": best["fork_upgrades"] + best["mremap_upgrades"],
        },
        "mremap_unknown_sources": best["mremap_unknown_sources"],
        "fidelity": "estimate", "see": RULES,
    }


def _extra_costs(a, upgraded, upgrades):
    """The ``extra_costs`` entry (docs/models.md#lazy-costs): the upgrades
    (U1, U2), the objects allocated inside fork, and
    what tracepoints cannot tell (X9's pinned root VMAs, re-pointed pages)."""
    fork_eager = int(((a.path == PATH_CODE["fork"]) | (a.path == PATH_CODE["clone_fork"])).sum())
    fork_lazy = int((a.path == PATH_CODE["clone_fork"]).sum()) + int(upgraded.sum())
    return {
        "upgrades": {"fork": upgrades["fork"], "mremap": upgrades["mremap"],
                     "objects": upgrades["objects"]},
        "fork_time_objects": {
            "eager": fork_eager, "lazy": fork_lazy,
            "note": "anon_vma + AVC allocated inside fork: eager fork + clone_fork rows; "
                    "lazy clone_fork + fork upgrades",
            "fidelity": "estimate", "see": COSTS,
        },
        "pinned_root_vmas": {"value": None, "fidelity": "not measurable",
                             "reason": "tracepoint recordings cannot tie a VMA to its pieces (rule X9 needs "
                                       "function probes)", "see": COSTS},
        "repointed_pages": {
            "value": None,
            "fidelity": "not measurable",
            "reason": "schema v1 records no anon page counts per VMA; an upgrade re-points "
                      "every anon folio of the VMA",
            "see": COSTS,
        },
    }


def model(rp, eager_model):
    """The tracepoint estimate (docs/models.md sections 2.1-2.3: L1-L8, U1,
    U2, its bounds and extra costs) of best, low and high variants
    (_variant). Returns a Result: the report entry, the run spans for the
    snapshots (S4) and the lazy state for the walks (W4)."""
    a = Allocs(rp)
    srcs = mremap_sources(rp, a)
    best, t = _variant(rp, a, srcs, "best")
    low, _ = _variant(rp, a, srcs, "low")
    high, _ = _variant(rp, a, srcs, "high")
    start = _best_starts(a, t)
    out = {"fidelity": "estimate", "see": SECTION}
    per_obj, spans = _objects(rp, a, t, start, best, low, high)
    out.update(per_obj)
    ev = eager_model
    spans["lazy_extra"] = _beyond_eager(a, t.found_pos, t.found_src, t.mre_av_free, srcs)
    out.update(saved_fields(ev, per_obj))

    out["vm_area_struct"], out["vma_growth"] = vma_growth(rp, ev)

    lazy_state = _lazy_state(rp, a, t, start)
    out["upgrades"] = _upgrades(best, low, high)
    out["not_modelled"] = moves.not_modelled(rp.rec.meta)
    out["file_vmas"] = file_vmas(a, t, per_obj)
    out["extra_costs"] = _extra_costs(a, t.upgraded, out["upgrades"])
    return Result(out, spans, lazy_state, (a, srcs))


def _made(a, t):
    """(rows of ``a`` the best variant makes at some time: kept, upgraded
    at a fork (U1), or a moved VMA's fault AVC and anon_vma, which its
    mremap upgrade (U2) replaces one for one; the U2 upgrades whose VMA's
    fault reused a neighbour's anon_vma, which make a new one)."""
    made = t.kept | t.upgraded
    src = a.index_of(t.found_src)
    made[src] = True
    pair = a.own_av[src]
    made[pair[pair >= 0]] = True
    return made, int((pair < 0).sum())


def file_vmas(a, t, per_obj):
    """X8 on a tracepoint recording (docs/models.md#lazy-bounds): the eager
    rows the best estimate never makes, by the kind of VMA its fault rows name (schema v10
    ``caller``: anon_fault, cow_fault for a MAP_PRIVATE file, else
    unknown); split, merge and fork rows name none (``not_fault``). The
    series' minimal variant, file VMAs eager, is a range: low, only the
    cow_fault pairs made; high, every saving of unknown kind too."""
    made, beyond = _made(a, t)
    saved = ~made
    fault = a.path == PATH_CODE["fault"]
    anon = fault & (a.caller == CALLER_CODE["anon_fault"])
    file = fault & (a.caller == CALLER_CODE["cow_fault"])
    kinds = {"anon": anon, "file": file, "unknown": fault & ~anon & ~file, "not_fault": ~fault}
    out = {"tokens": {k: int((m & ~a.is_av).sum()) for k, m in kinds.items() if k != "not_fault"},
           "saved": {}, "file_vmas_eager": {},
           # U2 upgrades of a VMA whose fault reused a neighbour's anon_vma:
           # a new anon_vma, no eager row (eager - best = saved - this)
           "made_beyond_eager": {"anon_vma": beyond, "anon_vma_chain": 0}}
    for obj, sel in (("anon_vma", a.is_av), ("anon_vma_chain", ~a.is_av)):
        s = {k: int((saved & sel & m).sum()) for k, m in kinds.items()}
        out["saved"][obj] = s
        lo = per_obj[obj]["allocated"] + s["file"]
        out["file_vmas_eager"][obj] = [lo, lo + s["unknown"] + s["not_fault"]]
    out["fidelity"] = ("estimate: a fault's VMA kind from the fault handler on its stack; split, merge "
                       "and fork rows do not tell theirs, so file_vmas_eager is a range")
    out["see"] = BOUNDS
    return out


def _beyond_eager(a, found_pos, found_src, mre_av_free, srcs):
    """{object: live.Spans} of anon_vmas a lazy kernel may hold that eager
    does not (docs/models.md#snapshots S4): an upgrade at the next fork (U1)
    of a VMA whose fault reused a neighbour's anon_vma, if the upgrade
    allocates one (the high end of the one reuse rule), an mremap upgrade
    (U2) whose source's own anon_vma is not known, and one per mremap copy
    whose source is not found (the high variant upgrades each: its
    anon_vma lives as long as the copy)."""
    nf, free = a.nf_pos, a.free_pos
    reuse = (a.path == PATH_CODE["fault"]) & ~a.is_av & (a.own_av < 0) & (nf >= 0) & (free > nf)
    pair = a.own_av[a.index_of(found_src)] if len(found_src) else np.zeros(0, dtype=np.int64)
    new = pair < 0
    m, src = srcs
    unknown = m[src < 0]
    starts = np.concatenate([nf[reuse], found_pos[new], a.pos[unknown]])
    ends = np.concatenate([free[reuse], mre_av_free[new], free[unknown]])
    return {"anon_vma": live.Spans(starts, ends), "anon_vma_chain": live.Spans([], [])}


#: The cover letter's vm_area_struct rows, "after boot" and "24 apps
#: launched" (active KB before -> after: 117035 -> 118176, 196873 ->
#: 197345), quoted beside the growth priced here (docs/background.md).
SERIES_VMA_PCT = {"after_boot": 1.0, "24_apps_launched": 0.2}


#: cache_line_size() where the cache's align is not known: L1_CACHE_BYTES
#: of x86_64 and arm64 (arch/*/include/asm/cache.h, 6.12 and 7.3); what
#: SLAB_HWCACHE_ALIGN aligns a cache's objects to (mm/slab_common.c
#: calculate_alignment()).
CACHE_LINE = 64


def _align(n, a):
    return -(-n // a) * a


def vma_slot(meta_entry, grow, word):
    """The vm_area_struct slab slot before and after ``grow`` bytes, by SLUB's
    rule (mm/slub.c calculate_sizes, 6.12 and 7.3: ALIGN(object_size, word),
    plus metadata such as a free pointer outside the object, then
    ALIGN(size, align)). Returns (before, [low, high] after, how): the slack
    ``slot - ALIGN(object_size, word)`` is padding at the low end and
    metadata at the high end; equal when there is none (6.18, 7.3: 192 B,
    align 64, free pointer inside: 192 -> 256)."""
    slot = meta_entry.get("slab_size") or meta_entry.get("btf_size")
    obj = meta_entry.get("object_size") or meta_entry.get("btf_size") or slot
    low_align = high_align = meta_entry.get("align")
    how = "/sys/kernel/slab object_size and align"
    if not low_align:
        low_align, high_align = word, CACHE_LINE
        how = ("align unknown (no /sys/kernel/slab align: recorded before schema v5, or a Perfetto import "
               "without --slab-dir): low end word-aligned (6.12), high end on a 64-byte cache line "
               "(7.3's SLAB_HWCACHE_ALIGN)")
    base = _align(obj, word)
    slack = max(slot - base, 0)
    low = max(_align(_align(obj + grow, word), low_align), slot)
    high = max(_align(_align(obj + grow, word) + slack, high_align), slot)
    return slot, [low, high], how


def vma_growth(rp, ev):
    """Lazy VMAs: same count as eager, each larger by a root pointer and a
    refcount (docs/models.md#lazy-costs), priced at the slab slot the larger
    object needs. Returns (vm_area_struct model entry, growth dict)."""
    ptr, ptr_source = pointer_bytes(rp.rec.meta.get("arch"))
    grow = ptr + REFCOUNT_BYTES
    meta_entry = (rp.rec.meta.get("object_sizes") or {}).get("vm_area_struct") or {}
    if not isinstance(meta_entry, dict) or not (meta_entry.get("slab_size") or meta_entry.get("btf_size")):
        meta_entry = {"slab_size": rp.sizes["vm_area_struct"][0]}
    before, after, how = vma_slot(meta_entry, grow, ptr)
    slot_growth = after[1] - before
    v = ev["vm_area_struct"]
    entry = {
        "allocated": v["allocated"], "bytes": v["allocated"] * after[1],
        "allocated_range": [v["allocated"], v["allocated"]],
        "bytes_range": [v["allocated"] * before, v["allocated"] * after[1]],
        "peak_live": v["peak_live"], "peak_live_bytes": v["peak_live"] * after[1],
        "fidelity": "exact count; size: the slot of the grown object (low end: the fields fit in holes)",
        "see": COSTS,
    }
    growth = {
        "bytes_per_vma": grow, "pointer_bytes": ptr, "pointer_bytes_source": ptr_source,
        "refcount_bytes": REFCOUNT_BYTES,
        "slot_bytes": [before, after[1]],
        "slot_after_range": after,
        "slot_growth_bytes": slot_growth,
        "slot_growth_range": [0, slot_growth],
        "slot_growth_pct": round(100.0 * slot_growth / before, 1) if before else None,
        "slot_source": how,
        "series_cover_letter_pct": SERIES_VMA_PCT,
        "run_vmas_peak_live": v["peak_live"],
        "peak_extra_bytes": v["peak_live"] * slot_growth,
        "allocated_vmas_extra_bytes": v["allocated"] * slot_growth,
        "fidelity": "exact count x slot growth; range: 0 when the new fields fit in holes of "
                    "vm_area_struct (not checked)",
        "see": COSTS,
    }
    slab = rp.rec.slab
    sv = slab[slab["slab_cache"] == "vm_area_struct"] if len(slab) else slab
    if len(sv):
        growth["slabinfo_vmas_last"] = int(sv["slab_active"].iloc[-1])
        growth["slabinfo_vmas_peak"] = int(sv["slab_active"].max())
        growth["slabinfo_extra_bytes_last"] = growth["slabinfo_vmas_last"] * slot_growth
        growth["slabinfo_extra_bytes_peak"] = growth["slabinfo_vmas_peak"] * slot_growth
    return entry, growth
