package dev.lightning.attention.job.pass;

import dev.lightning.attention.job.exec.ExecutorBackends;
import dev.lightning.attention.job.exec.ExecutorMemory;

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
    /** The tokens of those units; {@link #tokens} counts only the tokens this task computed. */
    long keptTokens;
    /** The files (output names) whose pieces the task handled. */
    String[] files;
    /**
     * The heap of the task's JVM as the task ended ({@link ExecutorMemory}), in bytes: the largest
     * in use before a collection and after one during this pass, and over the JVM's life; its
     * maximum heap; its collections so far. -1 where the JVM reports no collections.
     */
    long passHeapBeforeGc;
    long passHeapAfterGc;
    long jvmHeapBeforeGc;
    long jvmHeapAfterGc;
    long heapMax;
    long collections;

    TaskReport() {
        // for Kryo
    }

    /**
     * The report of a task ending now on this executor: its host, executor id and assigned GPU
     * (Spark's resource {@code gpuResource}) looked up here. {@code backend} and {@code device} are
     * null for a task that computed nothing ("-").
     */
    public static TaskReport ofTask(String pass, org.apache.spark.TaskContext ctx, int units, long tokens,
                                    String backend, String device, String gpuResource, long start,
                                    java.util.List<String> skipped, int resumed, long keptTokens,
                                    java.util.List<String> files) {
        String host;
        try {
            host = java.net.InetAddress.getLocalHost().getHostName();
        } catch (java.io.IOException e) {
            host = "unknown";
        }
        String executor = org.apache.spark.SparkEnv.get() == null ? "?" : org.apache.spark.SparkEnv.get().executorId();
        Integer gpu = ExecutorBackends.assignedGpu(gpuResource);
        TaskReport r = new TaskReport(pass, ctx.partitionId(), units, tokens, backend == null ? "-" : backend,
                device == null ? "-" : device, host, executor, gpu == null ? "-" : gpu.toString(),
                System.nanoTime() - start, skipped.toArray(new String[0]), resumed,
                new java.util.LinkedHashSet<>(files).toArray(new String[0]));
        r.keptTokens = keptTokens;
        long[] heap = ExecutorMemory.snapshot();
        r.passHeapBeforeGc = heap[0];
        r.passHeapAfterGc = heap[1];
        r.jvmHeapBeforeGc = heap[2];
        r.jvmHeapAfterGc = heap[3];
        r.heapMax = heap[4];
        r.collections = heap[5];
        return r;
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
