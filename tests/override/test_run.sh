#!/bin/sh
# tests/override/test_run.sh - the pymalloc-run wrapper.
#   test_run.sh PATH/TO/pymalloc-run PATH/TO/libpymalloc_api.so [PATH/TO/LINKED_TREE_RUN]
# LINKED_TREE_RUN: a copy of the wrapper built to know its build tree by a
# path through a symbolic link (tests/override/CMakeLists.txt).
set -u
run=$1 api=$2 linked_tree=${3-}
fails=0
# The programs run under the wrapper are the system's (sh, true): a build
# of another ELF class (-m32 on x86-64) cannot be preloaded into them.
elf_class() { od -An -tu1 -j4 -N1 "$1" 2>/dev/null | tr -d ' \n'; }
if [ "$(elf_class "$api")" != "$(elf_class "$(command -v sh)")" ]; then
    echo "skipped: $api and sh are of different ELF classes"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm_run.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT

check() { # check NAME EXPECTED_STATUS ACTUAL_STATUS
    if [ "$2" != "$3" ]; then
        echo "FAIL: $1: status $3, expected $2"; cat "$tmp/out" "$tmp/err"; fails=$((fails + 1))
    else
        echo "ok: $1"
    fi
}
has() { # has NAME FILE TEXT
    if ! grep -q -- "$3" "$2"; then
        echo "FAIL: $1: '$3' not in:"; cat "$2"; fails=$((fails + 1))
    fi
}

"$run" --help >"$tmp/out" 2>"$tmp/err"; check "--help" 0 $?
has "--help" "$tmp/out" "usage: pymalloc-run"
"$run" --version >"$tmp/out" 2>"$tmp/err"; check "--version" 0 $?
has "--version" "$tmp/out" "pymalloc-run [0-9]"

"$run" --list-modes >"$tmp/modes" 2>"$tmp/err"; check "--list-modes" 0 $?
has "--list-modes" "$tmp/modes" "^malloc$"
has "--list-modes" "$tmp/modes" "^default$"

# Output that cannot be written (a full disk) is an error, not an empty
# answer with status 0.
if [ -w /dev/full ]; then
    for opt in --help --list-modes --version; do
        "$run" $opt >/dev/full 2>"$tmp/err"; check "$opt to a full disk" 1 $?
        has "$opt to a full disk" "$tmp/err" "pymalloc-run: write error: No space left on device"
    done
else
    echo "skipped: output to a full disk (no /dev/full)"
fi

"$run" --mode nonsense -- true >"$tmp/out" 2>"$tmp/err"; check "bad mode" 2 $?
has "bad mode" "$tmp/err" "unknown mode 'nonsense' (valid: default, malloc"
PYMALLOC_MODE=Malloc "$run" true >"$tmp/out" 2>"$tmp/err"; check "bad inherited mode" 2 $?
has "bad inherited mode" "$tmp/err" "unknown mode 'Malloc'"
# A bad value with a newline and an escape sequence: shown escaped, one line.
PYMALLOC_MODE="$(printf 'x\ny\033[31m')" "$run" true >"$tmp/out" 2>"$tmp/err"; check "escaped mode" 2 $?
has "escaped mode" "$tmp/err" "unknown mode 'x\\\\ny\\\\x1b\\[31m' (valid: default"
if [ "$(wc -l <"$tmp/err")" != 1 ]; then
    echo "FAIL: escaped mode: not one line:"; cat "$tmp/err"; fails=$((fails + 1))
fi
"$run" --mode >"$tmp/out" 2>"$tmp/err"; check "--mode without a name" 2 $?
"$run" --frobnicate true >"$tmp/out" 2>"$tmp/err"; check "unknown option" 2 $?
has "unknown option" "$tmp/err" "unknown option '--frobnicate'"
"$run" --mode malloc >"$tmp/out" 2>"$tmp/err"; check "no program" 2 $?
has "no program" "$tmp/err" "no program given"

