#!/usr/bin/env bash
# bench/preload.sh - the malloc override's figures, measured side by side in
# one run:
#
#  1. A Python small-object workload (bench/small_objects.py) with
#     PYTHONMALLOC=malloc, so CPython's allocations reach malloc, under:
#       - glibc (no preload)
#       - libpymalloc.so preloaded in every mode the library lists
#       - jemalloc, mimalloc, tcmalloc preloaded (skipped if absent)
#     and the same python3 with its built-in pymalloc (PYTHONMALLOC unset).
#     CPU and wall time, median of RUNS runs, the configurations interleaved.
#  2. The cost of a malloc+free pair of 16..512 bytes through LD_PRELOAD
#     (bench/pairs.c at two N, the difference divided by the difference in
#     N): native CPU nanoseconds (median of RUNS), and callgrind instructions.
#     A mode that notices valgrind and changes its path (the pool mode turns
#     its thread caches off under valgrind) is measured on that other path
#     by callgrind: compare such modes on the native figures.
#  3. The Python workload again, in callgrind instructions (repeatable on a
#     shared machine, where times are not).
#  4. The workload's time measured against itself (with perf, if it can
#     sample): each run's samples over its samples in the interpreter's own
#     hottest functions, so that a noisy machine's swings cancel out.
#
#   bench/preload.sh [BUILD_DIR]      (default: build)
# Environment: RUNS (default 5), SCALE (rounds of the Python workload,
# default 20), PYTHON (default: the real python3 behind any shim),
# PM_BENCH_NO_INSTALL=1 (do not apt-get the peers), NO_CALLGRIND=1 (parts 2,
# 3 and 4 left out), CG_SCALE (rounds of the workload under callgrind,
# default 2), SHARE_RUNS (runs per configuration in part 4, default 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-$here/../build}" && pwd)
runs=${RUNS:-5}
scale=${SCALE:-20}
lib=$build/libpymalloc.so
run=$build/pymalloc-run
[ -r "$lib" ] && [ -x "$run" ] || { echo "build first: $lib or $run missing" >&2; exit 2; }
python=${PYTHON:-$(python3 -c 'import sys; print(sys.executable)')}
export PYTHONHASHSEED=0 # the same dict layouts, so the same work, in every run

# Peers.
if [ -z "${PM_BENCH_NO_INSTALL:-}" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing peers: ${missing[*]}" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") \
      >/dev/null 2>&1 || echo "could not install the peers; they are skipped" >&2
  fi
fi
peer() { # the first existing path
  for f in "$@"; do [ -e "$f" ] && { echo "$f"; return; }; done
}
multiarch=/usr/lib/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
jemalloc=$(peer "$multiarch/libjemalloc.so.2")
mimalloc=$(peer "$multiarch/libmimalloc.so.2" "$multiarch/libmimalloc.so.2.0")
tcmalloc=$(peer "$multiarch/libtcmalloc_minimal.so.4")

# Configurations: name | environment (for env(1)).
names=() envs=()
add() { names+=("$1"); envs+=("$2"); }
add "python-pymalloc" ""
add "glibc" "PYTHONMALLOC=malloc"
for m in $("$run" --list-modes); do
  add "pymalloc:$m" "PYTHONMALLOC=malloc LD_PRELOAD=$lib PYMALLOC_MODE=$m"
done
[ -n "$jemalloc" ] && add "jemalloc" "PYTHONMALLOC=malloc LD_PRELOAD=$jemalloc"
[ -n "$mimalloc" ] && add "mimalloc" "PYTHONMALLOC=malloc LD_PRELOAD=$mimalloc"
[ -n "$tcmalloc" ] && add "tcmalloc" "PYTHONMALLOC=malloc LD_PRELOAD=$tcmalloc"

echo "# pymalloc $("$run" --version | awk '{print $2}'), $(date -u +%FT%TZ), $(nproc) cpus, $python ($("$python" -c 'import sys; print(sys.version.split()[0])'))"
echo
echo "## 1. Python small-object workload (bench/small_objects.py $scale)"
echo "CPU seconds (user+sys; the machine may be shared, so wall time is noisier), median of $runs"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
expect=$(env "$python" "$here/small_objects.py" "$scale")
declare -A times walls
TIMEFORMAT='%R %U %S'
for ((r = 0; r < runs; r++)); do
  for i in "${!names[@]}"; do
    # shellcheck disable=SC2086
    { time env ${envs[$i]} "$python" "$here/small_objects.py" "$scale" >"$tmp/out"; } 2>"$tmp/time"
    [ "$(cat "$tmp/out")" = "$expect" ] || { echo "wrong output under ${names[$i]}" >&2; exit 1; }
    read -r wall user sys <"$tmp/time"
    times[$i]="${times[$i]:-} $(echo "$user + $sys" | bc -l)"
    walls[$i]="${walls[$i]:-} $wall"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A med medw
