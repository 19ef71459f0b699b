#!/usr/bin/env bash
# The sequence-length sweep behind the throughput and error plots of BENCHMARKS.md, on a GPU machine, in
# one run: ours (DeviceBench: timings, and the check against the float64 reference at several T), fla and
# vLLM's MiniMax prefill kernel on the same shapes and their errors (bench/sweep.py). Log on stdout;
# bench/plots.sh reads it from bench/results/DATE-h200-sweep.log.
#   LIGHTNING_BUNDLE=DIR FLA_PATH=DIR VLLM_PATH=DIR bench/sweep.sh > LOG
# LIGHTNING_BUNDLE: classes/ and lib/*.jar (bin/gpu-bundle makes one; gpu-worker's and the planner's classes
# with gpu-worker's runtime jars are enough); unset: this checkout's Maven build (spark-job/target/lib).
# FLA_PATH, VLLM_PATH: as bench/sweep.py says; either unset skips that side.
# Environment: TS (sequence lengths, default 4K to 1M by 4), HEADS (default 64,8), D (default 128),
# CHECKS (lengths of our error check, default TS), STAGE_TIMEOUT (seconds per stage, default 300),
# FLA_TUNINGS (fla processes per head count, default 3: each tunes anew, and bench/plots.py keeps each shape's
# fastest; the first also times vLLM, measures the errors and holds each timed fla call against float64 on two
# heads). CHECKS may name shapes too (TxHxD: ours on heads 0 and H - 1 at that shape).
#
# Three stages. (1) Nothing is timed: our checks (their float64 reference runs on the CPU, about a second
# per 16K tokens and head) run beside a short sweep.py run whose only purpose is to get Triton to compile
# fla's and vLLM's kernels into its disk cache (fla compiles each of its autotuning configurations: a
# minute or more); that run's lines are prefixed "warm-up:" and its autotuning results are not kept.
# (2) DeviceBench times ours, alone on the GPU. (3) sweep.py times fla and vLLM, alone on the GPU, largest
# T first, one process per head count (fla tunes its kernels once a process, on an 8K-token call at
# that head count), then measures their errors.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="$(cd "$here/.." && pwd)"
IFS=, read -ra hs <<< "${HEADS:-64,8}"
IFS=, read -ra tl <<< "${TS:-4096,16384,65536,262144,1048576}"
d="${D:-128}"
shapes=""
warm=""
for h in "${hs[@]}"; do
  for t in $(printf '%s\n' "${tl[@]}" | sort -rn); do shapes="${shapes:+$shapes,}${t}x${h}x${d}"; done
  warm="${warm:+$warm,}4096x${h}x${d}"
done
ts_sorted=$(printf '%s\n' "${tl[@]}" | sort -n | paste -sd,)
if [[ -n "${LIGHTNING_BUNDLE:-}" ]]; then
  cp="$LIGHTNING_BUNDLE/classes"
  for jar in "$LIGHTNING_BUNDLE"/lib/*.jar; do cp="$cp:$jar"; done
else
  cp="$home/gpu-worker/target/classes:$home/partitioner/target/classes:$home/spark-job/target/lib/*"
fi
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
limit="${STAGE_TIMEOUT:-300}"
tmp=$(mktemp -d)
echo "sweep: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null), shapes $shapes"
failed=0
echo "== stage 1: our checks at T = ${CHECKS:-$ts_sorted}, beside the compilation of fla's and vLLM's kernels (nothing timed)"
timeout "$limit" "$java_bin" -Xmx48g -cp "$cp" dev.lightning.attention.bench.DeviceBench --shapes none \
  --checks "${CHECKS:-$ts_sorted}" --host-shape none --variants none > "$tmp/checks.log" 2>&1 &
checks=$!
FLA_CACHE_RESULTS=0 SHAPES="$warm" ERR_T=4096 PYTHONUNBUFFERED=1 timeout "$limit" python3 "$here/sweep.py" \
  > "$tmp/warm.log" 2>&1 &
compile=$!
wait $checks || failed=1
wait $compile || failed=1
cat "$tmp/checks.log"
sed 's/^/warm-up: /' "$tmp/warm.log"
echo "== stage 2: ours, timed ($(date -u +%H:%M:%S))"
timeout "$limit" "$java_bin" -Xmx24g -cp "$cp" dev.lightning.attention.bench.DeviceBench --shapes "$shapes" \
  --checks none --host-shape none --variants none 2>&1 || failed=1
echo "== stage 3: fla and vLLM, timed, then their errors ($(date -u +%H:%M:%S))"
# One process per head count: fla keeps the configuration it tuned at its first call for every later
# call of the process, whatever H (its tuning key leaves out T and H), and a choice tuned at one H
# can be far from its best at another (2026-12-03: tuned at H = 64, fla took 11.7 ms at T = 1M, H = 8;
# tuned at H = 4 the day before, 9.3 ms). The errors are measured once, by the last head count's first process.
# fla's choice also varies between processes tuned alike (2026-12-03: 12.7 and 19.5 ms at T = 262,144, H = 64,
# both tuned at H = 64 on 8K tokens), so FLA_TUNINGS processes per head count, and the plots and table take each
# shape's fastest: the best of those draws, not one.
tunings="${FLA_TUNINGS:-3}"
for i in "${!hs[@]}"; do
  h=${hs[$i]} hshapes=""
  for t in $(printf '%s\n' "${tl[@]}" | sort -rn); do hshapes="${hshapes:+$hshapes,}${t}x${h}x${d}"; done
  for ((n = 1; n <= tunings; n++)); do
    err=""; (( i == ${#hs[@]} - 1 && n == 1 )) && err="$ts_sorted"   # with vLLM: both errors
    vllm="${VLLM_PATH:-}"; (( n > 1 )) && vllm=""   # vLLM does not tune: timed once
    (( n > 1 )) && [[ -z "${FLA_PATH:-}" ]] && break
    FLA_TUNING=$n FLA_BIG_CHECK=$((n == 1 ? 1 : 0)) VLLM_PATH="$vllm" SHAPES="$hshapes" ERR_T="$err" \
      PYTHONUNBUFFERED=1 timeout "$limit" python3 "$here/sweep.py" 2>&1 || failed=1
  done
done
echo "== done ($(date -u +%H:%M:%S)), status $failed"
rm -rf "$tmp"
exit $failed
