#!/bin/bash
# Makes the device payload of bench/job-device.sh in DIR (see bench/job-device-run.sh): run.sh,
# runtime.tar.xz and home/ with bin/lightning, conf/ and the bench scripts. The runtime is
# bin/lean-runtime's (25.7 MB of tar.xz), cut by bench/job-device-trim.py to the classes that a split
# job, a directory job and the o-write bench load here on the CPU (traced with -Xlog:class+load) and
# the table runs' list, and without the PTX, which run.sh takes from the checkout it runs in (about
# 13 MB). The JRE is the caller's ($JRE_TAR where the payload runs; bin/lean-runtime --jre makes one).
# Settings for the run go in DIR/env (sourced by run.sh), written by the caller. tests.tar.xz holds this
# branch's gpu-worker classes and test classes for the GPU tests run.sh runs first (GPU_TESTS), with
# TESTS=1.
#   bench/job-device-payload.sh DIR
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:?usage: bench/job-device-payload.sh DIR}"
mkdir -p "$dir"
work=$(mktemp -d /tmp/job-device-payload.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$repo/bin/lean-runtime" "$work/full.tar.xz"
# the class-load traces: the split job (read-ahead on and off), a directory job and the o-write bench
mkdir -p "$work/home/bin" "$work/home/conf" "$work/trace"
cp "$repo/bin/lightning" "$work/home/bin/" && cp "$repo/conf/log4j2.properties" "$work/home/conf/"
tar -C "$work/home" -xJf "$work/full.tar.xz"
(
  cd "$work/home"
  export LIGHTNING_CDS=off JAVA_TOOL_OPTIONS="-Xlog:class+load:file=$work/trace/t-%p.log"
  bin/lightning generate --output "$work/in" --files 1 --tokens 4096 --heads 4 --dk 64 --dv 64 --dtype bf16 > /dev/null 2>&1
  bin/lightning generate --output "$work/in2" --files 2 --tokens 2048 --heads 4 --dk 64 --dv 64 --dtype bf16 > /dev/null 2>&1
  bin/lightning run --backend cpu --input "$work/in" --output "$work/o1" --partition-tokens 1024 > /dev/null 2>&1
  bin/lightning run --backend cpu --input "$work/in" --output "$work/o2" --partition-tokens 1024 --read-ahead off > /dev/null 2>&1
  bin/lightning run --backend cpu --input "$work/in2" --output "$work/o3" > /dev/null 2>&1
  java -cp "$(ls spark-job/target/spark-job-*-app.jar):spark-job/target/lib/*" dev.lightning.attention.bench.OutputWriteBench \
    --bytes 16777216 --runs 1 --threads 2 --dir "$work" > /dev/null 2>&1
  cmp "$work/o1/seq-00000.safetensors" "$work/o2/seq-00000.safetensors"
)
python3 "$repo/bench/job-device-trim.py" "$work/full.tar.xz" "$dir/.runtime-new.tar.xz" "$work"/trace/*.log
mv "$dir/.runtime-new.tar.xz" "$dir/runtime.tar.xz"
rm -rf "$dir/home"
mkdir -p "$dir/home/bin" "$dir/home/conf" "$dir/home/bench"
cp "$repo/bin/lightning" "$dir/home/bin/"
cp "$repo/conf/log4j2.properties" "$dir/home/conf/"
cp "$repo"/bench/{job-device.sh,make_inputs.py,job_check.py,job_bounds.py} "$dir/home/bench/"
cp "$repo/bench/job-device-run.sh" "$dir/run.sh"
# this branch's gpu-worker classes (without PTX) and test classes, for run.sh's GPU tests (GPU_TESTS in
# env), with TESTS=1 (the shared call's 16 MB leave little beside the runtime)
rm -f "$dir/tests.tar.xz"
if [[ "${TESTS:-0}" == 1 ]]; then
  (cd "$repo" && mvn -o -q -pl gpu-worker test-compile)
  tar -cJf "$dir/tests.tar.xz" --exclude='*.ptx' -C "$repo/gpu-worker/target" classes test-classes
fi
du -sh "$dir"
