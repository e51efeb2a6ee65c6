"""`anonanalyze simulate NAME`: built-in scenarios run through the address-space
model (analyzer/aspace.py) and every design's rmap (analyzer/rmapsim.py);
memory and rmap-walk cost per design. Rules: docs/models.md section 4."""

import json
import math
import sys
from collections import Counter

import click

from .aspace import SimError, Space
from .errors import EXIT_INTERNAL, EXIT_OUTPUT
from .rmapsim import CowContext, Eager, Lazy, NoFork, NoForkClone

SEE = "docs/models.md#walks"
DESIGNS = ("eager", "lazy", "cow_context", "nofork", "nofork_clone")
TITLES = {
    "eager": "the kernel today",
    "lazy": "ANON_VMA_LAZY",
    "cow_context": "CoW context (draft)",
    "nofork": "leaf processes opted out (PR_SET_NOFORK)",
    "nofork_clone": "leaf processes opted out at clone (PR_SET_NOFORK by the fork server)",
}
NOTES = {
    "eager": "exact replay of the kernel's rules on the scenario (docs/models.md W1-W3)",
    "lazy": "the series' rules as in domain.md (W4); a lazy folio's walk visits its one VMA "
            "with its lock unknown (the series claims none; disputed on the list); "
            "upgraded VMAs walk like eager",
    "cow_context": "the draft as in domain.md (W5); visits = live mms of the folio context's "
                   "subtree, its own mm included (descendant_mms excludes it), only its own mm "
                   "for a folio no other mm maps (C7); lookups add one per remap entry covering "
                   "the folio; the lock is an assumption",
    "nofork": "processes that never fork in the scenario opted out (W6); what a forking parent "
              "builds for them at fork is kept (docs/models.md N4), splits of inherited VMAs "
              "clone the whole chain (N2's high end); moved VMAs keep an anon_vma (N5)",
    "nofork_clone": "as nofork, set at clone: an opted-out child's copies are linked into the "
                    "parent's chains (N4') with no anon_vma of their own (N4), as lazy children",
}
# page numbers where scenarios place things (addresses are in pages)
BASE = 0x100
APP_BASE = 0x400000


# ------------------------------------------------------------------ scenarios

class Scenario:
    """A built-in scenario: its function, parameters and one-line doc."""

    def __init__(self, name, fn, params, doc):
        self.name, self.fn, self.params, self.doc = name, fn, params, doc


SCENARIOS = {}


def scenario(name, **params):
    """``params``: name -> (default, minimum, help[, maximum])."""
    def deco(fn):
        doc = " ".join(fn.__doc__.strip().split("\n\n")[0].split())
        SCENARIOS[name] = Scenario(name, fn, params, doc)
        return fn
    return deco


@scenario("adversarial",
          vmas=(1000, 1, "parent's anonymous VMAs, one faulted page each"),
          children=(1000, 1, "children forked; child k keeps only VMA k mod vmas"))
def adversarial(sp, vmas, children):
    """A parent with V faulted VMAs forks C children; child k keeps only VMA k."""
    parent = sp.process("parent")
    starts = []
    for i in range(vmas):
        vma = sp.mmap(parent, BASE + 2 * i, 1)       # a gap page between VMAs: no merging
        sp.fault(parent, vma.start)
        starts.append(vma.start)
    for k in range(children):
        keep = starts[k % vmas]
        sp.fork(parent, keep=lambda v, s=keep: v.start == s, name=f"child{k}")
    sp.snapshot("walks")
    for s in starts:                                  # one page of each parent VMA
        sp.walk(parent, s, "parent")
    sp.snapshot("end")


@scenario("zygote",
          vmas=(200, 0, "zygote's anonymous VMAs, one faulted page each"),
          file_vmas=(10, 0, "zygote's MAP_PRIVATE file VMAs with one CoW'd page each"),
          apps=(24, 1, "apps forked from the zygote"),
          app_faults=(20, 0, "pages each app faults in a new anonymous VMA of its own"),
          app_cow=(10, 0, "zygote anonymous VMAs each app writes one page of (CoW)"))
