"""Is numba's on-disk cache of the model warm on this machine? If not, compile it once.

The first compile of the event loop takes minutes; every later process loads numba's cache
in about a second. `ensure_warm()` compiles under a file lock next to that cache, so that the
processes of one machine (Ray workers, test processes) compile once and the others wait and
then load the cache, and it tells whoever waits how long it will take (the last measured
compile time on this machine, or an estimate).
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

# The first compile on a reference machine (a 2-core AMD EPYC VM, measured in the tenth
# session): seconds with two CPUs (helper process) or one, and _cpu_probe_s there. Before a
# compile was measured on a machine, its time is guessed from these (estimated_compile_s).
REF_COMPILE_S = {1: 122, 2: 86}
REF_PROBE_S = 0.0073
TINY = ["machine=small", "workload=idle", "workload.duration_s=1", "policy=none"]
# the same run without the boot's own allocations (kernel_init: no run_boot_ops): the event loop
NO_BOOT_OPS = TINY + ["machine.boot_kernel_kb=0", "machine.boot_initrd_kb=0", "machine.boot_pagecache_kb=0"]
_warm_key: Optional[str] = None  # this process saw the cache warm for this key


def cache_dir() -> Path:
    """Where numba caches sim/'s functions (NUMBA_CACHE_DIR, else sim/__pycache__ when
    writable), and where the marker and the lock live."""
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env:
        return Path(env)
    d = Path(__file__).resolve().parent / "__pycache__"
    try:
        d.mkdir(exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    return Path.home() / ".cache" / "dmfrag-numba"


def _key() -> str:
    """sim/'s sources, numba, Python and the CPU: what numba's cached code depends on."""
    import llvmlite.binding as ll
    import numba

    h = hashlib.sha256()
    for f in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update(f"{numba.__version__} {sys.version} {ll.get_host_cpu_name()}".encode())
    return h.hexdigest()[:16]


def _marker(key: str) -> Path:
    return cache_dir() / f"dmfrag-warm-{key}.json"


def is_warm() -> bool:
    """True when this machine's cache holds the compiled model for the current sources."""
    import numba

    if numba.config.DISABLE_JIT:
        return True
    key = _key()
    if key == _warm_key:
        return True
    return _marker(key).exists() and any(cache_dir().glob("*.nbi"))


def _loop_cached() -> bool:
    """numba's index file of the event loop exists (its code was compiled here before)."""
    try:
        from .engine import run_events

        return Path(run_events._cache._cache_file._index_path).exists()
    except Exception:  # numba internals moved: any index file
        return any(cache_dir().glob("*.nbi"))


def _loop_compiled() -> bool:
    """The event loop was compiled (not loaded from the cache) in this process."""
    try:
        from .engine import run_events

        return sum(run_events.stats.cache_misses.values()) > 0
    except Exception:
        return True


def needs_compile() -> bool:
    """A process of this machine would compile the model now (nothing cached for it)."""
    return not is_warm() and not _loop_cached()


def _cpu_probe_s() -> float:
    """Seconds for a fixed piece of pure-Python work (tuples, dicts, lists, as numba's typing
    and lowering make), the best of 5 (~40 ms in all)."""
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        d = {}
        for i in range(40000):
            d[(i & 1023, i % 7)] = [str(i), i * 0.5]
        best = min(best, time.perf_counter() - t0)
    return best


@functools.lru_cache(maxsize=None)
def estimated_compile_s() -> int:
    """A guess of the first compile on this machine: the reference machine's, scaled by how
    long _cpu_probe_s takes here (numba's compile is single-threaded Python and LLVM work)."""
    ref = REF_COMPILE_S[2 if usable_cpus() >= 2 else 1]
    return max(10, int(round(ref * _cpu_probe_s() / REF_PROBE_S)))


def expected_compile_s() -> int:
    """The last compile time measured on this machine, else estimated_compile_s()."""
    try:
        return int(round(float((cache_dir() / "dmfrag-compile-seconds").read_text())))
    except (OSError, ValueError):
        return estimated_compile_s()