"$run" -- pm-no-such-program-here >"$tmp/out" 2>"$tmp/err"; check "missing program" 127 $?
has "missing program" "$tmp/err" "cannot run 'pm-no-such-program-here': command not found"
"$run" /nonexistent/prog >"$tmp/out" 2>"$tmp/err"; check "missing path" 127 $?
has "missing path" "$tmp/err" "No such file or directory"
: >"$tmp/notexec"
"$run" "$tmp/notexec" >"$tmp/out" 2>"$tmp/err"; check "not executable" 126 $?
has "not executable" "$tmp/err" "Permission denied"
# A script whose "#!" interpreter is missing: exec says ENOENT, but it is
# the interpreter that is not found, not the script (the message said "No
# such file or directory" of the script); also when found through PATH.
mkdir "$tmp/shebang"
printf '#!/nonexistent/pm-interp -x\necho ran\n' >"$tmp/shebang/badinterp"
chmod +x "$tmp/shebang/badinterp"
"$run" "$tmp/shebang/badinterp" >"$tmp/out" 2>"$tmp/err"; check "missing interpreter" 127 $?
has "missing interpreter" "$tmp/err" "cannot run '$tmp/shebang/badinterp': its interpreter /nonexistent/pm-interp: No such file or directory"
PATH="$tmp/shebang:$PATH" "$run" badinterp >"$tmp/out" 2>"$tmp/err"
check "missing interpreter through PATH" 127 $?
has "missing interpreter through PATH" "$tmp/err" "cannot run 'badinterp': its interpreter /nonexistent/pm-interp: No such file or directory"
# ... the interpreter a script's interpreter names (a script in turn), and
# one whose name ends with the '\r' of a DOS line end, which the kernel
# keeps in the name (before 2026-12-06 the wrapper cut it there, found
# /bin/sh, and said "No such file or directory" of the script itself).
printf '#!%s\necho ran\n' "$tmp/shebang/badinterp" >"$tmp/shebang/nestedbad"
chmod +x "$tmp/shebang/nestedbad"
"$run" "$tmp/shebang/nestedbad" >"$tmp/out" 2>"$tmp/err"; check "missing interpreter's interpreter" 127 $?
has "missing interpreter's interpreter" "$tmp/err" "cannot run '$tmp/shebang/nestedbad': its interpreter $tmp/shebang/badinterp: its interpreter /nonexistent/pm-interp: No such file or directory$"
printf '#!/bin/sh\r\necho ran\r\n' >"$tmp/shebang/crlf"
chmod +x "$tmp/shebang/crlf"
"$run" "$tmp/shebang/crlf" >"$tmp/out" 2>"$tmp/err"; check "DOS line end" 127 $?
has "DOS line end" "$tmp/err" 'its interpreter /bin/sh\\x0d: No such file or directory (a "#!" line that ends with \\x0d\\n: a DOS line end)$'
PYMALLOC_LIBRARY=/nonexistent/libpymalloc.so "$run" true >"$tmp/out" 2>"$tmp/err"
check "missing library" 2 $?
has "missing library" "$tmp/err" "cannot read the library /nonexistent/libpymalloc.so"
# A library that ld.so cannot preload (a directory, a file that is not an
# ELF shared object) is refused: ld.so would skip it with a message and run
# the program without pymalloc, with the program's own status.
mkdir "$tmp/libdir"
PYMALLOC_LIBRARY="$tmp/libdir" "$run" true >"$tmp/out" 2>"$tmp/err"
check "library is a directory" 2 $?
has "library is a directory" "$tmp/err" "cannot preload $tmp/libdir: not an ELF shared library"
printf '!<arch>\n' >"$tmp/libpymalloc.a"
PYMALLOC_LIBRARY="$tmp/libpymalloc.a" "$run" true >"$tmp/out" 2>"$tmp/err"
check "library not ELF" 2 $?
has "library not ELF" "$tmp/err" "cannot preload $tmp/libpymalloc.a: not an ELF shared library"
# A shared object without the override: ld.so preloads it, but the
# program's malloc stays the C library's. The API-only library (the name
# is one letter off), and the C library itself (malloc, but not pymalloc),
# are refused; the program does not run.
PYMALLOC_LIBRARY="$api" "$run" -- sh -c 'echo ran' >"$tmp/out" 2>"$tmp/err"
check "API-only library" 2 $?
has "API-only library" "$tmp/err" "cannot preload .*libpymalloc_api\.so[.0-9]*: it does not export malloc, so the program would run without pymalloc"
has "API-only library" "$tmp/err" "set PYMALLOC_LIBRARY to libpymalloc\.so"
[ -s "$tmp/out" ] && { echo "FAIL: API-only library: the program ran"; fails=$((fails + 1)); }
libc=$(ldd "$run" 2>/dev/null | sed -n 's/^[[:space:]]*libc\.so\.6 => \([^ ]*\) .*/\1/p')
if [ -n "$libc" ]; then
    PYMALLOC_LIBRARY="$libc" "$run" -- true >"$tmp/out" 2>"$tmp/err"
    check "library without pm_version" 2 $?
    has "library without pm_version" "$tmp/err" "cannot preload $libc: it exports malloc but not pm_version"
