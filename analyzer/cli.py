"""anonanalyze: turn an anoncollect recording into a report."""

import os
import sys

# Before numpy is imported: numpy asks the kernel for transparent huge pages
# on every large array (madvise), and where THP defrag is "madvise" (the
# Debian/Ubuntu default) each fresh array then waits for compaction. The
# report allocates many short-lived arrays of ten million entries; without
# the hint a 10M-event report spends ~0.7 s less in the kernel
# (docs/performance.md, "Analyzer (P3)"). Set it to 1 to get the hint back.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

import click  # noqa: E402

from . import render
from .errors import (
    EXIT_INTERNAL,
    EXIT_NEWER_SCHEMA,
    EXIT_NOT_A_RUN,
    EXIT_OUTPUT,
    EXIT_SCHEDULER,
    EXIT_UNREADABLE,
    AnalyzerError,
)

EPILOG = f"""\b
Exit codes:
  0  report written
  {EXIT_INTERNAL}  internal error in anonanalyze (please report it)
  2  bad command line
  {EXIT_UNREADABLE}  the file is missing, empty, truncated or not Parquet
  {EXIT_NOT_A_RUN}  Parquet, but not an anonscope recording (columns, metadata, values)
  {EXIT_NEWER_SCHEMA}  recorded with a newer schema version than this anonanalyze reads
  {EXIT_OUTPUT}  the -o file cannot be written
  {EXIT_SCHEDULER}  fleet: the --scheduler cannot be reached
Errors are one line on stderr: "anonanalyze: error: ...".
Models and the fidelity of every number: docs/models.md.
"""


IMPORT_EPILOG = f"""\b
Exit codes:
  0  recording written
  {EXIT_INTERNAL}  internal error in anonanalyze (please report it)
  2  bad command line
  {EXIT_UNREADABLE}  the trace or the kallsyms file is missing, unreadable, truncated or not
     what it should be (a Perfetto trace; a kallsyms with addresses)
  {EXIT_NOT_A_RUN}  the trace lacks what the import needs (events, object sizes) or the
     kallsyms lacks the anon rmap's functions
  {EXIT_OUTPUT}  the -o file cannot be written
Errors are one line on stderr: "anonanalyze: error: ...". Nothing is left
at -o after an error. What a trace must hold: docs/android.md.
"""


def keep_freed_memory():
    """glibc only: serve large arrays from the heap and never give freed
    memory back, so the next array reuses pages already mapped instead of
    faulting fresh zeroed ones in (mallopt M_MMAP_MAX=0, M_TRIM_THRESHOLD).
    The report allocates and frees many arrays of ten million entries: this
    halves its system time on a 10M-event recording with the same peak RSS
    (docs/performance.md, "Analyzer (P3)"). A no-op elsewhere."""
    import ctypes
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
        return bool(libc.mallopt(M_MMAP_MAX, 0)) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
    except (OSError, AttributeError):
        return False


