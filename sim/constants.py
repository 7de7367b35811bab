"""Kernel constants (x86-64, 4K pages) and the indices of the state's counter array."""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_PAGE_ORDER = 10  # include/linux/mmzone.h (MAX_ORDER before 6.8)
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9  # HUGETLB_PAGE_ORDER on x86-64
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
PTRS_PER_PTE = 512
PMD_PAGES = 512  # 4K pages per 2M mapping
PUD_PAGES = 512 * 512  # 4K pages per 1G mapping
PAGE_ALLOC_COSTLY_ORDER = 3
BPF_PROG_CHUNK_SHIFT = 6  # kernel/bpf/core.c: bpf_prog_pack hands out 64-byte chunks
BPF_PROG_CHUNK_SIZE = 1 << BPF_PROG_CHUNK_SHIFT
BPF_PROG_PACK_SIZE = 2 << 20  # PMD_SIZE on x86-64
BPF_PROG_CHUNK_COUNT = BPF_PROG_PACK_SIZE // BPF_PROG_CHUNK_SIZE  # 32768 per pack

# migratetypes (include/linux/mmzone.h order); UNMAPPED is the 2022 RFC's MIGRATE_UNMAPPED
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_UNMAPPED = 3
MIGRATE_PCPTYPES = 3
NR_MIGRATETYPES = 4
MIGRATETYPE_NAMES = ("unmovable", "movable", "reclaimable", "unmapped")
MIGRATETYPES = {n: i for i, n in enumerate(MIGRATETYPE_NAMES)}

# direct-map protection bits of a 4K page (a subset of the x86 PTE bits that CPA changes)
PROT_PRESENT = 1  # _PAGE_PRESENT
PROT_RW = 2  # _PAGE_RW
PROT_NX = 4  # _PAGE_NX
PROT_PKEY = 8  # a PKS protection key (protected page tables)
PAGE_KERNEL = PROT_PRESENT | PROT_RW | PROT_NX  # the direct map's default protection

# mapping level of a 1G (PUD) or 2M (PMD) region of the direct map
MAP_NONE = 0  # not mapped (hole)
MAP_LEAF = 1  # a leaf (1G page at PUD level, 2M page at PMD level)
MAP_TABLE = 2  # points to a lower-level table (split, or built with 4K pages at boot)

# per-page state flags (pg_flags)
PG_BUDDY = 1  # head of a free buddy block (PageBuddy)
PG_ALLOC = 2  # head of an allocated block
PG_PCP = 4  # on a per-CPU list
PG_RESERVED = 8  # boot reservation / memmap / kernel image
PG_HOLE = 16  # not RAM
PG_CACHE = 32  # block head held by a policy's cache (with PG_BUDDY: free in the cache)

# policies (PolicyConfig.name)
POLICY_CODES = {"none": 0, "unmapped_cache": 1, "migratetype": 2, "grouped_pages": 3,
                "prog_pack": 4, "execmem_rox": 5}
POL_NONE, POL_UNMAPPED_CACHE, POL_MIGRATETYPE, POL_GROUPED, POL_PROG_PACK, POL_EXECMEM = range(6)

