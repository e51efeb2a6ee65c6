"""Process generations: a process (tgid) from its birth or an exec to its
next exec or its exit (docs/models.md#nofork-rules, rule N0).

exec (fs/exec.c) gives a process a new mm: its anon_vmas, AVCs and VMAs so
far die, and whether the new image forks is a new question. So leafness
(makes no process fork) is a property of a generation, not of a tgid. The
new mm exists from the start of execve() (bprm_mm_init: the new stack VMA
and the argument pages are made there), and the exec row comes once the
image is loaded: a generation begins at the exec row's time minus its
``duration_ns`` (schema v5: from execve() entry; without it, at the exec
row).

The owner of an object is the process whose mm it serves: the child for
fork paths (the writer's ``owner_tgid``), the VMA's process for a fault
made through another process (analyzer/mmowner.py), and for a vfork or
other ``CLONE_VM`` child before its exec the parent whose mm it runs on
(kernel/fork.c copy_mm: ``CLONE_VM`` shares the mm, nothing is copied).
"""

from dataclasses import dataclass

import numpy as np

from .forktree import is_process_fork
from .order import unique

_SHIFT = 40                      # key = tgid rank << 40 | time rank


@dataclass
class Generations:
    """Per alloc row: ``gen`` (an index into the per-generation arrays) and
    ``owner`` (the tgid whose mm the object serves)."""
    gen: np.ndarray
    owner: np.ndarray
    tgid: np.ndarray             # per generation
    number: np.ndarray           # execs of the tgid before it (0: from its birth or from before the run)
    forking: np.ndarray          # made a process fork
    born: np.ndarray             # began in the run (a fork, vfork or clone that made the tgid, or an exec)
    ended: np.ndarray            # ended in the run (an exec, or the process's exit)
    by_exec: np.ndarray          # ended by an exec in the run
    forked_child: np.ndarray     # generation 0 of a tgid a process fork made in the run

    @property
    def whole_life(self):
        """Generations that both began and ended in the run."""
        return self.born & self.ended

    @property
    def fork_exec(self):
        """A child forked in the run that execs without forking: what is
        made for it dies at the exec anyway."""
        return self.forked_child & self.by_exec & ~self.forking

    def summary(self):
        """Counts of generations: all, forking, leaf, leaf ones whole in the
        run, forked children that exec without forking, and those after an
        exec."""
        leaf = ~self.forking
        return {"generations": int(len(self.tgid)), "forking": int(self.forking.sum()),
                "leaf": int(leaf.sum()), "leaf_whole_life_in_run": int((leaf & self.whole_life).sum()),
                "fork_then_exec": int(self.fork_exec.sum()),
                "after_exec": int((self.number > 0).sum())}


class _Keys:
    """(tgid, time) pairs as sortable int64 keys: ranks of both."""

    def __init__(self, tgids, times):
        self.tgids = unique(np.concatenate([np.asarray(t, dtype=np.int64) for t in tgids]))
        self.times = unique(np.concatenate([np.asarray(t, dtype=np.int64) for t in times]))

    def key(self, tgid, ts):
        """Sortable int64 keys of the (``tgid``, ``ts``) pairs."""
        t = np.searchsorted(self.tgids, np.asarray(tgid, dtype=np.int64)).astype(np.int64)
        return (t << _SHIFT) | np.searchsorted(self.times, np.asarray(ts, dtype=np.int64))

    def base(self, tgid):
        """The smallest key of ``tgid`` (its rank, with time rank 0)."""
        return np.searchsorted(self.tgids, np.asarray(tgid, dtype=np.int64)).astype(np.int64) << _SHIFT


def exec_starts(rec):
    """(tgid, time) of each exec's start: the exec row's time minus its
    duration_ns where known."""
    ex = rec.execs
    ts = ex["ts_ns"].to_numpy().astype(np.int64)
    dur = ex["duration_ns"].to_numpy().astype(np.int64) if "duration_ns" in ex else np.full(len(ex), -1)
    return ex["tgid"].to_numpy().astype(np.int64), ts - np.maximum(dur, 0)


def _shared_mm_children(rec):
    """(child, parent, time) of every CLONE_VM child that is a process of its own (vfork)."""
    f = rec.forks
    if not len(f):
        return (np.zeros(0, np.int64),) * 3
    shared = ~is_process_fork(f) & (f["child_tgid"].to_numpy() != f["tgid"].to_numpy())
    return (f.loc[shared, "child_tgid"].to_numpy().astype(np.int64),
            f.loc[shared, "tgid"].to_numpy().astype(np.int64),
            f.loc[shared, "ts_ns"].to_numpy().astype(np.int64))


