# tests/override/workload.py - a Python workload of small objects, run with
# PYTHONMALLOC=malloc so that CPython's own allocations reach malloc (and so
# pymalloc, under LD_PRELOAD). Deterministic output. Also used by
# bench/preload.sh (argument: a scale factor).
import collections
import json
import re
import sys

scale = int(sys.argv[1]) if len(sys.argv) > 1 else 1

# Dicts, tuples, strings, ints: a word index over generated text.
words = ["w%d%s" % ((i * 7919) % 1013, "x" * (i % 13)) for i in range(20000 * scale)]
index = collections.defaultdict(list)
for i, w in enumerate(words):
    index[w].append(i)
counts = collections.Counter(words)
print("distinct", len(index), "most common", counts.most_common(3))

# Many short-lived objects: classes, lists, closures.
class Node:
    __slots__ = ("key", "children")

    def __init__(self, key):
        self.key = key
        self.children = []

def build(depth, key):
    n = Node(key)
    if depth:
        n.children = [build(depth - 1, key * 3 + k) for k in range(3)]
    return n

def total(n):
    return n.key + sum(total(c) for c in n.children)

print("trees", sum(total(build(7, i)) for i in range(10 * scale)))

# Strings: split, join, format, regex, json round trips.
text = " ".join(words[:5000])
found = re.findall(r"w(\d+)x{3,}", text)
doc = {"k%d" % i: [i, str(i), {"sq": i * i}] for i in range(2000 * scale)}
back = json.loads(json.dumps(doc))
print("regex", len(found), "json", len(back), back["k7"])

# Sets and sorting.
s = {(i * 31) % 9973 for i in range(50000 * scale)}
print("set", len(s), "sorted head", sorted(s, key=lambda x: (x % 7, x))[:5])
