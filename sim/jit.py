"""One place that decides how the model's functions are compiled.

`njit` compiles with numba (cached on disk); with NUMBA_DISABLE_JIT=1 numba returns the
plain Python function, so the same code runs uncompiled for debugging.
"""
import numba
from numba.core import types


def _widen(t):
    """The type a model function is compiled for: integer arguments (literal or not, any
    width up to int64) as int64, literal booleans as bool."""
    t = types.unliteral(t)
    if isinstance(t, types.Integer) and (t.signed or t.bitwidth < 64):
        return types.int64
    return t


def _one_specialization(disp):
    """Calls from compiled code would otherwise compile one specialization of the callee, and
    of everything it calls, per combination of argument types, literal constants included
    (`__rmqueue(s, 0, mt, False)` vs `__rmqueue(s, order, c_mt[c], steal)`: 12 copies of
    `__rmqueue`, 5 minutes of first compile). Widened, each function compiles once; values
    are cast at the call, and int64 is what the plain-Python run (NUMBA_DISABLE_JIT) computes
    with anyway."""
    if numba.config.DISABLE_JIT:
        return disp
    orig = disp.get_call_template

    def get_call_template(args, kws):
        return orig(tuple(_widen(a) for a in args), {k: _widen(v) for k, v in kws.items()})

    disp.get_call_template = get_call_template
    return disp


MODEL_FUNCTIONS = []  # every dispatcher made by njit(): each should compile exactly once


def njit(fn):
    disp = _one_specialization(numba.njit(cache=True, nogil=True, _nrt=False)(fn))
    MODEL_FUNCTIONS.append(disp)
    return disp


def njit_inline(fn):
    """Hot wrappers on the per-event path: inlined into their callers at numba IR level, so the
    state's arrays are not passed through a call with a flattened argument list each time."""
    return numba.njit(cache=True, nogil=True, _nrt=False, inline="always")(fn)


def _prefetch_intrinsic():
    """prefetch(arr, i): a hint that arr[i] is needed soon (llvm.prefetch, read, keep in
    all cache levels). The event loop knows its future frees, so it issues these a few
    events ahead and the random accesses of many events overlap instead of queueing."""
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, arr, idx):
        def codegen(context, builder, sig, args):
            aryty = sig.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            i = context.cast(builder, args[1], sig.args[1], types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [i], wraparound=False)
            i32 = ir.IntType(32)
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
            fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(arr, idx), codegen

    return prefetch


if numba.config.DISABLE_JIT:
    def prefetch(arr, i):  # noqa: ARG001 - plain Python: nothing to prefetch
        return None
else:
    prefetch = _prefetch_intrinsic()
