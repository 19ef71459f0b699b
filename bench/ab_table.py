#!/usr/bin/env python3
"""The builds of a kernel A/B run side by side (bench/kernel-ab-device.sh writes the logs).

    python3 bench/ab_table.py NORMCOST.log [FWDCOST.log]

Prints a Markdown table: one row per timed quantity, one column per build in the logs' order, each cell the
median in ms and, after the first build, its change against the first build. norm_cost gives the states kernel
plus forward ("total") and the forward alone for each variant; fwd_cost the plain forward and states kernels at
each H. The spread of every median is in the logs; read a change smaller than it as noise.
"""
import re
import sys

NORM = re.compile(r"^RESULT time (\S+)\s+(\S+)\s+([\d.]+) ms\s+([\d.]+)\s+([\d.]+) ms")
FWD = re.compile(r"^RESULT time H=(\d+)\s+(\S+)\s+forward\s+([\d.]+) ms.*states\s+([\d.]+) ms")


def read(path, pattern, rows):
    with open(path) as f:
        for line in f:
            m = pattern.match(line)
            if not m:
                continue
            if pattern is NORM:
                build, variant, total, _spread, fwd = m.groups()
                rows.setdefault(f"norm_cost {variant}, total", {})[build] = float(total)
                rows.setdefault(f"norm_cost {variant}, forward", {})[build] = float(fwd)
            else:
                h, build, fwd, states = m.groups()
                rows.setdefault(f"fwd_cost H = {h}, forward", {})[build] = float(fwd)
                rows.setdefault(f"fwd_cost H = {h}, states", {})[build] = float(states)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    rows = {}
    read(argv[1], NORM, rows)
    if len(argv) > 2:
        read(argv[2], FWD, rows)
    builds = []
    for cells in rows.values():
        for b in cells:
            if b not in builds:
                builds.append(b)
    if not builds:
        sys.exit(f"ab_table: no timings in {', '.join(argv[1:])} (did every build fail its checks?)")
    print("| ms | " + " | ".join(builds) + " |")
    print("|---|" + "---|" * len(builds))
    for name, cells in rows.items():
        base = cells.get(builds[0])
        out = []
        for b in builds:
            v = cells.get(b)
            if v is None:
                out.append("-")
            elif b == builds[0] or base is None:
                out.append(f"{v:.3f}")
            else:
                out.append(f"{v:.3f} ({100 * (v / base - 1):+.1f}%)")
        print(f"| {name} | " + " | ".join(out) + " |")


if __name__ == "__main__":
    main(sys.argv)
