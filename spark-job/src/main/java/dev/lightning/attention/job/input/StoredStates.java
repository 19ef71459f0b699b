package dev.lightning.attention.job.input;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.OutputLock;
import dev.lightning.attention.job.output.Staging;
import dev.lightning.attention.stream.NonFiniteInputException;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.NonFinite;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.Map;

/**
 * The final states an earlier run stored ({@code --initial-states DIR}), as a set keyed by
 * sequence name. A format of stored outputs (safetensors files today: {@link SafetensorsStates})
 * implements {@link #states()}: the driver lists which sequences have a state, with its shape
 * and where it lies, reading headers only; the tasks read each state themselves with positioned
 * reads ({@link State#read}). A continued sequence starts from its stored state: S_{-1} is the
 * stored S_{T-1}, so the new outputs equal those of one run over the old and new tokens.
 */
public interface StoredStates {
    /** The stored states by sequence name (the name the new run gives its result). */
    Map<String, State> states();

    /**
     * Results of the stored set that are not readable states (a broken or foreign file under a
     * result's name), by name: why. An input of such a name is refused rather than started from
     * zero; other such files are not part of the set.
     */
    default Map<String, String> unreadable() {
        return Map.of();
    }

    /**
     * Opens {@code --initial-states} {@code dir}: checks that it is a committed output (its
     * {@code _SUCCESS} is there) and reads what it stores. Only safetensors outputs exist so far.
     */
    static StoredStates open(Configuration conf, String dir) throws IOException {
        Path root = committed(conf, dir);
        return SafetensorsStates.read(HadoopPaths.fileSystem(root, conf), root);
    }

    /**
     * {@code --initial-states} {@code dir}, qualified, once it is known to be a committed output (a
     * directory holding {@code _SUCCESS}): what every reader of stored states checks first, whatever
     * the format (a table run reads the {@link #STATES_TABLE} table under it).
     */
    static Path committed(Configuration conf, String dir) throws IOException {
        Path given = HadoopPaths.parse(dir);
        FileSystem fs = HadoopPaths.fileSystem(given, conf);
        Path root = fs.makeQualified(given);
        if (!fs.exists(root)) {
            throw new InvalidInputException("--initial-states " + dir + ": no such directory; give the --output "
                    + "directory of an earlier run");
        }
        if (!fs.getFileStatus(root).isDirectory()) {
            throw new InvalidInputException("--initial-states " + dir + " is a file, expected a directory: give the "
                    + "--output directory of an earlier run, not one of its results");
        }
        if (!fs.exists(new Path(root, Commit.SUCCESS))) {
            // a directory no run wrote into (an input directory, say) was told that its run had failed, and to
            // rerun that run with --resume
            boolean anyRun = fs.exists(new Path(root, Commit.REPORT)) || fs.exists(new Path(root, Staging.PARENT))
                    || fs.exists(new Path(root, OutputLock.NAME));
            throw new InvalidInputException("--initial-states " + dir + " has no " + Commit.SUCCESS + (anyRun
                    ? ": it is not the output of a run that finished (its run failed, is still running or never "
                    + "committed); finish that run (run its command again, with --resume for a run over files) or "
                    + "give a committed output directory"
                    : ", nor a report, staging or lock of any run: it is not the --output of a lightning run; give the "
                    + "--output directory of an earlier run, or leave --initial-states out for sequences that start "
                    + "from zero"));
        }
        return root;
    }

    /**
     * The table in which a table run's output stores its final states ({@code final_states/}: the
     * name of job.tables' TableSchema.FINAL_STATES), which a table run's --initial-states reads and
     * a safetensors run's refuses ({@link SafetensorsStates}). Named here, below job.tables, so that
     * a run over safetensors files names it without loading Spark SQL's classes.
     */
    String STATES_TABLE = dev.lightning.attention.job.output.OutputPaths.FINAL_STATES_TABLE;

