package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;

import java.io.EOFException;
import java.io.IOException;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * One input sequence as the driver found it: where its q, k, v (and optional initial state) lie
 * in the file, their shapes and dtype, and the decay slopes to use. Only the header and the
 * slopes are read here; tasks read their own token ranges. Immutable. Serializable: the Spark
 * job sends it to its tasks.
 */
public final class SequenceFile implements Serializable {
    private static final long serialVersionUID = 1L;

    /**
     * The file's URI (Hadoop's {@code Path.toUri().toString()}); the Spark job rebuilds the exact
     * path from it ({@code SequenceFiles.hadoopPath}).
     */
    public final String path;
    /** The result's name in the output directory (a relative path under --recursive); used in messages. */
    public final String name;
    public final long fileSize;
    public final long tokens;
    public final int heads;
    public final int dk;
    public final int dv;
    public final DType dtype;
    public final long qOffset;
    final long kOffset;
    final long vOffset;
    /** Absolute offset of {@code initial_state}, or -1 when the file has none. */
    public final long initialStateOffset;
    final double[] slopes;
    public final boolean slopesFromFile;

    private SequenceFile(String path, String name, long fileSize, long tokens, int heads, int dk, int dv, DType dtype,
                         long qOffset, long kOffset, long vOffset, long initialStateOffset, double[] slopes,
                         boolean slopesFromFile) {
        this.path = path;
        this.name = name;
        this.fileSize = fileSize;
        this.tokens = tokens;
        this.heads = heads;
        this.dk = dk;
        this.dv = dv;
        this.dtype = dtype;
        this.qOffset = qOffset;
        this.kOffset = kOffset;
        this.vOffset = vOffset;
        this.initialStateOffset = initialStateOffset;
        this.slopes = slopes;
        this.slopesFromFile = slopesFromFile;
    }

    public AttentionSpec spec(double scale, int chunkSize) {
        return new AttentionSpec(heads, dk, dv, slopes, scale, chunkSize);
    }

    /** Bytes of this sequence's state ({@link LightningState#bytes}). */
    public long stateBytes() {
        return LightningState.bytes(heads, dk, dv);
    }

    /** Bytes of q, k and v for one token. */
    public long inputBytesPerToken() {
        return (long) heads * (2L * dk + dv) * dtype.bytes();
    }

    /** Bytes of o for one token, written in {@code out}. */
    public long outputBytesPerToken(DType out) {
        return (long) heads * dv * out.bytes();
    }

    /**
     * Reads and checks a file's header (and its slopes, when present) through positioned reads.
     *
     * @param path          the file's URI, kept as {@link #path}
     * @param name          the result's name in the output directory, kept as {@link #name}
     * @param defaultSlopes slopes for H heads when the file has no {@code slope} tensor
     * @throws InvalidInputException naming the file and what is wrong with it
     */
    public static SequenceFile describe(String path, String name, long size, RangeReader in,
                                 java.util.function.IntFunction<double[]> defaultSlopes) throws IOException {
        byte[] prefix = new byte[8];
        readFully(in, 0, prefix, name);
        long n = SafetensorsHeader.headerLength(name, prefix, size);
        byte[] json = new byte[(int) n];
        readFully(in, 8, json, name);
        SafetensorsHeader header = SafetensorsHeader.parse(name, json, size);

        TensorEntry q = require(header, "q", name);
        TensorEntry k = require(header, "k", name);
        TensorEntry v = require(header, "v", name);
        DType dtype = dtypeOf(q, name);
        for (TensorEntry t : new TensorEntry[] {k, v}) {
            if (dtypeOf(t, name) != dtype) {
                throw new InvalidInputException(name + ": q, k and v must share a dtype; q is " + dtype + ", "
                        + t.name() + " is " + t.dtypeName());
            }
        }
        for (TensorEntry t : new TensorEntry[] {q, k, v}) {
            if (t.rank() != 3) {
                throw new InvalidInputException(name + ": tensor '" + t.name() + "' must be [T, H, D], found shape "
                        + Arrays.toString(t.shape()));
            }
        }
        long tokens = q.dim(0);
        if (k.dim(0) != tokens || v.dim(0) != tokens || k.dim(1) != q.dim(1) || v.dim(1) != q.dim(1)
                || k.dim(2) != q.dim(2)) {
            throw new InvalidInputException(name + ": expected q [T, H, Dk], k [T, H, Dk], v [T, H, Dv] with one T "
                    + "and H; found q " + Arrays.toString(q.shape()) + ", k " + Arrays.toString(k.shape())
                    + ", v " + Arrays.toString(v.shape()));
        }
        if (tokens < 1) {
            throw new InvalidInputException(name + ": sequence has 0 tokens; every sequence needs at least 1");
        }
        if (q.dim(1) < 1 || q.dim(1) > 1 << 16) {
            throw new InvalidInputException(name + ": H = " + q.dim(1) + " heads, expected 1..65536");
        }
        int heads = (int) q.dim(1);
        for (TensorEntry t : new TensorEntry[] {q, v}) {
            if (t.dim(2) < 1 || t.dim(2) > AttentionSpec.MAX_DIM) {
                throw new InvalidInputException(name + ": head width of '" + t.name() + "' is " + t.dim(2)
                        + ", expected 1.." + AttentionSpec.MAX_DIM);
            }
        }
        int dk = (int) q.dim(2);
        int dv = (int) v.dim(2);

        double[] slopes;
        boolean fromFile;
        TensorEntry slope = header.tensor("slope");
        if (slope != null) {
            checkF32(slope, name, heads);
            byte[] raw = new byte[heads * 4];
            readFully(in, slope.begin(), raw, name);
            ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
            slopes = new double[heads];
            for (int h = 0; h < heads; h++) {
                float s = b.getFloat(h * 4);
                if (!(s >= 0) || Float.isInfinite(s)) {
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
        long initial = -1;
        TensorEntry init = header.tensor("initial_state");
        if (init != null) {
            checkF32(init, name, heads, dk, dv);
            initial = init.begin();
        }
        return new SequenceFile(path, name, size, tokens, heads, dk, dv, dtype, q.begin(), k.begin(), v.begin(),
                initial, slopes, fromFile);
    }

    private static TensorEntry require(SafetensorsHeader h, String tensor, String file) {
        TensorEntry t = h.tensor(tensor);
        if (t == null) {
            throw new InvalidInputException(file + ": missing tensor '" + tensor + "'; a sequence file holds q [T,H,Dk], "
                    + "k [T,H,Dk], v [T,H,Dv], optionally slope [H] and initial_state [H,Dk,Dv]; found "
                    + h.tensors().keySet());
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
        return name + " [T=" + tokens + ", H=" + heads + ", Dk=" + dk + ", Dv=" + dv + ", " + dtype + "]";
    }
}
