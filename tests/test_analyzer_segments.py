"""Recordings made of segments (docs/schema.md "Segments"), written by the
collector's own writer, and recordings with rows missing: they read as one
recording, a cut-short run says so in every format, and missing rows are
counted and named instead of "exact"."""

import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from anonscope.analyzer import load, report
from anonscope.collector import segments
from anonscope.collector.writer import RecordingWriter
from scenarios import zygote

ANONANALYZE = os.path.join(os.path.dirname(sys.executable), "anonanalyze")


def write_segments(g, path, parts=3, final=True, join=False):
    """The scenario's rows through RecordingWriter, one commit per part;
    returns the rows of each committed part."""
    w = RecordingWriter(str(path), t0_ns=0)
    rows = g.rows
    cuts = [len(rows) * i // parts for i in range(parts + 1)]
    sizes = []
    for i in range(parts):
        chunk = rows[cuts[i]:cuts[i + 1]]
        w.add_user_rows(chunk)
        last = i == parts - 1
        if last and final and join:
            w.close(g.metadata())
        else:
            w.commit(dict(g.metadata(), stop_reason=None if not (last and final) else "command-exited"),
                     final=last and final)
        sizes.append(len(chunk))
    return w, sizes


def numbers(r):
    """The report without what names the files it came from."""
    r = json.loads(json.dumps(r, default=str))
    r.pop("source")
    r["run"].pop("segmented")
    return r


def run(path, fmt):
    p = subprocess.run([ANONANALYZE, "report", str(path), "--format", fmt], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_segments_read_as_the_recording_they_join_into(tmp_path):
    g = zygote(6, 2, 4, 1)
    whole = report.build(load.load(g.write(str(tmp_path / "whole.parquet"))))
    out = tmp_path / "seg.parquet"
    write_segments(g, out, final=True)
    unjoined = report.build(load.load(str(out)))           # finds seg.parquet.partial/
    assert unjoined["run"]["segmented"] and not unjoined["run"]["cut_short"] and unjoined["banners"] == []
    segments.join(segments.partial_dir(str(out)), str(out))
    joined = report.build(load.load(str(out)))
    assert not os.path.exists(segments.partial_dir(str(out)))
    assert pq.read_metadata(str(out)).num_row_groups == 1   # three segments' row groups merged
    assert numbers(joined) == numbers(unjoined)
    assert joined["models"] == whole["models"] and joined["objects"] == whole["objects"]


def test_a_run_cut_short_says_so_in_every_format(tmp_path):
    g = zygote(6, 2, 4, 1)
    out = tmp_path / "killed.parquet"
    w, sizes = write_segments(g, out, parts=3, final=False)
    w.segments.open_next().write(b"half a segment")         # what a kill mid-commit leaves
    rec = load.load(str(out))
    assert rec.cut_short and rec.rows == sum(sizes) and rec.gaps == []
    r = report.build(rec)
    assert r["run"]["cut_short"] and not r["run"]["complete"] and r["run"]["data_missing"] == []
    assert r["banners"][0].startswith("CUT SHORT")
    assert "cut" in r["models"]["lazy"]["anon_vma"]["fidelity"]
    for fmt in ("text", "markdown"):
        assert "CUT SHORT" in "\n".join(run(out, fmt).splitlines()[:2]), fmt
    assert json.loads(run(out, "json"))["banners"][0].startswith("CUT SHORT")


def test_a_missing_segment_is_counted_and_named(tmp_path):
    g = zygote(8, 0, 5, 2)
    out = tmp_path / "gap.parquet"
    _, sizes = write_segments(g, out, parts=3, final=True)
    os.unlink(os.path.join(segments.partial_dir(str(out)), segments.segment_name(2)))
    r = report.build(load.load(str(out)))
    assert r["run"]["rows_missing"] == sizes[1]
    assert [(d["what"], d["rows"]) for d in r["run"]["data_missing"]] == \
        [("segment seg-000002.parquet missing", sizes[1])]
    assert r["banners"][0].startswith("DATA MISSING") and f"at most {sizes[1]} below" in r["banners"][0]
    assert r["objects"]["anon_vma"]["fidelity"] != "exact"
    assert "rows missing" in r["models"]["eager"]["anon_vma"]["fidelity"]
    assert r["run"]["complete"] is False and r["run"]["cut_short"] is False


def test_an_unreadable_row_group_is_skipped_with_its_rows_and_time(tmp_path):
    """A damaged page (the collector writes page checksums): that row group
    is skipped; its rows and time range come from the footer."""
    g = zygote(8, 0, 5, 2)
    path = tmp_path / "bad.parquet"
    with pq.ParquetWriter(str(path), g.table().schema, write_page_checksum=True) as w:
        t = g.table()
        half = t.num_rows // 2
        w.write_table(t.slice(0, half))
        w.write_table(t.slice(half))
        w.add_key_value_metadata({f"anonscope.{k}": json.dumps(v) for k, v in g.metadata().items()})
    md = pq.read_metadata(str(path))
    rg = md.row_group(1)
    col = next(i for i in range(md.num_columns) if md.schema.column(i).name == "ts_ns")
    chunk = rg.column(col)
    raw = bytearray(path.read_bytes())
    start = chunk.data_page_offset + chunk.total_compressed_size // 2
    raw[start:start + 8] = bytes(b ^ 0xFF for b in raw[start:start + 8])
    path.write_bytes(bytes(raw))
    r = report.build(load.load(str(path)))
    gap = r["run"]["data_missing"][0]
    assert gap["rows"] == rg.num_rows and "row group 1" in gap["what"]
    ts = t.column("ts_ns").to_pylist()[half:]
    assert (gap["first_ns"], gap["last_ns"]) == (min(ts), max(ts))
    assert r["run"]["rows"] == half and r["run"]["rows_missing"] == rg.num_rows
    assert r["banners"][0].startswith("DATA MISSING")


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_every_format_reports_on_partial_and_empty_recordings(tmp_path, fmt):
    from eventgen import Gen
    cases = {}
    cases["empty"] = Gen().write(str(tmp_path / "empty.parquet"))
    g = Gen()
    g.process(10)
    g.exec(10)
    g.exit(10)
    cases["command only"] = g.write(str(tmp_path / "cmd.parquet"))
    cases["census found nothing"] = Gen().write(
        str(tmp_path / "census0.parquet"),
        census={"status": "done", "reason": "task_vma iterator run once at start", "vma_rows": 0,
                "anon_vma_rows": 0, "anon_vmas_linked": 0, "seconds": 0.1, "lost": 0})
    cases["census not run"] = Gen().write(
        str(tmp_path / "census-no.parquet"),
        census={"status": "not run", "reason": "--no-census", "vma_rows": 0, "anon_vma_rows": 0,
                "anon_vmas_linked": 0, "seconds": 0.0, "lost": 0})
    cut = tmp_path / "cut.parquet"
    write_segments(zygote(2, 0, 1, 1), cut, parts=2, final=False)
    cases["cut short"] = str(cut)
    for name, path in cases.items():
        text = run(path, fmt)
        assert text.strip(), name
        if name == "empty":
            assert "no rows" in text, name
        if name == "census not run":
            assert "--no-census" in text, name
