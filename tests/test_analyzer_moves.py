"""Move rows (docs/models.md#moves, M1-M4): in a command's recording the
command forks a child that never forks and faults N regions (N VMAs, all
made in the run: the child's cap V = N); ksmd merges K of its pages, it
makes U UFFDIO_MOVE and D MREMAP_DONTUNMAP calls; a mark; the child exits.
Expected values from the rules:

- eager is unchanged (the moves' anon_vma functions are recorded as such);
- lazy, nofork, nofork_clone keep their best and low ends (0: a leaf's
  fault roots are all deferred, L1; a leaf whose whole life is in the run
  opts out in every variant, N1 and section 3.2); the high end gains at
  most one anon_vma per token a row can make the design upgrade (1 per
  KSM merge, 2 per UFFDIO_MOVE: destination and source), at most V, and
  one AVC per piece of every upgraded token, at most V: anon_vma
  min(K + 2U, N), AVC N when K + U > 0;
- at a snapshot after them MREMAP_DONTUNMAP rows count too (any of the
  process's tokens): anon_vma min(K + 2U + D*N, N), AVC N when any row.
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
    hi = {"anon_vma": min(K + 2 * U, N), "anon_vma_chain": N if K + U else 0}
    for design in ("lazy", "nofork", "nofork_clone"):
        m = r["models"][design]
        for obj in ("anon_vma", "anon_vma_chain"):
            assert m[obj]["allocated"] == 0, design
            assert m[obj]["allocated_range"] == [0, hi[obj]], (design, obj)
            assert m[obj]["bytes_range"][1] == hi[obj] * ev[obj]["bytes"] // N
        assert m["saved_pct_range"]["anon_vma"][0] == round(100.0 * (N - hi["anon_vma"]) / N, 1)
        assert m["saved_pct_range"]["anon_vma"][1] == 100.0
    (snap,) = [s for s in r["snapshots"] if s["label"] == "after-moves"]
    # lazy's live high end is eager's count before the moves (S4: an upgrade
    # lives from its event to eager's free); the no-fork variants opt this
    # leaf out in every variant, so the moves are all of their high end
    add = {"anon_vma": min(K + 2 * U + D * N, N), "anon_vma_chain": N if K + U + D else 0}
    for design, base in (("lazy", N), ("nofork", 0), ("nofork_clone", 0)):
        for obj in ("anon_vma", "anon_vma_chain"):
            d = snap["designs"][design][obj]
            assert d["live"] == 0 and d["live_range"] == [0, base + add[obj]], (design, obj)
    assert snap["designs"]["eager"]["anon_vma"]["live_range"] == [N, N]
    assert r["models"]["lazy"]["not_modelled"] == []


def test_a_process_older_than_the_run_without_a_census_has_no_upper_end(tmp_path):
    """M4: ksmd merges pages of a process that existed before a system-wide
    run with no census: its VMAs are unknown, so is the high end."""
    g = Gen()
    g.process(KSMD, "ksmd")
    g.process(50, "qemu")
    g.faults(50, 3)
    g.move(KSMD, "ksm_merge", owner=50)
    r = build(g, tmp_path, target={"mode": "system", "command": None, "pid": None, "comm": None})
    for design in ("lazy", "nofork", "nofork_clone"):
        assert r["models"][design]["anon_vma"]["allocated_range"][1] is None, design
        assert r["models"][design]["saved_pct_range"]["anon_vma"][0] is None, design


def test_lost_move_rows_leave_no_upper_end(tmp_path):
    g = leaf_with_moves(4, 1, 0, 0)
    g.lose("ringbuf", 2, kind="move")
    r = build(g, tmp_path)
    assert r["models"]["lazy"]["anon_vma_chain"]["allocated_range"][1] is None


def test_a_recording_without_the_move_probes_says_what_it_leaves_out(tmp_path):
    r = build(leaf_with_moves(5, 0, 0, 0, move_probes=False), tmp_path)
    assert r["moves"]["recorded"] == {"ksm_merge": False, "uffd_move": False, "mremap_dontunmap": False}
    assert "not recorded (ksm_merge, uffd_move, mremap_dontunmap)" in r["moves"]["note"]
    assert [e["what"] for e in r["models"]["lazy"]["not_modelled"]] == [
        "KSM merges into lazy VMAs", "UFFDIO_MOVE of lazy folios", "partial MREMAP_DONTUNMAP moves"]
    assert r["models"]["lazy"]["anon_vma"]["allocated_range"] == [0, 0]
