package dev.lightning.attention.job.failure;

import org.junit.jupiter.api.Test;

import java.io.FileNotFoundException;
import java.io.IOException;

import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The limits of the machine a run meets, found in the chains Spark wraps around a task's failure and said with what to
 * change: a full disk or quota, a file-size limit, too few file descriptors. The messages are the JDK's own wording
 * (the exceptions of a task are rebuilt by Spark on the driver, so their classes are not all kept).
 */
class CausesTest {
    private static Exception inTask(Throwable cause) {
        return new org.apache.spark.SparkException("Job aborted due to stage failure: Task 1 in stage 0.0 failed 1 times",
                new RuntimeException(cause.getMessage(), cause));
    }

    @Test
    void storageLimitsAreSaidWithWhatToChange() {
        String full = Causes.storageLimit(inTask(new IOException("No space left on device")));
        assertNotNull(full);
        assertTrue(full.contains("is full (No space left on device)") && full.contains("free some space"), full);
        String quota = Causes.storageLimit(inTask(new IOException("Disk quota exceeded")));
        assertTrue(quota != null && quota.contains("raise the quota"), quota);
        String large = Causes.storageLimit(inTask(new IOException("File too large")));
        assertTrue(large != null && large.contains("ulimit -f"), large);
        assertNull(Causes.storageLimit(inTask(new IOException("Connection reset"))));
    }

    @Test
    void runningOutOfFileDescriptorsIsSaidWithTheLimit() {
        String d = Causes.descriptorLimit(inTask(new FileNotFoundException("/in/a.safetensors (Too many open files)")));
        assertNotNull(d);
        assertTrue(d.contains("/in/a.safetensors (Too many open files)") && d.contains("ulimit -n")
                && d.matches(".*may hold [0-9]+ open files.*"), d);
        assertNull(Causes.descriptorLimit(inTask(new FileNotFoundException("/in/a.safetensors (No such file or directory)"))));
    }
}
