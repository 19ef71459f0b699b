#!/usr/bin/env bash
# Softmax attention through the job on a GPU at two window budgets, rounds interleaved (A B, B A,
# A B, ...) against the machine's drift: `bin/lightning run --attention softmax --write-lse --backend
# gpu --gpu-window-bytes W` on one sequence split into pieces. A softmax GPU run sizes its query
# blocks (q and two float32 partials a token) and its key blocks (k and v) from half of
# --gpu-window-bytes each, so the budget decides how often keys are read, scanned and uploaded (once
# per query block) and how many partials are merged; lightning uses the same option for its windows,
# and this measures whether softmax can take the budget lightning wants (issue 13). The inputs stay in
# the page cache (read once before the first run): the disk is not what is compared here. Every output
# is held to float64 (bench/job_check.py: o and lse on the first and last token of every piece and a
# few more, through every visible key) before its figures count; runs of one budget must write the
# same bytes (the merge order is fixed), and are compared with cmp.
#   bench/softmax-window-device.sh HOME
# HOME: a directory with bin/lightning, conf/ and spark-job/target (a lean runtime extracted), and
# bench/ (this script's siblings). Needs java (JAVA_HOME) and python3 with numpy (torch makes the
# inputs on the GPU).
# Environment: SOFTMAX_SHAPE=TxHqxHkxD (default 65536x64x8x128: MiniMax-01's softmax layer's heads,
# grouped), SOFTMAX_PIECES (4), SOFTMAX_WINDOWS (the two budgets in bytes, "TAG:BYTES TAG:BYTES",
# default "w1g:1073741824 w512m:536870912"), SOFTMAX_ROUNDS (at most, default 3; a round starts only
# while the time left allows one like the last), BUDGET_S (140), WORK, LOG, BACKEND (gpu; cpu for a
# dry run, which runs the CPU backend and so does not vary the budget), JOB_S (each job's limit, 60),
# GEN_WORKERS (8), CHECK_HEADS (query heads checked, 4). Logs: LOG-results.log, LOG-jobs.log (every
# job's own log, one after the other).
set -uo pipefail
home="$(cd "${1:?usage: bench/softmax-window-device.sh HOME}" && pwd)"
bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${WORK:-/tmp/lightning-softmax-window}"
log="${LOG:-$work/softmax-window}"
budget="${BUDGET_S:-140}"
IFS=x read -r st shq shk sd <<< "${SOFTMAX_SHAPE:-65536x64x8x128}"
pieces="${SOFTMAX_PIECES:-4}"
read -r -a windows <<< "${SOFTMAX_WINDOWS:-w1g:1073741824 w512m:536870912}"
rounds="${SOFTMAX_ROUNDS:-3}"
rm -rf "$work"; mkdir -p "$work" "$(dirname "$log")"
results="$log-results.log"; : > "$results"; : > "$log-jobs.log"
source "$bench/job-lib.sh"
JOB_S="${JOB_S:-60}"

stamp "machine"
{ date -u; nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv 2>/dev/null; nproc; free -g | head -2; } 2>&1

stamp "inputs: softmax ${st}x${shq}x${shk}x${sd}, and 4,096 tokens for the driver's PTX compilation"
s=$(now)
timeout "$(capped 60)" bash -c "$(declare -f gen); bench='$bench' GEN_WORKERS='${GEN_WORKERS:-8}' gen '$work/in' 1 $st $shq $sd sm 3 $shk" \
  && timeout "$(capped 20)" bash -c "$(declare -f gen); bench='$bench' GEN_WORKERS=1 gen '$work/warm' 1 4096 $shq $sd sm 4 $shk" \
  || { echo "making inputs failed"; exit 3; }
result "inputs softmax bytes=$(stat -c %s "$work/in/sm-000.safetensors") s=$(python3 -c "print('%.1f' % ($(now) - $s))")"

