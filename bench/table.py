#!/usr/bin/env python3
"""The short table bin/gpu-check prints last, from the RESULT lines of its logs."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plots import BIGCHECK, GROUPED, TIMING, WRONG, field  # noqa: E402  (one statement of each line and of "wrong")
import gpu_samples  # noqa: E402

ours, fla, lines, kernels, host, wrong, grouped = {}, {}, [], set(), [], {}, {}
# nvidia-smi's samples while DeviceBench timed (bin/gpu-check's smi.log), for each timing's clock and power
samples = []
for path in sys.argv[1:]:
    if path.endswith("smi.log"):
        try:
            samples += gpu_samples.read(open(path).read())
        except OSError:
            pass
for path in sys.argv[1:]:
    if path.endswith("smi.log"):
        continue
    try:
        text = open(path).read()
    except OSError:
        continue
    for line in text.splitlines():
        h = re.match(r"RESULT host T=(\d+) H=(\d+) D=(\d+) serial_ms=([\d.]+) pipelined_ms=([\d.]+) speedup=([\d.]+)x"
                     r"(?: serial_GB_per_s=([\d.]+) pipelined_GB_per_s=([\d.]+))?"
                     r"(?: threads_GB_per_s=([\d.]+) registered_GB_per_s=([\d.]+))?", line)
        if h:
            gbs = f", {h[7]} -> {h[8]} GB/s" if h[7] else ""
            if h[9]:
                gbs += f"; heap staged on threads {h[9]} GB/s, registered tensors {h[10]} GB/s"
            host.append(f"host path (forward() on host tensors, copies included) T={int(h[1]):,} H={h[2]} D={h[3]}: "
                        f"serial {h[4]} ms, copies overlapped {h[5]} ms ({h[6]}x{gbs})")
            continue
        w = BIGCHECK.match(line)
        if w and float(w[5]) > WRONG:  # fla's timed call returned a wrong output
            wrong[(int(w[2]), int(w[3]), int(w[4]))] = float(w[5])
        g = GROUPED.match(line)
        if g:  # fla in calls of fewer heads, where one call gives a wrong output
            grouped[(int(g[2]), int(g[3]), int(g[4]))] = (float(g[5]), field(line, "groups"))
            continue
        m = TIMING.match(line)
        if m and m[1] != "vllm":
            key = (int(m[2]), int(m[3]), int(m[4]))
            if m[1] == "fla":
                fla[key] = (float(m[5]), float(m[6]), None)
            else:
                ours.setdefault(key, {})[m[1]] = (float(m[5]), float(m[6]), field(line, "copy_share"),
                                                   field(line, "segments"),
                                                   gpu_samples.describe(gpu_samples.state(samples, line)))
                named = field(line, "kernels")
                if named:
                    kernels.add(named)
        elif line.startswith("RESULT") or re.search(r"\d+ passed, \d+ failed|tests (successful|failed)", line):
            own = gpu_samples.describe(gpu_samples.state(samples, line))
            plain = gpu_samples.describe(gpu_samples.state(samples, line, "plain_wall_ms"))
            line = gpu_samples.strip(line.replace("RESULT ", ""))
            if own:
                line += f" (GPU while timed: {own}" + (f"; plain: {plain}" if plain else "") + ")"
            lines.append(line)
print("| T | H | D | fla ms | ours ms (segments) | ours / fla | two-pass ms (segments) | two-pass / fla "
      "| ours tokens/s | share of copy bandwidth (ours, two-pass) | GPU while ours ran (median clock, power, temp.) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
def cell(v):
    return f"{v[0]:.2f} ({v[3]})" if v else "-"
for key in sorted(set(ours) | set(fla)):
    o = ours.get(key, {})
    a, b, f = o.get("ours"), o.get("ours-two-pass"), fla.get(key)
    bad = key in wrong
    if bad and key in grouped:  # the ratios against fla's right way at this shape: calls of fewer heads
        gm, gs = grouped[key]
        ra = f"{gm / a[0]:.2f}x (fla as {gs} heads)" if a else "-"
        rb = f"{gm / b[0]:.2f}x (fla as {gs} heads)" if b else "-"
    else:
        ra = "- (fla wrong)" if bad else f"{f[0] / a[0]:.2f}x" if a and f else "-"
        rb = "- (fla wrong)" if bad else f"{f[0] / b[0]:.2f}x" if b and f else "-"
    share = f"{a[2] if a else '-'}, {b[2] if b else '-'}"
    fc = (f"{f[0]:.2f}" + (f" (output wrong: error {wrong[key]:.2f}" + (f"; as {grouped[key][1]} heads: "
          f"{grouped[key][0]:.2f}" if key in grouped else "") + ")" if bad else "")) if f else "-"
    print(f"| {key[0]:,} | {key[1]} | {key[2]} | {fc} | {cell(a)} | {ra} | {cell(b)} | {rb} "
          f"| {f'{a[1]:.3g}' if a else '-'} | {share} | {a[4] if a and a[4] else '-'} |")
if kernels:
    print("forward kernels: " + ", ".join(sorted(kernels)))
for line in host:
    print(line)
for line in lines:
    print(line)
