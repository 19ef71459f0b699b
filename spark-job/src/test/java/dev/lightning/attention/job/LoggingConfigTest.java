package dev.lightning.attention.job;

import org.apache.logging.log4j.Level;
import org.apache.logging.log4j.core.LogEvent;
import org.apache.logging.log4j.core.LoggerContext;
import org.apache.logging.log4j.core.config.LoggerConfig;
import org.apache.logging.log4j.core.impl.Log4jLogEvent;
import org.apache.logging.log4j.message.SimpleMessage;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.RejectedExecutionException;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * conf/log4j2.properties, the logging of bin/lightning: what a user sees on standard error besides
 * the job's own lines.
 */
class LoggingConfigTest {
    private static final String SCHEDULER = "org.apache.spark.scheduler.TaskSchedulerImpl";

    /**
     * A run failed in a task, or stopped by Ctrl-C, while other tasks ran: Spark's scheduler logged
     * "Exception in statusUpdate" with a RejectedExecutionException and a 15-line stack trace for
     * each task that reported after it had stopped (bin/lightning run, INT during pass 2: exit 130,
     * then the trace). Those lines are left out; the scheduler's other errors are not. So is SparkContext's
     * "Error initializing SparkContext." and its trace, which came before the job's one line for a refused setting.
     */
    @Test
    void theSchedulersLateStatusUpdatesAfterAStopAreLeftOut() {
        Path conf = Path.of(System.getProperty("maven.multiModuleProjectDirectory", ".."), "conf",
                "log4j2.properties");
        assertTrue(Files.isRegularFile(conf), conf.toString());
        // a context of its own, read from the file: Configurator.initialize hands back the JVM's context when
        // another test of this JVM has started logging already, with that context's configuration, not the file's
        LoggerContext ctx = new LoggerContext("lightning-conf-test", null, conf.toUri());
        ctx.start();
        try {
            LoggerConfig scheduler = ctx.getConfiguration().getLoggerConfig(SCHEDULER);
            assertTrue(scheduler.isFiltered(error("Exception in statusUpdate",
                    new RejectedExecutionException("rejected from ThreadPoolExecutor[Terminated]"))));
            assertFalse(scheduler.isFiltered(error("Lost executor 1 on host-a: worker lost", null)));
            assertTrue(scheduler.getLevel().isLessSpecificThan(Level.ERROR), scheduler.getLevel().toString());
            // a SparkContext that does not start: the job says why in one line, Spark's trace before it is left out
            LoggerConfig context = ctx.getConfiguration().getLoggerConfig("org.apache.spark.SparkContext");
            assertTrue(context.isFiltered(error("Error initializing SparkContext.",
                    new IllegalArgumentException("The value 'xyz' in the config is invalid"))));
            assertFalse(context.isFiltered(error("Exception getting thread dump from executor 1", null)));
        } finally {
            ctx.stop();
        }
    }

    private static LogEvent error(String message, Throwable thrown) {
        return Log4jLogEvent.newBuilder().setLoggerName(SCHEDULER).setLevel(Level.ERROR)
                .setMessage(new SimpleMessage(message)).setThrown(thrown).build();
    }
}