def fail(message, code):
    """Print ``message`` as one ``anonanalyze: error:`` line on stderr and exit
    with ``code``."""
    click.echo(f"anonanalyze: error: {message}", err=True)
    sys.exit(code)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Analyze anonscope recordings: anon_vma / anon_vma_chain cost today
    (eager) and under ANON_VMA_LAZY and leaf/no-fork designs."""


@main.command(epilog=EPILOG)
@click.argument("path", type=click.Path(dir_okay=True, readable=False, path_type=str))  # load() says why not
@click.option("--format", "fmt", type=click.Choice(render.FORMATS), default=None,
              help="output format: text, markdown, json, csv (the snapshots' live memory per "
                   "design as a time series) or html (one self-contained page with plots, docs/html.md); "
                   "default: from the -o suffix (.md, .json, .csv, .html), else text")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="write the report to FILE instead of stdout")
@click.option("--at", "at", metavar="LABEL", default=None,
              help="the snapshot of the cover letter's table (text, markdown, html): a mark's label, "
                   "start, end or slab-N; default: the last mark, else the end")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar (drawn only when stderr is a terminal)")
def report(path, fmt, output, at, quiet):
    """Report on the recording PATH (a .parquet file written by anoncollect)."""
    keep_freed_memory()
    if fmt is None:
        fmt = render.SUFFIX_FORMAT.get(os.path.splitext(output or "")[1].lower(), "text")
    from . import progress
    try:
        with progress.bar(_steps(), "anonanalyze report", "step", progress.wanted(quiet)) as b:
            rec, data = _built(path, b)
        text = render.render(data, fmt, at, probes=rec.meta.get("probes"))
    except render.UnknownSnapshot as exc:
        fail(f"--at: {exc}", 2)
    except Exception as exc:
        _fail_one_line(exc, path, "")
    _write(text, output)


@main.command(epilog=EPILOG)
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(("text", "markdown", "json", "html")), default=None,
              help="output format (html: one self-contained page with a plot); default: from the -o "
                   "suffix (.md, .json, .html), else text")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="write the fleet report to FILE instead of stdout")
@click.option("--label-by", "label_by", default="host", show_default=True, metavar="comm|host|KEY",
              help="workload label of each recording: its host, its command (comm), or a metadata key "
                   "(dots for nested keys: target.mode)")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT",
              help="run the analyses on this dask scheduler's workers (anonscope installed there); "
                   "default: an in-process LocalCluster, one worker per core")
@click.option("-q", "--quiet", is_flag=True, help="no progress lines on stderr")
def fleet(paths, fmt, output, label_by, scheduler, quiet):
    """Analyse every recording PATHS name (files, directories of recordings,
    globs, fsspec URLs) and print one table: per recording the headline per
    design, fleet totals (the sums of the single reports), the spread of
    each design's saved % and the totals per label (docs/fleet.md). A
    recording that fails is listed with its error; the others still count."""
    from . import cluster, fleetrender
    from . import fleet as fleet_mod
    fmt = fmt or {".md": "markdown", ".json": "json"}.get(os.path.splitext(output or "")[1].lower(), "text")
    try:
        found = fleet_mod.expand(paths)
        if not found:
            fail(f"no recording matches {' '.join(paths)}", EXIT_UNREADABLE)
        results, engine = cluster.run(found, label_by, scheduler, progress=not quiet)
    except AnalyzerError as exc:
        fail(str(exc).replace("\n", " "), exc.code)
    except OSError as exc:
        fail(f"{exc}", EXIT_UNREADABLE)
    data = fleet_mod.aggregate(results, engine)
    _write(fleetrender.render(data, fmt), output)
    if not data["analysed"]:
        sys.exit(results[0]["exit_code"])


@main.group("import", epilog=IMPORT_EPILOG)
def import_():
    """Make a recording from another tool's trace (docs/android.md)."""


@import_.command("perfetto", epilog=IMPORT_EPILOG)
@click.argument("trace", type=click.Path(dir_okay=False, readable=False, path_type=str))
@click.option("--kallsyms", "kallsyms_path", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="/proc/kallsyms captured as root on the traced boot (call sites are raw addresses)")
@click.option("--slab-dir", "slab_dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="a copy of /sys/kernel/slab/{anon_vma,anon_vma_chain,vm_area_struct} from that boot: "
                   "object sizes and slab geometry (without it, sizes come from the trace)")
@click.option("--arch", default=None, metavar="UNAME_M",
              help="the device's uname -m, when the trace has no SystemInfo packet")
@click.option("--census", "census", default=None, type=click.Path(dir_okay=False, path_type=str),
              help="an anoncollect recording with a census, made on the device (bcc in a chroot) while the "
                   "trace recorded: its census rows join the import")
@click.option("--samples", "samples_dir", default=None, type=click.Path(file_okay=False, path_type=str),
              help="LABEL.slabinfo and LABEL.meminfo read just after each mark (scripts/android/record): slab "
                   "rows at that mark (LABEL 'end': the trace's end)")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="the recording to write (.parquet)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar (drawn only when stderr is a terminal)")
