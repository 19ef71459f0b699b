#!/usr/bin/env bash
# The whole CPU job against a plain numpy peer (bench/cpu_peer.py) on one F32 file, with the time of
# each broken down, in wall-clock and in CPU seconds; prints one table. BENCHMARKS.md, "CPU: the
# whole job against a numpy peer".
#   bench/cpu-vs-peer.sh [--dir DIR] [--tokens T] [--heads H] [--dk D] [--dv D] [--keep]
#                        [--lightning PATH] [--only-two] [--one-thread-peer]
# Defaults: DIR /tmp/cpu-vs-peer, T = 524,288, H = 8, Dk = Dv = 64 (a 3 GiB input). The input is
# generated once (bin/lightning generate --dtype f32) and reused; outputs are removed at the end
# unless --keep. Runs, in order: the job with the default partitioning (left out with --only-two),
# the job with --partition-tokens T/2 (two pieces, so both cores of a 2-core machine compute), the
# peer with OpenBLAS's default threads (checked against the job's output), and the peer on one
# thread (OPENBLAS_NUM_THREADS=1); --one-thread-peer runs only the latter (on a shared 2-core machine
# the threaded peer spends 50 to 80 CPU-seconds waiting for its threads, which the other tenants
# lose). --lightning runs another build's launcher (an A/B of two builds).
# CPU seconds are those of each command's whole process tree (every thread: JIT, GC, OpenBLAS),
# from bench/cpu_clock.py for the job (sampled as each of its progress lines comes) and from the
# peer's own process_time(). On a shared machine the wall clock also counts other tenants' time:
# compare CPU seconds there, and print the load average beside the figures (the script does).
# Each total is also split into user and system time (the job's from its process tree's rusage,
# the peer's from its own os.times() at the end of its write): on the 2-core VM the kernel's cost of
# writing a new 1 GiB file (o) swings from 0.2 to 6 system-seconds from one run to the next with
# the VM's memory state (a `dd` of 1 GiB alike), which the user time does not see.
# The CPU seconds by step also go to $dir/cpu-vs-peer.csv, the plot's data (bench/plots.py; copy it
# to bench/results/DATE-cpu-vs-peer.csv to plot it).
set -euo pipefail

home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir=/tmp/cpu-vs-peer tokens=524288 heads=8 dk=64 dv=64 keep= lightning="$home/bin/lightning" only_two= one_peer=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --tokens) tokens="$2"; shift 2 ;;
    --heads) heads="$2"; shift 2 ;;
    --dk) dk="$2"; shift 2 ;;
    --dv) dv="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --lightning) lightning="$2"; shift 2 ;;
    --only-two) only_two=1; shift ;;
    --one-thread-peer) one_peer=1; shift ;;
    *) echo "cpu-vs-peer: unknown option '$1': expected --dir, --tokens, --heads, --dk, --dv, --keep, --lightning, --only-two or --one-thread-peer" >&2; exit 2 ;;
  esac
done

input="$dir/in-T$tokens-H$heads-$dk-$dv"
mkdir -p "$dir"
if [[ ! -f "$input/seq-00000.safetensors" ]]; then
  rm -rf "$input"
  "$lightning" generate --output "$input" --tokens "$tokens" --heads "$heads" --dk "$dk" --dv "$dv" \
      --dtype f32 >&2
fi
file="$input/seq-00000.safetensors"
# Both contenders read the file from the page cache (the machine needs RAM for it): read it once now.
cat "$file" > /dev/null

# run_job NAME [job options]: the job's log in $dir/NAME.log, its report in $dir/NAME/, and the
# time and CPU time at each line it printed in $dir/NAME.clock (bench/cpu_clock.py).
run_job() {
  local name="$1"; shift
  rm -rf "${dir:?}/$name"
  sync  # no dirty pages of the previous run left to throttle this one's writes
  python3 "$home/bench/cpu_clock.py" --log "$dir/$name.log" --clock "$dir/$name.clock" -- \
      "$lightning" run --input "$input" --output "$dir/$name" --backend cpu "$@" \
    || { echo "cpu-vs-peer: the job ($name) failed; its log: $dir/$name.log" >&2; tail -20 "$dir/$name.log" >&2; exit 1; }
}

