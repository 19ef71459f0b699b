package dev.lightning.attention.tensor;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A token-major tensor {@code [T, H, D]} (tokens, heads, head dimension) over a little-endian
 * byte buffer, exactly as safetensors stores q, k, v and o. It is a view, not a value: it
 * shares the buffer it was made from, so readers and writers of one piece need no copy.
 */
public final class TokenTensor {
    private final DType dtype;
    private final int tokens;
    private final int heads;
    private final int dim;
    private final ByteBuffer buf;
    /**
     * The off-heap block this view's bytes lie in, when a backend handed it out ({@code hostTensor}):
     * the backend then copies to and from it without staging. Null for every other buffer.
     */
    private final Object memory;
    /** Byte offset of this view's first byte in {@link #memory} (0 without one). */
    private final long memoryOffset;

    private TokenTensor(DType dtype, int tokens, int heads, int dim, ByteBuffer buf) {
        this(dtype, tokens, heads, dim, buf, null, 0);
    }

    private TokenTensor(DType dtype, int tokens, int heads, int dim, ByteBuffer buf, Object memory, long memoryOffset) {
        if (tokens < 0 || heads <= 0 || dim <= 0) {
            throw new IllegalArgumentException(
                    "tensor shape [" + tokens + ", " + heads + ", " + dim + "] must be non-negative with H, D > 0");
        }
        long need = (long) tokens * heads * dim * dtype.bytes();
        if (need > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a tensor view holds at most 2 GiB; [" + tokens + ", " + heads
                    + ", " + dim + "] " + dtype + " needs " + need + " bytes: use a smaller window");
        }
        if (buf.remaining() < need) {
            throw new IllegalArgumentException("buffer holds " + buf.remaining() + " bytes, shape ["
                    + tokens + ", " + heads + ", " + dim + "] " + dtype + " needs " + need);
        }
        this.dtype = dtype;
        this.tokens = tokens;
        this.heads = heads;
        this.dim = dim;
        this.buf = buf.slice().order(ByteOrder.LITTLE_ENDIAN);
        this.memory = memory;
        this.memoryOffset = memoryOffset;
    }

    /**
     * A view of {@code [tokens, heads, dim]} elements at the position of {@code buf}, a view of the
     * block {@code memory} starting at byte {@code offset} of it: what a backend's
     * {@code hostTensor} returns, so that slices of it still say where their bytes lie.
     */
    public static TokenTensor wrap(DType dtype, int tokens, int heads, int dim, ByteBuffer buf, Object memory,
                                   long offset) {
        if (memory == null || offset < 0) {
            throw new IllegalArgumentException("a view of a memory block needs the block and an offset >= 0, got "
                    + memory + " at " + offset);
        }
        return new TokenTensor(dtype, tokens, heads, dim, buf, memory, offset);
    }

    /** The off-heap block a backend handed out that holds this view's bytes, or null. */
    public Object memory() {
        return memory;
    }

    /** Byte offset of this view's first byte in {@link #memory()} (0 when there is none). */
    public long memoryOffset() {
        return memoryOffset;
    }

    /** A view of {@code [tokens, heads, dim]} elements at the buffer's position. */
    public static TokenTensor wrap(DType dtype, int tokens, int heads, int dim, ByteBuffer buf) {
        return new TokenTensor(dtype, tokens, heads, dim, buf);
    }

    /** A new zero-filled tensor on the heap. */
    public static TokenTensor allocate(DType dtype, int tokens, int heads, int dim) {
        return new TokenTensor(dtype, tokens, heads, dim,
                ByteBuffer.allocate(Math.toIntExact((long) tokens * heads * dim * dtype.bytes())));
    }

    /** A new tensor holding {@code values} ({@code [T*H*D]}, token-major) rounded to {@code dtype}. */
    public static TokenTensor of(DType dtype, int tokens, int heads, int dim, float[] values) {
        if (values.length != (long) tokens * heads * dim) {
            throw new IllegalArgumentException("expected " + (long) tokens * heads * dim + " values, got " + values.length);
        }
        TokenTensor t = allocate(dtype, tokens, heads, dim);
        for (int i = 0; i < values.length; i++) {
            dtype.put(t.buf, i * dtype.bytes(), values[i]);
        }
        return t;
    }

    public DType dtype() {
        return dtype;
    }

    public int tokens() {
        return tokens;
    }

    public int heads() {
        return heads;
    }

    public int dim() {
        return dim;
    }

