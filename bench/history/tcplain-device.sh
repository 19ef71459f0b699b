#!/usr/bin/env bash
# tcplain (issue 12: what costs the portable kernels' plain path with the q . z mma) on the device, at most the
# seconds in the file budget beside this script (BUDGET overrides; 105 without either), logs $OUT/tcplain-*.log.
# payload.tar.xz beside this script is made by bench/tcplain-build.sh (its commit and builds in candidate.txt).
# From the root of a main checkout:  OUT=DIR JRE_TAR=... BUNDLE=... bash .device/tcplain/run.sh
#  1. norm_cost over the portable builds alone: every build checked against a float64 recurrence (plain, elu1,
#     normalized identity and elu1), then plain / normalized identity / elu1 / normalized elu1 timed, T = 1M,
#     H = 64, D = 128, bf16, one segment, builds interleaved and their order rotated each round; nvidia-smi
#     samples SM clock and power meanwhile;
#  2. when the payload has a candidate: tc_check --max-n 1000 of it (the mma.sync family against float64: odd
#     sizes, dk != dv, bf16 and f16, several segments), then GpuBackendTest with its portable module (fat
#     binary) ahead of main's kernels: the test's portable backend runs every variant (feature maps,
#     normalization, grouped heads, checkpoints) on the mma.sync kernels against float64;
#  3. when the payload has ptx/: the driver's time to load each NAME.ptx (JIT-compile for this GPU), one fresh
#     process each with the driver's cache off (module_load.py --one);
#  4. with the time left, norm_cost again with each build's variants rotated too.
# Round 1 (18:28 UTC payload, 105 s): builds of 9734434 (logged as ce3ee8d) as listed in tcplain-build.sh,
#   candidate QZ_PASS.
# Round 2 (100 s): the builds listed in tcplain-build.sh (plain-only and normalized-only bodies, the two-body
#   entries), no candidate; load times of the shipped PTX and of the one with separate normalized entries.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/tcplain"
budget=${BUDGET:-$(cat "$here/budget" 2>/dev/null || echo 105)}
left() { echo $((budget - SECONDS)); }
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "tcplain: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
builds=()
for f in "$work"/cubin/*.cubin; do builds+=("$(basename "$f" .cubin)=$f"); done
echo "== 1. norm_cost, portable builds: ${builds[*]%%=*} ($(date -u +%T))"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv -lms 500 \
  > "$L-smi.log" 2>&1 &
smi=$!
timeout 50 "$work/norm_cost" --rounds ${ROUNDS:-20} "${builds[@]}" > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | cut -c1-120
grep -E "RESULT check" "$L-normcost.log" | grep -v ": ok" | cut -c1-160
if [[ -x "$work/tc_check" ]]; then
echo "== 2a. tc_check --max-n 1000, candidate ($(date -u +%T), $(left) s left)"
timeout 15 "$work/tc_check" --max-n 1000 > "$L-tc-check.log" 2>&1
echo "tc_check rc=$?"; tail -n 1 "$L-tc-check.log"
echo "== 2b. GpuBackendTest on the candidate's portable module ($(date -u +%T), $(left) s left)"
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
fi
if [[ -d "$work/ptx" ]]; then
  echo "== 3. module load from PTX, driver cache off ($(date -u +%T), $(left) s left)"
  for p in "$work"/ptx/*.ptx; do
    t=$(( $(left) - 25 ))
    if (( t < 10 )); then echo "$(basename "$p"): skipped, $t s left"; continue; fi
    r=$(CUDA_CACHE_DISABLE=1 timeout $t python3 "$work/module_load.py" --one "$p" 2>&1 | tail -n 1)
    echo "RESULT load $(basename "$p" .ptx) bytes=$(stat -c %s "$p") ms_and_kernels=$r" | tee -a "$L-module-load.log"
  done
fi
t=$(( $(left) - 3 ))
if (( t >= 20 )); then
  echo "== 4. norm_cost --rotate-variants ($(date -u +%T), $t s)"
  r=$(( (t - 10) / ${#builds[@]} * 4 )); (( r > 8 )) && r=8; (( r < 2 )) && r=2  # about 0.25 s a build and round, checks first
  timeout $t "$work/norm_cost" --rounds $r --rotate-variants "${builds[@]}" > "$L-normcost-rot.log" 2>&1
  echo "norm_cost rc=$?"; grep -E "RESULT (time|checks)" "$L-normcost-rot.log" | cut -c1-120
else
  echo "== 4. skipped: $t s left"
fi
kill $smi 2>/dev/null
echo "tcplain done ($(date -u +%T), $SECONDS s)"
