"""The compiled per-event loop: allocations and frees of the workload's callers, their
direct-map actions, kswapd-like reclaim, and time-series sampling of the counters."""
import numpy as np

from . import hugemem
from .compaction import (
    MODE_ASYNC, __alloc_pages_direct_compact, compaction_tick, fragmentation_score_zone, wakeup_kcompactd,
)
from .constants import (
    C_EVENTS, C_FRAG_SCORE, C_KSWAPD, C_NR_FREE, C_RECLAIM, C_THP_FAULT_ALLOC, C_THP_FAULT_FALLBACK,
    C_UNMAPPED_ALLOCS, MAX_PAGE_ORDER, MIGRATE_MOVABLE, N_COUNTERS, PAGE_ALLOC_COSTLY_ORDER, PAGE_KERNEL,
    PAGEBLOCK_ORDER, PG_CACHE, PROT_PKEY, PROT_PRESENT, PROT_RW,
)
from .directmap import change_page_attr
from .jit import njit, njit_inline, prefetch
from .page_alloc import (
    ALLOC_WMARK_LOW, ALLOC_WMARK_MIN, __alloc_pages_noreclaim, __alloc_pages_slowpath, __free_pages, alloc_failed,
    get_page_from_freelist,
)
from .policy import (
    NOT_SERVED, SERVED_CHUNKS, policy_alloc, policy_free, policy_reclaim, policy_tick, sync_policy_counters,
)
from .prog_pack import PACK_HANDLE_BASE, bpf_prog_pack_alloc, bpf_prog_pack_free
from .state import P_COMPACTION, P_CPU, P_WMARK_HIGH
from .workload import AF_ACTION, AF_NO_PACK, AF_RECLAIMABLE, AF_UNMAPPED, alloc_chunks

# a_pfn states besides a pfn
NOT_YET = -3  # allocation event not reached yet
FAILED = -1  # allocation failed
GONE = -2  # freed (by its free event or by reclaim)

