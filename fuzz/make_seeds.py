#!/usr/bin/env python3
"""fuzz/make_seeds.py - write the hand-designed seed corpus of each target.

    python3 fuzz/make_seeds.py          # (re)writes fuzz/corpus/*/seed-*

Seeds are named seed-<what>; the script only ever writes seed-* files, so
regression inputs (regress-*) and inputs merged from fuzzing runs stay. The
input formats are described at the top of fuzz/operations.c and
fuzz/options.c.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# operations: opcodes, in the order of fuzz/operations.c
MALLOC, CALLOC, REALLOC, FREE, MEMALIGN, WRITE, CHECK, BADSIZE, HOOK, THREAD, TRIM = range(11)
RAW, MEM, OBJ, LIBC = range(4)  # LIBC: the malloc family (glibc's rules)
# the malloc family's MEMALIGN functions (the extra byte `how`, % 5; + ODD: an
# alignment of 3 * 2^k instead of 2^k) and realloc variants (% 4)
ALIGNED_ALLOC, MEMALIGN_FN, POSIX_MEMALIGN, VALLOC, PVALLOC = range(5)
ODD = 8
REALLOC_FN, REALLOCARRAY_N1, REALLOCARRAY_1N, REALLOCARRAY_SPLIT = range(4)


def size(n):
    """Encode a size for take_size() (exact for the ranges it covers)."""
    if n < 64:
        return bytes([n << 2])
    if n < 576:
        m = n - 64
        return bytes([1 | ((m >> 8) << 2), m & 0xFF])
    if n <= 16384:
        return bytes([2]) + struct.pack("<H", n)
    assert n % 4 == 0 and n <= 262143
    return bytes([3 | ((n & 3) << 2)]) + struct.pack("<H", n >> 2)


def op_malloc(slot, dom, n):
    return bytes([MALLOC, slot, dom]) + size(n)


def op_calloc(slot, dom, elsize_index, total):
    # The trailing byte is nelem when the element size is 0 (index 0); for
    # other sizes it is read as the next opcode (5: WRITE). Kept as it is so
    # that the committed seeds stay the same; new seeds use op_calloc_exact.
    return bytes([CALLOC, slot, dom, elsize_index]) + size(total) + b"\x05"


def op_calloc_exact(slot, dom, elsize_index, total, nelem=5):
    """calloc with the nelem byte only where it is read (element size 0)."""
    tail = bytes([nelem]) if elsize_index % 14 == 0 else b""
    return bytes([CALLOC, slot, dom, elsize_index]) + size(total) + tail


def op_realloc(slot, dom, n, how=None):
    """how: only when the block's domain (dom if the slot is empty) is LIBC."""
    return bytes([REALLOC, slot, dom]) + size(n) + (b"" if how is None else bytes([how]))


def op_free(slot, dom=0):
    return bytes([FREE, slot, dom])


def op_memalign(slot, dom, log2_minus_5, n):
    return bytes([MEMALIGN, slot, dom, log2_minus_5]) + size(n)


def op_libc_aligned(slot, log2, n, how):
    """MEMALIGN in the malloc family: alignment 2^log2 (or 3 * 2^log2 with ODD)."""
    return bytes([MEMALIGN, slot, LIBC, log2]) + size(n) + bytes([how])


def op_write(slot, off, length, value, how=0):
    return bytes([WRITE, slot]) + struct.pack("<HH", off, length) + bytes([value, how])


def op_check(slot, slack=1):
    return bytes([CHECK, slot, slack])


def op_badsize(how, dom, which):
    return bytes([BADSIZE, how, dom, which])


def op_hook(dom, push):
    return bytes([HOOK, dom, push])


def op_trim():
    return bytes([TRIM])


# BURST: opcode bytes 0xF0..0xFF (the others are byte % 11)
BURST = 0xF0
# its orders of the frees (how & 7), and + TRIM_HALF: pm_trim when half are freed
FIFO, LIFO, EVENS_FIRST, STRIDE, SHUFFLE, ENDS_IN, REFILL, MIDDLE_OUT = range(8)
TRIM_HALF = 8


