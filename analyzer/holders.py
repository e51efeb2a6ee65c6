"""Who holds the anon rmap at a snapshot (docs/models.md#holders): the
share of processes, and of anon_vma + AVC bytes, held by processes that
never forked, by fork servers, their children and self-forking processes;
and the fork shapes the list asked about (forks of multi-threaded parents,
children that outlive a self-forking parent's fork).
"""

import numpy as np
import pandas as pd

from .keyed import KeyedTable
from .load import OBJECT_CODE
from .stream import chunks

SECTION = "docs/models.md#holders"
#: process forks in the window that make a process a fork server (H2)
FORK_SERVER_FORKS = 3
#: a child outliving its self-forking parent's fork by more than this (H4)
OUTLIVE_NS = 60 * 10 ** 9
GROUPS = ("never_forked", "never_forked_whole_life", "fork_servers", "fork_server_children", "self_forking")


class _ByOwner(KeyedTable):
    """Running (objects, bytes) per tgid."""

    def __init__(self):
        super().__init__([0, 0])

    def series(self):
        """pd.Series {tgid: bytes} of the tgids with objects."""
        has = self.vals[:, 0] != 0
        return pd.Series(self.vals[has, 1], index=self.keys[has])


class Holders:
    """Bytes per process at the positions ``at``: the run's objects by owner
    (H1) and the census's by the process whose VMA chain held them, less the
    frees of older objects by the freeing process. The run's objects are
    tallied a chunk of rows at a time, each process's total copied as the
    rows pass each position (docs/streaming.md)."""

    def __init__(self, rp, census_ok, at):
        self.census = _census_bytes(rp) if census_ok else pd.Series(dtype=np.int64)
        c = rp.rec.census
        self.census_pos = int(c["pos"].max()) if census_ok and c is not None and len(c) else -1
        self._at = _tally_at(rp, sorted(set(at) | {self.census_pos}), self.census_pos)
        # the census saw the run's objects already live at its last row (S1)
        self.census = self.census.sub(self._at[self.census_pos][0], fill_value=0)

    def at(self, pos):
        """pd.Series {tgid: bytes} live just after ``pos`` (one of ``at``;
        zeros dropped)."""
        run, freed = self._at[pos]
        older = self.census.sub(freed, fill_value=0).clip(lower=0)
        out = run.add(older, fill_value=0)
        return out[out > 0].astype(np.int64)


def _tally_at(rp, at, census_pos):
    """{position: (run bytes by owner, bytes of older objects freed after
    the census by the freeing tgid)} just after each of ``at`` (ascending)."""
    ob, partner = rp.ob, rp.partner
    sizes = np.array([rp.sizes["anon_vma"][0], rp.sizes["anon_vma_chain"][0]], dtype=np.int64)
    run, freed, out, k = _ByOwner(), _ByOwner(), {}, 0

    def rows(sl):
        code = ob.object[sl]
        rmap = (code == OBJECT_CODE["anon_vma"]) | (code == OBJECT_CODE["anon_vma_chain"])
        size = sizes[(code == OBJECT_CODE["anon_vma_chain"]).astype(np.int64)]
        alloc, p = ob.is_alloc[sl] & rmap, partner[sl]
        matched = ~ob.is_alloc[sl] & rmap & (p >= 0)
        keys = np.concatenate([ob.owner[sl][alloc], ob.owner[p[matched]]]).astype(np.int64)
        n = np.r_[np.ones(int(alloc.sum()), np.int64), -np.ones(int(matched.sum()), np.int64)]
        run.add(keys, np.stack([n, np.concatenate([size[alloc], -size[matched]])], axis=1))
        pre = ~ob.is_alloc[sl] & rmap & ob.preexisting[sl] & (ob.pos[sl] > census_pos)
        freed.add(ob.tgid[sl][pre], np.stack([np.ones(int(pre.sum()), np.int64), size[pre]], axis=1))

    for part in chunks(len(ob)):
        pos = ob.pos[part]
        lo = 0
        while k < len(at) and at[k] <= pos[-1]:
            hi = int(np.searchsorted(pos, at[k], side="right"))
            rows(slice(part.start + lo, part.start + hi))
            out[at[k]], k, lo = (run.series(), freed.series()), k + 1, hi
        rows(slice(part.start + lo, part.stop))
    for p in at[k:]:
        out[p] = (run.series(), freed.series())
    return out


