#!/usr/bin/env bash
# The host-path run on a GPU machine without Maven (2026-12-03): the GPU tests of the host path,
# with assertions on (the allocator's leak check), then DeviceBench's host-path measurement with
# the old paths beside the new ones. DIR holds jre.tar.xz (a jlinked Java 17 with the modules
# java.base, java.desktop, java.management, java.sql, jdk.incubator.vector, java.logging, java.xml,
# jdk.unsupported, java.scripting, jdk.zipfs) and bundle/ (classes and test-classes of gpu-worker and
# partitioner, bundle/lib: gpu-worker's runtime jars, and junit-platform-console-standalone.jar).
# Logs go to $OUT (default: a new temporary directory) as 2026-12-03-h200-hostpath-*.log.
#   bench/hostpath-device.sh DIR
set -uo pipefail
dir="$(cd "${1:?usage: bench/hostpath-device.sh DIR}" && pwd)"
out="${OUT:-$(mktemp -d)}"
tar -C /tmp -xJf "$dir/jre.tar.xz" && export JAVA_HOME=/tmp/jre PATH=/tmp/jre/bin:$PATH
B="$dir/bundle"
CP="$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
L="$out/2026-12-03-h200-hostpath"
{ date -u; nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv; nproc
  free -g | head -2; lscpu | grep -E "Model name|NUMA node\(s\)"; } 2>&1 | tee "$L-machine.log"
timeout 100 java -ea --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" execute \
  --class-path "$CP" --select-class dev.lightning.attention.engine.cuda.HostPathGpuTest \
  --select-class dev.lightning.attention.engine.cuda.GpuBackendTest \
  --select-class dev.lightning.attention.stream.PieceWorkOnBackendsTest --details=tree --disable-banner > "$L-tests.log" 2>&1
echo "tests exit $?"; grep -E "tests (successful|failed|skipped)|✘" "$L-tests.log" | head -30
timeout 120 java --add-modules jdk.incubator.vector -Xmx40g -cp "$CP" dev.lightning.attention.bench.DeviceBench \
  --shapes 1048576x8x128 --variants none --host-shape 262144x8x128 --runs 10 2>&1 | tee "$L-bench.log"
echo "bench exit ${PIPESTATUS[0]}"