# the first GPU softmax run on a machine compiles the PTX in the driver (kept in its cache after)
stamp "job: warm-up, 4,096 tokens"
job softmax-warmup "$work/warm" "$work/out-warmup" --attention softmax --write-lse
{ echo "=== softmax-warmup"; cat "$log-job-softmax-warmup.log"; } >> "$log-jobs.log" && rm -f "$log-job-softmax-warmup.log"
cat "$work/in/sm-000.safetensors" > /dev/null  # into the page cache, for every run alike

declare -A first_out
per_round=0
for ((r = 0; r < rounds; r++)); do
  if (( r > 0 && $(left) < per_round + 10 )); then
    result "softmax round $r skipped: $(left) s left, a round took ${per_round} s"; break
  fi
  r0=$SECONDS
  order=("${windows[@]}")
  (( r % 2 == 1 )) && order=("${windows[1]}" "${windows[0]}")
  for w in "${order[@]}"; do
    tag=${w%%:*} bytes=${w#*:}
    name="softmax-$tag-r$r"
    stamp "job: softmax, --gpu-window-bytes $bytes ($tag), round $r"
    out="$work/out-$name"
    job "$name" "$work/in" "$out" --attention softmax --write-lse --partition-tokens $((st / pieces)) \
      --gpu-window-bytes "$bytes"
    { echo "=== $name"; cat "$log-job-$name.log"; } >> "$log-jobs.log" && rm -f "$log-job-$name.log"
    if [[ -z "${first_out[$tag]:-}" ]]; then
      timeout "$(capped 60)" python3 "$bench/job_check.py" "$work/in/sm-000.safetensors" "$out/sm-000.safetensors" \
        --pieces "$pieces" --heads "${CHECK_HEADS:-4}" | sed "s/^RESULT check /RESULT check $name /" | tee -a "$results"
      first_out[$tag]="$out"
    elif cmp -s "${first_out[$tag]}/sm-000.safetensors" "$out/sm-000.safetensors"; then
      result "same_bytes $name ${first_out[$tag]##*/out-}"
      rm -rf "$out"
    else
      result "DIFFERENT $name ${first_out[$tag]##*/out-}"
      timeout "$(capped 60)" python3 "$bench/job_check.py" "$work/in/sm-000.safetensors" "$out/sm-000.safetensors" \
        --pieces "$pieces" --heads "${CHECK_HEADS:-4}" | sed "s/^RESULT check /RESULT check $name /" | tee -a "$results"
      rm -rf "$out"
    fi
  done
  per_round=$(( SECONDS - r0 ))
done
stamp "summary"
python3 - "$results" "${windows[@]}" <<'EOF' | tee -a "$results"
import re, statistics, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("RESULT job softmax-w")]
tags = [w.split(":")[0] for w in sys.argv[2:]]
checks = [l for l in open(sys.argv[1]) if l.startswith("RESULT check") or l.startswith("RESULT DIFFERENT")]
print("checks: %d, %s" % (len(checks), "all ok" if checks and all(l.rstrip().endswith(" ok") for l in checks) else "NOT ALL OK"))
med = {}
for tag in tags:
    runs = [dict(re.findall(r"(\w+)=([^\s]+)", l)) for l in lines if l.startswith("RESULT job softmax-%s-" % tag)]
    runs = [r for r in runs if r.get("status") == "0"]
    if not runs:
        continue
    job = [float(r["job_s"]) for r in runs]
    blocks = [float(r.get("softmax_1of2", "nan").rstrip("s")) for r in runs]
    med[tag] = statistics.median(job)
    print("RESULT softmax-window %s runs=%d job_s=%s median_job_s=%.2f blocks_s=%s median_blocks_s=%.2f"
          % (tag, len(runs), ",".join("%.2f" % x for x in job), med[tag], ",".join("%.2f" % x for x in blocks),
             statistics.median(blocks)))
if len(med) == 2:
    a, b = tags
    print("RESULT softmax-window %s_over_%s median_job=%.3f" % (b, a, med[b] / med[a]))
EOF
rm -rf "$work"
