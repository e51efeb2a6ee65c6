"""``anonanalyze import perfetto`` (collector/perfetto/, docs/android.md).

The traces are the fixtures' real recordings written as a device's traced
would have written them, with Perfetto's own protos (tests/perfettogen.py):
raw call sites and pointers, bundles out of time order across CPUs. The
import must give the report of the recording minus what a Perfetto trace
cannot carry (perfettogen.strip), number for number.
"""

import json
import os

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import perfettogen
from anonscope.analyzer import cli

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
RECORDINGS = ("anonshape-base-f6.parquet", "anonshape-n40-s10-m5-f6.parquet", "anonshape-n100-f10.parquet",
              "system-anonshape.parquet")
#: Report keys that describe the file, not the run's objects: where it came
#: from and how (backend, probes), and the wording of fidelity notes that
#: name the backend.
FILE_KEYS = (".source", ".run.", ".locks.", ".moves.", ".census.", ".banners", ".warnings")


def run(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args])


def report(path):
    res = run("report", path, "--format", "json", "-q")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def leaves(x, pre=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from leaves(v, f"{pre}.{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from leaves(v, f"{pre}[{i}]")
    else:
        yield pre, x


def numbers(rep):
    """Every leaf of the report that is about the run's objects and
    processes (names of processes included)."""
    return {k: v for k, v in leaves(rep)
            if not k.startswith(FILE_KEYS) and not k.endswith(("fidelity", "note")) and "not_modelled" not in k}


def imported(tmp_path, name, *extra, **convert):
    paths = perfettogen.convert(os.path.join(FIXTURES, name), tmp_path / "t", **convert)
    out = tmp_path / "imported.parquet"
    res = run("import", "perfetto", paths["trace"], "--kallsyms", paths["kallsyms"], "-o", out, "-q", *extra)
    return res, out, paths


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_import_reports_what_the_recording_gives(tmp_path, name):
    src = os.path.join(FIXTURES, name)
    res, out, paths = imported(tmp_path, name, "--slab-dir", tmp_path / "t" / "slab")
    assert res.exit_code == 0, res.output
    perfettogen.strip(src, tmp_path / "stripped.parquet")
    want, got = numbers(report(tmp_path / "stripped.parquet")), numbers(report(out))
    assert got == want, {k: (want.get(k), got.get(k)) for k in set(want) | set(got) if want.get(k) != got.get(k)}
    # ... and the rows are the recording's rows the trace carried
    rows = perfettogen.kernel_rows(src)
    assert pq.read_metadata(out).num_rows == int(perfettogen.carried(rows).sum())
    meta = {k.decode()[len("anonscope."):]: json.loads(v) for k, v in pq.read_metadata(out).metadata.items()
            if k.startswith(b"anonscope.")}
    assert meta["backend"] == "perfetto" and meta["perfetto"]["late_events"] == 0
    assert meta["perfetto"]["tasks_undescribed"] == 0
    assert meta["object_sizes"]["anon_vma"]["object_size"] == json.loads(
        pq.read_metadata(src).metadata[b"anonscope.object_sizes"])["anon_vma"]["object_size"]


def test_what_the_trace_cannot_carry_is_what_strip_drops(tmp_path):
    """The system-wide recording: every row strip drops is an allocation
    at an unknown call site, the free of one, or a free of an older object
    where the call site does not say what it frees; the older VMAs' frees
    are among them."""
    rows = perfettogen.kernel_rows(os.path.join(FIXTURES, "system-anonshape.parquet"))
    dropped = rows[~perfettogen.carried(rows)]
    other_ids = set(rows.obj_id[(rows.event == "alloc") & (rows.path == "other")])
    old = (dropped.event == "free") & (dropped.preexisting == True)  # noqa: E712
    kinds = ((dropped.event == "alloc") & (dropped.path == "other")) \
        | ((dropped.event == "free") & dropped.obj_id.isin(other_ids) & ~old) \
        | (old & ~dropped.path.isin(perfettogen.OLD_FREE_PATHS))
    assert kinds.all() and len(dropped) > 0
    assert (old & (dropped.object == "vm_area_struct")).sum() == \
        ((rows.event == "free") & (rows.object == "vm_area_struct") & (rows.preexisting == True)).sum()  # noqa: E712


def test_sizes_from_the_trace_alone(tmp_path):
    """Without --slab-dir the sizes come from the call sites (AVC at
    anon_vma_clone, the other one at __anon_vma_prepare/anon_vma_fork, the
    largest at vm_area_alloc/dup): the same recording."""
    name = "anonshape-n40-s10-m5-f6.parquet"
    res, out, _ = imported(tmp_path, name)
    assert res.exit_code == 0, res.output
    perfettogen.strip(os.path.join(FIXTURES, name), tmp_path / "stripped.parquet")
    want = numbers(report(tmp_path / "stripped.parquet"))
    got = numbers(report(out))
    # only the grown VMA's slot needs the cache's align (docs/models.md,
    # VMA growth): unknown here, a range that holds the recording's value
    differ = {k for k in set(want) | set(got) if want.get(k) != got.get(k)}
    assert differ and all("vma_growth" in k or "slot" in k or "vm_area_struct.bytes_range[0]" in k
                          for k in differ), differ
    assert got[".models.lazy.vma_growth.slot_after_range[0]"] <= want[".models.lazy.vma_growth.slot_after_range[0]"]
    assert got[".models.lazy.vma_growth.slot_after_range[1]"] == want[".models.lazy.vma_growth.slot_after_range[1]"]
    meta = json.loads(pq.read_metadata(out).metadata[b"anonscope.perfetto"])
    assert meta["sizes_from"] == "trace"


def test_compressed_packets_give_the_same_recording(tmp_path):
    name = "anonshape-base-f6.parquet"
    plain = imported(tmp_path / "a", name)
    packed = imported(tmp_path / "b", name, compress=True)
    assert plain[0].exit_code == packed[0].exit_code == 0, packed[0].output
    assert numbers(report(plain[1])) == numbers(report(packed[1]))


def test_lost_events_are_carried_per_cpu(tmp_path):
    """FtraceStats' overruns at the end less at the start: one lost row per
    CPU, the total in the metadata, the report's LOST EVENTS banner."""
    res, out, _ = imported(tmp_path, "system-anonshape.parquet", lost_by_cpu={0: 5, 1: 2})
    assert res.exit_code == 0, res.output
    df = pq.read_table(out).to_pandas()
    lost = df[df.event == "lost"]
    assert sorted(zip(lost.cpu, lost["count"])) == [(0, 5), (1, 2)]
    assert set(lost.lost_source) == {"ftrace_overrun"}
    r = report(out)
    assert r["run"]["lost_events"] == 7
    assert r["banners"][0].startswith("LOST EVENTS: 7 events")


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_a_truncated_trace_is_one_line_and_exit_3(tmp_path, cut):
    _, _, paths = imported(tmp_path, "anonshape-base-f6.parquet")
    data = open(paths["trace"], "rb").read()
    short = tmp_path / "short.pftrace"
    short.write_bytes(data[:int(len(data) * cut)])
    out = tmp_path / "r.parquet"
    res = run("import", "perfetto", short, "--kallsyms", paths["kallsyms"], "-o", out)
    assert res.exit_code == 3, res.output
    assert res.output.count("\n") == 1 and res.output.startswith("anonanalyze: error: ")
    assert "truncated" in res.output
    assert not out.exists() and not os.path.exists(str(out) + ".partial")


def test_not_a_trace_is_one_line_and_exit_3(tmp_path):
    _, _, paths = imported(tmp_path, "anonshape-base-f6.parquet")
    junk = tmp_path / "junk.pftrace"
    junk.write_bytes(b"PAR1" + bytes(range(256)) * 4)
    res = run("import", "perfetto", junk, "--kallsyms", paths["kallsyms"], "-o", tmp_path / "r.parquet")
    assert res.exit_code == 3, res.output
    assert res.output.count("\n") == 1
    assert "not a Perfetto trace" in res.output or "does not decode" in res.output


def test_kallsyms_missing_or_without_the_rmap(tmp_path):
    _, _, paths = imported(tmp_path, "anonshape-base-f6.parquet")
    res = run("import", "perfetto", paths["trace"], "--kallsyms", tmp_path / "none", "-o", tmp_path / "r.parquet")
    assert res.exit_code == 3 and "none: No such file or directory" in res.output, res.output
    hidden = tmp_path / "hidden"
    hidden.write_text("0000000000000000 T __anon_vma_prepare\n0000000000000000 T anon_vma_fork\n")
    res = run("import", "perfetto", paths["trace"], "--kallsyms", hidden, "-o", tmp_path / "r.parquet")
    assert res.exit_code == 3 and "zero addresses" in res.output, res.output
    other = tmp_path / "other"
    other.write_text("ffffffff81000000 T start_kernel\nffffffff81000100 T rest_init\n")
    res = run("import", "perfetto", paths["trace"], "--kallsyms", other, "-o", tmp_path / "r.parquet")
    assert res.exit_code == 4 and "no __anon_vma_prepare" in res.output, res.output
    assert res.output.count("\n") == 1


def test_a_trace_without_fork_windows_is_refused(tmp_path):
    """No raw_syscalls: clone_fork could not be told from clone_vma."""
    res, out, _ = imported(tmp_path, "anonshape-base-f6.parquet", omit=("sys_enter", "sys_exit"))
    assert res.exit_code == 4, res.output
    assert "raw_syscalls/sys_enter" in res.output and res.output.count("\n") == 1
    assert not out.exists() and not os.path.exists(str(out) + ".partial")


def test_marks_travel_as_trace_marker_lines(tmp_path):
    """A mark is an 'anonscope-mark: LABEL' line in trace_marker (an
    ftrace/print event): the import's snapshot at it equals the recording's."""
    from test_analyzer_snapshots import tree_in_run
    g, _ = tree_in_run()
    src = g.write(str(tmp_path / "gen.parquet"))
    paths = perfettogen.convert(src, tmp_path / "t")
    out = tmp_path / "imported.parquet"
    res = run("import", "perfetto", paths["trace"], "--kallsyms", paths["kallsyms"], "--slab-dir",
              paths["slab_dir"], "-o", out, "-q")
    assert res.exit_code == 0, res.output
    perfettogen.strip(src, tmp_path / "stripped.parquet")
    want, got = report(tmp_path / "stripped.parquet"), report(out)
    assert [s["label"] for s in got["snapshots"]] == [s["label"] for s in want["snapshots"]]
    assert "apps" in [s["label"] for s in got["snapshots"]]
    assert numbers(got) == numbers(want)


def test_the_record_config_asks_for_what_the_import_reads():
    """scripts/android/anonscope.pbtx parses as Perfetto's TraceConfig and
    asks for every event the import reads, the fork and exec syscalls, the
    process scan at the start, and streams to the file."""
    from google.protobuf import text_format
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

    from anonscope.collector.perfetto import importer
    root = os.path.dirname(FIXTURES)
    text = open(os.path.join(root, "scripts", "android", "anonscope.pbtx")).read()
    cfg = text_format.Parse(text.replace("DURATION_MS", "60000"), pb.TraceConfig())
    ftrace = next(d.config.ftrace_config for d in cfg.data_sources if d.config.name == "linux.ftrace")
    assert set(importer.FTRACE_NAMES.values()) <= set(ftrace.ftrace_events)
    assert {"sys_clone", "sys_clone3", "sys_execve", "sys_execveat"} <= set(ftrace.syscall_events)
    stats = next(d.config.process_stats_config for d in cfg.data_sources if d.config.name == "linux.process_stats")
    assert stats.scan_all_processes_on_start
    assert cfg.write_into_file and cfg.duration_ms == 60000


def test_losses_the_trace_does_not_count_make_every_count_a_lower_bound(tmp_path):
    """Bundles flagged lost_events with no FtraceStats to count them: the
    report says events were lost, how many is unknown."""
    res, out, _ = imported(tmp_path, "anonshape-base-f6.parquet", flag_lost=(0,), stats=False)
    assert res.exit_code == 0, res.output
    r = report(out)
    assert r["run"]["complete"] is False and r["run"]["rows_missing"] is None
    assert any(b.startswith("DATA MISSING: the trace lost events: ftrace bundles flagged lost_events (CPU 0: 1)")
               and "lower bound by an unknown amount" in b for b in r["banners"]), r["banners"]
    assert "rows missing" in r["models"]["eager"]["anon_vma"]["fidelity"]


def test_a_free_site_that_frees_both_kinds_is_caught(tmp_path):
    """A kernel whose compiler inlined __put_anon_vma into unlink_anon_vmas
    frees anon_vmas there: the trace's own anon_vmas show it, and the frees
    of older objects at that site are then of unknown kind (data missing)."""
    res, out, _ = imported(tmp_path, "system-anonshape.parquet", free_at={"put": "unlink_anon_vmas"})
    assert res.exit_code == 0, res.output
    meta = json.loads(pq.read_metadata(out).metadata[b"anonscope.perfetto"])
    rows = perfettogen.kernel_rows(os.path.join(FIXTURES, "system-anonshape.parquet"))
    own_puts = ((rows.event == "free") & (rows.path == "put") & (rows.preexisting != True)).sum()  # noqa: E712
    assert meta["site_rule_broken"] == own_puts > 0
    assert any("freed at unlink_anon_vmas or __put_anon_vma as the other kind" in b for b in report(out)["banners"])


def test_a_census_recording_joins_the_import(tmp_path):
    """--census: the census of an anoncollect recording made while the trace
    recorded (here the fixture's own census, the same run) joins the
    import on the trace's clock: the report equals the recording's with its
    census, the window widened by the clock margin."""
    name = "system-anonshape.parquet"
    src = os.path.join(FIXTURES, name)
    res, out, _ = imported(tmp_path, name, "--slab-dir", tmp_path / "t" / "slab", "--census", src)
    assert res.exit_code == 0, res.output
    perfettogen.strip(src, tmp_path / "stripped.parquet", census=True)
    want, got = report(tmp_path / "stripped.parquet"), report(out)
    assert want["census"]["status"] == "done" and got["census"]["status"] == "done"
    assert numbers(got) == numbers(want)
    assert got["snapshots"][0]["designs"]["eager"]["anon_vma"]["live"] is not None
    census = {k: v for k, v in leaves(want["census"]) if not isinstance(v, str)}
    assert census and census == {k: v for k, v in leaves(got["census"]) if not isinstance(v, str)}


def test_a_census_that_did_not_run_is_refused(tmp_path):
    command_run = os.path.join(FIXTURES, "anonshape-base-f6.parquet")
    res, out, _ = imported(tmp_path, "anonshape-base-f6.parquet", "--census", command_run)
    assert res.exit_code == 4 and "its census did not run" in res.output, res.output
    assert res.output.count("\n") == 1 and not out.exists()


def test_events_behind_the_sort_window_are_reported(tmp_path):
    """A CPU whose bundles reach the file after every other CPU's (here more
    than the 2 s sort window late): its events are replayed out of order,
    counted, and the report says its counts may be wrong."""
    res, out, _ = imported(tmp_path, "system-anonshape.parquet", late_cpu=1)
    assert res.exit_code == 0, res.output
    meta = json.loads(pq.read_metadata(out).metadata[b"anonscope.perfetto"])
    assert meta["late_events"] > 0
    assert any("replayed out of time order" in b for b in report(out)["banners"])


def test_events_wait_for_a_process_scan_that_comes_late(tmp_path):
    """The scan at the start (linux.process_stats, another buffer) reaches
    the file after 3 s of events, more than the sort window: they wait for
    it (up to 5 s of events), so every task has its process and comm."""
    from test_analyzer_snapshots import tree_in_run
    g, _ = tree_in_run()
    g.step = 25_000_000                           # 151 rows over 3.8 s: 4 rows a bundle
    g.rows = [dict(r, ts_ns=i * g.step) for i, r in enumerate(g.rows)]
    src = g.write(str(tmp_path / "gen.parquet"))
    paths = perfettogen.convert(src, tmp_path / "t", tree_after=30)
    out = tmp_path / "imported.parquet"
    res = run("import", "perfetto", paths["trace"], "--kallsyms", paths["kallsyms"], "--slab-dir",
              paths["slab_dir"], "-o", out, "-q")
    assert res.exit_code == 0, res.output
    meta = json.loads(pq.read_metadata(out).metadata[b"anonscope.perfetto"])
    assert meta["tasks_undescribed"] == 0
    perfettogen.strip(src, tmp_path / "stripped.parquet")
    assert numbers(report(out)) == numbers(report(tmp_path / "stripped.parquet"))


def test_a_per_cpu_clock_is_refused(tmp_path):
    """FTRACE_CLOCK_LOCAL: each CPU's own clock, no order across CPUs."""
    res, out, _ = imported(tmp_path, "anonshape-base-f6.parquet", ftrace_clock=3)
    assert res.exit_code == 4 and "each CPU's local clock" in res.output, res.output
    assert res.output.count("\n") == 1 and not out.exists()


SLABINFO = """slabinfo - version: 2.1
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables ... : slabdata ...
anon_vma_chain      {avc}   {avc_total}     64   64    1 : tunables    0    0    0 : slabdata     10     10      0
anon_vma            {av}    {av_total}    104   39    1 : tunables    0    0    0 : slabdata     10     10      0
vm_area_struct      {vma}   {vma_total}    192   21    1 : tunables    0    0    0 : slabdata     10     10      0
"""


def test_slab_samples_at_the_marks(tmp_path):
    """--samples: record's LABEL.slabinfo/.meminfo, read just after each
    mark, become slab rows at that mark (and 'end' at the trace's end)."""
    from test_analyzer_snapshots import tree_in_run
    g, _ = tree_in_run()
    src = g.write(str(tmp_path / "gen.parquet"))
    paths = perfettogen.convert(src, tmp_path / "t")
    samples = tmp_path / "samples"
    samples.mkdir()
    for label, k in (("apps", 1), ("end", 2)):
        (samples / f"{label}.slabinfo").write_text(SLABINFO.format(avc=640 * k, avc_total=700 * k, av=390 * k,
                                                                   av_total=400 * k, vma=2100 * k, vma_total=2200 * k))
        (samples / f"{label}.meminfo").write_text(f"MemTotal: 8000000 kB\nSlab: {90000 * k} kB\n")
    out = tmp_path / "imported.parquet"
    res = run("import", "perfetto", paths["trace"], "--kallsyms", paths["kallsyms"], "--slab-dir", paths["slab_dir"],
              "--samples", samples, "-o", out, "-q")
    assert res.exit_code == 0, res.output
    df = pq.read_table(out).to_pandas()
    mark_ts = int(df[df.event == "mark"].ts_ns.iloc[0])
    rows = df[df.event == "slab"]
    at_mark = rows[rows.ts_ns == mark_ts].set_index("slab_cache")
    assert at_mark.slab_active.to_dict() == {"anon_vma": 390, "anon_vma_chain": 640, "vm_area_struct": 2100}
    assert set(at_mark.mem_slab_kb) == {90000} and set(at_mark.mem_total_kb) == {8000000}
    assert len(rows) == 6 and rows.ts_ns.max() == int(df.ts_ns.max())
    assert report(out)["slabinfo"]["samples"] == 2
    (samples / "boot.slabinfo").write_text(SLABINFO.format(avc=1, avc_total=1, av=1, av_total=1, vma=1, vma_total=1))
    res = run("import", "perfetto", paths["trace"], "--kallsyms", paths["kallsyms"], "--samples", samples,
              "-o", tmp_path / "r2.parquet", "-q")
    assert res.exit_code == 4 and "no mark 'boot' in the trace" in res.output, res.output
