"""``anoncollect``: the command line of the collector."""

import datetime
import os
import sys

import click

from . import checks
from .config import RunConfig
from .errors import EXIT_FAILURE, CollectError
from .marks import MarkError
from .signals import Interrupted, Stop

EPILOG = """\b
Examples:
  sudo anoncollect --duration 60              system-wide for 60 s
  sudo anoncollect -o r.parquet -- ./workload record ./workload and its children
  sudo anoncollect -p 1234 --duration 30      one process and its children
  anoncollect --ebpf                          print the BPF program (no root)

\b
The output is committed every few seconds: if anoncollect is killed, the
machine crashes or the disk fills, FILE.partial/ keeps what was committed
and `anonanalyze report FILE` reads it, flagged as cut short. An existing
FILE is kept as FILE.old (unless --force). As root, tracefs is mounted
when it is not.

\b
Marks (snapshots of live memory in the report): `kill -USR1 PID` of a
recording anoncollect writes a mark labelled mark-1, mark-2, ...;
`sudo anoncollect mark LABEL [--pid PID]` writes one named LABEL.
`sudo anoncollect boot install` records every boot from early on and
marks after-boot (systemd; `anoncollect boot remove` undoes it).

\b
Exit status: 0 recorded; 1 failure during the run; 2 bad usage (checked
before anything slow: the command, -p, --comm, -o); 3 host not ready (not
root, no bcc, no tracefs, no BTF, no headers); 128+N interrupted by signal
N before recording started.
The file format is docs/schema.md; analyse it with `anonanalyze report FILE`.
"""


def default_output() -> str:
    """The default ``-o`` file: ``anonscope-DATE-TIME.parquet`` (local time
    now), in the current directory."""
    return datetime.datetime.now().strftime("anonscope-%Y%m%d-%H%M%S.parquet")


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after this many seconds (default: until the command exits, or Ctrl-C).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), metavar="FILE",
              help="Parquet file to write (default: anonscope-DATE-TIME.parquet here).")
@click.option("-a", "--all-cpus", "system_wide", is_flag=True,
              help="Record the whole system, also while a command runs.")
@click.option("-p", "--pid", type=click.IntRange(min=1),
              help="Record only this process and its descendants (those alive at start included).")
@click.option("--comm", metavar="NAME",
              help="Record only tasks with this command name (at most 15 bytes, as the kernel keeps it; "
                   "filtered in the kernel).")
@click.option("-f", "--force", is_flag=True,
              help="Replace an existing FILE (and FILE.partial/ left by a run that did not finish) "
                   "instead of keeping it as FILE.old.")