# run_peer NAME [environment]: the peer's log in $dir/NAME.log, its launch and exit in $dir/NAME.wall
run_peer() {
  local name="$1"; shift
  sync
  local t0 t1
  t0=$(date +%s.%N)
  env "$@" python3 "$home/bench/cpu_peer.py" --input "$file" --output "$dir/$name.safetensors" --t0 "$t0" \
      --check "$dir/job-two/seq-00000.safetensors" > "$dir/$name.log"
  t1=$(date +%s.%N)
  echo "$t0 $t1" > "$dir/$name.wall"
  cat "$dir/$name.log" >&2
  rm -f "$dir/$name.safetensors"
}

echo "cpu-vs-peer: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "cpu-vs-peer: input $file ($(du -m "$file" | cut -f1) MiB), launcher $lightning" >&2
# The class-data archive (bin/lightning, README "Start-up") is made once per build; make it now,
# so that no timed run pays for writing it (a launcher without the command just fails here).
"$lightning" cds > /dev/null 2>&1 || true
half=$(( tokens / 2 / 64 * 64 ))
jobs=(job-two)
if [[ -z "$only_two" ]]; then
  run_job job-default
  jobs=(job-default job-two)
fi
run_job job-two --partition-tokens "$half"
load_jobs=$(cut -d' ' -f1 /proc/loadavg)
peers=(peer-1)
if [[ -z "$one_peer" ]]; then
  run_peer peer
  peers=(peer peer-1)
fi
run_peer peer-1 OPENBLAS_NUM_THREADS=1
load_peer=$(cut -d' ' -f1 /proc/loadavg)
echo "cpu-vs-peer: load average (1 min) after the jobs ${load_jobs}, after the peers ${load_peer}" >&2

python3 - "$dir" "$half" "${peers[*]}" "${jobs[@]}" <<'EOF'
import datetime, json, re, sys
d, half, peer_list, names = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]

def epoch(iso):  # "2026-12-02T17:45:19.873349047Z": Python keeps microseconds
    iso = re.sub(r"(\.\d{6})\d*Z$", r"\1+00:00", iso)
    return datetime.datetime.fromisoformat(iso).timestamp()

# The job's steps end at these lines of its output (the last line that matches, where a step prints
# progress): start = JVM start, plan and Spark start; finish = commit and report.
STEPS = [("start (JVM, plan, Spark)", r"^lightning: \d+ sequences, "),
         ("pass 1 (local states)", r"^lightning: pass 1/2"),
         ("scan", r"^lightning: scan:"),
         ("pass 2 (read, compute, write o)", r"^lightning: pass 2/2"),
         ("finish (commit, report)", r"^lightning: done:")]

def job(name):
    c = json.load(open(f"{d}/{name}.clock"))
    r = json.load(open(f"{d}/{name}/_lightning_report.json"))
    wall, cpu = {}, {}
    at_wall, at_cpu = c["launch"], 0.0
    for step, pattern in STEPS:
        hits = [x for x in c["lines"] if re.search(pattern, x["line"])]
        if hits:
            wall[step], cpu[step] = hits[-1]["wall"] - at_wall, hits[-1]["cpu"] - at_cpu
            at_wall, at_cpu = hits[-1]["wall"], hits[-1]["cpu"]
        else:
            wall[step], cpu[step] = 0.0, 0.0
    wall["Spark stop, JVM exit"], cpu["Spark stop, JVM exit"] = c["exit"] - at_wall, c["cpu"] - at_cpu
    wall["total"], cpu["total"] = c["exit"] - c["launch"], c["cpu"]
    cpu["user"], cpu["system"] = c.get("user", float("nan")), c.get("system", float("nan"))
    inner = {"JVM start (launch to the job's clock)": epoch(r["started"]) - c["launch"],
             "Spark start (the job's clock)": r["sparkStartSeconds"]}
    busy = {}
    for t in r["tasks"]:
        busy[t["pass"]] = busy.get(t["pass"], 0.0) + t["millis"] / 1e3
    return wall, cpu, inner, r, busy

