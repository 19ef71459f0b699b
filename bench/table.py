#!/usr/bin/env python3
"""The short table bin/gpu-check prints last, from the RESULT lines of its logs."""
import re
import sys

ours, fla, lines = {}, {}, []
for path in sys.argv[1:]:
    try:
        text = open(path).read()
    except OSError:
        continue
    for line in text.splitlines():
        m = re.match(r"RESULT (ours|fla) T=(\d+) H=(\d+) D=(\d+) ms=([\d.]+) tokens_per_s=([\d.e+]+)(?: copy_share=([\d.]+))?", line)
        if m:
            key = (int(m[2]), int(m[3]), int(m[4]))
            (ours if m[1] == "ours" else fla)[key] = (float(m[5]), float(m[6]), m[7])
        elif line.startswith("RESULT") or re.search(r"\d+ passed, \d+ failed|tests (successful|failed)", line):
            lines.append(line.replace("RESULT ", ""))
print("| T | H | D | fla ms | ours ms | ours / fla throughput | ours tokens/s | share of copy bandwidth |")
print("|---|---|---|---|---|---|---|---|")
for key in sorted(set(ours) | set(fla)):
    o, f = ours.get(key), fla.get(key)
    ratio = f"{f[0] / o[0]:.2f}x" if o and f else "-"
    print(f"| {key[0]:,} | {key[1]} | {key[2]} | {f[0]:.2f} | " if f else f"| {key[0]:,} | {key[1]} | {key[2]} | - | ", end="")
    print(f"{o[0]:.2f} | {ratio} | {o[1]:.3g} | {o[2]} |" if o else f"- | {ratio} | - | - |")
for line in lines:
    print(line)
