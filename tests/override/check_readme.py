#!/usr/bin/env python3
"""check_readme.py README BUILD_DIR - the README's shown output is what the
commands print now.

Two kinds of README examples are run from the top of the source tree, with
"build/" standing for BUILD_DIR:

1. A fenced block whose first line is "$ build/..." shows a command and its
   output (stdout and stderr together). The command's output must hold the
   block's lines in order: a line that is only "..." (indented or not)
   stands for any number of lines, every other line must be the next line
   of the output. Addresses (0x...) are compared as "0x?", and so are the
   bytes of a "Bytes at" line (the data a program wrote there: a pointer).
   A last line "Aborted (exit status N)" is the shell's: the command must
   exit with status N (and the line is not looked for).
2. A line of a ```sh block of the form "build/... # text" (or a line
   "# pymalloc..." under a command whose comment ends in ":"): the
   command's stderr must hold "text" as a line. A program the wrapper runs
   that turns out to be dynamically linked here (/sbin/ldconfig is static on
   Debian) is left out.
3. A block of one line "pymalloc: PYMALLOC_X: not a variable pymalloc
   reads...": the demo run with PYMALLOC_X=report prints that line.
4. No fence is inside a fenced block (a closing fence with text after it
   is no closing fence in Markdown: the block runs on).

Exits 77 (skipped) for a 32-bit build: the statistics shown are a 64-bit
build's (node sizes differ).
"""
import os
import re
import shlex
import subprocess
import sys

readme, build = sys.argv[1], os.path.abspath(sys.argv[2])
top = os.path.dirname(os.path.abspath(readme))


def elf_class(path):
    with open(path, "rb") as f:
        head = f.read(5)
    return head[4] if head[:4] == b"\x7fELF" else 0


