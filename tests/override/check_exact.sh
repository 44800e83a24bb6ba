#!/bin/sh
# tests/override/check_exact.sh - a program exits 0 and prints exactly one
# line, matching an extended regular expression, on stdout and stderr
# together (no report, no warning beside it).
#   check_exact.sh LINE_REGEX -- program args...
set -u
regex=$1
shift 2
out=$("$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc = 0 ] || { echo "FAIL: exit status $rc"; exit 1; }
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || { echo "FAIL: not one line"; exit 1; }
printf '%s\n' "$out" | grep -Eqx -- "$regex" || { echo "FAIL: no line matching /$regex/"; exit 1; }
echo "PASS"