def peer(name):
    start, end = map(float, open(f"{d}/{name}.wall").read().split())
    log = open(f"{d}/{name}.log").read()
    m = re.search(r"start ([\d.]+) s  read ([\d.]+) s  compute ([\d.]+) s  write ([\d.]+) s  total [\d.]+ s  end ([\d.]+)", log)
    c = re.search(r"cpu start ([\d.]+) s  read ([\d.]+) s  compute ([\d.]+) s  write ([\d.]+) s  total ([\d.]+) s", log)
    threads = re.search(r"openblas_threads=(\S+) openblas_core=(\S+)", log)
    err = re.search(r"o ([\d.e+-]+)  final_state ([\d.e+-]+)", log)
    wall = {"start (JVM, plan, Spark)": float(m[1]), "read": float(m[2]), "pass 2 (read, compute, write o)": float(m[3]),
            "finish (commit, report)": float(m[4]), "total": float(m[5]) - start}
    cpu = {"start (JVM, plan, Spark)": float(c[1]), "read": float(c[2]), "pass 2 (read, compute, write o)": float(c[3]),
           "finish (commit, report)": float(c[4]), "total": float(c[5])}
    us = re.search(r"cpu user ([\d.]+) s  system ([\d.]+) s", log)  # at the end of its write, before its check
    cpu["user"], cpu["system"] = (float(us[1]), float(us[2])) if us else (float("nan"), float("nan"))
    return wall, cpu, threads[1], err

jobs = [(n, job(n)) for n in names]
peers = [(n, peer(n)) for n in peer_list]
labels = {"job-default": "job, default pieces", "job-two": f"job, --partition-tokens {half:,}",
          "peer": f"numpy peer, {peers[0][1][2]} BLAS threads", "peer-1": "numpy peer, 1 BLAS thread"}
rows = ["start (JVM, plan, Spark)", "read", "pass 1 (local states)", "scan", "pass 2 (read, compute, write o)",
        "finish (commit, report)", "Spark stop, JVM exit", "total"]
peer_names = {"start (JVM, plan, Spark)": "start / python, numpy import", "read": "read / the peer's map and page-in",
              "pass 2 (read, compute, write o)": "pass 2 / the peer's compute", "finish (commit, report)": "finish / the peer's write"}
cols = [(labels[n], j[0], j[1]) for n, j in jobs] + [(labels[n], p[0], p[1]) for n, p in peers]
print("| step (job / peer) | " + " | ".join(f"{c[0]}: wall s | CPU s" for c in cols) + " |")
print("|---|" + "---|---|" * len(cols))
for k in rows:
    bold = "**" if k == "total" else ""
    cells = []
    for _, w, c in cols:
        cells += [f"{w[k]:.2f}" if k in w else "", f"{c[k]:.2f}" if k in c else ""]
    print(f"| {bold}{peer_names.get(k, k)}{bold} | " + " | ".join(f"{bold}{x}{bold}" if x else "" for x in cells) + " |")
print()
for n, (w, c, inner, r, busy) in jobs:
    par = ", ".join(f"{p} {busy[p]:.2f} s of task time" for p in ("pass1", "pass2") if p in busy)
    print(f"{labels[n]}: {r['partitions']} partitions; " + ", ".join(f"{k} {v:.2f} s" for k, v in inner.items())
          + f"; {par}")
print(f"peer: relative error against the job's output: o {peers[0][1][3][1]}, final_state {peers[0][1][3][2]}")
print("user / system CPU seconds (the job: its process tree; the peer: its own, to the end of its write): "
      + "; ".join(f"{label} {c['user']:.2f} / {c['system']:.2f}" for label, _, c in cols))
with open(f"{d}/cpu-vs-peer.csv", "w") as f:  # the plot's data: CPU seconds by step
    f.write("# bench/cpu-vs-peer.sh: CPU seconds of the whole process tree by step, one run; the peer's steps are "
            "its start, page-in, compute and write\n")
    f.write("step," + ",".join(label.replace(",", "") for label, _, _ in cols) + "\n")
    for k in rows[:-1]:
        if any(k in c for _, _, c in cols):
            f.write('"' + peer_names.get(k, k) + '",' + ",".join(f"{c[k]:.2f}" if k in c else "" for _, _, c in cols)
                    + "\n")
for n, (w, c, *_ ) in jobs:
    for pn, p in peers:
        print(f"{labels[n]} / {labels[pn]}: wall {w['total'] / p[0]['total']:.2f}x, CPU {c['total'] / p[1]['total']:.2f}x")
EOF

if [[ -z "$keep" ]]; then
  rm -rf "${dir:?}/job-default" "${dir:?}/job-two"
fi
