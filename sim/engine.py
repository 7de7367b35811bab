"""The compiled per-event loop: allocations and frees of the workload's callers, their
direct-map actions, kswapd-like reclaim, and time-series sampling of the counters."""
import numpy as np

from .compaction import MODE_ASYNC, __alloc_pages_direct_compact, compaction_tick, wakeup_kcompactd
from .constants import (
    MIGRATE_MOVABLE, PAGE_ALLOC_COSTLY_ORDER, PAGE_KERNEL, PAGEBLOCK_ORDER, PG_CACHE, PROT_PKEY, PROT_PRESENT,
    PROT_RW,
)
from .directmap import change_page_attr, flush_tlb_all, flush_tlb_kernel_range, set_memory
from .jit import njit, njit_inline, prefetch
from .freetype import FREETYPE_UNMAPPED
from .metrics import free_2m_blocks
from .page_alloc import (
    ALLOC_WMARK_LOW, ALLOC_WMARK_MIN, __alloc_pages_noreclaim, __alloc_pages_slowpath, __free_pages, alloc_failed,
    get_page_from_freelist,
)
from .policy import (
    SERVED_CHUNKS, policy_alloc, policy_free, policy_reclaim, policy_tick, reported_counter,
)
from .prog_pack import PACK_HANDLE_BASE, bpf_prog_pack_alloc, bpf_prog_pack_free
from .workload import G_RQ_HEAD, G_RQ_TAIL, alloc_chunks
from .layout import (
    A_FAILED, A_GONE, A_NOT_YET, ACT_NP, ACT_PKS, ACT_RO, ACT_ZAP, FREE_DEFAULT, FREE_RESET, FREE_RESTORE, NO_PAGE, ev_alloc_id,
    ev_caller, ev_cpu, ev_flags, ev_is_free, ev_order,
    AF_ACTION, AF_NO_PACK, AF_UNMAPPED, C_CPA, C_EVENTS, C_KSWAPD, C_NR_FREE, C_RECLAIM, C_THP_FAULT_ALLOC,
    C_THP_FAULT_FALLBACK, C_UNMAPPED_ALLOCS, CPA_OK, NIL, NOT_SERVED, N_COUNTERS, P_COMPACTION, P_POLICY,
    P_WMARK_HIGH, POL_FREETYPE, V_CPU,
)

N_SAMPLE_COLS = N_COUNTERS + 2  # counters, free 2M blocks, time (us)

# The loop knows its future: a free event's allocation id, and (once its allocation has
# happened) the pfn it frees.  It prefetches a_pfn[id] PF_FAR events ahead and the page's
# record PF_NEAR events ahead, so the two random memory accesses of a free overlap with
# other events' work instead of stalling the loop (the event loop is memory-latency bound).
PF_FAR = 24
PF_NEAR = 12


@njit
def set_pages(s, pfn, n, mask_set, mask_clr):
    """Per-4K-page CPA calls, as the kernel's callers make them (set_area_direct_map,
    the direct-map alias of set_memory_ro on vmalloc memory, secretmem_fault). Returns
    whether any page changed."""
    before = s.ctr[C_CPA]
    for i in range(n):
        change_page_attr(s, pfn + i, 1, mask_set, mask_clr, False)
    return s.ctr[C_CPA] != before


@njit
def apply_alloc_action(s, pfn, n, act):
    if act == ACT_RO:  # set_memory_ro/rox on the vmalloc address: the alias goes RO
        if set_pages(s, pfn, n, 0, PROT_RW):
            flush_tlb_all(s)  # cpa_flush: cpa_process_alias set force_flush_all
    elif act == ACT_NP:  # secretmem_fault: set_direct_map_invalid_noflush + a 1-page flush
        for i in range(n):
            if change_page_attr(s, pfn + i, 1, 0, PROT_PRESENT | PROT_RW, False) == CPA_OK:
                flush_tlb_kernel_range(s, 1)
    elif act == ACT_PKS:  # protected page tables: set_memory_pks on the direct map, per page
        for i in range(n):
            set_memory(s, pfn + i, 1, PROT_PKEY, 0, False, False)
    elif act == ACT_ZAP:  # guest_memfd NO_DIRECT_MAP: the folio leaves the direct map, one flush
        if change_page_attr(s, pfn, n, 0, PROT_PRESENT, False) == CPA_OK:
            flush_tlb_kernel_range(s, n)