def zygote(sp, vmas, file_vmas, apps, app_faults, app_cow):
    """A zygote with faulted VMAs forks N apps that fault own pages, CoW some
    zygote pages, are walked, and exit."""
    z = sp.process("zygote")
    anon, files = [], []
    for i in range(vmas):
        anon.append(sp.mmap(z, BASE + 2 * i, 1).start)
    for i in range(file_vmas):
        files.append(sp.mmap(z, BASE + 2 * (vmas + i), 1, file=f"lib{i}.so").start)
    for s in anon + files:
        sp.fault(z, s)
    cow = anon[:app_cow]
    kids = []
    for a in range(apps):
        app = sp.fork(z, name=f"app{a}")
        own = []
        if app_faults:
            own = list(range(APP_BASE, APP_BASE + app_faults))
            sp.mmap(app, APP_BASE, app_faults)
            for page in own:
                sp.fault(app, page)
        for s in cow:
            sp.fault(app, s)
        kids.append((app, own))
    sp.snapshot("walks")
    for s in anon:
        sp.walk(z, s, "zygote_anon")
    for s in files:
        sp.walk(z, s, "zygote_file")
    for app, own in kids:
        for page in own:
            sp.walk(app, page, "app_own")
        for s in cow:
            sp.walk(app, s, "app_cow")
    for app, _ in kids:
        sp.exit(app)
    sp.snapshot("end")


@scenario("chain",
          depth=(8, 1, "forks in the chain: gen0 forks gen1, gen1 forks gen2, ..."),
          vmas=(16, 1, "gen0's anonymous VMAs, one faulted page each"),
          cow=(1, 0, "1: every generation writes (CoWs) every page after its fork", 1),
          exit_parents=(0, 0, "1: every parent exits right after its fork", 1))
def chain(sp, depth, vmas, cow, exit_parents):
    """A fork chain D deep (optionally CoWing every page, optionally with
    each parent exiting after its fork)."""
    cur = sp.process("gen0")
    starts = []
    for i in range(vmas):
        starts.append(sp.mmap(cur, BASE + 2 * i, 1).start)
        sp.fault(cur, starts[-1])
    gens = [cur]
    for d in range(1, depth + 1):
        child = sp.fork(cur, name=f"gen{d}")
        if cow:
            for s in starts:
                sp.fault(child, s)
        if exit_parents:
            sp.exit(cur)
        gens.append(child)
        cur = child
    sp.snapshot("walks")
    for d, mm in enumerate(gens):
        if mm.alive:
            for s in starts:
                sp.walk(mm, s, f"gen{d}")
    sp.snapshot("end")


# ----------------------------------------------------------------------- run

def run(name, params, kernel="6.x"):
    """Run scenario ``name`` with ``params`` (complete) and summarise it;
    ``kernel``: whose ``anon_vma_clone()`` order the eager model follows
    (analyzer/kernel.py ``Rmap.clone_order``)."""
    sc = SCENARIOS[name]
    dry = Space()                                   # pass 1: who forks (for nofork)
    sc.fn(dry, **params)
    optout = {pid for pid, mm in dry.mms.items() if mm.forks == 0}
    designs = [Eager(kernel), Lazy(), CowContext(), NoFork(optout), NoForkClone(optout)]
    sp = Space(designs)
    sc.fn(sp, **params)
    data = summarise(name, params, sp, designs)
    data["kernel_rules"] = kernel
    return data


def percentile(sorted_values, p):
    """Nearest rank: the smallest value with at least p% of the values <= it."""
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[k - 1]


