#!/usr/bin/env python3
"""Plots job time per token against the number of pieces (issue 16) as an SVG, with no plotting
library: reads a CSV of `label,tokens,pieces,seconds` rows and writes one line per label on a
log-scaled piece axis.

    bench/plot_pieces.py IN.csv OUT.svg
"""
import csv
import math
import sys

rows = list(csv.DictReader(open(sys.argv[1])))
series = {}
for r in rows:
    series.setdefault(r["label"], []).append((int(r["pieces"]), float(r["seconds"]) / int(r["tokens"]) * 1e6))
W, H, L, R, T, B = 640, 400, 70, 20, 30, 50
xs = [p for s in series.values() for p, _ in s]
ys = [v for s in series.values() for _, v in s]
x0, x1 = math.log10(min(xs)) - 0.2, math.log10(max(xs)) + 0.2
y1 = max(ys) * 1.15


def px(p):
    return L + (math.log10(p) - x0) / (x1 - x0) * (W - L - R)


def py(v):
    return H - B - v / y1 * (H - T - B)


out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">'
       % (W, H), '<rect width="100%" height="100%" fill="white"/>',
       '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, H - B, W - R, H - B),
       '<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>' % (L, T, L, H - B)]
for e in range(math.ceil(x0), math.floor(x1) + 1):
    x = px(10 ** e)
    out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ccc"/>' % (x, T, x, H - B))
    out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, H - B + 16, "{:,}".format(10 ** e)))
for i in range(6):
    v = y1 * i / 5
    out.append('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>' % (L - 6, py(v) + 4, v))
out.append('<text x="%d" y="%d" text-anchor="middle">pieces (log scale)</text>' % ((L + W - R) / 2, H - 12))
out.append('<text x="16" y="%d" transform="rotate(-90 16 %d)" text-anchor="middle">job seconds per million tokens'
           '</text>' % ((T + H - B) / 2, (T + H - B) / 2))
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
for k, (label, pts) in enumerate(series.items()):
    pts.sort()
    c = colors[k % len(colors)]
    out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
               % (c, " ".join("%.1f,%.1f" % (px(p), py(v)) for p, v in pts)))
    for p, v in pts:
        out.append('<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>' % (px(p), py(v), c))
        out.append('<text x="%.1f" y="%.1f" fill="%s">%.2f</text>' % (px(p) + 6, py(v) - 6, c, v))
    out.append('<text x="%d" y="%d" fill="%s">%s</text>' % (L + 10, T + 14 + 16 * k, c, label))
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out))
