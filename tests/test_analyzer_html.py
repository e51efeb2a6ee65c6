"""The HTML report (analyzer/htmlreport.py, docs/html.md): without a browser,
the page of every fixture parses, has one SVG per plot with drawn paths,
the run's metadata, every design, no URL outside the file, and the numbers
of the report; in a real browser (headless Chromium, installed when
missing and we are root), it renders: a screenshot that is not blank and a
DOM that still holds the plots."""

import json
import os
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from anonscope.analyzer import cli, htmlreport, load, render, report
from htmlpage import outside_refs, parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = sorted(f for f in os.listdir(os.path.join(ROOT, "fixtures")) if f.endswith(".parquet"))
GOLDEN = os.path.join(ROOT, "tests", "golden")


def cells(table):
    """The rows of a table (render.py's form) as the page's cell texts."""
    return [[str(c) for c in row] for row in table]


def expected_plots(r):
    """How many plots a report's page draws (docs/html.md)."""
    n = 4 if r.get("snapshots") else 1            # live KB: anon_vma + AVC, then each object
    n += 1                                        # models
    n += 1 if r["processes"].get("by_process") else 0
    n += 1                                        # allocations by path
    n += 1 if r.get("walks", {}).get("available") else 0
    n += 1 if r.get("locks", {}).get("status") not in (None, "not available", "not recorded", "no waits") else 0
    return n


@pytest.fixture(scope="module")
def pages():
    """Per fixture: (report, metadata probes, HTML)."""
    out = {}
    for name in FIXTURES:
        rec = load.load(os.path.join(ROOT, "fixtures", name))
        r = report.build(rec)
        out[name] = (r, rec.meta.get("probes"), htmlreport.render_html(r, probes=rec.meta.get("probes")))
    return out


def check_page(r, text, probes=None):
    """Everything (a) asks of one page."""
    page = parse(text)
    n = expected_plots(r)
    assert len(page.svgs) == n == page.figures, (len(page.svgs), n, page.figures)
    assert all(paths > 0 for paths in page.svgs), page.svgs
    body = " ".join(" ".join(page.text).split())
    run = r["run"]
    for value in (run["kernel_release"], run["arch"], run["backend"], f"{run['duration_s']:.3f} s"):
        assert str(value) in body, value
    for design in htmlreport.DESIGNS:
        assert design in body and render.MODEL_TITLE[design] in body, design
    assert outside_refs(page) == []                   # only references inside the page
    assert "<script" not in text and "<link" not in text
    assert len(page.ids) == len(set(page.ids)), "ids repeat across the inlined SVGs"
    for p in probes or []:
        assert p["name"] in body and p["reason"] in body
    return page, body


@pytest.mark.parametrize("name", FIXTURES)
def test_html_page_of_fixture(pages, name):
    r, probes, text = pages[name]
    page, body = check_page(r, text, probes)
    # the cover letter's table: the cells render gives for the same snapshot
    snap = render.pick_snapshot(r)
    covers = page.tables_of("cover")[:3]
    for design, rows in zip(("lazy", "nofork", "nofork_clone"), covers):
        assert rows == cells(render.cover_table(snap, design)), design
    assert len(covers) == 3
    # against the machine: the shares of render's line
    den = snap.get("denominators")
    if den:
        (machine,) = page.tables_of("machine")
        line = render.machine_line(snap)
        for row, design in zip(machine[1:], htmlreport.DESIGNS):
            p = den["designs"][design]["rmap_pct"]
            assert row[0] == design and row[1] == render.kb(den["designs"][design]["rmap_bytes"])
            assert row[2:5] == [render._share(p["Slab"]), render._share(p["SUnreclaim"]), render._share(p["MemTotal"])]
            assert f"{design} {row[1]} KB = {row[2]} of Slab, {row[3]} of SUnreclaim, {row[4]} of MemTotal" in line
    # the models' table is render's
    models = [t for c, t in page.tables if t and t[0][:2] == ["model", "anon_vma"]]
    assert models == [[[str(c) for c in row] for row in render.models_table(r["models"])]]
    # every fidelity and rule the report holds (snapshots: the chosen one)
    fids = page.tables_of("fidelity")[0]
    want = {(f, s) for _, f, s in htmlreport.fidelity_rows({k: v for k, v in r.items() if k != "snapshots"})}
    assert want <= {(row[1], row[2]) for row in fids[1:]}
    assert ("exact", "docs/models.md#eager") in want
    # the walks: not recorded on these tracepoint recordings
    assert "not recorded" in body and r["walks"]["note"] in body
    # lost events by kind
    for kind in r["run"]["lost_by_event"] or {}:
        assert kind in body