else
    echo "skipped: library without pm_version (no libc.so.6 in ldd's output)"
fi

# A relative PYMALLOC_LIBRARY is preloaded by its absolute path (as a bare
# name, ld.so would search the library path; a relative path would be lost
# by a child started from another directory).
lib=$("$run" --verbose -- true 2>&1 | sed -n 's/^[^ ]*: LD_PRELOAD=\([^ ]*\) .*/\1/p')
[ -n "$lib" ] || { echo "FAIL: no LD_PRELOAD in the verbose line"; fails=$((fails + 1)); }
(cd "$(dirname "$lib")" && PYMALLOC_LIBRARY="$(basename "$lib")" "$run" -- \
    sh -c 'cd / && echo "$LD_PRELOAD"') >"$tmp/out" 2>"$tmp/err"
check "relative library" 0 $?
has "relative library" "$tmp/out" "$(realpath "$lib")"

# The program's status, and its death by a signal, come through unchanged.
"$run" -- sh -c 'exit 7' >"$tmp/out" 2>"$tmp/err"; check "exit status" 7 $?
"$run" -- sh -c 'kill -TERM $$' >"$tmp/out" 2>"$tmp/err"; check "signal" 143 $?

# Every mode the library lists: set, preloaded, announced by the library.
while read -r m; do
    "$run" --mode "$m" --verbose -- sh -c 'echo "$PYMALLOC_MODE|$LD_PRELOAD"' \
        >"$tmp/out" 2>"$tmp/err"
    check "mode $m" 0 $?
    has "mode $m" "$tmp/out" "^$m|/.*libpymalloc\.so"
    has "mode $m" "$tmp/err" "pymalloc [0-9.]*: mode [a-z_]* (PYMALLOC_MODE=$m)"
    has "mode $m" "$tmp/err" "pymalloc-run: LD_PRELOAD="
done <"$tmp/modes"
# Without --mode or PYMALLOC_MODE the verbose line says the variable is
# unset, and the program does not get one.
(unset PYMALLOC_MODE; "$run" --verbose -- sh -c 'echo "mode=${PYMALLOC_MODE-unset}"') \
    >"$tmp/out" 2>"$tmp/err"
check "no mode" 0 $?
has "no mode" "$tmp/out" "^mode=unset$"
has "no mode" "$tmp/err" "(PYMALLOC_MODE unset: mode default)"
has "no mode" "$tmp/err" "(PYMALLOC_MODE=<unset>)"
"$run" --mode=malloc -- sh -c 'echo "$PYMALLOC_MODE"' >"$tmp/out" 2>"$tmp/err"
check "--mode=M" 0 $?
has "--mode=M" "$tmp/out" "^malloc$"

"$run" --stats -- sh -c 'echo "stats=$PYMALLOC_STATS"' >"$tmp/out" 2>"$tmp/err"
check "--stats" 0 $?
has "--stats" "$tmp/out" "^stats=1$"

