package dev.lightning.attention.engine;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The recurrent state of every head after some tokens, in float32, and the one owner of its
 * layout: S {@code [H, Dk, Dv]}, S_t = lambda S_{t-1} + phi(k_t)^T v_t, and for a normalized spec
 * also the normalizer z {@code [H, Dk]}, z_t = lambda z_{t-1} + phi(k_t). This is the convention
 * of {@code final_state}/{@code initial_state} (and {@code final_normalizer}/
 * {@code initial_normalizer}) in files: S itself, not lambda * S.
 *
 * <p>As bytes (staging files, device buffers, {@link #toBytes}): S, then z when there is one,
 * little-endian float32. Immutable.
 */
public final class LightningState {
    private final int heads;
    private final int dk;
    private final int dv;
    private final float[] kv;
    /** [H * Dk], or null for a state without normalizer. */
    private final float[] z;

    private LightningState(int heads, int dk, int dv, float[] kv, float[] z) {
        if (heads < 1 || dk < 1 || dv < 1) {
            throw new IllegalArgumentException("state shape [" + heads + ", " + dk + ", " + dv + "] must be positive");
        }
        if (kv.length != (long) heads * dk * dv) {
            throw new IllegalArgumentException("state [" + heads + ", " + dk + ", " + dv + "] needs "
                    + (long) heads * dk * dv + " values, got " + kv.length);
        }
        if (z != null && z.length != heads * dk) {
            throw new IllegalArgumentException("normalizer [" + heads + ", " + dk + "] needs " + heads * dk
                    + " values, got " + z.length);
        }
        this.heads = heads;
        this.dk = dk;
        this.dv = dv;
        this.kv = kv;
        this.z = z;
    }

    /**
     * Bytes of a state as {@link #toBytes} writes it: the one place that size is computed
     * (staging files, device buffers, space estimates read it here).
     */
    public static long bytes(int heads, int dk, int dv, boolean normalized) {
        return 4L * heads * dk * dv + (normalized ? normalizerBytes(heads, dk) : 0);
    }

    /** Bytes of the z part of a normalized state of H heads of width Dk: [H, Dk] float32. */
    public static long normalizerBytes(int heads, int dk) {
        return 4L * heads * dk;
    }

    /** Bytes of a state of {@code spec}: {@link #kvBytes} then {@link #normalizerBytes}. */
    public static long bytes(AttentionSpec spec) {
        return bytes(spec.heads(), spec.dk(), spec.dv(), spec.normalized());
    }

    /** Bytes of the S part of a state of {@code spec} (where z starts in {@link #toBytes}). */
    public static long kvBytes(AttentionSpec spec) {
        return bytes(spec.heads(), spec.dk(), spec.dv(), false);
    }

    /** Bytes of the z part of a state of {@code spec}: 0 when it does not normalize. */
    public static long normalizerBytes(AttentionSpec spec) {
        return bytes(spec) - kvBytes(spec);
    }

    /** Bytes of an unnormalized state of H heads of [Dk, Dv]. */
    public static long bytes(int heads, int dk, int dv) {
        return bytes(heads, dk, dv, false);
    }

    /** The zero state of {@code spec} (with a zero normalizer when it normalizes): where a sequence starts. */
    public static LightningState zeros(AttentionSpec spec) {
        return new LightningState(spec.heads(), spec.dk(), spec.dv(), new float[spec.stateSize()],
                spec.normalized() ? new float[spec.normalizerSize()] : null);
    }

    /** The zero state without normalizer. */
    public static LightningState zeros(int heads, int dk, int dv) {
        return new LightningState(heads, dk, dv, new float[heads * dk * dv], null);
    }

    /** A state holding a copy of {@code kv}, {@code [H*Dk*Dv]} row-major, without normalizer. */
    public static LightningState of(int heads, int dk, int dv, float[] kv) {
        return new LightningState(heads, dk, dv, kv.clone(), null);
    }

    /** A state holding copies of {@code kv} and the normalizer {@code z} ({@code [H*Dk]}). */
    public static LightningState of(int heads, int dk, int dv, float[] kv, float[] z) {
        return new LightningState(heads, dk, dv, kv.clone(), z.clone());
    }

    /**
     * Takes ownership of {@code kv} and {@code z} (null: no normalizer) without copying; for
     * backends that just filled them and keep no reference to them.
     */
    public static LightningState own(int heads, int dk, int dv, float[] kv, float[] z) {
        return new LightningState(heads, dk, dv, kv, z);
    }

    /** {@link #own(int, int, int, float[], float[])} without normalizer. */
    public static LightningState own(int heads, int dk, int dv, float[] kv) {
        return new LightningState(heads, dk, dv, kv, null);
    }

    /** Decodes a state of {@code spec} ({@link #bytes(AttentionSpec)} bytes) at the buffer's position. */
    public static LightningState fromBytes(AttentionSpec spec, ByteBuffer bytes) {
        return fromBytes(spec.heads(), spec.dk(), spec.dv(), spec.normalized(), bytes);
    }

    /** Decodes {@code H*Dk*Dv} little-endian float32 values (no normalizer) at the buffer's position. */
    public static LightningState fromBytes(int heads, int dk, int dv, ByteBuffer bytes) {
        return fromBytes(heads, dk, dv, false, bytes);
    }

    private static LightningState fromBytes(int heads, int dk, int dv, boolean normalized, ByteBuffer bytes) {
        float[] kv = new float[heads * dk * dv];
        java.nio.FloatBuffer f = bytes.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer();
        f.get(kv);
        float[] z = null;
        if (normalized) {
            z = new float[heads * dk];
            f.get(z);
        }
        return new LightningState(heads, dk, dv, kv, z);
    }

    public int heads() {
        return heads;
    }

    public int dk() {
        return dk;
    }

    public int dv() {
        return dv;
    }

    /** Whether this state carries a normalizer z. */
    public boolean normalized() {
        return z != null;
    }

    /** Element {@code [h, i, j]} of S. */
    public float get(int h, int i, int j) {
        return kv[(h * dk + i) * dv + j];
    }

    /** Element {@code [h, i]} of z. */
    public float normalizer(int h, int i) {
        return z[h * dk + i];
    }

    /** A copy of S, {@code [H*Dk*Dv]} row-major. */
    public float[] kv() {
        return kv.clone();
    }

    /** S without a copy, for backends that only read it (cpu); never modify. */
    public float[] data() {
        return kv;
    }

    /** A copy of z, {@code [H*Dk]}; the state must be normalized. */
    public float[] normalizer() {
        return requireNormalizer().clone();
    }

    /** z without a copy, for backends that only read it; never modify. */
    public float[] normalizerData() {
        return requireNormalizer();
    }

    private float[] requireNormalizer() {
        if (z == null) {
            throw new IllegalStateException("state " + this + " has no normalizer");
        }
        return z;
    }

    /** Bytes of this state ({@link #bytes(int, int, int, boolean)}). */
    public long byteSize() {
        return bytes(heads, dk, dv, z != null);
    }

    /** Little-endian float32 bytes: S (the safetensors F32 layout of [H, Dk, Dv]), then z when there is one. */
    public byte[] toBytes() {
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(byteSize())).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(kv);
        if (z != null) {
            b.position(kv.length * 4);
            b.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().put(z);
        }
        return b.array();
    }

    /** Whether this state fits {@code spec}'s heads and widths, with a normalizer exactly when it normalizes. */
    public boolean fits(AttentionSpec spec) {
        return heads == spec.heads() && dk == spec.dk() && dv == spec.dv() && (z != null) == spec.normalized();
    }

    /**
     * The scan's combine: the state after this one is followed by {@code n} tokens whose state
     * from zero is {@code local}, i.e. lambda_h^n * this + local, in float32, for S and z alike
     * (computed from 1 - lambda_h^n: see below).
     */
    public LightningState then(AttentionSpec spec, long n, LightningState local) {
        if (!fits(spec) || !local.fits(spec)) {
            throw new IllegalArgumentException("states " + this + " and " + local + " do not fit " + spec);
        }
        float[] out = new float[kv.length];
        float[] outZ = z == null ? null : new float[z.length];
        int block = dk * dv;
        for (int h = 0; h < heads; h++) {
            // lambda^n x + local in the form that keeps the decay's own bits (Decay: the complement near 1)
            float code = Decay.code(spec, h, n);
            for (int x = h * block, end = x + block; x < end; x++) {
                out[x] = Decay.carry(kv[x], local.kv[x], code);
            }
            if (z != null) {
                for (int x = h * dk, end = x + dk; x < end; x++) {
                    outZ[x] = Decay.carry(z[x], local.z[x], code);
                }
            }
        }
        return new LightningState(heads, dk, dv, out, outZ);
    }

    @Override
    public String toString() {
        return "LightningState[" + heads + ", " + dk + ", " + dv + (z != null ? ", with normalizer" : "") + "]";
    }
}
