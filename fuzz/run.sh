#!/usr/bin/env bash
# fuzz/run.sh - build one libFuzzer target and fuzz it for a while.
#
#   fuzz/run.sh TARGET [SECONDS [MODE [libFuzzer flags...]]]
#
# TARGET is operations, options or corruption; SECONDS defaults to 60; MODE
# is a PYMALLOC_MODE name (default: default; for corruption: debug) or "all",
# which splits SECONDS over every mode (for corruption, every debug mode), at
# least 10 s each. The build goes to build-fuzz/ (CC=clang,
# -DPYMALLOC_FUZZ=ON; PM_FUZZ_BUILD overrides the directory). The committed
# corpus fuzz/corpus/TARGET/ is read, never written: new inputs go to
# build-fuzz/fuzz-work/TARGET/, crashes to build-fuzz/fuzz-crashes/TARGET/.
# Exits non-zero if the fuzzer found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
target=$1
seconds=${2:-60}
default_mode=default
[ "$target" != corruption ] || default_mode=debug
mode=${3:-$default_mode}
shift $(($# < 3 ? $# : 3))
build=${PM_FUZZ_BUILD:-build-fuzz}

if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=${CC:-clang} cmake -S . -B "$build" -DPYMALLOC_FUZZ=ON >/dev/null
fi
cmake --build "$build" -j2 --target "fuzz_$target" "replay_$target" >/dev/null

work=$build/fuzz-work/$target
crashes=$build/fuzz-crashes/$target
mkdir -p "$work" "$crashes"

if [ "$mode" = all ]; then
  modes=$("$build/fuzz/replay_$target" --list-modes)
  if [ "$target" = corruption ]; then
    modes=$(echo "$modes" | grep debug)
  fi
  n=$(echo "$modes" | wc -w)
  each=$((seconds / n))
  [ "$each" -ge 10 ] || each=10
else
  modes=$mode
  each=$seconds
fi

for m in $modes; do
  echo "== fuzz_$target, mode $m, ${each}s"
  PYMALLOC_MODE=$m "$build/fuzz/fuzz_$target" -max_total_time="$each" -timeout=25 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$@" "$work" "fuzz/corpus/$target"
done