# action codes (workload.ON_ALLOC_CODES / ON_FREE_CODES)
ACT_NONE, ACT_RO, ACT_NP, ACT_PKS = 0, 1, 2, 3
FREE_NONE, FREE_RESET, FREE_DEFAULT = 0, 1, 2

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
    the direct-map alias of set_memory_ro on vmalloc memory, secretmem_fault)."""
    for i in range(n):
        change_page_attr(s, pfn + i, 1, mask_set, mask_clr, False)


@njit
def apply_alloc_action(s, pfn, n, act):
    if act == ACT_RO:  # set_memory_ro/rox on the vmalloc address: the alias goes RO
        set_pages(s, pfn, n, 0, PROT_RW)
    elif act == ACT_NP:  # set_direct_map_invalid_noflush
        set_pages(s, pfn, n, 0, PROT_PRESENT | PROT_RW)
    elif act == ACT_PKS:  # protected page tables: a PKS key on the direct map
        set_pages(s, pfn, n, PROT_PKEY, 0)


@njit_inline
def apply_free_action(s, pfn, n, act):
    if act == FREE_RESET:  # vm_reset_perms: invalid, flush, then default, page by page
        set_pages(s, pfn, n, 0, PROT_PRESENT | PROT_RW)
        set_pages(s, pfn, n, PAGE_KERNEL, PROT_PKEY)
    elif act == FREE_DEFAULT:  # set_direct_map_default_noflush: back to PAGE_KERNEL
        set_pages(s, pfn, n, PAGE_KERNEL, PROT_PKEY)


@njit
def free_2m_blocks(s):
    """Free 2M blocks left in the page allocator (free blocks of order >= 9)."""
    total = 0
    for o in range(PAGEBLOCK_ORDER, MAX_PAGE_ORDER + 1):
        for mt in range(s.nr_free.shape[1]):
            total += s.nr_free[o, mt] << (o - PAGEBLOCK_ORDER)
    return total


@njit
def kswapd_reclaim(s, a_pfn, a_info, c_on_free, rc):
    """Reclaim below the low watermark: free the oldest live reclaimable allocations
    until NR_FREE_PAGES reaches the high watermark. rc[0] is a cursor over allocation
    ids (ids are in allocation-time order, so the oldest live one is the first)."""
    s.ctr[C_KSWAPD] += 1
    policy_reclaim(s)  # shrinkers run from reclaim
    high = s.par[P_WMARK_HIGH]
    i = rc[0]
    n = a_pfn.shape[0]
    while i < n and s.ctr[C_NR_FREE] < high:
        p = a_pfn[i]
        if p == NOT_YET:
            break  # younger allocations have not happened yet
        info = a_info[i]
        reclaimable = ((info >> 24) & AF_RECLAIMABLE) != 0
        if p >= 0 and reclaimable:
            order = info & 15
            free_block(s, p, order, c_on_free[(info >> 4) & 255])
            s.ctr[C_RECLAIM] += 1 << order
            a_pfn[i] = GONE
        if i == rc[0] and (a_pfn[i] < 0 or not reclaimable):
            rc[0] = i + 1  # gone or never reclaimable: no need to look at it again
        i += 1


@njit
def __alloc_pages_reclaim(s, order, mt, a_pfn, a_info, c_on_free, rc):
    """__alloc_pages after its fast path failed at the low watermark: the min watermark
    and a per-CPU drain; direct compaction for costly orders (compaction on); then wake
    kswapd (reclaim to high; it wakes kcompactd for an order > 0) and retry at min; else
    count a failure for this order."""
    pfn = __alloc_pages_slowpath(s, order, mt, s.par[P_CPU], ALLOC_WMARK_LOW)
    if pfn >= 0:
        return pfn
    if s.par[P_COMPACTION] != 0 and order > PAGE_ALLOC_COSTLY_ORDER:
        pfn = __alloc_pages_direct_compact(s, order, mt, s.par[P_CPU], MODE_ASYNC)
        if pfn >= 0:
            return pfn
    kswapd_reclaim(s, a_pfn, a_info, c_on_free, rc)
    if s.par[P_COMPACTION] != 0 and order > 0:
        wakeup_kcompactd(s, order)
    pfn = __alloc_pages_noreclaim(s, order, mt, s.par[P_CPU], ALLOC_WMARK_MIN)
    if pfn < 0:
        alloc_failed(s, order)
    return pfn


@njit_inline
def free_block(s, pfn, order, free_act):
    """A caller frees a block: back into the policy's cache if it came from there (no
    direct-map change), else the caller's direct-map action, then the policy's free path
    (capture) or the page allocator."""
    s.pg_owner[pfn] = -1  # the reverse map for migration (compaction.py)
    if s.pg_flags[pfn] & PG_CACHE:
        policy_free(s, pfn, order)
        return
    apply_free_action(s, pfn, 1 << order, free_act)
    if not policy_free(s, pfn, order):
        __free_pages(s, pfn, order, s.par[P_CPU])


@njit_inline
def policy_or_pack_alloc(s, order, served, info):
    """The policy's pages, or (a BPF image under a code-pack policy) chunks of a pack."""
    if served == SERVED_CHUNKS:
        return bpf_prog_pack_alloc(s, 0 if (info >> 24) & AF_NO_PACK else alloc_chunks(info))
    return policy_alloc(s, order)


@njit
def alloc_unmapped(s, order, served, info, a_pfn, a_info, c_on_free, rc):
    """A __GFP_UNMAPPED request: through the policy; on failure reclaim once and retry.
    Returns the pfn, -1 on failure, or NOT_SERVED (no policy, size limit, order not
    served): then the caller takes today's path."""
    if not served:
        return NOT_SERVED
    pfn = policy_or_pack_alloc(s, order, served, info)
    if pfn == -1:
        kswapd_reclaim(s, a_pfn, a_info, c_on_free, rc)
        pfn = policy_or_pack_alloc(s, order, served, info)
        if pfn == -1:
            alloc_failed(s, order)
    return pfn


