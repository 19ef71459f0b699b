#!/usr/bin/env bash
# hopnorm2, round 2 (issue 12), at most 88 s, logs $OUT/hopnorm2-r2-*.log; payload from bench/history/hopnorm2-build-r2.sh,
# this script copied to .device/hopnorm2/run.sh. From the root of a main checkout:
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/hopnorm2/run.sh
#  1. norm_cost over every build (float64 checks first; x- builds are not held to them), 12 rounds, the builds'
#     order and each build's variants' order rotated, every time printed; SM clock and power sampled;
#  2. norm_cost over base and x-plain with the variants in their fixed order (round 1's way), 10 rounds;
#  3. GpuBackendTest with stage32's module ahead of main's kernels (odd sizes, grouped heads, Dk != Dv,
#     normalization, checkpoints, split against unsplit, all against float64).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm2-r2"
budget=86
left() { echo $((budget - SECONDS)); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,power.limit --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm2: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
C="$work/cubin"
echo "== 1. norm_cost, every build, variants rotated ($(date -u +%T))"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 200 > "$L-clocks.log" 2>&1 &
smi=$!
timeout 28 "$work/norm_cost" --rounds 12 --rotate-variants --per-round base=$C/base.cubin stage32=$C/stage32.cubin \
  x-plain=$C/x-plain.cubin x-all=$C/x-all.cubin x-den=$C/x-den.cubin x-all-r56=$C/x-all-r56.cubin x-r56=$C/x-r56.cubin \
  > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | grep -v " elu1 " | cut -c1-100
echo "== 2. norm_cost, base and x-plain, variants in fixed order ($(date -u +%T), $(left) s left)"
timeout 10 "$work/norm_cost" --rounds 10 --per-round base=$C/base.cubin x-plain=$C/x-plain.cubin > "$L-normcost-fixed.log" 2>&1
echo "norm_cost rc=$?"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost-fixed.log" | grep -v " elu1 " | cut -c1-100
kill $smi 2>/dev/null
t=$(( $(left) - 1 ))
echo "== 3. GpuBackendTest on stage32 ($(date -u +%T), $t s left)"
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]] && (( t > 20 )); then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH"
  B="$BUNDLE"
  CP="$work/java-override:$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  timeout $t java --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
    --class-path "$CP" --select-class dev.lightning.attention.engine.cuda.GpuBackendTest --details=tree --disable-banner \
    > "$L-gpu-tests.log" 2>&1
  echo "GPU tests rc=$?"; grep -E "tests (successful|failed|aborted)|finished after|✘" "$L-gpu-tests.log" | head -20
else
  echo "skipped (JRE_TAR/BUNDLE unset or no time)"
fi
rm -rf "$work"
echo "== done ($(date -u +%T), ${SECONDS} s)"
