"""rmap walk cost per design on a recording with ``walk`` rows (schema v3,
function probes; docs/models.md#walks-recorded).

Eager is measured: each walk row is one ``rmap_walk_anon()`` /
``rmap_walk_ksm()`` (or ``rmap_walk()`` / ``rmap_walk_locked()``) of an
anonymous or KSM folio with the AVCs the
interval tree returned, the VMAs ``rmap_one`` ran on and its duration. The
other designs re-cost the same walks with the rules of docs/models.md
section 4 (the ones ``anonanalyze simulate`` uses), applied to what the
recording knows about the folio: its anon_vma (``anon_vma_id``), that
anon_vma's alloc row (owner process, path, VMA) and the process tree:

- lazy (W4): a folio whose anon_vma belongs to a VMA that is still lazy at
  the walk (never upgraded, by the lazy model of the same report) is walked
  through its root VMA and the pieces of it that map the folio: the
  measured VMAs (a large folio straddling a split maps more than one); the
  lock it takes is unknown (the series claims none; disputed on the list);
  otherwise as measured;
- CoW context (W5, C1-C5): ``rmap_one`` calls as measured, one VMA-tree
  lookup per live mm of the subtree of the folio's context (the owner
  process of its anon_vma) at the walk, its own included and descendants
  that exec'd since left out (exec starts a new root context), or its own
  mm alone when the folio is exclusive (the draft's early exit on
  ``folio_maybe_mapped_shared()``: measured VMAs <= 1); its lock is unknown
  (RCU with TODOs in the draft);
- nofork, nofork_clone (W6): a folio in an anon_vma the design does not
  make (rules N1, N4: leaf generations) is walked through its VMA like a
  lazy folio; everything else as measured.

A lock or time a design leaves unknown is never 0: ``time_ns`` and
``lock_wait_ns`` cover the walks that stay eager (``time_walks``), null
when none does, and the design's ``unknown`` notes say what they leave out.

Vectorised over the walk rows: the anon_vma of each walk by one sorted
search (objlookup.last_alloc), subtree sizes by sorted searches over
(ancestor, descendant) pairs, lock waits matched to walks with one
``merge_asof``.
"""

from typing import NamedTuple

import numpy as np
import pandas as pd

from . import generations
from .live import NEVER
from .load import CALLER_CODE, OBJECT_CODE, PATH_CODE
from .nofork import VARIANTS as NOFORK_VARIANTS
from .objlookup import categories, last_alloc, log2_hist, stats

SECTION = "docs/models.md#walks-recorded"
DESIGNS = ("eager", "lazy", "cow_context", "nofork", "nofork_clone")
LOCK_EAGER = "anon_vma root rwsem (read)"
LOCK_UNKNOWN = "unknown (the series claims no anon_vma lock; disputed on the list)"
LOCK_COW = "unknown (the draft: RCU, with TODOs)"
UNKNOWN = "unknown"
#: why a design's lock is unknown, for the ``unknown`` notes
WHY_LAZY = "the series claims no anon_vma lock; disputed on the list"
WHY_COW = "the draft names RCU, with TODOs"
_SHIFT = 41


def _probe_state(meta):
    names = [p for p in meta.get("probes") or [] if isinstance(p, dict)
             and "rmap_walk" in str(p.get("name", ""))]
    if not names:
        return None
    return any(p.get("attached") for p in names)


def _int(frame, col, fill=0):
    v = frame[col].to_numpy().astype(np.int64)
    return np.where(v < 0, fill, v)


