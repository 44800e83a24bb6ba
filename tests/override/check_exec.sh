#!/bin/sh
# tests/override/check_exec.sh - PYMALLOC_ON_ERROR=report across exec: heap
# errors counted before an exec end the new program with the summary and
# status 1, through every exec function; a child that inherits the
# environment does not take them; a clean program execs unchanged.
#   check_exec.sh MODE PROG [LIB]
# PROG is prog_exec, run with LIB (libpymalloc.so) preloaded, or without
# LIB the copy linked with libpymalloc.a. The heap errors are made in the
# debug modes only: elsewhere every case must run clean.
set -u
mode=$1 prog=$2 lib=${3:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm_exec.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
fails=0
line1="pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error (buffer overflow: 1)"
passed="$line1 before exec: passed on to the new program in PYMALLOC_ERRORS_BEFORE_EXEC (if pymalloc runs in it, it ends with exit status 1)"

fail() { echo "FAIL: $case: $*"; sed 's/^/    err| /' "$tmp/err"; sed 's/^/    out| /' "$tmp/out"; fails=$((fails + 1)); }
run() {
    case="$*"
    env PYMALLOC_MODE="$mode" PYMALLOC_ON_ERROR=report ${lib:+LD_PRELOAD="$lib"} \
        timeout 60 "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
# run as pid 1 of a new pid namespace
run_pidns() {
    case="$*"
    env PYMALLOC_MODE="$mode" PYMALLOC_ON_ERROR=report ${lib:+LD_PRELOAD="$lib"} \
        timeout 60 unshare -Urpf "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
status() { [ "$rc" = "$1" ] || fail "exit status $rc, expected $1"; }
out() { grep -qxF -- "$1" "$tmp/out" || fail "no output line: $1"; }
has() { grep -qF -- "$1" "$tmp/err" || fail "no line with: $1"; }
last() { [ "$(tail -n 1 "$tmp/err")" = "$1" ] || fail "last line is not: $1"; }
quiet() { ! grep -q "^pymalloc:" "$tmp/err" || fail "a pymalloc line in a clean run"; }

case $mode in
*debug*) errors=1 ;;
*) errors=0 ;;
esac
# In the debug modes: status 1 and the summary $1 last (and the line that
# passed errors on, with $2 = passed); elsewhere a clean, quiet run.
summed() {
    if [ $errors = 1 ]; then
        status 1
        last "$1"
        [ "${2:-}" != passed ] || has "$passed"
    else
        status 0
        quiet
    fi
}

for v in execve execv execvp execvpe execl execle execlp fexecve execveat; do
    run exec $v
    out "child ran"
    summed "$line1, 1 before exec; exit status 1" passed
done

# The exec made with every file descriptor taken: the process's start time
# cannot be read then, and the pid alone tells (before 2026-12-07 the new
# program dropped the counts, and the run ended with status 0).
run exec-emfile
out "child ran"
summed "$line1, 1 before exec; exit status 1" passed
# The same after a vfork child's exec, which kept its own start time in
# memory it shares with the parent (the parent's exec then passed 0).
run exec-emfile vfork
out "child ran"
summed "$line1, 1 before exec; exit status 1" passed

run chain
out "child ran"
summed "pymalloc: PYMALLOC_ON_ERROR=report: 2 heap errors (buffer overflow: 2), 2 before exec; exit status 1"

# Nothing to pass on: the new program's environment is the one given.
run clean-exec
status 0
out "handoff: (none)"
quiet

# The new program's children have other pids: they do not take the errors.
run fork-after
out "forked children: 0 0"
out "child ran"
summed "$line1, 1 before exec; exit status 1"

# A new program without pymalloc: the variable and the line are all there is.
run no-pymalloc /bin/sh
status 0
if [ $errors = 1 ]; then
    grep -qE "^sh got: [0-9]+\.[0-9]+:1,0,0,0,0,0,0,0$" "$tmp/out" ||
        fail "the variable is not pid.start:1,0,0,0,0,0,0,0"
    has "$passed"
else
    out "sh got: (none)"
    quiet
fi

# The new program in another mode, without PYMALLOC_ON_ERROR: it still sums
# up the errors it was given.
run other-mode
out "child ran"
summed "$line1, 1 before exec; exit status 1"

# An exec that fails: errno is the C library's, the errors stay here.
run failed-exec
out "exec failed: -1 ENOENT"
summed "$line1; exit status 1" passed

# Execs that fail, then one that does not: the line once, not at each try.
run failed-twice
out "child ran"
summed "$line1, 1 before exec; exit status 1" passed
[ "$(grep -c "before exec: passed on" "$tmp/err")" -le 1 ] || fail "the line more than once"

# A vfork child's counts are its parent's: its exec passes nothing on.
run vfork
out "handoff: (none)"
out "vfork child: 0"
summed "$line1; exit status 1"
! grep -q "before exec" "$tmp/err" || fail "the vfork child passed errors on"

# A child made without the fork handlers (vfork, or the fork system call
# as _Fork() makes one) passes on the errors it made itself: the new
# program sums them up, and the parent, clean, exits 0 (before 2026-12-06
# a raw child's error was lost: the child exited 0, and so did the run).
for kind in vfork raw; do
    run own-exec $kind
    out "child ran"
    if [ $errors = 1 ]; then
        out "own-exec child: 1"
        has "$passed"
        has "$line1, 1 before exec; exit status 1"
        [ "$(grep -c "exit status 1$" "$tmp/err")" = 1 ] || fail "not one summary line"
    else
        out "own-exec child: 0"
    fi
    status 0
    # The exec fails: the errors are the child's again; its _exit(3) keeps
    # its status, and a vfork child's are summed up at its parent's exit.
    run own-failed $kind
    out "own-exec child: 3"
    if [ $errors = 1 ] && [ $kind = vfork ]; then
        summed "$line1; exit status 1" passed
    else
        status 0
    fi
done
# The parent's own error, after a vfork child passed its own on: the
# parent's failed exec does not take the child's back (it is in memory the
# two shared).
run own-then-parent
out "own-exec child: $errors"
summed "$line1; exit status 1"

# A pid given again, after the program that was passed the errors ended,
# to a clean program that inherited the variable (from a child that program
# left behind): the errors are not its own. Pids are reused in a pid
# namespace of the test's own (unshare -Urpf), where ns_last_pid chooses.
if unshare -Urpf true 2>/dev/null; then
    run_pidns pid-reuse
    status 0
    if grep -q "^pid not reused" "$tmp/out"; then
        echo "pid-reuse skipped: $(grep "^pid not reused" "$tmp/out")"
    else
        out "child ran"
        out "pid reused: clean program's status 0"
        out "first program: $errors"
    fi
else
    echo "pid-reuse skipped: no pid namespace (unshare -Urpf)"
fi

# A fork child with its parent's pid: pid 1 of a new pid namespace forks
# into a namespace of its own. The child's exec passes its own start time
# on, not the one its parent kept (before 2026-12-07 the new program
# dropped the child's counts, and ended with status 0).
if unshare -Urpf true 2>/dev/null; then
    run_pidns pidns-fork
    status 0
    if grep -q "^no nested pid namespace" "$tmp/out"; then
        echo "pidns-fork skipped: $(grep "^no nested pid namespace" "$tmp/out")"
    else
        out "child ran"
        out "child program: $errors"
    fi
else
    echo "pidns-fork skipped: no pid namespace (unshare -Urpf)"
fi

# Counts passed on by another version of pymalloc, whose list of classes
# is shorter (an earlier one) or longer (a later one: classes are only ever
# added after the others). The list is given to prog by a shell that execs
# it, so that the pid and the start time are prog's own; prog takes the
# counts in any mode. $1: the list; then prog's arguments.
handed() {
    list=$1
    shift
    case="handed $list $*"
    env PYMALLOC_MODE="$mode" timeout 60 sh -c '
        start=$(sed "s/.*) //" /proc/$$/stat | cut -d" " -f20)
        lib=$1 list=$2
        shift 2
        exec env PYMALLOC_ERRORS_BEFORE_EXEC="$$.$start:$list" ${lib:+LD_PRELOAD="$lib"} "$@"
    ' sh "$lib" "$list" "$prog" "$@" >"$tmp/out" 2>"$tmp/err"
    rc=$?
}
handed 1,0,0,0,0,0,0 clean
out "child ran"
status 1
last "$line1, 1 before exec; exit status 1"
handed 1,0,0,0,0,0,0,0,2,3 clean
out "child ran"
status 1
later="pymalloc: PYMALLOC_ON_ERROR=report: 6 heap errors (buffer overflow: 1, of classes a later pymalloc knows: 5)"
last "$later, 6 before exec; exit status 1"
# Passed on again by an exec, in their places.
handed 1,0,0,0,0,0,0,0,2,3 clean-exec
grep -qE "^handoff: [0-9]+\.[0-9]+:1,0,0,0,0,0,0,0,2,3$" "$tmp/out" ||
    fail "the counts are not passed on as 1,0,0,0,0,0,0,0,2,3"
has "$later before exec: passed on"
status 1
last "$later, 6 before exec; exit status 1"
# A list that is not one: ignored.
for list in 1,,2 1,0,x "" 1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0; do
    handed "$list" clean
    out "child ran"
    status 0
    quiet
done

# execle's list read as glibc reads it: past a NULL first argument, the
# NULL that ends it, then envp.
run null-arg0
status 0
out "no arguments: PM_EXEC_MARK=1"
quiet

[ $fails = 0 ] && echo "exec cases ok in $mode${lib:+ (preloaded)}"
exit $((fails > 0))
