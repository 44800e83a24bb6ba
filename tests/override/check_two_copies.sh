#!/bin/sh
# check_two_copies.sh LIB PROG MODE - prog_two_copies (linked with a static
# copy of the library) run with LIB preloaded in debug mode MODE and
# PYMALLOC_ON_ERROR=report: every damaged block of either copy is reported,
# and the process never ends with status 0 after one. Each copy sums up its
# own errors at exit (with a line saying which copy it is); an _exit(0) or
# quick_exit(0), which reaches one copy's override only, sums up the
# other's count too, and an exec passes the errors of both on to the new
# program. Before: the first copy's work at exit ended the process
# (_exit), and the other copy's check never ran (a damaged live block of the
# preloaded copy went unreported), and an _exit(0) after errors of the
# program's copy only ended the process with status 0, and so did an exec
# of a program that exits 0 (the program's copy's errors were not passed on).
lib=$1 prog=$2 mode=$3
fail=0
run() { # who how damage -> $out, $rc
  out=$(LD_PRELOAD=$lib PYMALLOC_MODE=$mode PYMALLOC_ON_ERROR=report "$prog" "$1" "$2" "$3" 2>&1)
  rc=$?
}
expect() { # description grep-pattern
  if ! printf '%s\n' "$out" | grep -q -- "$2"; then
    echo "FAIL: $1: no line matching '$2' in:"; printf '%s\n' "$out"; fail=1
  fi
}
per_copy() { # what program-copy-pattern preloaded-copy-pattern, for $who
  case $who in program|both) expect "$what: the program's copy's $1" "$2" ;; esac
  case $who in preload|both) expect "$what: the preloaded copy's $1" "$3" ;; esac
}
for how in exit _exit quick_exit exec; do
  for damage in freed live; do
    # an _exit, quick_exit or exec skips the check at exit: no live block there
    [ "$damage" = live ] && [ "$how" != exit ] && continue
    for who in none program preload both; do
      run $who $how $damage
      what="$who $how $damage"
      expect "$what: the program ran" "^prog_two_copies $who $how $damage\$"
      if [ $who = none ]; then
        if [ $rc -ne 0 ] || printf '%s\n' "$out" | grep -q 'heap error'; then
          echo "FAIL: $what: status $rc, or a summary, without errors:"; printf '%s\n' "$out"; fail=1
        fi
        continue
      fi
      if [ $rc -ne 1 ]; then
        echo "FAIL: $what: exit status $rc, not 1:"; printf '%s\n' "$out"; fail=1
      fi
      at=pm_mem_free; [ $damage = live ] && at=exit
      per_copy "block" "^pymalloc: $at: buffer overflow: 1 byte written past the end of a 24-byte block" \
        "^pymalloc: $at: buffer overflow: 1 byte written past the end of a 40-byte block"
      if [ $how = exec ]; then
        errors="1 heap error (buffer overflow: 1)"
        [ $who = both ] && errors="2 heap errors (buffer overflow: 2)"
        expect "$what: the errors of both copies passed on" \
          "^pymalloc: PYMALLOC_ON_ERROR=report: $errors before exec: passed on"
      fi
      [ $how = exit ] && per_copy "summary" "the lines above are of the copy in the program\$" \
        "the lines above are of the copy in .*libpymalloc"
    done
  done
done
[ $fail = 0 ] && echo "check_two_copies $mode: all cases passed"
exit $fail
