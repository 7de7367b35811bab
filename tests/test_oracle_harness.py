"""Tests of the kernel-oracle harness (infra/kernel-oracle/oracle.py).

Fast tests need no QEMU: the parser on the shared reference JSON and on a captured
serial log (tests/data/), the cache key and the skip-when-cached logic. One test
marked `oracle` boots the idle workload once under QEMU (skipped when QEMU or the
kernel is missing).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORACLE_PY = ROOT / "infra" / "kernel-oracle" / "oracle.py"
DATA = Path(__file__).resolve().parent / "data"
SERIAL_LOG = DATA / "oracle_serial_idle_s1_m2G.log"
REFERENCE = ROOT.parent / "shared" / "reference" / "oracle-6.1-2G.json"


def _load_oracle():
    spec = importlib.util.spec_from_file_location("kernel_oracle", ORACLE_PY)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["kernel_oracle"] = mod
    spec.loader.exec_module(mod)
    return mod


oracle = _load_oracle()

READOUT_KEYS = {
    "label", "uptime", "split2M", "gbmap", "DirectMap4k_kB", "DirectMap2M_kB",
    "DirectMap1G_kB", "direct_map_level2_splits", "direct_map_level3_splits",
    "ptw_levels", "page_offset_base", "ptw_ktext", "ptw_total", "delta",
}


# ------------------------------------------------------------------- serial parser


def test_parse_captured_serial_log():
    res = oracle.parse_serial(SERIAL_LOG.read_text(errors="replace"))
    assert res["done"] and not res["errors"]
    assert [r["label"] for r in res["readouts"]] == ["boot", "idle_5s"]
    boot = res["readouts"][0]
    assert READOUT_KEYS <= set(boot)
    assert boot["page_offset_base"] == "0xffff888000000000" and boot["ptw_levels"] == 4
    pt = boot["ptw_total"]
    # the walk covers 2 GiB: every PMD of the direct map is a 2M leaf or split
    assert pt["2M"] + pt["split2M"] == 1024 and pt["1G"] == 0
    assert len(boot["split2M"]) == pt["split2M"]
    assert pt["4K"] + pt["4Knp"] == 512 * pt["split2M"]
    assert sum(s["present"] for s in boot["split2M"]) == pt["4K"]
    # gbmap: one char per 2M, 's' marks the split regions
    gb = "".join(boot["gbmap"][k] for k in sorted(boot["gbmap"], key=int))
    assert len(gb) == 1024 and gb.count("s") == pt["split2M"]
    splits = [int(s["pa"], 16) >> 21 for s in boot["split2M"]]
    assert [i for i, c in enumerate(gb) if c == "s"] == splits
    # DirectMap lines agree with the walk (2G guest: no kernel-image double count)
    assert boot["DirectMap4k_kB"] + boot["DirectMap2M_kB"] == pt["2M"] * 2048 + pt["4K"] * 4
    assert boot["iomem_system_ram"][0]["start"] == "0x1000"
    assert res["meta"]["kernel_release"].startswith("6.1.0")
    assert any(e.startswith("BIOS-e820") for e in res["e820"])
    assert any("zone DMA32" in z for z in res["zoneinfo"]) and len(res["buddyinfo"]) >= 2
    assert all(v == 0 for r in res["readouts"] for v in r["delta"].values())
    assert res["guest_uptime_at_done"] > 5


def test_parse_tolerates_console_noise_and_bad_lines():
    text = SERIAL_LOG.read_text(errors="replace")
    readout = next(ln for ln in text.splitlines() if "@@ORACLE READOUT" in ln)
    noisy = ("[    3.1] random: crng init done\r\n"
             "[    3.2] some message" + readout.replace("\r", "") + "\r\n"
             "@@ORACLE READOUT {\"label\": truncated\n"
             "@@ORACLE DONE uptime=4.50\r\n")
    res = oracle.parse_serial(noisy)
    assert len(res["readouts"]) == 1 and res["readouts"][0]["label"] == "boot"
    assert len(res["errors"]) == 1 and res["done"] and res["guest_uptime_at_done"] == 4.5


def test_deltas_vs_boot():
    ros = [
        {"label": "boot", "direct_map_level2_splits": 0, "direct_map_level3_splits": 0,
         "DirectMap4k_kB": 100, "DirectMap2M_kB": 4096, "DirectMap1G_kB": 0,
         "ptw_total": {"split2M": 7, "1G": 1}},
        {"label": "x", "direct_map_level2_splits": 2, "direct_map_level3_splits": 1,
         "DirectMap4k_kB": 4196, "DirectMap2M_kB": 0, "DirectMap1G_kB": 0,
         "ptw_total": {"split2M": 9, "1G": 0}},
    ]
    oracle.add_deltas(ros)
    assert ros[0]["delta"]["direct_map_level2_splits"] == 0
    assert ros[1]["delta"] == {
        "direct_map_level2_splits": 2, "direct_map_level3_splits": 1, "DirectMap4k_kB": 4096,
        "DirectMap2M_kB": -4096, "DirectMap1G_kB": 0, "ptw_split2M": 2, "ptw_1G": -1,
    }


# ---------------------------------------------------------------- reference / table


@pytest.mark.skipif(not REFERENCE.exists(), reason=f"{REFERENCE} not present")
def test_reference_loads_into_table():
    runs = oracle.load_runs(REFERENCE)
    df = oracle.readouts_table(runs)
    assert df.height == sum(len(r["readouts"]) for r in runs)
    assert set(df["kernel"].unique()) == {"6.1.0-56-amd64"}
    row = df.filter((df["config"] == "s1_m2G") & (df["workload"] == "secretmem:4096")
                    & (df["repeat"] == 1) & (df["label"] == "secretmem_4096_mapped")).row(0, named=True)
    assert row["d_direct_map_level2_splits"] == 9 and row["d_DirectMap4k_kB"] == 9 * 2048
    # the reference's stored deltas are what add_deltas computes
    for run in runs[:5]:
        stored = [dict(r["delta"]) for r in run["readouts"]]
        oracle.add_deltas(run["readouts"])
        assert [r["delta"] for r in run["readouts"]] == stored


def test_our_run_records_have_the_reference_shape(tmp_path):
    """A run built by the harness has every key a reference run has."""
    res = oracle.parse_serial(SERIAL_LOG.read_text(errors="replace"))
    run = _fake_run("idle", "2G", 1, 1, res["readouts"])
    ref_keys = {"log", "events", "kver", "cfg", "wl", "rep", "wall_s", "kernel_image", "append",
                "qemu", "cmdline", "guest_pdpe1gb", "guest_la57", "guest_ncpu", "bpf_jit_enable",
                "ptdump_debugfs", "memtotal_kb", "vmalloc_ro_candidates", "done",
                "guest_uptime_at_done", "readouts"}
    assert ref_keys <= set(run)
    df = oracle.readouts_table([run])
    assert df["label"].to_list() == ["boot", "idle_5s"]


# ------------------------------------------------------------------- cache and skip


def _fake_run(workload, mem, vcpus, repeat, readouts=None):
    readouts = readouts or [{"label": "boot", "DirectMap4k_kB": 0, "DirectMap2M_kB": 0,
                             "DirectMap1G_kB": 0, "direct_map_level2_splits": 0,
                             "direct_map_level3_splits": 0, "ptw_total": {"split2M": 0, "1G": 0}}]
    oracle.add_deltas(readouts)
    cfg = oracle.config_name(vcpus, mem)
    return {"log": "x.log", "events": [], "kver": "61", "cfg": cfg, "wl": workload,
            "rep": str(repeat), "wall_s": "0.01", "kernel_image": "vmlinuz-test", "append": "",
            "qemu": "", "cmdline": "", "guest_pdpe1gb": True, "guest_la57": False,
            "guest_ncpu": vcpus, "bpf_jit_enable": "1", "ptdump_debugfs": False,
            "memtotal_kb": 1, "vmalloc_ro_candidates": [], "done": True,
            "guest_uptime_at_done": 1.0, "readouts": readouts, "kernel": "test",
            "config": cfg, "repeat": repeat}


def test_expected_labels_and_run_ok():
    assert oracle.expected_labels("secretmem:64") == ["boot", "secretmem_64_mapped", "secretmem_64_freed"]
    assert oracle.expected_labels("bpf:8x100000")[1] == "bpf_8x100000_loaded"
    res = oracle.parse_serial(SERIAL_LOG.read_text(errors="replace"))
    run = _fake_run("idle", "2G", 1, 1, res["readouts"])
    assert oracle.run_ok(run)
    assert not oracle.run_ok(dict(run, readouts=run["readouts"][:1]))  # a readout missing
    assert not oracle.run_ok(dict(run, events=["RUN /oracle secretmem 4096", "RC 135"]))
    assert not oracle.run_ok(dict(run, done=False))


def test_cache_key():
    p = oracle.cache_path("6.1.0-56-amd64", "secretmem:4096", "4G", 1, 2, Path("/c"))
    assert p == Path("/c/6.1.0-56-amd64/s1_m4G/secretmem-4096_r2.json")
    keys = {oracle.cache_path(k, w, m, v, r, Path("/c"))
            for k in ("a", "b") for w in ("idle", "bpf:1x2") for m in ("2G", "4G")
            for v in (1, 2) for r in (1, 2)}
    assert len(keys) == 32  # every part of the key changes the path


def test_run_matrix_skips_cached_and_does_not_cache_failures(tmp_path):
    k = oracle.Kernel(Path("/nonexistent/bzImage"), "test", None)
    booted = []

    def boot(w, mem, v, r):
        booted.append((w, mem, v, r))
        run = _fake_run(w, mem, v, r, [dict(b, label=l) for b, l in zip(
            [_fake_run(w, mem, v, r)["readouts"][0]] * 4, oracle.expected_labels(w))])
        if w == "kprobe":
            run["done"] = False  # a failed boot
        return run

    wls, mems = ["idle", "secretmem:1", "kprobe"], ["2G", "4G"]
    paths = oracle.run_matrix(k, wls, mems, [1], 1, jobs=1, cache=tmp_path, boot=boot)
    assert len(booted) == 6 and len(paths) == 6
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == sorted(
        ["idle_r1.json", "secretmem-1_r1.json"] * 2)
    booted.clear()
    oracle.run_matrix(k, wls, mems, [1], 1, jobs=1, cache=tmp_path, boot=boot)
    assert sorted(booted) == [("kprobe", "2G", 1, 1), ("kprobe", "4G", 1, 1)]  # only the failed ones
    booted.clear()
    oracle.run_matrix(k, ["idle"], ["2G"], [1], 2, jobs=1, cache=tmp_path, boot=boot)
    assert booted == [("idle", "2G", 1, 2)]  # a new repeat is a new key
    booted.clear()
    oracle.run_matrix(k, ["idle"], ["2G"], [1], 1, jobs=1, cache=tmp_path, boot=boot, force=True)
    assert booted == [("idle", "2G", 1, 1)]
    with pytest.raises(ValueError):
        oracle.run_matrix(k, ["nonsense"], ["2G"], [1], 1, cache=tmp_path, boot=boot)
    # collect merges the cache into the reference shape
    out = oracle.write_collect("test", cache=tmp_path, results=tmp_path / "results")
    merged = json.loads(out.read_text())
    assert len(merged["runs"]) == 5 and (tmp_path / "results" / "oracle-test.parquet").exists()


def test_qemu_command_has_determinism_flags():
    k = oracle.Kernel(Path("/k/bzImage"), "test", None)
    cmd, append = oracle.qemu_cmd(k, Path("/i.cpio.gz"), "secretmem:64", "4G", 1)
    s = " ".join(cmd)
    for flag in ("-accel tcg", "-cpu max,la57=off,rdrand=off,rdseed=off", "-m 4G", "-smp 1",
                 "-icount shift=0,sleep=off,align=off", "-rtc clock=vm,base=2024-01-01",
                 "-no-reboot"):
        assert flag in s
    assert append.endswith("nokaslr secretmem.enable=1 quiet wl=secretmem:64")
    cmd2, _ = oracle.qemu_cmd(k, Path("/i"), "idle", "2G", 2)
    assert "-icount" not in cmd2  # -icount hangs with 2 vCPUs


# -------------------------------------------------------------------- a real boot


@pytest.mark.oracle
@pytest.mark.timeout(300)
def test_boot_idle_under_qemu(tmp_path, monkeypatch):
    if not shutil.which(oracle.QEMU):
        pytest.skip(f"{oracle.QEMU} not installed (make -C infra/kernel-oracle deps)")
    try:
        k = oracle.resolve_kernel()
    except FileNotFoundError as e:
        pytest.skip(f"no kernel: {e} (make -C infra/kernel-oracle kernel)")
    if not Path("/bin/busybox").exists() or not shutil.which("gcc"):
        pytest.skip("busybox-static or gcc missing (make -C infra/kernel-oracle deps)")
    monkeypatch.setattr(oracle, "WORK", tmp_path / "work")
    monkeypatch.setattr(oracle, "CACHE", tmp_path / "cache")
    initrd = oracle.build_initramfs(k)
    run = oracle.boot_once(k, initrd, "idle", "2G", 1, 1, timeout=240)
    assert oracle.run_ok(run), f"boot failed, see {tmp_path}/work/logs"
    boot, after = run["readouts"]
    assert boot["page_offset_base"] == "0xffff888000000000"
    assert boot["ptw_total"]["2M"] + boot["ptw_total"]["split2M"] == 1024
    assert after["delta"]["direct_map_level2_splits"] == 0
    # level-2 counter and the walk agree after boot
    assert boot["ptw_total"]["split2M"] == len(boot["split2M"])
