#!/usr/bin/env bash
# examples/main-job.sh [BUILD_DIR] - the main job: pymalloc on a program
# that knows nothing about it (examples/wordfreq.c, plain malloc/free).
#   1. a clean run in pymalloc mode, with the pool statistics at exit;
#   2. the same program with its heap bug switched on (--off-by-one writes
#      one byte past a block) under the debug mode, which stops it with a
#      report naming the bug, the block, its size and serial;
#   3. its other bug (--use-after-free writes a pointer into a table it
#      freed), which the debug mode finds in the freed block at exit;
#   4. the pm_* API demonstration (examples/demo.c).
# Exits 0 when all four behaved as described (both bugs were caught).
set -u
B=${1:-build}
run=$B/pymalloc-run
prog=$B/examples/wordfreq
[ -x "$run" ] && [ -x "$prog" ] || { echo "build first: cmake --build $B" >&2; exit 2; }

echo "== 1. pymalloc-run --mode pymalloc --stats -- wordfreq"
"$run" --mode pymalloc --stats -- "$prog" || { echo "main job: the clean run failed" >&2; exit 1; }

echo
echo "== 2. pymalloc-run --mode debug -- wordfreq --off-by-one   (a heap bug)"
"$run" --mode debug -- "$prog" --off-by-one 2>&1
rc=$?
if [ $rc -ne 134 ]; then
  echo "main job: expected the debug mode to abort the buggy run (status 134), got $rc" >&2
  exit 1
fi
echo "(caught: the run was stopped with SIGABRT, exit status $rc)"

echo
echo "== 3. pymalloc-run --mode debug -- wordfreq --use-after-free   (another heap bug)"
out=$("$run" --mode debug -- "$prog" --use-after-free 2>&1)
rc=$?
printf '%s\n' "$out"
if [ $rc -ne 134 ] || ! printf '%s\n' "$out" | grep -q "use after free: the freed"; then
  echo "main job: expected the debug mode to report the write after free at exit (status 134), got $rc" >&2
  exit 1
fi
echo "(caught at exit: the write into the freed table was found, exit status $rc)"

echo
echo "== 4. the pm_* API: build/examples/pymalloc-demo"
"$B/examples/pymalloc-demo" || exit 1