def stats(values):
    """p50, p99 (nearest rank) and max of ``values``; None each when empty."""
    v = sorted(values)
    if not v:
        return {"p50": None, "p99": None, "max": None}
    return {"p50": percentile(v, 50), "p99": percentile(v, 99), "max": v[-1]}


EXTRAS = ("tree_avcs", "root_mms", "descendant_mms", "lookups")


def walk_summary(rows, unit):
    """rows: [(mapped_mms, result)]."""
    out = {"count": len(rows), "visits": stats([r["visits"] for _, r in rows]), "unit": unit,
           "lock": dict(Counter(r["lock"] for _, r in rows)),
           "mapped_mms": stats([m for m, _ in rows])}
    for key in EXTRAS:
        vals = [r[key] for _, r in rows if key in r]
        if vals:
            out[key] = stats(vals)
            if len(vals) != len(rows):
                out[key]["walks"] = len(vals)
    return out


def summarise(name, params, sp, designs):
    """The result of scenario ``name``: processes, and per design its memory
    at the snapshots and its walk costs."""
    mms = sp.mms.values()
    forking = sum(1 for mm in mms if mm.forks)
    data = {
        "scenario": name,
        "params": dict(params),
        "see": SEE,
        "processes": {"total": len(sp.mms), "forking": forking, "leaf": len(sp.mms) - forking},
        "designs": {},
    }
    at_walks, at_end = sp.snapshots["walks"], sp.snapshots["end"]
    groups = list(dict.fromkeys(g for g, _, _ in sp.walks))
    for d in designs:
        mem = {}
        for obj, r in at_end[d.name].items():
            mem[obj] = {"allocated": r["allocated"], "live_at_walks": at_walks[d.name][obj]["live"],
                        "live_at_end": r["live"], "peak_live": r["peak_live"]}
        rows = [(m, res[d.name]) for _, m, res in sp.walks]
        walks = walk_summary(rows, d.unit)
        walks["groups"] = {g: walk_summary([(m, res[d.name]) for gg, m, res in sp.walks if gg == g],
                                           d.unit) for g in groups}
        entry = {"title": TITLES[d.name], "memory": mem, "walks": walks, "notes": NOTES[d.name]}
        if isinstance(d, Lazy) and not isinstance(d, NoFork):
            entry["upgrades"] = dict(d.upgrades)
        data["designs"][d.name] = entry
    data["designs"] = {k: data["designs"][k] for k in DESIGNS}
    return data


# -------------------------------------------------------------------- render

def _fmt(v):
    return "-" if v is None else str(v)


def render_text(data):
    """The text form of a simulate result."""
    p = data["params"]
    lines = [f"anonanalyze simulate {data['scenario']}  "
             + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in p.items())
             + f"  --kernel {data.get('kernel_rules', '6.x')}",
             f"processes: {data['processes']['total']} ({data['processes']['forking']} forking, "
             f"{data['processes']['leaf']} leaf); rules and fidelity: {data['see']}", ""]
    for name, d in data["designs"].items():
        lines.append(f"== {name}: {d['title']}")
        lines.append(f"  {'memory':<16}{'allocated':>12}{'live@walks':>12}{'live@end':>12}{'peak':>12}")
        for obj, m in d["memory"].items():
            lines.append(f"  {obj:<16}{m['allocated']:>12}{m['live_at_walks']:>12}"
                         f"{m['live_at_end']:>12}{m['peak_live']:>12}")
        w = d["walks"]
        lines.append(f"  {'walks':<16}{'count':>8}{'p50':>8}{'p99':>8}{'max':>8}  visits in {w['unit']}"
                     "; mapped_mms p50/max")
        for label, s in [("all", w)] + list(w["groups"].items()):
            v = s["visits"]
            lines.append(f"  {label:<16}{s['count']:>8}{_fmt(v['p50']):>8}{_fmt(v['p99']):>8}"
                         f"{_fmt(v['max']):>8}  {_fmt(s['mapped_mms']['p50'])}/"
                         f"{_fmt(s['mapped_mms']['max'])}")
        for key in EXTRAS:
            if key in w:
                s = w[key]
                lines.append(f"  {key + ' p50/p99/max':<30}{s['p50']}/{s['p99']}/{s['max']}"
                             + (f" (over {s['walks']} walks)" if "walks" in s else ""))
        for lock, n in w["lock"].items():
            lines.append(f"  lock: {lock}: {n} walks")
        if "upgrades" in d:
            u = d["upgrades"]
            lines.append(f"  upgrades: fork {u['fork']}, mremap {u['mremap']}, "
                         f"folios re-pointed {u['folios_repointed']}")
        lines.append(f"  note: {d['notes']}")
        lines.append("")
    return "\n".join(lines)


