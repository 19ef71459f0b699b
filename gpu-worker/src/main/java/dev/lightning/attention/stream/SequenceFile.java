package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.ErrorText;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;

import java.io.EOFException;
import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;

/**
 * One input sequence as the driver found it: where its q, k, v (and optional initial state and
 * normalizer) lie in the file, their dtype, and its head layout with the decay slopes to use, held
 * as an {@link AttentionSpec} ({@link #layout()}): every head count, width and byte size below is
 * read from that spec. Only the header and the slopes are read here; tasks read their own token
 * ranges. Immutable. Serializable: the Spark job sends it to its tasks.
 */
public final class SequenceFile implements Serializable {
    private static final long serialVersionUID = 3L;

    /**
     * The file's URI (Hadoop's {@code Path.toUri().toString()}); the Spark job rebuilds the exact
     * path from it ({@code SequenceFiles.hadoopPath}).
     */
    public final String path;
    /** The result's name in the output directory (a relative path under --recursive); used in messages. */
    public final String name;
    public final long fileSize;
    public final long tokens;
    public final DType dtype;
    public final long qOffset;
    final long kOffset;
    final long vOffset;
    /** Absolute offset of {@code initial_state}, or -1 when the file has none. */
    public final long initialStateOffset;
    /** Absolute offset of {@code initial_normalizer}, or -1 when the file has none. */
    public final long initialNormalizerOffset;
    public final boolean slopesFromFile;
    /**
     * The file's {@code token_offset} metadata as written (where it says that its first token is
     * token N of a longer sequence), or null when it has none; read only by a run that continues
     * stored states, which compares it with the tokens the stored state has absorbed.
     */
    public final String declaredOffset;
    /**
     * A sample of the file's content (CRC32C of a few blocks spread over it, in hex), which the
     * output records with {@link #fileSize} as the input it was computed from; null until the
     * driver sets it ({@link #withSample}: a files run, for every input, a synthetic one's from its
     * virtual file), and in a table run.
     */
    public final String sample;
    /** Heads (H, Hq, Hk, Hv), widths and slopes; scale 1 and chunk 1 stand in for the run's. */
    private final AttentionSpec layout;

    private SequenceFile(String path, String name, long fileSize, long tokens, DType dtype, long qOffset, long kOffset,
                         long vOffset, long initialStateOffset, long initialNormalizerOffset, AttentionSpec layout,
                         boolean slopesFromFile, String declaredOffset, String sample) {
        this.path = path;
        this.name = name;
        this.fileSize = fileSize;
        this.tokens = tokens;
        this.dtype = dtype;
        this.qOffset = qOffset;
        this.kOffset = kOffset;
        this.vOffset = vOffset;
        this.initialStateOffset = initialStateOffset;
        this.initialNormalizerOffset = initialNormalizerOffset;
        this.layout = layout;
        this.slopesFromFile = slopesFromFile;
        this.declaredOffset = declaredOffset;
        this.sample = sample;
    }

    /** This file with its content sample ({@link #sample}). */
    public SequenceFile withSample(String sample) {
        return new SequenceFile(path, name, fileSize, tokens, dtype, qOffset, kOffset, vOffset, initialStateOffset,
                initialNormalizerOffset, layout, slopesFromFile, declaredOffset, sample);
    }

    /**
     * The file's head layout: H = max(Hq, Hk, Hv) heads of [Dk, Dv] with their slopes, plain
     * formula, scale 1. For sizes and reports; computations use {@link #spec}.
     */
    public AttentionSpec layout() {
        return layout;
    }

    /** The plain computation of this file with the run's scale and chunk size. */
    public AttentionSpec spec(double scale, int chunkSize) {
        return spec(scale, chunkSize, Variant.PLAIN);
    }

    /** The computation of this file: its layout with the run's scale, chunk size, feature map and normalization. */
    public AttentionSpec spec(double scale, int chunkSize, Variant variant) {
        return variant.apply(AttentionSpec.grouped(layout.headsQ(), layout.headsK(), layout.headsV(), layout.dk(),
                layout.dv(), layout.slopes(), scale, chunkSize));
    }

