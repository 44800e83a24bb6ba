#!/bin/sh
# tests/override/check_stderr_closed.sh - a program started with its stderr
# closed (2>&-): the file it opens next gets descriptor 2, and pymalloc's
# output (PYMALLOC_STATS's table, reports, report mode's summary) must not
# land in it (it did: a data file got the pool statistics appended); the
# exit status tells. The program's descriptors stay as it has them.
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

# A file the program makes its stderr itself (dup2 onto 2) gets nothing
# either (pymalloc cannot tell it from a data file): the status tells.
PYMALLOC_ON_ERROR=report "$run" --mode debug -- "$prog" log "$tmp/data" 2>&-
check "stderr the program made" 1 $?
only_data "stderr the program made"

# The program's descriptors are its own: no /dev/null put at 2 for it (its
# next file is still descriptor 2).
"$run" --mode pymalloc -- "$prog" fd "$tmp/data" 2>&- >"$tmp/out"
check "descriptor 2 left to the program" 0 $?
[ "$(cat "$tmp/out")" = "descriptor 2" ] || {
    echo "FAIL: descriptor 2 left to the program: $(cat "$tmp/out")"; fails=$((fails + 1)); }

# With stderr open, nothing changes: the table on stderr.
"$run" --mode pymalloc --stats -- "$prog" clean "$tmp/data" 2>"$tmp/err"
check "statistics, stderr open" 0 $?
only_data "statistics, stderr open"
grep -q "^Small block threshold" "$tmp/err" || {
    echo "FAIL: statistics, stderr open: no table on stderr"; fails=$((fails + 1)); }

[ $fails = 0 ] && echo "all stderr-closed checks passed"
[ $fails = 0 ]
