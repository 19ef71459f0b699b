#!/usr/bin/env bash
# hopnorm3, round 2 (issue 12), at most 100 s, logs $OUT/hopnorm3-r2-*.log; payload from bench/hopnorm3-build-r2.sh,
# this script copied to .device/hopnorm3/run.sh. From the root of a main checkout:
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/hopnorm3/run.sh
#  1. norm_cost, base, win, za-map4 and x-plain (float64 checks first), 10 rounds, rotated, each variant launched
#     twice and the second timed (after itself), clock probes; nvidia-smi samples;
#  2. GpuBackendTest with win's module ahead of main's kernels, when the payload says so (run-tests);
#  3. DeviceBench's variants (T = 1M, H = 64, D = 128; the command of BENCHMARKS.md's normalization sections),
#     one JVM each, win's kernels, then main's while time is left.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm3-r2"
budget=97
left() { echo $((budget - SECONDS)); }
command -v nvidia-smi >/dev/null || { echo "hopnorm3: no nvidia-smi here (no GPU): nothing run"; exit 0; }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,power.limit --format=csv; } > "$L-clocks.log" 2>&1
work=$(mktemp -d)
smi=""
trap '[[ -n "$smi" ]] && kill $smi 2>/dev/null; rm -rf "$work"' EXIT
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm3: cannot unpack the payload"; exit 1; }
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
echo "== 1. norm_cost, base, win, za-map4, x-plain, each variant after itself (--repeat 2) ($(date -u +%T))"
timeout 22 "$work/norm_cost" --rounds 10 --repeat 2 --rotate-variants --per-round --probe base=$C/base.cubin \
  win=$C/win.cubin za-map4=$C/za-map4.cubin x-plain=$C/x-plain.cubin > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | cut -c13-150
kill $smi 2>/dev/null; smi=""
if [[ -f "$work/run-tests" ]] && (( java_ok )); then
  t=$(( $(left) - 22 )); (( t > 52 )) && t=52
  echo "== 2. GpuBackendTest on win's module ($(date -u +%T), timeout $t s)"
  timeout $t java --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
    --class-path "$work/java-override-win:$LIBS" --select-class dev.lightning.attention.engine.cuda.GpuBackendTest \
    --details=tree --disable-banner > "$L-gpu-tests.log" 2>&1
  echo "GPU tests rc=$?"; grep -E "tests (successful|failed|aborted)|finished after" "$L-gpu-tests.log" | tail -4
  grep -c "✘" "$L-gpu-tests.log" | sed 's/^/failed test lines: /'
fi
if (( java_ok )); then
  n=0
  for which in win main; do
    t=$(( $(left) - 1 )); (( t > 24 )) && t=24
    (( t > 10 )) || break
    echo "== 3. DeviceBench variants, $which ($(date -u +%T), $(left) s left)"
    cp="$LIBS"; [[ $which != main ]] && cp="$work/java-override-win:$LIBS"
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
