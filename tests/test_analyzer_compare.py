"""anonanalyze compare (project issue #15, item 2): A and B side by side,
delta = B - A, pct = 100 * delta / A (docs/compare.md). Every expected
number is derived from the two single reports (report.build) or from the
scenario's parameters, never pasted from a run."""

import copy
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from anonscope.analyzer import cli, compare, comparehtml
from anonscope.analyzer.errors import EXIT_UNREADABLE
from eventgen import Gen
from htmlpage import outside_refs, parse
from mdtables import md_text
from scenarios import AV, AVC, VMA, build

DESIGNS = ("eager", "lazy", "nofork", "nofork_clone")
OBJS = (AV, AVC, VMA)
ANONANALYZE = os.path.join(os.path.dirname(sys.executable), "anonanalyze")


def fan(N, F):
    """Parent 100 faults N anon VMAs and forks F children, which keep them.
    Eager (rules E1, E2 of docs/models.md#eager): N fault anon_vmas and N
    fault AVCs; each fork makes N anon_vmas, N own AVCs and N clone_fork AVCs."""
    g = Gen()
    g.process(100, "parent")
    g.faults(100, N)
    for k in range(F):
        g.fork(100, 200 + k, comm="child")
    return g


def eager_counts(N, F):
    """(anon_vmas, AVCs) the eager kernel allocates in :func:`fan`."""
    return N + F * N, N + 2 * F * N


@pytest.fixture
def pair(tmp_path):
    """(N, F1, F2, report A, report B, path A, path B): the same parent, F1 then F2 children."""
    N, F1, F2 = 5, 2, 6
    pa = fan(N, F1).write(str(tmp_path / "a.parquet"))
    pb = fan(N, F2).write(str(tmp_path / "b.parquet"))
    ra, rb = (build(fan(N, F), tmp_path, f"r{F}.parquet") for F in (F1, F2))
    return N, F1, F2, ra, rb, pa, pb


def expected(a, b):
    """delta and pct by the rule, from the two sides."""
    if a is None or b is None:
        return None, None
    d = b - a
    return d, (round(100.0 * d / a, 1) if a else None)


def single(r, design, obj, metric):
    """(value, range) of one headline number in one report, read as docs/compare.md says."""
    m = r["models"][design]
    o = m[obj]
    if metric.startswith("live_end"):             # the cover letter's table at the end
        e = r["snapshots"][-1]["designs"][design][obj]
        key = "kb" if metric == "live_end_kb" else "live"
        return e[key], e[f"{key}_range"]
    if metric == "saved_pct":
        return m["saved_pct"].get(obj), m.get("saved_pct_range", {}).get(obj)
    if metric == "saved":
        if "saved" in o:
            return o["saved"], None
        e = r["models"]["eager"][obj]["allocated"]
        lo, hi = o["allocated_range"]
        return e - o["allocated"], [e - hi, e - lo]
    return o[metric], o.get(f"{metric}_range")


def test_eager_avc_delta_is_the_scenario_formula(pair):
    N, F1, F2, ra, rb, _, _ = pair
    assert (ra["models"]["eager"][AV]["allocated"], ra["models"]["eager"][AVC]["allocated"]) == eager_counts(N, F1)
    c = compare.compare(ra, rb)
    (av1, avc1), (av2, avc2) = eager_counts(N, F1), eager_counts(N, F2)
    assert c["delta"]["objects"][AVC]["allocated_total"] == avc2 - avc1 == 2 * N * (F2 - F1)
    assert c["delta"]["objects"][AV]["allocated_total"] == av2 - av1 == N * (F2 - F1)
    assert c["delta"]["models"]["eager"][AVC]["allocated"]["delta"] == 2 * N * (F2 - F1)
    for obj in OBJS:
        o = c["delta"]["objects"][obj]
        a, b = ra["objects"][obj]["allocated_total"], rb["objects"][obj]["allocated_total"]
        assert (o["a"], o["b"]) == (a, b)
        assert (o["allocated_total"], o["pct"]) == expected(a, b)


