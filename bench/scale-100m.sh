#!/usr/bin/env bash
# Issue 16's scale benchmark: one synthetic sequence (--synthetic, generated inside the tasks) through
# the whole job with --output-mode checksums (o is computed, checksummed and spot-checked against
# float64, not written), split into about --pieces pieces. Prints one table: pieces, wall time and
# tokens/s per pass, the peak heap of the driver and of every executor JVM (from their GC logs: the
# largest heap occupancy before a collection, and the largest after one, i.e. the live set), and the
# spot checks' largest error. BENCHMARKS.md, "Synthetic source and checksum sink".
#   bench/scale-100m.sh [--tokens 100000000] [--pieces 1000 | --partition-tokens N] [--heads 2] [--d 64] [--dtype bf16]
#                       [--seed 1] [--backend cpu] [--master 'local[*]'] [--driver-memory 4g]
#                       [--executor-memory 4g] [--dir /tmp/scale-100m] [--keep] [-- more job options]
# With a local master the executor is the driver's JVM, so there is one JVM and one log. With another
# master (standalone, YARN, local-cluster) the executors log to DIR/executor-gc-PID.log on their hosts
# (a path that must be writable there; on one host, as on this VM, they all land in DIR).
# Needs the packaged job (mvn -DskipTests package) and python3. Run it with nothing else busy.
set -euo pipefail

home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tokens=100000000 pieces=1000 heads=2 d=64 dtype=bf16 seed=1 backend=cpu master='local[*]'
driver_memory=4g executor_memory=4g dir=/tmp/scale-100m keep= extra=() partition=
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tokens) tokens="$2"; shift 2 ;;
    --pieces) pieces="$2"; shift 2 ;;
    --partition-tokens) partition="$2"; shift 2 ;;
    --heads) heads="$2"; shift 2 ;;
    --d) d="$2"; shift 2 ;;
    --dtype) dtype="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --backend) backend="$2"; shift 2 ;;
    --master) master="$2"; shift 2 ;;
    --driver-memory) driver_memory="$2"; shift 2 ;;
    --executor-memory) executor_memory="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "scale-100m: unknown option '$1' (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done

target="$home/spark-job/target"
app_jar="$(ls "$target"/spark-job-*-app.jar 2>/dev/null | head -1 || true)"
if [[ -z "$app_jar" || ! -d "$target/lib" || ! -f "$target/jvm.options" ]]; then
  echo "scale-100m: build the job first: (cd $home && mvn -DskipTests package)" >&2
  exit 2
fi
# pieces of a whole number of 64-token chunks, about --pieces of them (unless --partition-tokens)
if [[ -z "$partition" ]]; then
  partition=$(( (tokens + pieces - 1) / pieces ))
  partition=$(( (partition + 63) / 64 * 64 ))
fi
run="T$tokens-N$partition"
out="$dir/$run"
mkdir -p "$dir"
rm -rf "$out" "$dir/$run".driver-gc.log "$dir"/executor-gc-*.log
read -r -a jvm_options < "$target/jvm.options"

echo "scale-100m: --synthetic $tokens,$heads,$d,$d,$dtype,$seed --partition-tokens $partition on $master" \
     "(driver -Xmx$driver_memory$([[ "$master" == local* ]] || echo ", executors $executor_memory")); log in $dir/$run.log" >&2
start=$(date +%s.%N)
TIMEFORMAT='%R %U %S'
{ time java -Xmx"$driver_memory" "${jvm_options[@]}" -Xlog:gc:file="$dir/$run.driver-gc.log" \
  -Dlog4j2.configurationFile="$home/conf/log4j2.properties" -Dlightning.home="$home" \
  -cp "$app_jar:$target/lib/*" dev.lightning.attention.job.LightningMain run \
  --synthetic "$tokens,$heads,$d,$d,$dtype,$seed" --output "$out" --output-mode checksums \
  --partition-tokens "$partition" --backend "$backend" --master "$master" \
  --conf spark.executor.memory="$executor_memory" \
  --conf spark.executor.extraJavaOptions="-Xlog:gc:file=$dir/executor-gc-%p.log" \
  ${extra[@]+"${extra[@]}"} > "$dir/$run.log" 2>&1 ; } 2> "$dir/$run.time" || { tail -20 "$dir/$run.log" >&2; exit 1; }
end=$(date +%s.%N)

python3 - "$out/_lightning_report.json" "$dir/$run.driver-gc.log" "$dir" "$start" "$end" "$master" "$dir/$run.time" <<'PY'
import glob, json, re, sys
report, driver_log, folder, start, end, master, times = sys.argv[1:]
r = json.load(open(report))
def peaks(path):
    # G1's -Xlog:gc lines: "GC(3) Pause Young (Normal) (G1 Evacuation Pause) 120M->30M(512M) 5.1ms"
    before = after = 0
    for line in open(path, errors="replace"):
        m = re.search(r"(\d+)M->(\d+)M\((\d+)M\)", line)
        if m:
            before, after = max(before, int(m.group(1))), max(after, int(m.group(2)))
    return before, after
print("| | |\n|---|---|")
print(f"| tokens | {r['tokens']:,} |")
print(f"| pieces (partitions) | {r['pieces']:,} ({r['partitions']:,}) |")
for title, p in r["passes"].items():
    rate = f", {p['tokensPerSecond'] / 1e3:,.1f} K tokens/s" if "tokensPerSecond" in p else ""
    print(f"| {title} | {p['seconds']:.1f} s{rate} |")
print(f"| Spark start | {r['sparkStartSeconds']:.1f} s |")
real, user, system = (float(x) for x in open(times).read().split()[-3:])
print(f"| whole run (process) | {real:.1f} s wall, {user + system:.1f} s CPU (user + system, all threads) |")
b, a = peaks(driver_log)
print(f"| driver JVM{' (and executor: local mode)' if master.startswith('local') and not master.startswith('local-cluster') else ''}: "
      f"peak heap before GC / largest live set after GC | {b} MiB / {a} MiB |")
for log in sorted(glob.glob(folder + "/executor-gc-*.log")):
    b, a = peaks(log)
    print(f"| executor {log.rsplit('-', 1)[1][:-4]}: peak heap before GC / after GC | {b} MiB / {a} MiB |")
# the executors' heap as their own JVMs measured it (GC notifications, carried back in the task reports)
for title, p in r["passes"].items():
    for e in p.get("executors", []):
        h = e.get("heap")
        if h and h.get("passPeakBeforeCollectionBytes", -1) >= 0:
            print(f"| {title}: executor {e['executor']} heap (its JVM, this pass): peak before GC / largest after GC"
                  f" | {h['passPeakBeforeCollectionBytes'] / 2**20:,.0f} MiB / {h['passLargestAfterCollectionBytes'] / 2**20:,.0f}"
                  f" MiB ({h['collections']} collections so far, max heap {h['maxBytes'] / 2**20:,.0f} MiB) |")
for f in r["files"]:
    c = f.get("checksums", {})
    unchecked = sum(1 for x in c.get("spotChecks", []) if "unchecked" in x)
    print(f"| {f['name']}: o crc32c | {c.get('crc32c')} ({c.get('bytes', 0):,} bytes) |")
    print(f"| spot checks: rows, max rel. error (tolerance) | {len(c.get('spotChecks', [])) - unchecked} checked"
          f"{f', {unchecked} unchecked' if unchecked else ''}, {c.get('spotCheckMaxRelError', float('nan')):.3g} "
          f"({c.get('spotCheckTolerance', float('nan')):.3g}) |")
PY
if [[ -z "$keep" ]]; then
  rm -rf "$out"
fi
