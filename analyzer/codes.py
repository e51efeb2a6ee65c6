"""Integer codes for the string columns read batch by batch (the analyzer
compares codes, never strings, on the object rows)."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _dictionary(arr):
    """Arrow string or dictionary column -> dictionary array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if not pa.types.is_dictionary(arr.type):
        arr = pc.dictionary_encode(arr)
    return arr


class Codes:
    """Global codes for a dictionary column read batch by batch: ``known``
    names first (codes 0..), names outside them appended as they appear.
    ``codes(array)`` maps a batch's dictionary (or string) array to codes."""

    def __init__(self, known=()):
        self.names = list(known)
        self.index = {n: i for i, n in enumerate(self.names)}
        self.known = len(self.names)

    def _code(self, name):
        code = self.index.get(name)
        if code is None:
            code = self.index[name] = len(self.names)
            self.names.append(name)
        return code

    def register(self, arr):
        """Give the names of ``arr``'s dictionary codes, in its order."""
        for n in _dictionary(arr).dictionary.to_pylist():
            self._code(n)

    def codes(self, arr, dtype=np.int32):
        """Codes of ``arr`` (-1 for null), registering new names."""
        arr = _dictionary(arr)
        lut = np.array([self._code(n) for n in arr.dictionary.to_pylist()] + [-1], dtype=dtype)
        idx = arr.indices
        idx = (pc.fill_null(idx, -1) if idx.null_count else idx).to_numpy(zero_copy_only=False)
        return lut[idx]
