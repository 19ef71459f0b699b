#!/usr/bin/env bash
# The issue's CPU benchmark of many short sequences through the plain Java API (no Spark): 1M
# sequences x 1 token and 100K sequences x 64 tokens, H = 8, D = 128, BF16, states read from and
# written back to a host state store of STORE slots (sequence i in slot i mod STORE), a sample checked
# against the float64 reference in the same run (BatchStreamBench). Build first:
#   mvn -o -q -pl gpu-worker compile
# Usage: bench/decode-cpu.sh [THREADS] [STORE]      (LOG: also append the output to this file)
# JFR=1 also records a flight recording of each case (/tmp/decode-cpu-*.jfr) and prints its hottest
# methods (execution samples by top frame).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1} store=${2:-8192}
cp=gpu-worker/target/classes
log=${LOG:-/dev/null}
run() {  # run NAME SEQUENCES TOKENS BATCH
  local jfr=()
  if [[ "${JFR:-0}" == 1 ]]; then
    jfr=("-XX:StartFlightRecording=filename=/tmp/decode-cpu-$1.jfr,settings=profile")
  fi
  echo "== $1: $2 sequences x $3 tokens, batches of $4, $threads thread(s), store of $store states ($(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg))" | tee -a "$log"
  java -Xmx8g --add-modules jdk.incubator.vector "${jfr[@]}" -cp "$cp" dev.lightning.attention.bench.BatchStreamBench \
    --sequences "$2" --tokens "$3" --store "$store" --batch "$4" --threads "$threads" 2>&1 | grep -v "^WARNING: Using incubator" | tee -a "$log"
  if [[ "${JFR:-0}" == 1 ]]; then
    jfr print --events jdk.ExecutionSample "/tmp/decode-cpu-$1.jfr" | grep -A1 "stackTrace = \[" | grep -v "stackTrace\|^--" \
      | sed 's/line:.*//' | sort | uniq -c | sort -rn | head -8 | tee -a "$log"
  fi
}
run decode-1M 1000000 1 4096
run prefill-100K 100000 64 256
