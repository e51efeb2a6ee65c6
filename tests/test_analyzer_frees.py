"""Frees matched a chunk at a time (analyzer/frees.py) against the rule
written out one row at a time (docs/models.md section 0): each free of the
run to the latest earlier alloc of the same (object, obj_id), an alloc
taken by the first such free only, a preexisting free matched to nothing;
whatever the chunks, and holding only the allocs no free has taken."""

import numpy as np
import pytest

from anonscope.analyzer.frees import FreeMatcher


def rule(obj, ids, is_alloc, pre):
    """{free row: alloc row}, one row at a time."""
    latest, taken, pairs = {}, set(), {}
    for r, (o, i, a, p) in enumerate(zip(obj, ids, is_alloc, pre)):
        if a:
            latest[(o, i)] = r
        elif not p and (o, i) in latest and latest[(o, i)] not in taken:
            pairs[r] = latest[(o, i)]
            taken.add(latest[(o, i)])
    live = sum(1 for r in latest.values() if r not in taken)
    return pairs, live


def rows(seed, n, ids, dtype=np.int64):
    rng = np.random.default_rng(seed)
    obj = rng.integers(0, 3, n).astype(np.int8)
    oid = rng.integers(0, ids, n).astype(dtype)
    if dtype == np.int64 and seed % 2:
        oid = oid * 7919 + np.int64(-0x7000_0000_0000_0000)   # kernel-address-like ids
    is_alloc = rng.random(n) < 0.55
    pre = ~is_alloc & (rng.random(n) < 0.1)
    return obj, oid, is_alloc, pre


def feed(matcher, chunks, obj, oid, is_alloc, pre):
    pairs = {}
    for lo, hi in chunks:
        f, a = matcher.feed(np.arange(lo, hi), obj[lo:hi], oid[lo:hi], is_alloc[lo:hi], pre[lo:hi])
        assert (np.diff(f) > 0).all()
        pairs.update(zip(f.tolist(), a.tolist()))
    return pairs


@pytest.mark.parametrize("seed", range(8))
def test_any_chunking_gives_the_rule(seed):
    n = 3000
    obj, oid, is_alloc, pre = rows(seed, n, ids=40 + 100 * seed)
    want, live = rule(obj.tolist(), oid.tolist(), is_alloc.tolist(), pre.tolist())
    rng = np.random.default_rng(1000 + seed)
    for sizes in ([n], [1] * 50 + [n], list(rng.integers(1, 400, 100))):
        cuts = np.minimum(np.r_[0, np.cumsum(sizes)], n)
        chunks = [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        m = FreeMatcher()
        assert feed(m, chunks, obj, oid, is_alloc, pre) == want
        assert m.held() == live


def test_held_entries_follow_the_live_objects_not_the_rows():
    """100 ids allocated and freed over and over: 100 entries at most,
    however many rows."""
    ids = np.tile(np.arange(100, dtype=np.int64), 200)
    n = len(ids)
    is_alloc = np.tile(np.r_[np.ones(100, bool), np.zeros(100, bool)], 100)
    obj = np.zeros(n, dtype=np.int8)
    m = FreeMatcher()
    most = 0
    for lo in range(0, n, 50):             # a chunk ends where all 100 are live
        hi = min(lo + 50, n)
        m.feed(np.arange(lo, hi), obj[lo:hi], ids[lo:hi], is_alloc[lo:hi], np.zeros(hi - lo, bool))
        most = max(most, m.held())
    assert most == 100 and m.held() == 0


def test_a_chunk_of_preexisting_frees_only_matches_nothing():
    m = FreeMatcher()
    f, a = m.feed(np.arange(3), np.zeros(3, np.int8), np.arange(3), np.zeros(3, bool), np.ones(3, bool))
    assert len(f) == len(a) == 0 and m.held() == 0
