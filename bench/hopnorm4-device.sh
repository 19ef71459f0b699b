#!/usr/bin/env bash
# hopnorm4 (issue 12), at most 100 s, logs $OUT/hopnorm4-*.log; payload from bench/hopnorm4-build.sh, this script
# copied to .device/hopnorm4/run.sh. From the root of a main checkout:
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/hopnorm4/run.sh
#  1. norm_cost, base and rowmma (float64 checks first, their errors printed side by side), 10 rounds, rotated,
#     each variant launched twice and the second timed (after itself), clock probes; nvidia-smi samples;
#  2. GpuBackendTest with rowmma's module ahead of main's kernels, when the payload says so (run-tests);
#  3. DeviceBench's variants (T = 1M, H = 64, D = 128; the command of BENCHMARKS.md's normalization sections),
#     one JVM each, rowmma's kernels, then main's while time is left.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm4"
budget=97
left() { echo $((budget - SECONDS)); }
command -v nvidia-smi >/dev/null || { echo "hopnorm4: no nvidia-smi here (no GPU): nothing run"; exit 0; }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,power.limit --format=csv; } > "$L-clocks.log" 2>&1
work=$(mktemp -d)
smi=""
trap '[[ -n "$smi" ]] && kill $smi 2>/dev/null; rm -rf "$work"' EXIT
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm4: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-clocks.log"; head -1 "$work/candidate.txt"
C="$work/cubin"
java_ok=0
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]]; then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH" && java_ok=1
  B="$BUNDLE"
  LIBS="$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
fi
echo "== samples: timestamp, SM MHz, W, C" >> "$L-clocks.log"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 >> "$L-clocks.log" 2>&1 &
smi=$!
echo "== 1. norm_cost, base, rowmma, each variant after itself (--repeat 2) ($(date -u +%T))"
timeout 22 "$work/norm_cost" --rounds 10 --repeat 2 --rotate-variants --per-round --probe base=$C/base.cubin \
  rowmma=$C/rowmma.cubin > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
echo "-- float64 checks (base, then rowmma, case by case)"
for c in "identity:" "normalized elu1:" "normalized identity (q, k >= 0)" "normalized identity (q, k in"; do
  for b in base rowmma; do grep -F "RESULT check $b $c" "$L-normcost.log" | cut -c1-190; done
done
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | cut -c1-150
kill $smi 2>/dev/null; smi=""
if [[ -f "$work/run-tests" ]] && (( java_ok )); then
  t=$(( $(left) - 22 )); (( t > 52 )) && t=52
  echo "== 2. GpuBackendTest on rowmma's module ($(date -u +%T), timeout $t s)"
  timeout $t java --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
    --class-path "$work/java-override-rowmma:$LIBS" --select-class dev.lightning.attention.engine.cuda.GpuBackendTest \
    --details=tree --disable-banner > "$L-gpu-tests.log" 2>&1
  echo "GPU tests rc=$?"; grep -E "tests (successful|failed|aborted)|finished after" "$L-gpu-tests.log" | tail -4
  grep -c "✘" "$L-gpu-tests.log" | sed 's/^/failed test lines: /'
fi
if (( java_ok )); then
  n=0
  for which in rowmma main; do
    t=$(( $(left) - 1 )); (( t > 24 )) && t=24
    (( t > 10 )) || break
    echo "== 3. DeviceBench variants, $which ($(date -u +%T), $(left) s left)"
    cp="$LIBS"; [[ $which != main ]] && cp="$work/java-override-rowmma:$LIBS"
    n=$((n + 1))
    echo "== DeviceBench run $n: $which ($(date -u +%T))" >> "$L-devicebench.log"
    timeout $t java --add-modules jdk.incubator.vector -Xmx16g -cp "$cp" dev.lightning.attention.bench.DeviceBench \
      --shapes none --checks none --variants 1048576x128 --host-shape none > "$work/db.log" 2>&1
    echo "DeviceBench $which rc=$?"; cat "$work/db.log" >> "$L-devicebench.log"
    grep -E "RESULT (variant|check)" "$work/db.log" | cut -c1-130
  done
else
  echo "Java stages skipped (JRE_TAR/BUNDLE unset)"
fi
echo "== done ($(date -u +%T), ${SECONDS} s)"
