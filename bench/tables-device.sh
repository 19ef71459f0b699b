#!/usr/bin/env bash
# Table runs (Parquet in and out) on a GPU machine, as a user runs them: first the GPU test of the
# table path (TablesGpuTest: the batch step and the pieces path on the GPU against the float64
# recurrence and the CPU backend), then timed runs of `bin/lightning run --backend gpu` over
# tables of many short sequences that each continue a stored state (--initial-states), H = 8,
# D = 128, BF16, with the job's tokens/s from its run report. Prints one RESULT line per figure.
#   bench/tables-device.sh
# Needs java (JAVA_HOME) and the build in spark-job/target: a lean runtime made by
# `bin/lean-runtime --tables`, extracted into this checkout, is enough (no Maven, no network).
# Environment:
#   BACKEND=gpu|cpu   default gpu; cpu is the dry run for a machine without a GPU
#   CASES="NxT ..."   default "100000x64 fillx1": N sequences of T new tokens, each with a stored
#                     state; N = fill takes as many as the free disk holds (see MAX_N)
#   H=8 D=128 FILES=16 (Parquet files of each generated table)
#   MAX_N             the most sequences a "fill" case takes (default: no limit but the disk's)
#   TESTS=DIR         DIR/classes (the tests module's test classes) and DIR/junit-platform-console-standalone.jar:
#                     runs TablesGpuTest first; unset: no test
#   WORK=DIR          inputs and outputs (default /tmp/lightning-tables-device); each case's are removed after it
#   CASE_TIMEOUT=S    the test, and each case's generation and run, stopped after S seconds (default 240)
#   DROP_CACHES=0     keeps the page cache before each run (default: dropped, so the run reads from the disk)
# Exit status: non-zero if the test or a case failed.
set -uo pipefail
home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
backend="${BACKEND:-gpu}"
cases="${CASES:-100000x64 fillx1}"
h="${H:-8}" d="${D:-128}" files="${FILES:-16}"
work="${WORK:-/tmp/lightning-tables-device}"
case_timeout="${CASE_TIMEOUT:-240}"
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
target="$home/spark-job/target"
app_jar=$(ls "$target"/spark-job-*-app.jar | head -n 1)
read -r -a jvm_options < "$target/jvm.options"
classpath="$app_jar"
for jar in "$target"/lib/*.jar; do classpath="$classpath:$jar"; done   # the JUnit launcher takes no wildcards
failed=()
mkdir -p "$work"

echo "== machine"
"$java_bin" -version 2>&1 | head -1
nproc; free -g | head -2; df -h "$work" | tail -1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

if [[ -n "${TESTS:-}" ]]; then
  echo "== TablesGpuTest (backend gpu against float64 and the CPU backend)"
  timeout "$case_timeout" "$java_bin" "${jvm_options[@]}" -jar "$TESTS/junit-platform-console-standalone.jar" execute \
    --class-path "$TESTS/classes:$classpath" --select-class dev.lightning.attention.it.TablesGpuTest \
    --details=tree --disable-banner > "$work/test.log" 2>&1
  status=$?
  grep -E "^TablesGpuTest " "$work/test.log"       # the errors measured, per run
  grep -v -E " (INFO|WARN) " "$work/test.log" | tail -n 40
  echo "RESULT test TablesGpuTest status=$status"
  [[ $status -eq 0 ]] || failed+=("TablesGpuTest")
fi

free_bytes() { df -B1 --output=avail "$work" | tail -1; }
drop_caches() {
  [[ "${DROP_CACHES:-1}" == 0 ]] && { echo "kept: DROP_CACHES=0"; return; }
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo "not dropped (not root)"
}

for c in $cases; do
  IFS=x read -r n t <<< "$c"
  # Disk a sequence needs during its run: q, k, v in; its stored state in; both again in the
  # shuffle files; o and the final state out (float32 states of H x D x D).
  qkv=$((t * h * d * 2 * 3)) state=$((h * d * d * 4))
  per=$((2 * (qkv + state) + t * h * d * 2 + state))
  if [[ "$n" == fill ]]; then
    n=$(( $(free_bytes) * 8 / 10 / per ))
    [[ -n "${MAX_N:-}" && $n -gt $MAX_N ]] && n=$MAX_N
    echo "== ${n}x${t}: the most the free disk holds ($(free_bytes) bytes, $per a sequence${MAX_N:+, at most $MAX_N})"
  fi
  name="${n}x${t}"
  need=$((n * per))
  if (( need > $(free_bytes) )); then
    echo "RESULT case $name skipped: needs $need bytes of disk, $(free_bytes) free"
    continue
  fi
  in="$work/in-$name" states="$work/states-$name" out="$work/out-$name"
  rm -rf "$in" "$states" "$out"
  echo "== $name: generating $n sequences of $t tokens with stored states"
  start=$(date +%s.%N)
  timeout "$case_timeout" "$java_bin" "${jvm_options[@]}" -cp "$classpath" dev.lightning.attention.job.tables.TablesBench \
    "$in" "$n" "$t" "$h" "$d" "$files" "$states" > "$work/gen-$name.log" 2>&1 \
    || { tail -20 "$work/gen-$name.log"; failed+=("generate $name"); continue; }
  echo "RESULT generate $name s=$(python3 -c "print('%.1f' % ($(date +%s.%N) - $start))") input_bytes=$(du -sb "$in" | cut -f1) states_bytes=$(du -sb "$states" | cut -f1)"
  echo "== $name: bin/lightning run --backend $backend (page cache $(drop_caches))"
  start=$(date +%s.%N)
  timeout "$case_timeout" "$home/bin/lightning" run --backend "$backend" --input "$in" --initial-states "$states" \
    --output "$out" > "$work/run-$name.log" 2>&1
  status=$?
  end=$(date +%s.%N)
  grep -E "^lightning: " "$work/run-$name.log" | grep -vE " 0/[0-9]+ done" | tail -8
  [[ $status -ne 0 ]] && { tail -30 "$work/run-$name.log"; failed+=("run $name"); }
  python3 - "$name" "$status" "$start" "$end" "$out/_lightning_report.json" "$work/run-$name.log" <<'EOF'
import json, re, sys
name, status, start, end, report = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
# the backends the executors opened, as they announce them ("backend gpu: computing on cuda:0 ...")
backends = sorted(set(re.findall(r"backend \w+: computing on (cuda:\d+|the CPU)", open(sys.argv[6], errors="replace").read())))
try:
    r = json.load(open(report))
except Exception:
    print("RESULT run %s status=%d wall_s=%.1f (no report)" % (name, status, end - start)); sys.exit()
passes = " ".join("%s=%.2fs" % (k.replace(" ", "_"), v["seconds"]) for k, v in r.get("passes", {}).items())
print("RESULT run %s status=%d wall_s=%.1f job_s=%.1f spark_start_s=%.1f sequences=%d tokens=%d continued=%s tasks=%d "
      "tokens_per_s=%.4g backends=%s %s" % (name, status, end - start, r["seconds"], r.get("sparkStartSeconds", 0),
      r["sequences"], r["tokens"], r.get("continued"), r["tasksPerPass"], r["tokensPerSecond"],
      ",".join(backends) or "?", passes))
EOF
  [[ -d "$out" ]] && echo "RESULT output $name o_bytes=$(du -sb "$out/o" 2>/dev/null | cut -f1) final_states_bytes=$(du -sb "$out/final_states" 2>/dev/null | cut -f1)"
  rm -rf "$in" "$states" "$out"
done

if ((${#failed[@]})); then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all stages passed"