def _census_bytes(rp):
    """{tgid: bytes} of the census: each VMA's chain (its AVCs) and each
    anon_vma row, by the process the iterator found it in."""
    c = rp.rec.census
    if c is None or not len(c):
        return pd.Series(dtype=np.int64)
    obj = c["object"].astype(str).to_numpy()
    tgid = c["tgid"].to_numpy(dtype=np.int64)
    nbytes = np.where(obj == "anon_vma", rp.sizes["anon_vma"][0],
                      c["chain_avcs"].to_numpy(dtype=np.int64).clip(min=0) * rp.sizes["anon_vma_chain"][0])
    return pd.Series(nbytes).groupby(tgid).sum()


def classes(rp):
    """{group: set of tgids} of the Replay ``rp``'s processes over the
    window (docs/models.md#holders, H2)."""
    tree = rp.tree
    forks = tree.forks
    n_forks = forks.groupby("tgid").size()
    servers = set(n_forks[n_forks >= FORK_SERVER_FORKS].index.astype(int))
    forked = set(tree.forking.astype(int)) | _forked_before(rp)
    children = set(forks.loc[forks["tgid"].isin(servers), "child_tgid"].astype(int))
    seen = set(tree.seen.astype(int)) | set(rp.rec.census["tgid"].astype(int)) \
        if rp.rec.census is not None and len(rp.rec.census) else set(tree.seen.astype(int))
    never = seen - forked
    return {"never_forked": never, "never_forked_whole_life": never & set(tree.born.astype(int)),
            "fork_servers": servers, "fork_server_children": children,
            "self_forking": set(tree.forking.astype(int)) - servers}


def _forked_before(rp):
    """Processes whose census anon_vmas have a child anon_vma: forked before the run."""
    c = rp.rec.census
    if c is None or not len(c):
        return set()
    av = c[c["object"].astype(str) == "anon_vma"]
    kids = av["num_children"].to_numpy(dtype=np.int64)
    is_root = av["root_id"].to_numpy(dtype=np.int64) == av["obj_id"].to_numpy(dtype=np.int64)
    has_child = kids - is_root.astype(np.int64) > 0
    vmas = c[c["object"].astype(str) == "vm_area_struct"]
    parents = set(av.loc[has_child, "obj_id"].astype(np.int64))
    return set(vmas.loc[vmas["anon_vma_id"].isin(parents), "tgid"].astype(int))


def at_snapshot(holders, groups, pos, live_bytes):
    """The ``holders`` entry of one snapshot; ``live_bytes``: eager's
    anon_vma + AVC bytes there (None: unknown), which the attributed bytes
    differ from by the older objects no process is known to hold
    (docs/models.md#holders, H1); ``groups``: :func:`classes`; ``pos``:
    the snapshot's replay position."""
    held = holders.at(pos)
    total_p, total_b = int(len(held)), int(held.sum())
    out = {"processes": total_p, "attributed_bytes": total_b, "live_bytes": live_bytes,
           "attributed_minus_live": None if live_bytes is None else total_b - live_bytes,
           "fidelity": "exact for the run's objects; older objects by the process the census found them "
                       "in, their frees by the freeing process; attributed_minus_live < 0: anon_vmas the "
                       "census reached only through other VMAs' chains (census only_linked), > 0: older "
                       "objects freed by another process than their holder" if len(holders.census) else
                       "exact for the run's objects; no census: older objects are not attributed",
           "see": SECTION}
    for g in GROUPS:
        mine = held[held.index.isin(list(groups[g]))]
        out[g] = {"processes": int(len(mine)), "bytes": int(mine.sum()),
                  "share_processes": _share(len(mine), total_p), "share_bytes": _share(mine.sum(), total_b)}
    return out


