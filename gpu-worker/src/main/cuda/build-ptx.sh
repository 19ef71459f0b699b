#!/usr/bin/env bash
# Rebuilds the kernels' PTX from the .cu sources when nvcc is on the PATH; the Maven build runs it.
# The PTX is committed (src/main/resources/.../*.ptx) so that a clone without nvcc still builds a
# jar that runs on a GPU. When the sources change, this script rewrites the committed files and
# says so: commit them with the source change.
#   lightning.ptx       target compute_80: every kernel family but the Hopper one, JIT-compiled by
#                       the driver for the GPU at hand
#   lightning_batch.ptx target compute_80: the batch step of many short sequences
#                       (lightning_batch.cu, its own module and argument struct)
#   lightning_sm90a.ptx target sm_90a: the wgmma kernels (hopper.cuh), loaded only on a device of
#                       compute capability 9.0
#   softmax.ptx         target compute_80: the softmax attention kernels (softmax.cu)
#   softmax_sm90a.ptx   target sm_90a: their wgmma version (softmax_sm90.cu), loaded only on a
#                       device of compute capability 9.0
# All declare PTX ISA 8.0 (PTX_ISA below), which drivers for CUDA 12.0 and later compile.
#
# Machine code beside the PTX (opt-in): with LIGHTNING_SASS=LIST (GPU architectures, e.g. 80,86,89,90),
# each module is also built as a fat binary NAME.fatbin holding SASS for those architectures (the Hopper
# modules: for sm_90a, when 90 is listed) and the module's PTX, into the build's classes
# (gpu-worker/target/classes, or FATBIN_DIR), never into the committed sources. The engine loads
# NAME.fatbin where it exists, so the driver runs its SASS instead of compiling the PTX at the first
# load on each machine (BENCHMARKS.md: about 21 s for the softmax module on a fresh H200); on a GPU the
# fat binary has no SASS for, the driver compiles its PTX as before. Without LIGHTNING_SASS, fat binaries
# of an earlier build are removed, so the jar never carries machine code older than its sources.
#   LIGHTNING_SASS=80,90 mvn -DskipTests package     (or run this script with it)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
res="$here/../resources/dev/lightning/attention/engine/cuda"
fatbins="${FATBIN_DIR:-$here/../../../target/classes/dev/lightning/attention/engine/cuda}"
if [[ -z "${LIGHTNING_SASS:-}" ]]; then
  rm -f "$fatbins"/*.fatbin
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "build-ptx: nvcc not found; using the committed PTX in $res"
  [[ -z "${LIGHTNING_SASS:-}" ]] || { echo "build-ptx: LIGHTNING_SASS needs nvcc" >&2; exit 1; }
  exit 0
fi
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp".*' EXIT
. "$here/ptx-isa.sh"   # PTX_ISA and lower_isa: the ISA every shipped module declares
# same_code <nvcc's ptx> <lowered ptx> <arch> <output name>: fails unless ptxas compiles both to the same bytes for
# each GPU the module serves (compute_80: an A100's sm_80 and a Hopper's sm_90; compute_90a: sm_90a).
same_code() {
  command -v ptxas >/dev/null 2>&1 || { echo "build-ptx: ptxas not found; $4's lowered ISA is not checked"; return 0; }
  local sm
  for sm in $([[ "$3" == compute_90a ]] && echo sm_90a || echo sm_80 sm_90); do
    ptxas -arch="$sm" "$1" -o "$tmp.nvcc.cubin" && ptxas -arch="$sm" "$2" -o "$tmp.lowered.cubin" || {
      echo "build-ptx: ptxas refused $4 at PTX ISA $PTX_ISA (above); lower PTX_ISA's features or raise it" >&2; return 1; }
    cmp -s "$tmp.nvcc.cubin" "$tmp.lowered.cubin" || {
      echo "build-ptx: $4 declared at PTX ISA $PTX_ISA compiles to other machine code ($sm) than nvcc's own text;" \
           "find the line lower_isa changed that matters" >&2; return 1; }
  done
}
# no_spills <ptx> <sm arch> [name]: fails when ptxas puts any kernel of the module over its registers into
# local memory. The wgmma kernels run at fixed register budgets (setmaxnreg); a change that made the
# Hopper forward hold two more 64-bit values spilled 236 bytes a thread and cost it 9% at H = 64 and 10%
# at H = 8 on the H200 (session 9, BENCHMARKS.md "Uneven two-segment plans"), unseen until timed there.
# Checked when a Hopper module is regenerated, where ptxas is at hand (it comes with nvcc).
no_spills() {
  command -v ptxas >/dev/null 2>&1 || { echo "build-ptx: ptxas not found; the spill check of $1 is skipped"; return 0; }
  local spills
  spills=$(ptxas -arch="$2" -v "$1" -o /dev/null 2>&1 | awk '/Compiling entry/ { e = $7; gsub(/\047/, "", e) }
    /spill stores/ && ($5 != 0 || $9 != 0) { print "  " e ": " $5 " bytes of spill stores, " $9 " of spill loads" }')
  if [[ -n "$spills" ]]; then
    echo "build-ptx: ${3:-$(basename "$1")} spills registers (ptxas -v, $2); expected none:" >&2
    echo "$spills" >&2
    echo "build-ptx: keep fewer values live across the kernel's loops (recompute them from the arguments)" >&2
    return 1
  fi
}
# spills_within <ptx> <output name>: fails when ptxas (sm_80 and sm_90) spills more bytes in any kernel of this portable
# module than spills.txt allows. The portable kernels spill a little by design (their register split is measured);
# a change that spills more there is as easy to miss as a Hopper one (session 10 found an 8.6% regression of the
# portable normalized forward only by comparing two sessions' benchmarks; that one had no spill, this guards the kind
# that has).
spills_within() {
  command -v ptxas >/dev/null 2>&1 || { echo "build-ptx: ptxas not found; the spill check of $2 is skipped"; return 0; }
  local m=${2%.ptx} a over=""
  for a in sm_80 sm_90; do
    over+=$(ptxas -arch="$a" -v "$1" -o /dev/null 2>&1 | awk -v m="$m" -v a="$a" -v base="$here/spills.txt" '
      BEGIN { while ((getline line < base) > 0) { split(line, f, " "); if (f[1] == m && f[2] == a) { st[f[3]] = f[4]; ld[f[3]] = f[5] } } }
      /Compiling entry/ { e = $7; gsub(/\047/, "", e) }
      /spill stores/ && ($5 > st[e] + 0 || $9 > ld[e] + 0) {
        printf "  %s %s: %d bytes of spill stores, %d of spill loads (allowed %d, %d)\n", a, e, $5, $9, st[e], ld[e] }')
    [[ -z "$over" || "$over" == *$'\n' ]] || over+=$'\n'
  done
  if [[ -n "$over" ]]; then
    echo "build-ptx: $2 spills more registers than gpu-worker/src/main/cuda/spills.txt allows (ptxas -v):" >&2
    printf '%s' "$over" >&2
    echo "build-ptx: keep fewer values live in those kernels, or measure the spill's cost before raising the line" >&2
    return 1
  fi
}
build() {  # build <source> <arch> <output name>
  nvcc -ptx -arch="$2" -O3 -I "$here" "$here/$1" -o "$tmp.nvcc"
  cp "$tmp.nvcc" "$tmp"
  lower_isa "$tmp"
  if ! cmp -s "$tmp" "$res/$3"; then
    same_code "$tmp.nvcc" "$tmp" "$2" "$3"
    if [[ "$2" == compute_90a ]]; then
      no_spills "$tmp" sm_90a "$3"
    else
      spills_within "$tmp" "$3"
    fi
    mkdir -p "$res"
    cat "$tmp" > "$res/$3"
    echo "build-ptx: $3 regenerated from the CUDA sources; commit it with them"
    regenerated=1
  fi
}
regenerated=
build lightning.cu compute_80 lightning.ptx
build lightning_sm90.cu compute_90a lightning_sm90a.ptx
build softmax.cu compute_80 softmax.ptx
build softmax_sm90.cu compute_90a softmax_sm90a.ptx
build lightning_batch.cu compute_80 lightning_batch.ptx
# The standalone kernel check (gpu-worker/src/test/cuda/tc_check.cu, bin/gpu-check's "kernel check" where nvcc is on
# the device) includes the kernels' headers by itself. It once stopped compiling unnoticed for sessions: tensor_core.cuh
# used lightning_decay.cuh without including it, which lightning.cu's own include hid (found 2026-12-07). So when a
# module was regenerated here, the check must still compile (to PTX: the headers' errors, about 25 s).
if [[ -n "$regenerated" ]] && ! nvcc -ptx -arch=compute_90a -DLIGHTNING_WG -I "$here" "$here/../../test/cuda/tc_check.cu" \
     -o "$tmp"; then
  echo "build-ptx: gpu-worker/src/test/cuda/tc_check.cu no longer compiles against the kernels' headers (above);" \
       "make each header include what it uses, or update the check" >&2
  exit 1
fi
# fatbin <ptx arch> <output base>: SASS for each listed architecture (the sm_90a modules: 90 only) + PTX, both
# from the module's shipped PTX (declared at PTX_ISA), so that the fat binary's PTX loads where the plain PTX does.
# Its SASS comes from this machine's ptxas: a driver older than that toolkit may refuse it, so build fat binaries
# with a CUDA no newer than the cluster's drivers.
fatbin() {
  local gencode=() a
  IFS=, read -ra archs <<< "$LIGHTNING_SASS"
  for a in "${archs[@]}"; do
    if [[ "$1" == compute_90a ]]; then
      [[ "$a" == 90 || "$a" == 90a ]] && gencode+=(-gencode "arch=compute_90a,code=sm_90a")
    else
      gencode+=(-gencode "arch=$1,code=sm_${a}")
    fi
  done
  (( ${#gencode[@]} )) || return 0
  gencode+=(-gencode "arch=$1,code=$1")
  mkdir -p "$fatbins"
  nvcc -fatbin "${gencode[@]}" "$res/$2.ptx" -o "$fatbins/$2.fatbin"
  echo "build-ptx: $2.fatbin (${gencode[*]//-gencode /}) in $fatbins"
}
if [[ -n "${LIGHTNING_SASS:-}" ]]; then
  fatbin compute_80 lightning
  fatbin compute_90a lightning_sm90a
  fatbin compute_80 softmax
  fatbin compute_90a softmax_sm90a
  fatbin compute_80 lightning_batch
fi