@njit_inline
def apply_free_action(s, pfn, n, act):
    if act == FREE_RESET:  # vm_reset_perms: invalid, one flush over the area, then default
        set_pages(s, pfn, n, 0, PROT_PRESENT | PROT_RW)
        flush_tlb_kernel_range(s, n)  # _vm_unmap_aliases(start, end, flush_dmap)
        set_pages(s, pfn, n, PAGE_KERNEL, PROT_PKEY)
    elif act == FREE_DEFAULT:  # set_direct_map_default_noflush: back to PAGE_KERNEL
        set_pages(s, pfn, n, PAGE_KERNEL, PROT_PKEY)
    elif act == FREE_RESTORE:  # guest_memfd: set_direct_map_valid_noflush(true) on the folio, no flush
        change_page_attr(s, pfn, n, PROT_PRESENT, 0, False)


@njit
def kswapd_reclaim(s, lv, c_on_free):
    """Reclaim below the low watermark: free the oldest live reclaimable allocations until
    NR_FREE_PAGES reaches the high watermark. The stream's reclaim FIFO holds them in
    allocation order as (slot, generation): an entry whose slot was reused is stale."""
    s.ctr[C_KSWAPD] += 1
    policy_reclaim(s)  # shrinkers run from reclaim
    high = s.par[P_WMARK_HIGH]
    g = lv.g
    cap = lv.rq_slot.shape[0]
    while g[G_RQ_HEAD] < g[G_RQ_TAIL] and s.ctr[C_NR_FREE] < high:
        q = g[G_RQ_HEAD] % cap
        slot = lv.rq_slot[q]
        if lv.a_gen[slot] == lv.rq_gen[q]:
            p = lv.a_pfn[slot]
            if p == A_NOT_YET:
                break  # younger allocations have not happened yet
            if p >= 0:
                info = lv.a_info[slot]
                order = ev_order(info)
                free_block(s, p, order, c_on_free[ev_caller(info)])
                s.ctr[C_RECLAIM] += 1 << order
                lv.a_pfn[slot] = A_GONE
        g[G_RQ_HEAD] += 1


@njit
def __alloc_pages_reclaim(s, order, mt, lv, c_on_free):
    """__alloc_pages after its fast path failed at the low watermark: the min watermark
    and a per-CPU drain; direct compaction for costly orders (compaction on); then wake
    kswapd (reclaim to high; it wakes kcompactd for an order > 0) and retry at min; else
    count a failure for this order. (Under freetype an unmovable request's remap of an
    unmapped block happens inside rmqueue, as __rmqueue_direct_map does in rmqueue_buddy.)"""
    pfn = __alloc_pages_slowpath(s, order, mt, s.var[V_CPU], ALLOC_WMARK_LOW)
    if pfn != NO_PAGE:
        return pfn
    if s.par[P_COMPACTION] != 0 and order > PAGE_ALLOC_COSTLY_ORDER:
        pfn = __alloc_pages_direct_compact(s, order, mt, s.var[V_CPU], MODE_ASYNC)
        if pfn != NO_PAGE:
            return pfn
    kswapd_reclaim(s, lv, c_on_free)
    if s.par[P_COMPACTION] != 0 and order > 0:
        wakeup_kcompactd(s, order)
    pfn = __alloc_pages_noreclaim(s, order, mt, s.var[V_CPU], ALLOC_WMARK_MIN)
    if pfn == NO_PAGE:
        alloc_failed(s, order)
    return pfn


@njit_inline
def free_block(s, pfn, order, free_act):
    """A caller frees a block: back into the policy's cache if it came from there (no
    direct-map change), else the caller's direct-map action, then the policy's free path
    (capture) or the page allocator."""
    s.pg_owner[pfn] = NIL  # the reverse map for migration (compaction.py)
    if s.pg_flags[pfn] & PG_CACHE:
        policy_free(s, pfn, order)
        return
    if s.par[P_POLICY] != POL_FREETYPE or s.pb_mt[pfn >> PAGEBLOCK_ORDER] != FREETYPE_UNMAPPED:
        apply_free_action(s, pfn, 1 << order, free_act)  # (freetype: unmapped pages stay unmapped)
    if not policy_free(s, pfn, order):
        __free_pages(s, pfn, order, s.var[V_CPU])


@njit_inline
def policy_or_pack_alloc(s, order, served, info):
    """The policy's pages, or (a BPF image under a code-pack policy) chunks of a pack."""
    if served == SERVED_CHUNKS:
        return bpf_prog_pack_alloc(s, 0 if ev_flags(info) & AF_NO_PACK else alloc_chunks(info))
    return policy_alloc(s, order)


@njit
def alloc_unmapped(s, order, served, info, lv, c_on_free):
    """A __GFP_UNMAPPED request: through the policy; on failure reclaim once and retry.
    Returns the pfn (or a pack handle), NO_PAGE on failure, or NOT_SERVED (no policy, size
    limit, order not served): then the caller takes today's path."""
    if not served:
        return NOT_SERVED
    pfn = policy_or_pack_alloc(s, order, served, info)
    if pfn == NO_PAGE:
        kswapd_reclaim(s, lv, c_on_free)
        pfn = policy_or_pack_alloc(s, order, served, info)
        if pfn == NO_PAGE:
            alloc_failed(s, order)
    return pfn


