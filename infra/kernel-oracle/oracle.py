#!/usr/bin/env python3
"""Kernel oracle: boot a real x86-64 Linux kernel under QEMU (TCG) with a tiny
initramfs that runs ONE workload per boot, and read the direct map's state before
and after it (split counters, DirectMap* lines, a page-table walk via /proc/kcore).

Sub-commands (see README.md):

    kernel      fetch and unpack Debian's linux-image-*-amd64-unsigned .deb
    initramfs   build the initramfs (busybox-static + src/oracle.c + modules)
    run         boot each (workload, memory size, vCPUs, repeat) not yet cached
    collect     merge cached boots into results/oracle-<kernel>.json + parquet table
    parse       parse a serial log (debugging)

Output format: the same as shared/reference/oracle-6.1-2G.json (one object per
boot under "runs"), so `load_runs()` / `readouts_table()` read both.

Only the standard library and polars (for the table) are used.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
CACHE = HERE / "cache"
RESULTS = HERE / "results"
SRC = HERE / "src"

DEFAULT_PKG = "linux-image-6.1.0-56-amd64-unsigned"
APPEND = "console=ttyS0 panic=-1 nokaslr secretmem.enable=1 quiet"
CPU = "max,la57=off,rdrand=off,rdseed=off"
ICOUNT = "shift=0,sleep=off,align=off"
RTC = "clock=vm,base=2024-01-01"
QEMU = "qemu-system-x86_64"
MARK = "@@ORACLE "

# counters copied from each readout into the table, and the ones given a delta
COUNTERS = (
    "direct_map_level2_splits",
    "direct_map_level3_splits",
    "DirectMap4k_kB",
    "DirectMap2M_kB",
    "DirectMap1G_kB",
)
PTW_DELTA = {"ptw_split2M": "split2M", "ptw_1G": "1G"}

WORKLOAD_RE = re.compile(r"^(idle|modules|kprobe|ftrace|secretmem:\d+|bpf:\d+x\d+)$")


# --------------------------------------------------------------------------- kernel


def bzimage_release(path: str | os.PathLike) -> str:
    """Kernel release string from a bzImage's setup header (kernel_version field)."""
    data = Path(path).read_bytes()[:0x10000]
    if data[0x202:0x206] != b"HdrS":
        raise ValueError(f"{path}: not a bzImage (no HdrS header)")
    ptr = int.from_bytes(data[0x20E:0x210], "little") + 0x200
    return data[ptr : data.index(b"\0", ptr)].decode().split()[0]


def pkg_release(pkg: str) -> str:
    m = re.match(r"linux-image-(.+?)(-unsigned)?$", pkg)
    if not m:
        raise ValueError(f"not a linux-image package name: {pkg}")
    return m.group(1)


def fetch_kernel(pkg: str = DEFAULT_PKG) -> Path:
    """apt-get download + dpkg-deb -x (not installed). Returns the unpack root."""
    rel = pkg_release(pkg)
    root = WORK / "kernel" / rel / "root"
    if (root / "boot" / f"vmlinuz-{rel}").exists():
        return root
    dl = WORK / "deb"
    dl.mkdir(parents=True, exist_ok=True)
    debs = sorted(dl.glob(f"{pkg}_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", pkg], cwd=dl, check=True)
        debs = sorted(dl.glob(f"{pkg}_*.deb"))
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(root)], check=True)
    return root


@dataclass(frozen=True)
class Kernel:
    image: Path          # bzImage
    release: str         # e.g. 6.1.0-56-amd64 (cache key)
    modules: Path | None  # lib/modules/<release> of the same build, if known

    @property
    def name(self) -> str:
        return self.release


