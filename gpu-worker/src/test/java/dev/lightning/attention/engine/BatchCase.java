package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/**
 * One test case of the batch step, shared by the CPU and GPU tests: a spec (H, grouping, widths,
 * feature map, normalization), N sequences with token counts drawn from {@code lengths} (1, 3 and
 * 64 mixed), their slots a random permutation of a sparse subset of a store of 2N + 5 slots, random
 * initial states in those slots (positive z when normalizing), and fresh random q, k, v.
 */
public record BatchCase(String name, int sequences, int hq, int hk, int hv, int dk, int dv, FeatureMap phi,
                        boolean normalized, DType dtype, int[] lengths, long seed) {

    public int heads() {
        return Math.max(hq, Math.max(hk, hv));
    }

    public AttentionSpec spec() {
        int h = heads();
        AttentionSpec s = new AttentionSpec(h, dk, dv, BackendAgreementTest.slopes("minimax", h), 0.75, 64)
                .withHeads(hq, hk, hv).withFeatureMap(phi);
        return normalized ? s.withNormalization(1e-5) : s;
    }

    /** Slots of the store the case's sequences may use. */
    public int storeSlots() {
        return 2 * sequences + 5;
    }

    /** Tokens of each sequence, from the case's lengths, at random. */
    public int[] tokenCounts(SplittableRandom rnd) {
        int[] n = new int[sequences];
        for (int i = 0; i < sequences; i++) {
            n[i] = lengths[rnd.nextInt(lengths.length)];
        }
        return n;
    }

    /** N distinct slots in random order, not contiguous (a random subset of the store's). */
    public int[] slots(SplittableRandom rnd) {
        int total = storeSlots();
        int[] all = new int[total];
        for (int i = 0; i < total; i++) {
            all[i] = i;
        }
        for (int i = total - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            int t = all[i];
            all[i] = all[j];
            all[j] = t;
        }
        return java.util.Arrays.copyOf(all, sequences);
    }

    /** A random state of the spec: S uniform in [-2, 2), z (normalizing) in [0.5, 4.5). */
    public static LightningState randomState(AttentionSpec spec, SplittableRandom rnd) {
        float[] s = new float[spec.stateSize()];
        for (int i = 0; i < s.length; i++) {
            s[i] = (float) (rnd.nextDouble() * 4 - 2);
        }
        if (!spec.normalized()) {
            return LightningState.own(spec.heads(), spec.dk(), spec.dv(), s, null);
        }
        float[] z = new float[spec.normalizerSize()];
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) (rnd.nextDouble() * 4 + 0.5);
        }
        return LightningState.own(spec.heads(), spec.dk(), spec.dv(), s, z);
    }

    /** Fills every slot of {@code store} with its own random state (the same for the same seed). */
    public void fillStates(StateStore store) {
        SplittableRandom rnd = new SplittableRandom(seed ^ 0x5DEECE66DL);
        for (int s = 0; s < store.slots(); s++) {
            store.write(s, randomState(spec(), rnd));
        }
    }

    /** A batch of the given token counts and slots with fresh random q, k, v. */
    public TokenBatch batch(SplittableRandom rnd, int[] counts, int[] slots) {
        int[] offsets = new int[counts.length + 1];
        for (int i = 0; i < counts.length; i++) {
            offsets[i + 1] = offsets[i] + counts[i];
        }
        int t = offsets[counts.length];
        return TokenBatch.of(spec(), Inputs.random(rnd, dtype, t, hq, dk), Inputs.random(rnd, dtype, t, hk, dk),
                Inputs.random(rnd, dtype, t, hv, dv), offsets, slots);
    }

    /** o for a batch, float32 (the comparisons see the arithmetic, not a rounding of the result). */
    public TokenTensor output(TokenBatch batch) {
        return TokenTensor.allocate(DType.F32, batch.tokens(), heads(), dv);
    }

    /**
     * The cases: N = 1, 7 and 1000; H = 3 with Dk != Dv; plain, GQA (Hk = Hv = 1), grouped values
     * (Hq = Hk = 1); elu1 and relu normalized (positive maps: no
     * cancellation in the denominator), relu; Dk and Dv not multiples of 4; lengths 1, 3 and 64 mixed (and
     * all 1: decoding, also at H = 8, Dk = Dv = 128); normalized elu1 at H = 8, Dk = Dv = 128; F32 and BF16 inputs.
     */
    public static List<BatchCase> cases() {
        List<BatchCase> out = new ArrayList<>();
        int[] mixed = {1, 3, 64};
        int[] decode = {1};
        out.add(new BatchCase("N=1 plain 64 tokens", 1, 3, 3, 3, 16, 24, FeatureMap.IDENTITY, false, DType.F32,
                new int[] {64}, 11));
        out.add(new BatchCase("N=7 plain mixed", 7, 3, 3, 3, 16, 24, FeatureMap.IDENTITY, false, DType.F32, mixed, 12));
        out.add(new BatchCase("N=7 GQA elu1 normalized", 7, 3, 1, 1, 24, 40, FeatureMap.ELU1, true, DType.BF16, mixed,
                13));
        out.add(new BatchCase("N=7 grouped values relu", 7, 1, 1, 3, 40, 8, FeatureMap.RELU, false, DType.BF16, mixed, 14));
        out.add(new BatchCase("N=7 relu normalized", 7, 3, 3, 3, 16, 24, FeatureMap.RELU, true, DType.F32,
                mixed, 15));
        out.add(new BatchCase("N=1000 decode", 1000, 3, 3, 3, 16, 24, FeatureMap.IDENTITY, false, DType.BF16, decode,
                16));
        out.add(new BatchCase("N=1000 mixed GQA elu1 normalized", 1000, 3, 1, 1, 8, 12, FeatureMap.ELU1, true,
                DType.BF16, mixed, 17));
        out.add(new BatchCase("N=7 mixed Dv odd", 7, 3, 3, 3, 33, 37, FeatureMap.IDENTITY, false, DType.F32, mixed, 18));
        out.add(new BatchCase("N=7 Dk odd, at most 3 tokens, elu1 normalized", 7, 3, 3, 3, 33, 37, FeatureMap.ELU1, true,
                DType.F16, new int[] {1, 3}, 19));
        out.add(new BatchCase("N=7 Dk=130 relu normalized, 130 tokens", 7, 3, 3, 3, 130, 70, FeatureMap.RELU, true,
                DType.F32, new int[] {1, 130}, 20));
        // decode at the benchmark's shape, and decode with Dk, Dv odd and normalized (on the GPU: the
        // staged kernels, 8 rows a thread, and their scalar path)
        out.add(new BatchCase("N=64 decode H=8 Dk=Dv=128", 64, 8, 8, 8, 128, 128, FeatureMap.IDENTITY, false, DType.BF16,
                decode, 21));
        out.add(new BatchCase("N=300 decode Dk, Dv odd, elu1 normalized", 300, 3, 3, 3, 33, 37, FeatureMap.ELU1, true,
                DType.F32, decode, 22));
        // a table run's shape, normalized: four warps of the GPU kernel hold z (Dk > 64), whose denominators
        // once summed in an order that varied from run to run (BatchChecks.repeatable)
        out.add(new BatchCase("N=64 mixed H=8 Dk=Dv=128 elu1 normalized", 64, 8, 8, 8, 128, 128, FeatureMap.ELU1, true,
                DType.BF16, mixed, 23));
        return out;
    }

    @Override
    public String toString() {
        return name + " [H=" + heads() + " (" + hq + "," + hk + "," + hv + "), Dk=" + dk + ", Dv=" + dv + ", " + phi.key()
                + (normalized ? ", normalized" : "") + ", " + dtype + "]";
    }
}
