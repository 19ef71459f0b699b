#!/bin/bash
# Makes the device payload of bench/job-device.sh in DIR (see bench/job-device-run.sh): run.sh,
# runtime.tar.xz (bin/lean-runtime, about 24 MB; skipped when DIR already has one newer than the
# build's application jar) and home/ with bin/lightning, conf/ and the bench scripts. The JRE is the
# caller's ($JRE_TAR where the payload runs; bin/lean-runtime --jre makes one).
#   bench/job-device-payload.sh DIR
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:?usage: bench/job-device-payload.sh DIR}"
mkdir -p "$dir"
app=$(ls "$repo"/spark-job/target/spark-job-*-app.jar 2>/dev/null | head -n 1 || true)
if [[ ! -s "$dir/runtime.tar.xz" || -z "$app" || "$app" -nt "$dir/runtime.tar.xz" ]]; then
  # built aside and moved into place: a payload marked ready is never seen half written
  "$repo/bin/lean-runtime" "$dir/.runtime-new.tar.xz" && mv "$dir/.runtime-new.tar.xz" "$dir/runtime.tar.xz"
fi
rm -rf "$dir/home"
mkdir -p "$dir/home/bin" "$dir/home/conf" "$dir/home/bench"
cp "$repo/bin/lightning" "$dir/home/bin/"
cp "$repo/conf/log4j2.properties" "$dir/home/conf/"
cp "$repo"/bench/{job-device.sh,make_inputs.py,job_check.py,job_bounds.py} "$dir/home/bench/"
cp "$repo/bench/job-device-run.sh" "$dir/run.sh"
du -sh "$dir"
