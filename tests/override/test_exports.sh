#!/bin/sh
# tests/override/test_exports.sh - the libraries export exactly what they
# should: the API-only library the pm_* functions of include/pymalloc.h, the
# override those plus the malloc family, malloc_trim, _exit and _Exit, and
# the exec family (src/exec.c).
#   test_exports.sh HEADER LIBPYMALLOC_API.so LIBPYMALLOC.so
set -u
header=$1 api=$2 override=$3
command -v nm >/dev/null || { echo "skipped: no nm"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm_exports.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
grep -o '^PM_API [^(]*(' "$header" | sed 's/[*(]/ /g' | awk '{print $NF}' | sort >"$tmp/pm"
printf '%s\n' malloc free calloc realloc reallocarray posix_memalign aligned_alloc \
    memalign valloc pvalloc malloc_usable_size malloc_trim _exit _Exit \
    execve execv execvp execvpe execl execle execlp fexecve execveat sigaction signal | sort >"$tmp/family"
sort "$tmp/pm" "$tmp/family" >"$tmp/override.want"
nm -D --defined-only "$api" | awk '$2 ~ /^[TWDBRV]$/ {print $3}' | sort >"$tmp/api.got"
nm -D --defined-only "$override" | awk '$2 ~ /^[TWDBRV]$/ {print $3}' | sort >"$tmp/override.got"
fail=0
[ -s "$tmp/pm" ] || { echo "FAIL: no PM_API declarations found in $header"; fail=1; }
if ! cmp -s "$tmp/pm" "$tmp/api.got"; then
    echo "FAIL: $api exports (>) / lacks (<):"; diff "$tmp/pm" "$tmp/api.got"; fail=1
fi
if ! cmp -s "$tmp/override.want" "$tmp/override.got"; then
    echo "FAIL: $override exports (>) / lacks (<):"; diff "$tmp/override.want" "$tmp/override.got"; fail=1
fi
[ $fail = 0 ] && echo "exports ok: $(wc -l <"$tmp/pm") pm_* functions, plus the malloc family in the override"
exit $fail
