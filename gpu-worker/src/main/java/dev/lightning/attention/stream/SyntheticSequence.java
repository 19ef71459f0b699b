package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;

import java.io.EOFException;
import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.IntFunction;

/**
 * A sequence file that exists only as a function: the bytes of a safetensors file holding
 * q [T, H, Dk], k [T, H, Dk], v [T, H, Dv] (no slope, no initial state), any range of which
 * {@link #reader()} produces on demand. The job reads it through the same {@link SequenceFile} and
 * {@link PieceWork} code as a real file, so a run on it equals, byte for byte, a run on the file
 * {@link #writeTo} writes; nothing is read from storage, and a 100M-token input needs no disk.
 *
 * <p>Values. Element e of tensor x (x = 0 q, 1 k, 2 v; e the row-major index in [T, H, D]) is
 * {@code amp_x * (u - 32767.5) / 32768}, rounded to the dtype, where u is 16 bits of a
 * counter-based hash: u = bits [16 (e mod 4), 16 (e mod 4) + 16) of mix64(key_x + floor(e / 4) *
 * golden), with key_x = mix64(seed * 3 + x + 1) and mix64 the SplitMix64 finalizer (Stafford's
 * mix 13). So a value depends only on (seed, tensor, element), never on how the sequence was
 * split or which range was read; one hash gives four values, and each of the 65,536 possible u
 * maps to its encoded bytes through a table, which makes the generator a few table lookups per
 * hash (see BENCHMARKS.md for the measured rate). u is uniform, so values are uniform in
 * (-amp, amp) with mean 0 and variance amp^2 / 3; amp_k = amp_v = 1 and amp_q = 1 / sqrt(Dk), so
 * q . k has variance 1/9 whatever Dk, and |o| stays near sqrt(W_eff) / 5 for a head whose decay
 * keeps W_eff = 1 / (1 - lambda^2) tokens: about 2 for lambda = exp(-1/256), and about 2,000 for
 * slope 0 after 10^8 tokens, inside F16's range.
 *
 * <p>Immutable and serializable (a few numbers; the tables are rebuilt where it is used).
 */
public final class SyntheticSequence implements Serializable {
    private static final long serialVersionUID = 1L;
    /** The URI scheme of a synthetic sequence's {@link SequenceFile#path}. */
    public static final String SCHEME = "synthetic";
    public static final int Q = 0;
    public static final int K = 1;
    public static final int V = 2;
    private static final String[] TENSORS = {"q", "k", "v"};
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    /**
     * Whether the BF16 and F32 generators run on the Vector API ({@link SyntheticVectors}; same bytes), as
     * the CPU kernels do where jdk.incubator.vector is readable. -Dlightning.synthetic.vectors=false
     * keeps the scalar loop (for comparison).
     */
    static final boolean VECTORS = !"false".equals(System.getProperty("lightning.synthetic.vectors"))
            && vectorsLoad();

    private static boolean vectorsLoad() {
        try {
            return SyntheticVectors.load();
        } catch (LinkageError e) {
            return false; // a JVM without --add-modules jdk.incubator.vector
        }
    }
    private static final java.lang.invoke.VarHandle LONGS = java.lang.invoke.MethodHandles.byteArrayViewVarHandle(
            long[].class, java.nio.ByteOrder.LITTLE_ENDIAN);

    public final long tokens;
    public final int heads;
    public final int dk;
    public final int dv;
    public final DType dtype;
    public final long seed;

    private transient volatile Layout layout;

