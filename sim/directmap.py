"""The x86-64 direct map and change_page_attr (arch/x86/mm/pat/set_memory.c).

Levels: one entry per 1G region (pud_map), per 2M region (pmd_map), and the effective
protection of every 4K page (prot). A 1G or 2M leaf has one protection, stored in each
of its 4K pages' prot entries, so a change of a whole leaf is a range write.
"""
from .constants import (
    MAP_LEAF, MAP_NONE, MAP_TABLE, PG_HOLE, PMD_PAGES, PTRS_PER_PMD, PROT_PRESENT, PROT_RW,
    PUD_PAGES,
)
from .jit import njit, njit_inline
from .page_alloc import ALLOC_NO_WATERMARKS, ALLOC_WMARK_MIN, __free_pages, alloc_pgtable_noremap
from .layout import (
    CPA_EFAULT, CPA_ENOMEM, CPA_OK, NO_PAGE,
    C_CPA, C_DM_1G, C_DM_2M, C_DM_4K, C_L2_COLLAPSES, C_L2_SPLITS, C_L3_COLLAPSES, C_L3_SPLITS,
    C_NP_PAGES, C_PT_PAGES, C_RO_PAGES, C_TLB_FLUSH_ALL, C_TLB_FLUSH_PAGES, C_TLB_FLUSH_RANGE,
    C_TLB_FLUSH_RANGE_FULL, P_COLLAPSE, P_GBPAGES, P_MAX_PFN_MAPPED, V_CPU,
)

# --- TLB flushes (counted where the modelled kernel path issues one) -------------------------
# arch/x86/mm/pat/set_memory.c: __split_large_page and collapse_large_pages call flush_tlb_all();
# the set_direct_map_*_noflush calls flush nothing (their callers do: secretmem_fault,
# vm_reset_perms via _vm_unmap_aliases, guest_memfd); set_memory_* end in cpa_flush(), which
# calls flush_tlb_all() when cpa->force_flush_all (an alias was changed: a vmalloc address's
# direct-map alias) or numpages > tlb_single_page_flush_ceiling (33), else flushes each page.
TLB_SINGLE_PAGE_FLUSH_CEILING = 33


@njit
def flush_tlb_all(s):
    s.ctr[C_TLB_FLUSH_ALL] += 1


@njit
def flush_tlb_kernel_range(s, npages):
    """flush_tlb_kernel_range over npages 4K pages (one call). On x86 (arch/x86/mm/tlb.c) a
    range of more than tlb_single_page_flush_ceiling pages is a full flush (do_flush_tlb_all):
    counted as a call here too, and in tlb_flush_kernel_range_full."""
    s.ctr[C_TLB_FLUSH_RANGE] += 1
    s.ctr[C_TLB_FLUSH_PAGES] += npages
    if npages > TLB_SINGLE_PAGE_FLUSH_CEILING:
        s.ctr[C_TLB_FLUSH_RANGE_FULL] += 1


@njit
def cpa_flush(s, numpages, force_flush_all):
    """cpa_flush after a set_memory_* call that changed something."""
    if force_flush_all or numpages > TLB_SINGLE_PAGE_FLUSH_CEILING:
        flush_tlb_all(s)
    else:
        flush_tlb_kernel_range(s, numpages)


@njit
def alloc_pgtable_page(s):
    """The page-table page a split needs: alloc_pages(GFP_KERNEL, 0), unmovable."""
    pfn = alloc_pgtable_noremap(s, ALLOC_WMARK_MIN)
    if pfn == NO_PAGE:  # GFP_KERNEL may dip further after reclaim; model it as the reserves
        pfn = alloc_pgtable_noremap(s, ALLOC_NO_WATERMARKS)
    if pfn != NO_PAGE:
        s.ctr[C_PT_PAGES] += 1
    return pfn


@njit
def split_large_page_1g(s, g):
    """split_large_page at PUD level: one 1G leaf -> 512 2M leaves (direct_map_level3_splits)."""
    pt = alloc_pgtable_page(s)
    if pt == NO_PAGE:
        return CPA_ENOMEM
    s.pud_pt[g] = pt
    s.pud_map[g] = MAP_TABLE  # pmd_map entries below were MAP_LEAF already
    s.ctr[C_L3_SPLITS] += 1
    s.ctr[C_DM_1G] -= 1
    s.ctr[C_DM_2M] += PTRS_PER_PMD
    flush_tlb_all(s)  # __split_large_page: "a global flush tlb after splitting the large page"
    return CPA_OK


@njit
def split_large_page_2m(s, m):
    """split_large_page at PMD level: one 2M leaf -> 512 4K PTEs (direct_map_level2_splits)."""
    pt = alloc_pgtable_page(s)
    if pt == NO_PAGE:
        return CPA_ENOMEM
    s.pmd_pt[m] = pt
    s.pmd_map[m] = MAP_TABLE
    s.ctr[C_L2_SPLITS] += 1
    s.ctr[C_DM_2M] -= 1
    s.ctr[C_DM_4K] += PMD_PAGES
    flush_tlb_all(s)  # __split_large_page
    return CPA_OK


