# Sourced by bin/lightning and bin/standalone, not run: the JVM options every JVM they start takes, from the build's
# jvm.options (Spark 4.1's module flags, for Java 17 and 21: spark.jvm.options in the root pom), fitted to the java
# that runs them. One owner, so that a change for one JDK reaches every script: bin/standalone kept the flag below
# on Java 24 and later after bin/lightning had dropped it.

# real_java JAVA: the file JAVA runs (a path, or a name on PATH), links resolved; empty where there is none.
real_java() {
  readlink -f "$(command -v "$1" 2>/dev/null || echo "$1")" 2>/dev/null || true
}

# read_jvm_options JAVA TARGET: sets the array jvm_options to TARGET/jvm.options for JAVA, and java_real to the file
# JAVA runs (real_java), which bin/lightning's class-data archive also keys on.
# Java 24 removed the package sun.security.action from java.base, which the list opens: a JVM of 24 or later printed
# "WARNING: package sun.security.action not in java.base" before every command's output, or before its one-line
# error. The JDK's release file gives its version without starting a JVM; a JDK without one keeps the whole list.
read_jvm_options() {
  local feature option
  local kept=()
  read -r -a jvm_options < "$2/jvm.options"
  java_real=$(real_java "$1")
  feature=
  if [[ -n "$java_real" ]]; then
    feature=$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$(dirname "$(dirname "$java_real")")/release" 2>/dev/null \
      || true)
  fi
  if [[ "$feature" =~ ^[0-9]+$ ]] && (( feature >= 24 )); then
    for option in "${jvm_options[@]}"; do
      [[ "$option" == --add-opens=java.base/sun.security.action=* ]] || kept+=("$option")
    done
    jvm_options=("${kept[@]}")
  fi
}