class _Subtrees:
    """Live processes in the subtree of a process at a position, from the
    process forks (``fork`` rows without ``shares_mm``) and the last-thread
    exits of the run. Processes that exist at the start are born at -1. A
    descendant leaves its ancestors' subtrees at its first exec (C6: exec
    starts a new root context)."""

    def __init__(self, rp):
        tree = rp.tree
        f = tree.forks
        child = f["child_tgid"].to_numpy().astype(np.int64)
        parent = f["tgid"].to_numpy().astype(np.int64)
        fpos = f["pos"].to_numpy().astype(np.int64)
        procs = np.unique(np.concatenate([tree.seen.astype(np.int64), child, parent]))
        self.procs = procs
        n = len(procs)
        birth = np.full(n, -1, dtype=np.int64)
        par = np.full(n, -1, dtype=np.int64)
        if len(child):
            _, first = np.unique(child, return_index=True)      # first fork making each
            ci = np.searchsorted(procs, child[first])
            birth[ci] = fpos[first]
            par[ci] = np.searchsorted(procs, parent[first])
        death = np.full(n, NEVER, dtype=np.int64)
        ex = rp.rec.exits
        if len(ex):
            gd = ex["group_dead"]
            last = np.where(gd.notna().to_numpy(), gd.fillna(False).to_numpy(dtype=bool),
                            ex["pid"].to_numpy() == ex["tgid"].to_numpy())
            et = ex["tgid"].to_numpy().astype(np.int64)[last]
            ep = ex["pos"].to_numpy().astype(np.int64)[last]
            ok = np.isin(et, procs)
            np.minimum.at(death, np.searchsorted(procs, et[ok]), ep[ok])
        exec_first = np.full(n, NEVER, dtype=np.int64)      # each process's first exec after its birth
        execs = rp.rec.execs
        if len(execs):
            et = execs["tgid"].to_numpy().astype(np.int64)
            ep = execs["pos"].to_numpy().astype(np.int64)
            ok = np.isin(et, procs)
            ei = np.searchsorted(procs, et[ok])
            after = ep[ok] > birth[ei]
            np.minimum.at(exec_first, ei[after], ep[ok][after])
        leave = np.minimum(death, exec_first)   # a descendant's membership ends at its exec
        self.exec_pos = {}                       # process index -> its exec positions, sorted
        if len(execs):
            for i_, p_ in sorted(zip(ei.tolist(), ep[ok].tolist())):
                self.exec_pos.setdefault(i_, []).append(p_)
        anc, desc, cut = self._pairs(par, birth, exec_first)
        base = anc.astype(np.int64) << _SHIFT
        self.births = np.sort(base | (birth[desc] + 1))          # +1: born at -1 -> 0
        # a cut pair is never a member: its interval ends where it begins
        d = np.where(anc == desc, death[desc], np.where(cut, birth[desc], leave[desc]))
        self.deaths = np.sort((base | d)[d < NEVER])
        self.birth, self.death = birth, death
        # membership intervals per (ancestor, descendant) pair, for sums
        # over a subtree's members (remap entries, C3)
        self.pairs = (anc, desc, birth[desc], d)

    @staticmethod
    def _pairs(par, birth, exec_first):
        """(ancestor, descendant, cut) index arrays, every process its own
        ancestor. ``cut``: a process between the two exec'd before the birth
        of its child on the way down, so the descendant's mm comes from that
        exec's new root context (C6), never from the ancestor's."""
        n = len(par)
        anc, desc, cuts = [np.arange(n)], [np.arange(n)], [np.zeros(n, dtype=bool)]
        cur, who, below, cut = par.copy(), np.arange(n), np.arange(n), np.zeros(n, dtype=bool)
        for _ in range(4096):                    # the cap guards against pid-reuse cycles
            ok = cur >= 0
            if not ok.any():
                break
            cur, who, below, cut = cur[ok], who[ok], below[ok], cut[ok]
            anc.append(cur)
            desc.append(who)
            cuts.append(cut)
            # going up: cur is now between; did it exec before forking `below`?
            cut = cut | (exec_first[cur] < birth[below])
            below, cur = cur, par[cur]
        return np.concatenate(anc), np.concatenate(desc), np.concatenate(cuts)

    def old_context(self, tgids, born, pos):
        """C6 for the context itself: where ``tgids[k]`` exec'd after the
        anon_vma was made (``born``) and before ``pos``, the anon_vma belongs
        to the old mm: the process and what it forked after that exec are
        not in its subtree. Returns {k: live mms of the old subtree}."""
        out = {}
        if not self.exec_pos:
            return out
        anc, desc, start, end = self.pairs
        for k, (t, b, p) in enumerate(zip(np.asarray(tgids).tolist(), np.asarray(born).tolist(),
                                          np.asarray(pos).tolist())):
            i = int(np.searchsorted(self.procs, t))
            if i >= len(self.procs) or self.procs[i] != t:
                continue
            ex = [e for e in self.exec_pos.get(i, []) if b < e < p]
            if not ex:
                continue
            sel = (anc == i) & (desc != i) & (start < ex[0]) & (start < p) & (end > p)
            out[k] = int(sel.sum())
        return out

    def members(self, tgid):
        """(descendant tgids, from, until): the processes in ``tgid``'s
        subtree (itself included) and when they are in it."""
        i = np.searchsorted(self.procs, tgid)
        if i >= len(self.procs) or self.procs[i] != tgid:
            return np.array([tgid]), np.array([-1]), np.array([NEVER])
        anc, desc, start, end = self.pairs
        sel = anc == i
        return self.procs[desc[sel]], start[sel], end[sel]

    def live(self, tgids, pos):
        """(live mms in the subtree incl. the process itself, the process alive)."""
        tgids = np.asarray(tgids, dtype=np.int64)
        pos = np.asarray(pos, dtype=np.int64)
        i = np.minimum(np.searchsorted(self.procs, tgids), max(len(self.procs) - 1, 0))
        known = (len(self.procs) > 0) & (self.procs[i] == tgids) if len(self.procs) else \
            np.zeros(len(tgids), dtype=bool)
        base = i.astype(np.int64) << _SHIFT
        born = np.searchsorted(self.births, base | pos, side="right") \
            - np.searchsorted(self.births, base, side="left")      # birth + 1 <= pos
        dead = np.searchsorted(self.deaths, base | pos, side="left") \
            - np.searchsorted(self.deaths, base, side="left")       # death < pos
        count = np.where(known, born - dead, 1)
        alive = np.where(known, (self.birth[i] < pos) & (self.death[i] > pos), True)
        return count, alive