def op_burst(dom, cls, count, how, n=None, seed=0, sub=0):
    """BURST: `count` (1..2048) blocks of pool class `cls` (0..33: a size in
    (16 * cls, 16 * cls + 16], `sub` 0..6 picks it), or of n bytes (cls
    None), then all freed in the order `how` picks."""
    assert 1 <= count <= 2048
    if cls is None:
        head = bytes([BURST, dom, 0xF0]) + size(n)
    else:
        assert 0 <= cls < 34 and 0 <= sub < 7
        head = bytes([BURST, dom, cls + 34 * sub])
    tail = struct.pack("<H", seed) if how & 7 == SHUFFLE else b""
    return head + struct.pack("<H", count - 1) + bytes([how]) + tail


def burst_seeds(m):
    """BURST: bins emptied and refilled, full bins flushed, pools and arenas
    used up and emptied, in every domain and order."""
    seeds = {}
    doms = (RAW, MEM, OBJ, LIBC)
    # Smallest class: a pool's worth is 1021 blocks, so 2048 overflow a bin
    # (its flush) and use up two pools, freed in each order.
    # (an input allocates 8192 burst blocks at most: four full bursts)
    for half in (0, 1):
        seeds[f"burst-small{'-2' if half else ''}"] = m + b"".join(
            op_burst(doms[o % 4], 0, 2048, o, seed=o * 77) for o in range(4 * half, 4 * half + 4))
    # The largest pool classes: 2048 x 512 bytes pass an arena; trimmed
    # half way (empty arenas back to the system) in some orders.
    for half in (0, 1):
        seeds[f"burst-arena{'-2' if half else ''}"] = m + b"".join(
            op_burst(doms[o % 4], 31 + o % 3, 2048, o | (TRIM_HALF if o % 2 else 0), sub=o % 7)
            for o in range(4 * half, 4 * half + 4))
    # Many classes, counts around a bin's limit and a pool's, live slots
    # of the same classes around them.
    mixed = b"".join(op_malloc(i, doms[i % 4], 16 * (i % 8) + 5) for i in range(16))
    for k, cls in enumerate((1, 2, 3, 5, 8, 13, 21, 26, 30)):
        per_pool = (16384 - 48) // (16 * (cls + 1))
        for count in (per_pool - 1, per_pool, per_pool + 1, 2 * per_pool + 3):
            mixed += op_burst(doms[(k + count) % 4], cls, min(count, 2048),
                              (k + count) % 8 | (TRIM_HALF if count % 3 == 0 else 0),
                              seed=count, sub=count % 7)
        mixed += op_free(k % 16) + op_malloc(k % 16, doms[k % 4], 16 * cls + 9)
    seeds["burst-classes"] = m + mixed + b"".join(op_check(i) for i in range(16)) + op_trim()
    # Larger blocks (the C library's; held in the quarantine in the debug
    # modes, which the burst pushes out), and size 0.
    seeds["burst-large"] = m + b"".join([
        op_burst(MEM, None, 300, REFILL, n=5000), op_burst(RAW, None, 40, SHUFFLE, n=40000, seed=9),
        op_burst(LIBC, None, 2048, STRIDE | 16, n=0), op_burst(OBJ, None, 600, EVENS_FIRST, n=600),
        op_trim()])
    # Two threads bursting the same classes at once.
    # (a bin holds a pool's worth: 1021, 511, 340, 255 blocks in classes 0-3)
    lims = (1021, 511, 340, 255)
    seeds["burst-threads"] = m + b"".join(
        op_thread(op_burst(doms[r % 4], r % 4, lims[r] + 50, r % 8) + op_trim()
                  + op_burst(OBJ, 31, 50, REFILL), 3)
        + op_burst(doms[(r + 1) % 4], r % 4, lims[r] + 50, (r + 3) % 8)
        + op_malloc(r % 8, MEM, 16 * (r % 4) + 1) + op_burst(MEM, r % 4, lims[r] + 50, LIFO)
        for r in range(4)) + b"".join(op_free(i) for i in range(16))
    return seeds


def op_thread(worker, steps):
    """THREAD: `worker` (bytes, at most 255) run by a new thread on slots 8..15
    (a slot byte s names slot 8 + s % 8 there), while this thread runs its
    next `steps` operations (1..64) on slots 0..7 (slot s % 8)."""
    assert len(worker) <= 255 and 1 <= steps <= 64
    return bytes([THREAD, len(worker), steps - 1]) + worker


