"""The eager kernel's rules in analyzer/kernel.py: which anon_vma a fork
reuses, 6.x against 7.x (docs/models.md E2)."""

import pytest

from anonscope.analyzer import kernel


def generations(rules, depth):
    """A process whose one VMA faulted (root R), then ``depth`` generations
    forked one from the other (own anon_vmas A1..A<depth>: each parent is
    alive at its fork, so nothing is reused),
    every generation but the last exited: the last one's VMA and the names
    of the anon_vmas."""
    k = kernel.Rmap(rules)
    vmas = [kernel.Vma()]
    k.prepare(vmas[0])
    names = {id(vmas[0].anon_vma): "R"}
    for d in range(1, depth + 1):
        child = kernel.Vma()
        k.fork(vmas[-1], child)
        names[id(child.anon_vma)] = f"A{d}"
        vmas.append(child)
    for v in vmas[:-1]:
        k.unlink(v)
    return k, vmas[-1], names


def picked(rules, depth):
    k, last, names = generations(rules, depth)
    child = kernel.Vma()
    clones, own, _ = k.fork(last, child)
    assert own == [] and len(clones) == depth + 1          # reused: no own anon_vma, one AVC per chain AVC
    return names[id(child.anon_vma)]


def test_6x_reuses_the_oldest_candidate():
    """6.12 anon_vma_clone() walks the source chain from its tail (the root's
    AVC first): of A1..A3, each with no active VMA and one child, A1 (the
    first generation's) is taken; R has its self-link and a child."""
    assert [picked("6.x", d) for d in (2, 3, 4, 5)] == ["A1", "A1", "A1", "A1"]


def test_7x_chain_order_alternates_and_the_newest_candidate_in_it_is_taken():
    """7.3 copies the source list head first into the new list's head (so
    each clone reverses the order) and tries reuse from the new list's tail,
    that is in the source list's order from its head. Depth 4: the last
    generation's list from head to tail is A4 (its own, linked last) A2 R A1
    A3; tried in that order, A4 is active and A2 is the first candidate."""
    k, last, names = generations("7.x", 4)
    assert [names[id(a.av)] for a in last.chain] == ["A3", "A1", "R", "A2", "A4"]
    assert [names[id(a.av)] for a in k.clone_order(last.chain)] == ["A4", "A2", "R", "A1", "A3"]
    assert picked("7.x", 4) == "A2"
    assert picked("7.x", 5) == "A3"
    assert picked("7.x", 2) == picked("6.x", 2) == "A1"       # one candidate: both take it


def test_unknown_rules_are_refused():
    with pytest.raises(ValueError):
        kernel.Rmap("5.x")