for i in "${!names[@]}"; do
  med[$i]=$(echo "${times[$i]}" | median)
  medw[$i]=$(echo "${walls[$i]}" | median)
done
printf '%-22s %8s %8s %14s %10s\n' configuration cpu wall "vs python's" "vs glibc"
for i in "${!names[@]}"; do
  printf '%-22s %8.3f %8.3f %13.2fx %9.2fx\n' "${names[$i]}" "${med[$i]}" "${medw[$i]}" \
    "$(echo "${med[$i]} / ${med[0]}" | bc -l)" "$(echo "${med[$i]} / ${med[1]}" | bc -l)"
done

[ -n "${NO_CALLGRIND:-}" ] && exit 0
command -v valgrind >/dev/null || { echo "valgrind missing: parts 2 and 3 skipped"; exit 0; }
echo
echo "## 2. One malloc+free pair (16..512 bytes) through LD_PRELOAD"
cc -O2 -o "$tmp/pairs" "$here/pairs.c"
ir() { # ir N ENV... -> total instructions
  local n=$1; shift
  env "$@" valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$tmp/pairs" "$n" \
    >/dev/null 2>"$tmp/cg.err"
  awk '/^summary:/ {print $2}' "$tmp/cg.out"
}
cpu() { # cpu N ENV... -> user+sys seconds
  local n=$1; shift
  { time env "$@" "$tmp/pairs" "$n"; } 2>"$tmp/t"
  read -r _ u s <"$tmp/t"
  echo "$u + $s" | bc -l
}
n1=100000 n2=300000 m1=2000000 m2=12000000
printf '%-22s %10s %12s\n' allocator "ns (cpu)" "Ir (callgrind)"
for i in "${!names[@]}"; do
  [ "${names[$i]}" = python-pymalloc ] && continue
  e=${envs[$i]#PYTHONMALLOC=malloc}
  ns=""
  for ((r = 0; r < runs; r++)); do
    # shellcheck disable=SC2086
    ns="$ns $(echo "($(cpu $m2 $e PM_NONE=1) - $(cpu $m1 $e PM_NONE=1)) * 1000000000 / ($m2 - $m1)" | bc -l)"
  done
  # shellcheck disable=SC2086
  a=$(ir $n1 $e PM_NONE=1) b=$(ir $n2 $e PM_NONE=1)
  printf '%-22s %10.1f %12.1f\n' "${names[$i]}" "$(echo "$ns" | median)" \
    "$(echo "($b - $a) / ($n2 - $n1)" | bc -l)"
done

echo
cg_scale=${CG_SCALE:-2}
echo "## 3. Python small-object workload (bench/small_objects.py $cg_scale), callgrind instructions"
printf '%-22s %16s %14s %10s\n' configuration "Ir" "vs python's" "vs glibc"
declare -A irs
for i in "${!names[@]}"; do
  # shellcheck disable=SC2086
  env ${envs[$i]} valgrind --tool=callgrind --callgrind-out-file="$tmp/py.out" \
    "$python" "$here/small_objects.py" "$cg_scale" >/dev/null 2>"$tmp/py.err"
  irs[$i]=$(awk '/^summary:/ {print $2}' "$tmp/py.out")
  if [ "$i" = 1 ]; then
    # glibc's run: the instructions inside its allocator, the entry points'
    # inclusive costs (what they call, _int_malloc and the rest, included).
    glibc_alloc_ir=$(callgrind_annotate --inclusive=yes --threshold=100 "$tmp/py.out" 2>/dev/null |
      awk '/libc\.so/ && $0 ~ /:(malloc|free|calloc|realloc|memalign|posix_memalign|aligned_alloc|malloc_usable_size) \[/ {
             gsub(",", "", $1); s += $1 } END { print s + 0 }')
  fi
done
for i in "${!names[@]}"; do
  printf '%-22s %16s %13.2fx %9.2fx\n' "${names[$i]}" "${irs[$i]}" \
    "$(echo "${irs[$i]} / ${irs[0]}" | bc -l)" "$(echo "${irs[$i]} / ${irs[1]}" | bc -l)"
done
# The floor: what any allocator can save is at most what glibc's own cost.
echo "floor: glibc's malloc, free, calloc, realloc and memalign family took $glibc_alloc_ir of its" \
  "instructions ($(echo "100 * $glibc_alloc_ir / ${irs[1]}" | bc -l | xargs printf '%.1f')%); an allocator" \
  "that cost nothing would run $(echo "${irs[1]} - $glibc_alloc_ir" | bc) ($(echo "1 - $glibc_alloc_ir / ${irs[1]}" | bc -l | xargs printf '%.3f')x of glibc)"

# 4. The same workload timed in a way the machine's noise cancels out of:
# sampled with perf (cpu-clock), each run's samples divided by its samples
# in the interpreter's own hottest functions (the bytecode loop, dict
# lookups and insertion, int-to-string, string copies), which do the same
# work under every allocator. A slower or busier machine slows both alike,
# so the ratio is stable where times swing by half from run to run; what it
# does not see is an allocator's effect on the interpreter's own cache
# misses (that part stays inside the divisor).
command -v perf >/dev/null && perf record -q -e cpu-clock -o "$tmp/probe.data" true >/dev/null 2>&1 || {
  echo; echo "perf cannot sample here: part 4 skipped"; exit 0; }
share_runs=${SHARE_RUNS:-3}
# glibc 2.36's allocator, by function (its entry points and what they call).
libc_alloc='malloc|free|cfree|calloc|realloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk.*|sysmalloc.*|systrim.*|tcache_.*|alloc_perturb|_int_memalign|memalign|posix_memalign|aligned_alloc|__libc_.*alloc|__libc_free|malloc_usable_size|munmap_chunk|mremap_chunk|arena_get2.*|ptmalloc_init.*'
core='_PyEval_EvalFrameDefault|unicodekeys_lookup_unicode|_Py_dict_lookup|PyDict_GetItemWithError|insertdict|long_to_decimal_string_internal|_copy_characters|PyDict_SetItem|_PyLong_Add|PyObject_Str'
echo
echo "## 4. Python small-object workload ($scale), perf samples / samples in the interpreter's core, $share_runs runs summed"
declare -A tot cor
for ((r = 0; r < share_runs; r++)); do
  for i in "${!names[@]}"; do
    # shellcheck disable=SC2086
    env ${envs[$i]} perf record -q -e cpu-clock -F 2000 -o "$tmp/s.data" \
      "$python" "$here/small_objects.py" "$scale" >/dev/null 2>&1
    read -r t k < <(perf report -i "$tmp/s.data" --stdio --sort sym -F overhead,sample,sym 2>/dev/null |
      grep -v '^#' | awk -v re="$core" 'NF >= 3 {t += $2; if ($NF ~ "^(" re ")$") k += $2} END {print t + 0, k + 0}')
    tot[$i]=$((${tot[$i]:-0} + t)) cor[$i]=$((${cor[$i]:-0} + k))
    if [ "$i" = 1 ]; then # glibc's run: its samples inside libc's allocator
      a=$(perf report -i "$tmp/s.data" --stdio --sort dso,sym -F overhead,sample,dso,sym 2>/dev/null |
        grep -v '^#' | awk -v re="$libc_alloc" 'NF >= 4 && $3 ~ /^libc\.so/ {
          f = $NF; sub(/@.*/, "", f); if (f ~ "^(" re ")$") a += $2 }
          END {print a + 0}')
      glibc_alloc_samples=$((${glibc_alloc_samples:-0} + a))
    fi
  done
done
printf '%-22s %9s %9s %10s %14s %10s\n' configuration samples core total/core "vs python's" "vs glibc"
for i in "${!names[@]}"; do
  printf '%-22s %9d %9d %10.4f %13.3fx %9.3fx\n' "${names[$i]}" "${tot[$i]}" "${cor[$i]}" \
    "$(echo "${tot[$i]} / ${cor[$i]}" | bc -l)" \
    "$(echo "(${tot[$i]} / ${cor[$i]}) / (${tot[0]} / ${cor[0]})" | bc -l)" \
    "$(echo "(${tot[$i]} / ${cor[$i]}) / (${tot[1]} / ${cor[1]})" | bc -l)"
done
g=${glibc_alloc_samples:-0}
echo "floor: $g of glibc's ${tot[1]} samples ($(echo "100 * $g / ${tot[1]}" | bc -l | xargs printf '%.1f')%) were in its allocator;" \
  "without them glibc's run would be $(echo "1 - $g / ${tot[1]}" | bc -l | xargs printf '%.3f')x of itself"
