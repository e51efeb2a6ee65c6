"""Build raw kernel event records (events.EVENT_DTYPE) for collector tests."""

import numpy as np

from anonscope.collector import abi, events

OBJ = {"anon_vma": 1, "anon_vma_chain": 2, "vm_area_struct": 3}


def record(kind, ts, pid=100, tgid=100, comm=b"work", obj=0, path=0, caller=0, obj_id=0,
           fork_id=0, aux1=0, aux2=0, flags=0, cpu=0):
    r = np.zeros(1, dtype=events.EVENT_DTYPE)
    r["kind"], r["ts"], r["pid"], r["tgid"], r["comm"] = kind, ts, pid, tgid, comm
    r["object"], r["path"], r["caller"], r["obj_id"] = obj, path, caller, obj_id
    r["fork_id"], r["aux1"], r["aux2"], r["flags"], r["cpu"] = fork_id, aux1, aux2, flags, cpu
    return r


def fork_sequence(t, parent=100, child=101, fork_id=7, vmas=2):
    """What the kernel emits for one fork of a parent with `vmas` VMAs that
    have an anon_vma: per VMA a clone_fork AVC, own anon_vma and own AVC,
    then the fork row."""
    rows, oid = [], 1000 + fork_id * 100
    for _ in range(vmas):
        rows.append(record(abi.Ev.ALLOC, t, pid=parent, tgid=parent, obj=OBJ["anon_vma_chain"], path=3,
                           caller=4, obj_id=oid, fork_id=fork_id, aux1=64))
        oid += 1
        t += 1
        rows.append(record(abi.Ev.ALLOC, t, pid=parent, tgid=parent, obj=OBJ["anon_vma"], path=2,
                           obj_id=oid, fork_id=fork_id, aux1=104))
        oid += 1
        t += 1
        rows.append(record(abi.Ev.ALLOC, t, pid=parent, tgid=parent, obj=OBJ["anon_vma_chain"], path=2,
                           obj_id=oid, fork_id=fork_id, aux1=64))
        oid += 1
        t += 1
    rows.append(record(abi.Ev.FORK, t, pid=parent, tgid=parent, fork_id=fork_id, aux1=child, aux2=child))
    return np.concatenate(rows)
