package dev.lightning.attention.job.failure;

import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;
import org.opentest4j.TestAbortedException;

import java.util.Collections;
import java.util.IdentityHashMap;
import java.util.Set;

/**
 * Skips, on a Java that Hadoop cannot run on, the tests that fail for that reason, saying why. Java 23 and later
 * refuse Subject.getSubject, which Hadoop's login code calls at the first file system or SparkContext
 * ({@link SetupChecks#checkJava}, which decides here too); every test that reaches Hadoop then failed, in a different
 * way each (an error, an unexpected exception type in assertThrows, a job process's exit status 2), among the tests
 * that pass there. On such a Java a failure whose causes or messages name getSubject (Hadoop's
 * UnsupportedOperationException, or the one line a job process prints: {@link SetupChecks#javaRefusesGetSubject}) is
 * reported as skipped instead, as is a clean-up that fails after such a skip in the same class (a session that was
 * never made, stopped). Any other failure stays a failure; on Java 17 and 21 nothing is changed.
 *
 * <p>Registered for every test of spark-job and of the tests module (which takes it from spark-job's test jar) by
 * JUnit's extension auto-detection: META-INF/services, and {@code junit.jupiter.extensions.autodetection.enabled} in
 * the root pom's surefire configuration.
 */
public final class HadoopJavaExtension implements TestExecutionExceptionHandler,
        LifecycleMethodExecutionExceptionHandler {
    /** Why this Java cannot run Hadoop, or null where it can. */
    private static final String REFUSAL = refusal();
    /** Classes with a test or set-up skipped here: their clean-ups' failures follow from it. */
    private static final Set<Class<?>> SKIPPED = Collections.synchronizedSet(Collections.newSetFromMap(
            new IdentityHashMap<>()));
    private static volatile boolean told;

    private static String refusal() {
        try {
            SetupChecks.checkJava();
            return null;
        } catch (InvalidInputException e) {
            return e.getMessage();
        }
    }

    @Override
    public void handleTestExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw skipped(context.getRequiredTestClass(), t, false);
    }

    @Override
    public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw skipped(context.getRequiredTestClass(), t, false);
    }

    @Override
    public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw skipped(context.getRequiredTestClass(), t, false);
    }

    @Override
    public void handleAfterEachMethodExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw skipped(context.getRequiredTestClass(), t, true);
    }

    @Override
    public void handleAfterAllMethodExecutionException(ExtensionContext context, Throwable t) throws Throwable {
        throw skipped(context.getRequiredTestClass(), t, true);
    }

    /**
     * {@code t}, or where this Java is why it was thrown, a skip that says so.
     *
     * @param cls     the test class it was thrown in
     * @param cleanUp whether it was thrown by an @AfterEach or @AfterAll method
     */
    static Throwable skipped(Class<?> cls, Throwable t, boolean cleanUp) {
        if (REFUSAL == null || !(namesGetSubject(t) || cleanUp && SKIPPED.contains(cls))) {
            return t;
        }
        SKIPPED.add(cls);
        if (!told) { // once per test JVM, in the build's output: the skip reasons are in the reports only
            told = true;
            System.err.println("WARNING: " + REFUSAL + ". The tests that reach Hadoop are skipped on this Java.");
        }
        return new TestAbortedException("skipped: " + REFUSAL, t);
    }

    /** Whether {@code t}, its causes or their suppressed exceptions name Subject.getSubject. */
    static boolean namesGetSubject(Throwable t) {
        Set<Throwable> seen = Collections.newSetFromMap(new IdentityHashMap<>());
        java.util.ArrayDeque<Throwable> todo = new java.util.ArrayDeque<>();
        todo.add(t);
        while (!todo.isEmpty()) {
            Throwable x = todo.pop();
            if (!seen.add(x)) {
                continue;
            }
            if (String.valueOf(x.getMessage()).contains("getSubject")) {
                return true;
            }
            if (x.getCause() != null) {
                todo.add(x.getCause());
            }
            todo.addAll(java.util.Arrays.asList(x.getSuppressed()));
        }
        return false;
    }
}