    /** A stored state's shape as messages give it, whatever the format. */
    static String shape(int heads, int dk, int dv, boolean normalizer) {
        return "S [" + heads + ", " + dk + ", " + dv + "]" + (normalizer ? " with z [" + heads + ", " + dk + "]"
                : " without a normalizer z");
    }

    /**
     * Why a stored state of this shape and feature map (null: not recorded) cannot start an input
     * that this run computes as {@code spec} (null when it can): the heads and widths must be the
     * input's, a normalizing run needs a stored z and a plain one refuses it (as it refuses
     * {@code initial_normalizer}), and the feature map must be the same. Every format's check.
     */
    static Continuations.Refusal mismatch(int heads, int dk, int dv, boolean normalizer, String featureMap, String location,
                           AttentionSpec spec) {
        return mismatch(heads, dk, dv, normalizer, featureMap, null, location, spec);
    }

    /**
     * The same, with the decay rates the stored state was computed with ({@code slopes}; null: not
     * recorded): a continued sequence must decay at the same rates, or its result is no longer
     * that of one run over all its tokens.
     */
    static Continuations.Refusal mismatch(int heads, int dk, int dv, boolean normalizer, String featureMap,
                                          double[] slopes, String location, AttentionSpec spec) {
        String expected = "S [" + spec.heads() + ", " + spec.dk() + ", " + spec.dv() + "]"
                + (spec.normalized() ? " with z [" + spec.heads() + ", " + spec.dk() + "] (--normalize)"
                : " without a normalizer z (no --normalize)");
        // each with what to change: the message said only what it expected and found, and the change differs by
        // case (this run's options where they alone differ, else the input or the stored set)
        if (heads != spec.heads() || dk != spec.dk() || dv != spec.dv()) {
            return new Continuations.Refusal("expected " + expected + " for its input, found "
                    + shape(heads, dk, dv, normalizer) + " in " + location + "; a continued sequence keeps its heads and "
                    + "widths", "give it the next segment of the sequence that state belongs to, or continue from "
                    + "another directory's states");
        }
        if (normalizer != spec.normalized()) {
            return new Continuations.Refusal("expected " + expected + " for its input, found "
                    + shape(heads, dk, dv, normalizer) + " in " + location, "the run that stored it "
                    + (normalizer ? "normalized: add --normalize" : "did not normalize: leave --normalize out")
                    + ", as it did");
        }
        if (featureMap != null && !featureMap.equals(spec.featureMap().key())) {
            return new Continuations.Refusal("the stored state was computed with --feature-map " + featureMap
                    + ", this run uses " + spec.featureMap().key() + " (" + location + ")", "give --feature-map "
                    + featureMap + ", as that run did");
        }
        if (slopes != null && !java.util.Arrays.equals(slopes, spec.slopes())) {
            return new Continuations.Refusal("the stored state decayed at slopes " + java.util.Arrays.toString(slopes)
                    + ", this run's input at " + java.util.Arrays.toString(spec.slopes()) + " (" + location + "); a "
                    + "continued sequence keeps its decay rates", "give the same slope tensor, or the same "
                    + "--default-slopes, --layer and --layers");
        }
        return null;
    }

