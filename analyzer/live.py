"""Live-object curves: +1 at an allocation, -1 at a free, in replay order.

Positions (``pos``) are ranks in the replay order (load.py). An object that
is never freed has free position :data:`NEVER`.
"""

import numpy as np

from .order import unique

#: free position of an object still live at the end of the run
NEVER = np.int64(2 ** 62)


def summary_intervals(starts, ends):
    """(peak, end, min) of the count of objects live from ``starts`` to
    ``ends`` (NEVER: live at the end), from the two sorted sides: the count
    after the k-th start is k minus the ends before it (a start and an end
    never share a position: they are different rows)."""
    s = np.sort(np.asarray(starts, dtype=np.int64))
    e = np.asarray(ends, dtype=np.int64)
    e = np.sort(e[e < NEVER])
    if not len(s) and not len(e):
        return {"peak": 0, "end": 0, "min": 0}
    peak = 0
    if len(s):
        after_start = np.arange(1, len(s) + 1) - np.searchsorted(e, s, side="right")
        peak = max(int(after_start.max()), 0)
    low = 0
    if len(e):
        after_end = np.searchsorted(s, e, side="right") - np.arange(1, len(e) + 1)
        low = min(int(after_end.min()), 0)
    return {"peak": peak, "end": int(len(s) - len(e)), "min": low}


class Spans:
    """Objects live from ``starts`` to ``ends`` (positions; NEVER: live at
    the end): :meth:`at` counts those live just after each position (a
    start at p counts, an end at p does not), as LiveCount.at."""

    def __init__(self, starts, ends):
        self.starts = np.sort(np.asarray(starts, dtype=np.int64))
        e = np.asarray(ends, dtype=np.int64)
        self.ends = np.sort(e[e < NEVER])

    def at(self, pos):
        """How many objects are live just after each position ``pos``."""
        pos = np.asarray(pos, dtype=np.int64)
        return (np.searchsorted(self.starts, pos, side="right")
                - np.searchsorted(self.ends, pos, side="right"))

    def __len__(self):
        return len(self.starts)


class LiveCount:
    """A live count built a chunk at a time: +1 at each start, -1 at each
    end (positions), with its peak, end and min (as :func:`summary_intervals`)
    and the value just after each of ``probes`` (:meth:`at`, as Spans.at).
    Starts and ends may be added after the stream has passed them (a design
    that decides late), but not below the last :meth:`settle`: the steps
    below it are folded into the summary and dropped, so what is held is
    the steps of the unsettled stretch, not of the run. At equal positions
    starts come first."""

    def __init__(self, probes=()):
        self.probes = unique(np.asarray(probes, dtype=np.int64))
        self._at = np.zeros(len(self.probes) + 1, dtype=np.int64)   # steps before each probe's next
        self._pos, self._step = [], []
        self.settled = np.iinfo(np.int64).min
        self.steps = 0
        self._count = self._peak = self._min = 0

    def add(self, starts=(), ends=()):
        """Steps at ``starts`` (+1) and ``ends`` (-1), none below the last settle."""
        for at, sign in ((starts, 1), (ends, -1)):
            at = np.asarray(at, dtype=np.int64)
            if not len(at):
                continue
            if at.min() < self.settled:
                raise ValueError(f"a step at {int(at.min())} below the settled position {self.settled}")
            self._pos.append(at)
            self._step.append(np.full(len(at), sign, dtype=np.int8))
            self.steps += len(at)
            if len(self.probes):      # a step at q counts at every probe >= q
                self._at += sign * np.bincount(np.searchsorted(self.probes, at),
                                               minlength=len(self._at))

    def settle(self, upto):
        """Fold the steps below position ``upto`` into the summary."""
        if not self._pos:
            self.settled = max(self.settled, upto)
            return
        pos, step = np.concatenate(self._pos), np.concatenate(self._step)
        done = pos < upto
        if done.any():
            p, s = pos[done], step[done]
            cum = self._count + np.cumsum(s[np.lexsort((-s, p))], dtype=np.int64)
            self._peak = max(self._peak, int(cum.max()))
            self._min = min(self._min, int(cum.min()))
            self._count = int(cum[-1])
            pos, step = pos[~done], step[~done]
        self._pos, self._step = ([pos], [step]) if len(pos) else ([], [])
        self.settled = max(self.settled, upto)

    def summary(self):
        """dict(peak, end, min) of the count from 0 (everything settled)."""
        self.settle(np.iinfo(np.int64).max)
        return {"peak": self._peak, "end": self._count, "min": self._min}

    def at(self, pos):
        """The count just after each position ``pos``, every one a probe."""
        pos = np.asarray(pos, dtype=np.int64)
        i = np.searchsorted(self.probes, pos)
        if (i >= len(self.probes)).any() or (self.probes[np.minimum(i, len(self.probes) - 1)] != pos).any():
            raise KeyError(f"not a probe of this count: {pos}")
        return np.cumsum(self._at)[i]
