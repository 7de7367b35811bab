"""Counters under the kernel's names (layout.COUNTERS), read from the state without changing
it (O(1) in pages, except the pageblock tallies, which are O(pageblocks) and only read at the end)."""
from __future__ import annotations

import numpy as np

from .constants import MAX_PAGE_ORDER, MIGRATETYPE_NAMES, NR_PAGE_ORDERS, PAGEBLOCK_ORDER
from .jit import njit
from .layout import (
    C_PB_MIXED, C_PB_POLLUTED, COUNTER_NAMES, N_COUNTERS, P_MANAGED, P_MIN_FREE_KB, P_RAM_PAGES, P_WMARK_HIGH,
    P_WMARK_LOW, P_WMARK_MIN,
)


@njit
def free_2m_blocks(s):
    """Free 2M blocks left in the page allocator (free blocks of order >= pageblock_order)."""
    total = 0
    for o in range(PAGEBLOCK_ORDER, MAX_PAGE_ORDER + 1):
        for mt in range(s.nr_free.shape[1]):
            total += s.nr_free[o, mt] << (o - PAGEBLOCK_ORDER)
    return total


def counters(s) -> dict[str, int]:
    """All counters of a state, kernel names first (/proc/vmstat, /proc/meminfo)."""
    from .policy import reported_counter

    ctr = [int(reported_counter(s, j)) for j in range(N_COUNTERS)]  # pure: the state is not written
    out = {name: ctr[i] * scale for name, i, scale in COUNTER_NAMES}
    nr_blocks = s.nr_free.sum(axis=1)
    for k in range(NR_PAGE_ORDERS):
        out[f"nr_free_order_{k}"] = int(nr_blocks[k])  # /proc/buddyinfo
    out["free_2m_blocks"] = int(free_2m_blocks(s))
    for name, i in (("managed_pages", P_MANAGED), ("ram_pages", P_RAM_PAGES), ("min_free_kbytes", P_MIN_FREE_KB),
                    ("wmark_min", P_WMARK_MIN), ("wmark_low", P_WMARK_LOW), ("wmark_high", P_WMARK_HIGH)):
        out[name] = int(s.par[i])
    tally = np.bincount(s.pb_mt, minlength=len(MIGRATETYPE_NAMES))
    for i, name in enumerate(MIGRATETYPE_NAMES):
        out[f"pageblocks_{name}"] = int(tally[i])
    return out


def pageblock_pollution(s) -> dict[str, int]:
    """{pageblocks_polluted, pageblocks_mixed} from the incremental counters (O(1))."""
    return {"pageblocks_polluted": int(s.ctr[C_PB_POLLUTED]), "pageblocks_mixed": int(s.ctr[C_PB_MIXED])}
