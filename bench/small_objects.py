# bench/small_objects.py - a Python workload dominated by small objects:
# tuples, small dicts and lists, short strings, ints beyond the small-int
# cache, instances, created and destroyed at a high rate. Prints a checksum
# so every allocator's run can be compared.
#   python3 small_objects.py [ROUNDS]
import sys

rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20

class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

total = 0
for r in range(rounds):
    live = []
    for i in range(20000):
        t = (i, i + 1000, str(i))
        d = {"a": i, "b": t, "c": [i, i * 2]}
        p = Point(i * 1000, -i)
        s = "k" + str(i % 977) + "_" + str(r)
        live.append((d, p, s))
        if len(live) > 500:
            del live[: 250]
        total += len(s) + p.x % 7 + len(d["c"])
    words = [str(j * 31) for j in range(10000)]
    idx = {w: j for j, w in enumerate(words)}
    total += sum(idx[w] for w in words[::7]) % 1000003
print(total)