    /**
     * Why an input whose metadata says it starts at token {@code declaredOffset} of its sequence
     * (its {@code token_offset}; null where it does not say) cannot take the starting state this run
     * gives it, or null when it can: a declared offset must be a token count; an input that
     * continues the stored state at {@code location} must start where that state ends (its
     * {@code absorbed} tokens; -1: unknown, not compared), or the chain would skip or repeat tokens;
     * and one without a stored state ({@code location} null; {@code statesGiven}: whether the run has
     * --initial-states at all) and without its own initial_state ({@code ownInitialState}) starts
     * from zero, so only at token 0. Every format's check of where an appended segment sits: the
     * message names no input, the caller puts its name first. What to do names no token count (the
     * why does), so that the inputs of one run refused for the same cause share one advice.
     */
    static Continuations.Refusal offsetProblem(String declaredOffset, boolean ownInitialState, boolean statesGiven, String location,
                                long absorbed) {
        long declared = -1; // none said
        if (declaredOffset != null) {
            try {
                declared = Long.parseLong(declaredOffset.trim());
            } catch (NumberFormatException e) {
                declared = -1;
            }
            if (declared < 0) {
                return new Continuations.Refusal("its metadata " + SequenceFile.TOKEN_OFFSET + " '" + declaredOffset
                        + "' is not a token count", "correct or remove that metadata");
            }
        }
        String says = "the input says it starts at " + SequenceFile.TOKEN_OFFSET + " "
                + declared + " of its sequence, but ";
        if (location == null) {
            if (declared <= 0 || ownInitialState) {
                return null;
            }
            return statesGiven ? new Continuations.Refusal(says + "--initial-states has no stored state of its name, "
                    + "so it would start from zero; an input continues the stored result of the same name", "give the "
                    + "input that name, or --initial-states the output that holds its state")
                    : new Continuations.Refusal(says + "the run has no --initial-states, so it would start from zero",
                    "give --initial-states the output of the run that ended where the input starts (the output "
                    + "directory of the segment before it)");
        }
        if (declared >= 0 && absorbed >= 0 && declared != absorbed) {
            return new Continuations.Refusal(says + "its stored state " + location + " has absorbed " + absorbed
                    + " tokens, so the chain would " + (declared > absorbed ? "skip" : "repeat") + " "
                    + Math.abs(declared - absorbed) + " tokens", "give --initial-states the output of the run that ended "
                    + "where the input starts");
        }
        return null;
    }

    /**
     * Refuses, in a run without --initial-states, the inputs whose metadata says they start past token 0 of their
     * sequence ({@code token_offset} N > 0) and that hold no initial_state of their own: each would start from zero,
     * a segment computed as if it began the sequence (most often a day's segment run without the directory of the
     * day before), and its output would record no offset, so the chain's token count would be wrong from then on.
     * A token_offset that is not a token count is refused as well, as a run with --initial-states refuses it.
     * Before any compute, every such input named (the first 5, then a count).
     */
    static void refuseOffsetsWithoutStates(List<SequenceFile> files) {
        List<Map.Entry<String, Continuations.Refusal>> problems = new java.util.ArrayList<>();
        for (SequenceFile f : files) {
            Continuations.Refusal why = offsetProblem(f.declaredOffset, f.initialStateOffset >= 0, false, null, -1);
            if (why != null) {
                problems.add(Map.entry(f.name, why));
            }
        }
        if (!problems.isEmpty()) {
            throw new InvalidInputException(problems.size() + " input(s) say where they sit in their sequence and "
                    + "cannot start there: " + Continuations.listed(problems, 5));
        }
    }

    /**
     * One sequence's stored state: its shape (H, Dk, Dv, whether a normalizer z is stored), how
     * many tokens it has absorbed, the file it lies in (for the --resume fingerprint and the
     * manifest), and how a task reads it. Small and serializable: it travels with the pieces.
     */
    abstract class State implements Serializable {
        private static final long serialVersionUID = 3L;
        final int heads;
        final int dk;
        final int dv;
        final boolean normalizer;
        /** The feature map the state was computed with (its key), or null when the store does not say. */
        final String featureMap;
        /** The decay rates the state was computed with, or null when the store does not say. */
        final double[] slopes;
        /** Tokens the state has absorbed since the first run of its chain, or -1 when unknown. */
        public final long tokens;
        /** The stored result holding the state (a URI), as {@code _states.json} names it. */
        public final String location;
        /** The file read (a URI), its size and modification time: what --resume compares. */
        public final String file;
        public final long fileBytes;
        public final long fileModified;
        /**
         * The input the state was computed from, as its result records it (the input's size and
         * content sample, see {@link dev.lightning.attention.job.output.OutputHeader#INPUT_SAMPLE}):
         * an append of that same input again would count its tokens twice. -1 and null where the
         * result does not say (written before this was recorded).
         */
        public final long sourceBytes;
        public final String sourceSample;
        /**
         * The inputs the state had absorbed before its source, as its result records them
         * ({@link dev.lightning.attention.job.output.OutputHeader#EARLIER_INPUTS}: "bytes/sample", the latest
         * first); empty where it records none (the first segment of a chain, or written before this was recorded).
         */
        final List<String> earlierInputs;