@click.option("--slab-interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              metavar="SECONDS", help="How often to sample /proc/slabinfo.")
@click.option("--buffer-mb", type=click.IntRange(min=1), default=64, show_default=True,
              help="Size of the BPF ring buffer (per CPU for the perf buffer).")
@click.option("--max-live", type=click.IntRange(min=1024), default=1 << 20, show_default=True,
              help="Objects the kernel tracks to pair allocs with frees.")
@click.option("--perf-buffer", is_flag=True, help="Use the perf buffer even where the ring buffer exists.")
@click.option("--backend", type=click.Choice(["auto", "tracepoint", "kprobe", "fentry"]), default="auto",
              show_default=True,
              help="Function probes (VMA of each object, rmap walks): fentry, else kprobes, where the kernel "
                   "allows; tracepoints always. 'tracepoint' records without function probes.")
@click.option("--max-mb", type=click.FloatRange(min=0, min_open=True), metavar="MB",
              help="Stop once the committed segments reach this many MiB (stop reason size-limit).")
@click.option("--census/--no-census", default=True, show_default=True,
              help="At start, record the anon_vma topology that already exists (task_vma iterator; "
                   "needs function probes and a kernel that accepts BPF tracing programs).")
@click.option("--raw-pointers", is_flag=True,
              help="Write kernel addresses as object ids (default: per-run ids, no kernel pointer).")
@click.option("--ebpf", is_flag=True, help="Print the BPF program for this kernel and exit (no root needed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress line, census line or summary.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, metavar="[-- CMD [ARGS]...]")
def main(duration, output, system_wide, pid, comm, force, slab_interval, buffer_mb, max_live,
         perf_buffer, backend, max_mb, census, raw_pointers, ebpf, quiet, command):
    """Record the life of every anon_vma and anon_vma_chain, with the VMAs,
    forks, execs and exits around them, into a Parquet file.

    Without a command, records the whole system until --duration ends or
    Ctrl-C. With `-- CMD ARGS`, runs CMD and records it and its descendants
    until CMD exits, as `perf record -- CMD` does.
    """
    cfg = RunConfig(output=output or default_output(), duration=duration, command=list(command),
                    system_wide=system_wide, pid=pid, comm=comm, force=force, raw_pointers=raw_pointers,
                    slab_interval=slab_interval, buffer_mb=buffer_mb, max_live=max_live,
                    perf_buffer=perf_buffer, backend=backend, census=census, max_mb=max_mb,
                    progress=not quiet and sys.stderr.isatty(), quiet=quiet, argv=sys.argv)
    stop = Stop().install()
    try:
        if ebpf:
            if comm is not None:
                checks.comm(comm)
            from . import probes
            click.echo(probes.prepare(cfg, need_kernel=False).source)
            return
        checks.all_arguments(cfg.command, pid, comm, cfg.output, force)
        from . import session  # numpy, pyarrow: after the checks
        summary = session.run(cfg, stop)
    except Interrupted as e:
        click.echo(f"anoncollect: interrupted by {e.name} before recording started; nothing was written",
                   err=True)
        sys.exit(128 + e.signum)
    except CollectError as e:
        click.echo(f"anoncollect: error: {e}", err=True)
        sys.exit(e.code)
    except OSError as e:
        click.echo(f"anoncollect: error: {e.filename or ''}: {e.strerror}", err=True)
        sys.exit(EXIT_FAILURE)
    except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback on request
        if os.environ.get("ANONSCOPE_DEBUG"):
            raise
        click.echo(f"anoncollect: internal error: {type(e).__name__}: {e} "
                   "(ANONSCOPE_DEBUG=1 shows the traceback)", err=True)
        sys.exit(EXIT_FAILURE)
    if not quiet:
        print_summary(summary)


def print_summary(s) -> None:
    """``s``: a session.Summary."""
    lost = {k: v for k, v in s.lost.items() if v}
    unknown = [k for k, v in s.lost.items() if v is None]
    lines = []
    if s.headers_note:
        lines.append(f"headers: {s.headers_note}")
    lines.append(f"wrote {s.path}: {s.events:,} rows in {s.duration_s:.1f} s (stopped: {s.stop_reason})")
    lines.append("allocated: " + ", ".join(f"{n} {c:,}" for n, c in s.by_object.items()))
    by_kind = {k: v for k, v in s.lost_by_event.items() if v}
    if by_kind:
        lines.append("lost by event kind: " + ", ".join(f"{k} {v:,}" for k, v in by_kind.items()))
    lines.append("lost events: " + (", ".join(f"{k} {v:,}" for k, v in lost.items()) if lost else "none")
                 + (f" (not measurable here: {', '.join(unknown)})" if unknown else "")
                 + (f"; {s.misses_not_ours:,} skipped runs were slab operations in interrupt context, "
                    "not ours (docs/collector.md)" if s.misses_not_ours else ""))
    if s.command_exit_status is not None:
        lines.append(f"command exit status: {s.command_exit_status}")
    for line in lines:
        click.echo(f"anoncollect: {line}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-p", "--pid", type=click.IntRange(min=1),
              help="The anoncollect to mark (needed when several are recording).")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
              help="Wait up to this long for an anoncollect to start recording (the mark keeps the "
                   "moment it was asked for; before recording started, it is the start).")
@click.argument("label")
def mark(pid, wait_s, label):
    """Write a mark named LABEL into the recording of the running
    anoncollect, at this moment: `anonanalyze report` takes a snapshot of
    live memory per design there (--at LABEL picks it for the table).

    Exit status: 0 marked; 2 no such recording, or a bad label.
    """
    from . import marks
    try:
        entry = marks.send(label, pid, wait_s)
    except MarkError as e:
        click.echo(f"anoncollect mark: error: {e}", err=True)
        sys.exit(2)
    click.echo(f"anoncollect mark: asked pid {entry['pid']} ({entry['output']}) for mark {label!r}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def boot():
    """Record from boot: install or remove the systemd units that run
    anoncollect system-wide from early boot and mark `after-boot` when the
    system reaches its default target (docs/collector.md#boot)."""


@boot.command("install")
@click.option("-o", "--output-dir", default=None, metavar="DIR",
              help="Where the recordings go (default /var/lib/anonscope; one anonscope-DATE-TIME.parquet per boot).")
@click.option("--max-mb", type=click.FloatRange(min=1), default=None, metavar="MB",
              help="Stop a boot's recording at this size (default 2048 MiB).")
@click.option("--unit-dir", default=None, metavar="DIR", help="Where to write the units (default /etc/systemd/system).")
@click.option("--no-enable", is_flag=True, help="Write the units only (no systemctl enable).")
def boot_install(output_dir, max_mb, unit_dir, no_enable):
    """Write and enable anonscope-boot.service and anonscope-boot-mark.service."""
    from . import boot as b
    try:
        paths = b.install(output_dir or b.DEFAULT_DIR, max_mb or b.DEFAULT_MAX_MB, unit_dir or b.UNIT_DIR,
                          enable=not no_enable)
    except (b.BootError, OSError) as e:
        _boot_fail(e)
    for p in paths:
        click.echo(f"anoncollect boot: wrote {p}", err=True)
    click.echo("anoncollect boot: " + ("enabled: the next boot is recorded" if not no_enable
                                       else "not enabled (--no-enable)"), err=True)


@boot.command("remove")
@click.option("--unit-dir", default=None, metavar="DIR", help="Where the units are (default /etc/systemd/system).")
@click.option("--no-disable", is_flag=True, help="Delete the unit files without systemctl disable.")
def boot_remove(unit_dir, no_disable):
    """Disable and delete the boot units (recordings are kept)."""
    from . import boot as b
    try:
        paths = b.remove(unit_dir or b.UNIT_DIR, disable=not no_disable)
    except (b.BootError, OSError) as e:
        _boot_fail(e)
    for p in paths:
        click.echo(f"anoncollect boot: removed {p}", err=True)


def _boot_fail(e):
    if isinstance(e, PermissionError):
        msg = f"{e.filename}: permission denied (run as root)"
    elif isinstance(e, OSError):
        msg = f"{e.filename or ''}: {e.strerror}"
    else:
        msg = str(e)
    click.echo(f"anoncollect boot: error: {msg}", err=True)
    sys.exit(2 if not isinstance(e, OSError) else EXIT_FAILURE)


SUBCOMMANDS = {"mark": mark, "boot": boot}


def entry(argv=None):
    """``anoncollect [OPTIONS] [-- CMD]`` records; ``anoncollect mark LABEL``
    marks a running recording (a command named ``mark`` records as
    ``anoncollect -- mark``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:], prog_name=f"anoncollect {argv[0]}")
    return main(argv)


if __name__ == "__main__":
    entry()
