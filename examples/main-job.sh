#!/usr/bin/env bash
# examples/main-job.sh [BUILD_DIR] - the main job: pymalloc on a program
# that knows nothing about it (examples/wordfreq.c, plain malloc/free).
#   1. a clean run in pymalloc mode, with the pool statistics at exit;
#   2. the same program with its heap bug switched on (--off-by-one writes
#      one byte past a block) under the debug mode, which stops it with a
#      report naming the bug, the block, its size and serial;
#   3. the pm_* API demonstration (examples/demo.c).
# Exits 0 when all three behaved as described (the bug was caught).
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
echo "== 3. the pm_* API: build/examples/pymalloc-demo"
"$B/examples/pymalloc-demo" || exit 1
