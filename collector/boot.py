"""Recording from boot: two systemd units (docs/collector.md#boot).

- ``anonscope-boot.service`` runs ``anoncollect`` system-wide as early as it
  can run: once local file systems are mounted (it needs /usr, BTF and the
  output directory; it mounts tracefs itself), before the basic system is
  up (``DefaultDependencies=no``, ``Before=sysinit.target``: ordering only,
  nothing waits for it). Its output is committed segments, so it survives a
  crash or power loss; it stops on ``systemctl stop``, at shutdown, or at
  ``--max-mb``.
- ``anonscope-boot-mark.service`` marks ``after-boot`` once the system has
  reached its default target (``WantedBy=`` and ``After=default.target``);
  the collector needs ~20 s to compile, so the mark waits for it
  (``anoncollect mark --wait``) and keeps the moment the target was reached
  (at the start of the recording if that was before).
"""

import os
import shlex
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

UNIT_DIR = "/etc/systemd/system"
SERVICE = "anonscope-boot.service"
MARK = "anonscope-boot-mark.service"
DEFAULT_DIR = "/var/lib/anonscope"
MARK_WAIT_S = 600
DEFAULT_MAX_MB = 2048


class BootError(Exception):
    """One line for the user."""


def collector_command() -> List[str]:
    """How this installation runs anoncollect (the same Python, so a venv works)."""
    return [sys.executable, "-m", "anonscope.collector.cli"]


def units(out_dir: str, max_mb: float, command: Optional[List[str]] = None) -> Dict[str, str]:
    """{unit file name: text}."""
    cmd = command or collector_command()
    record = shlex.join(cmd + ["--max-mb", f"{max_mb:g}"])
    mark = shlex.join(cmd + ["mark", "--wait", str(MARK_WAIT_S), "after-boot"])
    return {
        SERVICE: f"""[Unit]
Description=anonscope: record the anon rmap from boot (anoncollect)
DefaultDependencies=no
RequiresMountsFor={out_dir}
After=local-fs.target
Before=sysinit.target shutdown.target
Conflicts=shutdown.target

[Service]
Type=simple
WorkingDirectory={out_dir}
ExecStart={record}
KillSignal=SIGINT
TimeoutStopSec=300

[Install]
WantedBy=sysinit.target
""",
        MARK: f"""[Unit]
Description=anonscope: mark after-boot in the boot recording
After=default.target {SERVICE}
Requisite={SERVICE}

[Service]
Type=oneshot
ExecStart={mark}

[Install]
WantedBy=default.target
""",
    }


def _systemd_running() -> bool:
    return os.path.isdir("/run/systemd/system")


def _systemctl(*args: str) -> None:
    if shutil.which("systemctl") is None:
        raise BootError("systemctl not found: this host does not run systemd")
    p = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if p.returncode != 0:
        why = p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"exit {p.returncode}"
        raise BootError(f"systemctl {' '.join(args)}: {why}")


def install(out_dir: str, max_mb: float, unit_dir: str = UNIT_DIR, enable: bool = True) -> List[str]:
    """Write the units (and enable them); the paths written."""
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, mode=0o755, exist_ok=True)
    os.makedirs(unit_dir, exist_ok=True)
    written = []
    for name, text in units(out_dir, max_mb).items():
        path = os.path.join(unit_dir, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        written.append(path)
    if enable:
        if _systemd_running():
            _systemctl("daemon-reload")
        _systemctl("enable", SERVICE, MARK)
    return written


def remove(unit_dir: str = UNIT_DIR, disable: bool = True) -> List[str]:
    """Disable and delete the units; the paths removed (recordings stay)."""
    paths = [os.path.join(unit_dir, n) for n in (SERVICE, MARK)]
    present = [p for p in paths if os.path.exists(p)]
    if not present:
        raise BootError(f"no anonscope boot units in {unit_dir}")
    if disable:
        _systemctl("disable", SERVICE, MARK)
    for p in present:
        os.unlink(p)
    if disable and _systemd_running():
        _systemctl("daemon-reload")
    return present
