"""The step API: a booted machine driven one kernel call at a time (debugging, exact tests).

    from sim import Machine, MachineConfig
    m = Machine(MachineConfig(mem_mib=4096, direct_gbpages=True))
    pfn = m.alloc_pages(0, "unmovable")
    m.set_direct_map_invalid_noflush(pfn)
    m.counters()["direct_map_level2_splits"]  # 1
"""
from __future__ import annotations

import numpy as np

from .boot import boot
from .compaction import (
    COMPACT_RESULT_NAMES, MODE_ASYNC, MODE_SYNC, compact_zone, compaction_deferred, fragmentation_score_zone,
    update_deferral,
)
from .compaction import __alloc_pages_direct_compact as alloc_pages_direct_compact
from .config import MachineConfig, PolicyConfig, validate_policy
from .constants import (
    MAP_LEAF, MAP_TABLE, PTRS_PER_PMD,
    BPF_PROG_PACK_SIZE, MAX_PAGE_ORDER, MIGRATETYPE_NAMES, MIGRATETYPES, MIGRATE_PCPTYPES, PAGE_ALLOC_COSTLY_ORDER,
    PAGEBLOCK_ORDER, PG_ALLOC, PROT_NX, PROT_PRESENT, PROT_RW,
)
from .freetype import freetype_state
from .directmap import change_page_attr, flush_tlb_kernel_range, mapping_level, set_memory
from .metrics import counters, free_2m_blocks, pageblock_pollution
from .page_alloc import ALLOC_WMARK_LOW, alloc_failed, alloc_pages_noreclaim, drain_all_pages, free_pages
from .policy import policy_alloc, policy_free, policy_params, policy_shrink
from .prog_pack import PACK_HANDLE_BASE, bytes_to_chunks, bpf_prog_pack_alloc, bpf_prog_pack_free, pack_state
from .layout import (
    CODE_PACKS, NO_PAGE, is_code_pack,
    NOT_SERVED, P_MANAGED, V_COMPACT_DEFER_SHIFT, V_CPU, V_MIG_LOG_N, V_MIG_LOG_ON, V_PACK_COUNT,
)


def _migratetype(name: str, allow_unmapped: bool = False) -> int:
    ok = [n for n, i in MIGRATETYPES.items() if i < MIGRATE_PCPTYPES or allow_unmapped]
    if not isinstance(name, str) or name not in ok:
        raise ValueError(f"migratetype={name!r}: allowed {', '.join(ok)}")
    return MIGRATETYPES[name]


