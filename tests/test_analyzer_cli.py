"""anonanalyze report: formats, -o, lost-event banners, and one-line errors."""

import json
import os
import shutil
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from anonscope.analyzer import cli
from anonscope.analyzer.errors import EXIT_NEWER_SCHEMA, EXIT_NOT_A_RUN, EXIT_OUTPUT, EXIT_UNREADABLE
from anonscope.schema import SCHEMA_VERSION
from eventgen import DROP, Gen
from mdtables import md_lines
from scenarios import chain, zygote

ANONANALYZE = os.path.join(os.path.dirname(sys.executable), "anonanalyze")

REQUIRED_KEYS = [
    "schema_version",
    *(f"run.{k}" for k in ("kernel_release", "arch", "backend", "duration_s", "events",
                           "lost_events")),
    *(f"objects.{o}.{k}" for o in ("anon_vma", "anon_vma_chain")
      for k in ("object_size", "allocated.fault", "allocated.fork", "allocated.clone_fork",
                "allocated.clone_vma", "allocated.other", "freed", "live_at_end",
                "peak_live")),
    "processes.seen", "processes.forking", "processes.leaf",
    *(f"models.{m}.{k}" for m in ("eager", "lazy", "nofork")
      for k in ("anon_vma.allocated", "anon_vma.bytes", "anon_vma_chain.allocated",
                "anon_vma_chain.bytes", "saved_pct.anon_vma", "saved_pct.anon_vma_chain",
                "anon_vma.allocated_range", "anon_vma_chain.allocated_range",
                "anon_vma.fidelity", "anon_vma_chain.fidelity")),
    "models.lazy.upgrades.fork", "models.lazy.upgrades.mremap",
]


def get(d, dotted):
    for part in dotted.split("."):
        assert isinstance(d, dict) and part in d, dotted
        d = d[part]
    return d