    /** Whether this view cannot be written (a view of a read-only buffer, such as {@link #bytes()}). */
    public boolean isReadOnly() {
        return buf.isReadOnly();
    }

    /** Bytes of one token (all heads): {@code H * D * dtype.bytes()}. */
    public int tokenBytes() {
        return heads * dim * dtype.bytes();
    }

    /** Element {@code [t, h, d]}. */
    public float get(int t, int h, int d) {
        return dtype.get(buf, ((t * heads + h) * dim + d) * dtype.bytes());
    }

    /** Writes element {@code [t, h, d]}, rounded to this tensor's dtype. */
    public void set(int t, int h, int d, float value) {
        dtype.put(buf, ((t * heads + h) * dim + d) * dtype.bytes(), value);
    }

    /**
     * Copies head {@code h} of tokens {@code [from, from + n)} as floats into {@code dst}
     * ({@code [n, D]}, row-major) starting at {@code dst[0]}.
     */
    public void readHead(int h, int from, int n, float[] dst) {
        int es = dtype.bytes();
        for (int i = 0; i < n; i++) {
            int at = (((from + i) * heads + h) * dim) * es;
            int row = i * dim;
            for (int d = 0; d < dim; d++) {
                dst[row + d] = dtype.get(buf, at + d * es);
            }
        }
    }

    /** Writes {@code src} ({@code [n, D]}, row-major) into head {@code h} of tokens {@code [from, from + n)}. */
    public void writeHead(int h, int from, int n, float[] src) {
        int es = dtype.bytes();
        for (int i = 0; i < n; i++) {
            int at = (((from + i) * heads + h) * dim) * es;
            int row = i * dim;
            for (int d = 0; d < dim; d++) {
                dtype.put(buf, at + d * es, src[row + d]);
            }
        }
    }

    /** All elements as floats, token-major {@code [T*H*D]}. */
    public float[] toFloats() {
        float[] out = new float[tokens * heads * dim];
        for (int i = 0; i < out.length; i++) {
            out[i] = dtype.get(buf, i * dtype.bytes());
        }
        return out;
    }

    /**
     * This tensor in float32: itself where it is float32 already, else a new tensor of its values.
     * 16-bit values (BF16, F16) widen exactly, so float32 kernels on the result compute from the
     * same numbers: the GPU backends' way to a float32 o, or to q, k and v of mixed dtypes.
     */
    public TokenTensor toF32() {
        return dtype == DType.F32 ? this : of(DType.F32, tokens, heads, dim, toFloats());
    }

    /** A read-only view of the raw little-endian bytes, {@code T * tokenBytes()} long. */
    public ByteBuffer bytes() {
        ByteBuffer view = buf.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
        view.limit(tokens * tokenBytes());
        return view;
    }

    /**
     * A writable view of the raw little-endian bytes, {@code T * tokenBytes()} long, for filling
     * the tensor in place (a positioned file read straight into it, with no copy in between).
     */
    public ByteBuffer writableBytes() {
        ByteBuffer view = buf.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        view.clear().limit(tokens * tokenBytes());
        return view;
    }

    /**
     * Overwrites this tensor's bytes with {@code src} ({@code T * tokenBytes()} little-endian bytes,
     * from its position), as a device copy-back does.
     */
    public void putBytes(ByteBuffer src) {
        int len = tokens * tokenBytes();
        if (src.remaining() < len) {
            throw new IllegalArgumentException("need " + len + " bytes, got " + src.remaining());
        }
        ByteBuffer dst = buf.duplicate();
        dst.clear().limit(len);
        ByteBuffer from = src.duplicate();
        from.limit(from.position() + len);
        dst.put(from);
    }

    /** Tokens {@code [from, from + n)} as a view sharing this tensor's bytes. */
    public TokenTensor slice(int from, int n) {
        if (from < 0 || n < 0 || from + n > tokens) {
            throw new IndexOutOfBoundsException("tokens [" + from + ", " + (from + n) + ") of " + tokens);
        }
        ByteBuffer b = buf.duplicate();
        b.position(from * tokenBytes());
        b.limit((from + n) * tokenBytes());
        return new TokenTensor(dtype, n, heads, dim, b, memory,
                memory == null ? 0 : memoryOffset + (long) from * tokenBytes());
    }

    @Override
    public String toString() {
        return "TokenTensor[" + tokens + ", " + heads + ", " + dim + "] " + dtype;
    }
}