@njit
def account_prot(s, old, new, n):
    """Keep the counts of not-present and read-only 4K pages in step with prot."""
    if (old & PROT_PRESENT) != (new & PROT_PRESENT):
        s.ctr[C_NP_PAGES] += n if (new & PROT_PRESENT) == 0 else -n
    old_ro = (old & PROT_PRESENT) != 0 and (old & PROT_RW) == 0
    new_ro = (new & PROT_PRESENT) != 0 and (new & PROT_RW) == 0
    if old_ro != new_ro:
        s.ctr[C_RO_PAGES] += n if new_ro else -n


LEAF_SPLIT = 0  # change_large_page: the leaf must be split


@njit_inline
def change_large_page(s, lpaddr, size, addr, end, mask_set, mask_clr):
    """__should_split_large_page for the leaf of `size` pages at lpaddr: LEAF_SPLIT, or the
    leaf's end (> 0 when its protection was updated in place because the request covers it
    whole, < 0 when the protection is already the one asked for)."""
    old = s.prot[lpaddr]
    new = (old & (0xFF ^ mask_clr)) | mask_set
    nxt = lpaddr + size
    if new == old:
        return -nxt
    if addr == lpaddr and end >= nxt:
        account_prot(s, old, new, size)
        s.prot[lpaddr:nxt] = new
        return nxt
    return LEAF_SPLIT


