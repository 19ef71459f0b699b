#!/usr/bin/env bash
# Session 10: uniform cuts that fill whole waves (more than SegmentPlan.MAX_WAVES = 2) against the backend's
# choice, in one process, alternated (DeviceBench --ab), T = 1M, D = 128, bf16. Run as .device/waves/run.sh by
# .device/rounds/run.sh waves:290 (BUNDLE, JRE_TAR set).
set -uo pipefail
d=$(mktemp -d); tar -C /tmp -xJf "$JRE_TAR"
CP="$BUNDLE/classes:$BUNDLE/test-classes:$(ls "$BUNDLE"/lib/*.jar | tr '\n' ':')"
timeout 280 /tmp/jre/bin/java --add-modules jdk.incubator.vector -Xmx24g -cp "$CP" dev.lightning.attention.bench.DeviceBench \
  --shapes none --variants none --host-shape none --checks none --rounds 6 \
  --ab 1048576x48x128:11x1,1048576x48x128:11x2,1048576x56x128:7x1,1048576x40x128:13x1 \
  > "$OUT/devicebench.log" 2>&1
echo "DeviceBench rc=$?"
grep -E "^RESULT" "$OUT/devicebench.log"