    public SyntheticSequence(long tokens, int heads, int dk, int dv, DType dtype, long seed) {
        if (tokens < 1 || heads < 1 || dk < 1 || dv < 1) {
            throw new InvalidInputException("--synthetic " + tokens + "," + heads + "," + dk + "," + dv + ","
                    + (dtype == null ? "?" : dtype.name().toLowerCase(java.util.Locale.ROOT)) + "," + seed
                    + ": T, H, Dk and Dv must be at least 1");
        }
        if (dk > dev.lightning.attention.engine.AttentionSpec.MAX_DIM
                || dv > dev.lightning.attention.engine.AttentionSpec.MAX_DIM) {
            throw new InvalidInputException("--synthetic: Dk and Dv go up to "
                    + dev.lightning.attention.engine.AttentionSpec.MAX_DIM + ", got " + dk + " and " + dv);
        }
        this.tokens = tokens;
        this.heads = heads;
        this.dk = dk;
        this.dv = dv;
        this.dtype = java.util.Objects.requireNonNull(dtype, "dtype");
        this.seed = seed;
        // The whole virtual file must count in a long: q and k of Dk and v of Dv values a token and head, and a
        // header of at most MAX_HEADER_BYTES after its 8-byte length. Counting one tensor only let files of up to
        // three times 2^63 bytes through, whose layout's offsets then wrapped to negative sizes.
        Math.addExact(Math.multiplyExact(Math.multiplyExact(tokens, (long) heads), (2L * dk + dv) * dtype.bytes()),
                8 + SafetensorsHeader.MAX_HEADER_BYTES);
    }

    /**
     * Parses {@code T,H,Dk,Dv,dtype,seed}, e.g. {@code 10000000,2,64,64,bf16,1}.
     *
     * @throws InvalidInputException saying what was expected
     */
    public static SyntheticSequence parse(String spec) {
        String[] f = spec.trim().split("\\s*,\\s*");
        String expected = "expected T,H,Dk,Dv,dtype,seed such as 10000000,2,64,64,bf16,1 (dtype f32, f16 or bf16)";
        if (f.length != 6) {
            throw new InvalidInputException("--synthetic '" + spec + "': " + f.length + " fields, " + expected);
        }
        long tokens = field(spec, "T", f[0], Long.MAX_VALUE, expected);
        int heads = (int) field(spec, "H", f[1], Integer.MAX_VALUE, expected);
        int dk = (int) field(spec, "Dk", f[2], Integer.MAX_VALUE, expected);
        int dv = (int) field(spec, "Dv", f[3], Integer.MAX_VALUE, expected);
        long seed = field(spec, "seed", f[5], Long.MAX_VALUE, expected);
        try {
            return new SyntheticSequence(tokens, heads, dk, dv, DType.fromSafetensors(f[4]), seed);
        } catch (ArithmeticException e) { // the constructor's check of the file size: Math's "long overflow"
            throw new InvalidInputException("--synthetic '" + spec + "': its file, T x H x (2 Dk + Dv) values "
                    + "and the header, is more bytes than a file can hold (2^63 - 1); use a smaller T or H");
        } catch (IllegalArgumentException e) {
            throw new InvalidInputException("--synthetic '" + spec + "': " + e.getMessage());
        }
    }

    /**
     * Field {@code name} of a spec, a whole number of at most {@code max}: Long's own message ('For input string:
     * "x"') named neither the field nor what it takes.
     */
    private static long field(String spec, String name, String value, long max, String expected) {
        try {
            long v = Long.parseLong(value);
            if (v <= max) {
                return v;
            }
        } catch (NumberFormatException e) {
            // said below
        }
        throw new InvalidInputException("--synthetic '" + spec + "': " + name + " is '" + value + "', expected a whole "
                + "number up to " + max + "; " + expected);
    }

    /** The canonical text, {@code T,H,Dk,Dv,dtype,seed} with the dtype in lower case. */
    public String spec() {
        return tokens + "," + heads + "," + dk + "," + dv + "," + dtype.name().toLowerCase(Locale.ROOT) + "," + seed;
    }

    /** The result's name in the output directory: {@code synthetic-T-H-Dk-Dv-dtype-seed.safetensors}. */
    public String name() {
        return "synthetic-" + spec().replace(',', '-') + ".safetensors";
    }

    /** The {@link SequenceFile#path} of this sequence: {@code synthetic:T,H,Dk,Dv,dtype,seed}. */
    public String uri() {
        return SCHEME + ":" + spec();
    }

