"""Profile the compiled event loop with Linux perf, with the model's function names.

numba's machine code has no symbols perf can see. This runs one simulation and writes
/tmp/perf-<pid>.map (perf's format for JIT code) from the symbol table of the compiled
`run_events` object (numba keeps it for its on-disk cache), so `perf report` names the
model's functions instead of `[JIT] tid ...`:

    perf record -F 4999 -o /tmp/loop.data .venv/bin/python benchmarks/perf_map.py machine.mem_mib=65536 workload=mixed
    perf report -i /tmp/loop.data --no-children --sort sym

Functions inlined into `run_events` (the allocation fast path, the free path) count as
`run_events`; the object file is also saved (/tmp/run_events.o) for `objdump -d`, to map
hot addresses (sample address - the printed base) to instructions.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from numba.core import codegen

OBJ = Path("/tmp/run_events.o")
_objects: dict[str, bytes] = {}


def _keep_objects() -> None:
    """Keep each library's object code: numba hands it to LLVM and then drops it."""
    lib = codegen.CPUCodeLibrary
    set_obj, compiled_hook = lib._set_compiled_object, lib._object_compiled_hook.__func__

    def _set(self, value):
        _objects[self.name] = value
        return set_obj(self, value)

    def _hook(cls, ll_module, buf):
        library = getattr(ll_module, "_CPUCodeLibrary__library", None)
        if library is not None:
            _objects[library.name] = buf
        return compiled_hook(cls, ll_module, buf)

    lib._set_compiled_object = _set
    lib._object_compiled_hook = classmethod(_hook)


def write_perf_map(dispatcher) -> int:
    """perf-<pid>.map lines for every function in the dispatcher's object code."""
    cres = next(iter(dispatcher.overloads.values()))
    OBJ.write_bytes(_objects[cres.library.name])
    nm = subprocess.run(["nm", "-S", "--defined-only", str(OBJ)], capture_output=True, text=True, check=True)
    syms = [(int(a, 16), int(n, 16), name) for a, n, kind, name in
            (line.split() for line in nm.stdout.splitlines() if len(line.split()) == 4)
            if kind in "tTwW"]  # code only: data symbols' offsets are relative to other sections
    entry = cres.fndesc.llvm_func_name
    base = cres.library.get_pointer_to_function(entry) - next(a for a, _, name in syms if name == entry)
    with open(f"/tmp/perf-{os.getpid()}.map", "w") as f:
        for a, n, name in syms:
            f.write(f"{base + a:x} {n:x} {name}\n")
    return base


def main() -> None:
    _keep_objects()
    import sim
    from sim import engine

    r = sim.simulate(sim.load_config(sys.argv[1:]))
    base = write_perf_map(engine.run_events)
    print(f"{r.n_events:,} events, loop {r.events_per_second / 1e6:.2f} M events/s; "
          f"perf map /tmp/perf-{os.getpid()}.map, object {OBJ} at base {base:#x}")


if __name__ == "__main__":
    main()
