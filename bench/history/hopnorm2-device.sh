#!/usr/bin/env bash
# hopnorm2, round 1 (issue 12: normalized identity on Hopper), at most 118 s, logs $OUT/hopnorm2-*.log; payload
# from bench/history/hopnorm2-build.sh, this script copied to .device/hopnorm2/run.sh. From the root of a main checkout:
#   OUT=DIR bash .device/hopnorm2/run.sh
#  1. wgmma_small_n: cycles per m64n8k16 product (A K-major: the consumers' q . zP; A MN-major: the loaders'
#     column sums) against m64n64k16 and m64n72k16;
#  2. norm_cost over every build (float64 checks first; x- builds leave work out and are not held to them),
#     16 rounds, order rotated;
#  3. norm_cost again over base and the two candidates alone, 24 rounds (their spread).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT:?OUT must name the output directory}"
L="$out/hopnorm2"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv; } > "$L-machine.log" 2>&1
work=$(mktemp -d)
tar -C "$work" -xJf "$here/payload.tar.xz" || { echo "hopnorm2: cannot unpack the payload"; exit 1; }
cat "$work/candidate.txt" >> "$L-machine.log"
C="$work/cubin"
echo "== 1. wgmma_small_n ($(date -u +%T))"
timeout 15 "$work/wgmma_small_n" > "$L-wgmma.log" 2>&1
echo "wgmma_small_n rc=$?"; grep RESULT "$L-wgmma.log" | cut -c1-100
echo "== 2. norm_cost, every build ($(date -u +%T), ${SECONDS} s)"
timeout 55 "$work/norm_cost" --rounds 16 base=$C/base.cubin qzl=$C/qzl.cubin sfold=$C/sfold.cubin sfold72=$C/sfold72.cubin \
  x-zd=$C/x-zd.cubin   x-den=$C/x-den.cubin x-lz=$C/x-lz.cubin x-all=$C/x-all.cubin x-lz-r56=$C/x-lz-r56.cubin > "$L-normcost.log" 2>&1
echo "norm_cost rc=$? (0: every checked build passed)"
grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost.log" | grep -v "elu1 " | cut -c1-100
t=$(( 112 - SECONDS ))
echo "== 3. norm_cost, base and the candidates ($(date -u +%T), ${SECONDS} s, ${t} s left)"
if (( t > 15 )); then
  timeout $t "$work/norm_cost" --rounds 24 base=$C/base.cubin qzl=$C/qzl.cubin sfold=$C/sfold.cubin > "$L-normcost2.log" 2>&1
  echo "norm_cost rc=$?"; grep -E "RESULT (time|checks)|FAILED|rror" "$L-normcost2.log" | cut -c1-100
fi
{ date -u; nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv; } >> "$L-machine.log" 2>&1
rm -rf "$work"
echo "== done ($(date -u +%T), ${SECONDS} s)"
