package dev.lightning.attention.job.tables;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.OptionParser;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;

import java.util.Arrays;
import java.util.Collections;
import java.util.Map;

/**
 * Lightning attention for Spark programs: a blocks table (the layout of {@link TableSchema#BLOCKS})
 * in, the o blocks and the final states out, as datasets, with no files in between.
 *
 * <pre>{@code
 * Dataset<Row> blocks = spark.read().parquet("qkv/");             // or any Dataset<Row> in the layout
 * try (LightningTables.Result r = LightningTables.compute(blocks, "--backend", "cpu", "--scale", "0.5")) {
 *     r.o().write().parquet("o/");                                 // (sequence, start, tokens, dtype, heads, dv, o)
 *     r.finalStates().write().parquet("states/");                  // (sequence, tokens, ..., final_state, ...)
 * }
 * }</pre>
 *
 * <p>The options are those of {@code bin/lightning run} (the same {@code Settings} entries, the same
 * checks), less those of the command line only (files, the output directory and its commit, the
 * Spark start: marked so in the options table), which are refused, as are Spark settings: the
 * caller writes the returned datasets itself, and the Spark session, with its settings, is the
 * caller's. The blocks are checked when {@code compute} is called,
 * before any compute (a bad table throws {@code InvalidInputException} naming the sequence and the
 * offsets), but for each block's byte lengths, which the shuffle checks as it reads the block: the
 * first action on a result fails, with that exception as its cause. Where o outweighs the states,
 * the outputs are computed once, when either dataset is first used, and kept (persisted) until
 * {@link Result#close()}; where the states outweigh o (many short sequences), the other dataset
 * computes pass 2 again, with the same bytes. The Spark session is the blocks'. A session with
 * {@code spark.kryo.registrationRequired=true} needs {@link LightningKryoRegistrator} among its
 * registrators ({@code spark.kryo.registrator}), and is refused up front without it. To continue
 * the final states of an earlier computation (what {@code --initial-states} does on the command
 * line), pass them to {@link #compute(Dataset, Dataset, Dataset, String...)}.
 */
public final class LightningTables {
    private LightningTables() {
    }

    /** The outputs of one computation. */
    public static final class Result implements AutoCloseable {
        private final TableCompute.Outputs outputs;
        private final TablePlan plan;
        private final Map<String, String> rejected;

        Result(TableCompute.Outputs outputs, TablePlan plan, Map<String, String> rejected) {
            this.outputs = outputs;
            this.plan = plan;
            this.rejected = Collections.unmodifiableMap(rejected);
        }

        /** The o blocks ({@link TableSchema#O_BLOCKS}). */
        public Dataset<Row> o() {
            return outputs.o;
        }

        /** One row per sequence: its final state ({@link TableSchema#FINAL_STATES}). */
        public Dataset<Row> finalStates() {
            return outputs.finalStates;
        }

        /**
         * With --state-every N: one row per recorded state ({@link TableSchema#CHECKPOINTS}), the state
         * after every N-th token of each computed sequence.
         *
         * @throws IllegalStateException when the options had no --state-every
         */
        public Dataset<Row> checkpoints() {
            if (outputs.checkpoints == null) {
                throw new IllegalStateException("no recorded states: pass --state-every N to compute(...) for them");
            }
            return outputs.checkpoints;
        }

        /** With --skip-invalid, the sequences left out and why (by name); otherwise empty. */
        public Map<String, String> rejected() {
            return rejected;
        }

        /** Sequences computed. */
        public int sequences() {
            return plan.size();
        }

        /** Tasks of each pass: short sequences share one, long ones are cut into pieces over several. */
        public int tasks() {
            return plan.tasks;
        }

        /** Whether pass 2's outputs are kept between the two outputs' jobs (else the second recomputes them). */
        boolean outputsKept() {
            return outputs.all.getStorageLevel().useDisk() || outputs.all.getStorageLevel().useMemory();
        }

        /** Releases the persisted outputs, if any were kept (the datasets stay usable: they compute again). */
        @Override
        public void close() {
            outputs.all.unpersist(false);
        }
    }

