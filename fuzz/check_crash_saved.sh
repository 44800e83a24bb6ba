#!/usr/bin/env bash
# fuzz/check_crash_saved.sh - a test of the fuzz harness itself: an oracle
# failure under libFuzzer must be reported as libFuzzer's "deadly signal"
# and the input saved as a crash file, which the replay then fails on too.
#
#   check_crash_saved.sh FUZZ_BINARY REPLAY_BINARY CORPUS MODE
#
# PM_FUZZ_SELFTEST_FAIL=1 makes every input fail the oracle (fuzz.h).
# This failed in the debug modes: the debug hooks' SIGABRT handler, set
# in LLVMFuzzerInitialize, kept libFuzzer from installing its own, and
# the oracle's abort() ended the process with no crash file.
set -u
fuzz=$1 replay=$2 corpus=$3 mode=$4
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pm-crash-saved.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/work" "$tmp/crashes"
PM_FUZZ_SELFTEST_FAIL=1 PYMALLOC_MODE=$mode "$fuzz" -runs=1 \
  -artifact_prefix="$tmp/crashes/" "$tmp/work" "$corpus" >"$tmp/out" 2>&1
rc=$?
fail() { echo "FAIL ($mode): $*"; sed 's/^/  | /' "$tmp/out" | tail -20; exit 1; }
[ "$rc" -ne 0 ] || fail "the fuzzer exited 0 although every input fails"
grep -q "fuzz oracle: .*PM_FUZZ_SELFTEST_FAIL" "$tmp/out" || fail "no oracle line"
grep -q "libFuzzer: deadly signal" "$tmp/out" || fail "libFuzzer did not see the abort"
crash=$(ls "$tmp/crashes"/crash-* 2>/dev/null | head -1)
[ -n "$crash" ] || fail "no crash file saved"
if PM_FUZZ_SELFTEST_FAIL=1 "$replay" "$crash" >"$tmp/out" 2>&1; then
  fail "the replay passed the saved crash"
fi
echo "ok ($mode): oracle failure saved as $(basename "$crash") and replayed"
