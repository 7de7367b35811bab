"""A stable argsort of float64 keys: LSD radix sort, compiled.

The workload sorts the freed objects by free time (tens of millions of random floats);
numpy's argsort takes 2.2 s for 13 M of them, this takes about half of that. Stable, so
equal times keep index order (numpy's quicksort leaves their order unspecified).
"""
import numpy as np

from .jit import njit

DIGIT_BITS = 11
N_BUCKETS = 1 << DIGIT_BITS
N_DIGITS = (64 + DIGIT_BITS - 1) // DIGIT_BITS


@njit
def _sortable_bits(x, out):
    """Map float64 to uint64 with the same order (negatives reversed, sign bit flipped;
    -0.0 as 0.0, which compares equal)."""
    bits = x.view(np.uint64)
    sign = np.uint64(1) << np.uint64(63)
    for i in range(x.shape[0]):
        b = bits[i]
        out[i] = ~b if (b & sign) and b != sign else b | sign


@njit
def _radix_argsort(keys, idx, tmp_keys, tmp_idx, counts, pos):
    """Sorts (keys, idx) by keys, ping-ponging with the tmp arrays; returns the number of
    passes made (odd: the result is in tmp_idx)."""
    n = keys.shape[0]
    mask = np.uint64(N_BUCKETS - 1)
    for i in range(n):  # every digit's histogram in one pass
        k = keys[i]
        for d in range(N_DIGITS):
            counts[d, (k >> np.uint64(d * DIGIT_BITS)) & mask] += 1
    src_k, src_i, dst_k, dst_i = keys, idx, tmp_keys, tmp_idx
    passes = 0
    for d in range(N_DIGITS):
        total = 0
        one_bucket = False
        for b in range(N_BUCKETS):
            pos[b] = total
            total += counts[d, b]
            one_bucket |= counts[d, b] == n
        if one_bucket:
            continue  # every key has the same digit here (e.g. the exponent bits)
        shift = np.uint64(d * DIGIT_BITS)
        for i in range(n):
            k = src_k[i]
            b = (k >> shift) & mask
            p = pos[b]
            dst_k[p] = k
            dst_i[p] = src_i[i]
            pos[b] = p + 1
        src_k, src_i, dst_k, dst_i = dst_k, dst_i, src_k, src_i
        passes += 1
    return passes


def argsort_stable(x: np.ndarray) -> np.ndarray:
    """np.argsort(x, kind="stable") for a 1-D float64 array (NaN-free), as int64."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = x.size
    keys = np.empty(n, np.uint64)
    _sortable_bits(x, keys)
    idx = np.arange(n, dtype=np.int64)
    tmp_idx = np.empty(n, np.int64)
    passes = _radix_argsort(keys, idx, np.empty(n, np.uint64), tmp_idx,
                            np.zeros((N_DIGITS, N_BUCKETS), np.int64), np.empty(N_BUCKETS, np.int64))
    return tmp_idx if passes % 2 else idx