def run(*args):
    return subprocess.run([ANONANALYZE, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def zyg(tmp_path):
    return zygote(6, 2, 4, 1).write(str(tmp_path / "zygote.parquet"))


def test_json_has_required_keys(zyg):
    res = CliRunner().invoke(cli.main, ["report", zyg, "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in REQUIRED_KEYS:
        get(data, key)
    for m in ("eager", "lazy", "nofork"):
        for obj in ("anon_vma", "anon_vma_chain"):
            lo, hi = get(data, f"models.{m}.{obj}.allocated_range")
            assert lo <= get(data, f"models.{m}.{obj}.allocated") <= hi
    assert data["schema_version"] == SCHEMA_VERSION
    assert "lost_events_warning" not in data


def test_markdown_cover_letter_table(zyg):
    res = CliRunner().invoke(cli.main, ["report", zyg, "--format", "markdown"])
    assert res.exit_code == 0
    lines = md_lines(res.stdout)
    V, C, K = 6, 4, 1
    # the cover letter's table, live at the end (no mark): the children have
    # exited, the parent's V regions are left, upgraded by its first fork
    head = "| object | before (active KB) | after (active KB) | change |"
    i = lines.index(head)
    assert lines[i + 1] == "|---|---|---|---|"
    rows = [line.split("|")[1].strip() for line in lines[i + 2:i + 5]]
    assert rows == ["vm_area_struct", "anon_vma_chain", "anon_vma"]
    kb = round(V * 104 / 1024, 1)
    assert lines[i + 4] == f"| anon_vma | {kb} | {kb} [0.0, {kb}] | +0.0% |"
    assert lines.count(head) == 3          # lazy and the two no-fork designs
    # the window's peak of objects made in the run, under a name that says so
    head = "| object | eager window peak (KB) | design window peak (KB) | change |"
    i = lines.index(head)
    before, after = (V + C * V + C * K) * 104, V * 104
    assert lines[i + 4] == (f"| anon_vma | {before / 1024:.2f} | {after / 1024:.2f} | "
                            f"{100.0 * (after - before) / before:+.1f}% |")
    assert lines.count(head) == 3


def test_text_and_output_file(zyg, tmp_path):
    out = tmp_path / "r.txt"
    res = run("report", zyg, "-o", str(out))
    assert res.returncode == 0 and res.stdout == ""
    text = out.read_text()
    assert text.startswith("anonscope report: ")
    assert "ANON_VMA_LAZY" in text and "no-fork (opt-out)" in text and "no-fork set at clone" in text


def test_lost_events_on_first_lines_of_every_format(tmp_path):
    g = chain(1, 1, 1, 1)
    g.lose("ringbuf", 3)
    path = g.write(str(tmp_path / "lost.parquet"))
    for fmt in ("text", "markdown", "json"):
        res = run("report", path, "--format", fmt)
        assert res.returncode == 0, res.stderr
        first = "\n".join(res.stdout.splitlines()[:2])
        assert "LOST EVENTS: 3 events" in first, fmt


def test_unwritable_output(zyg, tmp_path):
    res = run("report", zyg, "-o", str(tmp_path / "no" / "such" / "dir.txt"))
    assert res.returncode == EXIT_OUTPUT
    assert res.stderr.startswith("anonanalyze: error: cannot write")


def _bad_inputs(tmp_path):
    good = chain(2, 1, 1, 1).write(str(tmp_path / "good.parquet"))
    raw = open(good, "rb").read()
    cases = {}
    cases["missing"] = (str(tmp_path / "nope.parquet"), EXIT_UNREADABLE, "no such file")
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    cases["empty"] = (str(empty), EXIT_UNREADABLE, "empty file")
    trunc = tmp_path / "trunc.parquet"
    trunc.write_bytes(raw[:len(raw) // 2])
    cases["truncated"] = (str(trunc), EXIT_UNREADABLE, "not a readable Parquet file")
    segdir = tmp_path / "killed.parquet.partial"
    segdir.mkdir()
    (segdir / ".seg-000001.parquet.tmp").write_bytes(raw[:len(raw) - 8])
    cases["killed before the first commit"] = (str(tmp_path / "killed.parquet"), EXIT_UNREADABLE,
                                               "no committed segment")
    rnd = tmp_path / "random.parquet"
    rnd.write_bytes(os.urandom(4096))
    cases["random"] = (str(rnd), EXIT_UNREADABLE, "not a readable Parquet file")
    csv = tmp_path / "run.csv"
    csv.write_text("ts_ns,event\n1,alloc\n")
    cases["csv"] = (str(csv), EXIT_UNREADABLE, "not a readable Parquet file")
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), other)
    cases["other schema"] = (str(other), EXIT_NOT_A_RUN, "not an anonscope recording")
    newer = Gen().write(str(tmp_path / "newer.parquet"), schema_version=SCHEMA_VERSION + 1)
    cases["newer"] = (newer, EXIT_NEWER_SCHEMA, f"schema version {SCHEMA_VERSION + 1}")
    nosizes = Gen().write(str(tmp_path / "nosizes.parquet"), object_sizes=DROP)
    cases["missing key"] = (nosizes, EXIT_NOT_A_RUN, "anonscope.object_sizes")
    # anonscope metadata but a column missing
    t = Gen().table().drop_columns(["obj_id"])
    nocol = tmp_path / "nocol.parquet"
    meta = {k: v for k, v in pq.read_metadata(good).metadata.items()
            if k.startswith(b"anonscope.")}
    pq.write_table(t.replace_schema_metadata(meta), nocol)
    cases["missing column"] = (str(nocol), EXIT_NOT_A_RUN, "obj_id")
    bad_json = tmp_path / "badjson.parquet"
    pq.write_table(Gen().table().replace_schema_metadata(
        {**meta, b"anonscope.lost": b"{not json"}), bad_json)
    cases["bad json"] = (str(bad_json), EXIT_NOT_A_RUN, "not valid JSON")
    cases["directory"] = (str(tmp_path), EXIT_UNREADABLE, "is a directory")
    return cases


def test_bad_inputs_one_line_errors(tmp_path):
    for name, (path, code, words) in _bad_inputs(tmp_path).items():
        res = run("report", path)
        assert res.returncode == code, (name, res.returncode, res.stderr)
        lines = res.stderr.splitlines()
        assert len(lines) == 1, (name, res.stderr)
        assert lines[0].startswith("anonanalyze: error: "), name
        assert words in lines[0], (name, lines[0])
        assert "Traceback" not in res.stderr and res.stdout == "", name


def test_unknown_value_is_rejected(tmp_path):
    g = Gen()
    g.process(1)
    g.fault(1)
    g.rows[0]["path"] = "teleport"
    res = run("report", g.write(str(tmp_path / "v.parquet")))
    assert res.returncode == EXIT_NOT_A_RUN
    assert "'teleport'" in res.stderr


def test_help_documents_exit_codes():
    res = CliRunner().invoke(cli.main, ["report", "--help"])
    assert res.exit_code == 0
    for code in (EXIT_UNREADABLE, EXIT_NOT_A_RUN, EXIT_NEWER_SCHEMA):
        assert f"  {code}  " in res.output
    assert "--format" in res.output and "markdown" in res.output


def test_only_object_losses_make_the_banner(tmp_path):
    """Lock events the buffer lost and skipped runs of the lock programs are
    listed as warnings; the LOST EVENTS banner is for alloc/free losses."""
    g = chain(1, 1, 1, 1)
    g.lose("ringbuf", 4, kind="lock")
    path = g.write(str(tmp_path / "locklost.parquet"), prog_misses_by_event={"lock": 2})
    data = json.loads(run("report", path, "--format", "json").stdout)
    assert data["banners"] == [] and "lost_events_warning" not in data
    assert data["run"]["lost_by_event"]["lock"] == 4 and data["run"]["object_events_lost"] == 0
    assert "events of other kinds lost (the buffer was full): lock 4" in data["warnings"]
    assert any("skipped" in w and "lock 2" in w for w in data["warnings"])
    assert data["objects"]["anon_vma"]["fidelity"] == "exact"
    g.lose("ringbuf", 1, kind="free")
    data = json.loads(run("report", g.write(str(tmp_path / "freelost.parquet")), "--format", "json").stdout)
    assert data["banners"][0] == data["lost_events_warning"]
    assert data["banners"][0].startswith("LOST EVENTS: 1 events were lost (free: 1)")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to switch to nobody")
def test_unreadable_input_is_one_line(zyg, tmp_path):
    from sysfiles import traversable_by_others
    secret = tmp_path / "secret.parquet"
    secret.write_bytes(open(zyg, "rb").read())
    secret.chmod(0o600)
    with traversable_by_others(ANONANALYZE), traversable_by_others(str(secret)):
        res = subprocess.run(["runuser", "-u", "nobody", "--", ANONANALYZE, "report", str(secret)],
                             capture_output=True, text=True, timeout=120, cwd="/")
    assert res.returncode == EXIT_UNREADABLE, res.stderr
    assert res.stderr.strip() == f"anonanalyze: error: {secret}: cannot read: Permission denied"
