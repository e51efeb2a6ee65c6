"""live.LiveCount, the count built a chunk at a time, against the
whole-run functions it replaces (live.summary_intervals, live.Spans): same
peak, end, min and values at the probes, whatever the chunks and however
late a step is added, as long as it is not below the settled position."""

import numpy as np
import pytest

from anonscope.analyzer import live
from anonscope.analyzer.live import NEVER


def intervals(seed, n=400, span=2000):
    rng = np.random.default_rng(seed)
    pos = rng.permutation(span)[:2 * n].reshape(n, 2)   # distinct: a start never shares an end's position
    starts, ends = pos.min(axis=1), pos.max(axis=1)
    return starts, np.where(rng.random(n) < 0.2, NEVER, ends)


@pytest.mark.parametrize("seed", range(6))
def test_chunks_and_late_steps_give_the_whole_run_numbers(seed):
    starts, ends = intervals(seed)
    probes = np.r_[-1, np.random.default_rng(seed).integers(0, 2100, 30)]
    want = live.summary_intervals(starts, ends)
    want_at = live.Spans(starts, ends).at(probes)
    freed = ends[ends < NEVER]
    for late in (0, 50, 500):      # a step is added up to ``late`` positions after the stream passed it
        c = live.LiveCount(probes)
        steps = np.r_[starts, freed]
        sign = np.r_[np.ones(len(starts), int), -np.ones(len(freed), int)]
        arrival = steps + late * (sign > 0)                    # starts arrive late
        order = np.argsort(arrival, kind="stable")
        for chunk in np.array_split(order, 17):
            if not len(chunk):
                continue
            s = steps[chunk]
            c.add(s[sign[chunk] > 0], s[sign[chunk] < 0])
            c.settle(int(arrival[chunk].max()) - late)       # no start still to come is below it
        assert c.summary() == want
        assert list(c.at(probes)) == list(want_at)
        assert c.steps == len(starts) + len(freed)


def test_a_step_below_the_settled_position_is_refused():
    c = live.LiveCount()
    c.add([5], [9])
    c.settle(10)
    with pytest.raises(ValueError):
        c.add([7])
    assert c.summary() == {"peak": 1, "end": 0, "min": 0}


def test_ends_without_starts_go_below_zero_and_only_probes_can_be_read():
    c = live.LiveCount([3, 8])
    c.add(ends=[2, 6])
    c.add(starts=[7])
    assert c.summary() == {"peak": 0, "end": -1, "min": -2}
    assert list(c.at([3, 8])) == [-1, -1]
    with pytest.raises(KeyError):
        c.at([4])
