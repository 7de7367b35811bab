"""Kernel constants (x86-64, 4K pages). The state's own layout (counters, settings, event
word, status codes) is declared in layout.py."""

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MAX_PAGE_ORDER = 10  # include/linux/mmzone.h (MAX_ORDER before 6.8)
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9  # HUGETLB_PAGE_ORDER on x86-64
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER
PMD_PAGES = 512  # 4K pages per 2M mapping
PUD_PAGES = 512 * 512  # 4K pages per 1G mapping
PTRS_PER_PMD = 512  # 2M entries per 1G (PUD) region
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
MAP_TABLE_BOOT = 3  # a 2M region mapped with 4K PTEs at boot on purpose (_PAGE_KERNEL_4K): never collapsed

# per-page state flags (pg_flags)
PG_BUDDY = 1  # head of a free buddy block (PageBuddy)
PG_ALLOC = 2  # head of an allocated block
PG_PCP = 4  # on a per-CPU list
PG_RESERVED = 8  # boot reservation / memmap / kernel image
PG_HOLE = 16  # not RAM
PG_CACHE = 32  # block head held by a policy's cache (with PG_BUDDY: free in the cache)