def _match_locks(walks, locks):
    """(wait_ns of each walk-taker lock row, index of the walk it happened in
    or -1): same task, inside [walk end - duration, walk end]."""
    if locks is None or not len(locks):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lk = locks[(locks["lock_func"] == "walk").to_numpy(dtype=bool)]
    if not len(lk):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    wait = np.maximum(lk["wait_ns"].to_numpy().astype(np.int64), 0)
    left = pd.DataFrame({"ts": lk["ts_ns"].to_numpy().astype(np.int64),
                         "pid": lk["pid"].to_numpy().astype(np.int64),
                         "i": np.arange(len(lk))}).sort_values("ts", kind="stable")
    right = pd.DataFrame({"ts": walks["ts_ns"].to_numpy().astype(np.int64),
                          "pid": walks["pid"].to_numpy().astype(np.int64),
                          "w": np.arange(len(walks)),
                          "start": walks["ts_ns"].to_numpy().astype(np.int64)
                          - _int(walks, "duration_ns")}).sort_values("ts", kind="stable")
    m = pd.merge_asof(left, right, on="ts", by="pid", direction="forward")
    ok = m["w"].notna().to_numpy() & (m["start"].fillna(np.inf).to_numpy() <= m["ts"].to_numpy())
    idx = np.full(len(lk), -1, dtype=np.int64)
    idx[m["i"].to_numpy()[ok]] = m["w"].to_numpy()[ok].astype(np.int64)
    return wait, idx


def _design(count, visits, unit, durations, lock_wait_ns, **extra):
    """One design's walks: ``visits`` per walk (in ``unit``) and the measured
    ``durations`` of the walks whose time is known (None: none is), as
    p50/p99/max and log2 histograms (visits_hist, time_hist_ns)."""
    known_time = durations is not None
    out = {"count": int(count), "visits": stats(visits), "visits_hist": log2_hist(visits), "unit": unit,
           "time_ns": stats(durations if known_time else []),
           "time_hist_ns": log2_hist(durations) if known_time else None, "lock_wait_ns": lock_wait_ns}
    out.update(extra)
    return out


class _Walks(NamedTuple):
    """The walk rows as arrays, one entry per walk, and the anon_vma each
    walk's folio is in (its alloc row, docs/models.md#walks-recorded)."""
    n: int
    pos: np.ndarray           # position of the walk row
    vmas: np.ndarray          # vmas_visited: the VMAs rmap_one ran on
    avcs: np.ndarray          # avcs_visited: the AVCs the interval tree returned
    dur: np.ndarray           # duration_ns
    knames: list              # walk_kind names
    kcode: np.ndarray         # walk_kind of each walk, an index into knames
    order: np.ndarray         # folio_order
    locked: np.ndarray        # walk_locked
    known: np.ndarray         # the anon_vma was allocated in the run
    gs: np.ndarray            # its alloc row (0 where not known)
    ksm: np.ndarray           # walk_kind ksm
    index: np.ndarray         # folio->index (v8 walk rows' vm_pgoff); -1 where not recorded


class _WalkWaits(NamedTuple):
    """The walk-taker lock rows (lock_func walk) and the walks they happened in."""
    wait: np.ndarray          # wait_ns of each lock row
    matched: np.ndarray       # the lock row was matched to a walk
    total: int                # sum of every lock row's wait_ns
    of_walk: np.ndarray       # wait_ns per walk, summed over its matched lock rows


