package dev.lightning.attention.engine;

/**
 * The states a pass-2 window must record on the way: with interval N ({@code --state-every}),
 * checkpoint c of a sequence is the state (S, and z when normalizing) after token (c+1)N - 1,
 * positions counted from the sequence's first token. A window of n tokens starting at token
 * {@code position} holds the checkpoints c with position < (c+1)N <= position + n: the
 * {@link #count()} of them starting at global index {@link #first()}.
 *
 * <p>Backends fill it during {@link AttentionBackend#forward}, the GPU straight from the state it
 * holds on chip, with no extra pass over q, k, v. Values are float32: S of checkpoint i at
 * {@code [i, H, Dk, Dv]} of {@link #kvData()}, z at {@code [i, H, Dk]} of {@link #normalizerData()}.
 * Not thread-safe; one per window.
 */
public final class Checkpoints {
    private static final Checkpoints NONE = new Checkpoints(0, 0, 0, 0, 0, 0, false);

    private final int every;
    private final long position;
    private final long first;
    private final int count;
    private final int stateSize;
    private final int normalizerSize;
    private final float[] kv;
    private final float[] z;

    private Checkpoints(int every, long position, long first, int count, int stateSize, int normalizerSize,
                        boolean normalized) {
        this.every = every;
        this.position = position;
        this.first = first;
        this.count = count;
        this.stateSize = stateSize;
        this.normalizerSize = normalizerSize;
        long values = (long) count * stateSize;
        if (values > Integer.MAX_VALUE - 16) {
            throw new IllegalArgumentException(count + " checkpoints of " + stateSize + " values do not fit one window's "
                    + "buffer (2^31 values): use a larger --state-every or a smaller window");
        }
        this.kv = new float[(int) values];
        this.z = normalized ? new float[count * normalizerSize] : null;
    }

    /** No checkpoints: what a call that does not ask for them passes. */
    public static Checkpoints none() {
        return NONE;
    }

    /**
     * The checkpoints of a window of {@code tokens} tokens starting at token {@code position} of
     * its sequence, every {@code every} tokens, for states of {@code spec}.
     */
    public static Checkpoints of(AttentionSpec spec, int every, long position, int tokens) {
        if (every < 1) {
            throw new IllegalArgumentException("checkpoint interval must be >= 1, got " + every);
        }
        if (position < 0 || tokens < 0) {
            throw new IllegalArgumentException("window [" + position + ", +" + tokens + ") must be non-negative");
        }
        return new Checkpoints(every, position, position / every, Math.toIntExact(count(every, position, tokens)),
                spec.stateSize(),
                spec.normalizerSize(), spec.normalized());
    }

    /**
     * How many checkpoints every {@code every} tokens fall in tokens [position, position + tokens)
     * of a sequence: those c with position < (c+1)N <= position + tokens. The one place that count
     * is computed (windows, pieces and whole files read it here).
     */
    public static long count(int every, long position, long tokens) {
        return every == 0 ? 0 : (position + tokens) / every - position / every;
    }

    /** Whether any checkpoint interval was asked for (false only for {@link #none()}). */
    public boolean requested() {
        return every > 0;
    }

    /** N: tokens between checkpoints. */
    public int every() {
        return every;
    }

    /** The window's first token, counted from the sequence's first. */
    public long position() {
        return position;
    }

    /** The global index of this window's first checkpoint. */
    public long first() {
        return first;
    }

    /** Checkpoints that fall in this window. */
    public int count() {
        return count;
    }

    /** The window-relative token after which checkpoint {@code i} (0..count-1) of this window is taken. */
    public int tokenAfter(int i) {
        return (int) ((first + i + 1) * every - 1 - position);
    }

    /** Checks that these checkpoints suit a window of {@code tokens} tokens of {@code spec}. */
    void check(AttentionSpec spec, int tokens) {
        if (every % spec.chunkSize() != 0 || position % spec.chunkSize() != 0) {
            throw new IllegalArgumentException("checkpoints every " + every + " tokens from token " + position
                    + ": both must be multiples of the chunk size " + spec.chunkSize());
        }
        if (stateSize != spec.stateSize() || normalizerSize != spec.normalizerSize() || (z != null) != spec.normalized()) {
            throw new IllegalArgumentException("checkpoints made for another spec than " + spec);
        }
        if (count != count(every, position, tokens)) {
            throw new IllegalArgumentException("checkpoints made for " + count + " states, the window of " + tokens
                    + " tokens from " + position + " holds " + count(every, position, tokens));
        }
    }

    /** Records the state of checkpoint {@code i} (copies it). */
    public void put(int i, LightningState s) {
        System.arraycopy(s.data(), 0, kv, i * stateSize, stateSize);
        if (z != null) {
            System.arraycopy(s.normalizerData(), 0, z, i * normalizerSize, normalizerSize);
        }
    }

    /** Records checkpoint {@code i} of one head from S {@code [Dk*Dv]} and z {@code [Dk]} (null when not normalizing). */
    public void putHead(int i, int h, float[] headKv, float[] headZ) {
        int per = headKv.length;
        System.arraycopy(headKv, 0, kv, i * stateSize + h * per, per);
        if (z != null) {
            System.arraycopy(headZ, 0, z, i * normalizerSize + h * headZ.length, headZ.length);
        }
    }

    /** Checkpoint {@code i} as a state of {@code spec}. */
    public LightningState state(AttentionSpec spec, int i) {
        float[] s = java.util.Arrays.copyOfRange(kv, i * stateSize, (i + 1) * stateSize);
        float[] n = z == null ? null : java.util.Arrays.copyOfRange(z, i * normalizerSize, (i + 1) * normalizerSize);
        return LightningState.own(spec.heads(), spec.dk(), spec.dv(), s, n);
    }

    /** S of every checkpoint, {@code [count, H, Dk, Dv]}, without a copy: backends write into it. */
    public float[] kvData() {
        return kv;
    }

    /** z of every checkpoint, {@code [count, H, Dk]}, without a copy; the spec must normalize. */
    public float[] normalizerData() {
        if (z == null) {
            throw new IllegalStateException("checkpoints without normalizer");
        }
        return z;
    }
}
