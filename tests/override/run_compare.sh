#!/bin/sh
# tests/override/run_compare.sh - run a program under plain glibc and under
# the preloaded override in one mode; the exit status and stdout must match.
#
#   run_compare.sh --lib LIB --mode MODE [--stdin FILE] [--env K=V]... -- program args...
#   run_compare.sh --static --mode MODE [--env K=V]... -- program args...
#
# --status-only: compare the exit status only (for output with timings).
# --require CMD: skip (77) unless the shell command CMD succeeds.
# --no-banner: no PYMALLOC_VERBOSE (for programs whose child processes'
#   stderr is checked, as CPython's tests do); the start-up line is not checked.
#
# The preloaded run has PYMALLOC_VERBOSE=1, and its stderr must show the
# library's start-up line for MODE (the proof that the preload took effect).
# --static: the program is linked with libpymalloc.a; it runs once, with
# MODE, and must exit 0 and show the start-up line. With --lib LIB too, LIB
# is preloaded as well (a second copy, whose malloc the program's hides),
# with PYMALLOC_STATS=1: the start-up line and the statistics must show
# once, from the program's copy, and the preloaded copy must say it is idle.
# Exit 77 (skipped) when the program is not installed.
set -u
lib= mode= stdin=/dev/null static=0 status_only=0 require= verbose=1
envs=""
while [ $# -gt 0 ]; do
    case "$1" in
    --lib) lib=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --stdin) stdin=$2; shift 2 ;;
    --env) envs="$envs $2"; shift 2 ;;
    --static) static=1; shift ;;
    --status-only) status_only=1; shift ;;
    --no-banner) verbose=0; shift ;;
    --require) require=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "run_compare.sh: bad argument $1" >&2; exit 2 ;;
    esac
done
[ $# -gt 0 ] && [ -n "$mode" ] || { echo "run_compare.sh: missing program or --mode" >&2; exit 2; }
if ! command -v "$1" >/dev/null 2>&1; then
    echo "skipped: $1 is not installed"
    exit 77
fi
if [ -n "$require" ] && ! sh -c "$require" >/dev/null 2>&1; then
    echo "skipped: requirement not met: $require"
    exit 77
fi
# A program of another ELF class than LIB (a system program under a -m32
# build's library) cannot have it preloaded: ld.so ignores it ("wrong ELF
# class") and the program runs on glibc alone. Skipped, not failed.
elf_class() { # 1 (32-bit) or 2 (64-bit) for an ELF file, else nothing
    [ "$(od -An -tx1 -N4 "$1" 2>/dev/null | tr -d ' \n')" = 7f454c46 ] &&
        od -An -tu1 -j4 -N1 "$1" | tr -d ' \n'
}
prog=$(command -v "$1")
if [ -n "$lib" ] && [ -f "$prog" ]; then
    cl=$(elf_class "$lib") cp=$(elf_class "$prog")
    if [ -n "$cl" ] && [ -n "$cp" ] && [ "$cl" != "$cp" ]; then
        echo "skipped: $prog is ELF class $cp, $lib ELF class $cl: it cannot be preloaded"
        exit 77
    fi
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm_compare.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
banner="pymalloc [0-9.]*: mode [a-z_]* (PYMALLOC_MODE=$mode)"

if [ $static = 1 ]; then
    if [ -n "$lib" ]; then
        envs="$envs LD_PRELOAD=$lib PYMALLOC_STATS=1"
    fi
    # shellcheck disable=SC2086
    env $envs PYMALLOC_MODE="$mode" PYMALLOC_VERBOSE=1 "$@" <"$stdin" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    cat "$tmp/out"
    if [ $rc != 0 ]; then
        echo "FAIL: exit status $rc in mode $mode"; cat "$tmp/err"; exit 1
    fi
    n=$(grep -c "$banner" "$tmp/err")
    [ "$n" = 1 ] || { echo "FAIL: $n pymalloc start-up lines, not 1"; cat "$tmp/err"; exit 1; }
    if [ -n "$lib" ]; then
        n=$(grep -c "^Small block threshold" "$tmp/err")
        [ "$n" = 1 ] || { echo "FAIL: the statistics $n times, not once"; cat "$tmp/err"; exit 1; }
        grep -q "^pymalloc: this copy of libpymalloc was idle" "$tmp/err" ||
            { echo "FAIL: the preloaded copy does not say it is idle"; cat "$tmp/err"; exit 1; }
    fi
    echo "PASS: $* in mode $mode (linked${lib:+, $lib preloaded too})"
    exit 0
fi

[ -r "$lib" ] || { echo "run_compare.sh: cannot read $lib" >&2; exit 2; }
# shellcheck disable=SC2086
env $envs "$@" <"$stdin" >"$tmp/plain.out" 2>"$tmp/plain.err"
rc_plain=$?
# shellcheck disable=SC2086
env $envs LD_PRELOAD="$lib" PYMALLOC_MODE="$mode" PYMALLOC_VERBOSE=$verbose "$@" <"$stdin" \
    >"$tmp/pre.out" 2>"$tmp/pre.err"
rc_pre=$?

fail=0
if [ $verbose = 1 ] && ! grep -q "$banner" "$tmp/pre.err"; then
    echo "FAIL: the preloaded run shows no pymalloc start-up line for mode $mode"
    fail=1
fi
if [ "$rc_plain" != "$rc_pre" ]; then
    echo "FAIL: exit status $rc_pre under pymalloc ($mode), $rc_plain under glibc"
    if [ $status_only = 1 ]; then # (what each said: the end of its stdout)
        echo "--- the end of stdout under pymalloc:"; tail -n 15 "$tmp/pre.out"
        echo "--- the end of stdout under glibc:"; tail -n 15 "$tmp/plain.out"
    fi
    fail=1
fi
if [ $status_only = 0 ] && ! cmp -s "$tmp/plain.out" "$tmp/pre.out"; then
    echo "FAIL: stdout differs (glibc vs pymalloc $mode):"
    diff "$tmp/plain.out" "$tmp/pre.out" | head -20
    fail=1
fi
if [ $fail != 0 ]; then
    echo "--- stderr under pymalloc:"; head -c 4000 "$tmp/pre.err"
    echo "--- stderr under glibc:"; head -c 2000 "$tmp/plain.err"
    exit 1
fi
if [ $status_only = 1 ]; then
    tail -n 5 "$tmp/pre.out"
    echo "PASS: $* (same status $rc_pre) in mode $mode"
else
    echo "PASS: $* (status $rc_pre, $(wc -c <"$tmp/pre.out") bytes of identical output) in mode $mode"
fi
exit 0
