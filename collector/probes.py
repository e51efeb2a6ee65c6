"""Which probes this kernel allows, and the program built and loaded for them.

Reads the host (BTF, tracefs, kallsyms, /sys/kernel/slab), chooses the
function-probe mode (fentry, kprobe, or tracepoints only), builds the BPF
program (collector/program.py) and loads the best mode that works, noting
what happened to every probe for the metadata.
"""

import dataclasses
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import abi, fprobes, headers, kallsyms, program, sites, slab, tracefs
from .btf import BTF, BTFError
from .config import RunConfig
from .errors import EXIT_ENVIRONMENT, CollectError


def kernel_has_ringbuf(release: str) -> bool:
    """BPF ring buffer: Linux 5.8+."""
    parts = release.split(".")
    try:
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (5, 8)
    except (ValueError, IndexError):
        return True


def ring_pages(mb: int) -> int:
    """Pages for a buffer of about ``mb`` MiB: a power of two, as the BPF
    ring buffer requires."""
    pages = max(1, mb * 1024 * 1024 // os.sysconf("SC_PAGE_SIZE"))
    return 1 << (pages.bit_length() - 1)



@dataclass
class Prepared:
    """What start-up found and chose: kernel facts, call-site classifier,
    program options and source, BTF, headers, probes, the function-probe
    modes to try and, after load(), the one that attached."""

    facts: program.KernelFacts
    classifier: sites.Classifier
    options: program.Options
    source: str
    btf: Optional[BTF]
    headers: Optional[headers.HeadersChoice]
    aliases: Dict[str, List[str]]
    probes: List[Dict[str, object]]
    backends: List[str]               # function-probe modes to try, best first
    backend_notes: List[Dict[str, object]]  # modes not tried, and why
    backend: str = "tracepoint"       # what attached (set by load())
    host_notes: List[str] = dataclasses.field(default_factory=list)  # what was done to the host (mounts)

    def with_backend(self, mode: str) -> "Prepared":
        """The same preparation with the program built for ``mode``."""
        opts = dataclasses.replace(self.options, func_probes=mode != "tracepoint", kfunc=mode == "fentry")
        return dataclasses.replace(self, options=opts, source=program.build(self.facts, self.classifier, opts))


def choose_backends(cfg: RunConfig, facts: program.KernelFacts, tracing: Optional[str]):
    """Function-probe modes to try in order (tracepoint-only last), and why
    the others are not tried."""
    notes, modes = [], []
    if cfg.backend == "tracepoint":
        notes.append({"name": "function probes", "attached": False, "reason": "--backend tracepoint"})
    elif facts.fprobe_offsets is None:
        notes.append({"name": "function probes", "attached": False,
                      "reason": f"BTF lacks what they read: {facts.fprobe_missing}"})
    else:
        if cfg.backend in ("auto", "fentry"):
            if facts.arch == "x86_64" and bcc_supports_kfunc():
                modes.append("fentry")
            else:
                where = " (arm64)" if facts.arch == "aarch64" else ""
                notes.append({"name": "fentry/fexit", "attached": False,
                              "reason": "bcc has no kfunc support here" + where})
        if cfg.backend in ("auto", "kprobe"):
            ok, why = fprobes.kprobes_available(tracing)
            if ok:
                modes.append("kprobe")
            else:
                notes.append({"name": "kprobe/kretprobe", "attached": False, "reason": why})
        if modes and facts.rss_missing:
            notes.append({"name": "copy_page_range", "attached": False,
                          "reason": f"anon pages copied at fork not recorded: {facts.rss_missing}"})
    return modes + ["tracepoint"], notes


def bcc_supports_kfunc() -> bool:
    """Whether the installed bcc can build fentry/fexit programs (BPF.support_kfunc())."""
    try:
        from bcc import BPF
        with warnings.catch_warnings():  # bcc 0.26 warns about its own str argument
            warnings.simplefilter("ignore", DeprecationWarning)
            return bool(BPF.support_kfunc())
    except Exception:  # noqa: BLE001 - no bcc, or an old one
        return False


def probe_list(facts: program.KernelFacts, cfg: RunConfig) -> List[Dict[str, object]]:
    """Every probe the program uses or could use, with why it was skipped."""
    probes = [
        {"name": "raw_tracepoint:kmem_cache_alloc", "attached": True,
         "reason": "object allocations; sizes from " + ("struct kmem_cache" if facts.kmem_args["KA_CACHE"] >= 0
                                                        else "bytes_req/bytes_alloc")},
        {"name": "raw_tracepoint:kmem_cache_free", "attached": True,
         "reason": "object frees; cache from " + ("struct kmem_cache" if facts.kmem_args["KF_CACHE"] >= 0 else
                                                 "its name" if facts.kmem_args["KF_NAME"] >= 0 else
                                                 "the call site only (kernel < 5.12): "
                                                 "pre-run objects typed by call site")},
        {"name": "raw_tracepoint:sched_process_fork", "attached": True, "reason": "fork rows, child pids"},
        {"name": "tracepoint:sched:sched_process_exec", "attached": True, "reason": "exec rows"},
        {"name": "tracepoint:sched:sched_process_exit", "attached": True, "reason": "exit rows"},
    ]
    probes.append({"name": "tracepoint:lock:contention_begin+contention_end", "attached": facts.lock_contention,
                   "reason": "waits for anon_vma rwsems" if facts.lock_contention else
                   "tracepoints absent (kernel < 5.19, before 16edd9b511a1 \"locking: Add lock contention "
                   "tracepoints\"): no lock rows"})
    if cfg.tracked:
        probes.append({"name": "tracepoint:task:task_rename", "attached": facts.task_rename,
                       "reason": "starts recording the command at its exec rename" if facts.task_rename
                       else "tracepoint absent: the command is recorded from sched_process_exec"})
    for s in program.FORK_SYSCALLS:
        ok = s in facts.fork_syscalls
        probes.append({"name": f"tracepoint:syscalls:sys_enter_{s}+sys_exit_{s}", "attached": ok,
                       "reason": "fork window" if ok else
                       "tracepoint absent: fork paths found from the kernel stack instead"})
    for s in program.EXEC_SYSCALLS:
        ok = s in facts.exec_syscalls
        probes.append({"name": f"tracepoint:syscalls:sys_enter_{s}+sys_exit_{s}", "attached": ok,
                       "reason": "when an exec began (exec rows' duration_ns)" if ok else
                       "tracepoint absent: exec rows have no duration_ns; the exec row is the boundary"})
    for define, (cat, event, _fields) in program.MOVE_PROBES.items():
        probes.append(move_probe(define, f"tracepoint:{cat}:{event}", facts.move_probes.get(define, False),
                                 facts.mm_owner_off >= 0))
    return probes


#: What each move probe records (docs/schema.md#moves).
MOVE_REASONS = {"HAVE_KSM_MERGE": "move rows: KSM merges (ksm_merge)",
                "HAVE_UFFD_MOVE": "move rows: ioctl(UFFDIO_MOVE) (uffd_move)",
                "HAVE_MREMAP_DONTUNMAP": "move rows: mremap(MREMAP_DONTUNMAP) (mremap_dontunmap)"}


def move_probe(define: str, name: str, present: bool, owner_known: bool) -> dict:
    """The probes entry of one move tracepoint."""
    reason = MOVE_REASONS[define]
    if define == "HAVE_KSM_MERGE" and present and not owner_known:
        reason += "; no mm_struct.owner in BTF: merges are not attributed to a process and are kept in every run"
    if not present:
        reason = f"tracepoint absent: no {reason.split(': ', 1)[1]} rows (docs/models.md#moves)"
    return {"name": name, "attached": present, "reason": reason}


def prepare(cfg: RunConfig, need_kernel: bool = True) -> Prepared:
    """Read the host (BTF, tracefs, kallsyms, slab) and build the program.

    With ``need_kernel`` false (``--ebpf`` without root), facts that cannot
    be read are replaced by those of an example kernel and kallsyms by
    placeholder ranges; the program is then for reading, not loading.

    The start-up steps of docs/collector.md "Start-up" in their order, each
    failing with a CollectError and EXIT_ENVIRONMENT when ``need_kernel``:
    host checks (step 1: :func:`_host_checks`), kernel facts (2:
    :func:`_slab_names`, :func:`_kernel_facts`), call-site classifiers (3:
    :func:`_call_sites`), the program's options, headers (5:
    :func:`_choose_headers`), then the function-probe modes. Takes the run's
    ``cfg``; returns the Prepared, its program built for the best mode.
    """
    tracing, tracefs_note, btf = _host_checks(need_kernel)
    aliases, merged, free_names = _slab_names()
    facts = _kernel_facts(btf, tracing, merged, free_names, need_kernel)
    classifier = _call_sites(need_kernel)
    opts = _program_options(cfg, facts)
    choice = _choose_headers(need_kernel)
    modes, notes = choose_backends(cfg, facts, tracing)
    prep = Prepared(facts, classifier, opts, "", btf, choice, aliases, probe_list(facts, cfg), modes, notes,
                    host_notes=[tracefs_note] if tracefs_note else [])
    return prep.with_backend(modes[0])


def _host_checks(need_kernel: bool) -> Tuple[Optional[str], Optional[str], Optional[BTF]]:
    """Start-up step 1's BTF and tracefs: tracefs mounted when it is not
    (``tracefs.ensure``; only found, never mounted, without ``need_kernel``)
    and the kernel's BTF read. Returns ``(tracing, tracefs_note, btf)``: the
    tracefs directory (None: none, without ``need_kernel`` only), the note
    ``tracefs.ensure`` gave (what was done to the host; None: nothing) and
    the BTF (None: unreadable, without ``need_kernel`` only).
    """
    if need_kernel:
        tracing, tracefs_note = tracefs.ensure()
    else:
        tracing, tracefs_note = tracefs.find(), None
    btf = None
    try:
        btf = BTF.from_file()
    except BTFError as e:
        if need_kernel:
            raise CollectError(f"no usable BTF ({e}): anoncollect reads kernel struct layouts from "
                               "/sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF=y)", EXIT_ENVIRONMENT) from e
    if need_kernel and not tracing:
        raise CollectError(tracefs_note, EXIT_ENVIRONMENT)
    return tracing, tracefs_note, btf


def _slab_names() -> Tuple[Dict[str, List[str]], Dict[str, bool], Dict[str, str]]:
    """Start-up step 2's slab part: which of our caches SLUB merged with
    others (/sys/kernel/slab) and the name a free reports for each
    (/proc/slabinfo, none when unreadable). Returns ``(aliases, merged,
    free_names)``: {cache: alias names}, {cache: merged?}, {cache: name}."""
    aliases = slab.all_aliases()
    merged = {c: bool(a) for c, a in aliases.items()}
    try:
        lines = slab.read_slabinfo(caches=None)
    except OSError:
        lines = {}
    free_names = {c: slab.reported_name(c, aliases[c], lines) for c in slab.CACHES}
    return aliases, merged, free_names


def _kernel_facts(btf: Optional[BTF], tracing: Optional[str], merged: Dict[str, bool],
                 free_names: Dict[str, str], need_kernel: bool) -> program.KernelFacts:
    """Start-up step 2: the kernel facts from ``btf`` and the format files
    under ``tracing``, with the caches' ``merged`` and ``free_names`` (from
    :func:`_slab_names`), and the required kmem and sched tracepoints
    checked (with ``need_kernel``). Without BTF or tracefs (only without
    ``need_kernel``) an example kernel's facts. Returns the KernelFacts."""
    if btf is not None and tracing:
        try:
            facts = program.KernelFacts.probe(btf, merged, free_names, tracing)
        except (program.LayoutError, BTFError) as e:
            raise CollectError(f"kernel layout not usable: {e}", EXIT_ENVIRONMENT) from e
        for cat, ev in (("kmem", "kmem_cache_alloc"), ("kmem", "kmem_cache_free"),
                        ("sched", "sched_process_fork"), ("sched", "sched_process_exec"),
                        ("sched", "sched_process_exit")):
            if program.tracepoint_fields(cat, ev, tracing) is None and need_kernel:
                raise CollectError(f"tracepoint {cat}:{ev} not found in {tracing}", EXIT_ENVIRONMENT)
    else:
        facts = program.KernelFacts.example()
    return facts


def _call_sites(need_kernel: bool) -> sites.Classifier:
    """Start-up step 3: the call-site classifier from the kallsyms ranges of
    the functions it needs, every required one present (with
    ``need_kernel``; without, placeholder ranges when kallsyms shows no
    addresses). Returns the Classifier."""
    try:
        classifier = sites.Classifier.from_ranges(kallsyms.read_function_ranges(sites.wanted_functions()))
    except kallsyms.KallsymsError as e:
        if need_kernel:
            raise CollectError(str(e), EXIT_ENVIRONMENT) from e
        classifier = sites.placeholder()
    missing = [f for f in sites.REQUIRED if f in classifier.missing]
    if missing and need_kernel:
        raise CollectError(f"kernel functions not in kallsyms: {', '.join(missing)}", EXIT_ENVIRONMENT)
    return classifier


def _program_options(cfg: RunConfig, facts: program.KernelFacts) -> program.Options:
    """The program's options from the run's ``cfg`` and ``facts``: the ring
    buffer unless ``--perf-buffer`` or a kernel before 5.8. Returns them."""
    return program.Options(
        tracked=cfg.tracked, comm=cfg.comm,
        ringbuf=not cfg.perf_buffer and kernel_has_ringbuf(facts.release),
        ringbuf_pages=ring_pages(cfg.buffer_mb),
        max_live=cfg.max_live, raw_pointers=cfg.raw_pointers)


def _choose_headers(need_kernel: bool) -> Optional[headers.HeadersChoice]:
    """Start-up step 5: the kernel headers tree bcc compiles with
    (``headers.choose``), with ``need_kernel`` only. Returns the choice, or
    None without ``need_kernel``."""
    choice = None
    if need_kernel:
        try:
            choice = headers.choose()
        except headers.HeadersError as e:
            raise CollectError(str(e), EXIT_ENVIRONMENT) from e
        flags = headers.cflags(headers.tree_release(choice))
        if flags:
            choice = dataclasses.replace(choice, cflags=tuple(flags),
                                         how=f"{choice.how}; compiled with {' '.join(flags)}")
    return choice


def bcc_cflags(prep: "Prepared") -> List[str]:
    """The clang flags the chosen headers need (headers.cflags)."""
    return list(prep.headers.cflags) if prep.headers else []


def check_privileges() -> None:
    """Refuse to go on without root (loading BPF programs needs it)."""
    if os.geteuid() != 0:
        raise CollectError("needs root to load BPF programs: run it with sudo", EXIT_ENVIRONMENT)


def import_bcc():
    """Import bcc, or fail with the package that provides it for this Python."""
    try:
        from bcc import BPF  # noqa: F401
    except ImportError:
        raise CollectError(
            f"bcc is not importable by {sys.executable}: install python3-bpfcc and run anoncollect "
            "from the venv scripts/setup makes (it sees Debian's bcc)", EXIT_ENVIRONMENT) from None
    return BPF



class captured_stderr:
    """Collect what C code (libbpf, clang) writes to fd 2 meanwhile."""

    def __enter__(self):
        import tempfile
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        return False

    def text(self) -> str:
        """What was written to stderr while captured."""
        self._file.seek(0)
        return self._file.read().decode("utf-8", "replace")


def check_records(bpf, func_probes: bool) -> None:
    """The loaded program's ``struct event``, as bcc's ctypes of the
    ``batches`` leaf lay it out, is what the decoder reads (abi.check_layout)."""
    try:
        abi.check_layout(bpf["batches"].Leaf, abi.FPROBE_DTYPE if func_probes else abi.EVENT_DTYPE)
    except abi.InterfaceError as e:
        raise CollectError(f"the BPF program's record layout is not the decoder's: {e}") from None


def load(BPF, prep: Prepared):
    """Compile and load the program for the best function-probe mode that
    works (fentry, then kprobe, then tracepoints only), attach the function
    probes, and note in ``prep.probes`` what happened to each."""
    for mode in prep.backends:
        attempt = prep.with_backend(mode)
        try:
            if mode == "tracepoint":
                bpf = BPF(text=attempt.source, cflags=bcc_cflags(prep))
            else:  # a refusal is expected on some hosts: keep libbpf's words for the metadata
                with captured_stderr() as said:
                    bpf = BPF(text=attempt.source, cflags=bcc_cflags(prep))
        except Exception as e:  # bcc raises plain Exception for compile and load failures
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if mode != "tracepoint":
                kernel = " ".join(line.strip() for line in said.text().splitlines() if "bpf:" in line)
                prep.backend_notes.append({"name": f"{mode} function probes", "attached": False,
                                           "reason": f"program did not load: {kernel or reason}"})
                continue
            raise CollectError(f"cannot load the BPF program: {reason} (run with --ebpf to see it)",
                               EXIT_ENVIRONMENT) from None
        check_records(bpf, attempt.options.func_probes)
        offsets = attempt.facts.fprobe_offsets
        walks = fprobes.Walks(bool(offsets["FP_WALKS"]), attempt.facts.walks_missing,
                              bool(offsets["FP_ITER_RMAP_TREE"])) if offsets else None
        if mode == "kprobe":
            results = fprobes.attach_kprobes(bpf, offsets["FP_RSS"], walks)
        elif mode == "fentry":
            results = fprobes.kfunc_report(bpf, bool(offsets["FP_WALK_ANON"]), bool(offsets["FP_WALK_KSM"]),
                                           offsets["FP_RSS"], walks)
        else:
            results = []
        if results:
            results.append(fprobes.clone_op_note(bool(offsets["FP_CLONE_OP"])))
        attempt.probes = attempt.probes + prep.backend_notes + results
        attached = [r for r in results if r["attached"]]
        attempt.backend = mode if attached else "tracepoint"
        return bpf, attempt
    raise AssertionError("the tracepoint mode is always tried last")