def thread_seeds(m):
    """Two threads at once (THREAD), and blocks of ended threads freed here."""
    seeds = {}
    doms = (RAW, MEM, OBJ, LIBC)
    worker = b"".join([
        op_malloc(0, MEM, 24), op_malloc(1, OBJ, 300), op_malloc(2, LIBC, 16),
        op_calloc_exact(3, RAW, 4, 64), op_write(1, 5, 100, 0x33), op_realloc(0, MEM, 600),
        op_free(1), op_malloc(1, LIBC, 200), op_trim(), op_libc_aligned(4, 6, 100, ALIGNED_ALLOC),
        op_realloc(2, LIBC, 0, REALLOC_FN), op_malloc(5, OBJ, 8), op_check(5)])
    here = [op_malloc(0, OBJ, 40), op_malloc(1, MEM, 500), op_free(0), op_trim(),
            op_malloc(2, LIBC, 64), op_realloc(1, MEM, 20), op_malloc(0, RAW, 3000),
            op_check(1)]
    seeds["thread-basic"] = m + op_thread(worker, len(here)) + b"".join(here) + b"".join(
        [op_realloc(8, MEM, 10), op_realloc(9, LIBC, 70, REALLOC_FN), op_check(11)]) + b"".join(
        op_free(i) for i in range(16))
    # A burst of sections: each new thread frees the blocks the previous one
    # left (their thread has ended) and leaves its own; this thread frees
    # and reallocates in its half meanwhile, and trims.
    burst = b""
    for r in range(6):
        w = b"".join(op_free(i) if (i + r) % 3 else op_realloc(i, doms[i % 4], 40 + r, REALLOC_FN)
                     for i in range(8))
        w += b"".join(op_malloc(i, doms[(i + r) % 4], (i * 53 + r * 97) % 700) for i in range(8))
        h = [op_malloc(r % 8, doms[r % 4], 16 + r * 100), op_trim(), op_free((r + 3) % 8),
             op_malloc((r + 3) % 8, doms[(r + 1) % 4], 8)]
        burst += op_thread(w, len(h)) + b"".join(h)
    seeds["thread-burst"] = m + burst + b"".join(op_check(i) for i in range(16)) + op_trim()
    # Many sections of a few steps each, allocating one size class, so the
    # two threads' caches and the class's pools meet at every exit.
    small = b""
    for r in range(24):
        small += op_thread(op_malloc(r % 8, OBJ, 32) + op_free((r + 5) % 8) + op_trim(), 2)
        small += op_malloc(r % 8, OBJ, 32) + op_free((r + 1) % 8)
    seeds["thread-small"] = m + small + b"".join(op_free(i) for i in range(16))
    return seeds


def operations_seeds(mode):
    m = bytes([mode])
    seeds = {}
    for dom, dname in ((RAW, "raw"), (MEM, "mem"), (OBJ, "obj")):
        seeds[f"lifecycle-{dname}"] = m + b"".join([
            op_malloc(0, dom, 0), op_malloc(1, dom, 1), op_malloc(2, dom, 16),
            op_malloc(3, dom, 512), op_malloc(4, dom, 513), op_malloc(5, dom, 4096),
            op_write(2, 3, 9, 0x41), op_check(2), op_check(3),
            op_realloc(2, dom, 400), op_realloc(3, dom, 8), op_realloc(4, dom, 0),
            op_realloc(5, dom, 200000), op_free(1), op_free(0), op_check(5),
            op_free(2), op_free(3), op_free(4), op_free(5)])
    seeds["calloc-all"] = m + b"".join(
        op_calloc(i, i % 3, i, [0, 1, 48, 500, 520, 8192, 4096, 100][i % 8] * 2)
        for i in range(14))
    seeds["memalign-all"] = m + b"".join(
        op_memalign(i, i % 3, i % 12, [0, 1, 100, 600, 5000][i % 5]) for i in range(12)
    ) + b"".join(op_realloc(i, 0, 40) for i in range(0, 12, 3))
    seeds["realloc-chain"] = m + op_realloc(7, MEM, 1) + b"".join(
        op_realloc(7, MEM, n) for n in (2, 15, 16, 17, 63, 64, 511, 512, 513, 2000, 16384,
                                        140000, 20, 0, 300))
    seeds["badsize"] = m + op_malloc(3, OBJ, 100) + b"".join(
        op_badsize(how, dom, which) for how in range(3) for dom in range(3)
        for which in (3, 4, 5))
    seeds["many-slots"] = m + b"".join(
        op_malloc(i, i % 3, (i * 37) % 600) for i in range(16)) + b"".join(
        op_write(i, i, 30, i, 1) for i in range(16)) + b"".join(
        op_free(i) for i in range(0, 16, 2)) + b"".join(
        op_malloc(i, (i + 1) % 3, (i * 91) % 700) for i in range(0, 16, 2))
    seeds["hooks"] = m + b"".join([
        op_malloc(0, RAW, 100), op_hook(RAW, 1), op_hook(MEM, 1), op_hook(MEM, 1),
        op_malloc(1, MEM, 10), op_calloc(2, OBJ, 3, 30), op_realloc(0, RAW, 700),
        op_memalign(3, MEM, 2, 50), op_free(3), op_free(9, MEM), op_badsize(0, MEM, 0),
        op_realloc(4, MEM, 20), op_hook(MEM, 0), op_free(1), op_hook(OBJ, 1),
        op_realloc(2, OBJ, 0), op_hook(RAW, 0)])
    seeds.update(libc_seeds(m))
    seeds.update(thread_seeds(m))
    seeds.update(burst_seeds(m))
    return seeds