# counter indices into State.ctr (int64)
C_L2_SPLITS = 0  # direct_map_level2_splits
C_L3_SPLITS = 1  # direct_map_level3_splits
C_L2_COLLAPSES = 2
C_L3_COLLAPSES = 3
C_DM_4K = 4  # number of 4K leaf entries (DirectMap4k / 4)
C_DM_2M = 5  # number of 2M leaf entries
C_DM_1G = 6  # number of 1G leaf entries
C_PT_PAGES = 7  # page-table pages held by the direct map below the PUD level
C_NR_FREE = 8  # NR_FREE_PAGES (buddy free lists; not per-CPU lists)
C_NR_PCP = 9  # pages on per-CPU lists
C_ALLOCS = 10  # successful alloc_pages calls
C_FREES = 11
C_ALLOC_FAIL = 12  # failed alloc_pages calls (all orders)
C_RECLAIM = 13  # pages freed by reclaim (pgsteal)
C_KSWAPD = 14  # reclaim runs
C_CLAIM = 15  # fallbacks that claimed a whole pageblock
C_STEAL = 16  # fallbacks that stole pages without claiming the block
C_CPA = 17  # change_page_attr calls that changed something
C_TLB_FLUSH = 18  # flush_tlb_all from a split/collapse, or a changed large page
C_ALLOC_PAGES = 19  # pages handed out (sum of 1 << order)
C_FREE_PAGES = 20
C_PCP_REFILL = 21  # rmqueue_bulk calls
C_PCP_DRAIN = 22  # free_pcppages_bulk calls
C_UNMAPPED_ALLOCS = 23  # allocations of __GFP_UNMAPPED users
C_NP_PAGES = 24  # 4K pages currently not present in the direct map
C_RO_PAGES = 25  # 4K pages currently read-only in the direct map
C_CACHE_HITS = 26  # policy counters (unmapped-page caches)
C_CACHE_MISSES = 27
C_CACHE_BLOCKS = 28
C_CACHE_FREE = 29
C_CACHE_USED = 30
C_CACHE_RELEASED = 31
C_CACHE_PEAK = 32
C_SHRINK_RUNS = 33
C_CACHE_LIMIT_FALLBACKS = 34
C_CACHE_REFILL_2M = 35
C_CACHE_REFILL_LOW = 36
C_EVENTS = 37  # events processed by the loop
C_CACHE_HELD = 38  # pages held by the policy's cache (free + used)
C_CACHE_STRANDED = 39  # most free pages left in the cache when reclaim ran (stranded under pressure)
C_CACHE_CAPTURED = 40  # pages captured into the cache on free (already PTE-mapped)
C_CACHE_BYPASS = 41  # requests the policy does not serve (e.g. order > 0 for grouped pages)
C_PACKS = 42  # live bpf_prog_pack packs (2M each)
C_PACK_CHUNKS = 43  # 64-byte chunks in use in the packs
C_PACK_LIMIT_FALLBACKS = 44  # BPF images served by today's path because the model's pack slots ran out
C_PB_POLLUTED = 45  # pageblocks holding unmovable / reclaimable / unmapped memory (pollution.py)
C_PB_MIXED = 46  # of which MIGRATE_MOVABLE pageblocks
C_ALLOC_FAIL_ORDER = 48  # 11 entries: failures per order
# compaction and migration (compaction.py), /proc/vmstat names
C_COMPACT_STALL = C_ALLOC_FAIL_ORDER + NR_PAGE_ORDERS  # compact_stall: direct compactions
C_COMPACT_SUCCESS = C_COMPACT_STALL + 1  # compact_success: the allocation succeeded after it
C_COMPACT_FAIL = C_COMPACT_STALL + 2  # compact_fail
C_COMPACT_MIGRATE_SCANNED = C_COMPACT_STALL + 3  # compact_migrate_scanned (pfns)
C_COMPACT_FREE_SCANNED = C_COMPACT_STALL + 4  # compact_free_scanned (pfns)
C_COMPACT_ISOLATED = C_COMPACT_STALL + 5  # compact_isolated (pages: sources + targets)
C_COMPACT_DAEMON_WAKE = C_COMPACT_STALL + 6  # compact_daemon_wake: kcompactd runs (woken or proactive)
C_PGMIGRATE_SUCCESS = C_COMPACT_STALL + 7  # pgmigrate_success (pages)
C_PGMIGRATE_FAIL = C_COMPACT_STALL + 8  # pgmigrate_fail (pages)
C_THP_FAULT_ALLOC = C_COMPACT_STALL + 9  # thp_fault_alloc: movable order-9 allocations that succeeded
C_THP_FAULT_FALLBACK = C_COMPACT_STALL + 10  # thp_fault_fallback: ... that failed
C_FRAG_SCORE = C_COMPACT_STALL + 11  # fragmentation_score_zone (0..100), refreshed when sampled / read
N_COUNTERS = C_FRAG_SCORE + 1
