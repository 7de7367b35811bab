"""One place that decides how the model's functions are compiled.

`njit` compiles with numba (cached on disk); with NUMBA_DISABLE_JIT=1 numba returns the
plain Python function, so the same code runs uncompiled for debugging.
"""
import gc

import numba
from numba.core import event, types


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


class _NoCollectionsWhileCompiling(event.Listener):
    """numba's compiler makes millions of objects, and Python's cyclic collector (a
    collection every 700 net allocations, a full one every 100 of those) walked them again
    and again: 15-18 % of the first compile's CPU (perf: gc_collect_main, visit_decref; a
    collection every 50,000 allocations still cost 10 %). While a compile runs (outermost
    `numba:compile` event: a real compile, never a cache load) the collector is off, and one
    collection follows it. A compiling process peaks higher: 1.5-1.8 GB instead of 1.1 GB
    (2.8 GB before the other two changes below)."""

    def __init__(self):
        self.depth = 0
        self.was_enabled = True

    def on_start(self, ev):
        if self.depth == 0:
            self.was_enabled = gc.isenabled()
            gc.disable()
        self.depth += 1

    def on_end(self, ev):
        self.depth -= 1
        if self.depth == 0 and self.was_enabled:
            gc.enable()
            gc.collect()


def _inlined_ir_made_once():
    """An `inline="always"` function's IR made once per process, not once per call site.
    numba's InlineWorker runs the untyped pipeline over the callee at every call site, and
    that pipeline inlines the callee's own inline callees again, each deep-copied: a quarter
    of the first compile (py-spy: InlineWorker.run_untyped_passes). The IR of a model
    function depends only on its code (every model function is compiled with the same
    flags), and `inline_ir` deep-copies the blocks it is given before changing them, so the
    IR made at the first call site serves every later one, under a fresh identity (the
    inlined variables are named after it, distinct per call site as before)."""
    import copy

    from numba.core.bytecode import FunctionIdentity
    from numba.core.inline_closurecall import InlineWorker

    orig = InlineWorker.run_untyped_passes
    made = {}

    def run_untyped_passes(self, func, enable_ssa=False):
        if not getattr(func, "__module__", "").startswith(__package__ + "."):
            return orig(self, func, enable_ssa)
        key = (func, enable_ssa)
        if key not in made:
            made[key] = orig(self, func, enable_ssa)
        self.flags.enable_ssa = enable_ssa  # as the pipeline run would have set it
        func_ir = copy.copy(made[key])
        func_ir.func_id = FunctionIdentity.from_function(func)
        return func_ir

    InlineWorker.run_untyped_passes = run_untyped_passes


HOT_LIBRARIES = {"run_events", "expand_window"}  # the event loop, the generator: every optimisation


def _function_passes_only_where_hot():
    """numba optimises each function's IR with the O3 function pipeline as it is added to
    its library, then the library's module (the function and every callee linked in) with
    the O3 module pipeline, which simplifies each function again. For every library but the
    event loop's and the generator's, the first round is skipped: 8 % less first-compile CPU
    (338 vs 368 s side by side), loop speed and counters unchanged (the module pipeline
    leaves the code the loop links in as before; the loop's own library keeps both)."""
    from numba.core import codegen

    lib = codegen.CPUCodeLibrary
    orig = lib._optimize_functions

    def _optimize_functions(self, ll_module):
        if self.name in HOT_LIBRARIES:
            return orig(self, ll_module)
        ll_module.data_layout = self._codegen._data_layout  # what orig sets besides optimising

    lib._optimize_functions = _optimize_functions


if not numba.config.DISABLE_JIT:
    _function_passes_only_where_hot()
    event.register("numba:compile", _NoCollectionsWhileCompiling())
    _inlined_ir_made_once()

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