def libc_seeds(m):
    """The malloc family (src/override.c's code under the names pm_fz_*)."""
    seeds = {}
    seeds["libc-lifecycle"] = m + b"".join([
        op_malloc(0, LIBC, 0), op_malloc(1, LIBC, 1), op_malloc(2, LIBC, 16),
        op_malloc(3, LIBC, 512), op_calloc_exact(4, LIBC, 5, 700), op_malloc(5, LIBC, 4096),
        op_write(2, 3, 9, 0x41), op_check(2), op_check(3), op_check(9),
        op_realloc(2, LIBC, 400, REALLOC_FN), op_realloc(3, LIBC, 8, REALLOCARRAY_N1),
        op_realloc(4, LIBC, 96, REALLOCARRAY_1N), op_realloc(5, LIBC, 200000, REALLOCARRAY_SPLIT),
        op_realloc(1, LIBC, 0, REALLOC_FN),            # glibc: frees, slot 1 empty
        op_realloc(0, LIBC, 0, REALLOCARRAY_SPLIT),    # reallocarray(p, 0, 8): frees
        op_realloc(1, LIBC, 0, REALLOC_FN),            # realloc(NULL, 0): a block
        op_realloc(6, LIBC, 300, REALLOCARRAY_SPLIT),  # realloc(NULL, n) as reallocarray
        op_free(1), op_free(1, LIBC), op_check(5),
        op_free(2), op_free(3), op_free(4), op_free(5), op_free(6)])
    aligned = []
    for i, (fn, log2, n) in enumerate([
            (ALIGNED_ALLOC, 0, 10), (ALIGNED_ALLOC, 4, 100), (ALIGNED_ALLOC, 6, 64),
            (ALIGNED_ALLOC | ODD, 5, 48), (MEMALIGN_FN, 3, 1), (MEMALIGN_FN, 12, 5000),
            (MEMALIGN_FN | ODD, 2, 7), (MEMALIGN_FN | ODD, 16, 0), (POSIX_MEMALIGN, 3, 24),
            (POSIX_MEMALIGN, 4, 0), (POSIX_MEMALIGN, 9, 600), (POSIX_MEMALIGN, 2, 8),
            (POSIX_MEMALIGN | ODD, 4, 8), (VALLOC, 0, 100), (PVALLOC, 0, 100),
            (PVALLOC, 0, 0)]):
        aligned.append(op_libc_aligned(i, log2, n, fn))
    seeds["libc-aligned"] = m + b"".join(aligned) + b"".join(
        op_realloc(i, LIBC, 40, REALLOC_FN) for i in range(0, 16, 3)) + b"".join(
        op_check(i) for i in range(16))
    seeds["libc-badsize"] = m + op_malloc(3, LIBC, 100) + op_malloc(4, MEM, 50) + b"".join(
        op_badsize(how, LIBC, which) for how in range(8) for which in (3, 4, 5, 6, 7)) + b"".join(
        op_badsize(6, LIBC, which) for which in range(8, 48))  # every impossible alignment
    seeds["libc-hooks"] = m + b"".join([
        op_malloc(0, LIBC, 100), op_hook(MEM, 1), op_hook(LIBC, 1),
        op_malloc(1, LIBC, 10), op_calloc_exact(2, LIBC, 3, 30), op_realloc(0, LIBC, 700, 0),
        op_libc_aligned(3, 3, 50, ALIGNED_ALLOC),    # alignment 8: malloc, seen by hooks
        op_libc_aligned(4, 6, 50, MEMALIGN_FN),      # alignment 64: bypasses hooks
        op_libc_aligned(5, 4, 50, POSIX_MEMALIGN),   # 16: malloc
        op_libc_aligned(6, 0, 50, VALLOC), op_malloc(7, MEM, 33),
        op_free(3), op_free(4), op_free(9, LIBC), op_badsize(0, LIBC, 0),
        op_realloc(1, LIBC, 0, REALLOC_FN),          # the free reaches the hooks
        op_realloc(10, LIBC, 20, REALLOCARRAY_1N),   # realloc(NULL, n): malloc
        op_hook(LIBC, 0), op_free(5), op_free(7), op_hook(RAW, 1),
        op_malloc(8, RAW, 5), op_free(6), op_hook(MEM, 0)])
    seeds["libc-mixed"] = m + b"".join(
        op_malloc(i, i % 4, (i * 53) % 700) for i in range(16)) + b"".join(
        op_write(i, i, 40, i, 1) for i in range(16)) + b"".join(
        op_realloc(i, 0, (i * 301) % 3000, REALLOC_FN if i % 4 == LIBC else None)
        for i in range(0, 16, 3)) + b"".join(
        op_free(i) for i in range(16))
    return seeds