# An existing LD_PRELOAD is kept, after ours.
LD_PRELOAD=libm.so.6 "$run" -- sh -c 'echo "$LD_PRELOAD"' >"$tmp/out" 2>"$tmp/err"
check "LD_PRELOAD kept" 0 $?
has "LD_PRELOAD kept" "$tmp/out" "libpymalloc\.so[.0-9]*:libm\.so\.6$"

# Two LD_PRELOAD entries in the environment (a program that builds one by
# hand): ld.so takes the last, which the wrapper keeps after its library,
# and the program gets one entry (before 2026-12-06 the wrapper replaced
# the first, ld.so took the second, and pymalloc was not loaded: no banner).
if [ -n "${PM_T_ENVEXEC:-}" ]; then
    sh=$(command -v sh)
    "$PM_T_ENVEXEC" PATH="$PATH" LD_PRELOAD=first.so LD_PRELOAD=libm.so.6 -- "$run" --verbose -- \
        "$sh" -c 'env | grep -c "^LD_PRELOAD="; echo "$LD_PRELOAD"' >"$tmp/out" 2>"$tmp/err"
    check "LD_PRELOAD twice" 0 $?
    has "LD_PRELOAD twice" "$tmp/err" "^pymalloc [0-9][^ ]*: mode "
    has "LD_PRELOAD twice" "$tmp/out" "^1$"
    has "LD_PRELOAD twice" "$tmp/out" "libpymalloc\.so[.0-9]*:libm\.so\.6$"
fi

# However long, the inherited LD_PRELOAD is kept whole (it was cut at 8 KB:
# ld.so skipped the library whose path was cut and those after it).
long=libm.so.6
for _ in $(seq 1 1000); do long="$long:libm.so.6"; done
LD_PRELOAD=$long "$run" -- sh -c 'printf "%s\n" "${LD_PRELOAD#*:}"' >"$tmp/out" 2>"$tmp/err"
check "long LD_PRELOAD kept" 0 $?
if [ "$(cat "$tmp/out")" != "$long" ]; then
    echo "FAIL: long LD_PRELOAD kept: the program's LD_PRELOAD is not pymalloc's then the ${#long} bytes inherited"
    head -c 300 "$tmp/err"; fails=$((fails + 1))
fi

# Programs ld.so would run without the library are refused (status 2, the
# reason named), never run as if under pymalloc: statically linked ones
# (ld.so does not run for them), ones of another ELF class or machine (ld.so
# skips the library with a message and runs them anyway), and set-user-ID,
# set-group-ID or capability programs in secure execution (ld.so ignores
# LD_PRELOAD paths with a slash there).
refused() { # refused NAME REASON PROGRAM...
    name=$1 reason=$2; shift 2
    "$run" --mode debug -- "$@" >"$tmp/out" 2>"$tmp/err"; check "$name" 2 $?
    has "$name" "$tmp/err" "^pymalloc-run: cannot run .* under pymalloc: $reason, so it would run without pymalloc$"
    if [ -s "$tmp/out" ]; then
        echo "FAIL: $name: the program ran:"; cat "$tmp/out"; fails=$((fails + 1))
    fi
}
for p in ${PM_T_STATIC_PROGS-}; do
    "$p" >"$tmp/out" 2>"$tmp/err"; check "$(basename "$p") runs" 0 $?
    refused "$(basename "$p")" "it is statically linked (ld\.so does not run for it)" "$p"
done
[ -n "${PM_T_STATIC_PROGS-}" ] || echo "skipped: statically linked programs (no static C library)"
# ... also found through PATH, where the refusal names the file found
mkdir "$tmp/bin"
for p in ${PM_T_STATIC_PROGS-}; do
    cp "$p" "$tmp/bin/static_prog"
    PATH="$tmp/bin:$PATH" "$run" -- static_prog >"$tmp/out" 2>"$tmp/err"; check "static through PATH" 2 $?
    has "static through PATH" "$tmp/err" "cannot run $tmp/bin/static_prog under pymalloc"
    break
