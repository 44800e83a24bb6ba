#!/usr/bin/env bash
# bench/fork_exit.sh [build-dir] [old-build-dir] - a fork child's exit with a
# big parent heap, per mode: bench/fork_exit under the preloaded
# libpymalloc.so of build-dir (and of old-build-dir beside it, if given),
# 80,000 live blocks (BLOCKS), 40 children (CHILDREN) each ending with
# exit(0) at once: the fastest and the median ms from fork() to the
# child's end. Not a test: the machine's load moves the figures.
set -euo pipefail
B=${1:-build}
OLD=${2:-}
bin=$B/bench/fork_exit
[ -x "$bin" ] || { echo "build first: cmake --build $B" >&2; exit 1; }
BLOCKS=${BLOCKS:-80000} CHILDREN=${CHILDREN:-40}
printf "%-8s %-16s %10s %10s\n" build mode best_ms median_ms
for m in malloc pymalloc malloc_debug pymalloc_debug debug; do
  for which in new old; do
    lib=$B/libpymalloc.so
    if [ $which = old ]; then
      [ -n "$OLD" ] || continue
      lib=$OLD/libpymalloc.so
    fi
    LD_PRELOAD=$lib PYMALLOC_MODE=$m "$bin" "$BLOCKS" "$CHILDREN" |
      awk -v w=$which -v m=$m '{ split($4, b, "="); split($5, d, "=");
        printf "%-8s %-16s %10s %10s\n", w, m, b[2], d[2] }'
  done
done
echo "glibc    -                $(LD_PRELOAD= "$bin" "$BLOCKS" "$CHILDREN" | awk '{ split($4, b, "="); split($5, d, "="); printf "%10s %10s", b[2], d[2] }')"
