"""The workload: the callers' objects as a stream of events, one window of simulated time at a time.

A caller's objects (a vmalloc area, a module, a BPF JIT image, a secretmem file, ...) are
`allocs` calls of alloc_pages(order) (or ceil(size_bytes / (4K << order))), one order drawn
from `order_mix`, all freed together after the object's lifetime. Background callers fill
their `share` of `target_utilisation` x managed pages before t = 0 and keep it in steady
state (arrival rate = population / mean lifetime).

Memory is the live objects plus one window, whatever the simulated uptime:

* Each caller's k-th object draws its order, allocations, size, lifetime and CPU from
  counter-based random numbers keyed by (seed, caller, k) (keyed.py). A caller's objects
  k < n0 arrive in the fill phase (t in [-1, 0): the objects alive at boot, in boot order)
  or, with `at_s`, from at_s (all at once, or one every `at_interval_s`); objects k >= n0
  in a Poisson process from t = 0 (object k one exponential gap after object k - 1). The
  callers' sources are merged by time as they are drawn (draw_arrivals, pure: it may run a
  window ahead) and admitted (admit_arrivals).
* A caller with `load_copy` draws its load copy right before each object: an object of the
  caller's copy row (callers_table: one row per such caller, after all of them) with the
  same index and time, freed 1 ns later, so after the object's own allocations.
* Window w holds the events whose time t has `window_index(t) == w` (w = -1: the fill
  phase; then [w W, (w + 1) W)). Within a window events are sorted by (time, alloc before
  free, caller, object; a load copy's allocations right before its object's), so the whole
  run sees the same event sequence for any window size.
* An allocation lives in a recycled slot (a_pfn / a_info / a_next / a_gen), so
  per-allocation state is O(live allocations); an object's slots are chained through
  a_next. A live object with a finite lifetime has a record (free time, first slot, count)
  in a calendar queue: a ring of buckets keyed by the window of its free, plus one list for
  frees further out, redistributed once per turn of the ring.
* Reclaimable allocations also enter a FIFO (slot, generation) in allocation order:
  kswapd frees the oldest first (engine.kswapd_reclaim).
"""
import math
from collections import namedtuple

import numpy as np

from .config import Dist, WorkloadConfig, copy_rows
from .constants import (
    BPF_PROG_CHUNK_SIZE, BPF_PROG_PACK_SIZE, MIGRATE_UNMOVABLE, MIGRATETYPES, NR_PAGE_ORDERS, PAGE_SIZE,
)
from .jit import njit, njit_inline, prefetch
from .keyed import (
    D_NONE, F_ACTION, F_ALLOCS, F_CPU, F_FILL, F_GAP, F_LIFE, F_ORDER, F_SIZE, dist_row, draw_k, field_uniform,
    obj_key, uniform,
)
from .layout import (
    A_NOT_YET, ADMITTED, AF_ACTION, AF_NO_PACK, AF_RECLAIMABLE, AF_UNMAPPED, NEED_CHUNKS, NEED_OUT, NEED_RQ, NEED_SLOTS,
    NIL, ON_ALLOC, ON_FREE, ev_chunks, ev_order, ev_word,
)

def dist_mean(d: Dist) -> float:
    return {
        "fixed": lambda: d.value,
        "exp": lambda: d.mean,
        "lognormal": lambda: d.median * math.exp(d.sigma ** 2 / 2),
        "uniform": lambda: (d.low + d.high) / 2,
        "forever": lambda: math.inf,
        "list": lambda: sum(d.values) / len(d.values),
    }[d.dist]()