def _unavailable(meta, probe):
    """The section of a recording without walk rows. Takes the metadata and
    the rmap_walk probe state (_probe_state) and returns the
    ``available: False`` dict, whose note says why walk cost is not measured
    (section 6 needs walk rows: schema v3, function probes)."""
    if probe:
        note = "rmap_walk probes attached; no walk of an anonymous folio in the run"
    elif probe is False or meta.get("backend") == "tracepoint":
        note = ("not recorded: the rmap_walk function probes did not attach (backend "
                f"{meta.get('backend')}; see metadata probes), so walk cost is not "
                "measured here; `anonanalyze simulate` models it")
    else:
        note = "no walk rows: walk cost needs function probes (schema v3)"
    return {"available": False, "walks": 0, "note": note, "see": SECTION}


def _walk_rows(rp, w):
    """Takes the recording and its non-empty walk rows; returns them as
    _Walks, with the folio's anon_vma of each walk: the alloc row, the latest
    with its anon_vma_id before the walk (section 6, "The folio's anon_vma";
    a null id is an anon_vma allocated before the run: not known)."""
    pos = w["pos"].to_numpy().astype(np.int64)
    knames, kcode = categories(w["walk_kind"], "other")
    avid = w["anon_vma_id"].to_numpy().astype(np.int64)
    g = last_alloc(rp, "anon_vma", avid, pos)
    g[avid < 0] = -1
    return _Walks(n=len(w), pos=pos, vmas=_int(w, "vmas_visited"), avcs=_int(w, "avcs_visited"),
                  dur=_int(w, "duration_ns"), knames=knames, kcode=kcode,
                  order=_int(w, "folio_order"),
                  locked=w["walk_locked"].fillna(False).to_numpy(dtype=bool),
                  known=g >= 0, gs=np.maximum(g, 0),
                  ksm=kcode == (knames.index("ksm") if "ksm" in knames else -2),
                  index=_int(w, "vm_pgoff", -1) if "vm_pgoff" in w else np.full(len(w), -1, np.int64))


def _walk_waits(w, locks, n):
    """Takes the walk rows, the lock rows (or None) and the number of walks;
    returns _WalkWaits: the walk-taker lock rows matched to a walk by task
    and time (section 6, "Lock waits in walks"; _match_locks) and the wait
    of each walk, for eager's lock_wait_ns and the designs that keep the lock."""
    wait, widx = _match_locks(w, locks)
    wait_of_walk = np.zeros(n, dtype=np.int64)
    m = widx >= 0
    np.add.at(wait_of_walk, widx[m], wait[m])
    return _WalkWaits(wait=wait, matched=m, total=int(wait.sum()), of_walk=wait_of_walk)


# ------------------------------------------------------------- eager
def _eager_by_kind(walks, waits):
    """Takes _Walks and _WalkWaits; returns eager per walk_kind, the most
    frequent first: count, visits, avcs_visited, time_ns, lock_wait_ns
    (section 6, eager: measured, per walk_kind too)."""
    by_kind = {}
    kcnt = np.bincount(walks.kcode, minlength=len(walks.knames))
    for i in np.argsort(-kcnt, kind="stable"):
        if not kcnt[i]:
            continue
        s = walks.kcode == i
        by_kind[walks.knames[i]] = {"count": int(s.sum()), "visits": stats(walks.vmas[s]),
                      "avcs_visited": stats(walks.avcs[s]), "time_ns": stats(walks.dur[s]),
                      "lock_wait_ns": int(waits.of_walk[s].sum())}
    return by_kind


def _eager(walks, waits):
    """Takes _Walks and _WalkWaits; returns the eager design: the walks as
    measured (W3: the root rwsem read-locked, rmap_one on every VMA the
    interval tree returns), with every walk-taker lock wait."""
    n = walks.n
    return _design(n, walks.vmas, "VMA", walks.dur, waits.total, time_walks=int(n),
                   avcs_visited=stats(walks.avcs), by_kind=_eager_by_kind(walks, waits),
                   lock={LOCK_EAGER: int(n)}, locked_walks=int(walks.locked.sum()),
                   large_folios=int((walks.order > 0).sum()),
                   lock_waits=int(len(waits.wait)), lock_waits_matched=int(waits.matched.sum()),
                   fidelity="exact (measured by function probes: rmap_walk_anon and rmap_walk_ksm, "
                            "or rmap_walk and rmap_walk_locked where rmap_walk_anon is inlined; "
                            "anon_vma_interval_tree_iter_first/_next, rmap_one callbacks)")


