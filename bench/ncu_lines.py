#!/usr/bin/env python3
"""Two kernels' ncu source counters side by side, per CUDA source line: warp instructions executed
and warp-stall samples, with the lines whose counts differ most.

    bench/ncu_lines.py A.csv B.csv [--per N] [--top K]

A.csv, B.csv: `ncu -i REPORT --page source --csv --print-source cuda,sass` of one launch each (the
same kernel built with -lineinfo, two variants or two builds). Instructions are divided by N (for
example the CTAs times the chunks each walks, to read them per CTA-chunk). Prints the totals, the
K lines with the largest instruction difference (B - A) and the K lines with the most stall
samples in B.
"""
import csv
import sys


def load(path):
    """{(file, line): (instructions, stall samples, source text)} of a cuda,sass source page."""
    current, lines = None, {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if not row:
                continue
            if row[0] == "File Path":
                current = row[1].split("/")[-1]
                continue
            if not row[0].isdigit():
                continue
            try:
                executed = int(row[7].replace(",", ""))
                samples = int(row[4].replace(",", ""))
            except (IndexError, ValueError):
                continue
            lines[(current, int(row[0]))] = (executed, samples, row[1].strip())
    return lines


def main(argv):
    per, top, files = 1.0, 40, []
    i = 0
    while i < len(argv):
        if argv[i] == "--per":
            per = float(argv[i + 1]); i += 2
        elif argv[i] == "--top":
            top = int(argv[i + 1]); i += 2
        else:
            files.append(argv[i]); i += 1
    if len(files) != 2:
        sys.exit(__doc__)
    a, b = load(files[0]), load(files[1])
    zero = (0, 0, "")
    print("instructions: A %.4g, B %.4g (B/A %.3f); stall samples: A %d, B %d" % (
        sum(v[0] for v in a.values()) / per, sum(v[0] for v in b.values()) / per,
        sum(v[0] for v in b.values()) / max(1, sum(v[0] for v in a.values())),
        sum(v[1] for v in a.values()), sum(v[1] for v in b.values())))
    keys = set(a) | set(b)
    print("\nlargest instruction differences (per N): B - A, A, B | stall samples A -> B | line")
    for k in sorted(keys, key=lambda k: -abs(b.get(k, zero)[0] - a.get(k, zero)[0]))[:top]:
        ia, sa, ta = a.get(k, zero)
        ib, sb, tb = b.get(k, zero)
        print("%8.1f %8.1f %8.1f | %7d -> %7d | %s:%d %s" % (
            (ib - ia) / per, ia / per, ib / per, sa, sb, k[0], k[1], (tb or ta)[:90]))
    print("\nmost stall samples in B: B, A | line")
    for k in sorted(b, key=lambda k: -b[k][1])[:top]:
        print("%7d %7d | %s:%d %s" % (b[k][1], a.get(k, zero)[1], k[0], k[1], b[k][2][:90]))


if __name__ == "__main__":
    main(sys.argv[1:])
