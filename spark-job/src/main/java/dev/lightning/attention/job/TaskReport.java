package dev.lightning.attention.job;

/**
 * What one task did, sent back to the driver: which pass, how many pieces and tokens, where and
 * on what it computed, how long it took. Registered with Kryo.
 */
public final class TaskReport {
    String pass;
    int partition;
    int pieces;
    long tokens;
    String backend;
    String device;
    String host;
    String executor;
    /** The GPU address Spark assigned to the task ("-" when none). */
    String gpuAddress;
    long nanos;
    /** Sequences dropped for NaN/Inf in skip mode: "sequence TAB count TAB first position". */
    String[] skipped;
    /** Units of work an earlier attempt of the run had finished (--resume), kept and not computed. */
    int resumed;
    /** The files (output names) whose pieces the task handled. */
    String[] files;

    TaskReport() {
        // for Kryo
    }

    TaskReport(String pass, int partition, int pieces, long tokens, String backend, String device, String host,
               String executor, String gpuAddress, long nanos, String[] skipped, int resumed, String[] files) {
        this.pass = pass;
        this.partition = partition;
        this.pieces = pieces;
        this.tokens = tokens;
        this.backend = backend;
        this.device = device;
        this.host = host;
        this.executor = executor;
        this.gpuAddress = gpuAddress;
        this.nanos = nanos;
        this.skipped = skipped;
        this.resumed = resumed;
        this.files = files;
    }
}