def _int(arg: str, value, lo: int, hi: int) -> int:
    """An integer argument in [lo, hi] (no bools, no floats: 1.5 is not an order)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{arg}={value!r}: allowed an integer in [{lo}, {hi}]")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{arg}={value}: allowed [{lo}, {hi}]")
    return int(value)


def _bool(arg: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{arg}={value!r}: allowed True or False")
    return bool(value)


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Machine:
    """A booted machine: one zone, its buddy allocator, and the direct map."""

    def __init__(self, config: MachineConfig | None = None, policy: PolicyConfig | None = None, seed: int = 0):
        """`seed` draws the boot's own allocations and frees (machine.boot_*, kernel_init.py)."""
        self.config = config or MachineConfig()
        self.policy = validate_policy(policy or PolicyConfig())
        seed = _int("seed", seed, 0, 2**63 - 1)
        self.state = freetype_state(pack_state(boot(self.config, seed), self.policy.name), self.policy.name)
        policy_params(self.state, self.policy)
        self._cpu = 0
        self._pack_allocs: dict[int, int] = {}  # live bpf_prog_pack handles -> chunks
        self._moved: dict[int, int] = {}  # first pfn of a block -> where migration put it
        self._mig_log = None  # (old pfn, new pfn) rows of the migrations of one call (_logging_moves)
        self.compact_result: str | None = None

    @property
    def cpu(self) -> int:
        """The CPU the next calls run on (its per-CPU lists)."""
        return self._cpu

    @cpu.setter
    def cpu(self, value: int) -> None:
        self._cpu = _int("cpu", value, 0, self.config.cpus - 1)

    # --- page allocator ----------------------------------------------------------
    def alloc_pages(self, order: int, migratetype: str = "unmovable", unmapped: bool = False):
        """alloc_pages(gfp, order): the first pfn of the block, or None (allocation failure)."""
        order = _int("order", order, 0, MAX_PAGE_ORDER)
        mt = _migratetype(migratetype)
        unmapped = _bool("unmapped", unmapped)
        s = self.state
        s.var[V_CPU] = self.cpu
        if unmapped:  # __GFP_UNMAPPED: through the policy (whose refill may compact: moves tracked)
            pfn = int(self._logging_moves(lambda log: policy_alloc(log, int(order))))
            if pfn == NO_PAGE:
                alloc_failed(s, int(order))
                return None
            if pfn != NOT_SERVED:
                return pfn
        pfn = int(alloc_pages_noreclaim(s, int(order), mt, self.cpu, ALLOC_WMARK_LOW))
        if pfn < 0 and order > PAGE_ALLOC_COSTLY_ORDER:
            # __alloc_pages_slowpath: direct compaction (COMPACT_PRIO_ASYNC) for costly orders, as
            # the event loop's; moves tracked (owner_pfn). No reclaim: the step API owns no
            # reclaimable memory for kswapd to free.
            pfn = int(self._logging_moves(
                lambda log: alloc_pages_direct_compact(log, int(order), mt, self.cpu, MODE_ASYNC)))
        if pfn < 0:
            alloc_failed(s, int(order))
            return None
        if unmapped:  # today's kernel: the caller unmaps each page, then flushes the block once
            for i in range(1 << int(order)):
                self.set_direct_map_invalid_noflush(pfn + i)
            flush_tlb_kernel_range(s, 1 << int(order))
        return pfn

    def free_pages(self, pfn: int, order: int) -> None:
        """__free_pages(page, order). The block must be allocated with that order."""
        s = self.state
        pfn = _int("pfn", pfn, 0, self.nr_pages - 1)
        order = _int("order", order, 0, MAX_PAGE_ORDER)
        if not (s.pg_flags[pfn] & PG_ALLOC):
            raise ValueError(f"pfn={pfn}: not the first page of an allocated block (double free?)")
        if int(s.pg_order[pfn]) != order:
            raise ValueError(f"order={order}: the block at pfn {pfn} was allocated with order {int(s.pg_order[pfn])}")
        if pfn in self._live_packs():
            raise ValueError(f"pfn={pfn}: a live bpf_prog_pack (freed by bpf_prog_pack_free of its images)")
        if order == 0 and ((s.pmd_pt == pfn).any() or (s.pud_pt == pfn).any()):
            raise ValueError(f"pfn={pfn}: a page table of the direct map (split_large_page), not the caller's")
        s.var[V_CPU] = self.cpu
        if not policy_free(s, int(pfn), int(order)):  # a cache's block, or captured
            free_pages(s, int(pfn), int(order), self.cpu)

    def shrink(self, nr_to_scan: int | None = None) -> int:
        """Run the policy's shrinker; returns the pages released to the page allocator."""
        n = 0 if nr_to_scan is None else _int("nr_to_scan", nr_to_scan, 0, 1 << 62)
        self.state.var[V_CPU] = self.cpu
        return int(policy_shrink(self.state, n))

    # --- compaction (mm/compaction.c) ------------------------------------------------
    def compact(self, order: int = 9, migratetype: str = "movable") -> dict[int, int]:
        """One compact_zone for this order (MIGRATE_SYNC_LIGHT, as kcompactd), with its
        suitability checks and deferral update (a run that ends with the scanners meeting
        defers the order). Returns the moves {old pfn: new pfn}; `compact_result` names the
        result: success, complete (the scanners met in a run from the zone start), partial_skipped
        (they met in a run that resumed where the last one stopped), skipped (compaction_suitable)."""
        order = _int("order", order, 0, MAX_PAGE_ORDER)
        mt = _migratetype(migratetype)
        s = self.state
        s.var[V_CPU] = self.cpu
        ret = int(self._logging_moves(lambda log: compact_zone(log, int(order), mt, MODE_SYNC)))
        update_deferral(s, int(order), ret)
        self.compact_result = COMPACT_RESULT_NAMES[ret]
        return self._last_moves

    def _logging_moves(self, call):
        """call(state) with migrations recorded: owner_pfn follows them; the moves of this call
        in _last_moves."""
        s = self.state
        if self._mig_log is None:  # one log for the machine (untouched pages cost nothing)
            self._mig_log = np.empty((int(s.par[P_MANAGED]) + 1, 2), np.int64)
        log = s._replace(mig_log=self._mig_log)
        s.var[V_MIG_LOG_ON], s.var[V_MIG_LOG_N] = 1, 0
        try:
            ret = call(log)
        finally:
            s.var[V_MIG_LOG_ON] = 0
        n = int(s.var[V_MIG_LOG_N])
        moves = {int(a): int(b) for a, b in log.mig_log[:min(n, log.mig_log.shape[0])]}
        back = {new: old for old, new in self._moved.items()}
        for old, new in moves.items():
            first = back.pop(old, old)
            self._moved[first] = new
            back[new] = first
        self._last_moves = moves
        return ret

    def owner_pfn(self, pfn: int) -> int:
        """Where the block that was allocated at pfn is now (pfn itself if it never moved)."""
        return self._moved.get(int(pfn), int(pfn))

    def fragmentation_score(self) -> int:
        """fragmentation_score_zone: % of free memory not in free blocks of 2M or more."""
        return int(fragmentation_score_zone(self.state))

    def compaction_deferred(self, order: int) -> bool:
        """compaction_deferred(zone, order) (it counts the attempt, as the kernel's does)."""
        return bool(compaction_deferred(self.state, int(order)))

    @property
    def compact_defer_shift(self) -> int:
        return int(self.state.var[V_COMPACT_DEFER_SHIFT])

    # --- bpf_prog_pack (code-pack policies) -----------------------------------------
    def _pack_chunks(self, size: int) -> int:
        if not is_code_pack(self.policy.name):
            raise ValueError(f"bpf_prog_pack needs a code-pack policy ({', '.join(CODE_PACKS)}), "
                             f"not {self.policy.name!r}")
        size = _int("size", size, 1, BPF_PROG_PACK_SIZE)  # larger images take whole pages
        return int(bytes_to_chunks(size))

    def bpf_prog_pack_alloc(self, size: int):
        """bpf_prog_pack_alloc(size): a handle for the image's chunks, or None (no memory)."""
        nbits = self._pack_chunks(size)
        self.state.var[V_CPU] = self.cpu
        h = int(bpf_prog_pack_alloc(self.state, nbits))
        if h == NOT_SERVED:
            raise RuntimeError("no new pack: the policy's max_blocks or the model's pack slots are used up")
        if h > PACK_HANDLE_BASE:
            return None
        self._pack_allocs[h] = nbits
        return h

    def bpf_prog_pack_free(self, handle: int, size: int) -> None:
        """bpf_prog_pack_free(ptr, size): an empty pack is freed (module_memfree / execmem_free).
        The handle must be live and the size the one it was allocated with (the kernel trusts
        both; a wrong one would clear another image's chunks or leak a pack)."""
        nbits = self._pack_chunks(size)
        if isinstance(handle, (bool, np.bool_)) or not isinstance(handle, (int, np.integer)) \
                or int(handle) not in self._pack_allocs:
            raise ValueError(f"handle={handle!r}: not a live bpf_prog_pack_alloc handle (double free?)")
        if self._pack_allocs[int(handle)] != nbits:
            raise ValueError(f"size={size}: the image at handle {handle} was allocated with "
                             f"{self._pack_allocs[int(handle)]} chunks of 64 bytes, this size is {nbits}")
        del self._pack_allocs[int(handle)]
        self.state.var[V_CPU] = self.cpu
        bpf_prog_pack_free(self.state, int(handle), nbits)

    def _live_packs(self) -> set[int]:
        return {pfn for pfn, _ in self.bpf_prog_packs()}

    def bpf_prog_packs(self) -> list[tuple[int, int]]:
        """Live packs in list order: (first pfn, 64-byte chunks in use)."""
        s = self.state
        return [(int(s.pack_pfn[k]), int(s.pack_used[k])) for k in s.pack_list[:int(s.var[V_PACK_COUNT])]]

    def drain_all_pages(self) -> None:
        """drain_all_pages: empty the per-CPU lists into the buddy free lists."""
        drain_all_pages(self.state)

    # --- direct map (CPA) ----------------------------------------------------------
    @property
    def nr_pages(self) -> int:
        return self.config.mem_mib * 256

    def _check_range(self, pfn: int, n: int) -> None:
        pfn = _int("pfn", pfn, 0, self.nr_pages - 1)
        _int("numpages", n, 1, self.nr_pages - pfn)

    def _cpa(self, pfn: int, n: int, mask_set: int, mask_clr: int, collapse: bool = False, flush: bool = True) -> int:
        """set_memory_* on direct-map addresses (cpa_flush; no alias), or a *_noflush call."""
        self._check_range(pfn, n)
        self.state.var[V_CPU] = self.cpu
        if not flush:
            return int(change_page_attr(self.state, int(pfn), int(n), mask_set, mask_clr, collapse))
        return int(set_memory(self.state, int(pfn), int(n), mask_set, mask_clr, collapse, False))

    def set_direct_map_invalid_noflush(self, pfn: int) -> int:
        return self._cpa(pfn, 1, 0, PROT_PRESENT | PROT_RW, flush=False)

    def set_direct_map_default_noflush(self, pfn: int) -> int:
        """__set_pages_p: _PAGE_PRESENT | _PAGE_RW set (NX as it was: the direct map's is always set)."""
        return self._cpa(pfn, 1, PROT_PRESENT | PROT_RW, 0, flush=False)

    def set_direct_map_valid_noflush(self, pfn: int, n: int, valid: bool) -> int:
        """set_direct_map_valid_noflush(page, nr, valid) (6.13+): __set_pages_p or __set_pages_np,
        _PAGE_PRESENT | _PAGE_RW set or cleared."""
        p_rw = PROT_PRESENT | PROT_RW
        return self._cpa(pfn, n, p_rw if valid else 0, 0 if valid else p_rw, flush=False)

    def flush_tlb_kernel_range(self, pfn: int, n: int) -> None:
        self._check_range(int(pfn), int(n))
        flush_tlb_kernel_range(self.state, int(n))

    def set_memory_ro(self, pfn: int, n: int) -> int:
        return self._cpa(pfn, n, 0, PROT_RW)

    def set_memory_rw(self, pfn: int, n: int) -> int:
        return self._cpa(pfn, n, PROT_RW, 0)

    def set_memory_x(self, pfn: int, n: int) -> int:
        return self._cpa(pfn, n, 0, PROT_NX)

    def set_memory_nx(self, pfn: int, n: int) -> int:
        return self._cpa(pfn, n, PROT_NX, 0)

    def set_memory_np(self, pfn: int, n: int) -> int:
        return self._cpa(pfn, n, 0, PROT_PRESENT)

    def set_memory_p(self, pfn: int, n: int) -> int:
        return self._cpa(pfn, n, PROT_PRESENT, 0)

    def set_memory_rox(self, pfn: int, n: int) -> int:
        """set_memory_rox: RO + X, with CPA_COLLAPSE when machine.cpa_collapse is on."""
        return self._cpa(pfn, n, 0, PROT_RW | PROT_NX, collapse=True)

    # --- read-out ------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return counters(self.state)

    def mapping_level(self, pfn: int) -> int:
        """Page size mapping pfn in the direct map: 3 = 1G, 2 = 2M, 1 = 4K, 0 = unmapped."""
        self._check_range(pfn, 1)
        return int(mapping_level(self.state, int(pfn)))

    @property
    def pmd_levels(self) -> np.ndarray:
        """Mapping level per 2M region (3 = inside a 1G page, 2 = 2M page, 1 = split to 4K,
        0 = not mapped), read-only."""
        s = self.state
        lv = np.where(s.pmd_map == MAP_LEAF, 2, np.where(s.pmd_map >= MAP_TABLE, 1, 0)).astype(np.int8)
        lv[np.repeat(s.pud_map == MAP_LEAF, PTRS_PER_PMD)] = 3
        return _read_only(lv)

    @property
    def prot(self) -> np.ndarray:
        """Direct-map protection bits per 4K page (1 present, 2 RW, 4 NX, 8 PKS key), read-only."""
        return _read_only(self.state.prot.view())

    @property
    def free_area(self) -> np.ndarray:
        """Free blocks per order and migratetype, shape (11, 4), read-only (/proc/pagetypeinfo)."""
        return _read_only(self.state.nr_free.copy())

    @property
    def pageblock_migratetypes(self) -> np.ndarray:
        """Migratetype per pageblock (0 unmovable, 1 movable, 2 reclaimable, 3 unmapped), read-only."""
        return _read_only(self.state.pb_mt.view())

    def pageblock_migratetype(self, pfn: int) -> str:
        pfn = _int("pfn", pfn, 0, self.nr_pages - 1)
        return MIGRATETYPE_NAMES[int(self.state.pb_mt[pfn >> PAGEBLOCK_ORDER])]

    def free_list(self, order: int, migratetype: str) -> list[int]:
        """The pfns on one buddy free list, head first (free_area[order].free_list[mt])."""
        from .invariants import walk_list

        order = _int("order", order, 0, MAX_PAGE_ORDER)
        return walk_list(self.state, self.state.free_head[order, _migratetype(migratetype, allow_unmapped=True)])

    def check(self) -> list[str]:
        """Recount everything from the arrays; a list of violated invariants (empty if none)."""
        from .invariants import check_state

        return check_state(self.state)

    def pageblock_pollution(self) -> dict[str, int]:
        """{pageblocks_polluted, pageblocks_mixed}, kept incrementally (pollution.py)."""
        return pageblock_pollution(self.state)

    def free_2m_blocks(self) -> int:
        return int(free_2m_blocks(self.state))
