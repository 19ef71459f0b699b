#!/bin/bash
# The device payload of bench/job-device.sh (issue 13 item 3: the job itself on the H200 at H = 64),
# as the lead's combined device call runs it from a copy of the main checkout:
#   OUT=DIR JRE_TAR=jre.tar.xz timeout SECONDS bash .device/NAME/run.sh
# The payload directory holds this file as run.sh, runtime.tar.xz (bin/lean-runtime of this branch,
# cut by bench/job-device-trim.py: its application jar without PTX), home/ (bin/lightning, conf/,
# bench/job-device.sh and its python helpers, from this branch) and optionally env (sourced first:
# LONG_VARIANTS, WARM_VARIANTS, DIR_FILES, WRITEBENCH, ... of bench/job-device.sh);
# bench/job-device-payload.sh DIR makes it. Logs: $OUT/NAME-*.log, NAME the payload directory's
# name. HOSTJOB_S (default 195) bounds the whole, setup included.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
name="$(basename "$here")"
: "${OUT:?OUT: where logs go}" "${JRE_TAR:?JRE_TAR: the jlinked Java 17 (bin/lean-runtime --jre)}"
[[ -f "$here/env" ]] && source "$here/env"
total="${HOSTJOB_S:-195}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/$name-run.log") 2>&1
echo "$name payload $(date -u +%T), budget ${total}s"
h=/tmp/$name-home
rm -rf "$h" /tmp/$name-jre && mkdir -p "$h" /tmp/$name-jre
cp -r "$here/home/." "$h/"
tar -C /tmp/$name-jre -xJf "$JRE_TAR" && tar -C "$h" -xJf "$here/runtime.tar.xz" || { echo "unpacking failed"; exit 1; }
# the PTX travels in the checkout this runs from (gpu-worker's resources), not in the payload
ptx="$(pwd)/gpu-worker/src/main/resources/dev/lightning/attention/engine/cuda"
python3 - "$ptx" "$h"/spark-job/target/spark-job-*-app.jar <<'PY' || { echo "putting the PTX back failed"; exit 1; }
import glob, os, sys, zipfile
src, jar = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(jar) as z:
    have = set(z.namelist())
ptx = sorted(glob.glob(os.path.join(src, "*.ptx")))
if not ptx:
    sys.exit("no PTX under " + src)
with zipfile.ZipFile(jar, "a", zipfile.ZIP_DEFLATED) as z:
    for p in ptx:
        name = "dev/lightning/attention/engine/cuda/" + os.path.basename(p)
        if name not in have:
            z.write(p, name)
print("PTX: %d files from %s in %s" % (len(ptx), src, os.path.basename(jar)))
PY
export JAVA_HOME=/tmp/$name-jre/jre PATH=/tmp/$name-jre/jre/bin:$PATH
# the driver keeps its compilation of the PTX (about 13 s for the lightning modules on a fresh machine)
# for every later JVM: DeviceBench pays it, the jobs find it
unset CUDA_CACHE_DISABLE; export CUDA_CACHE_MAXSIZE=1073741824
chmod +x "$h"/bin/* "$h"/bench/*
echo "unpacked in ${SECONDS}s"
# GPU tests of this branch's gpu-worker (tests.tar.xz: its classes without PTX and its test classes),
# first on the class path before main's bundle ($BUNDLE: bin/gpu-bundle, its classes hold the PTX),
# with assertions on (the allocators' leak checks), before the timings; GPU_TESTS: the classes
if [[ -n "${GPU_TESTS:-}" && -f "$here/tests.tar.xz" && -d "${BUNDLE:-/nonexistent}" ]]; then
  t=/tmp/$name-tests && rm -rf "$t" && mkdir -p "$t" && tar -C "$t" -xJf "$here/tests.tar.xz"
  cp_tests="$t/classes:$t/test-classes:$BUNDLE/classes:$BUNDLE/test-classes:$(ls "$BUNDLE"/lib/*.jar | tr '\n' ':')"
  sel=(); for c in $GPU_TESTS; do sel+=(--select-class "$c"); done
  timeout "${GPU_TESTS_S:-60}" java -ea --add-modules jdk.incubator.vector -Xmx16g -jar "$BUNDLE/junit-platform-console-standalone.jar" \
    execute --class-path "$cp_tests" "${sel[@]}" --details=tree --disable-banner > "$OUT/$name-gpu-tests.log" 2>&1
  echo "gpu tests exit $? after ${SECONDS}s"
  grep -E "tests (successful|failed|skipped|aborted)|✘|SKIPPED" "$OUT/$name-gpu-tests.log" | head -20
  rm -rf "$t"
fi
BUDGET_S=$((total - SECONDS - 5)) LOG="$OUT/$name" WORK="/tmp/$name-work" bash "$h/bench/job-device.sh" "$h"
echo "$name payload done $(date -u +%T) after ${SECONDS}s"
rm -rf "$h" /tmp/$name-jre "/tmp/$name-work"
