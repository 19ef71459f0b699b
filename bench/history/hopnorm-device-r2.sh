#!/usr/bin/env bash
# hopnorm, round 2 (issue 12), at most 90 s, logs $OUT/hopnorm-r2-*.log; payload from bench/hopnorm-build-r2.sh,
# this script copied to .device/hopnorm/run.sh. From the root of a main checkout:
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/hopnorm/run.sh
#  1. norm_cost: base, w1, w2 (Hopper) and portable-qz0 before portable-qz1 (round 1 ran them the other way
#     round), float64 checks first, then 12 rounds interleaved;
#  2. DeviceBench's variants (the command of BENCHMARKS.md's normalization sections), one JVM each: main's
#     kernels, w1 (with the portable module built with LIGHTNING_TC_QZ_MMA=0), w2. Correctness of w1 / w2:
#     norm_cost's float64 checks and DeviceBench's; round 1 ran GpuBackendTest and tc_check on w2's flags.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm-r2"
budget=88
left() { echo $((budget - SECONDS)); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
C="$work/cubin"
echo "== 1. norm_cost ($(date -u +%T))"
timeout 28 "$work/norm_cost" --rounds 12 base=$C/base.cubin w1=$C/w1.cubin w2=$C/w2.cubin \
  portable-qz0=$C/portable-qz0.cubin portable-qz1=$C/portable-qz1.cubin > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | cut -c1-120
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]]; then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH"
  B="$BUNDLE"
  LIBS="$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  n=0
  for which in main w1 w2; do
    echo "== 2. DeviceBench variants, $which ($(date -u +%T), $(left) s left)"
    cp="$LIBS"; [[ $which != main ]] && cp="$work/ov-$which:$LIBS"
    t=$(( ($(left) - 1) / (3 - n) )); n=$((n + 1))
    if (( t > 8 )); then
      timeout $t java --add-modules jdk.incubator.vector -Xmx16g -cp "$cp" dev.lightning.attention.bench.DeviceBench \
        --shapes none --checks none --variants 1048576x128 --host-shape none > "$L-devicebench-$which.log" 2>&1
      echo "DeviceBench $which rc=$?"; grep -E "RESULT (variant|check)" "$L-devicebench-$which.log" | cut -c1-150
    fi
  done
else
  echo "Java stages skipped (JRE_TAR/BUNDLE unset)"
fi
rm -rf "$work"
echo "== done ($(date -u +%T), ${SECONDS} s)"