def _share(n, total):
    return round(100.0 * float(n) / total, 1) if total else None


def fork_shapes(rp, groups):
    """Forks of multi-threaded parents (H3) and children outliving a
    self-forking parent's fork (H4) in the Replay ``rp``, over the window,
    with ``groups`` from :func:`classes` (docs/models.md#holders)."""
    rec, tree = rp.rec, rp.tree
    f = rec.forks
    thread = (~_process_fork_mask(f)) & (f["child_tgid"].to_numpy() == f["tgid"].to_numpy())
    ex = rec.exits
    thread_exit = ex["pid"].to_numpy() != ex["tgid"].to_numpy()
    pf = tree.forks
    threads = 1 + _threads_before(
        np.concatenate([f["tgid"].to_numpy()[thread], ex["tgid"].to_numpy()[thread_exit]]),
        np.concatenate([f["pos"].to_numpy()[thread], ex["pos"].to_numpy()[thread_exit]]),
        np.concatenate([np.ones(int(thread.sum()), np.int64), -np.ones(int(thread_exit.sum()), np.int64)]),
        pf["tgid"].to_numpy(), pf["pos"].to_numpy())
    out = {"process_forks": int(len(pf)),
           "by_multithreaded_parent_at_least": int((threads > 1).sum()),
           "max_threads_at_fork_at_least": int(threads.max()) if len(threads) else 0,
           "threads_note": "threads made in the run only: those alive before it are not recorded",
           "see": SECTION}
    out["self_forking_children"] = _outliving(rec, pf[pf["tgid"].isin(list(groups["self_forking"]))])
    return out


def _threads_before(tgid, pos, step, q_tgid, q_pos):
    """Per query (q_tgid, q_pos): the sum of ``step`` over the same tgid's
    events before q_pos (threads made minus threads exited), at least 0."""
    key = (np.asarray(tgid, np.int64) << 40) | np.asarray(pos, np.int64)
    order = np.argsort(key, kind="stable")
    key, step = key[order], np.asarray(step, np.int64)[order]
    cum = np.concatenate([[0], np.cumsum(step)])
    q_tgid = np.asarray(q_tgid, np.int64)
    before = np.searchsorted(key, (q_tgid << 40) | np.asarray(q_pos, np.int64), side="left")
    first = np.searchsorted(key, q_tgid << 40, side="left")
    return np.maximum(cum[before] - cum[first], 0)


def _process_fork_mask(f):
    from .forktree import is_process_fork
    return is_process_fork(f) if len(f) else np.zeros(0, dtype=bool)


def _outliving(rec, forks):
    ex = rec.exits
    gd = ex["group_dead"].fillna(False).to_numpy(dtype=bool) | (ex["pid"].to_numpy() == ex["tgid"].to_numpy())
    end_of = pd.Series(ex.loc[gd, "ts_ns"].to_numpy(), index=ex.loc[gd, "tgid"].to_numpy())
    end_of = end_of[~end_of.index.duplicated(keep="last")]
    ends = end_of.reindex(forks["child_tgid"].to_numpy()).to_numpy()
    life = ends - forks["ts_ns"].to_numpy()
    alive = np.isnan(ends)
    age_at_end = rec.end_ts_ns - forks["ts_ns"].to_numpy()
    return {"children": int(len(forks)),
            "outlived_fork_by_60s": int(((~alive) & (life > OUTLIVE_NS)).sum()
                                        + (alive & (age_at_end > OUTLIVE_NS)).sum()),
            "exited_within_60s": int(((~alive) & (life <= OUTLIVE_NS)).sum()),
            "alive_at_end_younger_than_60s": int((alive & (age_at_end <= OUTLIVE_NS)).sum())}