def ensure_warm(say: Optional[Callable[[str], None]] = None) -> Optional[float]:
    """Compile the model unless the cache is warm; one process per machine compiles, the
    others wait on the lock and then load the cache. Returns the compile seconds if this
    process compiled, else None. `say` gets one line for whoever waits."""
    global _warm_key
    if is_warm():
        return None
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    n = expected_compile_s()
    with open(d / "dmfrag-compile.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if say and not _loop_cached():
                say(f"waiting for another process compiling the model for this machine, once: about {n} s")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            key = _key()
            if is_warm():
                _warm_key = key
                return None
            cold = not _loop_cached()
            if cold and say:
                say(f"compiling the model for this machine, once: about {n} s")
            t0 = time.perf_counter()
            _compile_model(cold)
            dt = time.perf_counter() - t0
            compiled = cold or _loop_compiled()
            if compiled:
                (d / "dmfrag-compile-seconds").write_text(f"{dt:.1f}\n")
                if say:
                    say(f"model compiled in {dt:.0f} s; cached in {d}")
            _marker(key).write_text(json.dumps({"compile_s": round(dt, 1) if compiled else None,
                                                "pid": os.getpid()}) + "\n")
            _warm_key = key
            return dt if compiled else None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def usable_cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _compile_model(cold: bool) -> None:
    """Run the tiny simulation, which compiles (or loads) every model function. Cold, with two
    CPUs or more, the work is split over two processes: numba compiles one function at a time
    in a process, and two thirds of the first compile is the event loop (`run_events` and what
    it calls), one third the boot's `run_boot_ops`. A helper process compiles the loop (a run
    without boot ops) while this one boots (compiling `run_boot_ops`), then compiles the loop's
    late callees and the step API's entry points while the helper is still at work; then this
    process runs the tiny simulation, which loads the helper's loop from numba's cache. Functions both
    need are compiled by whichever gets there first (numba saves each one's cache on its
    own, atomically), or by both. If the helper fails, this process compiles what is missing."""
    from .hydra_conf import load_config
    from .simulate import Run, simulate, to_sim_config

    helper = None
    if cold and usable_cpus() >= 2:
        root = str(Path(__file__).resolve().parents[1])
        code = f"import sys; sys.path.insert(0, {root!r}); from sim.jitcache import _compile_loop; _compile_loop()"
        # this process's environment as it is: with or without NUMBA_CACHE_DIR, numba places
        # its cache files differently (a user-provided cache dir gets per-source subfolders)
        helper = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
    try:
        if helper is not None:
            run = Run(to_sim_config(load_config(TINY)))  # the boot: run_boot_ops, its allocator
            # then, while the helper works on: what it reaches last, and the step API's entry
            # points, each only if the helper is still at work (never lengthens the compile)
            for disp, sig in late_callees(run) + step_api_entries(run):
                if helper.poll() is not None:
                    break
                disp.compile(sig)
            helper.wait()
        simulate(load_config(TINY))
        if helper is not None and helper.returncode == 0 and _loop_compiled():
            print("dmfrag: the event loop compiled by the helper process was not found in numba's cache; "
                  "compiled it again here", file=sys.stderr)
    finally:
        if helper is not None and helper.poll() is None:
            helper.kill()
            helper.wait()


def _compile_loop() -> None:
    """The helper of _compile_model: the event loop, compiled into numba's cache."""
    from .hydra_conf import load_config
    from .simulate import simulate

    simulate(load_config(NO_BOOT_OPS))


def late_callees(run) -> list:
    """The event loop's callees the helper reaches last, last first (run_events types its calls
    in order: take_sample, policy_shrink, kcompactd, bpf_prog_pack_free, alloc_unmapped ->
    bpf_prog_pack_alloc -> policy_alloc, kswapd_reclaim; __alloc_pages_reclaim,
    apply_alloc_action), with the types run_events passes (integers widened to int64, jit.py):
    the helper loads from the cache whichever of them this process finished first."""
    from numba import typeof, types

    from .engine import __alloc_pages_reclaim, apply_alloc_action, kswapd_reclaim
    from .policy import policy_alloc
    from .prog_pack import bpf_prog_pack_alloc

    st = run.s._replace(alloc_pfn=run.stream.lv.a_pfn)  # as Run.step passes it
    s, lv, on_free, i = typeof(st), typeof(run.stream.lv), typeof(run.stream.ct.on_free), types.int64
    return [(apply_alloc_action, (s, i, i, i)), (__alloc_pages_reclaim, (s, i, i, lv, on_free)),
            (kswapd_reclaim, (s, lv, on_free)), (policy_alloc, (s, i)), (bpf_prog_pack_alloc, (s, i))]


def step_api_entries(run) -> list:
    """What sim.Machine calls from Python (each its own compiled entry point, linking the
    allocator), with the types Python integers give (int64)."""
    from numba import typeof, types

    from . import machine as m

    s, i, b = typeof(run.s), types.int64, types.boolean
    return [(m.alloc_pages_noreclaim, (s, i, i, i, i)), (m.free_pages, (s, i, i, i)),
            (m.policy_free, (s, i, i)), (m.change_page_attr, (s, i, i, i, i, b)),
            (m.set_memory, (s, i, i, i, i, b, b)), (m.flush_tlb_kernel_range, (s, i)),
            (m.drain_all_pages, (s,)), (m.policy_shrink, (s, i)), (m.alloc_pages_direct_compact, (s, i, i, i, i))]
