# Shared by the device scripts that time bin/lightning jobs (bench/job-device.sh,
# bench/softmax-window-device.sh); sourced, not run. The caller sets before sourcing:
#   home (bin/lightning's directory tree), bench (this directory), work (inputs and outputs),
#   log (prefix of the log files), budget (seconds the script may take, counted by bash's SECONDS),
#   results (the file the RESULT lines are appended to).

left() { echo $((budget - SECONDS)); }
# capped STAGE_SECONDS [RESERVE]: the stage's own limit, cut to the time left less RESERVE (default 0)
capped() { local l=$(( $(left) - ${2:-0} )); (( l < $1 )) && echo $(( l > 1 ? l : 1 )) || echo "$1"; }
result() { echo "RESULT $*" | tee -a "$results"; }
drop_caches() { [[ "${DROP:-1}" == 0 ]] && { echo "not dropped (DROP=0)"; return; }; sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo "NOT dropped (not root)"; }
stamp() { echo "== $* (t=${SECONDS}s, $(left)s left)"; }
now() { date +%s.%N; }
cp_app() { ls "$home"/spark-job/target/spark-job-*-app.jar | head -n 1; }
# gen DIR FILES TOKENS HEADS DIM PREFIX SEED [HEADS_KV]: inputs PREFIX-000.safetensors ...
# (bench/make_inputs.py: torch's generator on the GPU, numpy's without torch or where that failed),
# GEN_WORKERS writers (8)
gen() {
  local a=("$bench/make_inputs.py" "$1" --files "$2" --tokens "$3" --heads "$4" --dim "$5" --prefix "$6" --seed "$7"
           ${8:+--heads-kv "$8"} --workers "${GEN_WORKERS:-8}")
  python3 "${a[@]}" > /dev/null || { echo "make_inputs.py failed: again with numpy's generator"; python3 "${a[@]}" --numpy > /dev/null; }
}
# bytes read from and written to the disk under $work so far (the block device's counters, 512-byte sectors)
blockdev_stat="/sys/class/block/$(basename "$(findmnt -no SOURCE -T "$work" 2>/dev/null | head -1)" 2>/dev/null)/stat"
disk_bytes() { [[ -r "$blockdev_stat" ]] && awk '{printf "%.0f %.0f\n", $3 * 512, $7 * 512}' "$blockdev_stat" || echo "0 0"; }

# job NAME INPUT OUTPUT OPTIONS...: bin/lightning run --backend $BACKEND (gpu) on the page cache as it
# is, within JOB_S (90) seconds or the time left; its log $log-job-NAME.log, its progress lines on
# stdout and one "RESULT job NAME" line from its run report (tokens/s, passes, disk bytes read and
# written while it ran)
job() {
  local name=$1 in=$2 out=$3; shift 3
  local s e status r0 w0 r1 w1
  read -r r0 w0 <<< "$(disk_bytes)"
  s=$(now)
  timeout "$(capped "${JOB_S:-90}")" "$home/bin/lightning" run --backend "${BACKEND:-gpu}" --input "$in" --output "$out" "$@" \
    > "$log-job-$name.log" 2>&1
  status=$?
  e=$(now)
  read -r r1 w1 <<< "$(disk_bytes)"
  grep -E "^lightning: (done|pass|scan|finish|softmax|.*sequences,)" "$log-job-$name.log" | grep -vE " 0/[0-9]+ done" | tail -6
  [[ $status -ne 0 ]] && tail -20 "$log-job-$name.log"
  python3 - "$name" "$status" "$s" "$e" "$out/_lightning_report.json" $((r1 - r0)) $((w1 - w0)) <<'EOF' | tee -a "$results"
import json, sys
name, status, start, end, report = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
disk_read, disk_written = int(sys.argv[6]), int(sys.argv[7])
try:
    r = json.load(open(report))
except Exception:
    print("RESULT job %s status=%d wall_s=%.1f (no report)" % (name, status, end - start)); sys.exit()
passes = " ".join("%s=%.2fs" % (k.split(":")[0].replace(" ", "_").replace("/", "of"), v["seconds"])
                  for k, v in r.get("passes", {}).items())
tokens, seconds, spark = r.get("tokens", 0), r["seconds"], r.get("sparkStartSeconds", 0)
print("RESULT job %s status=%d wall_s=%.2f job_s=%.2f spark_start_s=%.2f tokens=%d tokens_per_s=%.4g wall_tokens_per_s=%.4g "
      "after_start_tokens_per_s=%.4g disk_read_GB=%.2f disk_written_GB=%.2f backends=%s %s"
      % (name, status, end - start, seconds, spark, tokens, r["tokensPerSecond"], tokens / (end - start),
         tokens / max(seconds - spark, 1e-9), disk_read / 1e9, disk_written / 1e9, ",".join(r.get("backends", [])), passes))
EOF
}
