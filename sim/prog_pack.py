"""bpf_prog_pack (kernel/bpf/core.c): BPF JIT images packed into 2M ROX packs in
64-byte chunks, one bitmap of 32768 chunks per pack.

A pack is one 2M block of the policy's code cache (prog_pack: module_alloc of
BPF_PROG_PACK_SIZE + set_memory_rox, the direct-map alias made RO in place; execmem_rox:
a block of the ROX cache).  bpf_prog_pack_alloc takes the first pack, in creation order,
with a free run of enough chunks (bitmap_find_next_zero_area) and allocates a new pack
when none has one; bpf_prog_pack_free clears the chunks and frees the pack once it is
empty.  Images larger than a pack get whole pages (NOT_SERVED: today's path).

An allocation handed out in chunks is a handle in a_pfn (<= PACK_HANDLE_BASE), not a pfn.
"""
import numpy as np

from .constants import BPF_PROG_CHUNK_COUNT, BPF_PROG_CHUNK_SIZE, PAGEBLOCK_ORDER
from .jit import njit
from .policy import policy_alloc, policy_free
from .layout import (
    NO_PAGE, NOT_SERVED, is_code_pack,
    C_PACKS, C_PACK_CHUNKS, C_PACK_LIMIT_FALLBACKS, V_PACK_COUNT,
)

PACK_WORDS = BPF_PROG_CHUNK_COUNT // 64  # uint64 words per pack bitmap
PACK_SLOTS = 1024  # packs the model can hold (2 GiB of JIT images; 4 MiB of bitmaps)
PACK_HANDLE_BASE = -16  # a_pfn <= this: a chunk allocation, -(slot * 32768 + pos) + base

NO_AREA = -1  # bitmap_find_next_zero_area: no run of free chunks that long
# bpf_prog_pack_alloc returns a handle, NO_PAGE (no pack memory) or NOT_SERVED (larger than a
# pack, or no free slot: today's path)

_ONE = np.uint64(1)
_FULL = np.uint64(0xFFFFFFFFFFFFFFFF)


def bytes_to_chunks(nbytes):
    """BPF_PROG_SIZE_TO_NBITS: round_up(size, 64) / 64."""
    return (nbytes + BPF_PROG_CHUNK_SIZE - 1) // BPF_PROG_CHUNK_SIZE


@njit
def bitmap_find_next_zero_area(bits, slot, nbits):
    """First position of nbits consecutive clear bits in a pack's bitmap, or NO_AREA."""
    run = 0
    start = 0
    for w in range(PACK_WORDS):
        word = bits[slot, w]
        if word == _FULL:
            run = 0
            continue
        if word == 0:
            if run == 0:
                start = w * 64
            run += 64
            if run >= nbits:
                return start
            continue
        for b in range(64):
            if (word >> np.uint64(b)) & _ONE:
                run = 0
            else:
                if run == 0:
                    start = w * 64 + b
                run += 1
                if run >= nbits:
                    return start
    return NO_AREA


@njit
def bitmap_assign(bits, slot, pos, nbits, value):
    """bitmap_set / bitmap_clear of [pos, pos + nbits)."""
    for p in range(pos, pos + nbits):
        m = _ONE << np.uint64(p & 63)
        if value:
            bits[slot, p >> 6] |= m
        else:
            bits[slot, p >> 6] &= ~m


@njit
def alloc_new_pack(s):
    """A new pack (a 2M block of the policy's ROX cache) at the tail of pack_list;
    returns its slot, NO_PAGE or NOT_SERVED."""
    n = s.var[V_PACK_COUNT]
    if n >= s.pack_pfn.shape[0]:
        s.ctr[C_PACK_LIMIT_FALLBACKS] += 1
        return NOT_SERVED
    pfn = policy_alloc(s, PAGEBLOCK_ORDER)
    if pfn == NO_PAGE or pfn == NOT_SERVED:
        return pfn
    slot = 0
    while s.pack_pfn[slot] != NO_PAGE:
        slot += 1
    s.pack_pfn[slot] = pfn
    s.pack_used[slot] = 0
    s.pack_list[n] = slot
    s.var[V_PACK_COUNT] = n + 1
    s.ctr[C_PACKS] += 1
    return slot


@njit
def bpf_prog_pack_alloc(s, nbits):
    """Returns a handle, NO_PAGE or NOT_SERVED."""
    if nbits <= 0 or nbits > BPF_PROG_CHUNK_COUNT:
        return NOT_SERVED  # size > BPF_PROG_PACK_SIZE: bpf_jit_alloc_exec + set_memory_rox
    for i in range(s.var[V_PACK_COUNT]):
        slot = s.pack_list[i]
        if BPF_PROG_CHUNK_COUNT - s.pack_used[slot] < nbits:
            continue
        pos = bitmap_find_next_zero_area(s.pack_bits, slot, nbits)
        if pos != NO_AREA:
            return pack_take(s, slot, pos, nbits)
    slot = alloc_new_pack(s)
    if slot == NO_PAGE or slot == NOT_SERVED:
        return slot
    return pack_take(s, slot, 0, nbits)


@njit
def pack_take(s, slot, pos, nbits):
    bitmap_assign(s.pack_bits, slot, pos, nbits, True)
    s.pack_used[slot] += nbits
    s.ctr[C_PACK_CHUNKS] += nbits
    return PACK_HANDLE_BASE - (slot * BPF_PROG_CHUNK_COUNT + pos)


@njit
def bpf_prog_pack_free(s, handle, nbits):
    """Clear the image's chunks; an empty pack goes back to the policy's cache, which
    releases it (module_memfree / execmem_free of the 2M block)."""
    code = PACK_HANDLE_BASE - handle
    slot = code // BPF_PROG_CHUNK_COUNT
    pos = code % BPF_PROG_CHUNK_COUNT
    bitmap_assign(s.pack_bits, slot, pos, nbits, False)
    s.pack_used[slot] -= nbits
    s.ctr[C_PACK_CHUNKS] -= nbits
    if s.pack_used[slot] > 0:
        return
    n = s.var[V_PACK_COUNT]
    i = 0
    while s.pack_list[i] != slot:
        i += 1
    for j in range(i, n - 1):  # list_del, keeping creation order
        s.pack_list[j] = s.pack_list[j + 1]
    s.var[V_PACK_COUNT] = n - 1
    pfn = s.pack_pfn[slot]
    s.pack_pfn[slot] = NO_PAGE
    s.ctr[C_PACKS] -= 1
    policy_free(s, pfn, PAGEBLOCK_ORDER)


def pack_state(s, policy_name: str):
    """The state with room for the policy's packs (a 1-slot stub for other policies)."""
    slots = min(PACK_SLOTS, s.pmd_map.shape[0]) if is_code_pack(policy_name) else 1
    return s._replace(pack_pfn=np.full(slots, NO_PAGE, np.int32), pack_list=np.zeros(slots, np.int32),
                      pack_used=np.zeros(slots, np.int32), pack_bits=np.zeros((slots, PACK_WORDS), np.uint64))