def import_perfetto(trace, kallsyms_path, slab_dir, arch, census, samples_dir, output, quiet):
    """Read the Perfetto TRACE (kmem, sched, task and raw_syscalls ftrace
    events) and write a recording in anoncollect's schema, backend
    perfetto, that every report reads."""
    from anonscope.collector.perfetto import importer

    from . import progress
    opts = importer.Options(trace, kallsyms_path, output, slab_dir, arch, ["anonanalyze", *sys.argv[1:]], census,
                            samples_dir)
    try:
        with progress.bar(None, "anonanalyze import", "packet", progress.wanted(quiet)) as b:
            done = importer.run(opts, b.update)
    except importer.PerfettoImportError as exc:
        fail(str(exc), EXIT_UNREADABLE if exc.unreadable else EXIT_NOT_A_RUN)
    except importer.trace.TraceError as exc:
        fail(str(exc), EXIT_UNREADABLE)
    except OSError as exc:
        fail(f"{exc.filename or output}: {exc.strerror}", EXIT_OUTPUT)
    except Exception as exc:
        _fail_one_line(exc, trace, "", what="trace")
    if not quiet:
        click.echo(f"anonanalyze import: {done['path']}: {done['rows']} rows from {done['packets']} packets",
                   err=True)


@main.command("compare", epilog=EPILOG)
@click.argument("path_a", metavar="A", type=click.Path(dir_okay=True, readable=False, path_type=str))
@click.argument("path_b", metavar="B", type=click.Path(dir_okay=True, readable=False, path_type=str))
@click.option("--format", "fmt", type=click.Choice(("text", "markdown", "json", "html")), default=None,
              help="output format (html: one self-contained page with a plot); default: from the -o "
                   "suffix (.md, .json, .html), else text")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="write the comparison to FILE instead of stdout")
@click.option("--b-design", "b_design", type=click.Choice(("lazy", "nofork", "nofork_clone")), default=None,
              help="the anon rmap design B's kernel ran: adds the validation table, A modelled as "
                   "DESIGN against B measured")
@click.option("-q", "--quiet", is_flag=True, help="no progress bar (drawn only when stderr is a terminal)")
def compare_cmd(path_a, path_b, fmt, output, b_design, quiet):
    """Compare recordings A and B (the same workload on two kernels, or
    before/after a change): per design and object A, B, delta (B - A) and %
    (docs/compare.md)."""
    keep_freed_memory()
    from . import compare as compare_mod
    fmt = fmt or compare_mod.SUFFIX_FORMAT.get(os.path.splitext(output or "")[1].lower(), "text")
    from . import progress
    reports, failed = [], None
    with progress.bar(2 * _steps(), "anonanalyze compare", "step", progress.wanted(quiet)) as b:
        for side, p in (("A", path_a), ("B", path_b)):
            try:
                reports.append(_built(p, b, f"{side}: ")[1])
            except Exception as exc:    # said once the bar is gone, on a line of its own
                failed = (exc, p)
                break
    if failed:
        _fail_one_line(failed[0], failed[1], f"{failed[1]}: ")
    try:
        data = compare_mod.compare(*reports, b_design=b_design, a_path=path_a, b_path=path_b)
        text = compare_mod.render(data, fmt)
    except Exception as exc:
        _fail_one_line(exc, f"{path_a} and {path_b}", "", "recordings")
    _write(text, output)


def _steps():
    """Bar steps of one report: reading, then each stage of report.build()."""
    from . import report as report_mod
    return 1 + len(report_mod.STAGES)


def _built(path, b, name=""):
    """(recording, report dict) of ``path``, one step of the bar ``b`` for
    reading it and one per stage of the report (``name``: a prefix of the
    steps' names)."""
    from . import load
    from . import report as report_mod
    b.set_postfix_str(name + "reading")
    rec = load.load(path)
    b.update()

    def step(stage):
        b.set_postfix_str(name + stage)
        b.update()

    return rec, report_mod.build(rec, step=step)


def _fail_one_line(exc, path, prefix, what="recording"):
    """Exit with ``exc`` as one line, never a traceback: an AnalyzerError
    with its own code, running out of memory (naming ``path``), anything
    else as an internal error (``prefix`` first) to report with the
    ``what``."""
    if isinstance(exc, AnalyzerError):
        fail(str(exc).replace("\n", " "), exc.code)
    if isinstance(exc, MemoryError):
        fail(f"{path}: out of memory while analysing", EXIT_INTERNAL)
    fail(f"{prefix}internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
         f"please report it with the {what}", EXIT_INTERNAL)


def _write(text, output):
    """``text`` to the file ``output``, or to stdout."""
    if not output:
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_OUTPUT)


from .simulate import simulate as _simulate  # noqa: E402  (built-in scenarios, docs/models.md#walks)

main.add_command(_simulate)


if __name__ == "__main__":  # pragma: no cover
    main()
