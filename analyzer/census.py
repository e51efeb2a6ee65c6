"""The anon_vma topology when the run started, and what each design would
hold of it (docs/models.md#census).

Reads the ``census`` rows (schema v4, docs/schema.md#census): one row per
VMA with an anon_vma (its chain length) and one per anon_vma a VMA points
at (root, num_children, num_active_vmas). What happened before the run is
not recorded, so the designs' steady-state savings are ranges whose low end
is zero (every VMA may have been upgraded by a past fork or mremap) and
whose high end follows from the structure alone:

- C1 eager: the counts as the iterator found them (anon_vmas: every
  distinct one a chain links, ``census.anon_vmas_linked``; AVCs: the sum of
  the chain lengths, each AVC being on one VMA's ``anon_vma_chain``).
- C2 lazy candidate VMA, per VMA: a fault root (a chain of one AVC, its
  anon_vma a root with no child anon_vma: ``num_children`` at most the
  root's self-link of ``__anon_vma_prepare()``), or an inherited VMA of a
  process that has not forked since (its own anon_vma is not a root and has
  no child: ``anon_vma_fork()`` made it for the copy, and the lazy kernel
  would not, L2). At most one AVC per candidate is saved (the other
  chain_avcs - 1 link the parent's tree); its anon_vma is saved when every
  VMA pointing at it (``num_active_vmas``) is a candidate in the census.
- C3 nofork (opt-out after start): the fault-root candidates of a process
  none of whose anon_vmas has a child anon_vma (a leaf).
- C3' nofork_clone (set at clone): every C2 candidate of such a process.

Kernels before 6.0 have no num_children/num_active_vmas (``degree``): the
columns are null and C2/C3 are not computed.
"""

import numpy as np
import pandas as pd

from .eager import saved_pct
from .objlookup import stats

SECTION = "docs/models.md#census"
FIDELITY = ("counts: exact for the lists the iterator read (under each mm's mmap read lock, without anon_vma "
            "locks, at the start of the run); "
            "design savings: [0, upper bound], history before the run unknown")


def _not(status, reason):
    return {"status": status, "reason": reason, "see": SECTION}


def summary(rec, sizes):
    """The ``census`` section of the report. ``sizes``: {object: bytes}."""
    meta = rec.meta.get("census")
    c = rec.census
    ran = isinstance(meta, dict) and meta.get("status") == "done"
    if c is None or (not len(c) and not ran):
        if isinstance(meta, dict):
            return _not(meta.get("status", "not run"), meta.get("reason", ""))
        return _not("not recorded", "the recording has no census rows: schema version 3 or older")
    obj = c["object"].astype(str).to_numpy()
    v, a = c[obj == "vm_area_struct"], c[obj == "anon_vma"]
    chain = v["chain_avcs"].to_numpy(dtype=np.int64)
    linked = int(meta.get("anon_vmas_linked", len(a))) if isinstance(meta, dict) else len(a)
    avcs = int(chain.sum())
    out = {
        "status": "done", "see": SECTION, "fidelity": FIDELITY,
        "processes": int(v["tgid"].nunique()),
        "vmas": int(len(v)),
        "file_vmas": int(v["vma_file"].fillna(False).astype(bool).sum()),
        "anon_vma": {"count": linked, "bytes": linked * sizes["anon_vma"],
                     "with_rows": int(len(a)), "only_linked": linked - int(len(a))},
        "anon_vma_chain": {"count": avcs, "bytes": avcs * sizes["anon_vma_chain"]},
        "chain_avcs": stats(chain),
        "truncated_chains": int(v["chain_truncated"].fillna(False).astype(bool).sum()),
        "trees": int(a["root_id"].nunique()),
        "lost": int(meta.get("lost", 0)) if isinstance(meta, dict) else 0,
    }
    children = a["num_children"].to_numpy(dtype=np.int64)
    if not len(a) or (children < 0).any():  # null (load fills int nulls with a negative)
        out["designs"] = None
        out["designs_note"] = ("the census found no VMA with an anon_vma" if not len(a) else
                               "kernel without anon_vma num_children/num_active_vmas (before 6.0)")
        return out
    out["largest_num_children"] = int(children.max())
    out["designs"] = _designs(v, a, chain, linked, avcs, sizes)
    return out


