package dev.lightning.attention.job;

import org.apache.spark.launcher.JavaModuleOptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The JVM flags bin/lightning starts the driver with (target/jvm.options, from spark.jvm.options in the root pom) hold
 * every flag of the Spark on the class path's own list, which spark-submit gives its JVMs: the copy had fallen behind
 * Spark 4.1's, without --enable-native-access=ALL-UNNAMED (Java 24 and later then printed four lines of "WARNING: A
 * restricted method in java.lang.System has been called" as JCuda or Hadoop loaded its native library) and Netty's
 * TLS endpoint verification setting.
 */
class JvmOptionsTest {
    @Test
    void theLaunchersFlagsHoldSparksOwn() throws IOException {
        Path file = Path.of("target", "jvm.options");
        assertTrue(Files.isRegularFile(file), "expected " + file.toAbsolutePath() + " from process-resources");
        List<String> ours = List.of(Files.readString(file).trim().split("\\s+"));
        List<String> missing = new ArrayList<>();
        for (String flag : JavaModuleOptions.defaultModuleOptionArray()) {
            if (!ours.contains(flag)) {
                missing.add(flag);
            }
        }
        assertEquals(List.of(), missing, "flags of Spark's JavaModuleOptions missing from spark.jvm.options in the "
                + "root pom; add them there");
    }
}