def _unknown_notes(unknown, count, why):
    """Takes the walks whose lock and time a design leaves unknown, its
    walks and why; returns the ``unknown`` notes: {field: what it leaves
    out}, {} when nothing is unknown (section 6: unknown, never 0)."""
    if not unknown:
        return {}
    scope = ("every walk: null" if unknown == count else
             f"{unknown} of {count} walks: the value covers the {count - unknown} that stay eager")
    return {"time_ns": f"{UNKNOWN} for {scope}", "lock_wait_ns": f"{UNKNOWN} for {scope} ({why})"}


def _through_vma(walks, waits, mask, name, fidelity, **extra):
    """The walks in ``mask`` go through the folio's VMA (and the pieces
    of it that map the folio): measured VMAs, an unknown lock and time.
    ``time_ns`` and ``lock_wait_ns`` cover the other walks (eager's lock,
    the unmatched waits with it), null when no walk stays eager."""
    rest = ~mask
    kept = int(rest.sum())
    wait = int(waits.total - waits.of_walk[mask].sum()) if kept else None
    return _design(walks.n, walks.vmas, "VMA", walks.dur[rest], wait,
                   time_walks=kept, time_unknown_walks=int(mask.sum()),
                   lock_wait_unknown_walks=int(mask.sum()),
                   unknown=_unknown_notes(int(mask.sum()), walks.n, WHY_LAZY),
                   lock={LOCK_UNKNOWN: int(mask.sum()), LOCK_EAGER: kept},
                   **{name: int(mask.sum())}, unknown_anon_vma=int((~walks.known).sum()),
                   fidelity=fidelity, **extra)


# -------------------------------------------------------------- lazy
def _lazy_walks(walks, lazy_state):
    """Takes _Walks and the lazy model's lazy state (lazy.Result.lazy_state,
    or None); returns (the walks of a folio whose anon_vma is still lazy at
    the walk, by that lazy_state: lazy until lazy_until, never for KSM
    folios; which lazy state that was, or None). W4, section 6 "Lazy state"."""
    lazy_walk = np.zeros(walks.n, dtype=bool)
    st = lazy_state
    source = None
    if st is not None and walks.known.any():
        known, gs, n = walks.known, walks.gs, walks.n
        rows, until = st["rows"], st["lazy_until"]
        k = np.minimum(np.searchsorted(rows, gs), max(len(rows) - 1, 0))
        hit = known & (len(rows) > 0) & (rows[k] == gs) if len(rows) else np.zeros(n, bool)
        lazy_walk = hit & (until[k] > walks.pos) & ~walks.ksm
        source = st["source"]
    return lazy_walk, source


def _lazy(walks, waits, lazy_state):
    """Takes _Walks, _WalkWaits and the lazy model's lazy state; returns the
    lazy design (W4): a folio still lazy is walked through its root VMA,
    lock and time unknown; the other walks as measured."""
    lazy_walk, source = _lazy_walks(walks, lazy_state)
    return _through_vma(walks, waits, lazy_walk, "lazy_walks",
                        "estimate: measured walks re-costed; a folio still lazy is walked through its "
                        "root VMA and the pieces that map it (measured VMAs: a large folio straddling "
                        "a split maps several); its lock and time are unknown (lock_wait_ns and "
                        "time_ns cover the walks that stay eager, null when none does)", lazy_state=source)


# -------------------------------------------------------- CoW context
#: walks x subtree members above which the remap bound is not computed
REMAP_WORK_CAP = 5_000_000


