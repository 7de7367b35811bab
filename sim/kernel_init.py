"""What a booting kernel does to the free lists after memblock_free_all (init/main.c):

1. the kernel's own allocations during start_kernel / do_initcalls (slab, page tables,
   per-CPU pages, vmalloc): unmovable objects of a few order-0 pages, on every CPU in turn
   (rmqueue_bulk refills each CPU's list from the head of the free lists);
2. populate_rootfs (init/initramfs.c): the initramfs unpacked into rootfs page cache
   (movable, stays), its dentries and inodes (unmovable) in between;
3. free_initrd_mem -> free_reserved_area: the initrd, reserved by memblock at the top of
   RAM below 2 GiB where the boot loader put it, freed one page at a time in address order
   (free_reserved_page -> __free_page: per-CPU list, then the buddy lists at order 0);
4. the boot's temporaries (buffers of BOOT_TEMP_PAGES on average, machine.boot_kernel_freed_pct
   of the kernel's pages), each freed at a point of steps 1-2 drawn from the seed: the late
   ones leave holes in the unmovable pageblocks (in the kernel, before free_initrd_mem);
5. early userspace: page cache (movable, stays).

All of it is a sequence of the model's own calls (alloc_pages / __free_pages), drawn from
the run's seed, sizes from machine.boot_* (scaled down to a quarter of the managed memory
at most: a preset's boot on a machine made smaller); the counters of these calls are not kept (the
kernel oracle reads /proc/vmstat differences from the end of boot, as the model reports).
"""
from __future__ import annotations

import numpy as np

from .constants import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, PG_ALLOC, PG_RESERVED
from .jit import njit
from .layout import (
    C_ALLOC_FAIL, C_ALLOC_FAIL_ORDER, C_ALLOC_PAGES, C_ALLOCS, C_CLAIM, C_FREE_PAGES, C_FREES, C_PCP_DRAIN,
    C_PCP_REFILL, C_STEAL, V_CPU,
)
from .page_alloc import ALLOC_WMARK_LOW, __alloc_pages_noreclaim, __free_pages
from .pollution import set_block_head

OP_ALLOC = 0  # alloc_pages(0, mt) on cpu: (op, mt, cpu, -)
OP_FREE = 1  # __free_pages of the page the row `arg` allocated: (op, row, cpu, -)
OP_FREE_RESERVED = 2  # free_reserved_page(pfn): (op, pfn, cpu, -)

BOOT_OBJECT_PAGES = 4  # mean size of one boot-time kernel object that stays (slab pages, page tables)
BOOT_TEMP_PAGES = 32  # mean size of a boot-time temporary (initcall buffers, vmalloc'd tables)
ROOTFS_PAGES_PER_DENTRY = 16  # rootfs page cache pages per unmovable page of dentries/inodes
EVENT_COUNTERS = (C_ALLOCS, C_FREES, C_ALLOC_PAGES, C_FREE_PAGES, C_PCP_REFILL, C_PCP_DRAIN, C_CLAIM, C_STEAL,
                  C_ALLOC_FAIL)


