"""The process tree of a run from its ``fork`` rows (kernel/fork.c copy_process).

A *process fork* copies the mm (``dup_mmap``); a fork row with ``shares_mm``
true is a thread or a vfork and copies no VMA (docs/models.md section 0).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class ProcessTree:
    """The process forks of a run, and the tgids seen, forking, leaf, born and
    exited in it."""
    forks: pd.DataFrame      # process forks: pos, ts_ns, pid, tgid, child_tgid, fork_id, first
    seen: np.ndarray         # every tgid in a kernel row
    forking: np.ndarray      # tgids that made a process fork during the run
    leaf: np.ndarray         # seen and not forking
    born: np.ndarray         # tgids created by a process fork during the run
    exited: np.ndarray       # tgids whose last thread exited during the run
    threads_created: int
    max_depth: int           # longest parent->child chain of process forks in the run

    def summary(self):
        """The tree's counts for the report, with their fidelity."""
        return {
            "seen": int(len(self.seen)),
            "forking": int(len(self.forking)),
            "leaf": int(len(self.leaf)),
            "born_in_run": int(len(self.born)),
            "exited_in_run": int(len(self.exited)),
            "process_forks": int(len(self.forks)),
            "threads_or_vforks": int(self.threads_created),
            "max_fork_depth": int(self.max_depth),
            "fidelity": "exact for the run window (a process may fork before or after it)",
            "see": "docs/models.md#eager",
        }


def is_process_fork(forks):
    """Boolean mask of fork rows that copied an mm."""
    shares = forks["shares_mm"]
    thread_like = forks["child_tgid"].to_numpy() == forks["tgid"].to_numpy()
    known = shares.notna().to_numpy()
    vals = shares.fillna(False).to_numpy(dtype=bool)
    return np.where(known, ~vals, ~thread_like)


def build(rec, object_tgids):
    """The run's :class:`ProcessTree`, from its fork, exit and exec rows and
    ``object_tgids``, the tgids and owners of its object rows."""
    f = rec.forks
    mask = is_process_fork(f) if len(f) else np.zeros(0, dtype=bool)
    pf = f.loc[mask, ["pos", "ts_ns", "pid", "tgid", "child_tgid", "fork_id"]].reset_index(drop=True)
    pf["first"] = ~pf["tgid"].duplicated()

    ids = [object_tgids, f["tgid"].to_numpy(), pf["child_tgid"].to_numpy(),
           rec.exits["tgid"].to_numpy(), rec.execs["tgid"].to_numpy()]
    seen = np.unique(np.concatenate([np.asarray(a, dtype=np.int64) for a in ids]))
    seen = seen[seen >= 0]
    forking = np.unique(pf["tgid"].to_numpy().astype(np.int64))
    leaf = np.setdiff1d(seen, forking)
    born = np.unique(pf["child_tgid"].to_numpy().astype(np.int64))

    ex = rec.exits
    if len(ex):
        gd = ex["group_dead"]
        last = np.where(gd.notna().to_numpy(), gd.fillna(False).to_numpy(dtype=bool),
                        ex["pid"].to_numpy() == ex["tgid"].to_numpy())
        exited = np.unique(ex.loc[last, "tgid"].to_numpy().astype(np.int64))
    else:
        exited = np.zeros(0, dtype=np.int64)

    # depth: children of children ..., one generation per step (no per-row loop)
    depth = 0
    if len(pf):
        parent_of = pd.Series(pf["tgid"].to_numpy(), index=pf["child_tgid"].to_numpy())
        parent_of = parent_of[~parent_of.index.duplicated()]
        index = parent_of.index
        current = np.unique(index.to_numpy())
        while len(current) and depth < 4096:   # the cap guards against pid-reuse cycles
            depth += 1
            current = np.unique(parent_of.reindex(current).to_numpy())
            current = current[np.isin(current, index)]
    return ProcessTree(forks=pf, seen=seen, forking=forking, leaf=leaf, born=born,
                       exited=exited, threads_created=int((~mask).sum()),
                       max_depth=depth)
