#!/usr/bin/env bash
# Sequences as table rows through the job: a blocks table of random BF16 sequences (H heads of
# width D, one row per sequence) written by TablesBench, then `bin/lightning run` on it with
# Parquet in and out, timed; the run report gives the tasks per pass. Build first:
#   mvn -o -q -pl spark-job -am package -DskipTests
# Usage: bench/tables-bench.sh SEQUENCES TOKENS [H] [D]      (WORK: scratch directory)
set -euo pipefail
cd "$(dirname "$0")/.."
n=$1 t=$2 h=${3:-8} d=${4:-128}
work=${WORK:-/tmp/lightning-tables-bench}
in="$work/in-${n}x${t}" out="$work/out-${n}x${t}"
mkdir -p "$work"
cp="spark-job/target/classes:gpu-worker/target/classes:partitioner/target/classes:spark-job/target/lib/*"
if [[ ! -d "$in" ]]; then
  # shellcheck disable=SC2046
  java -Xmx4g $(cat spark-job/target/jvm.options) -cp "$cp" dev.lightning.attention.job.tables.TablesBench "$in" "$n" "$t" "$h" "$d" 8 \
    2>/dev/null
fi
echo "input: $(du -sh "$in" | cut -f1) in $(ls "$in"/*.parquet | wc -l) files"
/usr/bin/time -f "wall %e s, max RSS %M KB" bin/lightning run --input "$in" --output "$out" --backend cpu --overwrite \
  2> >(grep -v ' INFO \| WARN ' >&2)
python3 - "$out/_lightning_report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("report: %d sequences, %d tokens, %d tasks per pass, %.1f s, %.0f tokens/s" % (
    r["sequences"], r["tokens"], r["tasksPerPass"], r["seconds"], r["tokensPerSecond"]))
for name, p in r["passes"].items():
    print("  %s: %.1f s" % (name, p["seconds"]))
PY
echo "output: o $(du -sh "$out/o" | cut -f1), final_states $(du -sh "$out/final_states" | cut -f1)"
