#!/bin/sh
# tests/override/test_exports.sh - the libraries export exactly what they
# should: the API-only library the pm_* functions of include/pymalloc.h, the
# override those plus the malloc family (with glibc's __libc_* names and
# cfree), malloc_trim, _exit and _Exit, and
# the exec family (src/exec.c); and neither calls its own exported pm_*
# functions through a relocation.
#   test_exports.sh HEADER LIBPYMALLOC_API.so LIBPYMALLOC.so
set -u
header=$1 api=$2 override=$3
command -v nm >/dev/null || { echo "skipped: no nm"; exit 77; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm_exports.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT
grep -o '^PM_API [^(]*(' "$header" | sed 's/[*(]/ /g' | awk '{print $NF}' | sort >"$tmp/pm"
printf '%s\n' malloc free calloc realloc reallocarray posix_memalign aligned_alloc \
    memalign valloc pvalloc malloc_usable_size malloc_trim _exit _Exit \
    __libc_malloc __libc_free __libc_calloc __libc_realloc __libc_memalign \
    __libc_valloc __libc_pvalloc cfree \
    execve execv execvp execvpe execl execle execlp fexecve execveat sigaction signal bsd_signal ssignal sysv_signal __sysv_signal | sort >"$tmp/family"
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
# The libraries' own calls to their pm_* functions bind inside the library:
# no relocation names one. A program linked with libpymalloc.a or
# libpymalloc_api.a exports its pm_* functions, and a preloaded or dlopened
# copy whose calls went through such a relocation reached that program's
# copy (its malloc_trim trimmed the program's pools, its first malloc set
# the program's copy up).
if command -v readelf >/dev/null; then
    for lib in "$api" "$override"; do
        rel=$(readelf -rW "$lib" | awk '$5 ~ /^pm_/ {print $5}' | sort -u)
        if [ -n "$rel" ]; then
            echo "FAIL: $lib reaches its own pm_* functions through relocations:" $rel; fail=1
        fi
    done
fi
[ $fail = 0 ] && echo "exports ok: $(wc -l <"$tmp/pm") pm_* functions, plus the malloc family in the override"
exit $fail
