#!/bin/sh
# tests/override/check_heapbug.sh - a heap bug in a preloaded program is
# reported by a debug mode: the program dies with SIGABRT (status 134) and
# stderr carries the report of the right class.
#   check_heapbug.sh PYMALLOC_RUN MODE REPORT_REGEX -- program args...
set -u
run=$1 mode=$2 regex=$3
shift 4
out=$("$run" --mode "$mode" -- "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc = 134 ] || { echo "FAIL: status $rc, expected 134 (SIGABRT) in mode $mode"; exit 1; }
printf '%s\n' "$out" | grep -Eq "$regex" || { echo "FAIL: no report matching /$regex/"; exit 1; }
echo "PASS: mode $mode reported /$regex/"