@pytest.mark.parametrize("design", DESIGNS)
def test_every_headline_delta_is_the_difference_of_the_reports(pair, design):
    _, _, _, ra, rb, _, _ = pair
    c = compare.compare(ra, rb)
    assert c["validation"] is None and c["missing"] == []
    for obj in OBJS:
        for metric in compare.HEADLINES:
            got = c["delta"]["models"][design][obj][metric]
            (a, ar), (b, br) = single(ra, design, obj, metric), single(rb, design, obj, metric)
            assert (got["a"], got["b"]) == (a, b), (obj, metric)
            d, p = expected(a, b)
            assert got["delta"] == pytest.approx(d) if d is not None else got["delta"] is None
            assert got["pct"] == p, (obj, metric)
            if ar is not None or br is not None:
                ar, br = ar or [a, a], br or [b, b]
                want = [None if x is None or y is None else y - x for x, y in zip(ar, br)]
                assert [None if v is None else pytest.approx(v) for v in got["delta_range"]] == want, (obj, metric)


def test_pct_is_null_when_a_is_zero():
    assert compare.diff(0, 5) == {"a": 0, "b": 5, "delta": 5, "pct": None}
    assert compare.diff(None, 5) == {"a": None, "b": 5, "delta": None, "pct": None}
    d = compare.diff(4, 6, [3, 5], None)
    assert d["pct"] == 50.0 and d["b_range"] == [6, 6] and d["delta_range"] == [3, 1]
    assert compare.diff(4, 6, [3, None], [5, 7])["delta_range"] == [2, None]


def test_validation_is_a_modelled_against_b_measured(pair):
    _, _, _, ra, rb, _, _ = pair
    for design in compare.B_DESIGNS:
        v = compare.compare(ra, rb, b_design=design)["validation"]
        assert v["design"] == design
        for obj in OBJS:
            for metric in compare.MEASURED:
                got = v["objects"][obj][metric]
                a, b = ra["models"][design][obj][metric], rb["models"]["eager"][obj][metric]
                assert (got["a"], got["b"]) == (a, b)
                assert (got["delta"], got["pct"]) == expected(a, b)
            lo, hi = ra["models"][design][obj]["allocated_range"]
            blo, bhi = rb["models"]["eager"][obj]["allocated_range"]
            assert v["objects"][obj]["allocated"]["delta_range"] == [blo - lo, bhi - hi]


def test_what_one_side_lacks_is_listed_with_null(pair):
    _, _, _, ra, rb, _, _ = pair
    rb = copy.deepcopy(rb)
    del rb["models"]["nofork"]
    del rb["models"]["lazy"][VMA]
    c = compare.compare(ra, rb)
    assert "models.nofork: only in A" in c["missing"]
    assert "models.lazy.vm_area_struct: only in A" in c["missing"]
    for obj in OBJS:
        got = c["delta"]["models"]["nofork"][obj]["allocated"]
        assert got["a"] == ra["models"]["nofork"][obj]["allocated"]
        assert got["b"] is None and got["delta"] is None and got["pct"] is None
    assert c["delta"]["models"]["lazy"][VMA]["peak_live"]["b"] is None
    reverse = compare.compare(rb, ra)
    assert "models.nofork: only in B" in reverse["missing"]
    assert reverse["delta"]["models"]["nofork"][AV]["allocated"]["a"] is None
    assert "missing: models.nofork: only in A" in compare.render_text(c)


