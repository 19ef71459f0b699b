#!/usr/bin/env bash
# ssplit (LIGHTNING_WG_S_SPLIT: each forward consumer computes half of S's key columns and hands it to the other
# through shared memory) on the device, at most BUDGET s (default 150), logs $OUT/ssplit-*.log. From the root of
# a checkout: OUT=DIR JRE_TAR=... BUNDLE=... bash .device/ssplit/run.sh
# payload.tar.xz beside this script is made by bench/ssplit-payload.sh (its commit in candidate.txt).
#  1. fwd_cost: base (the shipped code), the payload's other builds (round 1: ss = -DLIGHTNING_WG_S_SPLIT=1; round 2
#     also ss2 and ss3 = S_SPLIT=2 and 3) and base again under another name (the spread of identical code), each checked against a float64 recurrence (plain, elu1, normalized), then the
#     plain bf16 forward and states kernels timed, T = 1M, D = 128, H = 64 and H = 8, builds interleaved, their
#     order rotated each round; nvidia-smi samples SM clock and power meanwhile;
#  2. norm_cost: base and the other builds, plain, normalized identity, elu1, normalized elu1 (T = 1M, H = 64), each variant
#     after itself (--repeat 2), variants rotated, clock probes;
#  3. tc_check --max-n 1000 of the candidate (and tc_check-NAME of another build when the payload has one), families 1 (wgmma: odd sizes, dk != dv, dv <= 64, bf16 and f16, several
#     segments) and 2 (paired);
#  4. GpuBackendTest with the candidate's Hopper fat binary ahead of main's kernels;
#  5. (when the device has cuobjdump) the SASS of every build's lightning_forward_wg_bf16.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
mkdir -p "$out"
L="$out/ssplit"
budget=${BUDGET:-150}
left() { echo $((budget - SECONDS)); }
# No GPU (or no driver): say so and stop, rather than time out in each step.
if ! gpus=$(timeout 20 nvidia-smi -L 2>&1) || ! grep -q "^GPU " <<< "$gpus"; then
  echo "ssplit: no GPU here (nvidia-smi -L: $(head -n 1 <<< "$gpus")); nothing run" | tee "$L-machine.log"
  exit 2
fi
{ date -u; timeout 20 nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
smi=
trap '[[ -n "$smi" ]] && kill $smi 2>/dev/null; rm -rf "$work"' EXIT
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "ssplit: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
C="$work/cubin"
builds=()
for f in "$C"/*.cubin; do n=$(basename "$f" .cubin); [[ $n == base ]] || builds+=("$n=$f"); done
echo "== 1. fwd_cost ($(date -u +%T))"
timeout 300 nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.active --format=csv -lms 500 > "$L-smi.log" 2>&1 &
smi=$!
timeout 45 "$work/fwd_cost" --rounds ${ROUNDS:-30} base="$C/base.cubin" "${builds[@]}" base2="$C/base.cubin" > "$L-fwdcost.log" 2>&1
echo "fwd_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror|copy bandwidth" "$L-fwdcost.log" | cut -c1-170
echo "== 2. norm_cost ($(date -u +%T), $(left) s left)"
timeout 45 "$work/norm_cost" --rounds ${NROUNDS:-12} --rotate-variants --repeat 2 --probe base="$C/base.cubin" "${builds[@]}" \
  > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
kill $smi 2>/dev/null; smi=
grep -E "RESULT (time|check|checks)|FAILED|rror" "$L-normcost.log" | cut -c1-170
echo "== 3. tc_check --max-n 1000, families 1 and 2 ($(date -u +%T), $(left) s left)"
for tc in "$work"/tc_check*; do
  n=$(basename "$tc")
  for fam in 1 2; do
    timeout 15 "$tc" --family $fam --max-n 1000 > "$L-$n-f$fam.log" 2>&1
    echo "$n family $fam rc=$?"; tail -n 1 "$L-$n-f$fam.log"
  done
done
echo "== 4. GpuBackendTest on the candidate ($(date -u +%T), $(left) s left)"
if [[ -n "${JRE_TAR:-}" && -n "${BUNDLE:-}" ]]; then
  tar -C "$work" -xJf "$JRE_TAR" && export JAVA_HOME="$work/jre" PATH="$work/jre/bin:$PATH"
  B="$BUNDLE"
  CP="$work/java-override:$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  t=$(( $(left) - 8 )); (( t > 60 )) && t=60
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
echo "== 5. SASS ($(date -u +%T), $(left) s left)"
if command -v cuobjdump >/dev/null 2>&1 && (( $(left) > 12 )); then
  for f in "$C"/*.cubin; do
    b=$(basename "$f" .cubin)
    (( $(left) > 8 )) || break
    timeout 5 cuobjdump -sass -fun lightning_forward_wg_bf16 "$f" > "$L-sass-$b.log" 2>&1
    echo "$b: $(grep -c ' HGMMA' "$L-sass-$b.log") HGMMA, shapes:" $(grep -o 'HGMMA\.64x[0-9]*x16[^ ]*' "$L-sass-$b.log" | sort | uniq -c | tr '\n' ' ')
  done
else
  echo "skipped (no cuobjdump, or no time left)"
fi
echo "ssplit done ($(date -u +%T), $SECONDS s)"
