#!/usr/bin/env bash
# Scan and driver at many pieces (issue 16): runs the job once over INPUT with --partition-tokens N
# and reports the wall time of each pass (the job's own lines) and the driver JVM's heap from its
# GC log: the largest heap in use after a collection (what the driver retains) and before one (its
# peak). In local mode the tasks run in the driver JVM too; with tiny pieces they hold little.
#   bench/pieces.sh INPUT N [extra job options...]
# Environment: LIGHTNING_DRIVER_MEMORY (default 4g), MASTER (default local[2]), WORK (default /tmp).
set -euo pipefail
home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
input=$1; tokens=$2; shift 2
work=${WORK:-/tmp}/pieces-$tokens-$$
mkdir -p "$work"
export LIGHTNING_DRIVER_MEMORY=${LIGHTNING_DRIVER_MEMORY:-4g}
start=$(date +%s.%N)
JAVA_TOOL_OPTIONS="-Xlog:gc:file=$work/gc.log" "$home/bin/lightning" run --input "$input" \
  --output "$work/out" --partition-tokens "$tokens" --backend cpu --master "${MASTER:-local[2]}" \
  --progress-seconds 60 "$@" > "$work/stdout" 2> "$work/stderr" || { tail -20 "$work/stderr"; exit 1; }
end=$(date +%s.%N)
grep -E '^lightning: ([0-9]+ sequences|pass|scan|assemble|done)' "$work/stdout" | grep -v ' done, .*[0-9] s$' -c >/dev/null || true
grep -E '^lightning: ([0-9]+ sequences|pass|scan|assemble|done)' "$work/stdout"
# heap after / before each collection, in MB: "... 120M->30M(512M) ..."
python3 - "$work/gc.log" "$end" "$start" <<'PY'
import re, sys
after = before = 0.0; n = 0
for line in open(sys.argv[1]):
    m = re.search(r'(\d+)M->(\d+)M\((\d+)M\)', line)
    if m:
        n += 1; before = max(before, float(m.group(1))); after = max(after, float(m.group(2)))
print(f"driver heap: {n} collections, peak in use before a collection {before:.0f} MB, "
      f"largest retained after a collection {after:.0f} MB; wall {float(sys.argv[2]) - float(sys.argv[3]):.1f} s")
PY
report="$work/out/_lightning_report.json"
ls -la "$report" | awk '{print "report bytes:", $5}'
# the run's own figures, where its report has them: tasks per pass and the driver heap from its GC notifications
python3 - "$report" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for title, p in r.get("passes", {}).items():
    if "tasks" in p:
        t = p["taskSeconds"]
        print(f"  {title}: {p['seconds']:.1f} s, {p['tasks']} tasks, task s p50 {t.get('p50', 0):.3f} max {t.get('max', 0):.3f}")
m = r.get("driverMemory")
if m:
    print(f"  driver (report): largest after a collection {m.get('largestAfterCollectionBytes', 0) / 2**20:.0f} MB, "
          f"sum of pool peaks {m['sumOfPoolPeaksBytes'] / 2**20:.0f} MB, {m['collections']} collections")
PY
cp "$report" "$work/report.json"
rm -rf "$work/out"
echo "kept: $work (gc.log, stdout, report.json)"