    /** Bytes of q, k and v for one token ({@link AttentionSpec#inputBytesPerToken(DType)}). */
    public long inputBytesPerToken() {
        return layout.inputBytesPerToken(dtype);
    }

    /** Bytes of o ([H, Dv] per token) for one token, written in {@code out}. */
    public long outputBytesPerToken(DType out) {
        return (long) layout.heads() * layout.dv() * out.bytes();
    }

    /** {@link #describe(String, String, long, RangeReader, java.util.function.IntFunction, boolean)} for a run that does not normalize. */
    public static SequenceFile describe(String path, String name, long size, RangeReader in,
                                        java.util.function.IntFunction<double[]> defaultSlopes) throws IOException {
        return describe(path, name, size, in, defaultSlopes, false);
    }

    /**
     * Reads and checks a file's header (and its slopes, when present) through positioned reads.
     *
     * @param path          the file's URI, kept as {@link #path}
     * @param name          the result's name in the output directory, kept as {@link #name}
     * @param defaultSlopes slopes for H heads when the file has no {@code slope} tensor
     * @param normalize     whether the run normalizes: only then may the file hold {@code initial_normalizer}
     * @throws InvalidInputException naming the file and what is wrong with it
     */
    public static SequenceFile describe(String path, String name, long size, RangeReader in,
                                        java.util.function.IntFunction<double[]> defaultSlopes, boolean normalize)
            throws IOException {
        // a file shorter than the length prefix (an empty one) is told as such, not as a read that ran short
        byte[] prefix = new byte[(int) Math.max(0, Math.min(8, size))];
        readFully(in, 0, prefix, name);
        long n = SafetensorsHeader.headerLength(name, prefix, size);
        byte[] json = new byte[(int) n];
        readFully(in, 8, json, name);
        SafetensorsHeader header = SafetensorsHeader.parse(name, json, size);

        TensorEntry q = require(header, "q", name);
        TensorEntry k = require(header, "k", name);
        TensorEntry v = require(header, "v", name);
        refuseMisspelled(header, name);
        DType dtype = dtypeOf(q, name);
        for (TensorEntry t : new TensorEntry[] {k, v}) {
            if (dtypeOf(t, name) != dtype) {
                throw new InvalidInputException(name + ": q, k and v must share a dtype; q is " + dtype + ", "
                        + t.name() + " is " + t.dtypeName());
            }
        }
        for (TensorEntry t : new TensorEntry[] {q, k, v}) {
            if (t.rank() != 3) {
                throw new InvalidInputException(name + ": tensor '" + t.name() + "' must be [T, heads, D], found shape "
                        + Arrays.toString(t.shape()));
            }
        }
        long tokens = q.dim(0);
        if (k.dim(0) != tokens || v.dim(0) != tokens || k.dim(2) != q.dim(2)) {
            throw new InvalidInputException(name + ": expected q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hv, Dv] with one T "
                    + "and one Dk; found q " + Arrays.toString(q.shape()) + ", k " + Arrays.toString(k.shape())
                    + ", v " + Arrays.toString(v.shape()));
        }
        if (tokens < 1) {
            throw new InvalidInputException(name + ": sequence has 0 tokens; every sequence needs at least 1");
        }
        try {
            AttentionSpec.checkGrouping(q.dim(1), k.dim(1), v.dim(1));
        } catch (IllegalArgumentException e) {
            throw new InvalidInputException(name + ": q " + Arrays.toString(q.shape()) + ", k "
                    + Arrays.toString(k.shape()) + ", v " + Arrays.toString(v.shape()) + ": " + e.getMessage());
        }
        for (TensorEntry t : new TensorEntry[] {q, v}) {
            if (t.dim(2) < 1 || t.dim(2) > AttentionSpec.MAX_DIM) {
                throw new InvalidInputException(name + ": head width of '" + t.name() + "' is " + t.dim(2)
                        + ", expected 1.." + AttentionSpec.MAX_DIM);
            }
        }
        int hq = (int) q.dim(1);
        int hk = (int) k.dim(1);
        int hv = (int) v.dim(1);
        int dk = (int) q.dim(2);
        int dv = (int) v.dim(2);
        int heads = AttentionSpec.heads(hq, hk, hv); // checked above: each count divides it

        double[] slopes;
        boolean fromFile;
        TensorEntry slope = header.tensor(SLOPE);
        if (slope != null) {
            checkF32(slope, name, heads);
            byte[] raw = new byte[heads * 4];
            readFully(in, slope.begin(), raw, name);
            ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            slopes = new double[heads];
            for (int h = 0; h < heads; h++) {
                float s = b.getFloat(h * 4);
                if (!Slopes.isDecayRate(s)) {
                    throw new InvalidInputException(name + ": slope[" + h + "] = " + s
                            + ", expected a finite value >= 0 (lambda = exp(-slope))");
                }
                slopes[h] = s;
            }
            fromFile = true;
        } else {
            slopes = defaultSlopes.apply(heads);
            fromFile = false;
        }
        AttentionSpec layout = AttentionSpec.grouped(hq, hk, hv, dk, dv, slopes, 1.0, 1);
        long initial = -1;
        TensorEntry init = header.tensor(INITIAL_STATE);
        if (init != null) {
            checkF32(init, name, layout.heads(), layout.dk(), layout.dv());
            initial = init.begin();
        }
        long initialZ = -1;
        TensorEntry initZ = header.tensor(INITIAL_NORMALIZER);
        if (initZ != null) {
            if (!normalize) {
                throw new InvalidInputException(name + ": holds 'initial_normalizer', the normalizer z of normalized "
                        + "attention, but this run does not normalize; pass --normalize to continue a normalized "
                        + "sequence, or remove the tensor from the file");
            }
            checkF32(initZ, name, layout.heads(), layout.dk());
            initialZ = initZ.begin();
        }
        return new SequenceFile(path, name, size, tokens, dtype, q.begin(), k.begin(), v.begin(), initial, initialZ,
                layout, fromFile, header.metadata().get(TOKEN_OFFSET), null);
    }

