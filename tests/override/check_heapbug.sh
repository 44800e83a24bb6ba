#!/bin/sh
# tests/override/check_heapbug.sh - a heap bug in a preloaded program is
# reported by a debug mode: the program dies with SIGABRT (status 134) and
# stderr carries the report of the right class.
#   check_heapbug.sh PYMALLOC_RUN MODE REPORT_REGEX... -- program args...
# Each REPORT_REGEX must match a line of the output; one written !REGEX
# must match none.
set -u
run=$1 mode=$2
shift 2
regexes=
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  regexes="$regexes$1
"
  shift
done
[ $# -gt 0 ] || { echo "usage: check_heapbug.sh PYMALLOC_RUN MODE REPORT_REGEX... -- program args..."; exit 2; }
shift
out=$("$run" --mode "$mode" -- "$@" 2>&1)
rc=$?
printf '%s\n' "$out"
[ $rc = 134 ] || { echo "FAIL: status $rc, expected 134 (SIGABRT) in mode $mode"; exit 1; }
printf '%s' "$regexes" | while IFS= read -r regex; do
  case $regex in
  !*)
    if printf '%s\n' "$out" | grep -Eq -- "${regex#!}"; then
      echo "FAIL: a line matches /${regex#!}/"
      exit 1
    fi ;;
  *)
    printf '%s\n' "$out" | grep -Eq -- "$regex" || { echo "FAIL: no report matching /$regex/"; exit 1; } ;;
  esac
done || exit 1
echo "PASS: mode $mode reported as expected"
