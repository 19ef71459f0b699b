package dev.lightning.attention.job.output;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.stream.FormatVersion;
import dev.lightning.attention.stream.OutputSummary;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsHeader;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * The header of a lightning output file: its tensors and their order, and its metadata, with the
 * keys a later run reads back from a stored output ({@link #SLOPES}, {@link #TOKEN_OFFSET},
 * {@link #INPUT_BYTES} and {@link #INPUT_SAMPLE}: see
 * {@code SafetensorsStates}). Pass 2 writes it, and in --output-mode
 * checksums the result files.
 */
public final class OutputHeader {
    private OutputHeader() {
    }

    /**
     * The header of an output file, tensors in this order: o [T, H, Dv] in the output dtype,
     * final_state [H, Dk, Dv] F32, with a normalizing spec final_normalizer [H, Dk] F32 (so the
     * two follow each other as {@link LightningState#toBytes} writes a state), and with checkpoints
     * every N tokens states [C, H, Dk, Dv] F32 and (normalizing) normalizers [C, H, Dk] F32, C = T / N.
     */
    static SafetensorsHeader of(SequenceFile f, AttentionSpec spec, Variant variant, DType oDtype, double scale) {
        return of(f, spec, variant, oDtype, scale, null, 0, Continued.NONE);
    }

    /**
     * What a sequence continued from a stored state (--initial-states) records of its chain: {@code tokenOffset}, the
     * tokens that state had absorbed (-1: none continued, or unknown), and {@code earlierInputs}, the inputs it had
     * absorbed them from, each as {@link #inputKey}, the latest first (empty: none known).
     */
    public record Continued(long tokenOffset, List<String> earlierInputs) {
        public static final Continued NONE = new Continued(-1, List.of());
    }

    /**
     * The header of an output file; with {@code summary} (--output-mode checksums) the file holds
     * o_sampled [S, H, Dv] (the rows of the S sampled tokens, in the output dtype) where o would be,
     * and the summary's metadata ({@link OutputSummary#metadata}) with the spot checks' {@code tolerance}.
     * {@code continued.tokenOffset} >= 0 (a sequence continued from a stored state, --initial-states): the
     * tokens that state had absorbed, recorded as metadata {@code token_offset}, so token t of this
     * output, and the state states[c] after its token (c+1)N - 1, sit at token_offset + t of the
     * whole sequence; its {@code earlierInputs} are recorded as {@link #EARLIER_INPUTS}.
     */
    public static SafetensorsHeader of(SequenceFile f, AttentionSpec spec, Variant variant, DType oDtype, double scale,
                                       OutputSummary summary, double tolerance, Continued continued) {
        int h = spec.heads();
        List<SafetensorsHeader.Spec> tensors = new ArrayList<>();
        if (summary == null) {
            tensors.add(new SafetensorsHeader.Spec("o", oDtype, f.tokens, h, spec.dv()));
        } else {
            tensors.add(new SafetensorsHeader.Spec("o_sampled", oDtype, summary.samples.size(), h, spec.dv()));
        }
        tensors.add(new SafetensorsHeader.Spec("final_state", DType.F32, h, spec.dk(), spec.dv()));
        if (spec.normalized()) {
            tensors.add(new SafetensorsHeader.Spec("final_normalizer", DType.F32, h, spec.dk()));
        }
        if (variant.checkpoints()) {
            long c = variant.checkpointsIn(0, f.tokens);
            tensors.add(new SafetensorsHeader.Spec("states", DType.F32, c, h, spec.dk(), spec.dv()));
            if (spec.normalized()) {
                tensors.add(new SafetensorsHeader.Spec("normalizers", DType.F32, c, h, spec.dk()));
            }
        }
        Map<String, String> metadata = new java.util.TreeMap<>();
        metadata.put("producer", "lightning-spark");
        FormatVersion.put(metadata); // --initial-states and OutputReader read it back
        metadata.put("scale", Double.toString(scale));
        metadata.put(SLOPES, slopesText(spec.slopes()));
        if (!spec.plain()) {
            metadata.put("feature_map", spec.featureMap().key());
            if (spec.normalized()) {
                metadata.put("normalize_eps", Double.toString(spec.eps()));
            }
        }
        if (variant.checkpoints()) {
            metadata.put("state_every", Integer.toString(variant.stateEvery()));
        }
        if (continued.tokenOffset >= 0) {
            metadata.put(TOKEN_OFFSET, Long.toString(continued.tokenOffset));
        }
        if (!continued.earlierInputs.isEmpty()) {
            metadata.put(EARLIER_INPUTS, String.join(",", continued.earlierInputs));
        }
        if (f.sample != null) {
            metadata.put(INPUT_BYTES, Long.toString(f.fileSize));
            metadata.put(INPUT_SAMPLE, f.sample);
        }
        if (summary != null) {
            metadata.putAll(summary.metadata(f.tokens, h, spec.dv(), oDtype, tolerance));
        }
        return SafetensorsHeader.layout(f.name, tensors, metadata);
    }

    /**
     * Output metadata: the decay rates of the result's heads, comma-separated (each exact: Java's
     * shortest round-trip form), so that an append with --initial-states can refuse other ones.
     */
    public static final String SLOPES = "slopes";

    static String slopesText(double[] slopes) {
        StringBuilder b = new StringBuilder();
        for (double x : slopes) {
            b.append(b.length() == 0 ? "" : ",").append(x);
        }
        return b.toString();
    }

    public static double[] parseSlopes(String text) {
        String[] parts = text.split(",");
        double[] slopes = new double[parts.length];
        for (int i = 0; i < parts.length; i++) {
            slopes[i] = Double.parseDouble(parts[i].trim());
        }
        return slopes;
    }

    /** The output metadata key of a continued sequence's offset in the whole sequence. */
    public static final String TOKEN_OFFSET = SequenceFile.TOKEN_OFFSET;

    /**
     * Output metadata: the input the result was computed from, by its size and a CRC32C sample of
     * its content ({@link SequenceFile#sample}, the one --resume compares), so that an append of
     * that same input onto this result's state can be refused: its tokens are already in it.
     */
    public static final String INPUT_BYTES = "input_bytes", INPUT_SAMPLE = "input_sample";

    /**
     * Output metadata of a continued sequence: the inputs its stored state had absorbed in the runs before, each as
     * "bytes/sample" ({@link #INPUT_BYTES}, {@link #INPUT_SAMPLE}), comma-separated, the latest first: the stored
     * result's own input, then its {@code earlier_inputs}. So an append of any earlier segment of the chain again is
     * refused, not only the last one's (about 20 bytes a segment).
     */
    public static final String EARLIER_INPUTS = "earlier_inputs";

    /**
     * Whether {@code text} is a content sample as a run records it ({@link #INPUT_SAMPLE}, and each key's after the
     * "/" in {@link #EARLIER_INPUTS}): a CRC32C (32 bits) in lower-case hexadecimal, so at most 8 digits. Anything
     * else equals no input's sample: a result recording it would let its input be appended onto it again unseen.
     */
    public static boolean isSample(String text) {
        return text.matches("[0-9a-f]{1,8}");
    }

    /** A content key as {@link #EARLIER_INPUTS} lists it: an input's size and sample, "bytes/sample". */
    public static String inputKey(long bytes, String sample) {
        return bytes + "/" + sample;
    }

    /**
     * The content keys of an {@link #EARLIER_INPUTS} value, in its order.
     *
     * @throws IllegalArgumentException where an entry is not "bytes/sample" (decimal bytes, a sample {@link #isSample})
     */
    public static List<String> parseInputKeys(String text) {
        List<String> keys = new ArrayList<>();
        for (String key : text.split(",", -1)) {  // (-1: a trailing comma is an empty entry, refused)
            int slash = key.indexOf('/');
            if (slash < 0 || !key.substring(0, slash).matches("[0-9]+") || !isSample(key.substring(slash + 1))) {
                throw new IllegalArgumentException("'" + key + "' is not bytes/sample");
            }
            keys.add(key);
        }
        return keys;
    }
}