def options_seeds():
    seeds = {}
    for word in ("default", "malloc", "pymalloc", "debug", "malloc_debug", "pymalloc_debug",
                 "MALLOC", " malloc", "malloc ", "mallo", "mallocc", "Default"):
        seeds["mode-" + word.strip().lower() + ("-case" if word != word.lower() else "")
              + ("-space" if word != word.strip() else "")] = word.encode()
    seeds["mode-nul"] = b"malloc\x00x"
    for word in ("", "0", "1", "yes", "no", "true", "false", "on", "off", "YES", "2", "01"):
        seeds["bool-" + (word or "empty")] = word.encode()
    for word in ("0", "17", "18446744073709551615", "18446744073709551616",
                 "000000000000000000000000000042", "-1", "1x", "99999999999999999999"):
        seeds["u64-" + word] = word.encode()
    seeds["env-name-value"] = b"X=yes"
    seeds["env-eq-in-value"] = b"MODE=a=b"
    seeds["shown-escapes"] = b"debug\n\x1b[31mred\t\\\x7fx"
    seeds["shown-long"] = b"b" * 100
    return seeds


# corruption: case kinds and triggers, in the order of fuzz/corruption.c
INBOUNDS, DAMAGE, AFTER, INVALID, MISMATCH, SPAN, WAF = range(7)
T_FREE, T_REALLOC, T_CHECK, T_USABLE = range(4)
A_MALLOC, A_CALLOC, A_REALLOC, A_MEMALIGN = range(4)


def cz_size(n):
    """Encode a size for corruption.c's take_size()."""
    if n < 64:
        return bytes([0]) + struct.pack("<H", n)
    if n < 576:
        return bytes([1]) + struct.pack("<H", n - 64)
    return bytes([2]) + struct.pack("<H", n)


def cz_case(kind, dom, alloc, n, trigger, a0=0, a1=0, a2=0, a3=0):
    return bytes([kind, dom, alloc]) + cz_size(n) + bytes([trigger, a0, a1, a2, a3])


