#!/usr/bin/env bash
# hopnorm, round 1 (issue 12: Hopper normalized identity, elu1 map, portable plain q . z mma), at most
# 120 s, logs $OUT/hopnorm-*.log. From the root of a main checkout:
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/hopnorm/run.sh
# payload.tar.xz is made by bench/hopnorm-build.sh on branch wt-hopnorm (commit in candidate.txt); this
# script is its copy in .device/hopnorm/run.sh.
#  1. norm_cost: every Hopper build (base = main's code; zfold, early, early-approx, zfold-early-approx,
#     mapfused, mapregs72, mapregs72-fused, all = the candidate) and the portable module with / without LIGHTNING_TC_QZ_MMA, each
#     checked against a float64 recurrence, then plain / normalized identity / elu1 / normalized elu1
#     timed, builds interleaved round by round (T = 1M, H = 64, D = 128, bf16);
#  2. tc_check --max-n 1000 on the candidate (plain kernels of both families against float64);
#  3. GpuBackendTest with the candidate's Hopper fat binary ahead of main's kernels.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm"
budget=117
left() { echo $((budget - SECONDS)); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
C="$work/cubin"
echo "== 1. norm_cost ($(date -u +%T))"
timeout 45 "$work/norm_cost" --rounds 10 base=$C/base.cubin zfold=$C/zfold.cubin early=$C/early.cubin \
  early-approx=$C/early-approx.cubin zfold-early-approx=$C/zfold-early-approx.cubin mapfused=$C/mapfused.cubin \
  mapregs72=$C/mapregs72.cubin mapregs72-fused=$C/mapregs72-fused.cubin all=$C/all.cubin portable-qz1=$C/portable-qz1.cubin portable-qz0=$C/portable-qz0.cubin > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | cut -c1-120
echo "== 2. tc_check --max-n 1000 ($(date -u +%T), $(left) s left)"
timeout 14 "$work/tc_check" --max-n 1000 > "$L-tc-check.log" 2>&1
echo "tc_check rc=$?"; tail -n 3 "$L-tc-check.log"
echo "== 3. GpuBackendTest on the candidate ($(date -u +%T), $(left) s left)"
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]]; then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH"
  B="$BUNDLE"
  CP="$work/java-override:$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  t=$(( $(left) - 3 )); (( t > 55 )) && t=55
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
rm -rf "$work"
echo "== done ($(date -u +%T), ${SECONDS} s)"
