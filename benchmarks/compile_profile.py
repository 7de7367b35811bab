"""Where the first numba compile of the model goes: per function, typing vs lowering vs LLVM.

    NUMBA_CACHE_DIR=$(mktemp -d) .venv/bin/python benchmarks/compile_profile.py [--top 25]

Compiles the model from an empty cache (point NUMBA_CACHE_DIR at an empty folder, or `make
clean` first) with numba's event API: `numba:run_pass` (each compiler pass of each function),
`numba:compile` (a dispatcher compiling) and `numba:llvm_lock` (LLVM work: IR
optimisation, code generation). Nested compiles (a callee typed while its caller is being
typed) are subtracted, so each time is exclusive to the function named. The LLVM work is
also split by stage (CPU s, timers around numba's code-library methods): parsing each
function's IR, the function passes, and each library's `finalize` (linking in its callees'
code, the O3 module pipeline, emitting machine code), which numba repeats for every library
over the code of all it calls.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


STAGES = {  # (class, method) -> stage
    ("CPUCodeLibrary", "add_ir_module"): "parse IR text",
    ("CPUCodeLibrary", "_optimize_functions"): "function passes",
    ("CPUCodeLibrary", "finalize"): "finalize (link + module passes + emit)",
    ("CPUCodeLibrary", "_optimize_final_module"): "  module passes (O3)",
    ("JITCodeLibrary", "_finalize_specific"): "  emit machine code",
}


def time_llvm_stages() -> dict:
    """Wrap numba's code-library stages with CPU timers; returns {stage: [seconds, calls]}."""
    from numba.core import codegen

    spent = {stage: [0.0, 0] for stage in STAGES.values()}
    for (cls, meth), stage in STAGES.items():
        klass = getattr(codegen, cls)
        orig = getattr(klass, meth)

        def timed(self, *args, _orig=orig, _stage=stage, **kwargs):
            t0 = time.process_time()
            try:
                return _orig(self, *args, **kwargs)
            finally:
                spent[_stage][0] += time.process_time() - t0
                spent[_stage][1] += 1

        setattr(klass, meth, timed)
    return spent


def profile(overrides):
    from numba.core import event

    import sim

    cfg = sim.load_config(overrides)
    recs = {k: event.install_recorder(k) for k in ("numba:run_pass", "numba:compile", "numba:llvm_lock")}
    with recs["numba:run_pass"] as rp, recs["numba:compile"] as rc, recs["numba:llvm_lock"] as rl:
        t0, c0 = time.perf_counter(), time.process_time()
        sim.simulate(cfg)
        wall = time.perf_counter() - t0
        profile.cpu_s = time.process_time() - c0
    evs = sorted(rp.buffer + rc.buffer + rl.buffer, key=lambda x: x[0])
    return wall, evs


def _pass(name: str) -> str:
    """numba's pass names read 'native_lowering [run_events]': the pass without the function."""
    return (name or "?").split(" [")[0]


def analyse(evs):
    """Per function: {pass: exclusive s}, llvm s; per pass totals."""
    from numba.core.event import EventStatus

    stack = []  # [kind, name, func, start, child_s, llvm_s]
    per_fn = defaultdict(lambda: defaultdict(float))
    per_pass = defaultdict(float)
    llvm_outside = 0.0
    for ts, ev in evs:
        if ev.status == EventStatus.START:
            d = ev.data or {}
            if ev.kind == "numba:run_pass":
                stack.append(["pass", d.get("name"), d.get("qualname"), ts, 0.0, 0.0])
            elif ev.kind == "numba:compile":
                disp = d.get("dispatcher")
                name = getattr(getattr(disp, "py_func", None), "__qualname__", str(disp))
                stack.append(["compile", None, name, ts, 0.0, 0.0])
            else:
                stack.append(["llvm", None, None, ts, 0.0, 0.0])
            continue
        kind, pname, func, start, child, llvm = stack.pop()
        dur = ts - start
        if kind == "llvm":
            # attributed to the frame running (a pass or a dispatcher of the function compiled)
            if stack:
                stack[-1][5] += dur
            else:
                llvm_outside += dur
            continue
        excl = dur - child
        if stack:
            stack[-1][4] += dur
        if kind == "pass":
            per_fn[func][_pass(pname)] += excl - llvm
            per_fn[func]["LLVM"] += llvm
            per_pass[_pass(pname)] += excl - llvm
            per_pass["LLVM"] += llvm
        else:  # compile frame outside passes (dispatcher overhead, cache save)
            per_fn[func]["(dispatcher)"] += excl - llvm
            per_fn[func]["LLVM"] += llvm
            per_pass["(dispatcher)"] += excl - llvm
            per_pass["LLVM"] += llvm
    return per_fn, per_pass, llvm_outside


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("overrides", nargs="*", default=["machine=small", "workload=idle", "workload.duration_s=1",
                                                      "policy=none"])
    a = ap.parse_args()
    stages = time_llvm_stages()
    wall, evs = profile(a.overrides)
    per_fn, per_pass, llvm_outside = analyse(evs)
    tot = sum(per_pass.values()) + llvm_outside
    print(f"simulate() wall {wall:.1f} s, CPU {profile.cpu_s:.1f} s; compile events {tot:.1f} s; "
          f"{len(per_fn)} functions compiled")
    print("\nby pass (exclusive s):")
    for p, s in sorted(per_pass.items(), key=lambda x: -x[1])[:12]:
        print(f"  {p:<40} {s:8.1f}  {100 * s / tot:5.1f} %")
    print(f"  {'(all)':<40} {tot:8.1f}")
    if llvm_outside:
        print(f"  {'LLVM outside any pass':<40} {llvm_outside:8.1f}")
    print("\nLLVM by stage (CPU s):")
    for stage, (sec, calls) in stages.items():
        print(f"  {stage:<40} {sec:8.1f}  ({calls} calls)")
    print(f"\nby function (top {a.top}; exclusive s): total, typing, inlining, lowering, LLVM")
    rows = []
    for f, d in per_fn.items():
        total = sum(d.values())
        typing = sum(v for k, v in d.items() if "type_inference" in k or "typing" in k)
        inlining = sum(v for k, v in d.items() if "inline" in k)
        lowering = sum(v for k, v in d.items() if "lowering" in k)
        rows.append((total, f, typing, inlining, lowering, d.get("LLVM", 0.0)))
    for total, f, typing, inlining, lowering, llvm in sorted(rows, reverse=True)[: a.top]:
        print(f"  {str(f)[:40]:<40} {total:7.1f} {typing:7.1f} {inlining:7.1f} {lowering:7.1f} {llvm:7.1f}")


if __name__ == "__main__":
    main()
