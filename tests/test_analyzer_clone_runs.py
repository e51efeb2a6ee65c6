"""eager._CloneRuns, the tracepoint recording's anon_vma_clone() calls found
a chunk at a time, against the rule written out one row at a time
(eager.clone_calls): a clone_vma row that is not mremap's continues its
task's run when the task's previous allocation was such a row with the same
caller; a run is one call, named by its first row."""

import numpy as np
import pytest

from anonscope.analyzer.eager import _CloneRuns
from anonscope.analyzer.load import CALLER_CODE, PATH_CODE


def rule(pid, path, caller):
    last, out = {}, []
    for r, (p, pa, c) in enumerate(zip(pid, path, caller)):
        clone = pa == PATH_CODE["clone_vma"] and c != CALLER_CODE["mremap"]
        prev = last.get(p)
        if not clone:
            out.append(-1)
        elif prev and prev[0] and prev[1] == c:
            out.append(prev[2])
        else:
            out.append(r)
        last[p] = (clone, c, out[-1])
    return out


@pytest.mark.parametrize("seed", range(6))
def test_any_chunking_gives_the_rule(seed):
    rng = np.random.default_rng(seed)
    n = 2000
    pid = rng.integers(1, 6, n)
    path = rng.choice([PATH_CODE["clone_vma"], PATH_CODE["clone_vma"], PATH_CODE["fault"]], n).astype(np.int8)
    caller = rng.choice([CALLER_CODE["split"], CALLER_CODE["merge"], CALLER_CODE["mremap"], -1], n).astype(np.int8)
    want = rule(pid.tolist(), path.tolist(), caller.tolist())
    for size in (n, 1, 7, 300):
        runs, got = _CloneRuns(), []
        for lo in range(0, n, size):
            rows = np.arange(lo, min(lo + size, n))
            got += runs.feed(rows, pid[rows], path[rows], caller[rows]).tolist()
        assert got == want