done
# ... also as the "#!" interpreter of a script (which was run, without
# pymalloc: the script was not looked into), at one remove too
for p in ${PM_T_STATIC_PROGS-}; do
    printf '#!%s\n' "$p" >"$tmp/bin/static_script"; chmod +x "$tmp/bin/static_script"
    refused "script run by a static program" \
        "it is a script run by $p, and it is statically linked (ld\.so does not run for it)" \
        "$tmp/bin/static_script"
    printf '#!%s\n' "$tmp/bin/static_script" >"$tmp/bin/static_script2"
    chmod +x "$tmp/bin/static_script2"
    refused "script run by a script run by a static program" \
        "it is a script run by $tmp/bin/static_script, and it is a script run by $p, and it is statically linked (ld\.so does not run for it)" \
        "$tmp/bin/static_script2"
    # Five scripts deep, as Linux runs them (before 2026-12-06 the wrapper
    # looked through 4, and the fifth's static interpreter ran the chain).
    for k in 3 4 5; do
        printf '#!%s\n' "$tmp/bin/static_script$((k - 1))" >"$tmp/bin/static_script$k"
        chmod +x "$tmp/bin/static_script$k"
    done
    refused "five scripts deep" \
        "it is a script run by $tmp/bin/static_script4, .*, and it is a script run by $p, and it is statically linked (ld\.so does not run for it)" \
        "$tmp/bin/static_script5"
    break
done
# Another ELF class, another machine: a copy of true with byte 4 (EI_CLASS)
# or bytes 18-19 (e_machine) changed; refused before it would be run.
true_prog=
for d in /usr/bin /bin; do [ -x "$d/true" ] && true_prog=$d/true && break; done
case $(elf_class "$true_prog") in 1) other=2 bits=64;; *) other=1 bits=32;; esac
cp "$true_prog" "$tmp/bin/other_class"
printf "\\$(printf %o "$other")" | dd of="$tmp/bin/other_class" bs=1 seek=4 conv=notrunc 2>/dev/null
refused "another ELF class" "it is a $bits-bit program and the library a [0-9]*-bit one" "$tmp/bin/other_class"
cp "$true_prog" "$tmp/bin/other_machine"
printf '\377\177' | dd of="$tmp/bin/other_machine" bs=1 seek=18 conv=notrunc 2>/dev/null
refused "another machine" "it is built for another machine (ELF machine [0-9]*, the library's [0-9]*)" \
    "$tmp/bin/other_machine"
# Not refused: a script, the program's own dynamic loader run as a program
# (which honours LD_PRELOAD: the library's banner shows), a set-user-ID
# program of the user who runs it.
printf '#!/bin/sh\necho script ran\n' >"$tmp/bin/script"; chmod +x "$tmp/bin/script"
"$run" -- "$tmp/bin/script" >"$tmp/out" 2>"$tmp/err"; check "script" 0 $?
has "script" "$tmp/out" "^script ran$"
# A FIFO named as the program is not opened to be looked into (the open
# waited for a writer): exec refuses it at once.
if mkfifo "$tmp/bin/fifo" 2>/dev/null && chmod +x "$tmp/bin/fifo"; then
    timeout 20 "$run" -- "$tmp/bin/fifo" >"$tmp/out" 2>"$tmp/err"; check "FIFO as the program" 126 $?
    has "FIFO as the program" "$tmp/err" "cannot run '$tmp/bin/fifo': Permission denied"
fi
loader=$(readelf -l "$true_prog" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)]$/\1/p')
if [ -n "$loader" ] && [ -x "$loader" ]; then
    "$run" --verbose -- "$loader" "$true_prog" >"$tmp/out" 2>"$tmp/err"; check "dynamic loader as the program" 0 $?
    has "dynamic loader as the program" "$tmp/err" "^pymalloc [0-9.]*: mode "
    # ... but not when the program it runs is statically linked (it ran
    # without pymalloc before 2026-12-06), after ld.so's options too.
    for p in ${PM_T_STATIC_PROGS-}; do
        refused "static program run by the dynamic loader" \
            "it is run by the dynamic loader, and it is statically linked (ld\.so does not run for it)" \
            "$loader" "$p"
        refused "static program run by the dynamic loader, with options" \
            "it is run by the dynamic loader, and it is statically linked (ld\.so does not run for it)" \
            "$loader" --argv0 x --inhibit-cache "$p"
        break
    done
