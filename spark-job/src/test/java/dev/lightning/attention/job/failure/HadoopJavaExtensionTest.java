package dev.lightning.attention.job.failure;

import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

import java.io.IOException;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * On a Java that Hadoop cannot run on, a failure that getSubject caused is a skip that says why, and any other stays a
 * failure; on one it runs on (17, 21: CI) every failure stays what it was. This test passes on both kinds; the skips
 * are seen with a Java 25 as JAVA_HOME of the test run.
 */
class HadoopJavaExtensionTest {
    private static boolean javaRunsHadoop() {
        try {
            SetupChecks.checkJava();
            return true;
        } catch (InvalidInputException e) {
            return false;
        }
    }

    /** Hadoop's exception however wrapped, and the line a job process prints, name getSubject; others do not. */
    @Test
    void whatGetSubjectCausedIsRecognised() {
        Throwable hadoop = new java.util.ServiceConfigurationError("FileSystem: Provider ViewFileSystem could not be "
                + "instantiated", new UnsupportedOperationException("getSubject is not supported"));
        assertTrue(HadoopJavaExtension.namesGetSubject(new AssertionFailedError("Unexpected exception type thrown",
                new RuntimeException(hadoop))));
        IOException suppressing = new IOException("closing");
        suppressing.addSuppressed(hadoop);
        assertTrue(HadoopJavaExtension.namesGetSubject(suppressing));
        assertTrue(HadoopJavaExtension.namesGetSubject(new AssertionFailedError("exit status 2: lightning: error: "
                + SetupChecks.javaRefusesGetSubject())));
        assertFalse(HadoopJavaExtension.namesGetSubject(new AssertionFailedError("expected: <1> but was: <2>",
                new IOException("disk full"))));
    }

    @Test
    void onlyAJavaThatRefusesGetSubjectSkips() {
        Throwable hadoop = new UnsupportedOperationException("getSubject is not supported");
        Throwable other = new AssertionFailedError("expected: <1> but was: <2>");
        assertSame(other, HadoopJavaExtension.skipped(Object.class, other, false));
        if (javaRunsHadoop()) {
            assertSame(hadoop, HadoopJavaExtension.skipped(Object.class, hadoop, false));
            assertSame(other, HadoopJavaExtension.skipped(Object.class, other, true));
        } else {
            Throwable skip = HadoopJavaExtension.skipped(String.class, hadoop, false);
            assertInstanceOf(TestAbortedException.class, skip);
            assertTrue(skip.getMessage().startsWith("skipped: Java " + Runtime.version().feature() + " (")
                    && skip.getMessage().contains("Java 17 or 21"), skip.getMessage());
            assertSame(hadoop, skip.getCause());
            // a clean-up failing after a skip in its class follows from it; in another class it does not
            assertInstanceOf(TestAbortedException.class, HadoopJavaExtension.skipped(String.class, other, true));
            assertSame(other, HadoopJavaExtension.skipped(Integer.class, other, true));
        }
    }
}