def test_html_page_with_walks_and_locks():
    """A report with every section (the scenario's golden report): walk and lock plots and tables."""
    with open(os.path.join(GOLDEN, "scenario-every_section.json")) as fh:
        r = json.load(fh)
    text = htmlreport.render_html(r)
    page, body = check_page(r, text)
    assert r["walks"]["available"] and r["locks"]["status"] == "recorded"
    walks = [t for c, t in page.tables if t and t[0][:2] == ["design", "walks"]]
    assert walks == [[[str(c) for c in row] for row in render._walks_md_table(r["walks"])]]
    locks = [t for c, t in page.tables if t and t[0][0] == "lock taker"]
    assert locks == [[[str(c) for c in row] for row in render._lock_takers_table(r["locks"])]]


def test_html_escapes_text():
    with open(os.path.join(GOLDEN, "scenario-chain.json")) as fh:
        r = json.load(fh)
    r["source"] = "<b>x&y</b>.parquet"
    r["warnings"].append("<script>alert(1)</script>")
    text = htmlreport.render_html(r)
    assert "<script" not in text and "<b>x" not in text
    assert "&lt;script&gt;" in text and "&lt;b&gt;x&amp;y&lt;/b&gt;" in text


def test_html_at_chooses_the_snapshot(pages):
    r, _, _ = pages["system-anonshape.parquet"]
    text = htmlreport.render_html(r, at="start")
    assert 'data-label="start"' in text
    with pytest.raises(render.UnknownSnapshot):
        htmlreport.render_html(r, at="no-such-mark")


def test_cli_html(tmp_path):
    fixture = os.path.join(ROOT, "fixtures", "anonshape-base-f6.parquet")
    out = tmp_path / "r.html"
    res = CliRunner().invoke(cli.main, ["report", fixture, "-o", str(out)])   # format from the suffix
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<svg" in text
    res = CliRunner().invoke(cli.main, ["report", fixture, "--format", "html"])   # stdout
    assert res.exit_code == 0 and res.output.startswith("<!DOCTYPE html>")


# -------------------------------------------------------------- in a browser

@pytest.fixture(scope="session")
def chromium():
    """The chromium binary: installed with apt-get (as root) when missing;
    skip with the reason when it cannot be."""
    path = shutil.which("chromium")
    if path:
        return path
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and we are not root to install it (apt-get install chromium)")
    try:
        res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium cannot be installed: {exc}")
    path = shutil.which("chromium")
    if res.returncode or not path:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(f"chromium cannot be installed: apt-get exited {res.returncode}: {tail[0]}")
    return path


def _browser(binary, tmp_path, *args):
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=300)


def test_html_report_renders_in_chromium(chromium, pages, tmp_path):
    """Browser test: headless Chromium draws the page (screenshot not blank)
    and its DOM keeps every plot."""
    r, _, text = pages["system-anonshape.parquet"]
    page = tmp_path / "report.html"
    page.write_text(text, encoding="utf-8")
    shot = tmp_path / "shot.png"
    # a window taller than the page: the screenshot holds all of it
    res = _browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,16000", page.as_uri())
    assert shot.exists(), f"no screenshot (exit {res.returncode}): {res.stderr[-2000:]}"
    with open(shot, "rb") as fh:
        head = fh.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (1280, 16000)
    Image = pytest.importorskip("PIL.Image", reason="Pillow (a matplotlib dependency) is missing")
    with Image.open(shot) as im:
        rgb = im.convert("RGB").resize((128, 1600))
    assert rgb.getcolors(1) is None, "the screenshot has one colour"
    grey = rgb.convert("L")
    inked = [y for y in range(1600) if grey.crop((0, y, 128, y + 1)).getextrema()[0] < 200]
    assert inked and inked[-1] < 1590, "the page is longer than the screenshot"
    # the plots' coloured lines (saturated pixels: text and tables are grey)
    # are drawn all the way down, not only in the first screen
    hsv = rgb.convert("HSV")
    coloured = [y for y in range(1600) if hsv.crop((0, y, 128, y + 1)).getextrema()[1][1] > 150]
    assert coloured and coloured[-1] > inked[-1] // 2, (coloured[-1:], inked[-1])
    dom = _browser(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    got = parse(dom.stdout)
    assert len(got.svgs) == expected_plots(r) and all(n > 0 for n in got.svgs)
    assert r["run"]["kernel_release"] in " ".join(got.text)
    # the page has no script, so any console line at all (Chromium logs every
    # level, console.error included, as INFO:CONSOLE) is a fault
    errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not errors, errors
