"""Recording from boot (collector/boot.py, docs/collector.md#boot): the
units `anoncollect boot install` writes are valid for systemd
(systemd-analyze verify), name this installation's collector, and go
again with `boot remove`. tests/test_integration_snapshots.py runs their
commands."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

import hostcaps
from anonscope.collector import boot, cli
from sysfiles import exec_start


def installed(tmp_path, *extra):
    res = CliRunner().invoke(cli.boot, ["install", "-o", str(tmp_path / "rec"), "--unit-dir",
                                        str(tmp_path / "units"), "--no-enable", *extra])
    assert res.exit_code == 0, res.output
    return {p.name: p.read_text() for p in (tmp_path / "units").iterdir()}


def test_units_name_this_collector(tmp_path):
    u = installed(tmp_path, "--max-mb", "64")
    assert set(u) == {boot.SERVICE, boot.MARK}
    rec, mark = exec_start(u[boot.SERVICE]), exec_start(u[boot.MARK])
    assert rec == [sys.executable, "-m", "anonscope.collector.cli", "--max-mb", "64"]
    assert mark == [sys.executable, "-m", "anonscope.collector.cli", "mark", "--wait",
                    str(boot.MARK_WAIT_S), "after-boot"]
    assert f"WorkingDirectory={tmp_path / 'rec'}" in u[boot.SERVICE]
    assert (tmp_path / "rec").is_dir()
    # as early as it can run, stopped cleanly at shutdown; the mark after the default target
    assert "DefaultDependencies=no" in u[boot.SERVICE] and "KillSignal=SIGINT" in u[boot.SERVICE]
    assert "After=default.target" in u[boot.MARK] and "WantedBy=default.target" in u[boot.MARK]


@pytest.mark.skipif(hostcaps.systemd_analyze() is not None, reason=str(hostcaps.systemd_analyze()))
def test_systemd_analyze_verify(tmp_path):
    installed(tmp_path)
    units = sorted(str(p) for p in (tmp_path / "units").iterdir())
    p = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # and the check can fail: a unit whose command is not an absolute path
    bad = tmp_path / "units" / boot.SERVICE
    bad.write_text(bad.read_text().replace(f"ExecStart={sys.executable}", "ExecStart=nosuch-binary"))
    p = subprocess.run(["systemd-analyze", "verify", str(bad)], capture_output=True, text=True)
    assert p.returncode != 0


def test_remove(tmp_path):
    installed(tmp_path)
    r = CliRunner()
    res = r.invoke(cli.boot, ["remove", "--unit-dir", str(tmp_path / "units"), "--no-disable"])
    assert res.exit_code == 0 and not list((tmp_path / "units").iterdir())
    res = r.invoke(cli.boot, ["remove", "--unit-dir", str(tmp_path / "units"), "--no-disable"])
    assert res.exit_code == 2
    assert res.output.strip() == f"anoncollect boot: error: no anonscope boot units in {tmp_path / 'units'}"