@njit
def record_sample(s, samples, k, t):
    sync_policy_counters(s)
    s.ctr[C_FRAG_SCORE] = fragmentation_score_zone(s)
    for j in range(N_COUNTERS):
        samples[k, j] = s.ctr[j]
    samples[k, N_COUNTERS] = free_2m_blocks(s)
    samples[k, N_COUNTERS + 1] = np.int64(t * 1e6)  # microseconds


@njit_inline
def prefetch_frees(s, ev_code, a_pfn, e, n_ev):
    if e + PF_FAR < n_ev:
        c = ev_code[e + PF_FAR]
        if c & 1:
            prefetch(a_pfn, c >> 1)
    if e + PF_NEAR < n_ev:
        c = ev_code[e + PF_NEAR]
        if c & 1:
            p = a_pfn[c >> 1]
            if p >= 0:
                prefetch(s.pg_flags, p)


@njit
def run_events(s, ev_time, ev_code, ev_info, a_info, a_pfn, c_mt, c_on_alloc, c_on_free, c_served,
               rc, samples, sample_dt, start, stop, t_next_sample, n_sampled):
    """Process events[start:stop]; returns (next sample time, samples taken). Resumable,
    so the caller can show progress between chunks."""
    k = n_sampled
    max_k = samples.shape[0]
    n_ev = ev_code.shape[0]
    for e in range(start, stop):
        prefetch_frees(s, ev_code, a_pfn, e, n_ev)
        t = ev_time[e]
        while t >= t_next_sample and k < max_k:
            record_sample(s, samples, k, t_next_sample)
            k += 1
            t_next_sample += sample_dt
        code = ev_code[e]
        aid = code >> 1
        info = ev_info[e]
        order = info & 15
        caller = (info >> 4) & 255
        s.par[P_CPU] = (info >> 12) & 4095
        s.ctr[C_EVENTS] += 1
        t_us = np.int64(t * 1e6)
        policy_tick(s, t_us)
        compaction_tick(s, t_us)
        if (code & 1) == 0:
            flags = (info >> 24) & 255
            pfn = NOT_SERVED
            if flags & AF_UNMAPPED:
                s.ctr[C_UNMAPPED_ALLOCS] += 1
                pfn = alloc_unmapped(s, order, c_served[caller], info, a_pfn, a_info, c_on_free, rc)
            by_policy = pfn != NOT_SERVED
            if not by_policy:
                # __alloc_pages: the fast path inlined here (a call from compiled code passes
                # every array of the state, ~200 values, more than the fast path's work)
                pfn = get_page_from_freelist(s, order, c_mt[caller], s.par[P_CPU], ALLOC_WMARK_LOW)
                if pfn < 0:
                    pfn = __alloc_pages_reclaim(s, order, c_mt[caller], a_pfn, a_info, c_on_free, rc)
                if order == PAGEBLOCK_ORDER and c_mt[caller] == MIGRATE_MOVABLE:  # a THP fault
                    s.ctr[C_THP_FAULT_ALLOC if pfn >= 0 else C_THP_FAULT_FALLBACK] += 1
            if PACK_HANDLE_BASE < pfn < 0:
                a_pfn[aid] = FAILED
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
                    a_pfn[aid] = GONE
                continue  # failed, or reclaimed earlier
            free_block(s, pfn, order, c_on_free[caller])
            a_pfn[aid] = GONE
    return t_next_sample, k


def new_alloc_state(n_allocs: int) -> np.ndarray:
    return hugemem.full(n_allocs, NOT_YET, np.int32)



@njit
def sample_until(s, samples, k, t_next_sample, sample_dt, t_end):
    """Samples after the last event, up to the end of the simulated duration."""
    while t_next_sample <= t_end + 1e-9 and k < samples.shape[0]:
        record_sample(s, samples, k, t_next_sample)
        k += 1
        t_next_sample += sample_dt
    return t_next_sample, k
