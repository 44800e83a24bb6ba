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
#
# Each mode's time is split between a multi-threaded process (libFuzzer's
# default: its RSS-limit thread runs) and a single-threaded one
# (-rss_limit_mb=0): the library's fast paths differ between the two.
# PM_FUZZ_THREADS=multi or single runs one of them only. A crash found
# multi-threaded replays with replay_TARGET --threads (the oracle's
# failure line says so).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
target=$1
if [ ! -f "fuzz/$target.c" ] || [ "$target" = replay ]; then
  echo "run.sh: no fuzz target '$target' (fuzz/*.c: operations, options, corruption)" >&2
  exit 2
fi
seconds=${2:-60}
default_mode=default
[ "$target" != corruption ] || default_mode=debug
mode=${3:-$default_mode}
shift $(($# < 3 ? $# : 3))
build=${PM_FUZZ_BUILD:-build-fuzz}

cc=${CC:-clang}
if ! command -v "$cc" >/dev/null 2>&1; then
  echo "run.sh: compiler '$cc' not found: the fuzzers need clang with libFuzzer" \
       "(apt-get install clang), or CC naming it" >&2
  exit 2
fi
# Configured every time (quick once done): a configure that failed (clang
# missing) leaves a CMakeCache.txt without build files, and a build
# directory made without PYMALLOC_FUZZ=ON, or with gcc, has no fuzz_*
# targets; both ended in make's "No rule to make target".
if ! CC=$cc cmake -S . -B "$build" -DPYMALLOC_FUZZ=ON >/dev/null; then
  echo "run.sh: configuring $build with -DPYMALLOC_FUZZ=ON failed (made before with" \
       "another compiler? remove it, or set PM_FUZZ_BUILD)" >&2
  exit 2
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

case ${PM_FUZZ_THREADS:-both} in
  both) kinds="multi single" ;;
  multi|single) kinds=$PM_FUZZ_THREADS ;;
  *) echo "run.sh: PM_FUZZ_THREADS is both, multi or single" >&2; exit 2 ;;
esac
nk=$(echo "$kinds" | wc -w)
for m in $modes; do
  for k in $kinds; do
    t=$((each / nk))
    [ "$t" -ge 1 ] || t=1
    extra=()
    [ "$k" = multi ] || extra=(-rss_limit_mb=0)
    echo "== fuzz_$target, mode $m, ${k}-threaded, ${t}s"
    PYMALLOC_MODE=$m "$build/fuzz/fuzz_$target" -max_total_time="$t" -timeout=25 \
      -print_final_stats=1 -artifact_prefix="$crashes/" "${extra[@]}" "$@" "$work" \
      "fuzz/corpus/$target"
  done
done
