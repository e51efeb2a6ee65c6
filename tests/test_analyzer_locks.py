"""Lock section (schema v2 lock rows, docs/models.md#locks): the expected
numbers are the waits the scenarios inject, summarised in the test."""

import math

import pytest

from anonscope.analyzer import load, render, report
from eventgen import Gen
from mdtables import md_text


def build(g, tmp_path, name="run.parquet", **meta):
    path = g.write(str(tmp_path / name), **meta)
    return report.build(load.load(path))


def nearest_rank(values, p):
    v = sorted(values)
    return v[max(1, math.ceil(p / 100 * len(v))) - 1]


def pcts(values):
    return {"p50": nearest_rank(values, 50), "p99": nearest_rank(values, 99), "max": max(values)}


def contended(V, C, fork_wait, walk_waits, pre_wait):
    """Parent 100 ("zygote") faults V VMAs and forks C children ("app"); the
    k-th fork waits fork_wait * (k + 1) ns for the root of VMA 0 (write,
    anon_vma_fork); kswapd (pid 2) waits each of ``walk_waits`` ns (read, rmap
    walk) on the root of VMA k mod V; a pre-run VMA's root is waited for once
    by the parent (write, unlink) for ``pre_wait`` ns."""
    g = Gen()
    g.process(2, "kswapd0")
    g.process(100, "zygote")
    pre = g.prerun_vma(100)
    vmas = g.faults(100, V)
    for k in range(C):
        g.lock(100, vmas[0], fork_wait * (k + 1), write=True, func="fork")
        g.fork(100, 200 + k, comm="app")
    for k, w in enumerate(walk_waits):
        g.lock(2, vmas[k % V], w, write=False, func="walk")
    g.lock(100, pre, pre_wait, write=True, func="unlink")
    return g, vmas, pre


@pytest.mark.parametrize("V,C,fork_wait,walk_waits,pre_wait", [
    (3, 4, 1000, [50, 70, 900, 20_000, 10], 123_456),
    (1, 1, 5, [7], 1),
    (5, 10, 2500, list(range(100, 10_100, 100)), 10**9),
])
def test_lock_summary(tmp_path, V, C, fork_wait, walk_waits, pre_wait):
    g, vmas, pre = contended(V, C, fork_wait, walk_waits, pre_wait)
    lk = build(g, tmp_path)["locks"]
    fork_waits = [fork_wait * (k + 1) for k in range(C)]
    every = fork_waits + walk_waits + [pre_wait]
    assert lk["status"] == "recorded" and lk["available"]
    assert lk["waits"] == len(every)
    assert lk["total_wait_ns"] == sum(every)
    assert lk["wait_ns"] == pcts(every)
    bf = lk["by_func"]
    assert set(bf) == {"fork", "walk", "unlink"}
    assert bf["fork"]["waits"] == C and bf["fork"]["total_wait_ns"] == sum(fork_waits)
    assert bf["fork"]["wait_ns"] == pcts(fork_waits) and bf["fork"]["write_waits"] == C
    assert bf["walk"]["total_wait_ns"] == sum(walk_waits) and bf["walk"]["write_waits"] == 0
    assert bf["walk"]["wait_ns"] == pcts(walk_waits)
    assert bf["unlink"] == {**bf["unlink"], "waits": 1, "total_wait_ns": pre_wait}
    # ordered by total wait
    totals = [v["total_wait_ns"] for v in bf.values()]
    assert totals == sorted(totals, reverse=True)
    assert lk["by_mode"]["read"]["waits"] == len(walk_waits)
    assert lk["by_mode"]["read"]["total_wait_ns"] == sum(walk_waits)
    assert lk["by_mode"]["write"]["total_wait_ns"] == sum(fork_waits) + pre_wait

    # roots: the V run roots that were waited on, and the pre-run one
    per_root = {}
    for k, w in enumerate(walk_waits):
        per_root[vmas[k % V].anon_vma.id] = per_root.get(vmas[k % V].anon_vma.id, 0) + w
    per_root[vmas[0].anon_vma.id] += sum(fork_waits)
    per_root[pre.anon_vma.id] = pre_wait
    assert lk["roots"] == len(per_root)
    got = {e["lock_id"]: e for e in lk["top_roots"]}
    assert {k: e["total_wait_ns"] for k, e in got.items()} == per_root
    for lock_id, e in got.items():
        if lock_id == pre.anon_vma.id:
            assert (e["in_run"], e["preexisting"], e["owner_tgid"]) == (False, True, None)
        else:
            assert (e["in_run"], e["owner_tgid"], e["owner_comm"], e["alloc_path"]) == \
                (True, 100, "zygote", "fault")
    assert [e["total_wait_ns"] for e in lk["top_roots"]] == sorted(per_root.values(), reverse=True)

    comms = {c["comm"]: c for c in lk["by_comm"]}
    assert comms["kswapd0"]["waits"] == len(walk_waits)
    assert comms["kswapd0"]["total_wait_ns"] == sum(walk_waits)
    assert comms["zygote"]["total_wait_ns"] == sum(fork_waits) + pre_wait


