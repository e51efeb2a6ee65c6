"""``anonanalyze fleet``: many recordings, one table (docs/fleet.md).

Each recording is analysed on its own by :func:`analyse_one` (the whole
``report`` of it, reduced to its headline) as a task of a dask.distributed
cluster: an in-process :class:`distributed.LocalCluster` by default, or the
scheduler ``--scheduler`` names. :func:`aggregate` then sums the headlines
(``totals``: a design's allocations are the sum of the single reports'),
gives the distribution of each design's saved % over the recordings and the
totals per workload label. A recording that cannot be analysed is listed
with its one-line error and left out of the sums.
"""

import os
import shutil
import tempfile
import time

import fsspec
import numpy as np

from .errors import EXIT_INTERNAL, EXIT_UNREADABLE, AnalyzerError

#: the objects whose totals the fleet sums (those every design models)
OBJECTS = ("anon_vma", "anon_vma_chain")
#: where a design's allocations are compared with eager's
SAVING_DESIGNS = ("lazy", "nofork", "nofork_clone")


# ------------------------------------------------------------- recordings

def expand(paths):
    """The recordings ``paths`` name, in order, without repeats: a file; a
    directory (every ``*.parquet`` file and ``*.partial`` recording under
    it); a glob. Paths may be fsspec URLs (``s3://...`` with s3fs
    installed); local paths need nothing more."""
    out = []
    for path in paths:
        fs, root = fsspec.core.url_to_fs(path)
        names = fs.glob(root) if any(c in root for c in "*?[") else [root]
        for name in sorted(names):
            out.extend(_recordings_in(fs, name) if _is_dir(fs, name) else [_url(fs, name)])
    return list(dict.fromkeys(out))


def _is_dir(fs, name):
    """A directory that is not itself a recording (segments of a run that
    was never joined, ``NAME.partial/``)."""
    return fs.isdir(name) and not name.rstrip("/").endswith(".partial")


def _recordings_in(fs, top):
    """``*.parquet`` files and ``*.partial`` directories under ``top``."""
    found = []
    for root, dirs, files in fs.walk(top):
        found += [f"{root}/{d}" for d in dirs if d.endswith(".partial")]
        dirs[:] = [d for d in dirs if not d.endswith(".partial") and not d.startswith(".")]
        found += [f"{root}/{f}" for f in files if f.endswith(".parquet") and not f.startswith(".")]
    return [_url(fs, n) for n in sorted(found)]


def _url(fs, name):
    """A path a worker can open: local as it is, else with its protocol."""
    return name if _local(fs) else fs.unstrip_protocol(name)