class Candidates:
    """Per census VMA row: which design would not hold its objects (C2,
    C3, C3'), and the anon_vma rows they point at."""

    def __init__(self, v, a, chain):
        av_ids = a["obj_id"].to_numpy(dtype=np.int64)
        children = a["num_children"].to_numpy(dtype=np.int64)
        is_root = a["root_id"].to_numpy(dtype=np.int64) == av_ids
        # child anon_vmas beyond the root's self-link (__anon_vma_prepare sets 1)
        has_child = children - is_root.astype(np.int64) > 0
        vma_av = v["anon_vma_id"].to_numpy(dtype=np.int64)
        order = np.argsort(av_ids)
        pos = order[np.minimum(np.searchsorted(av_ids, vma_av, sorter=order), len(order) - 1)]
        # every VMA row's anon_vma has a row (the iterator writes it with the first)
        assert (av_ids[pos] == vma_av).all(), "census VMA row without its anon_vma row"
        # a fault root: its own chain of one, no child; an inherited VMA of a
        # process that has not forked since: its own anon_vma is not a root and
        # has no child (anon_vma_fork() made it for the copy; the parent's
        # links are the other chain_avcs - 1 AVCs, which stay)
        root_cand = (chain == 1) & is_root[pos] & ~has_child[pos]
        inh_cand = ~is_root[pos] & ~has_child[pos]
        self.active = a["num_active_vmas"].to_numpy(dtype=np.int64)
        self.tgid = v["tgid"].to_numpy(dtype=np.int64)
        self.av_tgid = a["tgid"].to_numpy(dtype=np.int64)
        procs, inv = np.unique(self.tgid, return_inverse=True)
        forked = np.bincount(inv, weights=has_child[pos].astype(float), minlength=len(procs)) > 0
        leaf = ~forked[inv]
        self.pos, self.n_av, self.forked = pos, len(a), forked
        self.inherited = inh_cand
        lazy = root_cand | inh_cand
        # N5: no-fork keeps MAP_PRIVATE file VMAs
        self.no_way_back = _file_vmas(v)
        opt = leaf & ~self.no_way_back
        self.masks = {"lazy": lazy, "nofork": root_cand & opt, "nofork_clone": lazy & opt}
        self._by = {}

    def saved(self, design):
        """(saved anon_vma mask over the anon_vma rows, saved AVC mask over
        the VMA rows): one AVC per candidate VMA; an anon_vma when every
        VMA pointing at it (num_active_vmas) is a candidate of the census."""
        cand = self.masks[design]
        n_cand = np.bincount(self.pos[cand], minlength=self.n_av)
        return (n_cand > 0) & (n_cand == self.active), cand

    def by_process(self, design):
        """{object: pd.Series {tgid: saved count}} (upper bounds), computed once."""
        if design not in self._by:
            av, avc = self.saved(design)
            self._by[design] = {"anon_vma": pd.Series(av.astype(np.int64)).groupby(self.av_tgid).sum(),
                                "anon_vma_chain": pd.Series(avc.astype(np.int64)).groupby(self.tgid).sum()}
        return self._by[design]

    def shared_anon_vmas(self):
        """VMAs beyond the first pointing at one anon_vma: each may get an
        anon_vma of its own at an upgrade (X6's high end)."""
        return int(np.maximum(self.active - 1, 0).sum())


def candidates(rec):
    """Candidates of the recording's census, or None (no census rows, or a
    kernel without num_children)."""
    c = rec.census
    if c is None or not len(c):
        return None
    obj = c["object"].astype(str).to_numpy()
    v, a = c[obj == "vm_area_struct"], c[obj == "anon_vma"]
    if not len(a) or (a["num_children"].to_numpy(dtype=np.int64) < 0).any():
        return None
    return Candidates(v, a, v["chain_avcs"].to_numpy(dtype=np.int64))


def _file_vmas(v):
    """Census VMA rows no no-fork design can opt out for sure (rule N5):
    MAP_PRIVATE file VMAs (``vma_file``). An mremap-moved VMA cannot be told
    here from the stack exec relocated in place (relocate_vma_down(), 6.12
    mm/mmap.c:2332, 7.3 mm/vma_exec.c:23: both
    keep a ``vm_pgoff`` that is not ``vm_start >> PAGE_SHIFT``, and the
    stack keeps its vm_area_struct), so moved VMAs stay candidates: the
    savings stay an upper bound."""
    if "vma_file" not in v:
        return np.zeros(len(v), dtype=bool)
    return v["vma_file"].fillna(False).to_numpy(dtype=bool)


def _designs(v, a, chain, linked, avcs, sizes):
    """C2, C3, C3': upper bounds of what lazy, nofork and nofork_clone would
    not hold, VMA by VMA."""
    cands = Candidates(v, a, chain)

    def saved(design):
        av, avc = cands.saved(design)
        n_av, n_avc = int(av.sum()), int(avc.sum())
        b = n_av * sizes["anon_vma"] + n_avc * sizes["anon_vma_chain"]
        return {"anon_vma_saved": [0, n_av], "anon_vma_chain_saved": [0, n_avc], "bytes_saved": [0, int(b)],
                "saved_pct": {"anon_vma": [0.0, saved_pct(linked, linked - n_av)],
                              "anon_vma_chain": [0.0, saved_pct(avcs, avcs - n_avc)]}}
    lazy = cands.masks["lazy"]
    forked = cands.forked
    return {
        "lazy": dict(saved("lazy"), candidate_vmas=int(lazy.sum()), inherited_candidates=int(cands.inherited.sum()),
                     rule="C2", see=SECTION),
        "nofork": dict(saved("nofork"), candidate_processes=int((~forked).sum()),
                       rule="C3", see=SECTION),
        "nofork_clone": dict(saved("nofork_clone"), candidate_processes=int((~forked).sum()),
                             rule="C3'", see=SECTION),
    }