@njit
def alloc_chunks(info):
    """64-byte chunks an allocation's image needs (bpf_prog_pack_alloc's nbits): the image's
    part in this allocation, or the whole allocation (PAGE_SIZE << order)."""
    c = ev_chunks(info)
    return c if c else (PAGE_SIZE // BPF_PROG_CHUNK_SIZE) << ev_order(info)


NB = 1024  # calendar ring buckets (windows ahead kept in the ring); bucket NB is the far list
CH = 64  # entries per calendar chunk (the worst-case reserve, 2 NB chunks, stays small)
GID_SHIFT = 40  # an object's global id: caller << GID_SHIFT | index
FILL_WINDOW = -1  # window_index of the fill phase (t < 0)

# Live.g: int64 scalars of the stream
G_FREE_SLOTS, G_FREE_CHUNKS, G_RQ_HEAD, G_RQ_TAIL, G_LIVE_SLOTS, G_WINDOW, N_G = range(7)  # N_G: their count

Callers = namedtuple("Callers", [
    "key",  # int64: the caller's random-number key (a hash of its name: adding a caller keeps the others)
    "n0",  # int64: objects of the fill phase / initial objects
    "rate",  # float64: arrivals per second after t = 0
    "fill_lo", "fill_hi",  # float64: the fill phase window, in [-1, 0)
    "fill_sum",  # float64: the sum of the n0 + 1 exponential spacings of the fill arrivals
    "at_s",  # float64: initial objects arrive here (nan: in the fill phase)
    "interval",  # float64: initial object k arrives at at_s + k x interval
    "flags",  # int64: AF_RECLAIMABLE | AF_UNMAPPED
    "act",  # float64: on_alloc_fraction (0 without an on_alloc action)
    "image",  # bool: objects are code images (size in 64-byte chunks, bpf_prog_pack)
    "cdf",  # float64 [caller, order]: cumulative order_mix
    "dist",  # float64 [caller, 3, DIST_COLS]: allocs, size_bytes, lifetime
    "vals",  # float64 [caller, 3, values]: the values of `list` distributions
    "copy",  # int64: the row of the caller's load copy (load_copy > 0), else NIL
    "copy_ratio",  # float64: load_copy
    "mt", "on_alloc", "on_free",  # uint8 per caller
])

Live = namedtuple("Live", [
    "a_pfn", "a_info", "a_next", "a_gen",  # per allocation slot: pfn (or a_pfn state), word, chain, generation
    "slot_free",  # int32 stack of free slots (G_FREE_SLOTS entries)
    # the calendar: chunks of CH entries (free time, object id, first slot, slots), linked per bucket
    "ck_t", "ck_gid", "ck_head", "ck_n",  # per entry
    "ck_next", "ck_fill",  # per chunk
    "ck_free",  # int32 stack of free chunks (G_FREE_CHUNKS entries)
    "cal_head", "cal_tail", "cal_count",  # per bucket (NB ring buckets + the far list)
    "rq_slot", "rq_gen",  # reclaim FIFO ring (G_RQ_HEAD .. G_RQ_TAIL, monotone counters)
    "next_k", "next_t",  # per caller's main source: next object index, its arrival time (fill: the spacing sum)
    "burst_k",  # per caller: its next burst object (at at_s; n0 for a caller without one)
    "g",  # int64 scalars G_*
    "reached",  # float64 [1]: simulated time the generated windows reach
])


def caller_key(name: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little") >> 1


def callers_table(wl: WorkloadConfig, managed_pages: int, seed: int) -> tuple[Callers, list[str]]:
    names = list(wl.callers)
    cs = [wl.callers[n] for n in names]
    copies = copy_rows(wl)
    names += [names[ci] + ":copy" for ci in copies]
    nc = max(len(names), 1)
    dists = [[c.allocs, c.size_bytes, c.lifetime_s] for c in cs]
    dist = np.zeros((nc, 3, 7))
    vals = np.zeros((nc, 3, max([len(d.values) for ds in dists for d in ds if d is not None] + [1])))
    cdf = np.ones((nc, NR_PAGE_ORDERS))
    n0, rate = np.zeros(nc, np.int64), np.zeros(nc)
    copy = np.full(nc, NIL, np.int64)
    copy[copies] = np.arange(len(cs), len(names))
    for ci, c in enumerate(cs):
        dist[ci] = [dist_row(d) for d in dists[ci]]
        for j, d in enumerate(dists[ci]):
            if d is not None and d.values:
                vals[ci, j, :len(d.values)] = d.values
        w = np.zeros(NR_PAGE_ORDERS)
        w[:len(c.order_mix)] = c.order_mix
        cdf[ci] = np.cumsum(w) / w.sum()
        cdf[ci, np.flatnonzero(w)[-1]:] = 1.0  # the last order with weight catches rounding

    def per_row(f, copy_value, dtype=np.float64):  # f(caller) for the callers' rows, then the copies'
        return np.array([f(c) for c in cs] + [copy_value(cs[ci]) for ci in copies] or [0], dtype)

    tab = Callers(
        key=np.array([caller_key(n) for n in names] or [0], np.int64),
        n0=n0, rate=rate,
        fill_lo=per_row(lambda c: c.fill_from - 1.0, lambda c: -1.0),
        fill_hi=per_row(lambda c: c.fill_to - 1.0, lambda c: 0.0),
        fill_sum=np.ones(nc),
        at_s=per_row(lambda c: float(c.at_s) if c.at_s is not None and not c.background else math.nan,
                     lambda c: math.nan),
        interval=per_row(lambda c: c.at_interval_s, lambda c: 0.0),
        flags=per_row(lambda c: (AF_RECLAIMABLE if c.reclaimable else 0) | (AF_UNMAPPED if c.unmapped else 0),
                      lambda c: 0, np.int64),
        act=per_row(lambda c: c.on_alloc_fraction if c.on_alloc != "none" else 0.0, lambda c: 0.0),
        image=per_row(lambda c: not c.background, lambda c: False, np.bool_),
        cdf=cdf, dist=dist, vals=vals, copy=copy,
        copy_ratio=per_row(lambda c: c.load_copy, lambda c: 0.0),
        mt=per_row(lambda c: MIGRATETYPES[c.migratetype], lambda c: MIGRATE_UNMOVABLE, np.uint8),  # GFP_KERNEL
        on_alloc=per_row(lambda c: ON_ALLOC.index(c.on_alloc), lambda c: 0, np.uint8),
        on_free=per_row(lambda c: ON_FREE.index(c.on_free), lambda c: 0, np.uint8),
    )
    for ci, c in enumerate(cs):
        if c.background:  # the population that fills its share, kept in steady state
            n0[ci] = background_population(tab, seed, ci, int(c.share * wl.target_utilisation * managed_pages))
            mean_life = dist_mean(c.lifetime_s)
            rate[ci] = n0[ci] / mean_life if math.isfinite(mean_life) and mean_life > 0 else 0.0
        else:
            n0[ci] = int(c.initial)
            rate[ci] = float(c.rate_per_s)
        tab.fill_sum[ci] = fill_spacings(tab, seed, ci)
    return tab, names


@njit_inline
def object_shape(ct, h, c, k):
    """Object k (keyed h) of caller c: (order, allocations, tail chunks, too big for a pack,
    bytes: size_bytes' draw or the allocations' pages).
    Inlined: a call passes the callers' table by value (110 words pushed per object)."""
    order = 0
    if ct.cdf[c, 0] < 1.0:  # more than one order
        u = field_uniform(h, F_ORDER)
        while ct.cdf[c, order] <= u and order < NR_PAGE_ORDERS - 1:
            order += 1
    unit = PAGE_SIZE << order
    size = 0  # no size_bytes: whole allocations
    if ct.dist[c, 1, 0] != D_NONE:
        size = np.int64(math.ceil(max(draw_k(ct.dist[c, 1], ct.vals[c, 1], h, F_SIZE, k), 1.0)))
        n = (size + unit - 1) // unit
    else:
        n = max(np.int64(round(draw_k(ct.dist[c, 0], ct.vals[c, 0], h, F_ALLOCS, k))), 1)
    tail = 0
    big = False
    if ct.image[c]:  # a code image: its last allocation holds the rest, in 64-byte chunks
        tail_bytes = size - (n - 1) * unit if size > 0 else unit
        tail = (tail_bytes + BPF_PROG_CHUNK_SIZE - 1) // BPF_PROG_CHUNK_SIZE
        if tail >= unit // BPF_PROG_CHUNK_SIZE:
            tail = 0
        big = (size if size > 0 else unit) > BPF_PROG_PACK_SIZE
    return order, n, tail, big, size if size > 0 else n * unit


@njit
def background_population(ct, seed, c, target_pages):
    """Objects whose pages first reach target_pages (the last one crosses it)."""
    total = 0
    k = 0
    while total < target_pages:
        order, n, _, _, _ = object_shape(ct, obj_key(seed, ct.key[c], k), c, k)
        total += n << order
        k += 1
    return k


@njit
def spacing(seed, key, k):
    """The k-th exponential spacing of the fill phase's arrivals (mean 1)."""
    return -math.log1p(-uniform(seed, key, k, F_FILL))


@njit
def fill_spacings(ct, seed, c):
    """The fill phase draws its n0 arrival times already sorted: the order statistics of n0
    uniforms are the normalised partial sums of n0 + 1 exponential spacings."""
    total = 0.0
    for k in range(ct.n0[c] + 1):
        total += spacing(seed, ct.key[c], k)
    return total


@njit
def window_index(t, window):
    """FILL_WINDOW for the fill phase (t < 0), else floor(t / window)."""
    if t < 0.0:
        return FILL_WINDOW
    return np.int64(math.floor(t / window))


@njit
def gap(ct, seed, c, k):
    """The exponential gap before object k (k >= n0) of a Poisson process at ct.rate[c]."""
    if ct.rate[c] <= 0.0:
        return math.inf
    return -math.log1p(-uniform(seed, ct.key[c], k, F_GAP)) / ct.rate[c]


@njit_inline
def main_arrival(ct, seed, w, window, duration, c, k, tn):
    """(time, next tn) of object k of caller c's main source: the fill phase (k < n0, in boot
    order, tn the spacing sum so far), then the Poisson process (tn the arrival time of object
    k, the first one gap after t = 0); time +inf when it is not in window w or not before the
    duration. Fill objects are all in window -1, the first one generated."""
    if k < ct.n0[c]:
        s = tn + spacing(seed, ct.key[c], k)
        t = min(ct.fill_lo[c] + (ct.fill_hi[c] - ct.fill_lo[c]) * (s / ct.fill_sum[c]), -1e-9)
        return t, (gap(ct, seed, c, k + 1) if k + 1 == ct.n0[c] else s)
    if tn >= duration or window_index(tn, window) > w:
        return math.inf, tn
    return tn, tn + gap(ct, seed, c, k + 1)


@njit_inline
def burst_arrival(ct, w, window, duration, c, k):
    """The time of object k of caller c's burst (its `initial` objects k < n0 from at_s, one
    every `interval`), +inf when there is none left, or it is not in window w or not before
    the duration."""
    t = ct.at_s[c] + k * ct.interval[c]
    if k >= ct.n0[c] or math.isnan(t) or t >= duration or window_index(t, window) > w:
        return math.inf
    return t


@njit_inline
def admit_slots(ct, lv, c, h, n, tail, base, reclaimable):
    """An object's n allocations: slots from the free stack, chained through a_next, their
    words; reclaimable ones join the reclaim FIFO. Returns the first slot."""
    g = lv.g
    cap = lv.rq_slot.shape[0]
    head = NIL
    prev = NIL
    for j in range(n):
        g[G_FREE_SLOTS] -= 1
        slot = lv.slot_free[g[G_FREE_SLOTS]]
        word = base
        if j == n - 1 and tail != 0:
            word |= ev_word(0, 0, 0, 0, tail)
        if ct.act[c] > 0.0 and field_uniform(h, F_ACTION + j) < ct.act[c]:
            word |= ev_word(0, 0, 0, AF_ACTION, 0)
        lv.a_info[slot] = word
        lv.a_pfn[slot] = A_NOT_YET
        lv.a_gen[slot] += 1  # a_next is written only where a chain goes on (expand_window reads no further)
        if prev == NIL:
            head = slot
        else:
            lv.a_next[prev] = slot
        prev = slot
        if reclaimable:
            q = g[G_RQ_TAIL] % cap
            lv.rq_slot[q] = slot
            lv.rq_gen[q] = lv.a_gen[slot]
            g[G_RQ_TAIL] += 1
    g[G_LIVE_SLOTS] += n
    return head


@njit
def draw_arrivals(ct, next_k, next_t, burst_k, seed, w, window, duration, ncpus, d_t, d_tfree, d_gid, d_word,
                  d_n, d_tail, m, cand_t, cand_tn):
    """The objects arriving in window w, in (time, caller, index) order, from d_*[m] on: each
    one's keyed draws (shape, CPU, lifetime) and its allocation word; the cursors (next_k /
    next_t, burst_k) advance. A caller has two sources merged by time: its burst at at_s, and
    its fill phase then Poisson arrivals. Pure (it touches no slot, FIFO or calendar), so it may
    run ahead in the builder thread. Returns (objects in d_*, ADMITTED), or (objects so far,
    NEED_OUT) when d_* is full: the caller grows it and calls again. cand_t / cand_tn: scratch
    of 2 x callers, [2c] caller c's burst, [2c + 1] its main source."""
    nc = ct.n0.shape[0]
    for c in range(nc):
        cand_t[2 * c] = burst_arrival(ct, w, window, duration, c, burst_k[c])
        cand_t[2 * c + 1], cand_tn[2 * c + 1] = main_arrival(ct, seed, w, window, duration, c, next_k[c], next_t[c])
    while True:
        x = NIL
        t = math.inf
        for y in range(2 * nc):  # the earliest; ties to the lower caller, its burst first
            if cand_t[y] < t:
                t = cand_t[y]
                x = y
        if x == NIL:
            return m, ADMITTED
        c = x >> 1
        if m + (2 if ct.copy[c] != NIL else 1) > d_t.shape[0]:
            return m, NEED_OUT
        k = burst_k[c] if x % 2 == 0 else next_k[c]
        h = obj_key(seed, ct.key[c], k)
        order, n, tail, big, nbytes = object_shape(ct, h, c, k)
        cpu = min(np.int64(field_uniform(h, F_CPU) * ncpus), ncpus - 1)
        if ct.copy[c] != NIL:  # load_module's copy of the image, freed right after the object is set up
            cc = ct.copy[c]
            d_t[m], d_tfree[m] = t, t + 1e-9
            d_gid[m] = (cc << GID_SHIFT) | k
            d_word[m] = ev_word(0, cc, cpu, ct.flags[cc], 0)
            d_n[m] = max(np.int64(math.ceil(ct.copy_ratio[c] * nbytes / PAGE_SIZE)), 1)
            d_tail[m] = 0
            m += 1
        d_t[m] = t
        d_tfree[m] = t + max(draw_k(ct.dist[c, 2], ct.vals[c, 2], h, F_LIFE, k), 1e-9)
        d_gid[m] = (np.int64(c) << GID_SHIFT) | k
        d_word[m] = ev_word(order, c, cpu, ct.flags[c] | (AF_NO_PACK if big else 0), 0)
        d_n[m], d_tail[m] = n, tail
        m += 1
        if x % 2 == 0:
            burst_k[c] = k + 1
            cand_t[x] = burst_arrival(ct, w, window, duration, c, k + 1)
        else:
            next_k[c] = k + 1
            next_t[c] = cand_tn[x]
            cand_t[x], cand_tn[x] = main_arrival(ct, seed, w, window, duration, c, k + 1, cand_tn[x])


@njit
def admit_arrivals(ct, lv, seed, w, window, d_t, d_tfree, d_gid, d_word, d_n, d_tail, i, count, o_t, o_head,
                   o_n, m):
    """Admit the drawn objects d_*[i:count] of window w, in order, into o_*[m:]: each gets its
    slots and allocation words (the last one holds an image's tail chunks; AF_ACTION by
    on_alloc_fraction), a calendar entry when its lifetime is finite, and its reclaimable slots
    join the reclaim FIFO in the same order. Returns (i, m, ADMITTED, 0), or (i, m, NEED_*, how
    many) before an object the reserve cannot take: the caller grows it and calls again."""
    g = lv.g
    while i < count:
        c = d_gid[i] >> GID_SHIFT
        n = d_n[i]
        if m == o_t.shape[0]:
            return i, m, NEED_OUT, 1
        if g[G_FREE_SLOTS] < n:
            return i, m, NEED_SLOTS, n
        if g[G_FREE_CHUNKS] < 1:
            return i, m, NEED_CHUNKS, 1
        reclaimable = ct.flags[c] & AF_RECLAIMABLE
        if reclaimable and lv.rq_slot.shape[0] - (g[G_RQ_TAIL] - g[G_RQ_HEAD]) < n:
            return i, m, NEED_RQ, n
        h = np.uint64(0)  # the object's key: only its on_alloc_fraction draws need it
        if ct.act[c] > 0.0:
            h = obj_key(seed, ct.key[c], d_gid[i] & ((np.int64(1) << GID_SHIFT) - 1))
        head = admit_slots(ct, lv, c, h, n, d_tail[i], d_word[i], reclaimable)
        o_t[m], o_head[m], o_n[m] = d_t[i], head, n
        m += 1
        if math.isfinite(d_tfree[i]):
            calendar_insert(lv, bucket_of(d_tfree[i], w, window), d_tfree[i], d_gid[i], head, n)
        i += 1
    return i, m, ADMITTED, 0


@njit
def calendar_insert(lv, b, t, gid, head, n):
    """Append an entry to bucket b (a list of chunks; the caller reserved free chunks)."""
    c = lv.cal_tail[b]
    if c == NIL or lv.ck_fill[c] == CH:
        lv.g[G_FREE_CHUNKS] -= 1
        nc = lv.ck_free[lv.g[G_FREE_CHUNKS]]
        lv.ck_next[nc] = NIL
        lv.ck_fill[nc] = 0
        if c == NIL:
            lv.cal_head[b] = nc
        else:
            lv.ck_next[c] = nc
        lv.cal_tail[b] = nc
        c = nc
    e = c * CH + lv.ck_fill[c]
    lv.ck_t[e] = t
    lv.ck_gid[e] = gid
    lv.ck_head[e] = head
    lv.ck_n[e] = n
    lv.ck_fill[c] += 1
    lv.cal_count[b] += 1


@njit
def bucket_of(t_free, w_now, window):
    wi = window_index(t_free, window)
    return (wi + 1) % NB if wi - w_now < NB else NB


@njit_inline
def calendar_take(lv, b):
    """Empty bucket b: returns its first chunk (the chain goes back with chunk_release)."""
    c = lv.cal_head[b]
    lv.cal_head[b] = NIL
    lv.cal_tail[b] = NIL
    lv.cal_count[b] = 0
    return c


@njit_inline
def chunk_release(lv, c):
    """Put chunk c back on the free stack; returns the next chunk of its bucket."""
    nxt = lv.ck_next[c]
    lv.ck_free[lv.g[G_FREE_CHUNKS]] = c
    lv.g[G_FREE_CHUNKS] += 1
    return nxt


@njit
def due_frees(lv, w, window, duration, out_t, out_gid, out_head, out_n):
    """The calendar entries whose free falls in window w before `duration`, into out_* (sized
    by the caller: bucket count, plus the far list's at the start of a ring turn, when it is
    redistributed). Frees at or after the duration stay queued for a continued run."""
    b = (w + 1) % NB
    if b == 0 and w != FILL_WINDOW:  # a new turn of the ring: the far list's entries move closer
        c = calendar_take(lv, NB)
        while c != NIL:
            for e in range(c * CH, c * CH + lv.ck_fill[c]):
                calendar_insert(lv, bucket_of(lv.ck_t[e], w, window), lv.ck_t[e], lv.ck_gid[e], lv.ck_head[e],
                                lv.ck_n[e])
            c = chunk_release(lv, c)
    m = 0
    kept = 0
    c = calendar_take(lv, b)
    while c != NIL:
        for e in range(c * CH, c * CH + lv.ck_fill[c]):
            if lv.ck_t[e] < duration:
                out_t[m], out_gid[m], out_head[m], out_n[m] = lv.ck_t[e], lv.ck_gid[e], lv.ck_head[e], lv.ck_n[e]
                m += 1
            else:  # kept at the end of out_*, queued again below
                kept += 1
                x = out_t.shape[0] - kept
                out_t[x], out_gid[x], out_head[x], out_n[x] = lv.ck_t[e], lv.ck_gid[e], lv.ck_head[e], lv.ck_n[e]
        c = chunk_release(lv, c)
    for x in range(out_t.shape[0] - kept, out_t.shape[0]):
        calendar_insert(lv, b, out_t[x], out_gid[x], out_head[x], out_n[x])
    return m


@njit_inline
def _before(t, gid, i, j):
    return t[i] < t[j] or (t[i] == t[j] and gid[i] < gid[j])


@njit_inline
def _swap(t, gid, head, n, i, j):
    t[i], t[j] = t[j], t[i]
    gid[i], gid[j] = gid[j], gid[i]
    head[i], head[j] = head[j], head[i]
    n[i], n[j] = n[j], n[i]


@njit
def _sift_down(t, gid, head, n, a, root, end):
    """Max-heap of entries a.. a + end - 1 by (time, id): entry root sinks to its place."""
    while 2 * root + 1 < end:
        child = 2 * root + 1
        if child + 1 < end and _before(t, gid, a + child, a + child + 1):
            child += 1
        if not _before(t, gid, a + root, a + child):
            return
        _swap(t, gid, head, n, a + root, a + child)
        root = child


@njit_inline
def _sort_small(t, gid, head, n, a, e):
    """Entries a..e-1 by (time, id): insertion for a few, heapsort past 32 (many at one time)."""
    if e - a > 32:
        for root in range((e - a) // 2 - 1, -1, -1):
            _sift_down(t, gid, head, n, a, root, e - a)
        for end in range(e - a - 1, 0, -1):
            _swap(t, gid, head, n, a, a + end)
            _sift_down(t, gid, head, n, a, 0, end)
        return
    for i in range(a + 1, e):
        j = i
        while j > a and _before(t, gid, j, j - 1):
            _swap(t, gid, head, n, j, j - 1)
            j -= 1


@njit
def _scatter_by_time(t, gid, head, n, a, e, to_t, to_gid, to_head, to_n, ends, nb):
    """Entries a..e-1 into nb buckets of equal time span (monotone in time), at the same
    positions a..e-1 of to_*; ends[b] = the end of bucket b."""
    lo, hi = t[a], t[a]
    for i in range(a, e):
        lo, hi = min(lo, t[i]), max(hi, t[i])
    scale = (nb - 1) / (hi - lo) if hi > lo else 0.0
    ends[:nb + 1] = 0
    for i in range(a, e):
        ends[min(np.int64((t[i] - lo) * scale), nb - 1) + 1] += 1
    ends[0] = a
    for b in range(nb):
        ends[b + 1] += ends[b]
    for i in range(a, e):  # ends[b]: bucket b's next position, then its end
        b = min(np.int64((t[i] - lo) * scale), nb - 1)
        p = ends[b]
        ends[b] = p + 1
        to_t[p], to_gid[p], to_head[p], to_n[p] = t[i], gid[i], head[i], n[i]


@njit
def sort_frees(t, gid, head, n, tmp_t, tmp_gid, tmp_head, tmp_n, ends):
    """Sorts the due frees (t / gid / head / n) in place by (free time, object id): the same
    order for any window size. Two counting-sort passes by time, each into buckets of equal
    time span: 2048 buckets over the window (a scatter the caches can follow: one bucket per
    slot, where len(t) / 2 buckets wrote at random over tens of MB), then each bucket into
    buckets of about 2 entries, sorted by _sort_small. The id makes the order total, so no
    step needs to be stable. tmp_*: scratch as long as t; ends: len(t) // 2 + 2052 int64."""
    m = t.shape[0]
    if m == 0:
        return
    nb = min(2048, m // 2 + 1)
    top = ends[:nb + 1]
    sub = ends[nb + 1:]
    _scatter_by_time(t, gid, head, n, 0, m, tmp_t, tmp_gid, tmp_head, tmp_n, top, nb)
    a = 0
    for b in range(nb):
        e = top[b]
        if e - a > 32:
            _scatter_by_time(tmp_t, tmp_gid, tmp_head, tmp_n, a, e, t, gid, head, n, sub, (e - a) // 2 + 1)
            s = a
            for x in range((e - a) // 2 + 1):
                _sort_small(t, gid, head, n, s, sub[x])
                s = sub[x]
        else:
            for i in range(a, e):
                t[i], gid[i], head[i], n[i] = tmp_t[i], tmp_gid[i], tmp_head[i], tmp_n[i]
            _sort_small(t, gid, head, n, a, e)
        a = e


@njit
def expand_window(lv, t_obj, h_obj, n_obj, t_fr, h_fr, n_fr, ev_time, ev_code, ev_info, freed):
    """Merge the window's allocations (objects in time order) with its frees (entries in free
    time order): one event per allocation slot, code = slot << 1 | is_free. A free sorts after
    an allocation at the same time. The freed slots go into `freed` (Stream.release_slots puts
    them back on the free stack once the loop has run this window). Reads the slot arrays the
    admission wrote, writes only its outputs: it may run next to the previous window's loop."""
    e = 0
    f = 0
    i = 0
    j = 0
    while i < t_obj.shape[0] or j < t_fr.shape[0]:
        if j < t_fr.shape[0] and (i >= t_obj.shape[0] or t_fr[j] < t_obj[i]):
            if j + 8 < t_fr.shape[0]:
                prefetch(lv.a_info, h_fr[j + 8])
            t, slot, n, is_free = t_fr[j], h_fr[j], n_fr[j], 1
            j += 1
        else:
            t, slot, n, is_free = t_obj[i], h_obj[i], n_obj[i], 0
            i += 1
        for x in range(n):
            ev_time[e] = t
            ev_code[e] = (np.int64(slot) << 1) | is_free
            ev_info[e] = lv.a_info[slot]
            e += 1
            if is_free:
                freed[f] = slot
                f += 1
            if x + 1 < n:  # the chain's end is known: no cache miss on a_next for most objects
                slot = lv.a_next[slot]
    return e


@njit
def compact_rq(lv, out_slot, out_gen):
    """The reclaim FIFO without entries whose allocation is gone (freed, failed, or its slot
    reused): returns the live entries' count, in order, in out_*."""
    cap = lv.rq_slot.shape[0]
    m = 0
    for x in range(lv.g[G_RQ_HEAD], lv.g[G_RQ_TAIL]):
        q = x % cap
        slot = lv.rq_slot[q]
        if lv.a_gen[slot] == lv.rq_gen[q] and (lv.a_pfn[slot] >= 0 or lv.a_pfn[slot] == A_NOT_YET):
            out_slot[m] = slot
            out_gen[m] = lv.rq_gen[q]
            m += 1
    return m


def _grown(a: np.ndarray, n: int, fill=0) -> np.ndarray:
    """a, longer: the new entries `fill`. Zero-filled ones come from calloc, so the pages of a
    generous reserve are only touched when used (a 1 s run on 1 GiB: 17 ms -> 1 ms)."""
    out = np.zeros(n, a.dtype) if fill == 0 else np.full(n, fill, a.dtype)
    out[:a.shape[0]] = a
    return out


def _stack_grown(stack: np.ndarray, k: int, old: int, new: int) -> np.ndarray:
    """A free stack of ids with the new ids old..new-1 pushed (the lowest on top)."""
    out = _grown(stack, new)
    out[k:k + new - old] = np.arange(new - 1, old - 1, -1, dtype=np.int32)
    return out


# one window's drawn arrivals (draw_arrivals): time, free time, object id, allocation word,
# allocations, tail chunks per object; the callers' cursors after them
Drawn = namedtuple("Drawn", ["w", "count", "t", "t_free", "gid", "word", "n", "tail", "next_k", "next_t", "burst_k"])


class Window(namedtuple("Window", ["index", "ev_time", "ev_code", "ev_info", "t_end"])):
    """One window's events: time, slot << 1 | is_free, allocation word; t_end: the simulated
    time the run reaches with it."""

    @property
    def n_events(self) -> int:
        return int(self.ev_time.shape[0])


class Stream:
    """A workload's events, one window of simulated time at a time (see the module doc)."""

    def __init__(self, wl: WorkloadConfig, managed_pages: int, ncpus: int, seed: int, window_s: float):
        self.ct, self.names = callers_table(wl, managed_pages, seed)
        self.seed, self.ncpus, self.window = int(seed), int(ncpus), float(window_s)
        self.duration = float(wl.duration_s)
        nc = self.ct.n0.shape[0]
        ct = self.ct
        burst = ~np.isnan(ct.at_s)  # the initial objects at at_s; the Poisson process from t = 0
        next_k = np.where(burst, ct.n0, 0)
        next_t = np.array([gap(ct, self.seed, c, next_k[c]) if next_k[c] == ct.n0[c] else 0.0 for c in range(nc)])
        g = np.zeros(N_G, np.int64)
        g[G_WINDOW] = FILL_WINDOW  # the next window to generate
        i32 = np.zeros(0, np.int32)
        self.lv = Live(a_pfn=i32, a_info=np.zeros(0, np.int64), a_next=i32, a_gen=np.zeros(0, np.uint32),
                       slot_free=i32, ck_t=np.zeros(0), ck_gid=np.zeros(0, np.int64), ck_head=i32, ck_n=i32,
                       ck_next=i32, ck_fill=i32, ck_free=i32, cal_head=np.full(NB + 1, NIL, np.int32),
                       cal_tail=np.full(NB + 1, NIL, np.int32), cal_count=np.zeros(NB + 1, np.int64),
                       rq_slot=np.zeros(16, np.int32), rq_gen=np.zeros(16, np.uint32),
                       next_k=next_k.astype(np.int64), next_t=next_t,
                       burst_k=np.where(burst, 0, ct.n0).astype(np.int64), g=g, reached=np.array([-np.inf]))
        self.drawn = None  # a window's arrivals drawn ahead (draw_window(ahead=True)), admitted by admit_window
        self._draw_size = 1024  # the last window's object count: draw_window's first buffers
        self._draw_bufs, self._flip = [None, None], 0
        # a window's due frees (time, object id, first slot, allocations) and sort_frees' scratch
        self._frees = [np.empty(0), np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int64)]
        self._sort_tmp, self._ends = list(self._frees), np.empty(2052, np.int64)
        # a window's arriving objects (time, first slot, allocations), grown as needed
        self.o_t, self.o_head, self.o_n = np.zeros(1024), np.zeros(1024, np.int32), np.zeros(1024, np.int64)

    # --- capacity (grown between windows; the compiled parts never allocate) -----------------
    def _reserve_slots(self, need: int) -> None:
        lv, g = self.lv, self.lv.g
        if g[G_FREE_SLOTS] >= need:
            return
        old = lv.a_pfn.shape[0]
        new = max(2 * old, int(g[G_LIVE_SLOTS]) + need, 1024)
        stack = _stack_grown(lv.slot_free, int(g[G_FREE_SLOTS]), old, new)
        g[G_FREE_SLOTS] += new - old
        self.lv = lv._replace(a_pfn=_grown(lv.a_pfn, new, A_NOT_YET), a_info=_grown(lv.a_info, new),
                              a_next=_grown(lv.a_next, new, NIL), a_gen=_grown(lv.a_gen, new), slot_free=stack)

    def _reserve_chunks(self, need: int) -> None:
        lv, g = self.lv, self.lv.g
        if g[G_FREE_CHUNKS] >= need:
            return
        old = lv.ck_next.shape[0]
        # twice what is asked: the calendar's worst-case reserve is asked again after admit,
        # and growing copies (and faults in) the whole reserve
        new = max(2 * old, old - int(g[G_FREE_CHUNKS]) + 2 * need, 64)
        stack = _stack_grown(lv.ck_free, int(g[G_FREE_CHUNKS]), old, new)
        g[G_FREE_CHUNKS] += new - old
        self.lv = lv._replace(ck_t=_grown(lv.ck_t, new * CH), ck_gid=_grown(lv.ck_gid, new * CH),
                              ck_head=_grown(lv.ck_head, new * CH), ck_n=_grown(lv.ck_n, new * CH),
                              ck_next=_grown(lv.ck_next, new, NIL), ck_fill=_grown(lv.ck_fill, new), ck_free=stack)

    def _reserve_rq(self, need: int) -> None:
        lv, g = self.lv, self.lv.g
        cap = lv.rq_slot.shape[0]
        if cap - (g[G_RQ_TAIL] - g[G_RQ_HEAD]) >= need:
            return
        live_slot, live_gen = np.zeros(cap, np.int32), np.zeros(cap, np.uint32)
        m = compact_rq(lv, live_slot, live_gen)
        # the FIFO keeps freed allocations until it is full (lazy deletion): compacted, it grows
        # only when the live entries need it, so it stays O(live) over any uptime
        rs, rg = live_slot, live_gen
        if 2 * m + need > cap:
            new = max(2 * cap, 2 * m + need)
            rs, rg = np.zeros(new, np.int32), np.zeros(new, np.uint32)
            rs[:m], rg[:m] = live_slot[:m], live_gen[:m]
        g[G_RQ_HEAD], g[G_RQ_TAIL] = 0, m
        self.lv = lv._replace(rq_slot=rs, rq_gen=rg)

    # --- windows -----------------------------------------------------------------------------
    @property
    def time_reached(self) -> float:
        """The simulated time up to which events have been generated (-inf before the fill)."""
        return float(self.lv.reached[0])

    def draw_window(self, w: int, src, ahead: bool = False) -> "Drawn":
        """draw_arrivals for window w from the cursors of `src` (the stream's Live, or the Drawn
        before it; copied): pure, so Run.step(overlap=True) runs it a window ahead in the builder
        thread (`ahead`), while the main thread admits the window drawn before."""
        next_k, next_t, burst_k = src.next_k.copy(), src.next_t.copy(), src.burst_k.copy()
        nc = self.ct.n0.shape[0]
        cand = (np.zeros(2 * nc), np.zeros(2 * nc))
        # buffers kept between windows, made smaller once far larger than a window needs (after
        # the fill); a draw ahead takes the other of two sets (the current one is being admitted),
        # so a run without overlap keeps one
        self._flip ^= ahead
        bufs = self._draw_bufs[self._flip]
        if bufs is None or not self._draw_size <= bufs[0].shape[0] <= 4 * self._draw_size:
            bufs = [np.empty(2 * self._draw_size, dt) for dt in (np.float64, np.float64, np.int64, np.int64,
                                                                 np.int64, np.int64)]
        m = 0
        while True:
            m, need = draw_arrivals(self.ct, next_k, next_t, burst_k, self.seed, w, self.window, self.duration,
                                    self.ncpus, *bufs, m, *cand)
            if need == ADMITTED:
                self._draw_bufs[self._flip] = bufs
                return Drawn(w, m, *bufs, next_k, next_t, burst_k)
            bufs = [_grown(a, 2 * a.shape[0]) for a in bufs]

    def _admit_arrivals(self, w: int) -> int:
        """Window w's objects drawn (or taken as drawn ahead) and admitted, growing what the
        admission runs out of; the cursors then move past them. Returns the objects' count."""
        lv = self.lv
        d = self.drawn if self.drawn is not None and self.drawn.w == w else self.draw_window(w, lv)
        self.drawn = None
        self._draw_size = max(1024, d.count)
        i = m = 0
        while True:
            lv, g = self.lv, self.lv.g
            i, m, need, amount = admit_arrivals(self.ct, lv, self.seed, w, self.window, *d[2:8], i, d.count,
                                                self.o_t, self.o_head, self.o_n, m)
            if need == ADMITTED:
                break
            if need == NEED_OUT:
                size = 2 * self.o_t.shape[0]
                self.o_t, self.o_head, self.o_n = (_grown(a, size) for a in (self.o_t, self.o_head, self.o_n))
            elif need == NEED_SLOTS:
                self._reserve_slots(int(g[G_FREE_SLOTS]) + amount)
            elif need == NEED_CHUNKS:
                self._reserve_chunks(int(g[G_FREE_CHUNKS]) + 2 * NB + 4)
            else:
                self._reserve_rq(amount)
        lv.next_k[:], lv.next_t[:], lv.burst_k[:] = d.next_k, d.next_t, d.burst_k
        return m

    def next_window_index(self) -> int:
        return int(self.lv.g[G_WINDOW])

    def next_window_end(self) -> float:
        """The simulated time the next window reaches (admit_window's end of it)."""
        w = int(self.lv.g[G_WINDOW])
        return min(0.0 if w == FILL_WINDOW else (w + 1) * self.window, self.duration)

    def admit_window(self):
        """The first half of the next window: its arrivals admitted (slots, words, reclaim FIFO,
        calendar; serial, between loops) and the reserves its frees need. Returns what
        build_window needs, or None once the run's duration is reached. A window cut by the
        duration is generated again, for the rest of it, when a run continues further."""
        if self.time_reached >= self.duration:
            return None
        g = self.lv.g
        w = int(g[G_WINDOW])
        m = self._admit_arrivals(w)
        b = (w + 1) % NB
        size = int(self.lv.cal_count[b] + (self.lv.cal_count[NB] if b == 0 and w != FILL_WINDOW else 0))
        self._reserve_chunks(size // CH + 2 * NB + 4)
        if self._frees[0].shape[0] < size:  # kept between windows: fresh pages cost faults and zeroing
            n = max(size, 2 * self._frees[0].shape[0])
            self._frees = [np.empty(n, a.dtype) for a in self._frees]
            self._sort_tmp = [np.empty(n, a.dtype) for a in self._sort_tmp]
            self._ends = np.empty(n // 2 + 2052, np.int64)
        t_end = self.next_window_end()
        self.lv.reached[0] = t_end
        g[G_WINDOW] = w + 1 if w == FILL_WINDOW or (w + 1) * self.window <= self.duration else w
        return w, m, t_end

    def build_window(self, plan):
        """The second half: the window's due frees, sorted, merged with its arrivals into events.
        It writes only the calendar and its own buffers, so it may run while the event loop runs
        the previous window. Returns (Window, the slots it frees, ascending)."""
        w, m, t_end = plan
        lv = self.lv
        ot, heads, o_n = self.o_t[:m], self.o_head[:m], self.o_n[:m]
        nf = due_frees(lv, w, self.window, self.duration, *self._frees)
        fr = [a[:nf] for a in self._frees]
        sort_frees(*fr, *(a[:nf] for a in self._sort_tmp), self._ends)
        n_frees = int(fr[3].sum())
        n_ev = int(o_n.sum()) + n_frees
        ev_time, ev_code, ev_info = np.zeros(n_ev), np.zeros(n_ev, np.int64), np.zeros(n_ev, np.int64)
        freed = np.empty(n_frees, np.int32)
        expand_window(lv, ot, heads, o_n, fr[0], fr[2], fr[3], ev_time, ev_code, ev_info, freed)
        freed.sort()  # here, in the builder thread with overlap: release_slots stacks them descending
        return Window(w, ev_time, ev_code, ev_info, t_end), freed

    def release_slots(self, freed: np.ndarray) -> None:
        """A run window's freed slots back on the free stack, in descending order: the next
        allocations take them in ascending order, so admit's and the loop's writes to the slot
        arrays walk memory forwards instead of at random (64 GiB production_busy: admit 2.0 ->
        1.1 s, loop 10 -> 13-14 M events/s); which slot an allocation gets changes no result."""
        g = self.lv.g
        top = int(g[G_FREE_SLOTS])
        self.lv.slot_free[top:top + freed.shape[0]] = freed[::-1]
        g[G_FREE_SLOTS] += freed.shape[0]
        g[G_LIVE_SLOTS] -= freed.shape[0]

    def next_window(self):
        """The next window's events (admit_window, build_window, release_slots in a row), or None
        once the run's duration is reached."""
        plan = self.admit_window()
        if plan is None:
            return None
        win, freed = self.build_window(plan)
        self.release_slots(freed)
        return win

    @property
    def live_allocations(self) -> int:
        return int(self.lv.g[G_LIVE_SLOTS])
