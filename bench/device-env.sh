# Sourced by the bench/*-device.sh scripts and bin/gpu-check: what every run on a GPU machine without Maven does first.
# A carried DIR holds jre.tar.xz (bin/lean-runtime --jre: a jlinked Java 17) and bundle/ (bin/gpu-bundle:
# classes and test-classes of gpu-worker and partitioner, bundle/lib: gpu-worker's runtime jars, and
# junit-platform-console-standalone.jar).
#   device_setup DIR TAG   unpacks the JRE (JAVA_HOME=/tmp/jre), sets B (the bundle), CP (its class path,
#                          the JUnit launcher takes no wildcards) and L (the log prefix
#                          $OUT/DATE-CARD-TAG, OUT defaulting to a new temporary directory), and writes
#                          the machine's description to $L-machine.log; CLASSES_FIRST=DIR goes ahead of the
#                          bundle on the class path (a checkout's gpu-worker/src/main/resources: its PTX)
#   device_tests SECONDS SUFFIX CLASS...
#   device_tests SECONDS SUFFIX --include-tag TAG
#                          runs those test classes (or the bundle's test classes and cases tagged TAG) with
#                          assertions on (the allocators' leak checks) into $L-SUFFIX.log, bounded by SECONDS,
#                          and prints the exit status and the summary
#   device_ab SECONDS AB [SHAPES]
#                          DeviceBench --ab AB (forced plans, each against the backend's choice, in 7 alternated
#                          rounds of 10 timings) after timing SHAPES (default none), into $L-devicebench.log,
#                          bounded by SECONDS, and prints the exit status
#   gpu_mib                the first GPU's memory in MiB (0 without nvidia-smi or a reading)
#   card_tag               CARD of the logs' names: h100 or h200 by the first GPU's name, else gpu (bench/plots.py
#                          reads the H200's figures from *-h200-* logs alone)
#   smi_start FILE         samples the first GPU's SM clock, power, temperature and power limit 40 times a second
#                          into FILE (bench/gpu_samples.py reads it), the power at the sample where nvidia-smi
#                          has that field (power.draw.instant; power.draw is a one-second average); sets SMI_PID
#                          (empty without nvidia-smi) and SMI_POWER (the field read). bin/gpu-check uses both.
device_setup() {
  local dir tag
  dir="$(cd "${1:?device_setup DIR TAG}" && pwd)"; tag="${2:?device_setup DIR TAG}"
  out="${OUT:-$(mktemp -d)}"
  mkdir -p "$out"
  tar -C /tmp -xJf "$dir/jre.tar.xz" && export JAVA_HOME=/tmp/jre PATH=/tmp/jre/bin:$PATH
  B="$dir/bundle"
  CP="${CLASSES_FIRST:+$CLASSES_FIRST:}$B/classes:$B/test-classes:$(ls "$B"/lib/*.jar | tr '\n' ':')"
  L="$out/$(date -u +%Y-%m-%d)-$(card_tag)-$tag"
  { date -u; nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current --format=csv
    nproc; free -g | head -2; lscpu | grep -E "Model name|NUMA node\(s\)"; } 2>&1 | tee "$L-machine.log"
}

device_tests() {
  local t=$1 suffix=$2; shift 2
  local sel=()
  if [[ "${1:-}" == --include-tag ]]; then sel=(--scan-class-path "$B/test-classes" --include-tag "$2")
  else for c in "$@"; do sel+=(--select-class "$c"); done; fi
  timeout "$t" java -ea --add-modules jdk.incubator.vector -Xmx16g -jar "$B/junit-platform-console-standalone.jar" \
    execute --class-path "$CP" "${sel[@]}" --details=tree --disable-banner > "$L-$suffix.log" 2>&1
  echo "$suffix exit $?"
  grep -E "tests (successful|failed|skipped|aborted)|✘|Test run finished" "$L-$suffix.log" | head -30
}

device_ab() {
  timeout "$1" java -Xmx24g -cp "$CP" dev.lightning.attention.bench.DeviceBench --shapes "${3:-none}" --runs 10 \
    --host-shape none --variants none --checks none --rounds 7 --ab "$2" > "$L-devicebench.log" 2>&1
  echo "DeviceBench rc=$?"
}

card_tag() {
  case "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)" in
    *H100*) echo h100 ;;
    *H200*) echo h200 ;;
    *) echo gpu ;;
  esac
}

gpu_mib() {
  local v
  v="$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -n 1 | tr -d ' ')"
  [[ "$v" =~ ^[0-9]+$ ]] && echo "$v" || echo 0
}

smi_start() {
  SMI_PID="" SMI_POWER=power.draw
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  [[ "$(nvidia-smi --query-gpu=power.draw.instant --format=csv,noheader,nounits 2>/dev/null | head -n 1)" =~ ^[0-9.]+$ ]] \
    && SMI_POWER=power.draw.instant
  nvidia-smi --query-gpu=timestamp,clocks.sm,$SMI_POWER,temperature.gpu,power.limit --format=csv,noheader,nounits \
    -lms 25 > "${1:?smi_start FILE}" 2>&1 &
  SMI_PID=$!
}
