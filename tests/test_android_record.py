"""scripts/android/record and mark, against a stand-in for adb
(tests/fakeadb/): the "device" is this machine, so its /proc/kallsyms
(root) and /sys/kernel/slab are real, and the trace the fake perfetto
"records" is a fixture written as a device's trace with call sites in this
kernel's functions. The directory record leaves must import, with the
import command it prints, into the recording's report; no phone is
involved (there is none on these machines: docs/android.md)."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import hostcaps
import perfettogen
from test_perfetto_import import report

ROOT = Path(__file__).resolve().parent.parent
FAKE = Path(__file__).resolve().parent / "fakeadb"


def machine_sizes():
    """eventgen's object sizes with this machine's slab geometry
    (/sys/kernel/slab): the fake device is this machine, so record copies
    these, and the trace's allocations must have the sizes the import then
    looks for (anon_vma is 96 bytes on the x86_64 host, 88 in the 7.3 arm64
    guest)."""
    from eventgen import SIZES
    out = {}
    for obj, entry in SIZES.items():
        out[obj] = dict(entry)
        for key in ("object_size", "slab_size", "align", "objs_per_slab"):
            f = Path("/sys/kernel/slab") / obj / key
            if f.exists():
                out[obj][key] = int(f.read_text())
    return out


def marked_run(tmp_path):
    """A recording with the marks record makes (after-boot, apps-1, apps-2):
    the trace the fake perfetto hands back (its trace_marker lines do not
    reach it), with this machine's object sizes."""
    from eventgen import Gen
    g = Gen()
    g.process(1, "zygote")
    g.faults(1, 5)
    g.mark("after-boot")
    for n, child in ((1, 100), (2, 101)):
        g.fork(1, child, "app")
        g.faults(child, 3)
        g.mark(f"apps-{n}")
    g.exit(101)
    g.exit(100)
    return g.write(str(tmp_path / "marked.parquet"), object_sizes=machine_sizes())


@pytest.fixture
def device(tmp_path):
    if os.geteuid() != 0:
        pytest.skip(f"{hostcaps.HOST_LACKS}root (kallsyms shows zero addresses to other users)")
    d = tmp_path / "device"
    (d / "tracing").mkdir(parents=True)
    (d / "tracing" / "trace_marker").write_text("")
    src = marked_run(tmp_path)
    paths = perfettogen.convert(src, tmp_path / "prepared", kallsyms="/proc/kallsyms")
    env = dict(os.environ, PATH=f"{FAKE}:{os.environ['PATH']}", FAKE_DEVICE=str(d), FAKE_TRACE=paths["trace"],
               FAKE_PYTHON=sys.executable)
    return d, env, src


def test_record_leaves_what_the_import_needs(tmp_path, device):
    d, env, src = device
    out = tmp_path / "phone1"
    p = subprocess.run([str(ROOT / "scripts" / "android" / "record"), "--duration", "1", "--settle", "0",
                        "--launch", "com.example.one", "--launch", "com.example.two", str(out)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert (d / "tracing" / "trace_marker").read_text().splitlines() == \
        ["anonscope-mark: after-boot", "anonscope-mark: apps-1", "anonscope-mark: apps-2"]
    assert "com.example.two" in (d / "launched").read_text()
    assert (out / "kallsyms").read_text() == Path("/proc/kallsyms").read_text()
    for cache in ("anon_vma", "anon_vma_chain", "vm_area_struct"):
        assert (out / "slab" / cache / "object_size").read_text() == \
            Path(f"/sys/kernel/slab/{cache}/object_size").read_text()
    assert (out / "uname").read_text().split()[2] == os.uname().release
    # the command it prints imports the directory
    cmd = shlex.split(p.stderr.strip().splitlines()[-1])
    assert cmd[:3] == ["anonanalyze", "import", "perfetto"]
    imp = subprocess.run([sys.executable, "-m", "anonscope.analyzer.cli", *cmd[1:], "-q"],
                         capture_output=True, text=True, timeout=300)
    assert imp.returncode == 0, imp.stderr
    perfettogen.strip(src, tmp_path / "stripped.parquet")
    got, want = report(out / "run.parquet"), report(tmp_path / "stripped.parquet")
    assert got["models"]["eager"] == want["models"]["eager"] and got["processes"] == want["processes"]
    # slabinfo read after each mark and at the end: slab rows there
    assert sorted(os.listdir(out / "samples")) == sorted(
        f"{m}.{k}" for m in ("after-boot", "apps-1", "apps-2", "end") for k in ("slabinfo", "meminfo"))
    assert got["slabinfo"]["samples"] == 4
    meta = json.loads(subprocess.run([sys.executable, "-c", "import sys, pyarrow.parquet as pq; "
                                      "print(pq.read_metadata(sys.argv[1]).metadata[b'anonscope.perfetto'].decode())",
                                      str(out / "run.parquet")], capture_output=True, text=True).stdout)
    assert meta["slab_dir"] == str(out / "slab")


def test_mark_refuses_a_label_it_cannot_write(tmp_path, device):
    _, env, _ = device
    p = subprocess.run([str(ROOT / "scripts" / "android" / "mark"), "two words"], env=env,
                       capture_output=True, text=True)
    assert p.returncode == 2 and "letters, digits" in p.stderr
