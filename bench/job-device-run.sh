#!/bin/bash
# The device payload of bench/job-device.sh (issue 13 item 3: the job itself on the H200 at H = 64),
# as the lead's combined device call runs it from a copy of the main checkout:
#   OUT=DIR JRE_TAR=jre.tar.xz timeout SECONDS bash .device/hostjob/run.sh
# The payload directory holds this file as run.sh, runtime.tar.xz (bin/lean-runtime of this branch)
# and home/ (bin/lightning, conf/, bench/job-device.sh and its python helpers, from this branch);
# bench/job-device-payload.sh DIR makes it. Logs: $OUT/hostjob-*.log. HOSTJOB_S (default 195)
# bounds the whole, setup included.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
: "${OUT:?OUT: where logs go}" "${JRE_TAR:?JRE_TAR: the jlinked Java 17 (bin/lean-runtime --jre)}"
total="${HOSTJOB_S:-195}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/hostjob-run.log") 2>&1
echo "hostjob payload $(date -u +%T), budget ${total}s"
h=/tmp/hostjob-home
rm -rf "$h" /tmp/hostjob-jre && mkdir -p "$h" /tmp/hostjob-jre
cp -r "$here/home/." "$h/"
tar -C /tmp/hostjob-jre -xJf "$JRE_TAR" && tar -C "$h" -xJf "$here/runtime.tar.xz" || { echo "unpacking failed"; exit 1; }
export JAVA_HOME=/tmp/hostjob-jre/jre PATH=/tmp/hostjob-jre/jre/bin:$PATH
# the driver keeps its compilation of the PTX (about 13 s for the lightning modules on a fresh machine)
# for every later JVM: DeviceBench pays it, the jobs find it
unset CUDA_CACHE_DISABLE; export CUDA_CACHE_MAXSIZE=1073741824
chmod +x "$h"/bin/* "$h"/bench/*
echo "unpacked in ${SECONDS}s"
BUDGET_S=$((total - SECONDS - 5)) LOG="$OUT/hostjob" bash "$h/bench/job-device.sh" "$h"
echo "hostjob payload done $(date -u +%T) after ${SECONDS}s"
rm -rf "$h" /tmp/hostjob-jre /tmp/lightning-job-device
