#!/bin/sh
# tests/override/cc_workload.sh CC CXX SRCDIR - the build's own compilers
# under the preload: the C compiler driver compiles and links
# examples/wordfreq.c (the driver, cc1, as, collect2 and ld, each a process
# that inherits the preload), and the C++ compiler compiles
# tests/override/cxx_workload.cpp at -O2 (cc1plus parsing the standard
# library's headers: millions of allocations). Prints the checksum of each
# output file, which must be the same under glibc and in every mode (the
# outputs hold no time or file name). CXX may be empty (no C++ compiler).
set -eu
cc=$1 cxx=$2 src=$3
o=$(mktemp "${TMPDIR:-/tmp}/pm_cc.XXXXXX")
trap 'rm -f "$o"' EXIT
"$cc" -O2 -o "$o" "$src/examples/wordfreq.c"
echo "wordfreq: $(cksum <"$o")"
if [ -n "$cxx" ]; then
    "$cxx" -O2 -std=c++17 -c -o "$o" "$src/tests/override/cxx_workload.cpp"
    echo "cxx_workload.o: $(cksum <"$o")"
fi
