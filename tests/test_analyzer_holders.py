"""Who holds the anon rmap at a snapshot, and the fork shapes
(analyzer/holders.py, docs/models.md#holders), on a scenario whose
answer follows from its parameters."""

from anonscope.analyzer import load, report
from eventgen import SIZES, Gen

N, M, K = 5, 2, 3
AV, AVC = SIZES["anon_vma"]["slab_size"], SIZES["anon_vma_chain"]["slab_size"]
PAIR = AV + AVC


def scenario():
    """Z: a fork server (N regions, 3 children that fault M each and stay);
    S: self-forking, with a thread, one child that exits at once and one
    that lives 61 s; L: a leaf with K regions."""
    g = Gen()
    for pid, comm in ((1, "zygote"), (2, "server"), (3, "leaf")):
        g.process(pid, comm)
    g.faults(1, N)
    for c in (10, 11, 12):
        g.fork(1, c, "app")
        g.faults(c, M)
    g.fault(2)
    g.thread(2, 2001)
    g.fork(2, 20, "helper")
    g.exit(20)
    g.fork(2, 21, "worker")
    g.step = 61 * 10 ** 9
    g.exit(21)
    g.step = 1000
    g.faults(3, K)
    g.mark("m")
    return g


def test_holders_at_a_mark(tmp_path):
    rep = report.build(load.load(scenario().write(str(tmp_path / "h.parquet"))))
    h = next(s for s in rep["snapshots"] if s["label"] == "m")["holders"]
    app = N * AVC + N * PAIR + M * PAIR      # clone_fork links, own pair per copy, own faults
    total = N * PAIR + 3 * app + PAIR + K * PAIR
    assert h["processes"] == 6 and h["attributed_bytes"] == total == h["live_bytes"]
    assert h["never_forked"] == {"processes": 4, "bytes": 3 * app + K * PAIR,
                                 "share_processes": round(100 * 4 / 6, 1),
                                 "share_bytes": round(100 * (3 * app + K * PAIR) / total, 1)}
    assert h["never_forked_whole_life"]["processes"] == 3      # the apps: born in the run
    assert h["fork_servers"]["processes"] == 1 and h["fork_servers"]["bytes"] == N * PAIR
    assert h["fork_server_children"]["bytes"] == 3 * app
    assert h["self_forking"]["processes"] == 1 and h["self_forking"]["bytes"] == PAIR
    shapes = rep["processes"]["fork_shapes"]
    assert shapes["process_forks"] == 5
    assert shapes["by_multithreaded_parent_at_least"] == 2      # S forked twice after making a thread
    assert shapes["max_threads_at_fork_at_least"] == 2
    assert shapes["self_forking_children"] == {"children": 2, "outlived_fork_by_60s": 1,
                                               "exited_within_60s": 1, "alive_at_end_younger_than_60s": 0}


def test_holders_in_text_and_markdown(tmp_path):
    from click.testing import CliRunner

    from anonscope.analyzer import cli
    path = scenario().write(str(tmp_path / "h.parquet"))
    for fmt in ("text", "markdown"):
        out = CliRunner().invoke(cli.main, ["report", path, "--format", fmt, "--at", "m"]).output
        assert "at `m` (6 processes): never forked 4 (66.7% of processes" in out
        assert "Process forks: 5, at least 2 by a multi-threaded parent" in out
