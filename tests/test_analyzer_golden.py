"""Golden reports (tests/golden.py): the whole JSON report of the bundled
fixtures, seeded synthetic recordings and the generator's scenarios,
compared key by key with tests/golden/*.json. They are the oracle for
changes that must not change a number (refactoring, the streaming
rewrite); a rule changed on purpose regenerates them (`pytest
--update-golden`) and the diff shows what moved. The expected values of
each rule are derived from parameters in the scenario tests
(test_analyzer_models.py and the others); here only "unchanged" is
asserted, plus what each recording must exercise.
"""

import json
import os
import subprocess
import sys

import pytest

import golden
from eventgen import Gen
from scenarios import chain, fork_chain, mremap_heavy, split_merge, zygote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE_SYNTHETIC = os.path.join(ROOT, "scripts", "make-synthetic")
FIXTURES = sorted(f for f in os.listdir(os.path.join(ROOT, "fixtures")) if f.endswith(".parquet"))


@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures(name, update_golden):
    golden.check(f"fixture-{name[:-len('.parquet')]}", golden.build(os.path.join(ROOT, "fixtures", name)),
                 update_golden)


@pytest.mark.parametrize("seed,events", [(3, 250_000), (4, 60_000)])
def test_synthetic(tmp_path, seed, events, update_golden):
    path = str(tmp_path / "syn.parquet")
    subprocess.run([sys.executable, MAKE_SYNTHETIC, "--events", str(events), "--out", path,
                    "--seed", str(seed)], check=True, capture_output=True)
    r = golden.build(path)
    golden.check(f"synthetic-seed{seed}-{events}", r, update_golden)
    # the recording exercises every part of the models
    o = r["objects"]
    assert r["run"]["events"] == events
    assert all(o["anon_vma_chain"]["allocated"][p] for p in ("fault", "fork", "clone_fork", "clone_vma"))
    assert all(o["anon_vma_chain"]["clone_vma_callers"][c] for c in ("split", "merge", "mremap", "unknown"))
    assert o["anon_vma"]["freed_preexisting"] and not o["anon_vma"]["unmatched_frees"]
    assert r["processes"]["max_fork_depth"] == 2 and r["processes"]["threads_or_vforks"]
    assert r["models"]["lazy"]["upgrades"]["fork"] and r["models"]["lazy"]["upgrades"]["mremap"]
    assert r["slabinfo"]["samples"] >= 1


def _reused_ids():
    g = Gen(reuse_ids=True)
    g.process(9, "p")
    for _ in range(5):
        g.unmap(9, g.fault(9))
    g.faults(9, 2)
    g.fork(9, 10)
    g.exit(10)
    return g


def _kernel_addresses():
    """raw_pointers ids: kernel addresses, negative as int64 and far apart
    (the free matching cannot pack them into one sort key)."""
    g = _reused_ids()
    for row in g.rows:
        if row.get("obj_id") is not None:
            row["obj_id"] = 0xffff888000000000 + row["obj_id"] * 64 - 2 ** 64
    row = dict(g.rows[0], obj_id=2 ** 62)           # and one far above them
    g.rows.insert(0, row)
    return g


def _lost_and_preexisting():
    g = zygote(3, 1, 2, 1, prerun=2)
    vma = g.mmap(100)
    with g.losing("ringbuf"):
        g.fault(100, vma)
    g.slab_sample({"anon_vma": 5, "anon_vma_chain": 9, "vm_area_struct": 30}, alias_objects=4)
    g.exit(100)
    g.slab_sample({"anon_vma": 5, "anon_vma_chain": 9, "vm_area_struct": 30}, alias_objects=7)
    return g


def _child_split_fork():
    """A child splits its inherited VMAs, then forks."""
    g = Gen()
    g.process(1, "p")
    g.faults(1, 3)
    g.fork(1, 2)
    for v in list(g.procs[2].vmas):
        g.split(2, v)
    g.fork(2, 3)
    g.exit(3)
    return g


