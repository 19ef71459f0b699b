#!/usr/bin/env bash
# The kbw round-2 payload (issue 13 item 2), run as .device/kbw/run.sh with bins.tar.xz (tc_check and tc_check_p128
# of this branch, nvcc 13.0), java.tar.xz (as for bench/history/layout-device.sh), fla.tar.xz (an fla checkout, not part
# of this project) and bench/fla_bench.py beside it: the paired Hopper kernels for Dk = Dv = 64, within 120 s:
#   0. tc_check --family 2 against float64 (this branch; and tc_check_p128, the m64n128-state build)
#   1. GpuBackendTest, the whole class, on this branch's classes (fat binaries of its lightning modules)
#   2. DeviceBench at T = 524,288, H = 16, D = 64: the chosen plan and kernels with the share of the copy
#      bandwidth, two other cuts (--plans), and --ab 7 rounds against the unpaired choice (_n64) and
#      the Hopper kernels padded to Dk = 128
#   3. fla (chunk_simple_gla, tuned at H = 16, D = 64 in a warm-up process that runs beside stage 1,
#      then timed alone) on the same shape
#   4. tc_check --bench: the paired kernels' two state builds, forward and states kernels at S = 8, 16, 33
# Needs OUT, JRE_TAR, BUNDLE (the lead's call). Logs: $OUT/kbw-{tc-check,gpu-tests,bench,fla}.log
set -uo pipefail
budget=${KBW_SECONDS:-120}
start=$SECONDS
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$(mktemp -d)}"
left() { echo $((budget - (SECONDS - start))); }
fits() { (( $(left) > $1 + 2 )); }
w=/tmp/kbw-run2
rm -rf "$w" && mkdir -p "$w/fla"
tar -C "$w" -xJf "$here/bins.tar.xz" && tar -C "$w" -xJf "$here/java.tar.xz" && tar -C "$w/fla" -xJf "$here/fla.tar.xz" \
  || { echo "kbw: cannot unpack the payload"; exit 1; }
if ! command -v nvidia-smi >/dev/null 2>&1; then echo "kbw: no nvidia-smi here, nothing to run"; exit 0; fi

# fla's warm-up (compiles and tunes its kernels at H = 16, D = 64; nothing of it is reported as a timing)
( SHAPES=8192x16x64 FLA_BENCH_CHECK=0 FLA_PATH="$w/fla" PYTHONUNBUFFERED=1 timeout 75 python3 "$here/fla_bench.py" \
    > "$w/fla-warmup.log" 2>&1 ) &
warm=$!

{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; } > "$out/kbw-tc-check.log" 2>&1
echo "== 0. tc_check --family 2 ($(left) s left)"
timeout 12 "$w/tc_check" --family 2 >> "$out/kbw-tc-check.log" 2>&1; echo "tc_check --family 2 rc=$?"
echo "-- tc_check_p128 (LIGHTNING_WG_PAIR_N64=0)" >> "$out/kbw-tc-check.log"
timeout 12 "$w/tc_check_p128" --family 2 >> "$out/kbw-tc-check.log" 2>&1; echo "tc_check_p128 --family 2 rc=$?"
grep -E "FAIL|passed|rror" "$out/kbw-tc-check.log" | head -8

java_ok=0
if [ -n "${JRE_TAR:-}" ] && [ -n "${BUNDLE:-}" ] && tar -C "$w" -xJf "$JRE_TAR"; then
  java_ok=1
  export JAVA_HOME="$w/jre" PATH="$w/jre/bin:$PATH"
  libs="$(ls "$BUNDLE"/lib/*.jar | tr '\n' ':')"
  CP="$w/kbw/fb:$w/kbw/classes:$w/kbw/test-classes:$BUNDLE/classes:$BUNDLE/test-classes:$libs"
  J=(java -ea --add-modules jdk.incubator.vector -Xmx24g)
else
  echo "kbw: no JRE_TAR/BUNDLE (or the JRE does not unpack): Java stages skipped"
fi

echo "== 1. GpuBackendTest ($(left) s left)"
if (( java_ok )) && fits 30; then
  cap=$(( $(left) - 45 )); (( cap > 60 )) && cap=60
  timeout "$cap" "${J[@]}" -jar "$BUNDLE/junit-platform-console-standalone.jar" execute --class-path "$CP" \
    --select-class dev.lightning.attention.engine.cuda.GpuBackendTest --details=testfeed --disable-banner --disable-ansi-colors \
    > "$out/kbw-gpu-tests.log" 2>&1
  echo "GpuBackendTest rc=$? (cap $cap s): $(grep -c ':: SUCCESSFUL' "$out/kbw-gpu-tests.log") successful, $(grep -c ':: FAILED' "$out/kbw-gpu-tests.log") failed, $(grep -c ':: ABORTED' "$out/kbw-gpu-tests.log") aborted"
  grep -E ":: FAILED|tests (successful|failed|aborted)|finished after" "$out/kbw-gpu-tests.log" | head -8
fi
# the warm-up must be over before anything is timed
if kill -0 "$warm" 2>/dev/null; then
  echo "waiting for fla's warm-up ($(left) s left)"
  while kill -0 "$warm" 2>/dev/null && fits 25; do sleep 1; done
  kill "$warm" 2>/dev/null
fi
wait "$warm" 2>/dev/null; echo "fla warm-up rc=$?"

echo "== 2. DeviceBench ($(left) s left)"
if (( java_ok )) && fits 14; then
  cap=$(( $(left) - 12 )); (( cap > 26 )) && cap=26
  timeout "$cap" "${J[@]}" -cp "$CP" dev.lightning.attention.bench.DeviceBench --shapes 524288x16x64 --checks none \
    --variants none --host-shape none --runs 10 --plans 16:16x1/66x1 --rounds 7 \
    --ab 524288x16x64:unpaired,524288x16x64:hopper > "$out/kbw-bench.log" 2>&1
  echo "DeviceBench rc=$? (cap $cap s)"
  grep -E "RESULT (copy|ab |ours|two|plan)|Exception|Error" "$out/kbw-bench.log" | cut -c1-230
fi

echo "== 3. fla ($(left) s left)"
if fits 8; then
  { echo "== warm-up (beside GpuBackendTest; not a timing)"; cat "$w/fla-warmup.log"; echo "== timed alone"; } > "$out/kbw-fla.log"
  SHAPES=524288x16x64 FLA_BENCH_CHECK=0 FLA_PATH="$w/fla" PYTHONUNBUFFERED=1 timeout $(( $(left) - 6 )) python3 "$here/fla_bench.py" \
    >> "$out/kbw-fla.log" 2>&1
  echo "fla rc=$?"
  grep -E "RESULT|Error" "$out/kbw-fla.log" | tail -3
fi

echo "== 4. tc_check --bench ($(left) s left)"
if fits 4; then
  for b in tc_check tc_check_p128; do
    fits 2 || break
    echo "-- $b --family 2 --bench 524288 16 64 8,16,33" >> "$out/kbw-bench.log"
    timeout $(( $(left) - 2 > 5 ? 5 : $(left) - 2 )) "$w/$b" --family 2 --bench 524288 16 64 8,16,33 >> "$out/kbw-bench.log" 2>&1
    echo "$b rc=$?"
  done
  grep -E "^bench wgp" "$out/kbw-bench.log" | cut -c1-120
fi
echo "== done in $((SECONDS - start)) s"
