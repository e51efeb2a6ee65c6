"""Golden reports: the analyzer's whole JSON report for a recording, kept in
tests/golden/NAME.json and compared key by key (floats to 1e-9 relative).

`pytest --update-golden` writes them instead of comparing: run it when a
rule changes on purpose, and review the diff (git diff tests/golden) as the
change's evidence. Nothing else writes them.
"""

import json
import math
import os
from pathlib import Path

from anonscope.analyzer import load, render, report

DIR = Path(__file__).parent / "golden"
#: not part of what the analyzer computes from the recording
VOLATILE = ("analyzer_version",)


def normalised(rep):
    """The report as JSON gives it, with the recording's path reduced to
    its name and the analyzer's version left out."""
    data = json.loads(json.dumps(rep, default=render._jsonable))
    data["source"] = os.path.basename(data["source"])
    for key in VOLATILE:
        data.pop(key, None)
    return data


def build(path):
    return normalised(report.build(load.load(str(path))))


def differences(want, got, path=""):
    """Every place where ``got`` differs from ``want``, as 'path: ...' lines."""
    if isinstance(want, dict) and isinstance(got, dict):
        for key in sorted(set(want) | set(got)):
            if key not in got:
                yield f"{path}/{key}: missing"
            elif key not in want:
                yield f"{path}/{key}: not in the golden report"
            else:
                yield from differences(want[key], got[key], f"{path}/{key}")
    elif isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        for i, (w, g) in enumerate(zip(want, got)):
            yield from differences(w, g, f"{path}/{i}")
    elif isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        if not math.isclose(want, got, rel_tol=1e-9, abs_tol=1e-12):
            yield f"{path}: {want!r} != {got!r}"
    elif want != got or type(want) is not type(got):
        yield f"{path}: {want!r:.200} != {got!r:.200}"


def check(name, data, update):
    """Compare ``data`` with the golden report ``name`` (or write it)."""
    path = DIR / f"{name}.json"
    if update:
        DIR.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return
    assert path.exists(), f"no golden report {path.name}: run pytest --update-golden and review it"
    diffs = list(differences(json.loads(path.read_text()), data))
    assert not diffs, f"{len(diffs)} difference(s) from {path.name}:\n" + "\n".join(diffs[:30])