def corruption_seeds(mode):
    m = bytes([mode])
    seeds = {}
    sizes = (0, 1, 17, 100, 600, 5000)
    seeds["inbounds"] = m + b"".join(
        cz_case(INBOUNDS, i % 3, i % 4 | (i & 4), sizes[i % 6], i % 4, i * 7, 0, 0x5A, i * 11)
        for i in range(16))
    for region, rname in ((0, "head"), (1, "tail")):
        seeds[f"damage-{rname}"] = m + b"".join(
            cz_case(DAMAGE, i % 3, i % 4, sizes[i % 6], i % 3, region, i, 0x00, 20)
            for i in range(16))
        # 0xFD over a guard byte: undetectable by design; elsewhere a change
        seeds[f"damage-{rname}-fd"] = m + b"".join(
            cz_case(DAMAGE, i % 3, A_MALLOC, 24, i % 3, region, i, 0xFD, 0) for i in range(16))
    seeds["damage-api-id"] = m + b"".join(
        cz_case(DAMAGE, d, A_MALLOC, 8, t, 0, 8, ord(api), 0)
        for d in range(3) for t in range(3) for api in "rmo")[: 16 * 11]
    seeds["after"] = m + b"".join(
        cz_case(AFTER, i % 3, i % 4, sizes[i % 6], i % 4, (i // 4) % 3, 0, 0, 40)
        for i in range(16))
    seeds["invalid"] = m + b"".join(
        cz_case(INVALID, i % 3, A_MALLOC, 64, i % 4, i % 5, i * 13, 0, 3) for i in range(16))
    seeds["invalid-interior"] = m + b"".join(
        cz_case(INVALID, i % 3, i % 4, 48, i % 4, 0, i * 5, 0, 0) for i in range(16))
    seeds["mismatch"] = m + b"".join(
        cz_case(MISMATCH, i % 3, i % 4, sizes[i % 6], i % 2, i // 3, 0, 0, 9) for i in range(12))
    # several guard bytes at once: both pads, the size field with an
    # overflow, a run into the serial, zeros (some bytes keep their value)
    masks = (0x00FF0000, 0x00010080, 0x00FF00FF, 0xFFFF0000, 0x0000FFFF, 0x01000100,
             0x80008000, 0xFF00FF00)
    seeds["span"] = m + b"".join(
        cz_case(SPAN, i % 3, i % 4, sizes[i % 6], i % 3, *struct.pack("<I", masks[i % 8]))
        + bytes([(0x00, 0x41, 0xFD, 0x7F)[i % 4], (0, 0, 0x0F, 0xAA)[(i // 4) % 4], 7])
        for i in range(16))
    # writes into freed pool blocks: their link, their data (never reported)
    seeds["waf"] = m + b"".join(
        cz_case(WAF, 1 + i % 2, A_MALLOC, (8, 24, 100, 500)[i % 4], i % 4,
                (0x01, 0x80, 0x00, 0x00)[i % 4], (0x00, 0x01, 0x80, 0x00)[i % 4], 0x41, i)
        for i in range(16))
    # writes into freed blocks the quarantine holds (the C library's: the
    # raw domain's, over 512 bytes, all of malloc_debug's), found by
    # pm_trim (trigger & 2 == 0) or by the frees that push them out;
    # header bytes (mask), a data byte (trigger & 1), 0xDD (no trace)
    seeds["waf-held"] = m + b"".join(
        cz_case(WAF, (0, 1, 2, 0)[i % 4], (A_MALLOC, A_CALLOC, A_REALLOC, A_MALLOC)[i % 4],
                (600, 24, 5000, 0, 100, 1000, 48, 40000)[i % 8], i % 8,
                (0x01, 0x00, 0x80, 0x00, 0xFF, 0x00, 0x10, 0x00)[i % 8],
                (0x00, 0x00, 0x01, 0x80, 0xFF, 0x00, 0x00, 0x00)[i % 8],
                (0x41, 0x00, 0xDD, 0x7F, 0x41, 0x42, 0xDD, 0x13)[i % 8], i * 7)
        for i in range(16))
    seeds["mixed"] = m + b"".join([
        cz_case(INBOUNDS, 0, A_CALLOC, 10, T_REALLOC, 3, 0, 1, 100),
        cz_case(DAMAGE, 1, A_REALLOC, 300, T_CHECK, 1, 9, 7, 0),
        cz_case(AFTER, 2, A_MEMALIGN | 8, 70, T_FREE, 2),
        cz_case(INVALID, 1, A_MALLOC, 0, T_FREE, 0, 0, 0, 0),
        cz_case(MISMATCH, 0, A_MALLOC, 65535, T_REALLOC, 1),
        cz_case(DAMAGE, 2, A_MEMALIGN | 28, 3, T_REALLOC, 0, 15, 0x80, 1)])
    return seeds


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


def main():
    ops = {}
    # The first byte picks pm_mode_names()[byte % count]; 0..7 covers every
    # registered mode while there are at most eight.
    for mode in range(8):
        for name, data in operations_seeds(mode).items():
            ops[f"m{mode}-{name}"] = data
    write("operations", ops)
    write("options", options_seeds())
    cz = {}
    # The first byte picks among the mode names that contain "debug"; 0..3
    # covers every one of them while there are at most four.
    for mode in range(4):
        for name, data in corruption_seeds(mode).items():
            cz[f"m{mode}-{name}"] = data
    write("corruption", cz)


if __name__ == "__main__":
    main()
