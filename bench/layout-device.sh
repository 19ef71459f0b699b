#!/usr/bin/env bash
# The layout payload (kbw round 1, issue 13 item 2), run as .device/kbw/run.sh with bins.tar.xz (head_layout_bw,
# tc_check of this branch and tc_check_main of main, built with nvcc 13.0, see their headers) beside it: is the [T, H, D] access pattern what holds the kernels at 0.56-0.75 of
# the copy bandwidth? Within SECONDS (the caller's timeout; 150 planned), most important first:
#   0. tc_check (this branch: the paired Hopper kernels for dk = dv = 64, two heads a CTA, family 2)
#      against float64: every family at n <= 1000, then the paired family at every n.
#   1. bench/cuda/head_layout_bw: the forward's data movement alone (cp.async q, k, v into shared
#      memory, o written), checked bitwise first, then timed in the real layout [T, H, D] against the
#      same bytes head-major and as a flat sweep, at the kernels' CTA grids; the D2D copy beside it.
#   2. tc_check --bench (Hopper wgmma family; _n64 at D = 64; the paired kernels at D = 64): forward
#      and states kernels at the gpu-check shapes and CTA counts, with nvidia-smi sampling SM clock
#      and power meanwhile; main's tc_check (tc_check_main) at H = 64 beside it.
#   3. ncu (--clock-control none) on one launch each of the forward and states kernels: DRAM
#      throughput and bytes, issue activity, stall reasons.
# Logs: $OUT/kbw-{machine,layout,bench,smi,ncu}.log
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
if ! command -v nvidia-smi >/dev/null 2>&1; then echo "kbw: no nvidia-smi here, nothing to run"; exit 0; fi
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,memory.used --format=csv
  echo "ncu: ${NCU:-none} $([ -n "$NCU" ] && "$NCU" --version | tail -1)"; } > "$out/kbw-machine.log" 2>&1
cat "$out/kbw-machine.log"

echo "== 0. tc_check against float64 ($(left) s left)"
if fits 30; then
  timeout 22 "$w/tc_check" --max-n 1000 > "$out/kbw-tc-check.log" 2>&1; echo "tc_check --max-n 1000 rc=$?"
  grep -E "FAIL|passed" "$out/kbw-tc-check.log" | tail -4
  timeout 8 "$w/tc_check" --family 2 >> "$out/kbw-tc-check.log" 2>&1; echo "tc_check --family 2 rc=$?"
  grep -E "FAIL|passed" "$out/kbw-tc-check.log" | tail -3
fi

echo "== 1. head_layout_bw ($(left) s left)"
if fits 28; then
  timeout 28 "$w/head_layout_bw" > "$out/kbw-layout.log" 2>&1; echo "head_layout_bw rc=$?"
  grep -E "^check|^copy" "$out/kbw-layout.log" | head -12
  grep -E "H=64 D=128 2 seg|H=96|H=16 D=64 8 seg" "$out/kbw-layout.log" | head -20
fi

echo "== 2. tc_check --bench ($(left) s left)"
if fits 40; then
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,utilization.gpu,clocks_throttle_reasons.active \
    --format=csv -lms 100 > "$out/kbw-smi.log" 2>&1 &
  smi=$!
  b0=$SECONDS
  {
    echo "start $(date -u +%s.%N)"
    for a in "2 524288 16 64 4,8,16,33" "1 524288 16 64 4,8,16,33" "0 524288 16 64 8,16,33" "1 1048576 64 128 1,2,1,2" \
             "main" "2 262144 64 64 1,2" "1 262144 64 64 1,2" "1 1048576 96 128 1" "1 1048576 48 128 2,5" \
             "1 1048576 8 128 16,33"; do
      if [ "$a" = main ]; then
        echo "-- main's tc_check, family 1: n=1048576 H=64 d=128 S=1,2"
        timeout 12 "$w/tc_check_main" --family 1 --bench 1048576; echo "rc=$?"
        continue
      fi
      set -- $a
      (( SECONDS - b0 < 34 )) || { echo "skipped $a: time"; continue; }
      echo "-- family $1: n=$2 H=$3 d=$4 S=$5"
      timeout 12 "$w/tc_check" --family "$1" --bench "$2" "$3" "$4" "$5"; echo "rc=$?"
    done
  } > "$out/kbw-bench.log" 2>&1
  kill "$smi" 2>/dev/null; wait "$smi" 2>/dev/null
  grep -E "bench|rc=|skipped" "$out/kbw-bench.log" | cut -c1-160
fi

echo "== 3. ncu ($(left) s left)"
if [ -n "$NCU" ]; then
  : > "$out/kbw-ncu.log"
  prof() {  # prof LABEL KERNEL_REGEX SKIP TC_CHECK_ARGS...
    local label=$1 kre=$2 skip=$3; shift 3
    fits 22 || { echo "ncu $label: skipped (time)"; return; }
    echo "==== $label" >> "$out/kbw-ncu.log"
    timeout 22 "$NCU" --clock-control none -k "regex:$kre" --launch-skip "$skip" --launch-count 1 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats --section WarpStateStats \
      --section Occupancy --section LaunchStats \
      --metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
      "$@" >> "$out/kbw-ncu.log" 2>&1
    echo "ncu $label rc=$?"
  }
  prof "wg forward T=262144 H=64 D=128 S=2" lightning_forward_wg 2 "$w/tc_check" --family 1 --bench 262144 64 128 2
  prof "pair forward T=524288 H=16 D=64 S=8" lightning_forward_wg_pair 2 "$w/tc_check" --family 2 --bench 524288 16 64 8
  prof "wg states T=262144 H=64 D=128 S=2" lightning_states_wg 2 "$w/tc_check" --family 1 --bench 262144 64 128 2
  prof "wg forward (padded) T=524288 H=16 D=64 S=8" lightning_forward_wg 2 "$w/tc_check" --family 1 --bench 524288 16 64 8
  prof "n64 forward T=524288 H=16 D=64 S=8" lightning_forward_tc 2 "$w/tc_check" --family 0 --bench 524288 16 64 8
  prof "skeleton thd T=262144 H=64 D=128 S=2" skel 0 "$w/head_layout_bw" --one 0 262144 64 128 2 3 1
  prof "skeleton htd T=262144 H=64 D=128 S=2" skel 0 "$w/head_layout_bw" --one 1 262144 64 128 2 3 1
  grep -E "^====|Duration|DRAM Throughput|Memory Throughput|dram__bytes|SM Frequency|Issue Slots Busy|No Eligible|Compute \(SM\) Throughput" "$out/kbw-ncu.log" | head -60
else
  echo "no ncu"
fi
echo "== done in $((SECONDS - start)) s"
