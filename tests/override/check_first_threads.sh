#!/bin/sh
# tests/override/check_first_threads.sh - prog_first_threads (32 threads
# whose first allocations, made at once, are the C library's) run RUNS
# times (100 unless set) in one mode: each run must print "ok" and exit 0.
# Before the fix, 7 to 18 runs of 100 aborted in the pymalloc modes.
#   check_first_threads.sh MODE PROG [LIB]
# With LIB (libpymalloc.so) preloaded; without, PROG is the copy linked
# with libpymalloc.a.
set -u
mode=$1 prog=$2 lib=${3:-}
runs=${RUNS:-100}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm_first.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    env PYMALLOC_MODE="$mode" ${lib:+LD_PRELOAD="$lib"} timeout 60 "$prog" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if [ $rc != 0 ] || [ "$(cat "$tmp/out")" != ok ]; then
        echo "FAIL: run $i of $runs in $mode${lib:+ (preloaded)}: exit status $rc"
        sed 's/^/    err| /' "$tmp/err"
        sed 's/^/    out| /' "$tmp/out"
        exit 1
    fi
done
echo "$runs runs ok in $mode${lib:+ (preloaded)}"
