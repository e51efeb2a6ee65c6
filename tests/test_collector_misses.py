"""Which skipped program runs (bpf_prog_info.recursion_misses) can have been
our objects' events (collector/runmeta.py, docs/collector.md "Lost events"):
the kernel sources say when raw tracepoint programs can be preempted."""

import dataclasses

import pytest

from anonscope.collector import program, runmeta, sites

KMEM_ALLOC, KMEM_FREE = "raw_tracepoint__kmem_cache_alloc", "raw_tracepoint__kmem_cache_free"


def preemptible(release):
    """KernelFacts.preemptible of a kernel ``release``."""
    return dataclasses.replace(program.KernelFacts.example(), release=release).preemptible


def classifier(rcu_free):
    """A Classifier that has (or lacks) vm_area_free_rcu_cb."""
    c = sites.Classifier({}, [])
    if not rcu_free:
        c.missing.append(sites.VMA_RCU_FREE)
    return c


@pytest.mark.parametrize("release", ["6.1.0-56-amd64", "6.12.117+deb13-amd64", "6.18.44-fc-v1147"])
def test_before_preemptible_tracepoints_kmem_misses_are_interrupts(release):
    """Tracepoints run with preemption off (6.12 read): a kmem program is
    skipped only in an interrupt, where none of our objects is allocated;
    frees too where no VMA is freed from an RCU callback."""
    assert runmeta.interrupt_only_programs(classifier(rcu_free=False), preemptible(release)) == {KMEM_ALLOC, KMEM_FREE}
    assert runmeta.interrupt_only_programs(classifier(rcu_free=True), preemptible(release)) == {KMEM_ALLOC}


@pytest.mark.parametrize("release", ["6.19.0", "7.2.13+deb14-amd64", "7.3.4+deb13-arm64"])
def test_preemptible_tracepoints_make_every_miss_possibly_ours(release):
    """7.3 runs tracepoints under SRCU-fast and BPF with migration off only:
    a task preempted inside the program makes the next task's runs on that
    CPU be skipped, our allocations among them."""
    assert runmeta.interrupt_only_programs(classifier(rcu_free=False), preemptible(release)) == set()
    by_program = {KMEM_ALLOC: 133, KMEM_FREE: 2, "kretfunc__vmlinux__anon_vma_clone": 6}
    assert runmeta.misses_by_event(by_program, set()) == {"alloc": 133, "free": 2, "call": 6}


@pytest.mark.parametrize("release,preemptible", [("6.18 (example)", 0), ("7.3.4+deb13-amd64", 1)])
def test_preemptible_kernels_get_atomic_ids_and_no_shared_batch(release, preemptible):
    """From 6.19 the program's per-CPU id counter is advanced atomically and
    events skip the shared per-CPU batch (bpf/anonscope.bpf.c new_id, emit):
    PREEMPTIBLE_BPF follows the release."""
    facts = dataclasses.replace(program.KernelFacts.example(), release=release)
    assert program._kernel_defines(facts)["PREEMPTIBLE_BPF"] == preemptible