@njit
def record_sample(s, samples, k, t):
    for j in range(N_COUNTERS):
        samples[k, j] = reported_counter(s, j)
    samples[k, N_COUNTERS] = free_2m_blocks(s)
    samples[k, N_COUNTERS + 1] = np.int64(t * 1e6)  # microseconds


@njit_inline
def prefetch_frees(s, ev_code, a_pfn, e, n_ev):
    if e + PF_FAR < n_ev:
        c = ev_code[e + PF_FAR]
        if ev_is_free(c):
            prefetch(a_pfn, ev_alloc_id(c))
    if e + PF_NEAR < n_ev:
        c = ev_code[e + PF_NEAR]
        if ev_is_free(c):
            p = a_pfn[ev_alloc_id(c)]
            if p >= 0:
                prefetch(s.pg_flags, p)


@njit
def take_sample(s, samples, k, clock):
    """Record the counters at clock[0] (next sample time); when the rows are full, keep every
    other row and double the interval (clock[1]): a bounded series that does not depend on
    the run's duration."""
    if k == samples.shape[0]:
        k = k // 2
        for i in range(k):
            for j in range(samples.shape[1]):
                samples[i, j] = samples[2 * i, j]
        clock[1] *= 2.0
    record_sample(s, samples, k, clock[0])
    clock[0] += clock[1]
    return k + 1


@njit
def run_events(s, ev_time, ev_code, ev_info, lv, c_mt, c_on_alloc, c_on_free, c_served,
               samples, clock, start, stop, k):
    """Process events[start:stop] of a window (code = allocation slot << 1 | is_free), sampling
    the counters as simulated time passes; returns the samples taken. Resumable."""
    a_pfn = lv.a_pfn
    n_ev = ev_code.shape[0]
    t_next = clock[0]
    for e in range(start, stop):
        prefetch_frees(s, ev_code, a_pfn, e, n_ev)
        t = ev_time[e]
        while t >= t_next:
            k = take_sample(s, samples, k, clock)
            t_next = clock[0]
        code = ev_code[e]
        aid = ev_alloc_id(code)
        info = ev_info[e]
        order = ev_order(info)
        caller = ev_caller(info)
        s.var[V_CPU] = ev_cpu(info)
        s.ctr[C_EVENTS] += 1
        t_us = np.int64(t * 1e6)
        policy_tick(s, t_us)
        compaction_tick(s, t_us)
        if not ev_is_free(code):
            flags = ev_flags(info)
            pfn = NOT_SERVED
            if flags & AF_UNMAPPED:
                s.ctr[C_UNMAPPED_ALLOCS] += 1
                pfn = alloc_unmapped(s, order, c_served[caller], info, lv, c_on_free)
            by_policy = pfn != NOT_SERVED
            if not by_policy:
                # __alloc_pages: the fast path inlined here (a call from compiled code passes
                # every array of the state, ~200 values, more than the fast path's work)
                pfn = get_page_from_freelist(s, order, c_mt[caller], s.var[V_CPU], ALLOC_WMARK_LOW)
                if pfn == NO_PAGE:
                    pfn = __alloc_pages_reclaim(s, order, c_mt[caller], lv, c_on_free)
                if order == PAGEBLOCK_ORDER and c_mt[caller] == MIGRATE_MOVABLE:  # a THP fault
                    s.ctr[C_THP_FAULT_ALLOC if pfn != NO_PAGE else C_THP_FAULT_FALLBACK] += 1
            if PACK_HANDLE_BASE < pfn < 0:  # NO_PAGE
                a_pfn[aid] = A_FAILED
                continue
            a_pfn[aid] = pfn
            if pfn < 0:
                continue  # a handle for chunks of a bpf_prog_pack
            s.pg_owner[pfn] = aid  # the reverse map: migration moves a_pfn[aid] with the block
            if (flags & AF_ACTION) and not by_policy:  # (only callers with an on_alloc action)
                apply_alloc_action(s, pfn, 1 << order, c_on_alloc[caller])
        else:
            pfn = a_pfn[aid]
            if pfn < 0:
                if pfn <= PACK_HANDLE_BASE:
                    bpf_prog_pack_free(s, pfn, alloc_chunks(info))
                    a_pfn[aid] = A_GONE
                continue  # failed, or reclaimed earlier
            free_block(s, pfn, order, c_on_free[caller])
            a_pfn[aid] = A_GONE
    return k


@njit
def sample_until(s, samples, clock, k, t_end):
    """Samples after the last event, up to the end of the simulated duration."""
    while clock[0] <= t_end + 1e-9:
        k = take_sample(s, samples, k, clock)
    return k