    /** The optional tensors of a lightning input: the per-head slopes, and S and z before its first token. */
    public static final String SLOPE = "slope", INITIAL_STATE = "initial_state", INITIAL_NORMALIZER = "initial_normalizer";
    /** The metadata key of a file's position in a longer sequence (outputs of continued sequences write it too). */
    public static final String TOKEN_OFFSET = "token_offset";
    /** The optional tensors the job reads; any other tensor of a file is ignored. */
    public static final List<String> OPTIONAL = List.of(SLOPE, INITIAL_STATE, INITIAL_NORMALIZER);

    /**
     * Refuses a tensor whose name is nearly that of an optional one ({@code slopes},
     * {@code Initial_State}, {@code init_state}, {@code initial_normaliser}): other tensors are
     * ignored, so the misspelled one would be too, and the run would silently compute with the
     * default slopes or a zero state instead of what the file holds.
     */
    private static void refuseMisspelled(SafetensorsHeader h, String file) {
        for (String tensor : h.tensors().keySet()) {
            String known = misspelledOptional(tensor);
            if (known != null) {
                throw new InvalidInputException(file + ": holds a tensor '" + tensor + "', which is not read: the "
                        + "name the job reads is '" + known + "' (tensors of other names are ignored, so the run "
                        + "would compute without it); rename the tensor to '" + known + "', or remove it");
            }
        }
    }