def _local(fs):
    """Whether ``fs`` is the local filesystem."""
    return "file" in ((fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol)


# -------------------------------------------------------------- one recording

def analyse_one(path, label_by="host"):
    """The headline of one recording (a dask task: it runs on a worker):
    ``{"path", "host", "kernel", "arch", "backend", "duration_s", "lost",
    "label", "designs": {design: {object: {...}, "saved_pct"}}}``, or
    ``{"path", "error", "exit_code"}`` when it cannot be analysed."""
    from . import load
    from . import report as report_mod
    t0 = time.monotonic()
    try:
        with _local_copy(path) as local:
            rec = load.load(local)
            rep = report_mod.build(rec)
    except AnalyzerError as exc:
        return {"path": path, "error": str(exc).replace("\n", " "), "exit_code": exc.code}
    except (OSError, ValueError) as exc:
        return {"path": path, "error": f"{path}: {exc}", "exit_code": EXIT_UNREADABLE}
    except Exception as exc:  # noqa: BLE001  one line per recording, never a traceback
        return {"path": path, "error": f"internal error ({type(exc).__name__}: {exc})", "exit_code": EXIT_INTERNAL}
    out = headline(rep, rec.meta)
    out.update(path=path, label=label_of(rec.meta, label_by), seconds=round(time.monotonic() - t0, 3))
    return out


class _local_copy:
    """A local path for ``path``: itself when local, else a temporary copy
    (a recording on an object store is read whole: Parquet needs seeks)."""

    def __init__(self, path):
        self.path, self.tmp = path, None

    def __enter__(self):
        fs, name = fsspec.core.url_to_fs(self.path)
        if _local(fs):
            return name
        self.tmp = tempfile.mkdtemp(prefix="anonanalyze-fleet-")
        local = os.path.join(self.tmp, os.path.basename(name.rstrip("/")))
        fs.get(name, local, recursive=fs.isdir(name))
        return local

    def __exit__(self, *exc):
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def headline(rep, meta):
    """What the fleet keeps of one report: the run's identity and, per
    design and object, allocations and live at the end (with their ranges)
    and the saved %."""
    run = rep["run"]
    end = next((s for s in rep["snapshots"] if s["label"] == "end"), None)
    designs = {}
    for name, model in rep["models"].items():
        d = designs[name] = {"saved_pct": model.get("saved_pct"), "saved_pct_range": model.get("saved_pct_range")}
        for obj in OBJECTS:
            live = (end or {}).get("designs", {}).get(name, {}).get(obj, {})
            d[obj] = {"allocated": model[obj]["allocated"], "allocated_range": model[obj]["allocated_range"],
                      "live_at_end": live.get("live"), "live_at_end_range": live.get("live_range")}
    return {"host": meta.get("hostname"), "kernel": run["kernel_release"], "arch": run["arch"],
            "backend": run["backend"], "duration_s": run["duration_s"], "lost": run["lost_events"],
            "designs": designs}


def label_of(meta, label_by):
    """The workload label of a recording: ``host`` (metadata ``hostname``),
    ``comm`` (the recorded command's name, the ``--comm`` filter, else
    ``system`` or ``pid``), or the value of a metadata key (dots go into
    nested objects: ``target.mode``)."""
    if label_by == "host":
        return meta.get("hostname") or "unknown"
    if label_by == "comm":
        t = meta.get("target") or {}
        cmd = t.get("command")
        if cmd:
            return os.path.basename(cmd[0] if isinstance(cmd, list) else str(cmd).split()[0])
        return t.get("comm") or t.get("mode") or "unknown"
    value = meta
    for part in label_by.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "unknown" if value is None else str(value)


# ------------------------------------------------------------------ the fleet

def aggregate(results, engine):
    """The fleet report of the single recordings' ``results``."""
    ok = [r for r in results if "error" not in r]
    return {"report_format": "anonscope-fleet/1", "engine": engine,
            "recordings": results, "analysed": len(ok), "failed": len(results) - len(ok),
            "totals": totals(ok), "distributions": distributions(ok), "by_label": by_label(ok)}


def totals(ok):
    """{design: {object: sums}}: allocated and live at the end, and the sums
    of their ranges' ends (null when any recording's end is null)."""
    out = {}
    for r in ok:
        for design, d in r["designs"].items():
            for obj in OBJECTS:
                t = out.setdefault(design, {}).setdefault(obj, None)
                out[design][obj] = _add(t, d[obj])
    return out


def _add(total, one):
    """``total`` (None: nothing yet) plus one recording's object entry."""
    if total is None:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in one.items()}
    out = {}
    for k, v in one.items():
        t = total[k]
        if isinstance(v, list):
            out[k] = [None if a is None or b is None else a + b for a, b in zip(t, v)]
        else:
            out[k] = None if t is None or v is None else t + v
    return out


def distributions(ok):
    """{design: {object: {"n", "median", "p10", "p90"}}} of the saved % over
    the recordings that have one."""
    out = {}
    for design in SAVING_DESIGNS:
        for obj in OBJECTS:
            vals = [r["designs"][design]["saved_pct"][obj] for r in ok
                    if design in r["designs"] and (r["designs"][design]["saved_pct"] or {}).get(obj) is not None]
            out.setdefault(design, {})[obj] = _spread(vals)
    return out


def _spread(vals):
    """n, median, p10 and p90 (linear interpolation) of ``vals``."""
    if not vals:
        return {"n": 0, "median": None, "p10": None, "p90": None}
    p10, med, p90 = np.percentile(np.asarray(vals, dtype=float), [10, 50, 90])
    return {"n": len(vals), "median": round(float(med), 1), "p10": round(float(p10), 1),
            "p90": round(float(p90), 1)}


def by_label(ok):
    """{label: {"recordings", "totals"}}: the totals of each label's
    recordings."""
    groups = {}
    for r in ok:
        groups.setdefault(r["label"], []).append(r)
    return {label: {"recordings": len(rs), "totals": totals(rs)} for label, rs in sorted(groups.items())}