        State(int heads, int dk, int dv, boolean normalizer, String featureMap, double[] slopes, long tokens,
              String location, String file, long fileBytes, long fileModified, long sourceBytes, String sourceSample,
              List<String> earlierInputs) {
            this.heads = heads;
            this.dk = dk;
            this.dv = dv;
            this.normalizer = normalizer;
            this.featureMap = featureMap;
            this.slopes = slopes;
            this.tokens = tokens;
            this.location = location;
            this.file = file;
            this.fileBytes = fileBytes;
            this.fileModified = fileModified;
            this.sourceBytes = sourceBytes;
            this.sourceSample = sourceSample;
            this.earlierInputs = List.copyOf(earlierInputs);
        }

        /** Whether this state was computed from the input of {@code bytes} bytes with content sample {@code sample}. */
        public boolean computedFrom(long bytes, String sample) {
            return sourceSample != null && sample != null && sourceBytes == bytes && sourceSample.equals(sample);
        }

        /**
         * Whether the chain had absorbed the input of {@code bytes} bytes with content sample {@code sample} before
         * the run that computed this state (an earlier segment of the sequence).
         */
        public boolean absorbedEarlier(long bytes, String sample) {
            return sample != null && earlierInputs.contains(dev.lightning.attention.job.output.OutputHeader.inputKey(
                    bytes, sample));
        }

        /**
         * The inputs this state has absorbed, as a continuing output records them
         * ({@link dev.lightning.attention.job.output.OutputHeader#EARLIER_INPUTS}): its source (where recorded),
         * then the earlier ones.
         */
        public List<String> chain() {
            List<String> all = new java.util.ArrayList<>();
            if (sourceSample != null) {
                all.add(dev.lightning.attention.job.output.OutputHeader.inputKey(sourceBytes, sourceSample));
            }
            all.addAll(earlierInputs);
            return all;
        }

        /** The state's shape as messages give it. */
        String shape() {
            return StoredStates.shape(heads, dk, dv, normalizer);
        }

        /**
         * Why this state cannot start an input that this run computes as {@code spec} (null when it can):
         * the heads and widths must be the file's, a normalizing run needs a stored z and a plain one
         * refuses it (as it refuses {@code initial_normalizer}), and the feature map must be the same.
         */
        public Continuations.Refusal mismatch(AttentionSpec spec) {
            return StoredStates.mismatch(heads, dk, dv, normalizer, featureMap, slopes, location, spec);
        }

        /** Reads the state in a task; NaN/Inf in it is reported like a non-finite initial_state. */
        public abstract LightningState read(Configuration conf, AttentionSpec spec, String name, int sequence)
                throws IOException;

        /** The float32 values of {@code elements} at {@code offset} of {@code uri}, scanned for NaN/Inf. */
        static float[] floats(Configuration conf, String uri, long offset, int elements, String tensor, String name,
                              int sequence) throws IOException {
            byte[] raw = new byte[elements * Float.BYTES];
            Path p = new Path(java.net.URI.create(uri));
            try (FSDataInputStream in = HadoopPaths.fileSystem(p, conf).open(p)) {
                in.readFully(offset, raw, 0, raw.length);
            }
            NonFinite.Found bad = NonFinite.scan(raw, 0, elements, DType.F32);
            if (bad.count > 0) {
                throw new NonFiniteInputException(name, sequence, -1, bad.count, "stored " + tensor + " element "
                        + bad.first + " of " + uri, "the stored " + tensor);
            }
            float[] values = new float[elements];
            ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(values);
            return values;
        }
    }
}