    /**
     * Null when the session can serialize our shuffled records; else why not: with Kryo and
     * {@code spark.kryo.registrationRequired=true}, {@link LightningKryoRegistrator} must be among
     * {@code spark.kryo.registrator} (else the first Spark job fails with Kryo's "Class is not
     * registered").
     */
    static String kryoProblem(org.apache.spark.SparkConf conf) {
        if (!conf.get("spark.serializer", "").contains("Kryo")
                || !conf.getBoolean("spark.kryo.registrationRequired", false)) {
            return null;
        }
        String registrators = conf.get("spark.kryo.registrator", "").trim();
        for (String r : registrators.split(",")) {
            if (r.trim().equals(LightningKryoRegistrator.class.getName())) {
                return null;
            }
        }
        return "the SparkSession requires Kryo registration (spark.kryo.registrationRequired=true), and "
                + "spark.kryo.registrator is " + (registrators.isEmpty() ? "not set" : "'" + registrators + "'")
                + ": expected it to include " + LightningKryoRegistrator.class.getName() + ", which registers the "
                + "classes LightningTables shuffles; add it to spark.kryo.registrator (a comma-separated list) when "
                + "building the session";
    }

    /** {@link #compute(Dataset, Dataset, String...)} without a sequences table. */
    public static Result compute(Dataset<Row> blocks, String... options) {
        return compute(blocks, null, options);
    }

    /**
     * Checks {@code blocks} (and {@code sequences}, the optional per-sequence table, or null) and
     * returns the outputs, computed lazily.
     *
     * @param options the run options of the command line, e.g. {@code "--scale", "0.5", "--normalize"}
     */
    public static Result compute(Dataset<Row> blocks, Dataset<Row> sequences, String... options) {
        return compute(blocks, sequences, null, options);
    }

    /**
     * As {@link #compute(Dataset, Dataset, String...)}, continuing the states in {@code storedStates}
     * (the final states of an earlier computation, {@link Result#finalStates()} or a table written
     * from it; null: none), as {@code --initial-states} does for {@code bin/lightning run}: a
     * sequence with a stored row starts from it, one without starts from zero (or its sequences-table
     * state), and the result's final states also hold, unchanged, the stored rows of sequences not
     * computed here. A stored state that does not fit its sequence is refused before compute.
     */
    public static Result compute(Dataset<Row> blocks, Dataset<Row> sequences, Dataset<Row> storedStates,
                                 String... options) {
        java.util.Objects.requireNonNull(blocks, "blocks: the blocks dataset is required");
        java.util.Objects.requireNonNull(options, "options: give none (no arguments), not a null array");
        for (int i = 0; i < options.length; i++) {
            if (options[i] == null) {
                throw new dev.lightning.attention.tensor.InvalidInputException("options[" + i + "] is null"
                        + (i > 0 ? " (after " + options[i - 1] + ")" : "") + ": expected an option or its value");
            }
        }
        // refuses the options of the command line only (--output, --resume, --master, ...) and Spark settings
        // over the caller's session: its builder's and runtime settings (spark.lightning.*) apply, as
        // spark-defaults.conf's do (only the JVM's system properties were read, which hold neither)
        JobConfig cfg = OptionParser.parse(Arrays.asList(options), null, true,
                scala.jdk.javaapi.CollectionConverters.asJava(blocks.sparkSession().conf().getAll()));
        String kryo = kryoProblem(blocks.sparkSession().sparkContext().getConf());
        if (kryo != null) {
            throw new dev.lightning.attention.tensor.InvalidInputException(kryo);
        }
        Map<String, String> rejected = new java.util.TreeMap<>();
        TablePlanning.Prepared p = TablePlanning.prepare(blocks.sparkSession(), cfg, blocks, "blocks dataset", sequences,
                "sequences dataset", storedStates, "stored final states dataset", rejected, null);
        return new Result(p.outputs(blocks.sparkSession()), p.compute.plan, rejected);
    }
}
