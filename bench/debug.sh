#!/usr/bin/env bash
# bench/debug.sh [build-dir] - the debug hooks' cost, side by side in one run:
# the churn workload of pool_bench (pm_mem_* entry points) in each debug mode
# against the mode it wraps:
#   1. callgrind instructions per malloc+free pair (loop cost subtracted);
#   2. wall time, best of RUNS (9) runs alternating between the modes, and
#      the ratio debug/plain; in a single-threaded process and in one that
#      has had a second thread (POOL_BENCH_THREADED=1: the debug hooks take
#      their atomic paths, as in any threaded program); and with two
#      threads running the loop at once (POOL_BENCH_THREADS=2: ns per pair
#      of one thread while the other allocates too);
#   3. memory per block in pymalloc_debug against pymalloc: the pools' bytes
#      per block (arena bytes in use / blocks) and the resident-set growth,
#      which also holds the debug layer's block registry (mmap'd metadata).
# Needs valgrind for part 1.
set -euo pipefail
B=${1:-build}
bin=$B/bench/pool_bench
[ -x "$bin" ] || { echo "build first: cmake --build $B" >&2; exit 1; }

ir() { # mode size order pairs -> instructions per pair below bench_loop_pm
  local f=/tmp/debug_bench.cg.$$ loopf=/tmp/debug_bench.loop.$$
  PYMALLOC_MODE=$1 valgrind --tool=callgrind --callgrind-out-file=$f --collect-atstart=no \
    --toggle-collect=bench_loop_pm "$bin" churn pm "$2" "$3" "$4" >/dev/null 2>&1
  callgrind_annotate --auto=no --threshold=100 $f 2>/dev/null | awk -v k="$4" '
    /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
    /:bench_loop_/   { gsub(",", "", $1); loop = $1 }
    END { printf "%.1f\n", (total - loop) / k }'
  rm -f $f $loopf
}

# The best ns/pair of RUNS runs of each mode; the modes' runs alternate (run
# i of every mode, then run i+1), so that changes in the machine's load hit
# them alike.
RUNS=${RUNS:-9}
row() { # size order pairs threads(0|1|2) mode... -> "mode best" lines
  local size=$1 order=$2 pairs=$3 thr=$4; shift 4
  local d; d=$(mktemp -d)
  local threaded=0 threads=1
  case $thr in 1) threaded=1 ;; 2) threads=2 ;; esac
  for i in $(seq "$RUNS"); do
    for m in "$@"; do
      POOL_BENCH_THREADED=$threaded POOL_BENCH_THREADS=$threads PYMALLOC_MODE=$m \
        "$bin" churn pm "$size" "$order" "$pairs" |
        sed -n 's/.*ns\/pair=\([0-9.]*\).*/\1/p' >>"$d/$m"
    done
  done
  for m in "$@"; do echo "$m $(sort -g "$d/$m" | head -1)"; done
  rm -rf "$d"
}

echo "== callgrind: instructions per malloc+free pair (pm_mem_*, everything below the loop)"
printf "%-8s %-6s %10s %10s %7s %10s %10s %7s\n" size order pymalloc pm_debug ratio malloc m_debug ratio
for case in "16 lifo" "mixed fifo"; do
  set -- $case
  p=$(ir pymalloc "$1" "$2" 100000); pd=$(ir pymalloc_debug "$1" "$2" 100000)
  m=$(ir malloc "$1" "$2" 100000); md=$(ir malloc_debug "$1" "$2" 100000)
  awk -v s="$1" -v o="$2" -v p="$p" -v pd="$pd" -v m="$m" -v md="$md" \
    'BEGIN { printf "%-8s %-6s %10.1f %10.1f %7.2f %10.1f %10.1f %7.2f\n", s, o, p, pd, pd/p, m, md, md/m }'
done

for thr in 0 1 2; do
  case $thr in
    0) what="single-threaded process" ;;
    1) what="process that has had a second thread" ;;
    2) what="two threads running the loop at once (ns per pair of one thread)" ;;
  esac
  echo "== wall time, $what: best of $RUNS alternating runs, ns per pair (loop included)"
  printf "%-8s %-6s %10s %10s %7s %10s %10s %7s\n" size order pymalloc pm_debug ratio malloc m_debug ratio
  for case in "16 lifo" "16 fifo" "mixed lifo" "mixed fifo"; do
    set -- $case
    pairs=2000000; [ "$thr" = 2 ] && pairs=10000000 # two threads: longer runs, as the start of each thread is noisy
    r=$(row "$1" "$2" "$pairs" "$thr" pymalloc pymalloc_debug malloc malloc_debug)
    get() { echo "$r" | awk -v m="$1" '$1 == m { print $2 }'; }
    awk -v s="$1" -v o="$2" -v p="$(get pymalloc)" -v pd="$(get pymalloc_debug)" \
      -v m="$(get malloc)" -v md="$(get malloc_debug)" \
      'BEGIN { printf "%-8s %-6s %10.2f %10.2f %7.2f %10.2f %10.2f %7.2f\n", s, o, p, pd, pd/p, m, md, md/m }'
  done
done

echo "== memory per block (1,000,000 live blocks): pymalloc vs pymalloc_debug"
for size in 16 64 100 480; do
  PYMALLOC_MODE=pymalloc "$bin" probe pm $size 1000000 | sed 's/^/pymalloc       /'
  PYMALLOC_MODE=pymalloc_debug "$bin" probe pm $size 1000000 | sed 's/^/pymalloc_debug /'
done

# The quarantine of the C library's freed blocks (PYMALLOC_QUARANTINE): the
# same churn in malloc_debug, and pymalloc_debug's blocks over 512 bytes,
# with the default budget (1M), 16M and none; alternating runs.
echo "== the quarantine: ns per pair, best of $RUNS alternating runs, default (1M) / 16M / off"
printf "%-15s %-8s %-6s %10s %10s %10s %7s\n" mode size order 1M 16M off 1M/off
for case in "malloc_debug 16 lifo" "malloc_debug 16 fifo" "malloc_debug mixed lifo" \
  "malloc_debug mixed fifo" "pymalloc_debug 4000 lifo" "pymalloc_debug 4000 fifo"; do
  set -- $case
  d=$(mktemp -d)
  for i in $(seq "$RUNS"); do
    for q in 1M 16M 0; do
      PYMALLOC_QUARANTINE=$q PYMALLOC_MODE=$1 "$bin" churn pm "$2" "$3" 1000000 |
        sed -n 's/.*ns\/pair=\([0-9.]*\).*/\1/p' >>"$d/$q"
    done
  done
  awk -v m="$1" -v s="$2" -v o="$3" -v a="$(sort -g "$d/1M" | head -1)" \
    -v c="$(sort -g "$d/16M" | head -1)" -v b="$(sort -g "$d/0" | head -1)" \
    'BEGIN { printf "%-15s %-8s %-6s %10.2f %10.2f %10.2f %7.2f\n", m, s, o, a, c, b, a/b }'
  rm -rf "$d"
done
