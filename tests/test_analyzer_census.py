"""The census section (analyzer/census.py, docs/models.md#census) on
synthetic recordings whose start-of-run topology is built by hand with the
kernel's fork rule (tests/eventgen.py: prerun_vma, prerun_fork)."""

import json
import subprocess
import sys

from anonscope.analyzer import load, report
from eventgen import SIZES, Gen, Vma

SIZE = {o: SIZES[o]["slab_size"] for o in SIZES}


def topology():
    """P1: 3 faulted VMAs, no relatives. P2: 2 VMAs, forked before the run
    into C (alive), then 1 more faulted VMA. P3: 1 VMA, forked into D, then
    exited: its anon_vma lives on, linked only by D's chain."""
    g = Gen(fprobes=True)
    for pid in (1, 2, 3):
        g.process(pid, f"p{pid}")
    for _ in range(3):
        g.prerun_vma(1)
    for _ in range(2):
        g.prerun_vma(2)
    g.prerun_fork(2, 20, "c")
    g.prerun_vma(2)
    g.prerun_vma(3)
    g.prerun_fork(3, 30, "d")
    g.prerun_exit(3)
    g.census()
    return g


def run_report(g, tmp_path):
    return report.build(load.load(g.write(str(tmp_path / "census.parquet"))))["census"]


def test_counts_are_the_lists_the_iterator_read(tmp_path):
    g = topology()
    c = run_report(g, tmp_path)
    assert c["status"] == "done"
    # VMAs: P1 3, P2 3, C 2, D 1
    assert c["vmas"] == 9 and c["processes"] == 4
    # anon_vmas: P1 3, P2 3, C's own 2, P3's 1 (only linked), D's own 1
    assert c["anon_vma"] == {"count": 10, "bytes": 10 * SIZE["anon_vma"], "with_rows": 9, "only_linked": 1}
    # AVCs: P1 3, P2 3, C 2x2 (parent's + own), D 2
    assert c["anon_vma_chain"] == {"count": 12, "bytes": 12 * SIZE["anon_vma_chain"]}
    assert c["chain_avcs"] == {"p50": 1, "p99": 2, "max": 2}
    # trees: P1's 3 roots, P2's 3 (C's own anon_vmas are in P2's trees), D's in P3's
    assert c["trees"] == 7
    # the same counts as the simulated kernel holds
    assert c["anon_vma"]["count"] == g.live["anon_vma"]
    assert c["anon_vma_chain"]["count"] == g.live["anon_vma_chain"]


def test_design_bounds_follow_rules_c2_c3(tmp_path):
    c = run_report(topology(), tmp_path)
    lz, nf, nc = c["designs"]["lazy"], c["designs"]["nofork"], c["designs"]["nofork_clone"]
    # C2, per VMA: fault roots with no child anon_vma (P1's 3, P2's VMA
    # faulted after its fork) and inherited VMAs whose own anon_vma has no
    # child (C's 2, D's 1): one AVC and the own anon_vma each; P2's forked
    # VMAs have a child each
    assert lz["candidate_vmas"] == 4 + 3 and lz["inherited_candidates"] == 3
    assert lz["anon_vma_chain_saved"] == [0, 7] and lz["anon_vma_saved"] == [0, 7]
    assert lz["bytes_saved"] == [0, 7 * SIZE["anon_vma"] + 7 * SIZE["anon_vma_chain"]]
    assert lz["saved_pct"]["anon_vma"] == [0.0, 70.0]
    # C3: leaf processes (no anon_vma with a child: P1, C, D); the opt-out
    # after start saves their fault roots only: P1's 3
    assert nf["candidate_processes"] == 3
    assert nf["anon_vma_saved"] == [0, 3] and nf["anon_vma_chain_saved"] == [0, 3]
    assert nf["saved_pct"]["anon_vma_chain"] == [0.0, 25.0]
    # C3': set at clone, also C's and D's own anon_vma and AVC per inherited VMA
    assert nc["anon_vma_saved"] == [0, 6] and nc["anon_vma_chain_saved"] == [0, 6]


def test_nofork_bounds_keep_file_vmas(tmp_path):
    """N5 in C3/C3': a leaf's MAP_PRIVATE file VMAs keep their anon_vma and
    AVC under both no-fork designs (no folio-to-VMA way back); lazy's C2
    still counts them. A leaf with A anonymous and K file fault roots."""
    A, K = 3, 2
    g = Gen(fprobes=True)
    g.process(1, "leaf")
    for i in range(A + K):
        g.prerun_vma(1, file=i >= A)
    g.census()
    c = run_report(g, tmp_path)
    assert c["file_vmas"] == K
    d = c["designs"]
    assert d["lazy"]["anon_vma_saved"] == [0, A + K]
    for v in ("nofork", "nofork_clone"):
        assert d[v]["anon_vma_saved"] == [0, A] and d[v]["anon_vma_chain_saved"] == [0, A]


def test_an_anon_vma_shared_with_a_non_candidate_stays(tmp_path):
    """Two VMAs on one anon_vma (a split before the run): it goes only when
    both are candidates, so a census that lists only one of them (the other
    in a process not recorded) keeps it."""
    g = Gen(fprobes=True)
    g.process(1, "p")
    v = g.prerun_vma(1)
    piece = Vma(999, pre=True, anon_vma=v.anon_vma, span=v.span)  # split off v: same anon_vma
    g._prerun_link(piece, v.anon_vma)
    g.procs[1].vmas.append(piece)
    g.census()
    lz = run_report(g, tmp_path)["designs"]["lazy"]
    assert lz["candidate_vmas"] == 2 and lz["anon_vma_saved"] == [0, 1]
    rows = [r for r in g.rows if r.get("object") == "anon_vma" and r["obj_id"] == v.anon_vma.id]
    rows[0]["num_active_vmas"] += 1  # a third VMA, not in the census, points at it
    lz = run_report(g, tmp_path)["designs"]["lazy"]
    assert lz["candidate_vmas"] == 2 and lz["anon_vma_saved"] == [0, 0]


def test_old_kernels_and_recordings_without_census(tmp_path):
    g = topology()
    for r in g.rows:
        if r.get("object") == "anon_vma":
            r["num_children"] = r["num_active_vmas"] = None  # before 6.0
    c = run_report(g, tmp_path)
    assert c["designs"] is None and "6.0" in c["designs_note"]
    g = Gen()
    g.process(1)
    g.fault(1)
    c = run_report(g, tmp_path)
    assert c["status"] == "not recorded"
    c = report.build(load.load(g.write(str(tmp_path / "x.parquet"), census={
        "status": "not run", "reason": "--no-census"})))["census"]
    assert c == {"status": "not run", "reason": "--no-census", "see": "docs/models.md#census"}


def test_text_and_markdown_name_the_rules(tmp_path):
    path = topology().write(str(tmp_path / "census.parquet"))
    for fmt in ("text", "markdown"):
        out = subprocess.run([sys.executable, "-m", "anonscope.analyzer.cli", "report", path, "--format", fmt],
                             capture_output=True, text=True, check=True).stdout
        assert "9 VMAs with an anon_vma" in out and "rule C2" in out and "rule C3)" in out and "rule C3')" in out
    js = json.loads(subprocess.run([sys.executable, "-m", "anonscope.analyzer.cli", "report", path,
                                    "--format", "json"], capture_output=True, text=True, check=True).stdout)
    assert js["census"]["designs"]["lazy"]["candidate_vmas"] == 7