    /** Whether a {@link SequenceFile#path} names a synthetic sequence. */
    public static boolean isSynthetic(String path) {
        return path.startsWith(SCHEME + ":");
    }

    /**
     * The sequence a {@link SequenceFile#path} of {@link #isSynthetic} names. Kept per JVM (a run
     * names a few), so the tasks of an executor build its layout and tables (a few milliseconds) once.
     */
    public static SyntheticSequence ofUri(String path) {
        if (!isSynthetic(path)) {
            throw new IllegalArgumentException(path + " is not a synthetic sequence");
        }
        SyntheticSequence s = OPENED.get(path);
        if (s == null) {
            s = parse(path.substring(SCHEME.length() + 1));
            if (OPENED.size() < 64) {
                OPENED.putIfAbsent(path, s);
            }
        }
        return s;
    }

    private static final java.util.concurrent.ConcurrentHashMap<String, SyntheticSequence> OPENED =
            new java.util.concurrent.ConcurrentHashMap<>();

    /** Bytes of the virtual file. */
    public long size() {
        return layout().header.fileSize();
    }

    /** The header and data offsets of the virtual file (the same as {@link #writeTo} writes). */
    public SafetensorsHeader header() {
        return layout().header;
    }

    /** The file's description, read through {@link #reader()} exactly as a real file's is. */
    public SequenceFile describe(IntFunction<double[]> defaultSlopes, boolean normalize) throws IOException {
        return SequenceFile.describe(uri(), name(), size(), reader(), defaultSlopes, normalize);
    }

    /** Heads of tensor x (all three are H) and its width. */
    private int width(int tensor) {
        return tensor == V ? dv : dk;
    }

    /**
     * The value of element ({@code token}, {@code head}, {@code d}) of tensor {@code tensor}
     * ({@link #Q}, {@link #K}, {@link #V}), exactly as the file holds it.
     */
    public float value(int tensor, long token, int head, int d) {
        long e = (token * heads + head) * width(tensor) + d;
        return layout().decode(tensor, bits(tensor, e));
    }

    /** Fills {@code dst[0, D)} with row ({@code token}, {@code head}) of a tensor, as the file holds it. */
    public void row(int tensor, long token, int head, float[] dst) {
        Layout l = layout();
        int w = width(tensor);
        long e0 = (token * heads + head) * w;
        for (int d = 0; d < w; d++) {
            dst[d] = l.decode(tensor, bits(tensor, e0 + d));
        }
    }

    /** u of element e of a tensor: 16 bits of the hash of its block of four. */
    private int bits(int tensor, long e) {
        long r = mix(layout().keys[tensor] + (e >>> 2) * GOLDEN);
        return (int) (r >>> (16 * (int) (e & 3))) & 0xffff;
    }

    /** SplitMix64's finalizer (Stafford's mix 13): a bijection of 64-bit words with full avalanche. */
    static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /** Positioned reads of the virtual file: a {@link RangeReader} over bytes computed on demand. */
    public RangeReader reader() {
        Layout l = layout();
        return l::read;
    }

    /** Writes the virtual file to {@code file} (for tests and for comparing with a run on a real file). */
    public void writeTo(Path file) throws IOException {
        RangeReader in = reader();
        byte[] buf = new byte[1 << 20];
        try (OutputStream out = Files.newOutputStream(file)) {
            for (long at = 0; at < size(); at += buf.length) {
                int n = (int) Math.min(buf.length, size() - at);
                in.readFully(at, buf, 0, n);
                out.write(buf, 0, n);
            }
        }
    }

    private Layout layout() {
        Layout l = layout;
        if (l == null) {
            layout = l = new Layout(this);
        }
        return l;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof SyntheticSequence && ((SyntheticSequence) o).spec().equals(spec());
    }

    @Override
    public int hashCode() {
        return spec().hashCode();
    }

    @Override
    public String toString() {
        return "synthetic " + spec();
    }

