"""Move rows on the real collector (docs/schema.md#moves): the workload
makes U UFFDIO_MOVE and D MREMAP_DONTUNMAP calls and P pages for KSM to
merge; the rows equal U, D (the workload's own count of calls that
succeeded) and the kernel's /proc/PID/ksm_merging_pages."""

import contextlib
import json
import os
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import hostcaps
from anonscope.analyzer import load, report
from recording import ANONCOLLECT

SKIP = hostcaps.integration()
pytestmark = [pytest.mark.root, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]
KSM = Path("/sys/kernel/mm/ksm")


def record(tmp_path, binary, *args):
    out = tmp_path / "moves.parquet"
    p = subprocess.run(ANONCOLLECT + ["-q", "-o", str(out), "--", str(binary), *args],
                       capture_output=True, text=True, timeout=600)
    if "no UFFD_FEATURE_MOVE" in p.stderr:      # the workload's own message (exit 3)
        pytest.skip("host lacks: UFFDIO_MOVE (kernel before 6.8)")
    assert p.returncode == 0, p.stderr
    said = json.loads(p.stdout.strip().splitlines()[-1])
    df = pq.read_table(out).to_pandas()
    return out, said, df[df.event == "move"]


@pytest.mark.parametrize("kind,flag,n", [("uffd_move", "-u", 5), ("mremap_dontunmap", "-d", 7)])
def test_uffd_and_dontunmap_rows_equal_the_calls(tmp_path, anonmove, kind, flag, n):
    out, said, moves = record(tmp_path, anonmove, flag, str(n))
    assert said["uffd_moves" if kind == "uffd_move" else "dontunmap"] == n
    assert moves.move_kind.astype(str).value_counts().to_dict() == {kind: n}
    assert set(moves.owner_tgid) == {said["pid"]} and set(moves.tgid) == {said["pid"]}
    page = os.sysconf("SC_PAGE_SIZE")
    assert ((moves.vm_end - moves.vm_start) == page).all()
    r = report.build(load.load(str(out)))
    assert r["moves"]["rows"] == {"ksm_merge": 0, "uffd_move": 0, "mremap_dontunmap": 0, kind: n}


@contextlib.contextmanager
def ksmd_running():
    """ksmd scanning fast, as the kernel's sysfs lets root set it; restored."""
    names = ("run", "sleep_millisecs", "pages_to_scan")
    saved = {n: (KSM / n).read_text().strip() for n in names}
    try:
        for n, v in (("pages_to_scan", "1000"), ("sleep_millisecs", "0"), ("run", "1")):
            (KSM / n).write_text(v)
        yield
    finally:
        for n in reversed(names):
            (KSM / n).write_text(saved[n])


def test_ksm_merge_rows_equal_the_kernels_merged_pages(tmp_path, anonmove):
    if not (KSM / "run").exists():
        pytest.skip("host lacks: KSM (CONFIG_KSM)")
    P = 32
    with ksmd_running():
        out, said, moves = record(tmp_path, anonmove, "-k", str(P), "-w", "60")
    merged = said["ksm_merging_pages"]
    assert merged >= P - 1, said
    ksm = moves[moves.move_kind.astype(str) == "ksm_merge"]
    r = report.build(load.load(str(out)))
    if not r["moves"]["recorded"]["ksm_merge"]:
        # no ksm tracepoints (before 6.4, e.g. Debian's 6.1): no rows, and
        # the report says what it leaves out instead of bounding it
        assert len(ksm) == 0
        assert "KSM merges into lazy VMAs" in [e["what"] for e in r["models"]["lazy"]["not_modelled"]]
        return
    assert len(ksm) == merged
    assert set(ksm.owner_tgid) == {said["pid"]}
    assert set(ksm.comm.astype(str)) == {"ksmd"}
