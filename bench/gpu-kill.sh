#!/usr/bin/env bash
# A lost executor during pass 2 on a GPU machine: one sequence through bin/lightning (local mode),
# then the same through bin/standalone with two workers sharing GPU 0, killing one executor JVM
# (SIGKILL) once pass 2 has begun; the two outputs must be byte-identical.
#   bench/gpu-kill.sh      (WORK=DIR, default /tmp/lightning-gpu-kill; LONG=TxHxD, default 1048576x8x128)
set -uo pipefail
home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${WORK:-/tmp/lightning-gpu-kill}"
IFS=x read -r t h d <<< "${LONG:-1048576x8x128}"
rm -rf "$work" && mkdir -p "$work"
python3 "$home/bench/make_inputs.py" "$work/in" --tokens "$t" --heads "$h" --dim "$d" --prefix long > /dev/null
"$home/bin/lightning" run --backend gpu --input "$work/in" --output "$work/local" --partition-tokens $((t / 16)) \
  > "$work/local.log" 2>&1 || { tail -20 "$work/local.log"; exit 1; }
WORKER_GPUS="0 0" WORKER_CORES=2 WORKER_MEMORY=16g LOGS="$work/cluster" "$home/bin/standalone" --backend gpu \
  --input "$work/in" --output "$work/killed" --partition-tokens $((t / 16)) > "$work/killed.log" 2>&1 &
job=$!
killed=
for _ in $(seq 1 1200); do
  if [[ -z "$killed" ]] && grep -q "pass 2/2: outputs" "$work/killed.log" 2>/dev/null; then
    victim=$(pgrep -f CoarseGrainedExecutorBackend | head -n 1)
    if [[ -n "$victim" ]]; then
      kill -9 "$victim" && killed=$victim && echo "killed executor JVM $victim during pass 2"
    fi
  fi
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
wait "$job"; status=$?
grep -E "^lightning: (done|pass 2/2.*done)|lost|Lost" "$work/killed.log" | tail -4
cmp -s "$work/local/long-000.safetensors" "$work/killed/long-000.safetensors" \
  && echo "RESULT kill status=$status killed=${killed:-none} same_bytes" \
  || echo "RESULT kill status=$status killed=${killed:-none} DIFFERENT"
