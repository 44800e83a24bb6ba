#!/usr/bin/env bash
# bench/quarantine.sh [build-dir] [before-build-dir] - the cost of the debug
# hooks' quarantine in one run, ns per malloc+free pair of pool_bench's
# churn (pm_mem_*), best of RUNS (7) runs alternating between the rows'
# settings (and builds):
#   1. PYMALLOC_QUARANTINE_POOLS=on against off (the default) in
#      pymalloc_debug: 16-byte blocks LIFO, mixed sizes FIFO, in a
#      single-threaded process, and with two threads running the loop at
#      once (POOL_BENCH_THREADS=2: ns per pair of one thread);
#   2. malloc_debug (every freed block held), one thread and two at once.
# With a second build directory (an older build), each row is run with it
# too, side by side ("before").
set -euo pipefail
B=${1:-build}
A=${2:-}
RUNS=${RUNS:-7}
for b in $B $A; do
  [ -x "$b/bench/pool_bench" ] || { echo "build first: cmake --build $b" >&2; exit 1; }
done

# best: mode size order threads env... -> the best ns/pair of each build
best() {
  local mode=$1 size=$2 order=$3 threads=$4; shift 4
  local d; d=$(mktemp -d)
  for i in $(seq "$RUNS"); do
    for b in $B $A; do
      env "$@" POOL_BENCH_THREADS="$threads" PYMALLOC_MODE="$mode" \
        "$b/bench/pool_bench" churn pm "$size" "$order" 2000000 |
        sed -n 's/.*ns\/pair=\([0-9.]*\).*/\1/p' >>"$d/$(echo "$b" | tr / _)"
    done
  done
  for b in $B $A; do
    printf " %10.2f" "$(sort -g "$d/$(echo "$b" | tr / _)" | head -1)"
  done
  rm -rf "$d"
}

printf "%-15s %-6s %-5s %-7s %-22s %10s" mode size order threads setting ns
[ -n "$A" ] && printf " %10s" before
echo
for t in 1 2; do
  for c in "16 lifo" "mixed fifo"; do
    set -- $c
    for q in off on; do
      printf "%-15s %-6s %-5s %-7s %-22s" pymalloc_debug "$1" "$2" "$t" "QUARANTINE_POOLS=$q"
      best pymalloc_debug "$1" "$2" "$t" PYMALLOC_QUARANTINE_POOLS=$q
      echo
    done
  done
  printf "%-15s %-6s %-5s %-7s %-22s" malloc_debug 16 lifo "$t" "QUARANTINE=1M"
  best malloc_debug 16 lifo "$t" PYMALLOC_QUARANTINE=1M
  echo
done
