#!/usr/bin/env bash
# The kbw round-1 payload (issue 13 item 2), run as .device/kbw/run.sh with bins.tar.xz (head_layout_bw; tc_check
# of this branch, tc_check_p128 of it with -DLIGHTNING_WG_PAIR_N64=0, tc_check_main of main; nvcc 13.0) and
# java.tar.xz (kbw/classes, kbw/test-classes of gpu-worker, kbw/fb: lightning.fatbin and lightning_sm90a.fatbin of
# this branch) beside it; within 150 s, most important first:
#   0. tc_check (this branch; family 2 = the new paired Hopper kernels for dk = dv = 64, two heads a
#      CTA) against float64: every family at n <= 1000, then the paired family at every n, and the
#      paired family of tc_check_p128 (built with LIGHTNING_WG_PAIR_N64=0: the m64n128 state).
#   1. GpuBackendTest, the paired-heads and segment-plan methods, on this branch's classes (fat binaries
#      of its lightning modules, so nothing is JIT-compiled): float64, split against whole, which
#      kernels were chosen.
#   2. DeviceBench --ab at T = 524,288, H = 16, D = 64: the backend's choice (paired) against the
#      unpaired choice (_n64 mma.sync) and against the Hopper kernels padded to Dk = 128; copy bandwidth.
#   3. bench/cuda/head_layout_bw: the forward's data movement alone (cp.async q, k, v in, o out),
#      checked bitwise, in the real [T, H, D] layout against head-major and a flat sweep, at the
#      kernels' CTA grids: does the layout cost bandwidth?
#   4. tc_check --bench: forward and states kernels at the gpu-check shapes, nvidia-smi sampling
#      SM clock and power meanwhile; main's tc_check (tc_check_main) at H = 64 beside it.
#   5. ncu (--clock-control none) on kernel launches, as time allows.
# Needs OUT, and for 1-2 JRE_TAR and BUNDLE (the lead's call sets them). Logs: $OUT/kbw-{tc-check,gpu-tests,ab,
# layout,bench,ncu}.log
set -uo pipefail
budget=150
start=$SECONDS
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${OUT:-$(mktemp -d)}"
left() { echo $((budget - (SECONDS - start))); }
fits() { (( $(left) > $1 + 3 )); }
w=/tmp/kbw-run
rm -rf "$w" && mkdir -p "$w"
tar -C "$w" -xJf "$here/bins.tar.xz" || { echo "kbw: cannot unpack bins.tar.xz"; exit 1; }
tar -C "$w" -xJf "$here/java.tar.xz" || { echo "kbw: cannot unpack java.tar.xz"; exit 1; }
if ! command -v nvidia-smi >/dev/null 2>&1; then echo "kbw: no nvidia-smi here, nothing to run"; exit 0; fi
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,memory.used --format=csv
  echo "ncu: ${NCU:-none}"; } > "$out/kbw-tc-check.log" 2>&1
cat "$out/kbw-tc-check.log"

echo "== 0. tc_check against float64 ($(left) s left)"
timeout 22 "$w/tc_check" --max-n 1000 >> "$out/kbw-tc-check.log" 2>&1; echo "tc_check --max-n 1000 rc=$?"
grep -E "FAIL|passed" "$out/kbw-tc-check.log" | tail -4
timeout 8 "$w/tc_check" --family 2 >> "$out/kbw-tc-check.log" 2>&1; echo "tc_check --family 2 rc=$?"
grep -E "FAIL|passed" "$out/kbw-tc-check.log" | tail -3
echo "-- tc_check_p128 (LIGHTNING_WG_PAIR_N64=0)" >> "$out/kbw-tc-check.log"
timeout 8 "$w/tc_check_p128" --family 2 >> "$out/kbw-tc-check.log" 2>&1; echo "tc_check_p128 --family 2 rc=$?"
grep -E "FAIL|passed" "$out/kbw-tc-check.log" | tail -2

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

echo "== 1. GpuBackendTest: paired heads, segment plans ($(left) s left)"
if (( java_ok )) && fits 35; then
  G=dev.lightning.attention.engine.cuda.GpuBackendTest
  timeout 35 "${J[@]}" -jar "$BUNDLE/junit-platform-console-standalone.jar" execute --class-path "$CP" \
    --select-method "$G#pairedHeadsAgreeWithTheRecurrence(dev.lightning.attention.engine.VariantCase)" \
    --select-method "$G#pairedHeadsCutIntoSlicesAndSegmentsAgreeWithTheWholeWindow(dev.lightning.attention.engine.VariantCase)" \
    --select-method "$G#segmentPlansAgreeWithTheRecurrence(int, int, int, int)" \
    --details=tree --disable-banner > "$out/kbw-gpu-tests.log" 2>&1
  echo "GpuBackendTest rc=$?"
  grep -E "tests (successful|failed|aborted)|✘" "$out/kbw-gpu-tests.log" | head -12
