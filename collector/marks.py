"""Marks: named points in a recording, where the report takes a snapshot of
live memory per design (docs/collector.md#marks).

- ``kill -USR1 <anoncollect pid>``: a mark labelled ``mark-1``, ``mark-2``, ...
  at the moment the signal arrives;
- ``anoncollect mark LABEL``: :func:`send` leaves the label (and the
  CLOCK_MONOTONIC time it was asked for) in the collector's mark directory
  under :data:`RUN_DIR`, then sends SIGUSR2; the collector reads the
  directory and writes one mark row per file.

While recording, the collector announces itself in ``RUN_DIR`` (its pid,
start time, output and mark directory: :func:`publish`), so that
``anoncollect mark`` finds it; the entry goes when the run ends. A
collector killed by SIGKILL leaves its entry behind; the start time tells
it from a later process that reuses its pid.
"""

import contextlib
import json
import os
import shutil
import signal
import sys
import time
from typing import List, Optional

from . import proctree

RUN_DIR = os.environ.get("ANONSCOPE_RUN_DIR", "/run/anonscope")
UNNAMED = signal.SIGUSR1
NAMED = signal.SIGUSR2
MAX_LABEL = 64


class MarkError(Exception):
    """A mark that cannot be made: one line for the user."""


def check_label(label: str) -> str:
    """``label`` when it is a valid mark label (1 to MAX_LABEL printable
    characters), else MarkError."""
    if not label or len(label) > MAX_LABEL or not label.isprintable():
        raise MarkError(f"a mark label is 1 to {MAX_LABEL} printable characters, not {label!r}")
    return label


def _entry(pid: int) -> str:
    return os.path.join(RUN_DIR, f"anoncollect-{pid}.json")


def _mark_dir(pid: int) -> str:
    return os.path.join(RUN_DIR, f"anoncollect-{pid}.marks")


class Marks:
    """Mark requests, taken by signal handlers and turned into rows by the
    recording loop (:meth:`rows`). Outside the recording window (``t0_ns``
    None) a request is refused with a message on stderr, not queued."""

    def __init__(self):
        self.t0_ns: Optional[int] = None
        self.pending: List[tuple] = []   # (signal, CLOCK_MONOTONIC ns)
        self.unnamed = 0

    def install(self) -> "Marks":
        """Take mark requests from SIGUSR1 (unnamed) and SIGUSR2 (named) from
        now on; returns itself."""
        signal.signal(UNNAMED, self._handler)
        signal.signal(NAMED, self._handler)
        return self

    def _handler(self, signum, _frame):
        if self.t0_ns is None:
            print("anoncollect: mark ignored: not recording", file=sys.stderr)
            return
        self.pending.append((signum, time.monotonic_ns()))

    def rows(self) -> List[dict]:
        """Mark rows for every request since the last call."""
        pending, self.pending = self.pending, []
        out = []
        for signum, ns in pending:
            if signum == UNNAMED:
                self.unnamed += 1
                out.append(self._row(f"mark-{self.unnamed}", ns))
            else:
                out.extend(self._named())
        return sorted(out, key=lambda r: r["ts_ns"])

    def _row(self, label: str, ns: int) -> dict:
        return {"ts_ns": max(ns - self.t0_ns, 0), "event": "mark", "cpu": -1, "mark_label": label}

    def _named(self) -> List[dict]:
        d = _mark_dir(os.getpid())
        out = []
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if not name.endswith(".json"):
                continue
            path = os.path.join(d, name)
            try:
                with open(path) as f:
                    req = json.load(f)
                out.append(self._row(check_label(str(req["label"])), int(req["monotonic_ns"])))
            except (OSError, ValueError, KeyError, MarkError):
                continue   # a request torn by a crash of the sender: `send` reported it
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        return out


def publish(output: str) -> None:
    """Announce this collector in RUN_DIR (``anoncollect mark`` reads it)."""
    pid = os.getpid()
    os.makedirs(_mark_dir(pid), mode=0o700, exist_ok=True)
    tmp = _entry(pid) + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"pid": pid, "start_ticks": proctree.start_ticks(pid), "output": os.path.abspath(output),
                   "marks": _mark_dir(pid)}, f)
    os.replace(tmp, _entry(pid))


def withdraw() -> None:
    """Remove this collector's RUN_DIR entry and its mark directory (undo
    :func:`publish`)."""
    pid = os.getpid()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_entry(pid))
    shutil.rmtree(_mark_dir(pid), ignore_errors=True)


def running() -> List[dict]:
    """The collectors recording now, by their RUN_DIR entries. Stale
    entries (of a collector that died without withdrawing) are skipped:
    their pid is gone or now names a process started at another time."""
    out = []
    for name in sorted(os.listdir(RUN_DIR)) if os.path.isdir(RUN_DIR) else []:
        if not (name.startswith("anoncollect-") and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(RUN_DIR, name)) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            continue
        if _alive(entry):
            out.append(entry)
    return out


def _alive(entry: dict) -> bool:
    """Whether the collector of a RUN_DIR entry still runs: its pid names a
    process, not a zombie, started when the entry says."""
    try:
        fields = proctree.stat_fields(int(entry["pid"]))
        started = entry["start_ticks"]
    except (KeyError, TypeError, ValueError):
        return False
    return (fields is not None and len(fields) > 19 and fields[0] not in ("Z", "X")
            and started is not None and int(fields[19]) == started)


def send(label: str, pid: Optional[int] = None, wait_s: float = 0.0) -> dict:
    """Ask a running collector for a mark named ``label`` at this moment;
    its entry. ``wait_s``: wait that long for a collector to start
    recording (the mark keeps this moment: one asked for before recording
    started is at the start of the recording)."""
    check_label(label)
    ns = time.monotonic_ns()
    deadline = time.monotonic() + wait_s
    while True:
        live = running()
        if pid is not None:
            live = [e for e in live if int(e["pid"]) == pid]
        if live or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    if not live:
        raise MarkError("no anoncollect is recording" + (f" as pid {pid}" if pid else "")
                        + f" (none announced in {RUN_DIR})")
    if len(live) > 1:
        raise MarkError("several anoncollect runs are recording (pids "
                        + ", ".join(str(e["pid"]) for e in live) + "): choose one with --pid")
    entry = live[0]
    path = os.path.join(entry["marks"], f"{ns:020d}-{os.getpid()}.json")
    try:
        with open(path + ".tmp", "w") as f:
            json.dump({"label": label, "monotonic_ns": ns}, f)
        os.replace(path + ".tmp", path)
        os.kill(int(entry["pid"]), NAMED)
    except PermissionError as e:
        raise MarkError(f"{e.filename or 'the collector'}: permission denied (run as root, as the collector)") from e
    except OSError as e:
        raise MarkError(f"{e.filename or 'the collector'}: {e.strerror}") from e
    return entry
