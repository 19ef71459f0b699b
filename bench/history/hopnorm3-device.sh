#!/usr/bin/env bash
# hopnorm3, round 1 (issue 12), at most 120 s, logs $OUT/hopnorm3-r1-*.log; payload from bench/hopnorm3-build.sh,
# this script copied to .device/hopnorm3/run.sh. From the root of a main checkout:
#   OUT=DIR JRE_TAR=... BUNDLE=... bash .device/hopnorm3/run.sh
#  1. norm_cost over every build (float64 checks first; x- builds are not held to them), 10 rounds, the builds'
#     order and each build's variants rotated, every time printed, the SM clock probed before the states kernel,
#     between the kernels and after the forward; SM clock and power also sampled by nvidia-smi every 100 ms;
#  2. norm_cost over base and the candidates alone, 16 rounds (their spread);
#  3. GpuBackendTest with zc-zd2-map4's module, then zd3's, ahead of main's kernels (odd sizes, grouped heads,
#     Dk != Dv, normalization, checkpoints, split against unsplit, all against float64).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm3-r1"
budget=116
left() { echo $((budget - SECONDS)); }
command -v nvidia-smi >/dev/null || { echo "hopnorm3: no nvidia-smi here (no GPU): nothing run"; exit 0; }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw,power.limit --format=csv; } > "$L-clocks.log" 2>&1
work=$(mktemp -d)
smi=""
trap '[[ -n "$smi" ]] && kill $smi 2>/dev/null; rm -rf "$work"' EXIT
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm3: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-clocks.log"
echo "== samples: timestamp, SM MHz, W, C" >> "$L-clocks.log"
C="$work/cubin"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu --format=csv,noheader -lms 100 >> "$L-clocks.log" 2>&1 &
smi=$!
echo "== 1. norm_cost, every build, rotated, clock probes ($(date -u +%T))"
timeout 40 "$work/norm_cost" --rounds 10 --rotate-variants --per-round --probe base=$C/base.cubin zd3=$C/zd3.cubin \
  zc=$C/zc.cubin zc-zd2=$C/zc-zd2.cubin x-plain=$C/x-plain.cubin x-plain-st=$C/x-plain-st.cubin x-st=$C/x-st.cubin \
  map2=$C/map2.cubin map4=$C/map4.cubin zc-zd2-map4=$C/zc-zd2-map4.cubin \
  > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | cut -c13-150
t=$(( $(left) - 58 )); (( t > 24 )) && t=24
echo "== 2. norm_cost, base and the candidates, 16 rounds ($(date -u +%T), $(left) s left, $t s for it)"
if (( t > 8 )); then
  timeout $t "$work/norm_cost" --rounds 16 --rotate-variants --per-round --probe base=$C/base.cubin zd3=$C/zd3.cubin \
    zc=$C/zc.cubin zc-zd2=$C/zc-zd2.cubin map4=$C/map4.cubin zc-zd2-map4=$C/zc-zd2-map4.cubin > "$L-normcost2.log" 2>&1
  echo "norm_cost rc=$?"
  grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost2.log" | cut -c13-150
fi
kill $smi 2>/dev/null; smi=""
echo "== 3. GpuBackendTest ($(date -u +%T), $(left) s left)"
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]]; then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH"
  B="$BUNDLE"
  for m in zc-zd2-map4 zd3; do
    t=$(( $(left) - 1 ))
    (( t > 20 )) || { echo "$m: skipped (${t} s left)"; continue; }
    echo "== GpuBackendTest on $m's module ($(date -u +%T), timeout $t s)" >> "$L-gpu-tests.log"
    CP="$work/java-override-$m:$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
    timeout $t java --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
      --class-path "$CP" --select-class dev.lightning.attention.engine.cuda.GpuBackendTest --details=tree --disable-banner \
      >> "$L-gpu-tests.log" 2>&1
    echo "$m: GPU tests rc=$?"
    tail -n 40 "$L-gpu-tests.log" | grep -E "tests (successful|failed|aborted)|finished after" | tail -4
  done
  grep -c "✘" "$L-gpu-tests.log" | sed 's/^/failed test lines: /'
else
  echo "skipped (JRE_TAR/BUNDLE unset)"
fi
echo "== done ($(date -u +%T), ${SECONDS} s)"
