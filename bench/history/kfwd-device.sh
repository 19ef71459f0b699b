#!/usr/bin/env bash
# kfwd (issue 13, the D = 128 forward's consumer instructions) on the device, at most BUDGET s (default 145),
# logs $OUT/kfwd-*.log. From the root of a main checkout: OUT=DIR JRE_TAR=... BUNDLE=... bash .device/kfwd/run.sh
# payload.tar.xz beside this script is made by bench/history/kfwd-payload.sh (its commit in candidate.txt).
#  1. fwd_cost: every build of the Hopper module (base = the shipped code; one flag each; all = the candidate)
#     checked against a float64 recurrence (plain, elu1, normalized), then the plain bf16 forward and states
#     kernels timed alone, T = 1M, D = 128, H = 64 (2 segments) and H = 8 (16 segments), builds interleaved,
#     their order rotated each round; nvidia-smi samples SM clock and power meanwhile;
#  2. tc_check --max-n 1000 of the candidate (and tc_check-NAME of another build when the payload has one), the
#     wgmma and the paired families (float64, odd sizes, dk != dv, bf16 and f16, several segments);
#  3. GpuBackendTest with the candidate's Hopper fat binary ahead of main's kernels.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/${LOG_NAME:-kfwd}"  # LOG_NAME: another helper's payload built with these tools (e.g. kover)
budget=${BUDGET:-145}
left() { echo $((budget - SECONDS)); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "kfwd: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
C="$work/cubin"
builds=()
for f in "$C"/*.cubin; do n=$(basename "$f" .cubin); [[ $n == base ]] || builds+=("$n=$f"); done
echo "== 1. fwd_cost ($(date -u +%T))"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv -lms 500 > "$L-smi.log" 2>&1 &
smi=$!
timeout 60 "$work/fwd_cost" --rounds ${ROUNDS:-40} base="$C/base.cubin" "${builds[@]}" > "$L-fwdcost.log" 2>&1
echo "fwd_cost rc=$? (0: every checked build passed)"
kill $smi 2>/dev/null
grep -E "RESULT (time|checks)|FAILED|rror|copy bandwidth" "$L-fwdcost.log" | cut -c1-170
echo "== 2. tc_check --max-n 1000, families 1 and 2 ($(date -u +%T), $(left) s left)"
for tc in "$work"/tc_check*; do
  n=$(basename "$tc")
  for fam in 1 2; do
    timeout 15 "$tc" --family $fam --max-n 1000 > "$L-$n-f$fam.log" 2>&1
    echo "$n family $fam rc=$?"; tail -n 1 "$L-$n-f$fam.log"
  done
done
echo "== 3. GpuBackendTest on the candidate ($(date -u +%T), $(left) s left)"
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]]; then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH"
  B="$BUNDLE"
  CP="$work/java-override:$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  t=$(( $(left) - 3 )); (( t > 60 )) && t=60
  if (( t > 20 )); then
    timeout $t java --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
      --class-path "$CP" --select-class dev.lightning.attention.engine.cuda.GpuBackendTest --details=tree --disable-banner \
      > "$L-gpu-tests.log" 2>&1
    echo "GPU tests rc=$?"; grep -E "tests (successful|failed|aborted)|finished after|✘" "$L-gpu-tests.log" | head -20
  else
    echo "skipped: $t s left"
  fi
else
  echo "skipped (JRE_TAR/BUNDLE unset)"
fi
echo "kfwd done ($(date -u +%T), $SECONDS s)"