def resolve_kernel(kernel: str | None = None, modules: str | None = None) -> Kernel:
    """KERNEL=/path/bzImage, or a release/package name, or the one unpacked in work/."""
    if kernel and Path(kernel).is_file():
        img = Path(kernel).resolve()
        rel = bzimage_release(img)
        mods = Path(modules) if modules else None
        if mods is None:
            guess = img.parent.parent / "lib" / "modules" / rel
            mods = guess if guess.is_dir() else None
        return Kernel(img, rel, mods)
    if kernel:
        rel = pkg_release(kernel) if kernel.startswith("linux-image-") else kernel
        cands = [WORK / "kernel" / rel / "root"]
    else:
        cands = sorted((WORK / "kernel").glob("*/root"))
    for root in cands:
        imgs = sorted((root / "boot").glob("vmlinuz-*"))
        if imgs:
            rel = imgs[-1].name.removeprefix("vmlinuz-")
            mods = root / "lib" / "modules" / rel
            return Kernel(imgs[-1], rel, Path(modules) if modules else (mods if mods.is_dir() else None))
    raise FileNotFoundError("no kernel: run `make kernel` or pass KERNEL=/path/to/bzImage")


# ------------------------------------------------------------------------ initramfs


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio 'newc' archive (deterministic: mtime 0, uid/gid 0)."""
    out = io.BytesIO()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        nb = name.encode() + b"\0"
        hdr = "070701" + "".join(
            f"{v:08x}"
            for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0)
        )
        out.write(hdr.encode() + nb)
        out.write(b"\0" * (-(110 + len(nb)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
        ino += 1
    return out.getvalue()


def module_list() -> list[str]:
    return [ln.strip() for ln in (HERE / "modules.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def build_oracle_binary() -> Path:
    out = WORK / "bin" / "oracle"
    src = SRC / "oracle.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-Wall", "-static", "-o", str(out), str(src)], check=True)
    return out


def build_initramfs(k: Kernel, busybox: str = "/bin/busybox") -> Path:
    """work/initramfs/<release>.cpio (uncompressed); rebuilt when an input is newer.

    Uncompressed on purpose: the initrd's size and place (QEMU puts it at the top of
    low RAM) shape the free lists the workloads allocate from. An uncompressed cpio
    (~10 MB with the modules) reproduces the reference's free-page layout; a 3 MB
    gzip one does not (secretmem:512 splits 2 regions instead of 1)."""
    out = WORK / "initramfs" / f"{k.release}.cpio"
    binary = build_oracle_binary()
    inputs = [binary, SRC / "init.sh", HERE / "modules.txt", Path(busybox), Path(__file__)]
    if out.exists() and all(out.stat().st_mtime >= p.stat().st_mtime for p in inputs):
        return out
    bb = Path(busybox).read_bytes()
    if b"GNU/Linux" not in bb[:4096] and not bb.startswith(b"\x7fELF"):
        raise RuntimeError(f"{busybox} is not an ELF binary")
    D, F, X = 0o040755, 0o100644, 0o100755
    entries = [(d, D, b"") for d in ("bin", "sbin", "dev", "proc", "sys", "tmp", "lib", "lib/modules")]
    entries += [
        ("bin/busybox", X, bb),
        ("bin/sh", 0o120777, b"busybox"),
        ("init", X, (SRC / "init.sh").read_bytes()),
        ("oracle", X, binary.read_bytes()),
    ]
    names = []
    if k.modules is not None:
        for rel in module_list():
            p = k.modules / "kernel" / f"{rel}.ko"
            data = None
            for cand, dec in ((p, None), (p.with_suffix(".ko.xz"), "xz"), (p.with_suffix(".ko.zst"), "zstd")):
                if cand.exists():
                    data = cand.read_bytes()
                    if dec:
                        data = subprocess.run([dec, "-dc"], input=data, capture_output=True, check=True).stdout
                    break
            if data is None:
                print(f"warning: module {rel} not found under {k.modules}", file=sys.stderr)
                continue
            name = Path(rel).name
            names.append(name)
            entries.append((f"lib/modules/{name}.ko", F, data))
    entries.append(("modules.txt", F, ("\n".join(names) + "\n").encode()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(_newc(entries))
    tmp.replace(out)
    return out


# ------------------------------------------------------------------------ parsing


def parse_serial(text: str) -> dict:
    """Parse the guest's console output: '@@ORACLE <KIND> <payload>' lines.

    Markers may be preceded by console noise on the same line; JSON payloads are
    one line each. Returns meta, events, e820, readouts, vmalloc, done, uptime."""
    res: dict = {"meta": {}, "events": [], "e820": [], "zoneinfo": [], "buddyinfo": [],
                 "readouts": [], "vmalloc": [],
                 "done": False, "guest_uptime_at_done": None, "errors": [], "begin": None}
    for raw in text.splitlines():
        line = raw.replace("\r", "")
        i = line.find(MARK)
        if i < 0:
            continue
        kind, _, payload = line[i + len(MARK):].partition(" ")
        try:
            if kind == "BEGIN":
                res["begin"] = payload
            elif kind == "META":
                res["meta"] = json.loads(payload)
            elif kind == "EVENT":
                res["events"].append(payload)
            elif kind == "E820":
                res["e820"].append(payload)
            elif kind == "ZONEINFO":
                res["zoneinfo"].append(payload)
            elif kind == "BUDDYINFO":
                res["buddyinfo"].append(payload)
            elif kind == "READOUT":
                res["readouts"].append(json.loads(payload))
            elif kind == "VMALLOC":
                res["vmalloc"] = json.loads(payload)
            elif kind == "DONE":
                res["done"] = True
                m = re.search(r"uptime=([\d.]+)", payload)
                res["guest_uptime_at_done"] = float(m.group(1)) if m else None
        except json.JSONDecodeError as e:
            res["errors"].append(f"{kind}: {e}")
    add_deltas(res["readouts"])
    return res


def add_deltas(readouts: list[dict]) -> None:
    """delta of each readout vs the first ('boot') one, as in the reference."""
    if not readouts:
        return
    b = readouts[0]
    for r in readouts:
        d = {k: r[k] - b[k] for k in COUNTERS if k in r and k in b}
        for name, key in PTW_DELTA.items():
            if "ptw_total" in r and "ptw_total" in b:
                d[name] = r["ptw_total"][key] - b["ptw_total"][key]
        r["delta"] = d


# ------------------------------------------------------------------------- running


def config_name(vcpus: int, mem: str) -> str:
    return f"s{vcpus}_m{mem}"


def wl_file(workload: str) -> str:
    return workload.replace(":", "-")


def cache_path(kernel: str, workload: str, mem: str, vcpus: int, repeat: int,
               cache: Path = CACHE) -> Path:
    """Cache key = kernel + workload + memory size + vCPUs + repeat."""
    return cache / kernel / config_name(vcpus, mem) / f"{wl_file(workload)}_r{repeat}.json"


def qemu_cmd(k: Kernel, initrd: Path, workload: str, mem: str, vcpus: int,
             qemu: str = QEMU) -> tuple[list[str], str]:
    append = f"{APPEND} wl={workload}"
    cmd = [qemu, "-accel", "tcg", "-cpu", CPU, "-m", mem, "-smp", str(vcpus)]
    if vcpus == 1:  # -icount hangs with 2 vCPUs (see shared/reference/README.md)
        cmd += ["-icount", ICOUNT]
    cmd += ["-rtc", RTC, "-nographic", "-no-reboot",
            "-kernel", str(k.image), "-initrd", str(initrd), "-append", append]
    return cmd, append


def boot_once(k: Kernel, initrd: Path, workload: str, mem: str, vcpus: int, repeat: int,
              timeout: float = 600, qemu: str = QEMU) -> dict:
    """Boot once, return the run record (reference shape)."""
    cfg = config_name(vcpus, mem)
    cmd, append = qemu_cmd(k, initrd, workload, mem, vcpus, qemu)
    logdir = WORK / "logs" / k.name / cfg
    logdir.mkdir(parents=True, exist_ok=True)
    log = logdir / f"{wl_file(workload)}_r{repeat}.log"
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout)
        text, rc = p.stdout.decode(errors="replace"), p.returncode
    except subprocess.TimeoutExpired as e:
        text, rc = (e.stdout or b"").decode(errors="replace"), "timeout"
    wall = time.monotonic() - t0
    log.write_text(text)
    res = parse_serial(text)
    meta = res["meta"]
    return {
        "log": log.name,
        "events": res["events"],
        "kver": "".join(k.release.split(".")[:2]),
        "cfg": cfg,
        "wl": workload,
        "rep": str(repeat),
        "wall_s": f"{wall:.2f}",
        "kernel_image": k.image.name if k.image.name.startswith("vmlinuz") else f"vmlinuz-{k.release}",
        "append": append,
        "qemu": " ".join(cmd[1:cmd.index("-kernel")]),
        "kernel_release": meta.get("kernel_release", k.release),
        "workload": workload,
        "cmdline": meta.get("cmdline", append),
        "guest_pdpe1gb": meta.get("guest_pdpe1gb"),
        "guest_la57": meta.get("guest_la57"),
        "guest_ncpu": meta.get("guest_ncpu"),
        "bpf_jit_enable": meta.get("bpf_jit_enable"),
        "ptdump_debugfs": meta.get("ptdump_debugfs"),
        "memtotal_kb": meta.get("memtotal_kb"),
        "vmalloc_ro_candidates": res["vmalloc"],
        "done": res["done"],
        "guest_uptime_at_done": res["guest_uptime_at_done"],
        "readouts": res["readouts"],
        # additions (not in the reference):
        "kernel": k.name,
        "config": cfg,
        "repeat": repeat,
        "e820": res["e820"],
        "zoneinfo": res["zoneinfo"],
        "buddyinfo": res["buddyinfo"],
        "qemu_rc": rc,
        "parse_errors": res["errors"],
    }


def expected_labels(workload: str) -> list[str]:
    """Readout labels a complete boot of `workload` prints, in order."""
    kind, _, arg = workload.partition(":")
    tail = {
        "idle": ["idle_5s"],
        "secretmem": [f"secretmem_{arg}_mapped", f"secretmem_{arg}_freed"],
        "bpf": [f"bpf_{arg}_loaded", f"bpf_{arg}_closed"],
        "modules": ["modules_loaded", "modules_unloaded"],
        "kprobe": ["kprobes_enabled", "kprobes_removed"],
        "ftrace": ["ftrace_function", "ftrace_graph", "ftrace_off"],
    }[kind]
    return ["boot"] + tail


def run_ok(run: dict) -> bool:
    """Complete: DONE seen, every expected readout present, the walk read everything,
    and no workload command failed (an "RC n" event with n != 0)."""
    labels = [r.get("label") for r in run.get("readouts", [])]
    wl = run.get("wl") or run.get("workload")
    return bool(run.get("done")) and labels == expected_labels(wl) and \
        all(r.get("ptw_ok", True) and not r.get("ptw_read_errors") for r in run["readouts"]) and \
        not any(re.fullmatch(r"RC [1-9]\d*", e) for e in run.get("events", []))


def run_matrix(k: Kernel, workloads: list[str], mems: list[str], vcpus_list: list[int],
               repeats: int, jobs: int = 2, timeout: float = 600, force: bool = False,
               cache: Path = CACHE, boot=None) -> list[Path]:
    """Boot every (workload, mem, vcpus, repeat) whose cache file is missing.

    `boot(workload, mem, vcpus, repeat) -> run dict` defaults to a real QEMU boot
    (tests pass a fake). Only complete runs are cached; failures are reported."""
    for w in workloads:
        if not WORKLOAD_RE.match(w):
            raise ValueError(f"unknown workload {w!r}")
    todo, paths = [], []
    for mem in mems:
        for v in vcpus_list:
            for w in workloads:
                for r in range(1, repeats + 1):
                    p = cache_path(k.name, w, mem, v, r, cache)
                    paths.append(p)
                    if p.exists() and not force:
                        print(f"cached  {p.relative_to(cache)}")
                    else:
                        todo.append((w, mem, v, r, p))
    if not todo:
        return paths
    if boot is None:
        initrd = build_initramfs(k)

        def boot(w, mem, v, r):
            return boot_once(k, initrd, w, mem, v, r, timeout=timeout)

    def one(item):
        w, mem, v, r, p = item
        run = boot(w, mem, v, r)
        if run_ok(run):
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_text(json.dumps(run, indent=1))
            tmp.replace(p)
            d = run["readouts"][-1].get("delta", {})
            print(f"booted  {p.relative_to(cache)}  wall {run['wall_s']} s  "
                  f"readouts {len(run['readouts'])}  dL2 {d.get('direct_map_level2_splits')}  "
                  f"d4k {d.get('DirectMap4k_kB')}", flush=True)
        else:
            print(f"FAILED  {p.relative_to(cache)}  (rc {run.get('qemu_rc')}, done {run.get('done')}, "
                  f"readouts {len(run.get('readouts', []))}; log {run.get('log')})", flush=True)
        return run

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex:
        list(ex.map(one, todo))
    return paths


# ------------------------------------------------------------------------- collect


def load_runs(src: str | os.PathLike | dict) -> list[dict]:
    """Runs from a merged file (ours or the reference) or a dict {"runs": [...]}"""
    d = src if isinstance(src, dict) else json.loads(Path(src).read_text())
    return d["runs"]


def collect_cache(kernel: str, cache: Path = CACHE) -> dict:
    runs = [json.loads(p.read_text()) for p in sorted((cache / kernel).glob("*/*.json"))]
    runs.sort(key=lambda r: (r["cfg"], r["wl"], int(r["rep"])))
    return {"runs": runs}


def run_kernel(run: dict) -> str:
    return run.get("kernel") or run.get("kernel_release") or \
        run.get("kernel_image", "?").removeprefix("vmlinuz-")


def readouts_table(runs: list[dict]):
    """polars DataFrame: one row per readout, with the counters and deltas vs boot."""
    import polars as pl

    rows = []
    for run in runs:
        for i, r in enumerate(run["readouts"]):
            pt = r.get("ptw_total", {})
            d = r.get("delta", {})
            row = {
                "kernel": run_kernel(run),
                "config": run.get("cfg") or run.get("config"),
                "workload": run.get("wl") or run.get("workload"),
                "repeat": int(run.get("rep", run.get("repeat", 0))),
                "idx": i,
                "label": r["label"],
                "uptime": float(r.get("uptime", 0.0)),
            }
            for c in COUNTERS:
                row[c] = int(r.get(c, 0))
            for key in ("1G", "2M", "split2M", "4K", "4Knp", "ro2M", "ro4K"):
                row[f"ptw_{key}"] = int(pt.get(key, 0))
            for c in COUNTERS:
                row[f"d_{c}"] = int(d.get(c, 0))
            for name in PTW_DELTA:
                row[f"d_{name}"] = int(d.get(name, 0))
            rows.append(row)
    return pl.DataFrame(rows)


def write_collect(kernel: str, cache: Path = CACHE, results: Path = RESULTS) -> Path:
    import polars as pl

    merged = collect_cache(kernel, cache)
    if not merged["runs"]:
        raise SystemExit(f"nothing cached under {cache / kernel}")
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"oracle-{kernel}.json"
    # one run per line: valid JSON, about half the size of an indented dump, diffs per run
    out.write_text('{"runs": [\n' + ",\n".join(json.dumps(r, separators=(",", ":"))
                                               for r in merged["runs"]) + "\n]}\n")
    df = readouts_table(merged["runs"])
    pq = results / f"oracle-{kernel}.parquet"
    df.write_parquet(pq)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True):
        print(df.select("config", "workload", "repeat", "label", "direct_map_level2_splits",
                        "direct_map_level3_splits", "DirectMap4k_kB", "DirectMap2M_kB",
                        "DirectMap1G_kB", "ptw_1G", "ptw_split2M", "d_direct_map_level2_splits",
                        "d_DirectMap4k_kB", "d_ptw_split2M"))
    print(f"wrote {out} ({len(merged['runs'])} runs) and {pq}")
    return out


def compare(ours: str | os.PathLike, reference: str | os.PathLike):
    """Per (config, workload, label): our delta vs the reference's (repeat 1 of each)."""
    import polars as pl

    keys = ["config", "workload", "idx", "label"]
    cols = ["d_direct_map_level2_splits", "d_DirectMap4k_kB", "d_ptw_split2M"]
    a = readouts_table(load_runs(ours)).filter(pl.col("repeat") == 1).select(keys + cols)
    b = readouts_table(load_runs(reference)).filter(pl.col("repeat") == 1).select(keys + cols)
    df = a.join(b, on=keys, how="left", suffix="_ref").sort(keys)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, tbl_hide_dataframe_shape=True):
        print(df)
    return df


