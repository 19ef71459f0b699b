#!/usr/bin/env python3
"""The table of bench/job-device.sh: each job's tokens/s beside the three bounds measured in the
same run, each bound turned into tokens/s by the bytes it must carry per token.

    bench/job_bounds.py RESULTS --long TxHxD --pieces P --dir-seq TxHxD

Bytes per token at H heads of width D in BF16: q, k, v are 6HD bytes in, o 2HD out. A split
sequence of P pieces reads k and v of all but the last piece in pass 1 (4HD (P-1)/P) and q, k, v in
pass 2; a whole sequence only pass 2. Disk: the cold read bandwidth (the faster of one and eight
streams) over the bytes read from the disk when pass 2 finds pass 1's k and v in the page cache
(6HD, what the disk must give at least), and over all bytes read (the page cache keeps nothing).
Pinned: each direction's bandwidth over its bytes (host to device: what the passes read;
device to host: o), the slower of the two. Kernels: DeviceBench's tokens/s on the device-resident
sequence (two passes, as the job computes a split sequence; a whole one for the directory's length).
"""
import argparse
import re

ap = argparse.ArgumentParser()
ap.add_argument("results")
ap.add_argument("--long", required=True)
ap.add_argument("--pieces", type=int, required=True)
ap.add_argument("--dir-seq", required=True)
a = ap.parse_args()

lines = [l.strip() for l in open(a.results) if l.startswith("RESULT")]


def kv(line):
    return dict(re.findall(r"(\w+)=([^\s]+)", line))


def find(prefix, **match):
    for l in lines:
        if l.startswith("RESULT " + prefix):
            d = kv(l)
            if all(d.get(k) == str(v) for k, v in match.items()):
                return d
    return None


disk = [float(kv(l)["GB_per_s"]) for l in lines if l.startswith("RESULT disk_read")]
disk_bw = max(disk) * 1e9 if disk else None
h2d = find("pinned_h2d")
d2h = find("pinned_d2h")
checks = [l for l in lines if l.startswith("RESULT check")]
print("checks: %d, %s" % (len(checks), "all ok" if checks and all(l.endswith(" ok") for l in checks) else "NOT ALL OK"))
for l in checks:
    print("  " + l[len("RESULT "):])
rows = []
names = []
for l in lines:
    m = re.match(r"RESULT job (\S+) status=", l)
    if m and m.group(1) not in names:
        names.append(m.group(1))
for name in names:
    shape, pieces = (a.long, a.pieces) if name.startswith("long-") else (a.dir_seq, 1)
    job = find("job " + name + " ")
    if job is None or "tokens_per_s" not in job:
        continue
    t, h, d = (int(x) for x in shape.split("x"))
    qkv = 6 * h * d
    pass1 = 4 * h * d * (pieces - 1) / pieces
    k = find("kernel ours-two-pass " if pieces > 1 else "kernel ours ", T=t, H=h, D=d)
    bounds = {}
    if disk_bw:
        bounds["disk (read once)"] = disk_bw / qkv
        if pieces > 1:
            bounds["disk (both passes)"] = disk_bw / (qkv + pass1)
    if h2d and d2h:
        bounds["pinned"] = min(float(h2d["GB_per_s"]) * 1e9 / (qkv + pass1), float(d2h["GB_per_s"]) * 1e9 / (2 * h * d))
    if k:
        bounds["kernels"] = float(k["tokens_per_s"])
    main = {n: b for n, b in bounds.items() if n != "disk (both passes)"}
    if "warm" in name:
        main.pop("disk (read once)", None)  # the inputs came from the page cache
    slowest = min(main, key=main.get) if main else None
    rows.append((name, shape, pieces, float(job["tokens_per_s"]), float(job.get("after_start_tokens_per_s", 0)),
                 bounds, slowest, main.get(slowest), job.get("disk_read_GB", "?")))
print()
print("| job | T x H x D | pieces | tokens/s (job, Spark start included) | tokens/s (after Spark start) | read from disk GB "
      "| bounds, tokens/s | slowest | job / slowest (after start) |")
print("|---|---|---|---|---|---|---|---|---|")
for name, shape, pieces, tps, after, bounds, slowest, sb, read in rows:
    b = "; ".join("%s %.4g" % (n, v) for n, v in bounds.items())
    print("| %s | %s | %d | %.4g | %.4g | %s | %s | %s | %s |" % (
        name, shape, pieces, tps, after, read, b, slowest,
        "%.2f (%.2f)" % (tps / sb, after / sb) if sb else "-"))
    print("RESULT bound job=%s tokens_per_s=%.4g slowest=%s slowest_tokens_per_s=%.4g of_slowest=%.3f after_start_of_slowest=%.3f"
          % (name, tps, (slowest or "none").replace(" ", "_"), sb or 0, tps / sb if sb else 0, after / sb if sb else 0))
