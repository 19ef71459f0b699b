#!/usr/bin/env bash
# The job itself on a GPU machine at the issue's head count (issue 13, item 3), beside its three
# bounds measured in the same run, within a time budget: BF16 inputs written to the local disk
# (bench/make_inputs.py), the disk's cold read bandwidth (one stream, and 8 streams at once),
# pinned host-device copies (torch), the kernels alone on the device (DeviceBench), then
# `bin/lightning run --backend gpu` on one sequence split into pieces and on a directory of
# sequences, each from a cold page cache (dropped before it), the split one once more from a warm
# one; each output spot-checked in float64 against its input (bench/job_check.py) before its
# figures count; last the o-write bench (OutputWriteBench). Prints "RESULT" lines and a table of
# tokens/s beside the bounds.
#   bench/job-device.sh HOME
# HOME: a directory with bin/lightning, conf/ and spark-job/target (a lean runtime extracted), and
# bench/ (this script's siblings). Needs java (JAVA_HOME), python3 with torch and numpy, root (to
# drop the page cache; without it the "cold" runs are warm and say so).
# Environment: WORK (default /tmp/lightning-job-device), LONG=TxHxD (default 262144x64x128),
# PIECES (8), DIR_FILES=N, DIR_SEQ=TxHxD (default 6, 65536x64x128: N is cut to what the time left
# allows, at least 2), DROP=0 (leave the page cache alone, as on a shared machine), BUDGET_S (190: stages are skipped or cut to end within it), LOG (prefix of
# the log files; default $WORK/job-device), BACKEND (gpu; cpu for a dry run of the script without a GPU),
# LONG_VARIANTS (more cold runs of the split sequence, each "TAG:OPTIONS" separated by "|", e.g.
# "off:--read-ahead off|w256:--gpu-window-bytes 268435456": job long-cold-TAG, checked like the first,
# while more than 40 s are left), WARM_VARIANTS (the same from the page cache, after the warm run;
# job long-warm-TAG), DIR_FILES=0 (no directory job), WRITEBENCH=0 (no o-write bench), LONG_OPTS (options
# of every run of the split sequence, before a variant's own), KEEP_FIRST=0 (the first cold run's output
# is removed after its check, so that no later drop of the page cache waits for its 4 GB to reach the
# disk: the later runs are then float64-checked instead of compared with it byte for byte).
# For the issue's full size (T = 1M at H = 64: 48 GiB of q, k, v and 16 GiB of o): OUT_DIR (default
# WORK: where the split sequence's and the directory's outputs go, e.g. a tmpfs when the disk cannot hold inputs and output;
# the script says where they went), LONG_FIT=1 (cut T, in steps of PIECES x 16,384 tokens, to what
# the free space of WORK and OUT_DIR holds, and with WRITE_MBPS to what the disk takes in GEN_S at
# that many MB/s, and say so, instead of stopping), GEN_S (seconds the inputs
# may take to be written, default 60; the sync after it is not limited), GEN_WORKERS (writers of
# make_inputs.py, default 8),
# JOB_S (each job's limit, default 90), CHECK_S (each float64 check's, default 40), DIR_GEN_S (the directory's
# inputs' writing and sync, default 60).
set -uo pipefail
home="$(cd "${1:?usage: bench/job-device.sh HOME}" && pwd)"
bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${WORK:-/tmp/lightning-job-device}"
log="${LOG:-$work/job-device}"
budget="${BUDGET_S:-190}"
IFS=x read -r lt lh ld <<< "${LONG:-262144x64x128}"
IFS=x read -r dt dh dd <<< "${DIR_SEQ:-65536x64x128}"
dir_files="${DIR_FILES:-6}"
pieces="${PIECES:-8}"
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
out_dir="${OUT_DIR:-$work}"
rm -rf "$work" "$out_dir"/out-long-* "$out_dir"/out-dir-*; mkdir -p "$work" "$out_dir" "$(dirname "$log")"
results="$log-results.log"; : > "$results"

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
  grep -E "^lightning: (done|pass|scan|finish|.*sequences,)" "$log-job-$name.log" | grep -vE " 0/[0-9]+ done" | tail -6
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

stamp machine
{ date -u; nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv
  nproc; free -g | head -2; lscpu | grep -E "Model name|NUMA node\(s\)"; df -h "$work"; findmnt -T "$work" -o SOURCE,FSTYPE,OPTIONS
  lsblk -d -o NAME,ROTA,SIZE,MODEL 2>/dev/null | head -6; "$java_bin" -version 2>&1 | head -1
  df -h /dev/shm
  [[ "$out_dir" != "$work" ]] && { echo "outputs of the split sequence in $out_dir:"; df -h "$out_dir"; findmnt -T "$out_dir" -o SOURCE,FSTYPE,OPTIONS; }
  } 2>&1
