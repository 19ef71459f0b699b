#!/usr/bin/env python3
"""Each timed shape of a DeviceBench log beside the GPU's clock, power and temperature while it ran.

  python3 bench/clock_share.py DEVICEBENCH_LOG SMI_LOG

One row a "RESULT ours" or "ours-two-pass" line (DeviceBench prints each with its wall-clock interval; the smi
log is nvidia-smi's samples, bench/gpu_samples.py), then, per shape timed three times or more, the least-squares
line of its share of the copy bandwidth against the SM clock, and the pairs of "ours" and "ours-two-pass" timings
that ran the same plan (the first after the shape's setup left the GPU idle, the second straight after).
On 2026-12-05 (BENCHMARKS.md, "The first H100 runs") the clock explained nothing: 16 timings of T = 1M, H = 64 on
an H200 at 1485 to 1628 MHz gave 0.740 to 0.791, a slope of -0.001 per 100 MHz, and the H100's 0.94 to 0.98
whatever their clock. The pairs did: the first was ahead in 8 of 8 on the H200 (0.779 against 0.760).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpu_samples  # noqa: E402
from plots import TIMING, field  # noqa: E402

samples = gpu_samples.read(open(sys.argv[2]).read())
rows = {}
pairs = {}  # (T, H, D) -> [(ours share, two-pass share)] where both ran the same plan
last = None
print("| line | T | H | D | ms | share of copy bandwidth | SM clock MHz | power W | temp. C | samples |")
print("|---|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]).read().splitlines():
    m = TIMING.match(line)
    share = field(line, "copy_share")
    if not m or m[1] not in ("ours", "ours-two-pass") or share is None:
        continue
    key = (int(m[2]), int(m[3]), int(m[4]))
    here = (key, field(line, "plan"), float(share))
    if m[1] == "ours-two-pass" and last and last[:2] == here[:2] and here[1]:
        pairs.setdefault(key, []).append((last[2], here[2]))
    last = here if m[1] == "ours" else None
    st = gpu_samples.state(samples, line)
    cells = [f"{st[0]:.0f}", f"{st[1]:.0f}", f"{st[2]:.0f}", str(st[3])] if st else ["-"] * 4
    print(f"| {m[1]} | {int(m[2]):,} | {m[3]} | {m[4]} | {m[5]} | {share} | " + " | ".join(cells) + " |")
    if st:
        rows.setdefault(key, []).append((st[0], float(share)))
for key, pts in sorted(rows.items()):
    if len(pts) < 3 or len({c for c, _ in pts}) < 2:
        continue
    n = len(pts)
    mc, ms = sum(c for c, _ in pts) / n, sum(s for _, s in pts) / n
    slope = sum((c - mc) * (s - ms) for c, s in pts) / sum((c - mc) ** 2 for c, _ in pts)
    print(f"T={key[0]:,} H={key[1]} D={key[2]}: {n} timings, clock {min(c for c, _ in pts):.0f} to "
          f"{max(c for c, _ in pts):.0f} MHz, share {min(s for _, s in pts):.3f} to {max(s for _, s in pts):.3f}; "
          f"share = {ms:.3f} {slope * 100:+.4f} per 100 MHz from {mc:.0f} MHz")
# DeviceBench times "ours" right after a shape's setup has left the GPU idle and "ours-two-pass" straight after it;
# where both ran the same plan (H fills the GPU either way) the pair shows what the idle time before a timing is worth.
for key, ps in sorted(pairs.items()):
    n = len(ps)
    print(f"T={key[0]:,} H={key[1]} D={key[2]}: {n} pairs of the same plan: share {sum(a for a, _ in ps) / n:.3f} "
          f"after the setup, {sum(b for _, b in ps) / n:.3f} straight after it; the first ahead in "
          f"{sum(a > b for a, b in ps)} of {n}")