def boot_ops(mc, initrd: tuple[int, int], managed: int, seed: int) -> np.ndarray:
    """The boot as rows of (op, arg, cpu, 0), drawn from the seed."""
    rng = np.random.default_rng([int(seed), 0x6b696e6974])  # "kinit": its own stream
    ops: list[tuple[int, int, int]] = []
    temps: list[list[int]] = []  # the rows of each temporary

    # a kernel object is a temporary (a buffer of BOOT_TEMP_PAGES on average, freed before
    # userspace) with the probability that makes temporaries boot_kernel_freed_pct of the pages
    f = mc.boot_kernel_freed_pct / 100
    p_temp = f * BOOT_OBJECT_PAGES / (BOOT_TEMP_PAGES * (1 - f) + f * BOOT_OBJECT_PAGES) if f < 1 else 1.0

    def kernel_object():
        cpu = int(rng.integers(mc.cpus))
        temp = rng.random() < p_temp
        rows = []
        for _ in range(int(rng.geometric(1.0 / (BOOT_TEMP_PAGES if temp else BOOT_OBJECT_PAGES)))):
            rows.append(len(ops))
            ops.append((OP_ALLOC, MIGRATE_UNMOVABLE, cpu))
        if temp:
            temps.append(rows)
        return len(rows)

    def movable(pages, per_unmovable=0):
        done, since = 0, 0
        while done < pages:
            cpu = int(rng.integers(mc.cpus))
            for _ in range(min(pages - done, int(rng.geometric(1.0 / BOOT_OBJECT_PAGES)))):
                ops.append((OP_ALLOC, MIGRATE_MOVABLE, cpu))
                done += 1
                since += 1
            if per_unmovable and since >= per_unmovable:
                since -= per_unmovable
                kernel_object()

    # a preset's boot on a machine made smaller (machine.mem_mib=...) is scaled down to take
    # at most a quarter of the managed memory
    pages = mc.boot_kernel_kb // 4 + 2 * (mc.boot_initrd_kb // 4) + mc.boot_pagecache_kb // 4
    scale = min(1.0, managed / 4 / pages) if pages else 1.0
    kernel = int(mc.boot_kernel_kb // 4 * scale)
    got = 0
    while got < kernel:  # 1. start_kernel, do_initcalls
        got += kernel_object()
    movable(int((initrd[1] - initrd[0]) * scale), ROOTFS_PAGES_PER_DENTRY)  # 2. populate_rootfs
    # 4. the temporaries: each freed at a point drawn uniformly between its allocation and the
    # end of init (a late free leaves a hole, an early one is refilled by later allocations)
    n = len(ops)
    frees: list[list[tuple[int, int, int]]] = [[] for _ in range(n + 1)]
    for rows in temps:
        at = int(rng.integers(rows[-1] + 1, n + 1))
        cpu = int(rng.integers(mc.cpus))
        frees[at].extend((OP_FREE, row, cpu) for row in rows)
    merged: list[tuple[int, int, int]] = []
    remap = np.zeros(n, np.int64)  # row numbers move as the frees are put in between
    for i in range(n + 1):
        merged.extend((op, int(remap[row]), cpu) for op, row, cpu in frees[i])
        if i < n:
            remap[i] = len(merged)
            merged.append(ops[i])
    ops[:] = merged
    for pfn in range(*initrd):  # 3. free_initrd_mem, on the boot CPU
        ops.append((OP_FREE_RESERVED, pfn, 0))
    movable(int(mc.boot_pagecache_kb // 4 * scale))  # 5. early userspace
    out = np.zeros((len(ops), 4), np.int64)
    if ops:
        out[:, :3] = np.array(ops, np.int64)
    return out


@njit
def run_boot_ops(s, ops, row_pfn):
    """Run the boot's calls; row_pfn[i] is the page row i allocated (-1: none)."""
    for i in range(ops.shape[0]):
        op = ops[i, 0]
        cpu = ops[i, 2]
        s.var[V_CPU] = cpu
        if op == OP_ALLOC:
            row_pfn[i] = __alloc_pages_noreclaim(s, 0, ops[i, 1], cpu, ALLOC_WMARK_LOW)
        elif op == OP_FREE:
            pfn = row_pfn[ops[i, 1]]
            if pfn >= 0:
                __free_pages(s, pfn, 0, cpu)
        else:  # free_reserved_page: ClearPageReserved, then __free_page
            pfn = ops[i, 1]
            set_block_head(s, pfn, (s.pg_flags[pfn] & (0xFF ^ PG_RESERVED)) | PG_ALLOC, 0, MIGRATE_MOVABLE)
            __free_pages(s, pfn, 0, cpu)


def kernel_init(s, mc, initrd: tuple[int, int], managed: int, seed: int) -> None:
    """The boot after memblock_free_all (see the module's doc)."""
    ops = boot_ops(mc, initrd, managed, seed)
    if ops.shape[0] == 0:
        return
    kept = s.ctr.copy()
    run_boot_ops(s, ops, np.full(ops.shape[0], -1, np.int64))
    for c in EVENT_COUNTERS:
        s.ctr[c] = kept[c]
    s.ctr[C_ALLOC_FAIL_ORDER:C_ALLOC_FAIL_ORDER + 11] = kept[C_ALLOC_FAIL_ORDER:C_ALLOC_FAIL_ORDER + 11]