    /**
     * The optional tensor whose name {@code tensor} nearly is, or null (also for q, k, v and the optional names
     * themselves): what {@link #describe} refuses, and what a softmax run, which reads none of them, refuses as
     * it refuses them.
     */
    public static String misspelledOptional(String tensor) {
        if (tensor.equals("q") || tensor.equals("k") || tensor.equals("v") || OPTIONAL.contains(tensor)) {
            return null;
        }
        String got = squeeze(tensor);
        for (String known : OPTIONAL) {
            String want = squeeze(known);
            if (ErrorText.editDistance(got, want) <= (want.length() <= 6 ? 1 : 2) // "slopes"; "score" is not "slope"
                    || ErrorText.editDistance(got.replace("initial", "init"), want.replace("initial", "init")) <= 1) {
                return known;
            }
        }
        return null;
    }

    /** Lower case, without the separators people vary: "Initial-State" and "initial_state" alike. */
    private static String squeeze(String s) {
        return s.toLowerCase(java.util.Locale.ROOT).replaceAll("[^a-z0-9]", "");
    }

    private static TensorEntry require(SafetensorsHeader h, String tensor, String file) {
        TensorEntry t = h.tensor(tensor);
        if (t == null) {
            // The layout README's input table gives: head counts may differ (grouped heads), and every optional
            // tensor is named, so that a file written from this message is one the job reads.
            throw new InvalidInputException(file + ": missing tensor '" + tensor + "'; a sequence file holds q [T,Hq,Dk], "
                    + "k [T,Hk,Dk], v [T,Hv,Dv] (each of Hq, Hk, Hv dividing H, the largest), optionally slope [H], "
                    + "initial_state [H,Dk,Dv] and initial_normalizer [H,Dk]; found " + h.tensors().keySet());
        }
        return t;
    }

    private static DType dtypeOf(TensorEntry t, String file) {
        try {
            return t.dtype();
        } catch (IllegalArgumentException e) {
            throw new InvalidInputException(file + ": tensor '" + t.name() + "': " + e.getMessage());
        }
    }

    private static void checkF32(TensorEntry t, String file, long... shape) {
        if (!"F32".equals(t.dtypeName()) || !Arrays.equals(t.shape(), shape)) {
            throw new InvalidInputException(file + ": tensor '" + t.name() + "' must be F32 " + Arrays.toString(shape)
                    + ", found " + t.dtypeName() + " " + Arrays.toString(t.shape()));
        }
    }

    /**
     * The raw little-endian bytes of q, k and v of tokens [from, from + n) ({@code [n, Hq, Dk]},
     * {@code [n, Hk, Dk]}, {@code [n, Hv, Dv]} of the file's dtype), read with positioned reads: what
     * a table row of the block holds.
     */
    public byte[][] readTokens(RangeReader in, long from, int n) throws IOException {
        if (from < 0 || n < 0 || from + n > tokens) {
            throw new IndexOutOfBoundsException("tokens [" + from + ", " + (from + n) + ") of " + tokens);
        }
        long e = dtype.bytes();
        long[] perToken = {layout.headsQ() * layout.dk() * e, layout.headsK() * layout.dk() * e,
                layout.headsV() * layout.dv() * e};
        long[] offsets = {qOffset, kOffset, vOffset};
        byte[][] out = new byte[3][];
        for (int x = 0; x < 3; x++) {
            out[x] = new byte[Math.toIntExact(n * perToken[x])];
            readFully(in, offsets[x] + from * perToken[x], out[x], name);
        }
        return out;
    }

    static void readFully(RangeReader in, long position, byte[] dst, String file) throws IOException {
        try {
            in.readFully(position, dst, 0, dst.length);
        } catch (EOFException e) {
            throw new InvalidInputException(file + ": truncated: cannot read " + dst.length + " bytes at offset "
                    + position, e);
        }
    }

    @Override
    public String toString() {
        String h = layout.ungrouped() ? "H=" + layout.heads()
                : "H=" + layout.heads() + " (Hq=" + layout.headsQ() + ", Hk=" + layout.headsK() + ", Hv=" + layout.headsV() + ")";
        return name + " [T=" + tokens + ", " + h + ", Dk=" + layout.dk() + ", Dv=" + layout.dv() + ", " + dtype + "]";
    }
}
