#!/usr/bin/env bash
# hopnorm, round 3 (issue 12), at most 70 s, logs $OUT/hopnorm-r3-*.log; payload from bench/hopnorm-build-r3.sh,
# this script copied to .device/hopnorm/run.sh. From the root of a main checkout:
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/hopnorm/run.sh
#  1. norm_cost over the portable module alone (no Hopper build before it in a round): with and without
#     LIGHTNING_TC_QZ_MMA, and the shipped build twice under two names (the spread of identical code),
#     the PTX -> ptxas sm_90 route, 20 rounds rotated; the plain-path question of the q . z mma;
#  2. GpuBackendTest with the Hopper module hopnorm-build-r3.sh built (the elu1 map's loader registers and
#     fused loop switched on, which the shipped PTX leaves off until this run) ahead of main's kernels.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm-r3"
budget=68
left() { echo $((budget - SECONDS)); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
C="$work/cubin"
echo "== 1. norm_cost, portable only ($(date -u +%T))"
timeout 24 "$work/norm_cost" --rounds 20 portable-qz0=$C/portable-qz0.cubin portable-qz1=$C/portable-qz1.cubin \
  portable-qz1-again=$C/portable-qz1.cubin > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | cut -c1-120
echo "== 2. GpuBackendTest on the branch's Hopper module ($(date -u +%T), $(left) s left)"
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]]; then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH"
  B="$BUNDLE"
  CP="$work/java-override:$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  t=$(( $(left) - 2 ))
  timeout $t java --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
    --class-path "$CP" --select-class dev.lightning.attention.engine.cuda.GpuBackendTest --details=tree --disable-banner \
    > "$L-gpu-tests.log" 2>&1
  echo "GPU tests rc=$?"; grep -E "tests (successful|failed|aborted)|finished after|✘" "$L-gpu-tests.log" | head -20
else
  echo "skipped (JRE_TAR/BUNDLE unset)"
fi
rm -rf "$work"
echo "== done ($(date -u +%T), ${SECONDS} s)"