    /** The virtual file's header bytes, tensor offsets, hash keys and u-to-bytes tables. */
    private static final class Layout {
        final SafetensorsHeader header;
        final byte[] headerBytes;
        final long[] begin = new long[3];
        final long[] end = new long[3];
        final long[] keys = new long[3];
        /** Per tensor, u to the little-endian bits of the dtype value: 16 bits (F16, BF16) or 32 (F32). */
        final int[][] code = new int[3][1 << 16];
        final int es;
        final DType dtype;
        /** Per tensor amp * 2^-15. */
        final float[] scale = new float[3];

        Layout(SyntheticSequence s) {
            dtype = s.dtype;
            es = s.dtype.bytes();
            Map<String, String> metadata = Map.of("synthetic", s.spec(), "generator",
                    "splitmix64 v1: x = amp * (u - 32767.5) / 32768, amp_q = 1/sqrt(Dk), amp_k = amp_v = 1");
            header = SafetensorsHeader.layout(s.name(), List.of(
                    new SafetensorsHeader.Spec("q", s.dtype, s.tokens, s.heads, s.dk),
                    new SafetensorsHeader.Spec("k", s.dtype, s.tokens, s.heads, s.dk),
                    new SafetensorsHeader.Spec("v", s.dtype, s.tokens, s.heads, s.dv)), metadata);
            headerBytes = header.encode();
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int x = 0; x < 3; x++) {
                TensorEntry t = header.tensor(TENSORS[x]);
                begin[x] = t.begin();
                end[x] = t.end();
                keys[x] = mix(s.seed * 3 + x + 1);
                float amp = x == Q ? (float) (1 / Math.sqrt(s.dk)) : 1f;
                scale[x] = amp * 0x1p-15f;
                for (int u = 0; u < 1 << 16; u++) {
                    float value = (u - 32767.5f) * 0x1p-15f * amp;
                    s.dtype.put(b, 0, value);
                    code[x][u] = es == 4 ? b.getInt(0) : b.getShort(0) & 0xffff;
                }
            }
            if (headerBytes.length != begin[0]) {
                throw new IllegalStateException("synthetic layout: data starts at " + begin[0] + ", header holds "
                        + headerBytes.length + " bytes");
            }
        }

        float decode(int tensor, int u) {
            int c = code[tensor][u];
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(4).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            if (es == 4) {
                b.putInt(0, c);
            } else {
                b.putShort(0, (short) c);
            }
            return dtype.get(b, 0);
        }

        void read(long position, byte[] buf, int off, int len) throws IOException {
            long size = header.fileSize();
            if (position < 0 || len < 0 || position > size - len) {
                throw new EOFException("synthetic file of " + size + " bytes: cannot read " + len + " bytes at "
                        + position);
            }
            long at = position;
            long stop = position + len;
            if (at < headerBytes.length) {
                int n = (int) Math.min(headerBytes.length - at, stop - at);
                System.arraycopy(headerBytes, (int) at, buf, off, n);
                at += n;
                off += n;
            }
            for (int x = 0; x < 3 && at < stop; x++) {
                if (at >= end[x]) {
                    continue;
                }
                long upTo = Math.min(stop, end[x]);
                long rel = at - begin[x];
                // a leading partial element
                int head = (int) ((es - rel % es) % es);
                if (head > 0) {
                    int n = (int) Math.min(head, upTo - at);
                    partial(x, rel / es, (int) (rel % es), buf, off, n);
                    at += n;
                    off += n;
                    rel += n;
                }
                long whole = (upTo - at) / es;
                if (whole > 0) {
                    generate(x, rel / es, (int) whole, buf, off);
                    at += whole * es;
                    off += (int) (whole * es);
                    rel += whole * es;
                }
                if (at < upTo) { // a trailing partial element
                    int n = (int) (upTo - at);
                    partial(x, rel / es, 0, buf, off, n);
                    at += n;
                    off += n;
                }
            }
        }

        /** Bytes [from, from + n) of element e of tensor x. */
        private void partial(int x, long e, int from, byte[] buf, int off, int n) {
            byte[] one = new byte[es];
            generate(x, e, 1, one, 0);
            System.arraycopy(one, from, buf, off, n);
        }