def _every_section():
    """Function-probe rows of every kind: a tree made before the run (census),
    forks, a thread, a vfork that execs, splits, a merge, an mremap, lock
    waits, rmap walks, moves, slab samples and marks; then exits."""
    g = Gen(fprobes=True)
    g.process(1, "kswapd0")
    g.process(100, "zygote")
    pre = [g.prerun_vma(100) for _ in range(3)]
    g.prerun_fork(100, 101, "app")
    g.census()
    g.slab_sample({"anon_vma": 40, "anon_vma_chain": 70, "vm_area_struct": 300}, cpu_partial={"anon_vma": 1})
    own = g.faults(100, 4)
    g.thread(100, 150)
    for c in (200, 201):
        g.fork(100, c, comm="app")
        g.faults(c, 2)
    g.split(200, g.procs[200].vmas[0])
    a, b = g.mmap(201), g.fault(201)
    g.merge(201, a, b)
    g.mremap(100, own[0])
    g.vfork(100, 300, comm="sh")
    g.exec(300, comm="tool")
    g.faults(300, 1)
    for v in pre + own[1:]:
        g.walk(1, v, lock_wait_ns=500)
    g.lock(200, own[1], 2000, write=True, func="fork")
    g.move(1, "ksm_merge", owner=100)
    g.move(200, "uffd_move", start=0x7f0000000000)
    g.move(201, "mremap_dontunmap", start=0x7e0000000000, length=8192)
    g.mark("apps")
    g.slab_sample({"anon_vma": 40, "anon_vma_chain": 70, "vm_area_struct": 300})
    for pid in (300, 201, 200, 101):
        g.exit(pid)
    g.mark("after-exit")
    return g


SCENARIOS = {
    "zygote": lambda: zygote(7, 3, 5, 2), "chain": lambda: chain(3, 2, 1, 4),
    "split_merge": lambda: split_merge(10, 4, 3, 2), "mremap": lambda: mremap_heavy(4, 3, 2),
    "reused_ids": _reused_ids, "kernel_addresses": _kernel_addresses, "lost_pre": _lost_and_preexisting,
    "empty": Gen, "child_split_fork": _child_split_fork, "every_section": _every_section,
    "fork_reuse_7x": lambda: fork_chain(3, "7.x", fprobes=True),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenarios(tmp_path, name, update_golden):
    g = SCENARIOS[name]()
    target = {"mode": "system", "command": None, "pid": None, "comm": None} if name == "every_section" else None
    meta = {"target": target} if target else {}
    r = golden.build(g.write(str(tmp_path / "run.parquet"), raw_pointers=True, **meta))
    golden.check(f"scenario-{name}", r, update_golden)
    g.rows.reverse()                          # file order unlike replay order: the same report
    again = golden.build(g.write(str(tmp_path / "run.parquet"), raw_pointers=True, **meta))
    assert not list(golden.differences(r, again))


def test_plain_string_columns(tmp_path, update_golden):
    """A file whose string columns are not dictionary-encoded (the schema
    check allows it): comm names ordered as pandas orders them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anonscope import schema as S

    g = zygote(4, 1, 6, 2)
    for row in g.rows:                        # several names, ties in bytes
        if row.get("comm") == "app":
            row["comm"] = f"app{(row['pid'] * 7) % 5}"
    table = g.table()
    fields = [pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f for f in table.schema]
    table = table.cast(pa.schema(fields))
    path = str(tmp_path / "plain.parquet")
    meta = {S.META_PREFIX + k: json.dumps(v) for k, v in g.metadata().items()}
    with pq.ParquetWriter(path, table.schema) as w:
        w.write_table(table, row_group_size=50)
        w.add_key_value_metadata(meta)
    r = golden.build(path)
    golden.check("plain-string-columns", r, update_golden)
    assert len(r["processes"]["by_comm"]) >= 3


def test_the_golden_reports_cover_every_section():
    """Between them the golden reports exercise every section with numbers,
    so that a change anywhere shows."""
    reports = [json.loads(p.read_text()) for p in sorted(golden.DIR.glob("*.json"))]
    assert len(reports) == len(FIXTURES) + 2 + len(SCENARIOS) + 1
    assert any(r["locks"].get("waits") for r in reports)
    assert any(r["walks"].get("walks") for r in reports)
    assert any(r["calls"].get("available") for r in reports)
    assert any(r["census"].get("status") == "done" for r in reports)
    assert any(s["source"] == "mark" for r in reports for s in r["snapshots"])
    assert any(s["source"] == "slab" for r in reports for s in r["snapshots"])
    assert any(r["slabinfo"].get("samples") for r in reports)
    assert any(r["run"]["lost_events"] for r in reports)
    assert any(all(r["moves"]["rows"].values()) for r in reports)
    for section in ("objects", "processes", "models", "banners", "warnings"):
        assert all(section in r for r in reports)
