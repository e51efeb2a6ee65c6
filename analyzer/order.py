"""Stable sorting of long integer columns.

``np.argsort(kind="stable")`` on tens of millions of int64 keys is a merge
sort; ``np.sort`` of int64 values is a vectorised (SIMD) sort several times
faster. When a key and the row index fit together in 63 bits, the index is
packed below the key and the packed values are sorted: equal keys then keep
their index order, which is a stable argsort.
"""

import numpy as np
import pandas as pd


def stable_argsort(keys, overwrite=False, sorted_keys=False):
    """Same result as ``np.argsort(keys, kind="stable")`` (int64 indices).
    ``overwrite``: ``keys`` (int64) may be used as the work array.
    ``sorted_keys``: return ``(order, keys[order])``."""
    keys = np.asarray(keys)
    n = len(keys)
    if n == 0:
        order = np.zeros(0, dtype=np.int64)
        return (order, keys[order]) if sorted_keys else order
    lo, hi = int(keys.min()), int(keys.max())
    ibits = max((n - 1).bit_length(), 1)
    if (hi - lo).bit_length() + ibits > 63:
        order = np.argsort(keys, kind="stable")
        return (order, keys[order]) if sorted_keys else order
    packed = keys if overwrite and keys.dtype == np.int64 else keys.astype(np.int64)
    if lo:
        packed -= lo
    packed <<= ibits
    packed |= np.arange(n, dtype=np.int64)
    packed.sort()
    if sorted_keys:
        high = packed >> ibits
        if lo:
            high += lo
    packed &= (1 << ibits) - 1
    return (packed, high) if sorted_keys else packed


def unique(values):
    """``np.unique(values)`` (sorted distinct values) of a 1-D numeric
    array. numpy 2.x finds them with a hash set, which on millions of
    distinct values is several times slower than pandas' hash table
    followed by a sort of what it found (3.4 s against 0.36 s for 5 M rows
    with 2 M distinct values here)."""
    return np.sort(pd.unique(np.asarray(values).ravel()))
