"""The optimised analyzer gives the same report as the implementation it
replaced (tests/analyzer_reference/, a frozen copy of analyzer/ before the P3
work in docs/performance.md) on synthetic recordings of every kind of event,
the real fixtures and the generator's scenarios.

Keys the reference has must have equal values; keys added since are not
compared, nor ``warnings`` and ``fidelity`` texts, which now also say what a
partial recording leaves out (report.qualify, report.banners): the numbers
are compared. When a model rule changes on purpose, change the reference too
(or drop it and this test with it).
"""

import json
import os
import subprocess
import sys

import pytest

from analyzer_reference import load as ref_load
from analyzer_reference import report as ref_report
from anonscope.analyzer import load, render, report
from eventgen import Gen
from scenarios import chain, mremap_heavy, split_merge, zygote

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAKE_SYNTHETIC = os.path.join(ROOT, "scripts", "make-synthetic")


def as_json(data):
    return json.loads(json.dumps(data, default=render._jsonable))


#: keys whose texts describe the recording's completeness too (not compared)
TEXTS = ("warnings", "fidelity")
#: what changed on purpose since the reference was frozen: no-fork per
#: process generation, clone_fork links kept, two designs (docs/models.md
#: section 3), the process table naming what forks made for children, the
#: lazy VMA growth (tests/test_analyzer_models.py derives them)
CHANGED = ("/models/nofork", "/processes/by_process", "/processes/note",
           # the lazy VMA priced at the slab slot it needs (docs/models.md#lazy-costs)
           "/models/lazy/vm_area_struct", "/models/lazy/extra_costs/vma_growth",
           # a split of an inherited VMA keeps n-1 AVCs in the estimate too (L3)
           "/models/lazy/upgrades", "/models/lazy/extra_costs/upgrades",
           "/models/lazy/extra_costs/fork_time_objects", "/models/lazy/anon_vma",
           "/models/lazy/anon_vma_chain", "/models/lazy/saved_pct", "/models/lazy/saved_pct_range",
           "/models/lazy/peak_saved_pct",
           # slabinfo's overstatement is never negative; per-mode checks
           "/slabinfo")


def differences(ref, new, path=""):
    if isinstance(ref, dict) and isinstance(new, dict):
        for key, value in ref.items():
            if key in TEXTS or f"{path}/{key}" in CHANGED:
                continue
            if key not in new:
                yield f"{path}/{key}: missing"
            else:
                yield from differences(value, new[key], f"{path}/{key}")
    elif ref != new:
        yield f"{path}: {ref!r:.200} != {new!r:.200}"


def check_same(path):
    ref = as_json(ref_report.build(ref_load.load(path)))
    new = as_json(report.build(load.load(path)))
    diffs = list(differences(ref, new))
    assert not diffs, "\n".join(diffs[:20])
    return new


@pytest.mark.parametrize("seed,events", [(3, 250_000), (4, 60_000)])
def test_synthetic(tmp_path, seed, events):
    path = str(tmp_path / "syn.parquet")
    subprocess.run([sys.executable, MAKE_SYNTHETIC, "--events", str(events), "--out", path,
                    "--seed", str(seed)], check=True, capture_output=True)
    r = check_same(path)
    # the recording exercises every part of the models
    o = r["objects"]
    assert r["run"]["events"] == events
    assert all(o["anon_vma_chain"]["allocated"][p] for p in ("fault", "fork", "clone_fork",
                                                            "clone_vma"))
    assert all(o["anon_vma_chain"]["clone_vma_callers"][c] for c in ("split", "merge",
                                                                    "mremap", "unknown"))
    assert o["anon_vma"]["freed_preexisting"] and not o["anon_vma"]["unmatched_frees"]
    assert r["processes"]["max_fork_depth"] == 2 and r["processes"]["threads_or_vforks"]
    assert r["models"]["lazy"]["upgrades"]["fork"] and r["models"]["lazy"]["upgrades"]["mremap"]
    assert r["slabinfo"]["samples"] >= 1


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(os.path.join(ROOT, "fixtures"))
                                        if f.endswith(".parquet")))
def test_fixtures(name):
    check_same(os.path.join(ROOT, "fixtures", name))


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
    """A child splits its inherited VMAs, then forks: the estimate's fork
    upgrade range is the min/max over its variants (docs/models.md#lazy-bounds;
    the reference was changed with that rule)."""
    g = Gen()
    g.process(1, "p")
    g.faults(1, 3)
    g.fork(1, 2)
    for v in list(g.procs[2].vmas):
        g.split(2, v)
    g.fork(2, 3)
    g.exit(3)
    return g


@pytest.mark.parametrize("make", [
    lambda: zygote(7, 3, 5, 2), lambda: chain(3, 2, 1, 4), lambda: split_merge(10, 4, 3, 2),
    lambda: mremap_heavy(4, 3, 2), _reused_ids, _kernel_addresses, _lost_and_preexisting, Gen,
    _child_split_fork,
], ids=["zygote", "chain", "split_merge", "mremap", "reused_ids", "kernel_addresses",
        "lost_pre", "empty", "child_split_fork"])
def test_scenarios(tmp_path, make):
    g = make()
    path = g.write(str(tmp_path / "run.parquet"), raw_pointers=True)
    check_same(path)
    g.rows.reverse()                          # file order unlike replay order
    check_same(g.write(str(tmp_path / "reversed.parquet")))


def test_plain_string_columns(tmp_path):
    """A file whose string columns are not dictionary-encoded (the schema
    check allows it): same report, comm names ordered as pandas orders them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anonscope.collector import schema as S

    g = zygote(4, 1, 6, 2)
    for _i, row in enumerate(g.rows):            # several names, ties in bytes
        if row.get("comm") == "app":
            row["comm"] = f"app{(row['pid'] * 7) % 5}"
    table = g.table()
    fields = [pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
              for f in table.schema]
    table = table.cast(pa.schema(fields))
    path = str(tmp_path / "plain.parquet")
    meta = {S.META_PREFIX + k: json.dumps(v) for k, v in g.metadata().items()}
    with pq.ParquetWriter(path, table.schema) as w:
        w.write_table(table, row_group_size=50)
        w.add_key_value_metadata(meta)
    r = check_same(path)
    assert len(r["processes"]["by_comm"]) >= 3
