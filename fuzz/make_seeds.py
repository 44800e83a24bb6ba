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
MALLOC, CALLOC, REALLOC, FREE, MEMALIGN, WRITE, CHECK, BADSIZE, HOOK = range(9)
RAW, MEM, OBJ = range(3)


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
    return bytes([CALLOC, slot, dom, elsize_index]) + size(total) + b"\x05"


def op_realloc(slot, dom, n):
    return bytes([REALLOC, slot, dom]) + size(n)


def op_free(slot, dom=0):
    return bytes([FREE, slot, dom])


def op_memalign(slot, dom, log2_minus_5, n):
    return bytes([MEMALIGN, slot, dom, log2_minus_5]) + size(n)


def op_write(slot, off, length, value, how=0):
    return bytes([WRITE, slot]) + struct.pack("<HH", off, length) + bytes([value, how])


def op_check(slot, slack=1):
    return bytes([CHECK, slot, slack])


def op_badsize(how, dom, which):
    return bytes([BADSIZE, how, dom, which])


def op_hook(dom, push):
    return bytes([HOOK, dom, push])


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


if __name__ == "__main__":
    main()