free_gib=$(df -BG --output=avail "$work" | tail -1 | tr -dc 0-9)
out_free_gib=$(df -BG --output=avail "$out_dir" | tail -1 | tr -dc 0-9)
same_fs=$([[ "$(stat -c %d "$work")" == "$(stat -c %d "$out_dir")" ]] && echo 1 || echo 0)

# --- inputs of the split sequence, written through the page cache and synced to the disk
stamp "inputs: one sequence ${lt}x${lh}x${ld}"
# fits T: whether T tokens of q, k, v (and o, 1/4 of the bytes) fit the free space, 2 GiB left on each,
# and, with WRITE_MBPS (the rate at which this disk took inputs before, MB/s), whether q, k and v can
# be written and synced within GEN_S
fits() {
  local in_gib=$(( ($1 * lh * ld * 2 * 3 + (1 << 30) - 1) / (1 << 30) )) o_gib=$(( ($1 * lh * ld * 2 + (1 << 30) - 1) / (1 << 30) ))
  [[ -n "${WRITE_MBPS:-}" ]] && (( $1 * lh * ld * 2 * 3 / 1000000 > WRITE_MBPS * ${GEN_S:-60} )) && return 1
  if (( same_fs )); then (( in_gib + o_gib + 2 <= free_gib )); else (( in_gib + 2 <= free_gib && o_gib + 2 <= out_free_gib )); fi
}
if ! fits "$lt"; then
  step=$(( pieces * 16384 )); cut=$(( lt / step * step ))
  while (( cut > 0 )) && ! fits "$cut"; do cut=$(( cut - step )); done
  if [[ "${LONG_FIT:-0}" == 0 || $cut -le 0 ]]; then
    echo "the split sequence needs $(( lt * lh * ld * 8 >> 30 )) GiB with its output; ${free_gib} GiB free under $work," \
      "${out_free_gib} under $out_dir: cut LONG (or LONG_FIT=1, or OUT_DIR on another file system)"; exit 3
  fi
  result "long cut T=$lt to T=$cut: inputs and o need $(( cut * lh * ld * 8 >> 30 )) GiB, free ${free_gib} GiB under $work and ${out_free_gib} GiB under $out_dir${WRITE_MBPS:+; inputs written at $WRITE_MBPS MB/s within GEN_S=${GEN_S:-60} s}"
  lt=$cut
  stamp "inputs: one sequence ${lt}x${lh}x${ld}"
fi
t0=$(now)
timeout "$(capped "${GEN_S:-60}")" bash -c "$(declare -f gen); home='$home' bench='$bench' GEN_WORKERS='${GEN_WORKERS:-8}' gen '$work/long' 1 $lt $lh $ld long 1" \
  || { echo "making inputs failed (or took more than ${GEN_S:-60} s)"; exit 3; }
t1=$(now); sync; t2=$(now)
long_bytes=$(stat -c %s "$work"/long/long-000.safetensors)
result "inputs long bytes=$long_bytes write_s=$(python3 -c "print('%.1f' % ($t1 - $t0))") sync_s=$(python3 -c "print('%.1f' % ($t2 - $t1))") workers=${GEN_WORKERS:-8} GB_per_s=$(python3 -c "print('%.3f' % ($long_bytes / ($t2 - $t0) / 1e9))")"
gen_s=$(python3 -c "print(int($t2 - $t0 + 0.999))")

# --- the disk's cold read bandwidth: 4 GiB of that file, one stream, then 8 streams on 8 ranges
stamp "disk read, cold"
chunk=$(( (long_bytes / 8 / (16 << 20)) )); (( chunk > 32 )) && chunk=32     # 16 MiB blocks per stream, <= 512 MiB
echo "page cache $(drop_caches)"
s=$(date +%s.%N)
dd if="$work/long/long-000.safetensors" of=/dev/null bs=16M count=$((chunk * 8)) 2>/dev/null
e=$(date +%s.%N)
disk1=$(python3 -c "print('%.3f' % ($chunk * 8 * 16 * 2**20 / ($e - $s) / 1e9))")
result "disk_read streams=1 GB_per_s=$disk1 bytes=$((chunk * 8 * 16 << 20))"
echo "page cache $(drop_caches)"
s=$(date +%s.%N)
for i in 0 1 2 3 4 5 6 7; do
  dd if="$work/long/long-000.safetensors" of=/dev/null bs=16M skip=$(( i * (long_bytes / 8 / (16 << 20)) )) count=$chunk 2>/dev/null &
