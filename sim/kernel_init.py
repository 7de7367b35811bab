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
import math

import numpy as np

from .constants import MIGRATE_MOVABLE, MIGRATE_UNMOVABLE, NR_PAGE_ORDERS, PG_ALLOC, PG_RESERVED
from .jit import njit, njit_inline
from .keyed import field_uniform, obj_key, uniform
from .layout import (
    C_ALLOC_FAIL, C_ALLOC_FAIL_ORDER, C_ALLOC_PAGES, C_ALLOCS, C_CLAIM, C_FREE_PAGES, C_FREES, C_PCP_DRAIN,
    C_PCP_REFILL, C_STEAL, NO_PAGE, V_CPU,
)
from .page_alloc import ALLOC_WMARK_LOW, __alloc_pages_noreclaim, __free_pages
from .pollution import set_block_head

OP_ALLOC = 0  # alloc_pages(0, mt) on cpu: (op, mt, cpu, -)
OP_FREE = 1  # __free_pages of the page the row `arg` allocated: (op, row, cpu, -)
OP_FREE_RESERVED = 2  # free_reserved_page(pfn): (op, pfn, cpu, -)

BOOT_OBJECT_PAGES = 4  # mean size of one boot-time kernel object that stays (slab pages, page tables)
BOOT_TEMP_PAGES = 32  # mean size of a boot-time temporary (initcall buffers, vmalloc'd tables)
ROOTFS_PAGES_PER_DENTRY = 16  # rootfs page cache pages per unmovable page of dentries/inodes
EVENT_COUNTERS = np.r_[C_ALLOCS, C_FREES, C_ALLOC_PAGES, C_FREE_PAGES, C_PCP_REFILL, C_PCP_DRAIN, C_CLAIM, C_STEAL,
                       C_ALLOC_FAIL, C_ALLOC_FAIL_ORDER:C_ALLOC_FAIL_ORDER + NR_PAGE_ORDERS]


BOOT_CALLER = 0x6B696E6974  # "kinit": the boot's own key in sim/keyed.py (kernel objects; +1 movable runs)
F_CPU, F_TEMP, F_SIZE, F_AT, F_FREE_CPU = range(5)  # fields of a boot object's draws


@njit_inline
def geometric(u, mean):
    """numpy's geometric(p = 1/mean) from a uniform u: trials to the first success, >= 1."""
    if mean <= 1.0:
        return 1
    return max(1, int(math.ceil(math.log1p(-u) / math.log1p(-1.0 / mean))))


@njit_inline
def _alloc_rows(ops, n, size, mt, cpu):
    """size rows of alloc_pages(0, mt) on cpu from row n; the next free row."""
    ops[n:n + size, 0] = OP_ALLOC
    ops[n:n + size, 1] = mt
    ops[n:n + size, 2] = cpu
    return n + size


@njit
def boot_objects(ops, objs, st, seed, cpus, p_temp, kernel, rootfs, per_unmovable):
    """Steps 1-2 into ops (rows of op, mt, cpu) and objs (first row, pages, temporary?) of each
    kernel object; st = [rows written, objects and movable runs drawn so far: the draws' keys].
    False when ops is too small."""
    n, k, j = 0, st[1], st[2]
    cap = ops.shape[0]
    got, done, since = 0, 0, 0
    while got < kernel or done < rootfs:
        if got < kernel or (per_unmovable and since >= per_unmovable):  # 1., or rootfs dentries in 2.
            h = obj_key(seed, BOOT_CALLER, k)
            temp = field_uniform(h, F_TEMP) < p_temp
            size = geometric(field_uniform(h, F_SIZE), BOOT_TEMP_PAGES if temp else BOOT_OBJECT_PAGES)
            if n + size > cap:
                return False
            objs[k, 0], objs[k, 1], objs[k, 2] = n, size, temp
            n = _alloc_rows(ops, n, size, MIGRATE_UNMOVABLE, int(field_uniform(h, F_CPU) * cpus))
            k += 1
            if got < kernel:
                got += size
            else:
                since -= per_unmovable
            continue
        h = obj_key(seed, BOOT_CALLER + 1, j)  # a run of movable pages on one CPU
        size = min(rootfs - done, geometric(field_uniform(h, F_SIZE), BOOT_OBJECT_PAGES))
        if n + size > cap:
            return False
        n = _alloc_rows(ops, n, size, MIGRATE_MOVABLE, int(field_uniform(h, F_CPU) * cpus))
        done += size
        since += size if per_unmovable else 0
        j += 1
    st[0], st[1], st[2] = n, k, j
    return True