def test_lock_sections_render(tmp_path):
    g, _, _ = contended(2, 2, 1000, [10, 20], 5)
    r = build(g, tmp_path)
    text = render.render(r, "text")
    assert "Lock waits on anon_vma root rwsems" in text
    assert "5 waits on 3 roots" in text
    md = md_text(render.render(r, "markdown"))
    assert "| lock taker | waits | write | total | p50 | p99 | max |" in md
    assert "| fork | 2 | 2 | 3.0 us |" in md
    assert '"locks"' in render.render(r, "json")


def test_no_contention_tracepoints_is_not_zero(tmp_path):
    """A kernel without lock:contention_* (metadata probe attached false):
    the section says so and reports no zeros."""
    g = Gen(lock_probe=False)
    g.process(1, "p")
    g.faults(1, 2)
    r = build(g, tmp_path)
    lk = r["locks"]
    assert lk["status"] == "not available" and lk["available"] is False
    assert lk["waits"] is None and "total_wait_ns" not in lk
    assert "not the same as none" in lk["note"]
    text = render.render(r, "text")
    assert "not available: the kernel had no usable contention tracepoints" in text
    assert "0 waits" not in text


def test_probe_attached_without_waits_and_v1_metadata(tmp_path):
    g = Gen()
    g.process(1, "p")
    g.faults(1, 2)
    lk = build(g, tmp_path)["locks"]
    assert (lk["status"], lk["waits"], lk["total_wait_ns"]) == ("no waits", 0, 0)
    lk = build(g, tmp_path, "v1.parquet", probes=[])["locks"]
    assert lk["status"] == "not recorded" and lk["waits"] is None


def test_schema_v1_file_without_lock_or_probe_columns(tmp_path):
    """A v1 recording has none of the v2/v3 columns: it loads, the lock
    section says it was not recorded, the models are unchanged."""
    import json

    import pyarrow.parquet as pq

    from anonscope import schema as S

    g, _, _ = contended(2, 2, 1000, [10], 5)
    g.rows = [r for r in g.rows if r["event"] != "lock"]
    full = build(g, tmp_path, "v3.parquet")
    v2 = ("lock_id", "wait_ns", "lock_write", "lock_func")
    v3 = [c for c in S.COLUMNS if list(S.COLUMNS).index(c) >= list(S.COLUMNS).index("vma_id")
          and not c.startswith(("slab_", "lost_", "count"))]
    table = g.table().drop(list(v2) + v3)
    path = str(tmp_path / "v1.parquet")
    meta = {S.META_PREFIX + k: json.dumps(v)
            for k, v in g.metadata(schema_version=1, probes=[]).items()}
    with pq.ParquetWriter(path, table.schema) as w:
        w.write_table(table)
        w.add_key_value_metadata(meta)
    r = report.build(load.load(path))
    assert r["locks"]["status"] == "not recorded"
    assert r["models"]["lazy"]["anon_vma"] == full["models"]["lazy"]["anon_vma"]
    assert r["objects"] == full["objects"]
