#!/usr/bin/env bash
# The whole CPU job against a plain numpy peer (bench/cpu_peer.py) on one F32 file, with the time of
# each broken down; prints one table. BENCHMARKS.md, "CPU: the whole job against a numpy peer".
#   bench/cpu-vs-peer.sh [--dir DIR] [--tokens T] [--heads H] [--dk D] [--dv D] [--keep]
# Defaults: DIR /tmp/cpu-vs-peer, T = 524,288, H = 8, Dk = Dv = 64 (a 384 MiB input). The input is
# generated once (bin/lightning generate --dtype f32) and reused; outputs are removed at the end
# unless --keep. Runs, in order: the job with the default partitioning, the job with
# --partition-tokens T/2 (two pieces, so both cores of a 2-core machine compute), the peer (checked
# against the first job's output). Run it with nothing else busy: every figure is one wall clock.
set -euo pipefail

home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir=/tmp/cpu-vs-peer tokens=524288 heads=8 dk=64 dv=64 keep=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --tokens) tokens="$2"; shift 2 ;;
    --heads) heads="$2"; shift 2 ;;
    --dk) dk="$2"; shift 2 ;;
    --dv) dv="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "cpu-vs-peer: unknown option '$1': expected --dir, --tokens, --heads, --dk, --dv or --keep" >&2; exit 2 ;;
  esac
done

input="$dir/in-T$tokens-H$heads-$dk-$dv"
mkdir -p "$dir"
if [[ ! -f "$input/seq-00000.safetensors" ]]; then
  rm -rf "$input"
  "$home/bin/lightning" generate --output "$input" --tokens "$tokens" --heads "$heads" --dk "$dk" --dv "$dv" \
      --dtype f32 >&2
fi
file="$input/seq-00000.safetensors"
# Both contenders read the file from the page cache (the machine needs RAM for it): read it once now.
cat "$file" > /dev/null

now() { date +%s.%N; }

# run_job NAME [job options]: the job's log in $dir/NAME.log, its report in $dir/NAME/, and the
# wall clock of the whole process (launch to exit) in $dir/NAME.wall as "start end".
run_job() {
  local name="$1"; shift
  rm -rf "${dir:?}/$name"
  local t0 t1
  sync  # no dirty pages of the previous run left to throttle this one's writes
  t0=$(now)
  "$home/bin/lightning" run --input "$input" --output "$dir/$name" --backend cpu "$@" > "$dir/$name.log" 2>&1 \
    || { echo "cpu-vs-peer: the job ($name) failed; its log: $dir/$name.log" >&2; tail -20 "$dir/$name.log" >&2; exit 1; }
  t1=$(now)
  echo "$t0 $t1" > "$dir/$name.wall"
}

echo "cpu-vs-peer: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" >&2
echo "cpu-vs-peer: input $file ($(du -m "$file" | cut -f1) MiB)" >&2
run_job job-default
half=$(( tokens / 2 / 64 * 64 ))
run_job job-two --partition-tokens "$half"

sync
t0=$(now)
python3 "$home/bench/cpu_peer.py" --input "$file" --output "$dir/peer.safetensors" --t0 "$t0" \
    --check "$dir/job-default/seq-00000.safetensors" > "$dir/peer.log"
t1=$(now)
echo "$t0 $t1" > "$dir/peer.wall"
cat "$dir/peer.log" >&2

python3 - "$dir" "$half" <<'EOF'
import datetime, json, re, sys
d, half = sys.argv[1], int(sys.argv[2])

def epoch(iso):  # "2026-12-02T17:45:19.873349047Z": Python keeps microseconds
    iso = re.sub(r"(\.\d{6})\d*Z$", r"\1+00:00", iso)
    return datetime.datetime.fromisoformat(iso).timestamp()

def job(name):
    start, end = map(float, open(f"{d}/{name}.wall").read().split())
    r = json.load(open(f"{d}/{name}/_lightning_report.json"))
    passes = {k.split(":")[0]: v["seconds"] for k, v in r["passes"].items()}
    busy = {}
    for t in r["tasks"]:
        busy[t["pass"]] = busy.get(t["pass"], 0.0) + t["millis"] / 1e3
    started, ended = epoch(r["started"]), epoch(r["ended"])
    row = {
        "JVM start (launch to the job's clock)": started - start,
        "Spark start": r["sparkStartSeconds"],
        "pass 1 (local states)": passes.get("pass 1/2", 0.0),
        "scan": passes.get("scan", 0.0),
        "pass 2 (read, compute, write o)": passes.get("pass 2/2", 0.0),
        "assemble (pieces into one file)": passes.get("assemble", 0.0),
    }
    row["headers, plan, report, commit"] = r["seconds"] - sum(v for k, v in row.items() if k != "JVM start (launch to the job's clock)")
    row["Spark stop, JVM exit"] = end - ended
    row["total (wall clock)"] = end - start
    return row, r, busy

rows = [job("job-default"), job("job-two")]
peer_start, peer_end = map(float, open(f"{d}/peer.wall").read().split())
log = open(f"{d}/peer.log").read()
m = re.search(r"start ([\d.]+) s  read ([\d.]+) s  compute ([\d.]+) s  write ([\d.]+) s  total [\d.]+ s  end ([\d.]+)", log)
peer = {"start (python, numpy import)": float(m[1]), "read (map, page in)": float(m[2]),
        "compute": float(m[3]), "write (o, final_state)": float(m[4]), "total (launch to written)": float(m[5]) - peer_start}
threads = re.search(r"openblas_threads=(\S+) openblas_core=(\S+)", log)
err = re.search(r"o ([\d.e+-]+)  final_state ([\d.e+-]+)", log)

r0 = rows[0][1]
print(f"| job step | default ({r0['partitions']} partitions of {int(r0['settings']['spark.lightning.partitionTokens']):,} tokens) "
      f"| --partition-tokens {half:,} ({rows[1][1]['partitions']} partitions) |")
print("|---|---|---|")
for k in rows[0][0]:
    a, b = rows[0][0][k], rows[1][0][k]
    bold = "**" if k.startswith("total") else ""
    print(f"| {bold}{k}{bold} | {bold}{a:.2f}{bold} | {bold}{b:.2f}{bold} |")
print()
for label, (row, r, busy) in zip(("default", "two pieces"), rows):
    par = ", ".join(f"{p} {busy[p]:.2f} s of task time in {r['passes'][n]['seconds']:.2f} s"
                    for p, n in (("pass1", "pass 1/2: local states"), ("pass2", "pass 2/2: outputs")) if p in busy and n in r["passes"])
    print(f"job {label}: {par}")
print()
print("| peer step | seconds |")
print("|---|---|")
for k, v in peer.items():
    bold = "**" if k.startswith("total") else ""
    print(f"| {bold}{k}{bold} | {bold}{v:.2f}{bold} |")
print()
print(f"peer: numpy OpenBLAS threads {threads[1]} (core {threads[2]}); relative error against the job's output: "
      f"o {err[1]}, final_state {err[2]}")

print(f"ratio job (launch to exit) / peer (launch to written): default {rows[0][0]['total (wall clock)'] / peer['total (launch to written)']:.2f}x, "
      f"two pieces {rows[1][0]['total (wall clock)'] / peer['total (launch to written)']:.2f}x")
EOF

if [[ -z "$keep" ]]; then
  rm -rf "${dir:?}/job-default" "${dir:?}/job-two" "$dir/peer.safetensors"
fi