def test_cli_json_equals_the_compare_of_the_reports(pair):
    _, _, _, ra, rb, pa, pb = pair
    res = CliRunner().invoke(cli.main, ["compare", pa, pb, "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    want = json.loads(compare.render_json(compare.compare(ra, rb, a_path=pa, b_path=pb)))
    assert data["delta"] == want["delta"]
    for side, path, r in (("a", pa, ra), ("b", pb, rb)):
        assert data[side]["path"] == path
        for k in ("kernel_release", "arch", "backend", "duration_s"):
            assert data[side][k] == r["run"][k]
    assert data["validation"] is None


def test_cli_b_design_adds_validation(pair):
    _, _, _, ra, rb, pa, pb = pair
    res = CliRunner().invoke(cli.main, ["compare", pa, pb, "--format", "json", "--b-design", "lazy"])
    assert res.exit_code == 0, res.output
    v = json.loads(res.stdout)["validation"]
    assert v["objects"][AVC]["allocated"]["a"] == ra["models"]["lazy"][AVC]["allocated"]
    assert v["objects"][AVC]["allocated"]["b"] == rb["models"]["eager"][AVC]["allocated"]
    res = CliRunner().invoke(cli.main, ["compare", pa, pb, "--b-design", "lazy"])
    assert "Validation: A modelled as ANON_VMA_LAZY against B measured" in res.stdout
    assert "validation: not asked" not in res.stdout


def test_cli_text_and_markdown(pair, tmp_path):
    N, F1, F2, _, _, pa, pb = pair
    res = CliRunner().invoke(cli.main, ["compare", pa, pb])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert f"A: {pa}" in text and f"B: {pb}" in text and "delta = B - A" in text
    assert "validation: not asked" in text and "--b-design lazy|nofork|nofork_clone" in text
    avc_row = next(line for line in text.splitlines() if line.strip().startswith("AVC"))
    assert f"{2 * N * (F2 - F1):+d}" in avc_row
    out = tmp_path / "c.md"
    res = CliRunner().invoke(cli.main, ["compare", pa, pb, "-o", str(out)])
    assert res.exit_code == 0, res.output
    md = md_text(out.read_text())
    assert "### ANON_VMA_LAZY" in md and "| object | number | A | B | delta | % |" in md
    assert "`--b-design lazy|nofork|nofork_clone`" in md


def test_cli_html(pair, tmp_path):
    """--format html (or -o X.html): one page, no URL outside it, the tables
    of the text comparison with the same cells, and one plot whose bars are
    each design's anon_vma + AVC allocated on A and on B."""
    N, F1, F2, ra, rb, pa, pb = pair
    out = tmp_path / "c.html"
    res = CliRunner().invoke(cli.main, ["compare", pa, pb, "-o", str(out), "--b-design", "lazy"])
    assert res.exit_code == 0, res.output
    page = parse(out.read_text())
    assert outside_refs(page) == [] and "<script" not in out.read_text()
    assert len(page.ids) == len(set(page.ids)) and len(page.svgs) == 1 == page.figures and page.svgs[0] > 0
    data = compare.compare(ra, rb, b_design="lazy", a_path=pa, b_path=pb)
    tables = page.tables_of("compare")
    assert tables == [[[str(c) for c in row] for row in t] for _, t in compare._sections(data)]
    av, avc = eager_counts(N, F2)
    eager = {row[0]: row for row in tables[0][1:]}                      # eager's allocations per object
    assert eager["anon_vma"][3] == str(av) and eager["AVC"][3] == str(avc)   # column B
    bars = [comparehtml._rmap_allocated(data["delta"]["models"]["eager"], side) for side in ("a", "b")]
    assert bars == [sum(eager_counts(N, F1)), av + avc]
    text = " ".join(page.text)
    assert f"A: {pa}" in text and f"B: {pb}" in text and "delta = B - A" in text


def layout(vma_members, functions):
    """A metadata rmap_layout (schema v9) with these vm_area_struct members
    (8 bytes each) and these anon rmap functions present."""
    return {"structs": {"anon_vma": {"size": 96, "members": ["root", "rwsem"]},
                        "vm_area_struct": {"size": 8 * len(vma_members), "members": list(vma_members)}},
            "functions": {f: f in functions for f in ("anon_vma_fork", "anon_vma_clone", "rmap_walk_anon")}}


@pytest.mark.parametrize("added,gone", [((), ()), (("root_ref", "root_vma_x"), ()), (("y",), ("anon_vma",))])
def test_rmap_layout_difference_is_listed(tmp_path, added, gone):
    """The two kernels' anon rmap layouts (metadata rmap_layout): the
    members B adds or drops and the functions only one side has, from the
    two layouts; "same" when equal; unknown for a side without one."""
    base = ["vm_start", "vm_end", "anon_vma_chain", "anon_vma"]
    mine = [m for m in base if m not in gone] + list(added)
    funcs_b = {"anon_vma_fork", "rmap_walk_anon"} | (set() if gone else {"anon_vma_clone"})
    la, lb = layout(base, {"anon_vma_fork", "anon_vma_clone", "rmap_walk_anon"}), layout(mine, funcs_b)
    reps = [build(fan(2, 1), tmp_path, name, rmap_layout=lay) for name, lay in (("a.parquet", la), ("b.parquet", lb))]
    assert reps[1]["run"]["rmap_layout"] == lb
    d = compare.compare(*reps)["rmap_layout"]
    if not added and not gone:
        assert d == {"status": "same", "structs": {}, "functions": {"only_a": [], "only_b": []}, "unknown": []}
        assert "the same in A and B" in compare.render_text(compare.compare(*reps))
        assert compare.compare(*reps)["validation_candidates"] is None
        return
    assert d["status"] == "differs"
    assert d["structs"] == {"vm_area_struct": {"added": list(added), "removed": list(gone),
                                               "size": [8 * len(base), 8 * len(mine)]}}
    assert d["functions"] == {"only_a": ["anon_vma_clone"] if gone else [], "only_b": []}
    text = compare.render_text(compare.compare(*reps))
    assert "anon rmap layout (BTF) differs: vm_area_struct +[" + ", ".join(added) + "]" in text
    # no design named: A modelled as each design beside B measured (B's
    # eager: N + F N anon_vmas, N + 2 F N AVCs in fan(2, 1))
    cands = compare.compare(*reps)["validation_candidates"]
    if not gone and not any(m.startswith("anon") for m in added):
        # only other VMA members changed, as between stock releases: no candidates
        assert cands is None
        return
    assert list(cands) == ["eager", *compare.B_DESIGNS]
    e_av, e_avc = eager_counts(2, 1)
    for design, v in cands.items():
        a_model = reps[0]["models"][design]
        assert v["objects"]["anon_vma"]["allocated"]["b"] == e_av
        assert v["objects"]["anon_vma_chain"]["allocated"]["b"] == e_avc
        assert v["objects"]["anon_vma"]["allocated"]["a"] == a_model["anon_vma"]["allocated"]
        assert f"Validation: A modelled as {compare.MODEL_TITLE.get(design, design)}" in text
    assert "no metadata says into which design" in text
    assert compare.compare(*reps, b_design="lazy")["validation_candidates"] is None
    old = build(fan(2, 1), tmp_path, "old.parquet")             # no rmap_layout: schema before v9
    assert compare.compare(old, reps[1])["rmap_layout"]["status"] == "unknown"
    assert compare.compare(old, reps[1])["rmap_layout"]["unknown"] == ["A"]


@pytest.mark.parametrize("which", ["a", "b"])
def test_missing_file_is_one_line_and_exit_code(pair, tmp_path, which):
    _, _, _, _, _, pa, pb = pair
    missing = str(tmp_path / "nope.parquet")
    args = [missing, pb] if which == "a" else [pa, missing]
    res = subprocess.run([ANONANALYZE, "compare", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == EXIT_UNREADABLE, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("anonanalyze: error:") and missing in lines[0]
    assert res.stdout == ""


def test_two_paths_are_required(pair):
    _, _, _, _, _, pa, _ = pair
    res = CliRunner().invoke(cli.main, ["compare", pa])
    assert res.exit_code == 2
