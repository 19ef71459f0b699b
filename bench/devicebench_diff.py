#!/usr/bin/env python3
"""Two DeviceBench logs side by side: every timed line of both (the shapes' `ours` and `ours-two-pass`, the
variants, the host path), the new time over the old, and the lines slower by more than a threshold.

    bench/devicebench_diff.py OLD.log NEW.log [--threshold PERCENT]   (default 5)

Exit status 1 when a line is slower by more than the threshold, 0 otherwise. Meant for a session's final check
against the previous one's (bench/results/*-final-devicebench.log): a kernel change that slows a path nobody
was looking at shows here. Single runs on a shared machine at its power limit move by a few percent; read a
flag as a reason to time the two builds alternated, not as a verdict.
"""
import re
import sys

KEY = re.compile(r"^RESULT (ours(?:-two-pass)?|variant [\w-]+(?: [\w-]+)?|host\S*) (T=\d+(?: H\w*=\d+)*(?: D=\d+)?)")
MS = re.compile(r"\bms=([0-9.]+)")


def timings(path):
    """{(what, shape): ms} of the RESULT lines that carry a time."""
    out = {}
    with open(path, errors="replace") as f:
        for line in f:
            m, t = KEY.match(line), MS.search(line)
            if m and t:
                out[(m.group(1), m.group(2))] = float(t.group(1))
    return out


def main(argv):
    threshold = 5.0
    if "--threshold" in argv:
        i = argv.index("--threshold")
        threshold = float(argv[i + 1])
        del argv[i:i + 2]
    if len(argv) != 2:
        sys.exit(__doc__)
    old, new = timings(argv[0]), timings(argv[1])
    slower = 0
    print("%-34s %-34s %10s %10s %8s" % ("what", "shape", "old ms", "new ms", "new/old"))
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            print("%-34s %-34s %10s %10s" % (key[0], key[1], a if a else "-", b if b else "-"))
            continue
        ratio = b / a
        flag = ratio > 1 + threshold / 100
        slower += flag
        print("%-34s %-34s %10.3f %10.3f %8.3f%s" % (key[0], key[1], a, b, ratio, "  SLOWER" if flag else ""))
    print("%d line(s) slower by more than %.1f%%" % (slower, threshold))
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
