"""Big per-page arrays on transparent huge pages.

The event loop touches the per-page arrays at random pfns; with 4K pages of host memory
nearly every such access is also a TLB miss.  Arrays of more than a few MiB get an
anonymous mapping with MADV_HUGEPAGE (THP in `madvise` mode, the common default), which
makes those accesses cheaper.  Falls back to plain numpy where madvise is missing."""
from __future__ import annotations

import mmap

import numpy as np

HPAGE = 2 << 20
MIN_BYTES = 4 * HPAGE  # below this, plain numpy


def zeros(shape, dtype) -> np.ndarray:
    """np.zeros(shape, dtype), 2M-aligned on huge pages when big (a fresh anonymous
    mapping is already zero)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if nbytes < MIN_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.zeros(shape, dtype)
    m = mmap.mmap(-1, nbytes + HPAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(mmap.MADV_HUGEPAGE)
    except OSError:
        pass  # THP off: still correct, just slower
    raw = np.frombuffer(m, np.uint8)
    off = (-raw.ctypes.data) % HPAGE
    return raw[off:off + nbytes].view(dtype).reshape(shape)


def full(shape, value, dtype) -> np.ndarray:
    a = zeros(shape, dtype)
    a.fill(value)
    return a