class _RemapEntries:
    """The draft's remap entries (C3), per process, with when each lives:
    VMAs an mremap moved (VMA ``dup`` rows, caller mremap), MAP_PRIVATE file
    VMAs with anonymous pages (call rows with ``vma_file``), and the child's
    copy of an entry at fork (``anon_vma_fork`` call rows whose source VMA is
    one). Each lives from its first row to its VMA's free, and covers the
    pgoff range of its VMA's first row with one (census or call row:
    ``[vm_pgoff, vm_pgoff + pages)``; unknown without such a row)."""

    def __init__(self, rp):
        ob, calls = rp.ob, rp.rec.calls
        is_vma = ob.object == OBJECT_CODE["vm_area_struct"]
        alloc = is_vma & ob.is_alloc
        self.owner = dict(zip(ob.obj_id[alloc].tolist(), ob.owner[alloc].tolist()))
        freed = is_vma & ~ob.is_alloc
        self.free_pos = dict(zip(ob.obj_id[freed].tolist(), ob.pos[freed].tolist()))
        start = {}
        moved = alloc & (ob.caller == CALLER_CODE["mremap"])
        for vid, p in zip(ob.obj_id[moved].tolist(), ob.pos[moved].tolist()):
            start.setdefault(vid, p)
        self._from_census(rp.rec.census, start, int(rp.rec.meta.get("page_size") or 4096))
        if calls is not None and len(calls):
            self._from_calls(calls, start)
        self.ranges = {}
        self._ranges(rp.rec.census, calls, int(rp.rec.meta.get("page_size") or 4096))
        by = {}
        for vid, p in start.items():
            lo, hi = self.ranges.get(vid, (-1, -1))
            by.setdefault(self.owner.get(vid, -1), []).append((p, self.free_pos.get(vid, NEVER), lo, hi))
        self.by_tgid = {t: (np.sort([e[0] for e in v]), np.sort([e[1] for e in v])) for t, v in by.items()}
        self.entries = {t: np.array(v, dtype=np.int64) for t, v in by.items()}
        self.count = len(start)

    def _ranges(self, census, calls, page_size):
        """{VMA id: (first pgoff, end pgoff)} from the first census or call
        row of each VMA that has its range."""
        for frame in (census, calls):
            if frame is None or not len(frame) or "vm_pgoff" not in frame:
                continue
            rows = frame[(frame["vm_pgoff"] >= 0) & (frame["vma_id"] >= 0)]
            lo = rows["vm_pgoff"].to_numpy()
            hi = lo + (rows["vm_end"].to_numpy() - rows["vm_start"].to_numpy()) // page_size
            for v, a, b in zip(rows["vma_id"].tolist(), lo.tolist(), hi.tolist()):
                self.ranges.setdefault(v, (a, b))

    def covering(self, tgids, pos, index):
        """(entries of ``tgids`` live at ``pos`` whose range covers page
        offset ``index``, live entries whose range is unknown)."""
        sure = unknown = 0
        for t in np.asarray(tgids).tolist():
            e = self.entries.get(t)
            if e is None:
                continue
            live = (e[:, 0] <= pos) & (e[:, 1] > pos)
            known = e[:, 2] >= 0
            sure += int((live & known & (e[:, 2] <= index) & (e[:, 3] > index)).sum())
            unknown += int((live & ~known).sum())
        return sure, unknown

    def _from_census(self, census, start, page_size):
        """Entries that existed at the start: census VMA rows of MAP_PRIVATE
        file VMAs, and of anonymous VMAs whose page offset is not their
        address's (an mremap moved them: a new anonymous VMA's vm_pgoff is
        vm_start >> PAGE_SHIFT, a split keeps the two in step)."""
        if census is None or not len(census):
            return
        rows = census[census["object"].astype(str) == "vm_area_struct"]
        file = rows["vma_file"].fillna(False).to_numpy(dtype=bool)
        moved = rows["vm_pgoff"].to_numpy() != rows["vm_start"].to_numpy() // page_size
        pick = file | moved
        for v, t in zip(rows["vma_id"].to_numpy()[pick].tolist(), rows["tgid"].to_numpy()[pick].tolist()):
            start.setdefault(v, -1)
            self.owner.setdefault(v, t)

    def _from_calls(self, calls, start):
        """File VMAs and fork copies of entries, in replay order."""
        func = calls["func"].astype(str).to_numpy()
        vid, src = calls["vma_id"].to_numpy(), calls["src_vma_id"].to_numpy()
        tgid, pos = calls["tgid"].to_numpy(), calls["pos"].to_numpy()
        file = calls["vma_file"].fillna(False).to_numpy(dtype=bool)
        for f, v, sv, t, p, fl in zip(func, vid.tolist(), src.tolist(), tgid.tolist(), pos.tolist(), file):
            if v < 0:
                continue
            if fl or (f == "anon_vma_fork" and sv in start):
                start.setdefault(v, p)
                self.owner.setdefault(v, t if f != "anon_vma_fork" else self.owner.get(v, -1))

    def live(self, tgids, pos):
        """Entries of each of ``tgids`` live at ``pos``."""
        out = np.zeros(len(tgids), dtype=np.int64)
        for i, t in enumerate(np.asarray(tgids).tolist()):
            e = self.by_tgid.get(t)
            if e is not None:
                out[i] = np.searchsorted(e[0], pos, side="right") - np.searchsorted(e[1], pos, side="right")
        return out


