package dev.lightning.attention.job;

import dev.lightning.attention.kernel.AttentionBackend;
import dev.lightning.attention.kernel.CpuBackend;
import dev.lightning.attention.tensor.InvalidInputException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Chooses the backend a task computes with, from {@code --backend}. This build has the CPU
 * backend only: {@code auto} takes it (and logs that), {@code gpu} is refused before the job starts.
 */
final class ExecutorBackends {
    private static final Logger LOG = LoggerFactory.getLogger(ExecutorBackends.class);
    private static volatile boolean announced;

    private ExecutorBackends() {
    }

    /** Fails on the driver, before any work, when the choice cannot be honoured. */
    static void checkAvailable(String choice) {
        if ("gpu".equals(choice)) {
            throw new InvalidInputException("--backend gpu: this build has no GPU backend yet; use --backend cpu "
                    + "or auto");
        }
    }

    /** A backend for one task; the caller closes it. */
    static AttentionBackend open(String choice) {
        checkAvailable(choice);
        if (!announced) {
            announced = true;
            LOG.info("backend {}: computing on the CPU (float32, no GPU backend in this build)", choice);
        }
        return new CpuBackend();
    }
}
