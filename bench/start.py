#!/usr/bin/env python3
"""bench/start.py - what a short process pays for the preload, per mode.

A test suite starts thousands of short processes; what the library costs
each of them at its start and its exit (loading, set-up, the check of the
heap at exit in a debug mode) counts there more than its malloc. For each
configuration (no preload; libpymalloc.so in each mode; the peers that are
installed), RUNS rounds, the configurations interleaved, of LAUNCHES
launches of each program; per launch: the CPU time (user + system of the
children, from getrusage) and the minor page faults, best round of RUNS.

Programs: /bin/true (no allocation of its own) and sort of a generated
file of 2,000 lines (a few hundred allocations).

    bench/start.py [BUILD_DIR] [LABEL=LIBRARY ...]

LABEL=LIBRARY adds another build of the library to compare, in the debug
modes and pymalloc (e.g. old=/tmp/old/libpymalloc.so). Environment: RUNS
(default 5), LAUNCHES (default 200).
"""
import os
import resource
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
build = os.path.abspath(args.pop(0) if args and "=" not in args[0] else os.path.join(here, "..", "build"))
lib = os.path.join(build, "libpymalloc.so")
if not os.access(lib, os.R_OK):
    sys.exit(f"build first: {lib} missing")
runs = int(os.environ.get("RUNS", "5"))
launches = int(os.environ.get("LAUNCHES", "200"))

PEERS = {
    "jemalloc": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "mimalloc": "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
    "tcmalloc": "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
}
MODES = ["malloc", "pymalloc", "malloc_debug", "pymalloc_debug", "debug"]

configs = [("glibc", None, None)]
configs += [(f"pymalloc:{m}", lib, m) for m in MODES]
for extra in args:
    label, path = extra.split("=", 1)
    configs += [(f"{label}:{m}", os.path.abspath(path), m)
                for m in ("pymalloc", "malloc_debug", "pymalloc_debug")]
configs += [(name, path, None) for name, path in PEERS.items() if os.access(path, os.R_OK)]

base_env = {k: v for k, v in os.environ.items()
            if not k.startswith("PYMALLOC_") and k != "LD_PRELOAD"}


def env_of(preload, mode):
    env = dict(base_env)
    if preload:
        env["LD_PRELOAD"] = preload
    if mode:
        env["PYMALLOC_MODE"] = mode
    return env


def measure(cmd, env):
    """CPU seconds and minor faults per launch, over LAUNCHES launches."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(launches):
        subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / launches, (after.ru_minflt - before.ru_minflt) / launches


with tempfile.TemporaryDirectory() as tmp:
    data = os.path.join(tmp, "lines.txt")
    with open(data, "w") as f:
        x = 12345
        for i in range(2000):
            x = (x * 1103515245 + 12345) % 2**31
            f.write(f"{x:010d} line {i}\n")
    programs = [("true", ["/bin/true"]), ("sort", ["sort", data])]
    best = {}
    for _ in range(runs):
        for label, preload, mode in configs:
            env = env_of(preload, mode)
            for pname, cmd in programs:
                cpu, flt = measure(cmd, env)
                key = (label, pname)
                old = best.get(key)
                best[key] = (min(cpu, old[0]) if old else cpu, min(flt, old[1]) if old else flt)

print(f"# {launches} launches a round, best of {runs} interleaved rounds: "
      "CPU ms (user + system) and minor page faults per launch")
print(f"{'configuration':24}" + "".join(f"{p + ' ms':>10}{p + ' pages':>12}" for p, _ in programs))
for label, _, _ in configs:
    row = f"{label:24}"
    for pname, _ in programs:
        cpu, flt = best[(label, pname)]
        row += f"{cpu * 1000:10.2f}{flt:12.1f}"
    print(row)
