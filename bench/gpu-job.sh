#!/usr/bin/env bash
# The job itself on a GPU machine, beside what bounds it, in one run: the disk's read bandwidth,
# pinned host-device copies, the kernels alone (DeviceBench), then bin/lightning run --backend gpu
# on files from the local disk (one long sequence split into pieces, and a directory of shorter
# ones), and the same through a standalone cluster (bin/standalone: one worker, then two workers
# sharing the GPU). Prints one "RESULT" line per figure.
#   bench/gpu-job.sh
# Needs java (JAVA_HOME), python3 with torch, nvidia-smi, and the build in spark-job/target (a lean
# runtime from bin/lean-runtime, extracted into this checkout, is enough).
# Environment: WORK=DIR (inputs and outputs; default /tmp/lightning-gpu-job), LONG=TxHxD (default
# 1048576x8x128), PIECES=N (default 8), DIRSEQ=NxTxHxD (default 16x65536x8x128), STANDALONE=0 to skip
# the cluster runs, SOFTMAX=TxHxD (default 65536x8x128; none to skip): a softmax job on the GPU and
# the same on the CPU, compared; SOFTMAX_CPU=0 leaves the CPU run out and compares the GPU run with a
# second GPU run of small query and key blocks (--gpu-window-bytes 64m, the blocks of a CPU-sized
# window) instead; LIGHTNING=0 leaves out everything before the softmax jobs. A small softmax run
# first takes the driver's one-time PTX compilation.
set -uo pipefail
home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${WORK:-/tmp/lightning-gpu-job}"
IFS=x read -r lt lh ld <<< "${LONG:-1048576x8x128}"
IFS=x read -r dn dt dh dd <<< "${DIRSEQ:-16x65536x8x128}"
pieces="${PIECES:-8}"
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
app_jar=$(ls "$home"/spark-job/target/spark-job-*-app.jar | head -n 1)
mkdir -p "$work"
rm -rf "$work"/out-*

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo "not dropped (not root)"; }

job() { # name, then bin/lightning run arguments
  local name=$1; shift
  echo "== job: $name (page cache $(drop_caches))"
  local start end
  start=$(date +%s.%N)
  "$@" > "$work/$name.log" 2>&1
  local status=$?
  end=$(date +%s.%N)
  grep -E "^lightning: (done|pass|scan|finish|.*sequences,)" "$work/$name.log" | grep -vE " 0/[0-9]+ done" | tail -6
  [[ $status -ne 0 ]] && tail -20 "$work/$name.log"
  python3 - "$name" "$status" "$start" "$end" "$work/out-$name/_lightning_report.json" <<'EOF'
import json, sys
name, status, start, end, report = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
try:
    r = json.load(open(report))
except Exception:
    print("RESULT job %s status=%d wall_s=%.1f (no report)" % (name, status, end - start)); sys.exit()
passes = " ".join("%s=%.2fs" % (k.split(":")[0].replace(" ", "_"), v["seconds"]) for k, v in r.get("passes", {}).items())
print("RESULT job %s status=%d wall_s=%.1f job_s=%.1f spark_start_s=%.1f tokens=%d tokens_per_s=%.4g backends=%s %s"
      % (name, status, end - start, r["seconds"], r.get("sparkStartSeconds", 0), r.get("tokens", 0),
         r["tokensPerSecond"], ",".join(r.get("backends", [])), passes))
EOF
}

