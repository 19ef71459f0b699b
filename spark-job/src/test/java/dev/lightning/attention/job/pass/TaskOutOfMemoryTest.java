package dev.lightning.attention.job.pass;

import dev.lightning.attention.job.failure.Causes;
import dev.lightning.attention.job.failure.ExplainedFailure;
import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A task that runs out of memory in local mode fails the run like any failed task, with what to raise: Spark's
 * handler of a fatal error had ended the driver's JVM (the tasks' JVM in local mode) at once with exit status 52.
 * Without the translation this test's JVM is ended the same way.
 */
class TaskOutOfMemoryTest {
    @Test
    void aTaskOutOfMemoryInLocalModeFailsTheJobWithWhatToRaise() {
        SparkConf conf = new SparkConf().setMaster("local[1]").setAppName("task-oom-test").set("spark.ui.enabled", "false");
        SparkContext sc = new SparkContext(conf);
        try {
            WorkRDD<String> rdd = new WorkRDD<>(sc, List.of(List.of("piece")), null, (items, context) -> {
                throw new OutOfMemoryError("Cannot reserve 134221824 bytes of direct buffer memory (allocated: "
                        + "536897408, limit: 629145600)");
            });
            Exception e = assertThrows(Exception.class, rdd::collect);
            ExplainedFailure explained = Causes.inChain(e, ExplainedFailure.class);
            assertNotNull(explained, e.toString());
            String m = explained.getMessage();
            assertTrue(m.contains("ran out of memory") && m.contains("Cannot reserve 134221824 bytes")
                    && m.contains("LIGHTNING_DRIVER_MEMORY") && m.contains("--window-bytes") && m.contains("--resume"), m);
            assertTrue(!sc.isStopped(), "the SparkContext goes on after the failed task");
        } finally {
            sc.stop();
        }
    }
}
