"""Move rows (docs/models.md#moves, M1-M4): in a command's recording the
command forks a child that never forks and faults N regions; ksmd merges
K of its pages, it makes U UFFDIO_MOVE and D MREMAP_DONTUNMAP calls; a mark;
the child exits. Expected values from the rules:

- eager is unchanged (the moves' anon_vma functions are recorded as such);
- lazy, nofork, nofork_clone keep their best and low ends (0: a leaf's
  fault roots are all deferred, L1; a leaf whose whole life is in the run
  opts out in every variant, N1 and section 3.2) and raise the high end by one
  anon_vma and one AVC per KSM merge and UFFDIO_MOVE, capped at eager's
  count (M1, M2, M4): min(K + U, N);
- at a snapshot after them the no-fork variants' live high end also counts
  the MREMAP_DONTUNMAP rows (M3): min(K + U + D, N).
"""

import pytest

from eventgen import Gen
from scenarios import build

KSMD = 37


def leaf_with_moves(N, K, U, D, move_probes=True):
    g = Gen(move_probes=move_probes)
    g.process(1, "cmd")
    g.process(KSMD, "ksmd")
    g.fork(1, 10, comm="app")
    g.faults(10, N)
    for _ in range(K):
        g.move(KSMD, "ksm_merge", owner=10)
    for i in range(U):
        g.move(10, "uffd_move", start=0x7f0000000000 + i * 4096)
    for i in range(D):
        g.move(10, "mremap_dontunmap", start=0x7e0000000000 + i * 8192)
    g.mark("after-moves")
    g.exit(10)
    return g


@pytest.mark.parametrize("N,K,U,D", [(10, 3, 2, 1), (4, 5, 2, 0), (6, 0, 0, 3), (8, 0, 0, 0)])
def test_moves_widen_the_designs_high_ends(tmp_path, N, K, U, D):
    r = build(leaf_with_moves(N, K, U, D), tmp_path)
    assert r["moves"]["rows"] == {"ksm_merge": K, "uffd_move": U, "mremap_dontunmap": D}
    assert r["moves"].get("by_process", []) == ([{"tgid": 10, "rows": K + U + D}] if K + U + D else [])
    ev = r["models"]["eager"]
    assert ev["anon_vma"]["allocated"] == ev["anon_vma_chain"]["allocated"] == N
    for design in ("lazy", "nofork", "nofork_clone"):
        m = r["models"][design]
        for obj in ("anon_vma", "anon_vma_chain"):
            assert m[obj]["allocated"] == 0, design
            assert m[obj]["allocated_range"] == [0, min(K + U, N)], (design, obj)
            assert m[obj]["bytes_range"][1] == min(K + U, N) * ev[obj]["bytes"] // N
        assert m["saved_pct_range"]["anon_vma"][0] == round(100.0 * (N - min(K + U, N)) / N, 1)
        assert m["saved_pct_range"]["anon_vma"][1] == 100.0
    (snap,) = [s for s in r["snapshots"] if s["label"] == "after-moves"]
    # lazy's live high end is eager's count already (S4: an upgrade lives
    # from its event to eager's free); the no-fork variants opt this leaf
    # out in every variant, so the moves are all of their high end
    for design, hi in (("lazy", N), ("nofork", min(K + U + D, N)), ("nofork_clone", min(K + U + D, N))):
        for obj in ("anon_vma", "anon_vma_chain"):
            d = snap["designs"][design][obj]
            assert d["live"] == 0 and d["live_range"] == [0, hi], (design, obj)
    assert snap["designs"]["eager"]["anon_vma"]["live_range"] == [N, N]
    assert r["models"]["lazy"]["not_modelled"] == []


def test_a_recording_without_the_move_probes_says_what_it_leaves_out(tmp_path):
    r = build(leaf_with_moves(5, 0, 0, 0, move_probes=False), tmp_path)
    assert r["moves"]["recorded"] == {"ksm_merge": False, "uffd_move": False, "mremap_dontunmap": False}
    assert "not recorded (ksm_merge, uffd_move, mremap_dontunmap)" in r["moves"]["note"]
    assert [e["what"] for e in r["models"]["lazy"]["not_modelled"]] == [
        "KSM merges into lazy VMAs", "UFFDIO_MOVE of lazy folios", "partial MREMAP_DONTUNMAP moves"]
    assert r["models"]["lazy"]["anon_vma"]["allocated_range"] == [0, 0]
