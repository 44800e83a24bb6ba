#!/bin/sh
# tests/override/check_stderr_closed.sh - a program started with its stderr
# closed (2>&-): the file it opens next gets descriptor 2, and pymalloc's
# output (PYMALLOC_STATS's table, reports, report mode's summary) must not
# land in it (it did: a data file got the pool statistics appended). A file
# the program makes its stderr itself (dup2 onto 2) gets the reports.
#   check_stderr_closed.sh PATH/TO/pymalloc-run PATH/TO/prog_stderr_closed
set -u
run=$1 prog=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm_stderr_closed.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
fails=0
data="the program's data"

check() { # check NAME EXPECTED_STATUS ACTUAL_STATUS
    if [ "$2" != "$3" ]; then
        echo "FAIL: $1: status $3, expected $2"; fails=$((fails + 1))
    else
        echo "ok: $1"
    fi
}
only_data() { # only_data NAME: the data file holds the program's data alone
    if [ "$(cat "$tmp/data")" != "$data" ]; then
        echo "FAIL: $1: the program's file holds more than its data:"
        head -n 5 "$tmp/data" | sed 's/^/    | /'; fails=$((fails + 1))
    fi
}

"$run" --mode pymalloc --stats -- "$prog" clean "$tmp/data" 2>&-
check "statistics, stderr closed" 0 $?
only_data "statistics, stderr closed"

PYMALLOC_ON_ERROR=report "$run" --mode debug -- "$prog" overflow "$tmp/data" 2>&-
check "report mode, stderr closed" 1 $?
only_data "report mode, stderr closed"

"$run" --mode debug -- "$prog" overflow "$tmp/data" 2>&-
check "abort, stderr closed" 134 $?
only_data "abort, stderr closed"

# The program's own stderr, made so on purpose, gets the report.
PYMALLOC_ON_ERROR=report "$run" --mode debug -- "$prog" log "$tmp/data" 2>&-
check "stderr the program made" 1 $?
if ! grep -q "^pymalloc: free: buffer overflow: 1 byte written past the end of a 24-byte block" "$tmp/data" ||
    ! grep -q "^pymalloc: PYMALLOC_ON_ERROR=report: 1 heap error (buffer overflow: 1); exit status 1$" "$tmp/data"; then
    echo "FAIL: stderr the program made: the report is not in it:"
    sed 's/^/    | /' "$tmp/data"; fails=$((fails + 1))
fi

# With stderr open, nothing changes: the table on stderr.
"$run" --mode pymalloc --stats -- "$prog" clean "$tmp/data" 2>"$tmp/err"
check "statistics, stderr open" 0 $?
only_data "statistics, stderr open"
grep -q "^Small block threshold" "$tmp/err" || {
    echo "FAIL: statistics, stderr open: no table on stderr"; fails=$((fails + 1)); }

[ $fails = 0 ] && echo "all stderr-closed checks passed"
[ $fails = 0 ]