else
    echo "skipped: the dynamic loader as the program (no readelf, or no loader found)"
fi
cp "$true_prog" "$tmp/bin/own_suid"; chmod u+s "$tmp/bin/own_suid"
"$run" --verbose -- "$tmp/bin/own_suid" >"$tmp/out" 2>"$tmp/err"; check "own set-user-ID program" 0 $?
has "own set-user-ID program" "$tmp/err" "^pymalloc [0-9.]*: mode "
# Set-user-ID and set-group-ID programs of another user or group: root only
# can make them (and the directory must not be on a nosuid mount).
other_user=$(id -u nobody 2>/dev/null) other_group=$(getent group nogroup | cut -d: -f3)
if [ "$(id -u)" = 0 ] && [ -n "$other_user" ] && [ -n "$other_group" ] &&
    chmod 755 "$tmp" "$tmp/bin" && cp "$true_prog" "$tmp/bin/suid" && chown nobody "$tmp/bin/suid" &&
    chmod u+s "$tmp/bin/suid" && cp "$true_prog" "$tmp/bin/sgid" && chgrp nogroup "$tmp/bin/sgid" &&
    chmod g+s "$tmp/bin/sgid" && ! findmnt -n -o OPTIONS -T "$tmp" 2>/dev/null | grep -q nosuid; then
    refused "set-user-ID" "it is set-user-ID: ld.so ignores LD_PRELOAD in it" "$tmp/bin/suid"
    refused "set-group-ID" "it is set-group-ID: ld.so ignores LD_PRELOAD in it" "$tmp/bin/sgid"
    # File capabilities: secure execution for a user other than root.
    # (not where that user cannot reach the wrapper: a build tree in a
    # private directory)
    if command -v setcap >/dev/null && command -v setpriv >/dev/null &&
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$run" -- "$true_prog" >/dev/null 2>&1 &&
        cp "$true_prog" "$tmp/bin/cap" && setcap cap_net_raw+ep "$tmp/bin/cap" 2>/dev/null; then
        "$run" -- "$tmp/bin/cap" >"$tmp/out" 2>"$tmp/err"; check "capabilities, run by root" 0 $?
        setpriv --reuid=nobody --regid=nogroup --clear-groups \
            "$run" -- "$tmp/bin/cap" >"$tmp/out" 2>"$tmp/err"
        check "capabilities, run by another user" 2 $?
        has "capabilities, run by another user" "$tmp/err" "it has file capabilities: ld.so ignores LD_PRELOAD in it"
    else
        echo "skipped: file capabilities (no setcap or setpriv, the wrapper out of nobody's reach, or setcap failed)"
    fi
else
    echo "skipped: set-user-ID and set-group-ID programs of another user (not root, no nobody/nogroup, or nosuid)"
fi

# A build tree known by a path through a symbolic link (configured as
# /link/build): the wrapper, whose own path /proc/self/exe gives resolved,
# is still the build tree's and preloads its library (it looked for an
# installed one next to itself and stopped with status 2).
if [ -n "$linked_tree" ]; then
    (unset PYMALLOC_LIBRARY; "$linked_tree" --verbose -- sh -c 'echo "$LD_PRELOAD"') \
        >"$tmp/out" 2>"$tmp/err"
    check "build tree through a symbolic link" 0 $?
    has "build tree through a symbolic link" "$tmp/out" "^/.*libpymalloc\.so[.0-9]*$"
    has "build tree through a symbolic link" "$tmp/err" "pymalloc [0-9.]*: mode "
fi

[ $fails = 0 ] && echo "all pymalloc-run checks passed"
[ $fails = 0 ]
