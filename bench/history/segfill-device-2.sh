#!/usr/bin/env bash
# The segfill follow-up on a GPU machine (round 2, 2026-12-03), within SECONDS (default 38): one
# DeviceBench process that alternates the backend's choice with the alternative over 7 rounds on one
# resident window each (--ab): T = 524,288, H = 16, D = 64 against the narrow kernels without the
# _n64 ones (old) and against the Hopper kernels padded to Dk = 128; T = 1M, D = 128, H = 8 against
# main's 16 segments and H = 48 against main's 2 x 2 plan.
# Environment as bench/history/segfill-device.sh (OUT, JRE_TAR, BUNDLE).
#   bench/history/segfill-device-2.sh PAYLOAD.tar.xz [SECONDS]
set -uo pipefail
payload="$(cd "$(dirname "${1:?usage: bench/history/segfill-device-2.sh PAYLOAD.tar.xz [SECONDS]}")" && pwd)/$(basename "$1")"
budget="${2:-38}"
start=$SECONDS
out="${OUT:-$(mktemp -d)}"
L="$out/segfill2"
w=/tmp/segfill-run2
rm -rf "$w" && mkdir -p "$w"
tar -C "$w" -xJf "$payload" || { echo "segfill: cannot unpack $payload"; exit 1; }
tar -C "$w" -xJf "${JRE_TAR:?JRE_TAR unset}" || { echo "segfill: cannot unpack $JRE_TAR"; exit 1; }
export JAVA_HOME="$w/jre" PATH="$w/jre/bin:$PATH"
B="${BUNDLE:?BUNDLE unset}"
P="$w/segfill"
CP="$P/fb-new:$P/classes:$B/classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
t=$((budget - (SECONDS - start) - 2))
echo "== DeviceBench --ab ($t s left)"
timeout "$t" java -ea --add-modules jdk.incubator.vector -Xmx8g -cp "$CP" dev.lightning.attention.bench.DeviceBench \
  --shapes none --checks none --variants none --host-shape none --runs 10 --rounds 7 \
  --ab 524288x16x64:old,524288x16x64:hopper,1048576x8x128:16x1,1048576x48x128:2x2 > "$L-ab.log" 2>&1
echo "DeviceBench rc=$?"
grep -E "RESULT (copy|check|ab )|Exception|Error" "$L-ab.log" | cut -c1-260
echo "== done in $((SECONDS - start)) s"
