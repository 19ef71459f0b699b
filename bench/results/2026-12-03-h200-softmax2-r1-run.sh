#!/usr/bin/env bash
# softmax2 (issue 14), round 1: the Hopper softmax kernel's build options (softmax_sm90.cu of branch
# wt-softmax2, cubins built with bench/softmax_fast.sh build), checked against float64 by
# softmax_peer.py (carried: it has --probe), then timed beside the shipped design (base) and SDPA
# flash / cuDNN (base.cubin: softmax_sm90.cu of branch switch, the shipped design). Stage 1 (checks, own process, bounded) decides which sets stage 2 times: a set
# that fails or hangs there is not timed. Probes are never checked (wrong results by design).
set -u
D="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${OUT:?}"
W=$(mktemp -d)
tar -C "$W" -xJf "$D/cubins.tar.xz"
CHECKED="base pin lazy pin-lazy lean all all-wso all-persist"
PROBES="probe-noexp probe-noload probe-both"
common=(--ptx "$W/softmax_portable.cubin" --ptx90 "$W/base.cubin" --variant-checks-only)
args=()
for s in $CHECKED; do args+=(--hopper-variant "$s=$W/$s.cubin"); done
echo "stage 1: float64 checks of $CHECKED $(date -u +%T)"
timeout -k 2 45 python3 -W ignore "$D/softmax_peer.py" "${common[@]}" "${args[@]}" --skip-bench \
  > "$OUT/softmax2-checks.log" 2>&1
echo "stage 1 rc=$? $(date -u +%T)"
grep -c "CHECK .*: ok" "$OUT/softmax2-checks.log" | sed 's/^/checks ok: /'
grep "FAIL\|Error\|error" "$OUT/softmax2-checks.log" | head -10
# a set is timed when its checks all ran and passed: run_checks prints one "CHECKS all ok" or
# "CHECKS SOME FAILED" line per set, in the order of the sets given
mapfile -t verdicts < <(grep -E "^CHECKS (all ok|SOME FAILED)" "$OUT/softmax2-checks.log")
passed=()
i=0
for s in $CHECKED; do
  v=${verdicts[$i]:-"not reached (hang or time-out)"}
  echo "set $s: $v"
  if [ "$v" = "CHECKS all ok" ] && [ "$s" != base ]; then passed+=("$s"); fi
  i=$((i + 1))
done
grep -q "CHECKS (all kernel sets) all ok" "$OUT/softmax2-checks.log" && echo "all checked sets passed"
bargs=()
for s in "${passed[@]}"; do bargs+=(--hopper-variant "$s=$W/$s.cubin"); done
for s in $PROBES; do bargs+=(--probe "$s=$W/$s.cubin"); done
echo "stage 2: timing base + ${passed[*]} + probes $(date -u +%T)"
timeout -k 2 68 python3 -W ignore "$D/softmax_peer.py" "${common[@]}" "${bargs[@]}" --skip-check \
  --sdpa flash,cudnn --variant-lens 8192,32768 --always all,all-persist,pin-lazy,pin > "$OUT/softmax2-bench.log" 2>&1
echo "stage 2 rc=$? $(date -u +%T)"
grep "^RESULT" "$OUT/softmax2-bench.log"
nvidia-smi --query-gpu=clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader 2>&1 | head -2