if [[ "${LIGHTNING:-1}" != 0 ]]; then
echo "== inputs"
python3 "$home/bench/make_inputs.py" "$work/long" --files 1 --tokens "$lt" --heads "$lh" --dim "$ld" --prefix long
python3 "$home/bench/make_inputs.py" "$work/dir" --files "$dn" --tokens "$dt" --heads "$dh" --dim "$dd" --prefix short
long_bytes=$(du -cb "$work"/long/*.safetensors | tail -1 | cut -f1)
dir_bytes=$(du -cb "$work"/dir/*.safetensors | tail -1 | cut -f1)

echo "== disk read bandwidth (page cache $(drop_caches))"
start=$(date +%s.%N)
cat "$work"/long/*.safetensors "$work"/dir/*.safetensors > /dev/null
end=$(date +%s.%N)
python3 -c "print('RESULT disk_read GB/s=%.2f bytes=%d' % (($long_bytes + $dir_bytes) / ($end - $start) / 1e9, $long_bytes + $dir_bytes))"

echo "== pinned host-device copies"
python3 - <<'EOF'
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
    print("RESULT pinned_%s GB/s=%.1f" % (name, 10 * n / (s.elapsed_time(e) / 1e3) / 1e9))
EOF

echo "== kernels alone (DeviceBench, data on the device; host path through forward())"
read -r -a jvm_options < "$home/spark-job/target/jvm.options"
timeout 120 "$java_bin" "${jvm_options[@]}" -cp "$app_jar:$home/spark-job/target/lib/*" \
  dev.lightning.attention.bench.DeviceBench --shapes "${lt}x${lh}x${ld}" --runs 5 --host-shape 262144x8x128 \
  --variants none 2>&1 | grep -E "RESULT|error|Exception" | head -20

job long-local "$home/bin/lightning" run --backend gpu --input "$work/long" --output "$work/out-long-local" \
  --partition-tokens $((lt / pieces))
job dir-local "$home/bin/lightning" run --backend gpu --input "$work/dir" --output "$work/out-dir-local"
if [[ "${STANDALONE:-1}" != 0 ]]; then
  job long-standalone env WORKERS=1 WORKER_CORES=8 WORKER_MEMORY=24g "$home/bin/standalone" --backend gpu \
    --input "$work/long" --output "$work/out-long-standalone" --partition-tokens $((lt / pieces))
  job long-shared env WORKER_GPUS="0 0" WORKER_CORES=4 WORKER_MEMORY=16g "$home/bin/standalone" --backend gpu \
    --input "$work/long" --output "$work/out-long-shared" --partition-tokens $((lt / pieces))
  for o in standalone shared; do
    cmp -s "$work/out-long-local/long-000.safetensors" "$work/out-long-$o/long-000.safetensors" \
      && echo "RESULT same_bytes long-local long-$o" || echo "RESULT DIFFERENT long-local long-$o"
  done
fi

fi

if [[ "${SOFTMAX:-65536x8x128}" != none ]]; then
  IFS=x read -r st sh_ sd <<< "${SOFTMAX:-65536x8x128}"
  python3 "$home/bench/make_inputs.py" "$work/softmax" --files 1 --tokens "$st" --heads "$sh_" --dim "$sd" --prefix sm \
    > /dev/null
  # a first GPU softmax run on this machine JIT-compiles the PTX (about 20 s, cached by the driver
  # afterwards): a small run takes that cost, so the timed runs compare like with like
  python3 "$home/bench/make_inputs.py" "$work/softmax-warmup" --files 1 --tokens 4096 --heads "$sh_" --dim "$sd" \
    --prefix sm > /dev/null
  job softmax-warmup "$home/bin/lightning" run --attention softmax --backend gpu --input "$work/softmax-warmup" \
    --output "$work/out-softmax-warmup"
  job softmax-gpu "$home/bin/lightning" run --attention softmax --write-lse --backend gpu \
    --input "$work/softmax" --output "$work/out-softmax-gpu" --partition-tokens $((st / 4))
  if [[ "${SOFTMAX_CPU:-1}" != 0 ]]; then
    other=cpu
    job softmax-cpu "$home/bin/lightning" run --attention softmax --write-lse --backend cpu \
      --input "$work/softmax" --output "$work/out-softmax-cpu" --partition-tokens $((st / 4))
  else
    other=gpu-small-blocks
    job softmax-gpu-small-blocks "$home/bin/lightning" run --attention softmax --write-lse --backend gpu \
      --gpu-window-bytes 64m --input "$work/softmax" --output "$work/out-softmax-gpu-small-blocks" \
      --partition-tokens $((st / 4))
  fi
  python3 - "$work/out-softmax-gpu/sm-000.safetensors" "$work/out-softmax-$other/sm-000.safetensors" "$other" <<'EOF2'
import json, struct, sys
import numpy as np
def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    out = {}
    for name, t in h.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        data = np.frombuffer(raw[8 + n + a:8 + n + b], dtype={"F32": np.float32, "BF16": np.uint16}[t["dtype"]])
        if t["dtype"] == "BF16":
            data = (data.astype(np.uint32) << 16).view(np.float32)
        out[name] = data.astype(np.float64)
    return out
g, c = load(sys.argv[1]), load(sys.argv[2])
for name in sorted(g):
    err = np.linalg.norm(g[name] - c[name]) / np.linalg.norm(c[name])
    print("RESULT softmax gpu-vs-%s %s relative_error=%.3g" % (sys.argv[3], name, err))
EOF2
fi
