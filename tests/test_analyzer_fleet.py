"""anonanalyze fleet: totals equal the sums of the single reports, failures
are listed and left out, labels, and a run on a real dask scheduler with two
workers (docs/fleet.md)."""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from anonscope.analyzer import fleet, load, report
from anonscope.analyzer.errors import EXIT_UNREADABLE

BIN = os.path.dirname(sys.executable)
ANONANALYZE = os.path.join(BIN, "anonanalyze")
FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
DESIGNS = ("eager", "lazy", "nofork", "nofork_clone")


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    """The bundled fixtures, two of them one directory down."""
    d = tmp_path_factory.mktemp("fleet")
    names = sorted(n for n in os.listdir(FIXTURES) if n.endswith(".parquet"))
    (d / "sub").mkdir()
    for i, n in enumerate(names):
        shutil.copy(os.path.join(FIXTURES, n), d / ("sub" if i % 2 else ".") / n)
    return d


@pytest.fixture(scope="module")
def singles():
    """The single report of every fixture."""
    return [report.build(load.load(os.path.join(FIXTURES, n)))
            for n in sorted(os.listdir(FIXTURES)) if n.endswith(".parquet")]


def run_fleet(*args):
    """``anonanalyze fleet ARGS --format json -q``: (exit code, JSON or None, stderr)."""
    p = subprocess.run([ANONANALYZE, "fleet", "--format", "json", "-q", *map(str, args)],
                       capture_output=True, text=True, timeout=600)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


def summed(singles, design, obj, key):
    """The sum of ``key`` over the single reports."""
    return sum(r["models"][design][obj][key] for r in singles)


def test_totals_equal_the_sum_of_the_single_reports(fleet_dir, singles):
    rc, out, err = run_fleet(fleet_dir)
    assert rc == 0, err
    assert out["analysed"] == len(singles) and out["failed"] == 0
    assert out["engine"]["kind"] == "dask" and out["engine"]["workers"] >= 1
    for design in DESIGNS:
        for obj in fleet.OBJECTS:
            t = out["totals"][design][obj]
            assert t["allocated"] == summed(singles, design, obj, "allocated")
            assert t["allocated_range"] == [sum(r["models"][design][obj]["allocated_range"][i] for r in singles)
                                            for i in (0, 1)]
    for design in fleet.SAVING_DESIGNS:
        pcts = [r["models"][design]["saved_pct"]["anon_vma"] for r in singles]
        assert out["distributions"][design]["anon_vma"]["median"] == round(statistics.median(pcts), 1)
    assert len(out["recordings"]) == len(singles)
    # the host column is each recording's own hostname metadata (schema v8)
    hosts = sorted(json.loads(pq.read_metadata(os.path.join(FIXTURES, n)).metadata[b"anonscope.hostname"])
                   for n in os.listdir(FIXTURES) if n.endswith(".parquet"))
    assert sorted(r["host"] for r in out["recordings"]) == hosts and all(hosts)


def test_a_recording_that_fails_is_listed_and_the_others_still_count(fleet_dir, singles, tmp_path):
    for n in os.listdir(fleet_dir):
        if n.endswith(".parquet"):
            shutil.copy(fleet_dir / n, tmp_path / n)
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    rc, out, _ = run_fleet(tmp_path)
    bad = [r for r in out["recordings"] if "error" in r]
    assert rc == 0 and out["failed"] == 1 and len(bad) == 1
    assert bad[0]["path"].endswith("broken.parquet") and bad[0]["exit_code"] == EXIT_UNREADABLE
    good = [r for r in out["recordings"] if "error" not in r]
    assert out["totals"]["eager"]["anon_vma"]["allocated"] == sum(
        r["designs"]["eager"]["anon_vma"]["allocated"] for r in good)


def test_nothing_to_analyse_is_one_line_and_exit_3(tmp_path):
    rc, out, err = run_fleet(tmp_path / "nothing-*.parquet")
    assert rc == EXIT_UNREADABLE and out is None
    assert err.startswith("anonanalyze: error: no recording matches") and err.count("\n") == 1


def test_labels_by_metadata_key_partition_the_totals(fleet_dir, singles):
    rc, out, err = run_fleet(fleet_dir, "--label-by", "target.mode")
    assert rc == 0, err
    modes = [r["run"]["target"]["mode"] for r in singles]
    assert {k: v["recordings"] for k, v in out["by_label"].items()} == {m: modes.count(m) for m in set(modes)}
    for design in DESIGNS:
        assert sum(g["totals"][design]["anon_vma_chain"]["allocated"] for g in out["by_label"].values()) == \
            out["totals"][design]["anon_vma_chain"]["allocated"]


def test_expand_finds_files_globs_and_partial_recordings(fleet_dir, tmp_path):
    names = sorted(n for n in os.listdir(FIXTURES) if n.endswith(".parquet"))
    assert len(fleet.expand([str(fleet_dir)])) == len(names)
    assert fleet.expand([str(fleet_dir / "*.parquet")]) == sorted(
        str(fleet_dir / n) for n in os.listdir(fleet_dir) if n.endswith(".parquet"))
    (tmp_path / "run.partial").mkdir()
    (tmp_path / "run.partial" / "seg-000000.parquet").write_bytes(b"")
    assert fleet.expand([str(tmp_path)]) == [str(tmp_path / "run.partial")]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address, n, timeout=120):
    from distributed import Client
    with Client(address, timeout="30s") as c:
        c.wait_for_workers(n, timeout=timeout)


def test_fleet_on_a_real_scheduler_with_two_workers(fleet_dir):
    # the in-process run first: with the scheduler and its workers idling
    # beside it, one emulated CPU (a VM guest) starved it past its timeout
    rc, local, err = run_fleet(fleet_dir)
    assert rc == 0, err
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    # `python -m dask`: the VM guests' venv has the packages but no console
    # scripts (scripts/vm/build-image installs with pip --target)
    dask = [sys.executable, "-m", "dask"]
    procs = [subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        time.sleep(1)
        procs += [subprocess.Popen([*dask, "worker", address, "--nthreads", "1", "--no-dashboard"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
        _wait_for_workers(address, 2)
        rc, remote, err = run_fleet(fleet_dir, "--scheduler", address)
        assert rc == 0, err
        assert remote["engine"] == {"kind": "dask", "scheduler": address, "workers": 2}
        assert remote["totals"] == local["totals"] and remote["distributions"] == local["distributions"]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_an_unreachable_scheduler_is_one_line(fleet_dir):
    rc, out, err = run_fleet(fleet_dir, "--scheduler", f"tcp://127.0.0.1:{_free_port()}")
    assert rc == 7 and out is None
    assert err.startswith("anonanalyze: error: --scheduler") and err.count("\n") == 1
