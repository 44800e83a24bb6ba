#!/bin/sh
# tests/override/check_valgrind_reallocarray.sh - a correct program that
# uses reallocarray, with libpymalloc.so preloaded, under valgrind
# (memcheck) in every mode: with the default replacement of malloc, free
# and realloc in every object (the library's too; valgrind 3.19 does not
# replace reallocarray, whose blocks must then be valgrind's) and with
# --soname-synonyms=somalloc=nouserintercepts (the library's own): no
# report, "ok", exit status 0. Before, without the synonym, the debug modes
# stopped the program with "realloc: invalid pointer" (the library's
# reallocarray on valgrind's block), and pymalloc mode's reallocarray(NULL)
# made a pool block that valgrind's realloc was given ("Mismatched free").
# Likewise pvalloc and __libc_pvalloc (before 2026-12-06 the debug modes
# made debug blocks, and valgrind's free said "Invalid free()").
#   check_valgrind_reallocarray.sh LIBPYMALLOC PROGRAM
set -u
lib=$1 prog=$2
command -v valgrind >/dev/null 2>&1 || { echo "valgrind not installed: skipped"; exit 77; }
fails=0
for mode in malloc pymalloc debug malloc_debug pymalloc_debug default; do
    for syn in "" --soname-synonyms=somalloc=nouserintercepts; do
        out=$(PYMALLOC_MODE=$mode LD_PRELOAD="$lib" valgrind -q --error-exitcode=99 \
            $syn "$prog" 2>&1)
        status=$?
        if [ $status != 0 ] || [ "$out" != ok ]; then
            echo "FAIL: mode $mode ${syn:-(no synonym)}: status $status:"
            printf '%s\n' "$out"
            fails=1
        fi
    done
done
[ $fails = 0 ] && echo "PASS"
exit $fails
