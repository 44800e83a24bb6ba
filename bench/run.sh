#!/usr/bin/env bash
# bench/run.sh [build-dir] - the pool benchmark figures, in one run:
#   1. callgrind instructions per malloc+free pair (loop overhead, measured
#      with the trivial allocator, subtracted), pm API vs libc;
#   2. wall time, best of 5, pm vs libc, and the ratio;
#   3. bytes per block (resident-set growth), pm vs libc.
# Needs valgrind. Uses the static library and the pm_mem_* entry points in
# PYMALLOC_MODE=pymalloc (not the malloc override).
set -euo pipefail
B=${1:-build}
bin=$B/bench/pool_bench
export PYMALLOC_MODE=pymalloc
[ -x "$bin" ] || { echo "build first: cmake --build $B" >&2; exit 1; }

# Instructions per pair spent below the loop (everything bench_loop_<a>
# calls), and in the allocator's own functions only (pool_* for pm).
ir() { # alloc size order pairs -> "below own"
  local f=/tmp/pool_bench.cg.$$
  valgrind --tool=callgrind --callgrind-out-file=$f --collect-atstart=no \
    "--toggle-collect=bench_loop_$1" "$bin" churn "$1" "$2" "$3" "$4" >/dev/null 2>&1
  callgrind_annotate --auto=no --threshold=100 $f 2>/dev/null | awk -v k="$4" -v a="$1" '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /:bench_loop_/   { gsub(",", "", $1); loop = $1 }
    /:pool_(malloc|free)( |$)/ { gsub(",", "", $1); own += $1 }
    END { printf "%.1f %.1f\n", (total - loop) / k, (a == "pm" ? own / k : (total - loop) / k) }'
  rm -f $f
}

echo "== callgrind: instructions per malloc+free pair"
echo "   pm API: everything below pm_mem_malloc/pm_mem_free (dispatch, pool, slow paths)
   pool fns: the self cost of pool_malloc + pool_free (the fast paths only)"
printf "%-8s %-6s %12s %12s %12s\n" size order "pm API" "pool fns" libc
for case in "16 lifo" "16 fifo" "64 lifo" "mixed lifo" "mixed fifo"; do
  set -- $case
  pairs=200000
  read -r pm own < <(ir pm "$1" "$2" $pairs)
  read -r libc _ < <(ir libc "$1" "$2" $pairs)
  printf "%-8s %-6s %12s %12s %12s\n" "$1" "$2" "$pm" "$own" "$libc"
done

best() { # best ns/pair of 5 runs: alloc size order pairs
  for i in 1 2 3 4 5; do "$bin" churn "$1" "$2" "$3" "$4"; done |
    sed -n 's/.*ns\/pair=\([0-9.]*\).*/\1/p' | sort -g | head -1
}

echo "== wall time: best of 5, ns per pair (loop included), ratio pm/libc"
printf "%-8s %-6s %10s %10s %8s\n" size order pm libc ratio
for case in "16 lifo" "16 fifo" "mixed lifo" "mixed fifo"; do
  set -- $case
  pm=$(best pm "$1" "$2" 5000000)
  libc=$(best libc "$1" "$2" 5000000)
  awk -v s="$1" -v o="$2" -v p="$pm" -v l="$libc" \
    'BEGIN { printf "%-8s %-6s %10.2f %10.2f %8.2f\n", s, o, p, l, p/l }'
done

echo "== bytes per block (1,000,000 live blocks)"
for size in 16 32 64 100 512; do
  "$bin" probe pm $size 1000000
  "$bin" probe libc $size 1000000
done
