#!/usr/bin/env bash
# The executor's read-compute-write path on host tensors, on a GPU machine without Maven
# (2026-12-03): PieceWorkBench (one BF16 file, T = 262,144, H = 8, D = 128; pass 2 as one piece,
# before and after, cold and warm page cache), then the GPU tests of the path with assertions on
# (the allocator's leak check). DIR holds jre.tar.xz (a jlinked Java 17) and bundle/ (classes and
# test-classes of gpu-worker and partitioner, bundle/lib: gpu-worker's runtime jars, and
# junit-platform-console-standalone.jar). Logs go to $OUT (default: a new temporary directory) as
# 2026-12-03-h200-$LOG_TAG-*.log (LOG_TAG default hostjob). BENCH_S, TESTS_S and GPU_BACKEND_TEST_S
# bound the three steps in seconds (GPU_BACKEND_TEST_S=0 skips GpuBackendTest).
#   bench/hostjob-device.sh DIR
set -uo pipefail
dir="$(cd "${1:?usage: bench/hostjob-device.sh DIR}" && pwd)"
out="${OUT:-$(mktemp -d)}"
tar -C /tmp -xJf "$dir/jre.tar.xz" && export JAVA_HOME=/tmp/jre PATH=/tmp/jre/bin:$PATH
B="$dir/bundle"
CP="$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
L="$out/2026-12-03-h200-${LOG_TAG:-hostjob}"
work=/tmp/lightning-piecework-bench
{ date -u; nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv; nproc
  free -g | head -2; lscpu | grep -E "Model name|NUMA node\(s\)"; mkdir -p "$work"; df -h "$work"
  lsblk -d -o NAME,ROTA,SIZE,MODEL 2>/dev/null | head -8; } 2>&1 | tee "$L-machine.log"
timeout "${BENCH_S:-60}" java --add-modules jdk.incubator.vector -Xmx24g -cp "$CP" dev.lightning.attention.bench.PieceWorkBench \
  --shape 262144x8x128 --runs 5 --backend gpu --window-bytes 1073741824 --drop-cache true --dir "$work" 2>&1 | tee "$L-bench.log"
echo "bench exit ${PIPESTATUS[0]}"
rm -rf "$work"
tests() { # $1: seconds, $2: log suffix, then classes
  local t=$1 suffix=$2; shift 2
  local sel=(); for c in "$@"; do sel+=(--select-class "$c"); done
  timeout "$t" java -ea --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
    --class-path "$CP" "${sel[@]}" --details=tree --disable-banner > "$L-$suffix.log" 2>&1
  echo "$suffix exit $?"; grep -E "tests (successful|failed|skipped)|✘|Test run finished" "$L-$suffix.log" | head -20
}
tests "${TESTS_S:-50}" tests dev.lightning.attention.stream.PieceWorkHostWindowsTest dev.lightning.attention.stream.PieceWorkOnBackendsTest \
  dev.lightning.attention.engine.cuda.HostPathGpuTest dev.lightning.attention.tensor.NonFiniteTest \
  dev.lightning.attention.stream.RangeReaderTest
if [ "${GPU_BACKEND_TEST_S:-40}" -gt 0 ]; then
  tests "${GPU_BACKEND_TEST_S:-40}" gpubackend dev.lightning.attention.engine.cuda.GpuBackendTest
fi