done
wait
e=$(date +%s.%N)
result "disk_read streams=8 GB_per_s=$(python3 -c "print('%.3f' % ($chunk * 8 * 16 * 2**20 / ($e - $s) / 1e9))") bytes=$((chunk * 8 * 16 << 20))"

# --- pinned copies, each way
stamp "pinned copies"
timeout "$(capped 30)" python3 - <<'EOF' | tee -a "$results"
import torch
n = 1 << 30
h = torch.empty(n, dtype=torch.uint8, pin_memory=True)
d = torch.empty(n, dtype=torch.uint8, device="cuda")
for name, f in (("h2d", lambda: d.copy_(h, non_blocking=True)), ("d2h", lambda: h.copy_(d, non_blocking=True))):
    f(); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(10):
        f()
    e.record(); torch.cuda.synchronize()
    print("RESULT pinned_%s GB_per_s=%.2f" % (name, 10 * n / (s.elapsed_time(e) / 1e3) / 1e9))
EOF

# --- the kernels alone, data on the device (also takes the driver's one-time PTX compilation)
stamp "kernels alone (DeviceBench)"
read -r -a jvm_options < "$home/spark-job/target/jvm.options"
timeout "$(capped 60 60)" "$java_bin" "${jvm_options[@]}" -cp "$(cp_app):$home/spark-job/target/lib/*" \
  dev.lightning.attention.bench.DeviceBench --shapes "${lt}x${lh}x${ld}$([[ "$dir_files" != 0 ]] && echo ",${dt}x${dh}x${dd}")" --runs 5 --checks none --host-shape none \
  --variants none > "$log-devicebench.log" 2>&1
echo "DeviceBench exit $?"
grep -E "^RESULT" "$log-devicebench.log" | sed 's/^RESULT /RESULT kernel /' | tee -a "$results"

stamp "job: the split sequence, cold"
echo "page cache $(drop_caches)"
read -r -a long_opts <<< "${LONG_OPTS:-}"
job long-cold "$work/long" "$out_dir/out-long-cold" --partition-tokens $((lt / pieces)) "${long_opts[@]}"
stamp "check: the split sequence"
timeout "$(capped "${CHECK_S:-40}")" python3 "$bench/job_check.py" "$work/long/long-000.safetensors" \
  "$out_dir/out-long-cold/long-000.safetensors" --pieces "$pieces" | tee -a "$results"
[[ "${KEEP_FIRST:-1}" == 0 ]] && rm -rf "$out_dir/out-long-cold"
# same_or_check NAME OUT: the output OUT of run NAME compared with the first cold run's, byte for byte,
# or float64-checked where that is gone or different
same_or_check() {
  if [[ -f "$out_dir/out-long-cold/long-000.safetensors" ]] && cmp -s "$out_dir/out-long-cold/long-000.safetensors" "$2/long-000.safetensors"; then
    result "same_bytes long-cold $1"
  else
    [[ -f "$out_dir/out-long-cold/long-000.safetensors" ]] && result "DIFFERENT long-cold $1"
    timeout "$(capped "${CHECK_S:-40}")" python3 "$bench/job_check.py" "$work/long/long-000.safetensors" \
      "$2/long-000.safetensors" --pieces "$pieces" | sed "s/^RESULT check /RESULT check $1 /" | tee -a "$results"
  fi
}

IFS='|' read -r -a variants <<< "${LONG_VARIANTS:-}"
for v in "${variants[@]}"; do
  [[ -z "$v" ]] && continue
  tag=${v%%:*}
  (( $(left) > 40 )) || { result "job long-cold-$tag skipped: $(left) s left"; continue; }
  stamp "job: the split sequence, cold, ${v#*:}"
  read -r -a opts <<< "${v#*:}"
  echo "page cache $(drop_caches)"
  job "long-cold-$tag" "$work/long" "$out_dir/out-long-$tag" --partition-tokens $((lt / pieces)) "${long_opts[@]}" "${opts[@]}"
  same_or_check "long-cold-$tag" "$out_dir/out-long-$tag"
  rm -rf "$out_dir/out-long-$tag"
done

