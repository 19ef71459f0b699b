#!/usr/bin/env bash
# Issue 13 item 2 on a GPU machine without Maven (the segfill payload, 2026-12-03), most important
# first, within SECONDS (default 118) in all:
#   1. tc_check (the standalone kernel check against float64, both tensor-core families, n <= 1000),
#      built from this branch: covers the new _n64 mma.sync kernels at dk <= 64;
#   2. GpuBackendTest on this branch's classes (split runs against float64 through the new segment
#      plans, every kernel family, the _n64 kernels at Dk <= 64);
#   3. DeviceBench before (BASE: main's classes) and after (this branch's classes), alternated,
#      twice where time is left: T = 1M, D = 128 at H = 48, 96, 64, 8, and T = 524,288, H = 16,
#      Dk = Dv = 64; data on the device, median of 10, with the share of the copy bandwidth; the
#      first "after" also times other cuts of each shape (--plans), to check the plan's model.
# Environment: OUT (logs, NAME-*.log), JRE_TAR (a JRE tar.xz unpacking to jre/), BUNDLE (an unpacked
# bin/gpu-bundle of main: classes, test-classes, lib/*.jar, junit-platform-console-standalone.jar).
#   bench/history/segfill-device.sh PAYLOAD.tar.xz [SECONDS]
# PAYLOAD holds segfill/{classes,test-classes} (this branch's gpu-worker), segfill/fb-new and
# segfill/fb-base (machine code of this branch's and of main's lightning modules: NAME.fatbin, loaded
# in place of the PTX; main's only where the bundle's PTX is the one they were built from, whose
# checksums are in segfill/base-ptx.md5) and segfill/tc_check.
set -uo pipefail
payload="$(cd "$(dirname "${1:?usage: bench/history/segfill-device.sh PAYLOAD.tar.xz [SECONDS]}")" && pwd)/$(basename "$1")"
budget="${2:-118}"
start=$SECONDS
out="${OUT:-$(mktemp -d)}"
L="$out/segfill"
left() { echo $((budget - (SECONDS - start))); }
# stage SECONDS: whether a stage of at most SECONDS still fits (2 s kept for the summary)
fits() { (( $(left) > $1 + 2 )); }
w=/tmp/segfill-run
rm -rf "$w" && mkdir -p "$w"
tar -C "$w" -xJf "$payload" || { echo "segfill: cannot unpack $payload"; exit 1; }
tar -C "$w" -xJf "${JRE_TAR:?JRE_TAR unset}" || { echo "segfill: cannot unpack $JRE_TAR"; exit 1; }
export JAVA_HOME="$w/jre" PATH="$w/jre/bin:$PATH"
B="${BUNDLE:?BUNDLE unset}"
P="$w/segfill"
libs="$(ls "$B"/lib/*.jar | tr '\n' ':')"
NEW_CP="$P/fb-new:$P/classes:$P/test-classes:$B/classes:$B/test-classes:$libs"
ptxdir=dev/lightning/attention/engine/cuda
if (cd "$B/classes" && md5sum -c --status "$P/base-ptx.md5"); then
  BASE_CP="$P/fb-base:$B/classes:$libs"
  base_note="main's classes, machine code of their PTX"
else
  BASE_CP="$B/classes:$libs"
  base_note="main's classes, their PTX compiled by the driver (the bundle's PTX is not the one fb-base was built from)"
fi
J=(java -ea --add-modules jdk.incubator.vector -Xmx24g)
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.used --format=csv; nproc; } > "$L-machine.log" 2>&1
cat "$L-machine.log"

echo "== 1. tc_check --max-n 1000 ($(left) s left)"
if fits 12; then
  timeout 12 "$P/tc_check" --max-n 1000 > "$L-tc-check.log" 2>&1; echo "tc_check rc=$?"
  grep -E "FAIL|passed" "$L-tc-check.log" | tail -5
fi

echo "== 2. GpuBackendTest, this branch ($(left) s left)"
if fits 45; then
  timeout 45 "${J[@]}" -jar "$B/junit-platform-console-standalone.jar" execute --class-path "$NEW_CP" \
    --select-class dev.lightning.attention.engine.cuda.GpuBackendTest --details=tree --disable-banner \
    > "$L-gpu-tests.log" 2>&1
  echo "GpuBackendTest rc=$?"
  grep -E "tests (successful|failed|aborted)|finished after|✘" "$L-gpu-tests.log" | head -20
fi

shapes=1048576x48x128,1048576x96x128,1048576x64x128,1048576x8x128,524288x16x64
# plans timed beside the chosen one (after only): SxE = S segments, E pass-1 sub-segments a segment
plans="48:2x2/2x5/3x1/5x1/5x2/11x1,96:2x1/3x1/11x1,64:1x1/2x1/2x4,8:16x1/12x1/33x1/66x1,16:8x1/6x3/16x1/33x1/4x2"
bench() {  # bench NAME CP SECONDS [DeviceBench options]
  timeout "$3" "${J[@]}" -cp "$2" dev.lightning.attention.bench.DeviceBench --shapes "$shapes" --checks none \
    --variants none --host-shape none --runs 10 "${@:4}" > "$L-bench-$1.log" 2>&1
  local rc=$?
  echo "DeviceBench $1 rc=$rc"
  grep -E "RESULT|Exception|Error" "$L-bench-$1.log" | cut -c1-220
}
echo "== 3. DeviceBench, before = $base_note; after = this branch ($(left) s left)"
if fits 20; then bench before "$BASE_CP" 20; fi
if fits 35; then bench after "$NEW_CP" 35 --plans "$plans"; fi
if fits 20; then bench before-2 "$BASE_CP" 20; fi
if fits 20; then bench after-2 "$NEW_CP" 20; fi
echo "== done in $((SECONDS - start)) s"