def _history_known(rec):
    """Whether every VMA the run's processes had at its start is known: a
    command run (its processes begin in it) or a census that visited every
    process."""
    census = rec.meta.get("census") if isinstance(rec.meta.get("census"), dict) else {}
    if (rec.meta.get("target") or {}).get("mode") == "command":
        return True
    unvisited = census.get("unvisited") if isinstance(census.get("unvisited"), dict) else {}
    return census.get("status") == "done" and not unvisited.get("count")


def _remap_bound(rp, sub, owner, pos, exclusive, index):
    """Per walk, (fewest, most) remap-entry lookups it makes (C3) in the mms
    it visits (its own only when exclusive, C7): where the folio's index is
    recorded (v8), one per live entry whose pgoff range covers it, plus at
    most one per live entry of unknown range; without it, none to one per
    live entry. None when the recording has no call rows (MAP_PRIVATE file
    VMAs cannot be told), the VMAs before the run are not all known
    (_history_known) or the work would exceed REMAP_WORK_CAP."""
    if rp.rec.calls is None or not len(rp.rec.calls) or not _history_known(rp.rec):
        return None
    entries = _RemapEntries(rp)
    low, high = np.zeros(len(owner), dtype=np.int64), np.zeros(len(owner), dtype=np.int64)
    work = 0
    for i, (t, p, ex, x) in enumerate(zip(owner.tolist(), pos.tolist(), exclusive.tolist(), index.tolist())):
        if ex:
            mms = [t]
        else:
            who, since, until = sub.members(t)
            work += len(who)
            if work > REMAP_WORK_CAP:
                return None
            mms = who[(since < p) & (until > p)]
        if x >= 0:
            sure, unknown = entries.covering(mms, p, x)
            low[i], high[i] = sure, sure + unknown
        else:
            high[i] = int(entries.live(mms, p).sum())
    return low, high


def _cow_context(rp, walks):
    """Takes the recording and _Walks; returns the CoW-context design (W5)
    over the walks whose anon_vma is known: context = owner process of the
    anon_vma (C1); one VMA-tree lookup per live mm of its subtree, its own
    included, exited contexts linking, exec'd descendants left out (C2, C4,
    C6; _Subtrees); exclusive folios stop at their own mm (C7); lock and
    time unknown (C5); remap-entry lookups a range (C3, _remap_bound)."""
    known, vmas = walks.known, walks.vmas
    sub = _Subtrees(rp)
    owner = np.where(known, rp.ob.owner[walks.gs], -1).astype(np.int64)
    count, alive = sub.live(owner[known], walks.pos[known])
    for k, n in sub.old_context(owner[known], rp.ob.pos[walks.gs[known]], walks.pos[known]).items():
        count[k], alive[k] = n, False           # C6: the owner's new image is another context
    exclusive = vmas[known] <= 1
    # C7 stops at the context's own mm only if the one mapping is there; a
    # walk row does not say which mm it was in: low end there, high end in a
    # descendant's (the whole subtree); an exited context's mapping is a
    # descendant's at both ends
    stops = exclusive & alive
    mms = np.where(stops, 1, count)
    lo = _remap_bound(rp, sub, owner[known], walks.pos[known], stops, walks.index[known])
    hi = _remap_bound(rp, sub, owner[known], walks.pos[known], np.zeros_like(stops), walks.index[known])
    remap = None if lo is None or hi is None else (lo[0], hi[1])
    return _design(int(known.sum()), mms, "mm", None, None,
                   time_walks=0, time_unknown_walks=int(known.sum()),
                   lock_wait_unknown_walks=int(known.sum()),
                   unknown=_unknown_notes(int(known.sum()), int(known.sum()), WHY_COW),
                   tree_lookups=stats(mms), tree_lookups_high=stats(count), rmap_one_calls=stats(vmas[known]),
                   exclusive_walks=int(stops.sum()),
                   descendant_mms=stats(np.where(stops, 0, count - alive.astype(np.int64))),
                   lock={LOCK_COW: int(known.sum())}, unknown_context=int((~known).sum()),
                   remap_lookups=None if remap is None else {"low": stats(remap[0]), "high": stats(remap[1])},
                   fidelity="estimate (the draft as described on the list; no commit of it here): "
                            "context = owner process of the walk's anon_vma (C1); exclusive folios "
                            "(measured VMAs <= 1) of a live context stop at their own mm (C7, "
                            "folio_maybe_mapped_shared), at the low end: the walk row does not say in "
                            "which mm the one mapping was, so tree_lookups_high walks the subtree; "
                            "otherwise one VMA-tree lookup per live mm of its subtree, descendants that "
                            "exec'd, or whose ancestor below the context exec'd before forking them, "
                            "left out (C2, C4, C6); rmap_one calls as measured; lock and time "
                            "unknown (C5); remap-entry lookups (C3) a range: with the folio's index "
                            "(v8) one per live entry of every mm visited whose pgoff range covers it, "
                            "plus at most one per entry of unknown range; without it none at least, at "
                            "most one per live entry (null without call rows or without the VMAs from "
                            "before the run)")


