"""One place that decides how the model's functions are compiled.

`njit` compiles with numba (cached on disk); with NUMBA_DISABLE_JIT=1 numba returns the
plain Python function, so the same code runs uncompiled for debugging.
"""
import numba

njit = numba.njit(cache=True, nogil=True, _nrt=False)