if (( $(left) > 40 )); then
  stamp "job: the split sequence, warm (inputs in the page cache)"
  job long-warm "$work/long" "$out_dir/out-long-warm" --partition-tokens $((lt / pieces)) "${long_opts[@]}"
  same_or_check long-warm "$out_dir/out-long-warm"
  IFS='|' read -r -a warm_variants <<< "${WARM_VARIANTS:-}"
  for v in "${warm_variants[@]}"; do
    [[ -z "$v" ]] && continue
    (( $(left) > 40 )) || { result "job long-warm-${v%%:*} skipped: $(left) s left"; continue; }
    stamp "job: the split sequence, warm, ${v#*:}"
    read -r -a opts <<< "${v#*:}"
    job "long-warm-${v%%:*}" "$work/long" "$out_dir/out-long-warm-v" --partition-tokens $((lt / pieces)) "${long_opts[@]}" "${opts[@]}"
    same_or_check "long-warm-${v%%:*}" "$out_dir/out-long-warm-v"
    rm -rf "$out_dir/out-long-warm-v"
  done
  rm -rf "$out_dir/out-long-warm"
fi
rm -rf "$work/long" "$out_dir"/out-long-*

# --- the directory: as many sequences as the time left allows (each costs its write, sync and read)
per_file_gib=$(( dt * dh * dd * 2 * 3 / (1 << 30) ))
# a file costs its writing and sync at the split sequence's pace and its cold read at the disk's
# (one stream, the slower figure); 30 s stay for the job's start, the checks and the rest
secs_per_file=$(python3 -c "
b = $dt * $dh * $dd * 2 * 3; r = max($disk1, 0.2) * 1e9
print(int(b * ($gen_s / max($long_bytes, 1) + 1 / r)) + 1)")
n=$(( ($(left) - 30) / secs_per_file ))
echo "directory: ${secs_per_file}s a file, $(left)s left: $n files (at most $dir_files)"
(( n > dir_files )) && n=$dir_files
# space: inputs under WORK, outputs under OUT_DIR (both under WORK when they share its file system)
if (( same_fs )); then
  (( n * (per_file_gib + per_file_gib / 3 + 1) + 4 > free_gib )) && n=$(( (free_gib - 4) / (per_file_gib + per_file_gib / 3 + 1) ))
else
  (( n * (per_file_gib + 1) + 4 > free_gib )) && n=$(( (free_gib - 4) / (per_file_gib + 1) ))
  (( n * (per_file_gib / 3 + 1) + 2 > out_free_gib )) && n=$(( (out_free_gib - 2) / (per_file_gib / 3 + 1) ))
fi
if (( n >= 2 )); then
  stamp "inputs: $n sequences ${dt}x${dh}x${dd}"
  t0=$SECONDS
  timeout "$(capped "${DIR_GEN_S:-60}" 30)" bash -c "$(declare -f gen); home='$home' bench='$bench' GEN_WORKERS='${GEN_WORKERS:-8}' gen '$work/dir' $n $dt $dh $dd short 2"
  t1=$SECONDS
  echo "page cache $(drop_caches)"
  result "inputs dir files=$n bytes=$(du -cb "$work"/dir/*.safetensors | tail -1 | cut -f1) write_s=$((t1 - t0)) sync_s=$((SECONDS - t1))"
  stamp "job: the directory, cold"
  job dir-cold "$work/dir" "$out_dir/out-dir-cold"
  stamp "check: two of the directory's sequences"
  for f in short-000 "short-$(printf %03d $((n - 1)))"; do
    timeout "$(capped 20)" python3 "$bench/job_check.py" "$work/dir/$f.safetensors" "$out_dir/out-dir-cold/$f.safetensors" \
      --extra 6 | tee -a "$results"
  done
  rm -rf "$work/dir" "$work"/out-dir-* "$out_dir"/out-dir-*
else
  result "job dir skipped: $(left) s left"
fi

# --- the o write alone, from an off-heap block into the page cache (each mode a new file)
if [[ "${WRITEBENCH:-1}" != 0 ]] && (( $(left) > 12 )); then
  stamp "o write bench"
  timeout "$(capped 30)" "$java_bin" -cp "$(cp_app):$home/spark-job/target/lib/*" dev.lightning.attention.bench.OutputWriteBench \
    --bytes 1073741824 --runs 3 --threads 8 --dir "$work" > "$log-writebench.log" 2>&1
  echo "OutputWriteBench exit $?"
  grep -E "^RESULT" "$log-writebench.log" | tee -a "$results"
fi

stamp "summary"
python3 "$bench/job_bounds.py" "$results" --long "${lt}x${lh}x${ld}" --pieces "$pieces" --dir-seq "${dt}x${dh}x${dd}" \
  | tee -a "$results"
rm -rf "$work"/out-* "$work"/long "$work"/dir "$out_dir"/out-long-* "$out_dir"/out-dir-*
[[ "$out_dir" != "$work" ]] && rmdir "$out_dir" 2>/dev/null