        /**
         * The encoded bytes of elements [e0, e0 + count) of tensor x, written at buf[off]. Whole
         * blocks of four (one hash) are written with one 8-byte (16-bit dtypes) or two 8-byte (F32)
         * stores; the lanes of a block cut by the range go one by one.
         */
        private void generate(int x, long e0, int count, byte[] buf, int off) {
            int[] table = code[x];
            long key = keys[x];
            long e = e0;
            long end = e0 + count;
            int at = off;
            while (e < end && (e & 3) != 0) {
                at = lane(table, mix(key + (e >>> 2) * GOLDEN), (int) (e & 3), buf, at);
                e++;
            }
            long blocks = (end - e) >>> 2;
            long block = e >>> 2;
            if (dtype == DType.BF16) {
                // computed, not looked up: a 256 KB table read at random costs more than the arithmetic
                float c = scale[x];
                long b = 0;
                if (VECTORS) {
                    long steps = blocks / SyntheticVectors.blocksPerStep();
                    SyntheticVectors.bf16(key, block, steps, c, buf, at);
                    b = steps * SyntheticVectors.blocksPerStep();
                    at += (int) (b * 8);
                }
                for (; b < blocks; b++, at += 8) {
                    long r = mix(key + (block + b) * GOLDEN);
                    long packed = bf16(r, c) | bf16(r >>> 16, c) << 16 | bf16(r >>> 32, c) << 32 | bf16(r >>> 48, c) << 48;
                    LONGS.set(buf, at, packed);
                }
            } else if (dtype == DType.F32) {
                float c = scale[x];
                long b = 0;
                if (VECTORS) {
                    long steps = blocks / SyntheticVectors.blocksPerStep();
                    SyntheticVectors.f32(key, block, steps, c, buf, at);
                    b = steps * SyntheticVectors.blocksPerStep();
                    at += (int) (b * 16);
                }
                for (; b < blocks; b++, at += 16) {
                    long r = mix(key + (block + b) * GOLDEN);
                    LONGS.set(buf, at, f32(r, c) | f32(r >>> 16, c) << 32);
                    LONGS.set(buf, at + 8, f32(r >>> 32, c) | f32(r >>> 48, c) << 32);
                }
            } else {
                for (long b = 0; b < blocks; b++, at += 8) {
                    long r = mix(key + (block + b) * GOLDEN);
                    long packed = table[(int) r & 0xffff] | (long) table[(int) (r >>> 16) & 0xffff] << 16
                            | (long) table[(int) (r >>> 32) & 0xffff] << 32 | (long) table[(int) (r >>> 48)] << 48;
                    LONGS.set(buf, at, packed);
                }
            }
            e += blocks << 2;
            while (e < end) {
                at = lane(table, mix(key + (e >>> 2) * GOLDEN), (int) (e & 3), buf, at);
                e++;
            }
        }

        /**
         * The value of u = the low 16 bits of {@code r}, as float32: (u - 32767.5) * 2^-15 is exact
         * (17 significant bits), so multiplying by c = amp * 2^-15 rounds once, exactly as the
         * table's (u - 32767.5f) * 0x1p-15f * amp does.
         */
        private static float centered(long r) {
            return ((int) r & 0xffff) - 32767.5f;
        }

        private static long f32(long r, float c) {
            return Float.floatToRawIntBits(centered(r) * c) & 0xffffffffL;
        }

        /** BF16 bits of the value, rounded as DType does (to nearest even). */
        private static long bf16(long r, float c) {
            return DType.floatToBf16(centered(r) * c) & 0xffffL;
        }

        /** Writes lane {@code l} of hash {@code r} at buf[at]; returns the next position. */
        private int lane(int[] table, long r, int l, byte[] buf, int at) {
            int c = table[(int) (r >>> (16 * l)) & 0xffff];
            for (int i = 0; i < es; i++) {
                buf[at + i] = (byte) (c >>> (8 * i));
            }
            return at + es;
        }
    }
}