@njit
def __cpa_process_fault(s, addr, level_pages):
    """__cpa_process_fault for a hole in the direct map (no PTE): below max_pfn_mapped the
    kernel skips it (holes are expected there) and carries on; above, -EFAULT. Returns the
    pfn to continue from (the end of the unmapped entry covering addr), or CPA_EFAULT."""
    if addr >= s.par[P_MAX_PFN_MAPPED]:
        return CPA_EFAULT
    return (addr // level_pages + 1) * level_pages


@njit
def __change_page_attr_set_clr(s, pfn, numpages, mask_set, mask_clr):
    """__change_page_attr_set_clr over [pfn, pfn + numpages) of the direct map.

    For each large page covering the address (__should_split_large_page): unchanged
    protection -> nothing; request covers the whole aligned large page -> update in
    place; otherwise split it (1G -> 2M, 2M -> 4K, as deep as needed), each split taking
    one order-0 unmovable page-table page. Holes below max_pfn_mapped are skipped
    (__cpa_process_fault). Returns 0, -ENOMEM or -EFAULT (beyond the last RAM page); a call
    that changed something counts in cpa_calls, also when it then failed."""
    addr = pfn
    end = pfn + numpages
    changed = False
    err = CPA_OK
    while addr < end:
        g = addr // PUD_PAGES
        if s.pud_map[g] == MAP_NONE:
            addr = __cpa_process_fault(s, addr, PUD_PAGES)
            if addr == CPA_EFAULT:
                err = CPA_EFAULT
                break
            continue
        if s.pud_map[g] == MAP_LEAF:
            nxt = change_large_page(s, g * PUD_PAGES, PUD_PAGES, addr, end, mask_set, mask_clr)
            if nxt != LEAF_SPLIT:
                changed |= nxt > 0
                addr = min(abs(nxt), end)
                continue
            err = split_large_page_1g(s, g)
            if err != CPA_OK:
                break
        m = addr // PMD_PAGES
        pm = s.pmd_map[m]
        if pm == MAP_NONE:
            addr = __cpa_process_fault(s, addr, PMD_PAGES)
            if addr == CPA_EFAULT:
                err = CPA_EFAULT
                break
            continue
        if pm == MAP_LEAF:
            nxt = change_large_page(s, m * PMD_PAGES, PMD_PAGES, addr, end, mask_set, mask_clr)
            if nxt != LEAF_SPLIT:
                changed |= nxt > 0
                addr = min(abs(nxt), end)
                continue
            err = split_large_page_2m(s, m)
            if err != CPA_OK:
                break
        # PTE level: change the 4K entries up to the end of this 2M region
        stop = min(end, (m + 1) * PMD_PAGES)
        while addr < stop:
            old = s.prot[addr]
            if old == 0 and (s.pg_flags[addr] & PG_HOLE) != 0:  # no PTE for a hole
                if __cpa_process_fault(s, addr, 1) == CPA_EFAULT:
                    err = CPA_EFAULT
                    break
            else:
                new = (old & (0xFF ^ mask_clr)) | mask_set
                if new != old:
                    account_prot(s, old, new, 1)
                    s.prot[addr] = new
                    changed = True
            addr += 1
        if err != CPA_OK:
            break
    if changed:
        s.ctr[C_CPA] += 1
    return err


@njit
def free_pgtable_page(s, pfn):
    """Give a page-table page released by a collapse back to the page allocator
    (tables built at boot came from memblock and are not freed)."""
    if pfn != NO_PAGE:
        __free_pages(s, pfn, 0, s.var[V_CPU])
        s.ctr[C_PT_PAGES] -= 1


@njit
def collapse_pmd_page(s, m):
    """collapse_pmd_page: 512 present, uniform, contiguous, aligned 4K PTEs -> one 2M leaf;
    the page-table page is freed."""
    if s.pmd_map[m] != MAP_TABLE:  # MAP_TABLE_BOOT (_PAGE_KERNEL_4K) is never collapsed
        return False
    start = m * PMD_PAGES
    first = s.prot[start]
    if (first & PROT_PRESENT) == 0:
        return False
    for i in range(1, PMD_PAGES):
        if s.prot[start + i] != first:
            return False
    s.pmd_map[m] = MAP_LEAF
    free_pgtable_page(s, s.pmd_pt[m])
    s.pmd_pt[m] = NO_PAGE
    s.ctr[C_L2_COLLAPSES] += 1
    s.ctr[C_DM_4K] -= PMD_PAGES
    s.ctr[C_DM_2M] += 1
    return True


@njit
def collapse_pud_page(s, g):
    """collapse_pud_page: 512 uniform 2M leaves -> one 1G leaf."""
    if s.pud_map[g] != MAP_TABLE:
        return False
    first_m = g * PTRS_PER_PMD
    first = s.prot[g * PUD_PAGES]
    if (first & PROT_PRESENT) == 0:
        return False
    for i in range(PTRS_PER_PMD):
        if s.pmd_map[first_m + i] != MAP_LEAF or s.prot[(first_m + i) * PMD_PAGES] != first:
            return False
    s.pud_map[g] = MAP_LEAF
    free_pgtable_page(s, s.pud_pt[g])
    s.pud_pt[g] = NO_PAGE
    s.ctr[C_L3_COLLAPSES] += 1
    s.ctr[C_DM_2M] -= PTRS_PER_PMD
    s.ctr[C_DM_1G] += 1
    return True


@njit
def collapse_large_pages(s, pfn, numpages):
    """cpa_collapse_large_pages (CPA_COLLAPSE, 6.15+): per 2M region the range touches, a PMD
    table under a PUD table is collapsed to a 2M leaf if it can be; only right after that, its
    1G region to a 1G leaf (collapse_large_pages; collapse_pud_page needs direct_gbpages).
    Returns the number of page-table pages released."""
    released = 0
    for m in range(pfn // PMD_PAGES, (pfn + numpages - 1) // PMD_PAGES + 1):
        g = m // PTRS_PER_PMD
        if s.pud_map[g] != MAP_TABLE or not collapse_pmd_page(s, m):
            continue
        released += 1
        if s.par[P_GBPAGES] != 0 and collapse_pud_page(s, g):
            released += 1
    if released:
        flush_tlb_all(s)  # cpa_collapse_large_pages flushes everything before freeing the tables
    return released


@njit
def change_page_attr(s, pfn, numpages, mask_set, mask_clr, collapse):
    """__change_page_attr_set_clr, plus collapse_large_pages when CPA_COLLAPSE is asked for
    (set_memory_rox), the machine enables it and the call changed something (6.15+ collapses
    from cpa_flush, which runs only then)."""
    before = s.ctr[C_CPA]
    err = __change_page_attr_set_clr(s, pfn, numpages, mask_set, mask_clr)
    if err == CPA_OK and collapse and s.par[P_COLLAPSE] != 0 and s.ctr[C_CPA] != before:
        collapse_large_pages(s, pfn, numpages)
    return err


@njit
def set_memory(s, pfn, numpages, mask_set, mask_clr, collapse, alias):
    """A set_memory_* call (change_page_attr_set_clr): the change, then cpa_flush when it
    changed something. `alias`: the call was on a vmalloc address, whose direct-map alias
    cpa_process_alias changed (force_flush_all)."""
    before = s.ctr[C_CPA]
    err = change_page_attr(s, pfn, numpages, mask_set, mask_clr, collapse)
    if s.ctr[C_CPA] != before:  # CPA_FLUSHTLB
        if err != CPA_OK:
            flush_tlb_all(s)  # change_page_attr_set_clr: "On error; flush everything to be sure" (cpa_flush_all)
        else:
            cpa_flush(s, numpages, alias)
    return err


@njit
def mapping_level(s, pfn):
    """The page size mapping pfn: 3 = 1G, 2 = 2M, 1 = 4K, 0 = not mapped."""
    g = pfn // PUD_PAGES
    if s.pud_map[g] == MAP_NONE:
        return 0
    if s.pud_map[g] == MAP_LEAF:
        return 3
    pm = s.pmd_map[pfn // PMD_PAGES]
    if pm == MAP_NONE:
        return 0
    if pm == MAP_LEAF:
        return 2
    return 1
