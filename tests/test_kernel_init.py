"""The boot after memblock_free_all (sim/kernel_init.py): the kernel's allocations and frees
during init, the initramfs unpacked and the initrd freed, early userspace page cache."""
import numpy as np
import pytest

import sim
from sim.config import ConfigError, MachineConfig
from sim.constants import PG_ALLOC, PG_RESERVED
from sim.state import initrd_pfns

BOOT = dict(boot_kernel_kb=8192, boot_kernel_freed_pct=10, boot_initrd_kb=4096, boot_pagecache_kb=2048)


def machine(seed=0, **kw):
    mc = MachineConfig(mem_mib=1024, cpus=2, pcp=True, kernel_image_mib=16, **{**BOOT, **kw})
    return sim.Machine(mc, seed=seed)


def test_booted_machine_is_consistent_and_counts_from_the_end_of_boot():
    m = machine()
    assert m.check() == []
    c = m.counters()
    assert c["alloc_calls"] == 0 and c["pgalloc"] == 0 and c["free_calls"] == 0
    s = m.state
    a, b = initrd_pfns(m.config, [(0, m.nr_pages)])
    assert b - a == 1024  # 4 MiB at the top of this 1 GiB machine
    assert not (s.pg_flags[a:b] & PG_RESERVED).any()  # free_initrd_mem gave it all back
    assert (m.pageblock_migratetypes[a >> 9:b >> 9] == 1).all()  # the initrd's pageblocks stay movable
    # what stays allocated: the kernel's objects that were not freed, rootfs and early page cache
    allocated = int(((s.pg_flags & PG_ALLOC) != 0).sum())
    assert 1024 + 512 + 0.8 * 2048 < allocated < 1024 + 512 + 2048 + 256  # + dentries of rootfs
    assert c["nr_pcp_pages"] > 0  # the per-CPU lists hold pages freed at the end of boot


def test_the_boot_is_drawn_from_the_seed():
    a, b, c = machine(1), machine(1), machine(2)
    assert np.array_equal(a.state.pg_flags, b.state.pg_flags)
    assert a.free_list(0, "unmovable") == b.free_list(0, "unmovable")
    assert not np.array_equal(a.state.pg_flags, c.state.pg_flags)


def test_without_boot_keys_the_free_lists_are_memblock_free_alls():
    m = sim.Machine(MachineConfig(mem_mib=1024, cpus=2, pcp=True, kernel_image_mib=16))
    c = m.counters()
    assert c["nr_pcp_pages"] == 0 and int(((m.state.pg_flags & PG_ALLOC) != 0).sum()) == 0
    assert m.free_list(10, "movable") == sorted(m.free_list(10, "movable"))  # ascending, FPI_TO_TAIL


def test_unmovable_allocations_after_boot_land_in_the_boots_holes():
    """The kernel's freed boot objects leave free pages inside unmovable pageblocks: the next
    unmovable allocations are spread over more 2M regions than on a freshly released zone."""
    fresh = sim.Machine(MachineConfig(mem_mib=1024, cpus=2, pcp=True, kernel_image_mib=16))
    booted = machine(boot_kernel_freed_pct=30)
    regions = []
    for m in (fresh, booted):
        pfns = [m.alloc_pages(0, "unmovable") for _ in range(256)]
        regions.append(len({p >> 9 for p in pfns}))
    assert regions[0] <= 2 < regions[1]


@pytest.mark.parametrize("key,value,allowed", [
    ("boot_kernel_freed_pct", 101, "[0, 100]"),
    ("boot_kernel_kb", -4, "[0, 1073741824]"),
])
def test_bad_boot_keys_name_the_key(key, value, allowed):
    with pytest.raises(ConfigError, match=rf"machine\.{key}.*{allowed[:12]}".replace("[", r"\[")):
        machine(**{key: value})


def test_a_boot_too_large_for_the_machine_is_scaled_to_a_quarter_of_it():
    m = machine(boot_pagecache_kb=600 * 1024)
    assert m.check() == []
    allocated = int(((m.state.pg_flags & PG_ALLOC) != 0).sum())
    assert allocated < m.nr_pages // 4 + 1024  # a quarter, + dentries and rounding


def test_an_initrd_on_reserved_memory_is_an_error():
    with pytest.raises(ConfigError, match=r"machine\.boot_initrd_kb.*fits in free RAM below 2 GiB"):
        machine(reserved=[[1024 * 1024 - 8192, 8192]])


def test_boot_ops_free_each_temporary_once_after_it_was_allocated():
    """The op list (kernel_init.boot_ops): a temporary's pages are freed once each, after their
    allocation; the initrd is freed page by page in address order on the boot CPU; the
    temporaries are boot_kernel_freed_pct of the kernel's pages; the draws are the seed's."""
    from sim.kernel_init import OP_ALLOC, OP_FREE, OP_FREE_RESERVED, boot_ops

    mc = MachineConfig(mem_mib=4096, cpus=4, pcp=True, kernel_image_mib=16, boot_kernel_kb=256 * 1024,
                       boot_kernel_freed_pct=30, boot_initrd_kb=8192, boot_pagecache_kb=4096)
    initrd = (400_000, 402_048)
    ops = boot_ops(mc, initrd, 1_000_000, seed=3)
    assert np.array_equal(ops, boot_ops(mc, initrd, 1_000_000, seed=3))
    assert not np.array_equal(ops[:1000], boot_ops(mc, initrd, 1_000_000, seed=4)[:1000])
    op, arg, cpu = ops[:, 0], ops[:, 1], ops[:, 2]
    assert set(np.unique(cpu)) == {0, 1, 2, 3}
    frees = np.flatnonzero(op == OP_FREE)
    freed = arg[frees]
    assert len(np.unique(freed)) == len(freed)  # each page once
    assert (freed < frees).all() and (op[freed] == OP_ALLOC).all() and (arg[freed] == 0).all()  # unmovable
    reserved = np.flatnonzero(op == OP_FREE_RESERVED)
    assert np.array_equal(arg[reserved], np.arange(*initrd)) and (cpu[reserved] == 0).all()
    assert reserved.min() > frees.max()  # the temporaries are gone before free_initrd_mem
    unmovable = int(((op == OP_ALLOC) & (arg == 0)).sum())
    movable = int(((op == OP_ALLOC) & (arg == 1)).sum())
    assert movable == 2048 + 1024  # the initramfs unpacked, early page cache
    assert 65536 <= unmovable < 65536 * 1.1  # the kernel's pages, + rootfs dentries (1 page per 16)
    assert 0.25 < len(freed) / unmovable < 0.35