def _objects(seed, cpus, p_temp, kernel, rootfs, per_unmovable, st):
    """boot_objects into arrays large enough (the draws are keyed, so a retry draws the same)."""
    cap = max(1024, 2 * (kernel + rootfs))
    while True:
        ops, objs, s = np.zeros((cap, 3), np.int64), np.zeros((cap, 3), np.int64), st.copy()
        if boot_objects(ops, objs, s, seed, cpus, p_temp, kernel, rootfs, per_unmovable):
            st[:] = s
            return ops[:s[0]], objs[:s[1]]
        cap *= 2


def _temporaries_freed(ops, objs, seed, cpus):
    """Step 4: the pages of each temporary freed at a row drawn uniformly between its last
    allocation and the end of init; the frees are put in before that row."""
    n = len(ops)
    temp = np.flatnonzero(objs[:, 2])
    if not len(temp):
        return np.column_stack([ops, np.zeros(n, np.int64)])
    lo, size = objs[temp, 0], objs[temp, 1]  # an object's rows are consecutive
    hi = lo + size
    u_at, u_cpu = _uniforms(seed, temp, F_AT), _uniforms(seed, temp, F_FREE_CPU)
    at = hi + (u_at * (n + 1 - hi)).astype(np.int64)  # in [last row + 1, n]
    cnt = np.bincount(at, weights=size, minlength=n + 1).astype(np.int64)
    new_row = np.arange(n) + np.cumsum(cnt)[:n]  # frees placed at a row come before it
    order = np.argsort(at, kind="stable")
    lo, size, at, cpu = lo[order], size[order], at[order], (u_cpu[order] * cpus).astype(np.int64)
    rank = np.arange(int(size.sum())) - np.repeat(np.cumsum(size) - size, size)  # 0..size-1 per temporary
    block = at + np.cumsum(size) - size  # each temporary's first free row
    out = np.zeros((n + int(size.sum()), 4), np.int64)
    out[new_row, :3] = ops
    rows = np.repeat(block, size) + rank
    out[rows, 0] = OP_FREE
    out[rows, 1] = new_row[np.repeat(lo, size) + rank]
    out[rows, 2] = np.repeat(cpu, size)
    return out


def _uniforms(seed, objs, field):
    return np.array([uniform(seed, BOOT_CALLER, int(k), field) for k in objs], np.float64)


def boot_ops(mc, initrd: tuple[int, int], managed: int, seed: int) -> np.ndarray:
    """The boot as rows of (op, arg, cpu, 0), drawn from the seed (keyed: sim/keyed.py)."""
    # a kernel object is a temporary (a buffer of BOOT_TEMP_PAGES on average, freed before
    # userspace) with the probability that makes temporaries boot_kernel_freed_pct of the pages
    f = mc.boot_kernel_freed_pct / 100
    p_temp = f * BOOT_OBJECT_PAGES / (BOOT_TEMP_PAGES * (1 - f) + f * BOOT_OBJECT_PAGES) if f < 1 else 1.0
    # a preset's boot on a machine made smaller (machine.mem_mib=...) is scaled down to take
    # at most a quarter of the managed memory
    pages = mc.boot_kernel_kb // 4 + 2 * (mc.boot_initrd_kb // 4) + mc.boot_pagecache_kb // 4
    scale = min(1.0, managed / 4 / pages) if pages else 1.0
    st = np.zeros(3, np.int64)
    # 1. start_kernel, do_initcalls; 2. populate_rootfs
    ops, objs = _objects(seed, mc.cpus, p_temp, int(mc.boot_kernel_kb // 4 * scale),
                          int((initrd[1] - initrd[0]) * scale), ROOTFS_PAGES_PER_DENTRY, st)
    init = _temporaries_freed(ops, objs, seed, mc.cpus)  # 4.
    freed = np.zeros((initrd[1] - initrd[0], 4), np.int64)  # 3. free_initrd_mem, on the boot CPU
    freed[:, 0], freed[:, 1] = OP_FREE_RESERVED, np.arange(*initrd)
    cache, _ = _objects(seed, mc.cpus, p_temp, 0, int(mc.boot_pagecache_kb // 4 * scale), 0, st)  # 5.
    return np.concatenate([init, freed, np.column_stack([cache, np.zeros(len(cache), np.int64)])])


@njit
def run_boot_ops(s, ops, row_pfn):
    """Run the boot's calls; row_pfn[i] is the page row i allocated (NO_PAGE: none)."""
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
    kept = s.ctr[EVENT_COUNTERS]
    run_boot_ops(s, ops, np.full(ops.shape[0], NO_PAGE, np.int64))
    s.ctr[EVENT_COUNTERS] = kept
