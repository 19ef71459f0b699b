package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.BitSet;

/**
 * New tokens of N sequences packed into one q, k, v, the input of one {@link BatchStep}: sequence
 * i owns tokens {@code [offsets[i], offsets[i+1])} of the packed tensors (fla's {@code cu_seqlens})
 * and its state lives in slot {@code slots[i]} of a {@link StateStore} (vLLM's slot mapping).
 *
 * <p>Shapes from the spec ({@link AttentionSpec} owns them): q {@code [T, Hq, Dk]}, k
 * {@code [T, Hk, Dk]}, v {@code [T, Hv, Dv]} in one dtype, T = {@code offsets[N]}; the output o
 * of a step is {@code [T, H, Dv]}. Checked once, here: offsets start at 0, never decrease (a
 * sequence of 0 tokens keeps its state) and end at T; slots are non-negative and no slot appears
 * twice (two sequences updating one state in one step would race). Whether the slots exist is
 * the store's to say ({@link #checkSlots}). Immutable: the arrays are copied; the tensors are
 * views, as everywhere in the engine.
 */
public final class TokenBatch {
    private final AttentionSpec spec;
    private final TokenTensor q;
    private final TokenTensor k;
    private final TokenTensor v;
    private final int[] offsets;
    private final int[] slots;
    private final int maxTokens;

    private TokenBatch(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v, int[] offsets, int[] slots) {
        this.spec = spec;
        this.q = q;
        this.k = k;
        this.v = v;
        this.offsets = offsets;
        this.slots = slots;
        int most = 0;
        for (int i = 0; i < slots.length; i++) {
            most = Math.max(most, offsets[i + 1] - offsets[i]);
        }
        this.maxTokens = most;
    }

    /**
     * A batch of {@code slots.length} sequences; throws IllegalArgumentException naming what is
     * off (the tensor and its expected shape, the first offset out of order, the repeated slot).
     *
     * @param offsets N + 1 token offsets into q, k, v: {@code 0 = offsets[0] <= ... <= offsets[N] = T}
     * @param slots   N state slots, distinct, each >= 0
     */
    public static TokenBatch of(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v, int[] offsets,
                                int[] slots) {
        int n = slots.length;
        if (offsets.length != n + 1) {
            throw new IllegalArgumentException("a batch of " + n + " sequences (slots) needs " + (n + 1)
                    + " offsets (the first token of each and the end), got " + offsets.length);
        }
        int t = q.tokens();
        check("q", q, t, spec.headsQ(), spec.dk());
        check("k", k, t, spec.headsK(), spec.dk());
        check("v", v, t, spec.headsV(), spec.dv());
        if (k.dtype() != q.dtype() || v.dtype() != q.dtype()) {
            throw new IllegalArgumentException("q, k, v must share a dtype, got " + q.dtype() + ", " + k.dtype() + ", "
                    + v.dtype());
        }
        if (offsets[0] != 0 || offsets[n] != t) {
            throw new IllegalArgumentException("offsets must start at 0 and end at the packed token count " + t
                    + ", got " + offsets[0] + " .. " + offsets[n]);
        }
        for (int i = 0; i < n; i++) {
            if (offsets[i + 1] < offsets[i]) {
                throw new IllegalArgumentException("offsets must not decrease: sequence " + i + " would hold tokens ["
                        + offsets[i] + ", " + offsets[i + 1] + ")");
            }
        }
        BitSet seen = new BitSet();
        for (int i = 0; i < n; i++) {
            if (slots[i] < 0) {
                throw new IllegalArgumentException("slot of sequence " + i + " is " + slots[i] + ", expected >= 0");
            }
            if (seen.get(slots[i])) {
                int first = 0;
                while (slots[first] != slots[i]) {
                    first++;
                }
                throw new IllegalArgumentException("slot " + slots[i] + " is given to sequences " + first + " and " + i
                        + " of one batch: each sequence needs its own state; put the second one in a later step");
            }
            seen.set(slots[i]);
        }
        return new TokenBatch(spec, q, k, v, offsets.clone(), slots.clone());
    }

    private static void check(String name, TokenTensor x, int t, int heads, int dim) {
        if (x.tokens() != t || x.heads() != heads || x.dim() != dim) {
            throw new IllegalArgumentException(name + " is " + x + ", expected [" + t + ", " + heads + ", " + dim
                    + "] (T = q's tokens; heads and width from the spec)");
        }
    }

    /** Throws IllegalArgumentException unless every slot is below {@code slotCount} (a store's size). */
    public void checkSlots(int slotCount) {
        for (int i = 0; i < slots.length; i++) {
            if (slots[i] >= slotCount) {
                throw new IllegalArgumentException("slot of sequence " + i + " is " + slots[i] + ", but the state store "
                        + "has slots 0.." + (slotCount - 1) + ": allocate a larger store");
            }
        }
    }

    /** Throws IllegalArgumentException unless {@code o} is {@code [T, H, Dv]} (any dtype) and writable. */
    public void checkOutput(TokenTensor o) {
        check("o", o, tokens(), spec.heads(), spec.dv());
        // checked before the step: it writes o after (or while) it advances the slots in place, and
        // a read-only o failed there, leaving a slot advanced for o rows that were never written
        if (o.isReadOnly()) {
            throw new IllegalArgumentException("o is " + o + " over a read-only buffer, expected a writable one: "
                    + "allocate o (TokenTensor.allocate) or wrap a writable buffer");
        }
    }

    public AttentionSpec spec() {
        return spec;
    }

    /** N, the sequences. */
    public int count() {
        return slots.length;
    }

    /** T, the packed tokens of all sequences. */
    public int tokens() {
        return q.tokens();
    }

    /** The most tokens any one sequence has in this batch. */
    public int maxTokens() {
        return maxTokens;
    }

    public DType dtype() {
        return q.dtype();
    }

    public TokenTensor q() {
        return q;
    }

    public TokenTensor k() {
        return k;
    }

    public TokenTensor v() {
        return v;
    }

    /** First packed token of sequence i. */
    public int start(int i) {
        return offsets[i];
    }

    /** Tokens of sequence i. */
    public int length(int i) {
        return offsets[i + 1] - offsets[i];
    }

    /** State slot of sequence i. */
    public int slot(int i) {
        return slots[i];
    }

    /** A copy of the N + 1 offsets. */
    public int[] offsets() {
        return offsets.clone();
    }

    /** A copy of the N slots. */
    public int[] slots() {
        return slots.clone();
    }

    @Override
    public String toString() {
        return "TokenBatch[" + count() + " sequences, " + tokens() + " tokens (at most " + maxTokens + " each), "
                + dtype() + "]";
    }
}