def has_interp(path):
    """Whether an ELF file asks for a dynamic loader (PT_INTERP)."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        return True
    if data[4] == 2:
        phoff, = struct.unpack_from("<Q", data, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    else:
        phoff, = struct.unpack_from("<I", data, 0x1C)
        phentsize, phnum = struct.unpack_from("<HH", data, 0x2A)
    for i in range(phnum):
        ptype, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if ptype == 3:
            return True
    return False


if elf_class(os.path.join(build, "examples", "wordfreq")) != 2:
    print("check_readme: not a 64-bit build: its statistics differ from the README's; skipped")
    sys.exit(77)

with open(readme, encoding="utf-8") as f:
    lines = f.read().split("\n")

# The fenced blocks: (info string, first line number, lines).
blocks = []
i = 0
while i < len(lines):
    m = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
    if m:
        indent, info = m.group(1), m.group(2)
        j = i + 1
        body = []
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        blocks.append((info, i + 1, body))
        i = j + 1
    else:
        i += 1


def run(cmd):
    argv = shlex.split(cmd)
    env = dict(os.environ)
    for k in [k for k in env if k.startswith("PYMALLOC_")]:
        del env[k]
    while argv and re.match(r"^[A-Z_]+=", argv[0]):
        k, v = argv.pop(0).split("=", 1)
        env[k] = v
    argv = [os.path.join(build, a[len("build/"):]) if a.startswith("build/") else a for a in argv]
    p = subprocess.run(argv, cwd=top, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace").split("\n")


def run_stderr(cmd):
    argv = shlex.split(cmd)
    env = dict(os.environ)
    for k in [k for k in env if k.startswith("PYMALLOC_")]:
        del env[k]
    while argv and re.match(r"^[A-Z_]+=", argv[0]):
        k, v = argv.pop(0).split("=", 1)
        env[k] = v
    argv = [os.path.join(build, a[len("build/"):]) if a.startswith("build/") else a for a in argv]
    p = subprocess.run(argv, cwd=top, env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stderr.decode("utf-8", "replace").split("\n")


def norm(line):
    line = re.sub(r"0x[0-9a-f]+", "0x?", line.rstrip())
    m = re.match(r"^(\s*Bytes at [^:]*:)((?: [0-9a-f]{2})+)$", line)
    if m:
        line = m.group(1) + " ??" * (len(m.group(2)) // 3)
    return line


failures = 0
checked = 0


def fail(where, msg):
    global failures
    failures += 1
    print("README.md:%d: %s" % (where, msg))


for info, start, body in blocks:
    if body and body[0].startswith("$ build/"):
        checked += 1
        cmd = body[0][2:]
        want = body[1:]
        status = None
        if want and re.match(r"^Aborted \(exit status (\d+)\)$", want[-1]):
            status = int(re.match(r"^Aborted \(exit status (\d+)\)$", want[-1]).group(1))
            want = want[:-1]
        rc, got = run(cmd)
        if rc < 0:
            rc = 128 - rc
        if status is not None and rc != status:
            fail(start, "%s: exit status %d, the README shows %d" % (cmd, rc, status))
        elif status is None and rc != 0:
            fail(start, "%s: exit status %d, the README shows a clean run" % (cmd, rc))
        got_n = [norm(g) for g in got]
        k = 0
        skipping = False
        for n, w in enumerate(want):
            if w.strip() == "...":
                skipping = True
                continue
            wn = norm(w)
            if skipping:
                while k < len(got_n) and got_n[k] != wn:
                    k += 1
            if k >= len(got_n) or got_n[k] != wn:
                near = got[k] if k < len(got) else "<end of output>"
                fail(start + 1 + n, "%s: the README shows\n    %r\n  the program printed\n    %r"
                     % (cmd, w, near))
                break
            k += 1
            skipping = False
    elif len(body) == 1 and re.match(r"^pymalloc: (PYMALLOC_\w+): not a variable pymalloc reads", body[0]):
        # The line a misspelt variable gets, from a program run with it set.
        checked += 1
        var = re.match(r"^pymalloc: (PYMALLOC_\w+):", body[0]).group(1)
        rc, got = run_stderr("%s=report build/examples/pymalloc-demo" % var)
        if body[0] not in got:
            fail(start + 1, "%s=report: the README shows\n    %r\n  on stderr, which was\n    %r"
                 % (var, body[0], "\n".join(got)))
    elif info == "sh":
        for n, line in enumerate(body):
            m = re.match(r"^(.*?build/\S+.*?)\s+#\s+(.*)$", line)
            if not m:
                continue
            cmd, text = m.group(1), m.group(2)
            if text.endswith(":") and n + 1 < len(body) and body[n + 1].startswith("# pymalloc"):
                text = body[n + 1][2:]
            if not text.startswith("pymalloc"):
                continue
            prog = [a for a in shlex.split(cmd) if not a.startswith("build/") and
                    not a.startswith("-") and not re.match(r"^[A-Z_]+=", a)]
            if prog and os.path.isabs(prog[0]):
                if not os.path.exists(prog[0]) or has_interp(prog[0]):
                    continue
            checked += 1
            rc, got = run_stderr(cmd)
            if text not in got:
                fail(start + 1 + n, "%s: the README shows\n    %r\n  on stderr, which was\n    %r"
                     % (cmd, text, "\n".join(got)))

# A fence inside a block: a closing fence with text after it ("``` A
# program's"), which Markdown does not take for one, so the block ran on
# and swallowed the text and a heading after it (until 2026-12-06), or a
# block opened inside another.
for info, start, body in blocks:
    for n, line in enumerate(body):
        if line.lstrip().startswith("```"):
            checked += 1
            fail(start + 1 + n, "a fence inside a fenced block (a closing fence must be "
                 "alone on its line): %r" % line)

if checked < 5:
    fail(0, "only %d examples found: has the README's format changed?" % checked)
print("check_readme: %d examples checked, %d differ" % (checked, failures))
sys.exit(1 if failures else 0)
