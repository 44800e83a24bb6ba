#!/bin/sh
# tests/override/check_valgrind_preload.sh - the override preloaded into a
# program run under valgrind (memcheck) in pymalloc mode. valgrind 3.19
# replaces malloc in every object by default, the preloaded library's too,
# so the pools would never run: --soname-synonyms=somalloc=nouserintercepts
# keeps its replacement to libc. Then memcheck sees pool blocks: the
# overflow is named against its 32-byte block, allocated in the pools, and
# the leaked cycle is definitely lost, whole.
#   check_valgrind_preload.sh LIBPYMALLOC PROGRAM
set -u
lib=$1 prog=$2
command -v valgrind >/dev/null 2>&1 || { echo "valgrind not installed: skipped"; exit 77; }
out=$(PYMALLOC_MODE=pymalloc LD_PRELOAD="$lib" valgrind -q --leak-check=full \
    --vex-guest-chase=no --soname-synonyms=somalloc=nouserintercepts "$prog" 2>&1 |
    sed 's#(\([^ ()]*/\)*\([^ ()/]*:[0-9][0-9]*)\)#(\2#g')
# (the sed: a frame's file without its directories, as gcc's line table
# names it; clang's has "tests/override/vg_leaky.c")
printf '%s\n' "$out"
fails=0
for want in "Invalid write of size 1" "overflow_one (vg_leaky.c:" \
    "0 bytes after a block of size 32 alloc'd" "pm_i_p_malloc_slow" \
    "128 (64 direct, 64 indirect) bytes in 1 blocks are definitely lost" \
    "leak_cycle (vg_leaky.c:"; do
    printf '%s\n' "$out" | grep -qF -- "$want" || { echo "FAIL: no '$want'"; fails=1; }
done
[ $fails = 0 ] && echo "PASS"
exit $fails
