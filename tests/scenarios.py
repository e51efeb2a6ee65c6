"""Scenarios the analyzer's tests share: event streams (eventgen.Gen) with
parameters from which each test derives its expected numbers, and how to
write and report one."""

from anonscope.analyzer import load, report
from eventgen import Gen

AV, AVC, VMA = "anon_vma", "anon_vma_chain", "vm_area_struct"



def build(g, tmp_path, name="run.parquet", **meta):
    path = g.write(str(tmp_path / name), **meta)
    return report.build(load.load(path))



def pct(eager, model):
    return round(100.0 * (eager - model) / eager, 1)



def models(r):
    return r["models"]["eager"], r["models"]["lazy"], r["models"]["nofork"]



def parent_and_children(g, V, C, K):
    """In ``g``: parent 100 faults V VMAs and forks C children (200, 201,
    ...); child k faults K VMAs of its own. (parent VMAs, children's VMAs)."""
    g.process(100, "parent")
    pv = g.faults(100, V)
    kids = [200 + k for k in range(C)]
    for k in kids:
        g.fork(100, k, comm="child")
    return pv, [v for k in kids for v in g.faults(k, K)]


def zygote(V, N, C, K, prerun=0):
    """Parent 100 with V faulted anon VMAs, N VMAs never faulted and
    ``prerun`` anon VMAs made before the run forks C children; each child
    faults K VMAs of its own; then all children exit."""
    g = Gen()
    g.process(100, "zygote")
    for _ in range(prerun):
        g.prerun_vma(100)
    g.faults(100, V)
    for _ in range(N):
        g.mmap(100)
    kids = [200 + i for i in range(C)]
    for k in kids:
        g.fork(100, k, comm="app")
    for k in kids:
        g.faults(k, K)
    for k in kids:
        g.exit(k)
    return g



def split_merge(F, S, M, X):
    """Leaf 300 (alive before the run): F faulted VMAs, S of them split, M of
    the pieces merged back (same anon_vma: no clone), X merges of a fresh VMA
    over a faulted one (dup_anon_vma: one clone AVC each), then exit."""
    assert S <= F and M <= S and X <= F
    g = Gen()
    g.process(300, "leaf")
    vmas = g.faults(300, F)
    pieces = [g.split(300, v) for v in vmas[:S]]
    for v, piece in zip(vmas[:M], pieces[:M]):
        g.merge(300, v, piece)
    for v in vmas[-X:] if X else []:
        fresh = g.mmap(300)
        g.merge(300, fresh, v)
    g.exit(300)
    return g



def mremap_heavy(F, R, G):
    """Process 400: F faulted VMAs each moved R times by mremap, G faulted
    VMAs never moved; never forks."""
    g = Gen()
    g.process(400, "mover")
    moved = g.faults(400, F)
    g.faults(400, G)
    for _ in range(R):
        moved = [g.mremap(400, v) for v in moved]
    return g



def chain(VA, VB, VC, VD):
    """A (alive before the run) faults VA, forks B; B faults VB, forks C;
    C faults VC, forks D; D faults VD; D, C, B exit."""
    g = Gen()
    g.process(1, "a")
    g.faults(1, VA)
    g.fork(1, 2, comm="b")
    g.faults(2, VB)
    g.fork(2, 3, comm="c")
    g.faults(3, VC)
    g.fork(3, 4, comm="d")
    g.faults(4, VD)
    for pid in (4, 3, 2):
        g.exit(pid)
    return g


def fork_chain(V, kernel, fprobes=False):
    """P faults V regions and forks C, C forks G and exits, G forks H: H's
    copies reuse C's anon_vmas (no VMA left, one child: anon_vma_clone()'s
    rule), in 6.x by not allocating, in 7.x by freeing the pair at once."""
    g = Gen(kernel=kernel, fprobes=fprobes)
    g.process(1, "p")
    g.faults(1, V)
    g.fork(1, 2)
    g.fork(2, 3)
    g.exit(2)
    g.fork(3, 4)
    return g