# ------------------------------------------------------ nofork designs
def _nofork_leaf_walks(rp, walks):
    """Takes the recording and _Walks; returns {nofork variant: the walks of
    a folio in an anon_vma the variant does not make}: a leaf generation's
    fault anon_vma, and for nofork_clone its fork one too (rules N1, N4;
    W6); never KSM folios, never anon_vmas allocated before the run."""
    known, n = walks.known, walks.n
    rows = walks.gs[known]
    if len(rows):
        gen = generations.build(rp, rows)
        leaf = ~gen.forking[gen.gen]
        path = rp.ob.path[rows]
        made_not = {"nofork": path == PATH_CODE["fault"],
                    "nofork_clone": (path == PATH_CODE["fault"]) | (path == PATH_CODE["fork"])}
    leaf_walks = {}
    for v in NOFORK_VARIANTS:
        mask = np.zeros(n, dtype=bool)
        if len(rows):
            mask[np.flatnonzero(known)] = made_not[v] & leaf
        mask &= ~walks.ksm
        leaf_walks[v] = mask
    return leaf_walks


def _nofork(rp, walks, waits):
    """Takes the recording, _Walks and _WalkWaits; returns {nofork variant:
    its design} (W6): a leaf walk (_nofork_leaf_walks) goes through its VMA
    like a lazy folio, lock and time unknown; the rest as measured."""
    return {v: _through_vma(walks, waits, mask, "leaf_walks",
                            f"estimate: a folio in an anon_vma {v} does not make (section 3: a leaf "
                            "generation's fault path, and for nofork_clone its own fork path) is "
                            "walked through its VMA, lock and time unknown (W6); the rest as measured "
                            "(lock_wait_ns and time_ns cover them, null when none is)")
            for v, mask in _nofork_leaf_walks(rp, walks).items()}


def _notes():
    """The notes of the section (section 6: units of visits, unknown never 0,
    pre-run anon_vmas, KSM)."""
    return [
        "visits: eager, lazy and no-fork = VMAs rmap_one ran on (measured: a design that walks "
        "through the folio's VMA still reaches every VMA mapping it); CoW context = VMA-tree "
        "lookups, one per mm visited",
        "lock and time of the walks a design changes are unknown, never 0: the lazy series and "
        "the CoW-context draft do not settle them; time_ns and lock_wait_ns cover the walks "
        "that stay eager (time_walks), null when none does; each design's `unknown` says "
        "what they leave out",
        "walks whose anon_vma was allocated before the run (anon_vma_id null) stay as measured "
        "in lazy and no-fork and are left out of the CoW context",
        "KSM folios are walked through their stable node's rmap items in every design: as "
        "measured",
    ]


def summary(rp, lazy_state):
    """Takes the analysis of a recording and the lazy model's lazy state
    (lazy.Result.lazy_state: the estimate's or the exact replay's, None
    when it has none); returns the ``walks`` section of the report
    (docs/models.md#walks-recorded): the walk rows as measured (eager) and
    re-costed per design (lazy W4, cow_context W5, nofork and nofork_clone
    W6), or why there is none."""
    rec = rp.rec
    w = rec.walks
    if w is None or not len(w):
        return _unavailable(rec.meta, _probe_state(rec.meta))
    walks = _walk_rows(rp, w)
    waits = _walk_waits(w, rec.locks, walks.n)
    out = {"available": True, "walks": int(walks.n), "see": SECTION,
           "lock_source": "lock rows with lock_func walk (waits for the root rwsem inside rmap "
                          "walks); matched to a walk by task and time"}
    eager = _eager(walks, waits)
    lazy = _lazy(walks, waits, lazy_state)
    cow = _cow_context(rp, walks)
    nof = _nofork(rp, walks, waits)
    out.update(eager=eager, lazy=lazy, cow_context=cow, **nof)
    out["notes"] = _notes()
    return out
