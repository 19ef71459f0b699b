package dev.lightning.attention.engine;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The recurrent state S of every head after some tokens, {@code [H, Dk, Dv]} in float32:
 * S_t = lambda S_{t-1} + k_t^T v_t. This is the convention of {@code final_state} and
 * {@code initial_state} in files: S itself, not lambda * S. Immutable.
 */
public final class LightningState {
    private final int heads;
    private final int dk;
    private final int dv;
    private final float[] kv;

    private LightningState(int heads, int dk, int dv, float[] kv) {
        if (heads < 1 || dk < 1 || dv < 1) {
            throw new IllegalArgumentException("state shape [" + heads + ", " + dk + ", " + dv + "] must be positive");
        }
        if (kv.length != (long) heads * dk * dv) {
            throw new IllegalArgumentException("state [" + heads + ", " + dk + ", " + dv + "] needs "
                    + (long) heads * dk * dv + " values, got " + kv.length);
        }
        this.heads = heads;
        this.dk = dk;
        this.dv = dv;
        this.kv = kv;
    }

    /** The zero state: what a sequence starts from when it has no initial state. */
    /**
     * Bytes of a state of H heads of [Dk, Dv] float32 values, as {@link #toBytes} writes it: the one
     * place that size is computed (staging files, device buffers, space estimates read it here).
     */
    public static long bytes(int heads, int dk, int dv) {
        return 4L * heads * dk * dv;
    }

    public static LightningState zeros(int heads, int dk, int dv) {
        return new LightningState(heads, dk, dv, new float[heads * dk * dv]);
    }

    /** A state holding a copy of {@code kv}, {@code [H*Dk*Dv]} row-major. */
    public static LightningState of(int heads, int dk, int dv, float[] kv) {
        return new LightningState(heads, dk, dv, kv.clone());
    }

    /**
     * Takes ownership of {@code kv} without copying; for backends (cpu, reference) that just
     * filled it and keep no reference to it.
     */
    public static LightningState own(int heads, int dk, int dv, float[] kv) {
        return new LightningState(heads, dk, dv, kv);
    }

    /** Decodes {@code H*Dk*Dv} little-endian float32 values from {@code bytes} at its position. */
    public static LightningState fromBytes(int heads, int dk, int dv, ByteBuffer bytes) {
        float[] kv = new float[heads * dk * dv];
        bytes.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(kv);
        return new LightningState(heads, dk, dv, kv);
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

    /** Element {@code [h, i, j]}. */
    public float get(int h, int i, int j) {
        return kv[(h * dk + i) * dv + j];
    }

    /** A copy of the values, {@code [H*Dk*Dv]} row-major. */
    public float[] kv() {
        return kv.clone();
    }

    /** The values without a copy, for backends that only read them (cpu); never modify. */
    public float[] data() {
        return kv;
    }

    /** Little-endian float32 bytes, {@code H*Dk*Dv*4} long: the safetensors F32 layout. */
    public byte[] toBytes() {
        ByteBuffer b = ByteBuffer.allocate(kv.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().put(kv);
        return b.array();
    }

    /** Whether this state fits {@code spec}'s heads and widths. */
    public boolean fits(AttentionSpec spec) {
        return heads == spec.heads() && dk == spec.dk() && dv == spec.dv();
    }

    /**
     * The scan's combine: the state after this one is followed by {@code n} tokens whose state
     * from zero is {@code local}, i.e. lambda_h^n * this + local, in float32.
     */
    public LightningState then(AttentionSpec spec, long n, LightningState local) {
        if (!fits(spec) || !local.fits(spec)) {
            throw new IllegalArgumentException("states " + this + " and " + local + " do not fit " + spec);
        }
        float[] out = new float[kv.length];
        int block = dk * dv;
        for (int h = 0; h < heads; h++) {
            float decay = (float) spec.decay(h, n);
            for (int x = h * block, end = x + block; x < end; x++) {
                out[x] = decay * kv[x] + local.kv[x];
            }
        }
        return new LightningState(heads, dk, dv, out);
    }

    @Override
    public String toString() {
        return "LightningState[" + heads + ", " + dk + ", " + dv + "]";
    }
}