def render(data, fmt):
    """A simulate result as JSON or text."""
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return render_text(data)


# ----------------------------------------------------------------------- CLI

def _epilog():
    out = ["\b", "Scenarios and their parameters (default):"]
    for sc in SCENARIOS.values():
        out.append(f"  {sc.name}: {sc.doc}")
        for k, (default, _, help_, *_) in sc.params.items():
            out.append(f"    --{k.replace('_', '-')} {default}: {help_}")
    out.append("Exit codes: 0 written, 1 internal error, 2 bad command line, "
               f"{EXIT_OUTPUT} the -o file cannot be written.")
    out.append(f"Rules, assumptions and fidelity: {SEE}.")
    return "\n".join(out)


def _fail(message, code):
    click.echo(f"anonanalyze: error: {message}", err=True)
    sys.exit(code)


def _param_options(fn):
    names = sorted({k for sc in SCENARIOS.values() for k in sc.params})
    for k in reversed(names):
        fn = click.option(f"--{k.replace('_', '-')}", k, type=int, default=None,
                          help="scenario parameter (see below)")(fn)
    return fn


@click.command("simulate", epilog=_epilog())
@click.argument("name", type=click.Choice(sorted(SCENARIOS)))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="output format")
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False, path_type=str),
              default=None, help="write to FILE instead of stdout")
@click.option("--kernel", "kernel_rules", type=click.Choice(["6.x", "7.x"]), default="6.x", show_default=True,
              help="whose anon_vma_clone() the eager model follows: the order it tries anon_vmas for "
                   "reuse at fork (6.x oldest first, 7.x newest first; docs/models.md E2)")
@_param_options
def simulate(name, fmt, output, kernel_rules, **given):
    """Run the built-in scenario NAME through the eager, ANON_VMA_LAZY,
    CoW-context and no-fork rmap models: memory and rmap-walk cost."""
    sc = SCENARIOS[name]
    given = {k: v for k, v in given.items() if v is not None}
    extra = sorted(set(given) - set(sc.params))
    if extra:
        _fail(f"--{extra[0].replace('_', '-')} does not apply to scenario {name} (its parameters: "
              + ", ".join(f"--{k.replace('_', '-')}" for k in sc.params) + ")", 2)
    params = {}
    for k, (default, minimum, _, *maximum) in sc.params.items():
        v = given.get(k, default)
        if v < minimum:
            _fail(f"--{k.replace('_', '-')} must be at least {minimum}", 2)
        if maximum and v > maximum[0]:
            _fail(f"--{k.replace('_', '-')} must be at most {maximum[0]}", 2)
        params[k] = v
    try:
        text = render(run(name, params, kernel_rules), fmt)
    except SimError as exc:
        _fail(f"scenario {name}: {exc}", EXIT_INTERNAL)
    except MemoryError:
        _fail(f"scenario {name}: out of memory; try smaller parameters", EXIT_INTERNAL)
    except Exception as exc:  # one line, never a traceback
        _fail(f"internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
              EXIT_INTERNAL)
    if output:
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            _fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_OUTPUT)
    else:
        click.echo(text, nl=not text.endswith("\n"))
