"""anoncollect's command line without root: help, --ebpf, one-line errors."""

import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from anonscope.collector import cli, probes, session
from sysfiles import traversable_by_others


def run(args, **kw):
    return CliRunner().invoke(cli.main, args, **kw)


def test_help_names_the_modes_and_exit_codes():
    r = run(["--help"])
    assert r.exit_code == 0
    for text in ("--duration", "-- CMD", "--ebpf", "--raw-pointers", "-p, --pid", "--comm", "--no-census",
                 "Exit status"):
        assert text in r.output


def test_ebpf_prints_the_program():
    r = run(["--ebpf", "--comm", "zygote64"])
    assert r.exit_code == 0, r.output
    assert "RAW_TRACEPOINT_PROBE(kmem_cache_alloc)" in r.output
    assert '#define COMM_FILTER "zygote64"' in r.output
    assert "u8 alloc_site(u64 ip)" in r.output


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to switch to nobody")
def test_ebpf_works_as_an_unprivileged_user(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "anoncollect")
    with traversable_by_others(os.path.dirname(os.path.abspath(__file__))):
        p = subprocess.run(["runuser", "-u", "nobody", "--", exe, "--ebpf"], capture_output=True, text=True,
                           cwd="/", timeout=60)
    assert p.returncode == 0, p.stderr
    assert "RAW_TRACEPOINT_PROBE(kmem_cache_free)" in p.stdout


def _one_line_error(r, code, text):
    assert r.exit_code == code, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anoncollect: error: "), r.output
    assert text in lines[0]
    assert "Traceback" not in r.output


def test_not_root_is_one_line(monkeypatch):
    monkeypatch.setattr(session.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(session, "import_bcc", lambda: object)
    _one_line_error(run(["--duration", "1"]), 3, "sudo")


def test_bcc_missing_is_one_line(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_bcc(name, *a, **kw):
        if name == "bcc":
            raise ImportError("No module named 'bcc'")
        return real_import(name, *a, **kw)
    monkeypatch.setattr(builtins, "__import__", no_bcc)
    _one_line_error(run(["--duration", "1"]), 3, "python3-bpfcc")


def test_no_btf_is_one_line(monkeypatch):
    monkeypatch.setattr(session, "import_bcc", lambda: object)
    monkeypatch.setattr(session.os, "geteuid", lambda: 0)
    def unreadable(*_a, **_kw):
        raise probes.BTFError("cannot read /sys/kernel/btf/vmlinux: No such file or directory")
    monkeypatch.setattr(probes.BTF, "from_file", unreadable)
    _one_line_error(run(["--duration", "1"]), 3, "BTF")


def test_no_tracefs_is_one_line(monkeypatch):
    monkeypatch.setattr(session, "import_bcc", lambda: object)
    monkeypatch.setattr(session.os, "geteuid", lambda: 0)
    monkeypatch.setattr(probes.tracefs, "ensure", lambda: (None, "tracefs is not mounted and could not be: test"))
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("host lacks: BTF, whose error comes first")
    _one_line_error(run(["--duration", "1"]), 3, "tracefs")


def test_bad_usage_exits_2():
    assert run(["--duration", "-1"]).exit_code == 2
    assert run(["--no-such-flag"]).exit_code == 2


def test_ring_pages_are_a_power_of_two():
    for mb in (1, 3, 16, 100):
        p = probes.ring_pages(mb)
        assert p & (p - 1) == 0 and p * os.sysconf("SC_PAGE_SIZE") <= mb * 1024 * 1024


def test_ringbuf_needs_5_8():
    assert probes.kernel_has_ringbuf("6.18.44-fc")
    assert probes.kernel_has_ringbuf("5.8.0")
    assert not probes.kernel_has_ringbuf("5.4.0-150-generic")


def test_unwritable_output_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setattr(session, "import_bcc", lambda: object)
    monkeypatch.setattr(session.os, "geteuid", lambda: 0)
    _one_line_error(run(["-o", str(tmp_path / "no" / "such" / "r.parquet"), "--duration", "1"]), 2,
                    "no directory")