fi

echo "== 2. DeviceBench --ab ($(left) s left)"
if (( java_ok )) && fits 24; then
  timeout 24 "${J[@]}" -cp "$CP" dev.lightning.attention.bench.DeviceBench --shapes none --checks none --variants none \
    --host-shape none --runs 10 --rounds 5 --ab 524288x16x64:unpaired,524288x16x64:hopper,262144x64x64:unpaired \
    > "$out/kbw-ab.log" 2>&1
  echo "DeviceBench rc=$?"
  grep -E "RESULT (copy|ab )|Exception|Error" "$out/kbw-ab.log" | cut -c1-250
fi

echo "== 3. head_layout_bw ($(left) s left)"
if fits 20; then
  timeout 20 "$w/head_layout_bw" > "$out/kbw-layout.log" 2>&1; echo "head_layout_bw rc=$?"
  grep -E "^check|^copy" "$out/kbw-layout.log" | head -12
  grep -E "H=64 D=128 2 seg|H=96|H=16 D=64 8 seg" "$out/kbw-layout.log" | head -20
fi

echo "== 4. tc_check --bench ($(left) s left)"
if fits 16; then
  cap=$(( $(left) - 25 )); (( cap > 30 )) && cap=30; (( cap < 12 )) && cap=12
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_throttle_reasons.active \
    --format=csv -lms 100 > "$w/smi.log" 2>&1 &
  smi=$!
  b0=$SECONDS
  {
    echo "start $(date -u +%s.%N)"
    for a in "2 524288 16 64 4,8,16" "p128" "1 524288 16 64 8" "0 524288 16 64 8" "1 1048576 64 128 1,2,1,2" \
             "main" "1 1048576 96 128 1" "1 1048576 48 128 2" "1 1048576 8 128 16,33"; do
      (( SECONDS - b0 < cap - 4 )) || { echo "skipped $a: time"; continue; }
      if [ "$a" = p128 ]; then
        echo "-- tc_check_p128 (pair kernels with the m64n128 state), family 2: n=524288 H=16 d=64 S=4,8,16"
        timeout 6 "$w/tc_check_p128" --family 2 --bench 524288 16 64 4,8,16; echo "rc=$?"
        continue
      fi
      if [ "$a" = main ]; then
        echo "-- main's tc_check, family 1: n=1048576 H=64 d=128 S=1,2"
        timeout 6 "$w/tc_check_main" --family 1 --bench 1048576; echo "rc=$?"
        continue
      fi
      set -- $a
      echo "-- family $1: n=$2 H=$3 d=$4 S=$5"
      timeout 6 "$w/tc_check" --family "$1" --bench "$2" "$3" "$4" "$5"; echo "rc=$?"
    done
  } > "$out/kbw-bench.log" 2>&1
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  { echo "== nvidia-smi samples"; cat "$w/smi.log"; } >> "$out/kbw-bench.log"
  grep -E "bench|rc=[^0]|skipped" "$out/kbw-bench.log" | cut -c1-150
fi

echo "== 5. ncu ($(left) s left)"
if [ -n "$NCU" ]; then
  : > "$out/kbw-ncu.log"
  prof() {  # prof LABEL KERNEL_REGEX SKIP TC_CHECK_ARGS...
    local label=$1 kre=$2 skip=$3; shift 3
    fits 20 || { echo "ncu $label: skipped (time)"; return; }
    echo "==== $label" >> "$out/kbw-ncu.log"
    timeout 20 "$NCU" --clock-control none -k "regex:$kre" --launch-skip "$skip" --launch-count 1 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats \
      --section Occupancy --section LaunchStats \
      --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
      "$@" >> "$out/kbw-ncu.log" 2>&1
    echo "ncu $label rc=$?"
  }
  prof "wg forward T=262144 H=64 D=128 S=2" lightning_forward_wg_bf16 2 "$w/tc_check" --family 1 --bench 262144 64 128 2
  prof "pair forward T=524288 H=16 D=64 S=8" lightning_forward_wg_pair 2 "$w/tc_check" --family 2 --bench 524288 16 64 8
  prof "wg states T=262144 H=64 D=128 S=2" lightning_states_wg_bf16 2 "$w/tc_check" --family 1 --bench 262144 64 128 2
  prof "skeleton thd T=262144 H=64 D=128 S=2" skel 0 "$w/head_layout_bw" --one 0 262144 64 128 2 3 1
  grep -E "^====|Duration|DRAM Throughput|dram__bytes|SM Frequency|Issue Slots Busy|No Eligible" "$out/kbw-ncu.log" | head -40
else
  echo "no ncu"
fi
echo "== done in $((SECONDS - start)) s"
