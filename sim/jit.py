"""One place that decides how the model's functions are compiled.

`njit` compiles with numba (cached on disk); with NUMBA_DISABLE_JIT=1 numba returns the
plain Python function, so the same code runs uncompiled for debugging.
"""
import numba

njit = numba.njit(cache=True, nogil=True, _nrt=False)

# hot wrappers on the per-event path: inlined into their callers at numba IR level, so the
# state's arrays are not passed through a call with a flattened argument list each time
njit_inline = numba.njit(cache=True, nogil=True, _nrt=False, inline="always")
