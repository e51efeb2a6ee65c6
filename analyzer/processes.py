"""Per-process and per-comm allocations of anon_vma and AVC (the report's
``processes`` lists), tallied a chunk of rows at a time: what is held grows
with the processes and command names, not with the rows
(docs/streaming.md)."""

import numpy as np
import pandas as pd

from .keyed import KeyedTable
from .load import OBJECT_CODE
from .stream import chunks

NOTE = ("owner = the process an object serves (the child for fork paths, the VMA's process "
        "for a fault made through another one: faults_through_another_process rows, "
        "function probes only); for_children = what the process's forks made for its "
        "children; comm = the allocating task's command name")


class Tally:
    """Counts per process, a chunk of rows at a time: ``procs`` (tgids,
    ascending), ``cnt[i]`` = (anon_vmas, AVCs) process ``i`` owns,
    ``made[i]`` the same for what its forks made for its children,
    ``comm[i]`` the comm code of its latest row; ``by_comm`` (a
    KeyedTable by comm code) = (anon_vmas, AVCs) the tasks of each comm
    allocated."""

    def __init__(self):
        self.table = KeyedTable([0, 0, 0, 0, -1])       # own av, avc; made av, avc; comm
        self.by_comm = KeyedTable([0, 0])

    procs = property(lambda self: self.table.keys)
    cnt = property(lambda self: self.table.vals[:, 0:2])
    made = property(lambda self: self.table.vals[:, 2:4])
    comm = property(lambda self: self.table.vals[:, 4])

    def feed(self, owner, tgid, fork_id, is_avc, comm):
        """One chunk's anon_vma and AVC alloc rows, in replay order
        (``is_avc``: 1 on an AVC row, 0 on an anon_vma row)."""
        m = len(owner)
        if not m:
            return
        fork_path = fork_id >= 0
        codes, procs = pd.factorize(np.concatenate([owner, tgid[fork_path]]), sort=True)
        own, maker = codes[:m], codes[m:]
        k = len(procs)
        cnt = np.bincount(own * 2 + is_avc, minlength=2 * k).reshape(k, 2)
        made = np.bincount(maker * 2 + is_avc[fork_path], minlength=2 * k).reshape(k, 2)
        last = np.full(k, -1, dtype=np.int64)             # each process's latest row, for its comm
        np.maximum.at(last, own, np.arange(m))
        np.maximum.at(last, maker, np.flatnonzero(fork_path))
        rows = self.table.rows(procs)
        self.table.vals[rows, 0:2] += cnt
        self.table.vals[rows, 2:4] += made
        self.table.vals[rows, 4] = comm[last]             # this chunk's rows are the later ones
        has = comm >= 0
        self.by_comm.add(comm[has], np.stack([1 - is_avc[has], is_avc[has]], axis=1))


def tally(rp):
    """The Tally of the Replay ``rp``'s anon_vma and AVC alloc rows, fed
    a chunk at a time."""
    ob, t = rp.ob, Tally()
    av, avc = OBJECT_CODE["anon_vma"], OBJECT_CODE["anon_vma_chain"]
    for part in chunks(len(ob)):
        code = ob.object[part]
        a = np.flatnonzero(ob.is_alloc[part] & ((code == av) | (code == avc)))
        t.feed(ob.owner[part][a], ob.tgid[part][a], ob.fork_id[part][a],
               (code[a] == avc).astype(np.int64), ob.comm[part][a])
    return t


def processes(rp, top=50):
    """Per-process and per-comm allocations of anon_vma and AVC (exact). A
    process row has what it owns (the child's for fork paths) and what its
    forks made for its children (``for_children``, the fork paths it ran),
    and is ordered by both, so that a fork server shows.

    Takes the Replay ``rp`` and ``top``, the most rows of each list; returns
    the report's ``processes`` entries: ``by_process`` (see
    :func:`_process_rows`), ``by_comm`` (:func:`_comm_rows`), ``top``,
    ``processes_with_objects``, ``comms_with_objects``,
    ``faults_through_another_process`` (mmowner), ``fidelity`` and
    ``note``."""
    t = tally(rp)
    sizes = rp.sizes["anon_vma"][0], rp.sizes["anon_vma_chain"][0]
    result = {"by_process": [], "by_comm": [], "top": top}
    result["by_process"], result["processes_with_objects"] = _process_rows(rp, t, sizes, top)
    result["by_comm"], result["comms_with_objects"] = _comm_rows(rp.ob, t, sizes, top)
    result["fidelity"] = "exact"
    result["faults_through_another_process"] = rp.rec.remote_faults
    result["note"] = NOTE
    return result


def _process_rows(rp, t, sizes, top):
    """The ``by_process`` list: the ``top`` processes with the most bytes
    owned plus made for their children, most first (ties in tgid order).
    Returns ``(rows, processes_with_objects)``: the rows as the report has
    them, and how many processes own at least one object."""
    av_size, avc_size = sizes
    nbytes = t.cnt[:, 0] * av_size + t.cnt[:, 1] * avc_size
    made_bytes = t.made[:, 0] * av_size + t.made[:, 1] * avc_size
    forks = rp.tree.forks.groupby("tgid").size()
    forking = set(rp.tree.forking.tolist())
    order = np.argsort(-(nbytes + made_bytes), kind="stable")
    rows = []
    for i in order[:top]:                             # at most `top` rows
        tgid = int(t.procs[i])
        rows.append({
            "tgid": tgid,
            "comm": rp.ob.comm_name(int(t.comm[i])),
            "anon_vma": int(t.cnt[i, 0]),
            "anon_vma_chain": int(t.cnt[i, 1]),
            "bytes": int(nbytes[i]),
            "for_children": {"anon_vma": int(t.made[i, 0]), "anon_vma_chain": int(t.made[i, 1]),
                             "bytes": int(made_bytes[i])},
            "process_forks": int(forks.get(tgid, 0)),
            "leaf": tgid not in forking,
        })
    return rows, int((t.cnt.sum(axis=1) > 0).sum())


def _comm_rows(ob, t, sizes, top):
    """The ``by_comm`` list: per command name of the allocating task, the
    anon_vmas and AVCs it made; the ``top`` comms with the most bytes, most
    first (ties in category order). Returns ``(rows, comms_with_objects)``."""
    av_size, avc_size = sizes
    seen, ccnt = t.by_comm.keys, t.by_comm.vals       # observed comms, in category order
    cbytes = ccnt[:, 0] * av_size + ccnt[:, 1] * avc_size
    corder = np.argsort(-cbytes, kind="stable")
    rows = [{"comm": ob.comm_names[seen[i]], "anon_vma": int(ccnt[i, 0]),
             "anon_vma_chain": int(ccnt[i, 1]), "bytes": int(cbytes[i])} for i in corder[:top]]
    return rows, int(len(seen))