# ----------------------------------------------------------------------------- CLI


def _split(s: str) -> list[str]:
    return [x for x in re.split(r"[,\s]+", s.strip()) if x]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("kernel", help="apt-get download + unpack a linux-image .deb")
    a.add_argument("--pkg", default=os.environ.get("KERNEL_PKG", DEFAULT_PKG))
    for name in ("initramfs", "run", "collect"):
        s = sub.add_parser(name)
        s.add_argument("--kernel", default=os.environ.get("KERNEL") or None,
                       help="path to a bzImage, or a release (6.1.0-56-amd64); default: the unpacked one")
        s.add_argument("--modules", default=os.environ.get("MODULES_DIR") or None,
                       help="lib/modules/<release> for the modules workload")
        if name == "run":
            s.add_argument("--workloads", default="idle")
            s.add_argument("--mem", default="2G")
            s.add_argument("--vcpus", default="1")
            s.add_argument("--repeats", type=int, default=1)
            s.add_argument("--jobs", type=int, default=2, help="parallel QEMU boots")
            s.add_argument("--timeout", type=float, default=600)
            s.add_argument("--force", action="store_true", help="boot even when cached")
    c = sub.add_parser("compare", help="deltas of a results file vs the shared reference")
    c.add_argument("results")
    c.add_argument("--reference", default=str(HERE.parents[1].parent / "shared" / "reference" / "oracle-6.1-2G.json"))
    p = sub.add_parser("parse", help="parse a serial log and print the readouts")
    p.add_argument("log")
    args = ap.parse_args(argv)

    if args.cmd == "kernel":
        print(fetch_kernel(args.pkg))
        return 0
    if args.cmd == "compare":
        compare(args.results, args.reference)
        return 0
    if args.cmd == "parse":
        print(json.dumps(parse_serial(Path(args.log).read_text(errors="replace")), indent=1))
        return 0
    if args.cmd == "collect" and args.kernel and not Path(args.kernel).is_file():
        write_collect(pkg_release(args.kernel) if args.kernel.startswith("linux-image-") else args.kernel)
        return 0
    k = resolve_kernel(args.kernel, args.modules)
    if args.cmd == "initramfs":
        print(build_initramfs(k))
    elif args.cmd == "run":
        if not shutil.which(QEMU):
            raise SystemExit(f"{QEMU} not found: make deps")
        paths = run_matrix(k, _split(args.workloads), _split(args.mem),
                           [int(v) for v in _split(args.vcpus)], args.repeats,
                           jobs=args.jobs, timeout=args.timeout, force=args.force)
        missing = [p for p in paths if not p.exists()]
        if missing:
            print(f"{len(missing)} boot(s) failed", file=sys.stderr)
            return 1
    elif args.cmd == "collect":
        write_collect(k.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