def _owners(keys, exec_keys, tgid, ts, vchild, vparent, vborn):
    """The mm owner of rows (tgid, ts) that are not fork paths: a vfork
    child's rows between its birth and its first exec start are its parent's."""
    owner = np.asarray(tgid, dtype=np.int64).copy()
    if not len(vchild):
        return owner
    order = np.lexsort((vborn, vchild))
    vchild, vparent, vborn = vchild[order], vparent[order], vborn[order]
    i = np.searchsorted(vchild, owner, side="right") - 1      # the owner's latest vfork birth
    ic = np.maximum(i, 0)
    cand = (i >= 0) & (vchild[ic] == owner) & (vborn[ic] <= ts)
    # no exec start of the child between its birth and the row
    n_before = np.searchsorted(exec_keys, keys.key(owner, ts), side="right")
    n_born = np.searchsorted(exec_keys, keys.key(owner, vborn[ic]), side="right")
    inside = cand & (n_before == n_born)
    owner[inside] = vparent[ic][inside]
    return owner


def vfork_owners(rec, tgid, ts):
    """The mm owner of rows (``tgid``, ``ts``) outside fork paths: a vfork
    child's rows between its birth and its first exec start are its
    parent's (N0')."""
    etgid, ets = exec_starts(rec)
    vchild, vparent, vborn = _shared_mm_children(rec)
    keys = _Keys([tgid, etgid, vparent, vchild], [ts, ets, vborn])
    return _owners(keys, np.sort(keys.key(etgid, ets)), tgid, ts, vchild, vparent, vborn)


def build(rp, rows):
    """Generations of the owners of ``rows`` (alloc rows, replay order)."""
    rec, ob, tree = rp.rec, rp.ob, rp.tree
    ts = ob.ts_ns[rows]
    etgid, ets = exec_starts(rec)
    vchild, vparent, vborn = _shared_mm_children(rec)
    pf = tree.forks
    ftgid, fts = pf["tgid"].to_numpy().astype(np.int64), pf["ts_ns"].to_numpy().astype(np.int64)
    keys = _Keys([ob.owner[rows], ob.tgid[rows], etgid, vparent, vchild, ftgid],
                 [ts, ets, vborn, fts])
    exec_keys = np.sort(keys.key(etgid, ets))
    fork_path = ob.fork_id[rows] >= 0
    # ob.owner: the context task's tgid outside fork paths, or the VMA's
    # process for a fault made through another one (mmowner)
    owner = np.where(fork_path, ob.owner[rows],
                     _owners(keys, exec_keys, ob.owner[rows], ts, vchild, vparent, vborn))

    def number(tgid, times):
        """Exec starts of the tgid at or before each time."""
        return np.searchsorted(exec_keys, keys.key(tgid, times), side="right") - \
            np.searchsorted(exec_keys, keys.base(tgid))

    num = number(owner, ts)
    gkey = (owner << 20) | np.minimum(num, (1 << 20) - 1)
    uniq, gen = np.unique(gkey, return_inverse=True)
    g_tgid, g_num = uniq >> 20, uniq & ((1 << 20) - 1)

    forking = np.zeros(len(uniq), dtype=bool)
    if len(ftgid):
        k = (ftgid << 20) | np.minimum(number(ftgid, fts), (1 << 20) - 1)
        j = np.minimum(np.searchsorted(uniq, k), len(uniq) - 1)
        forking[j[uniq[j] == k]] = True
    execs_of = number(g_tgid, np.full(len(g_tgid), np.iinfo(np.int64).max))
    by_exec = g_num < execs_of
    f = rec.forks
    new = f["child_tgid"].to_numpy() != f["tgid"].to_numpy() if len(f) else np.zeros(0, dtype=bool)
    made = unique(f.loc[new, "child_tgid"].to_numpy().astype(np.int64)) if len(f) else np.zeros(0, np.int64)
    born = (g_num > 0) | (np.isin(g_tgid, made) & (g_num == 0))
    ended = by_exec | np.isin(g_tgid, tree.exited)
    return Generations(gen=gen, owner=owner, tgid=g_tgid, number=g_num, forking=forking, born=born,
                       ended=ended, by_exec=by_exec, forked_child=np.isin(g_tgid, tree.born) & (g_num == 0))
