package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.GpuUnusableException;
import dev.lightning.attention.engine.Inputs;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.VariantCase;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.SplittableRandom;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The portable kernels on GPUs whose blocks get less shared memory than a Hopper's 227 KB: an A100
 * (compute capability 8.0, 163 KB) and the 99 KB GPUs (8.6, 8.9, 12.0: A10, L4, L40S, RTX). No such
 * GPU is lent to this project, so these run on the Hopper GPU at hand with the backend's shared-memory
 * limit lowered to theirs (WindowKernels.sharedLimit) and the Hopper kernels off: the same kernels
 * with the bytes and stage counts those GPUs give them, against the float64 recurrence; and the shapes
 * no kernel fits there are refused before any launch, saying so. Skipped, with a message, without a GPU.
 */
@NeedsGpu
class SharedLimitGpuTest {
    /** The limits of an A100 and of the 99 KB GPUs (the CSV rows below spell them out: 166912, 101376). */
    static final int A100 = Kernels.A100_SHARED_BYTES;
    static final int SMALL = Kernels.SMALL_SHARED_BYTES;

    private static CudaBackend limitedTo(int limit) {
        CudaBackend b = new CudaBackend(0, true, Backends.DEFAULT_GPU_MEMORY);
        b.kernels.hopperKernels = false;
        b.kernels.sharedLimit = limit;
        return b;
    }

    /**
     * Each shape on the kernel family and block bytes the limit leaves it, against the float64
     * recurrence (forward and advance, GpuBackendTest's limits): the mma.sync kernels with fewer
     * stages (two where 163 KB holds no third at Dk = 128); on a 99 KB GPU from Dk = 81 to 128 their
     * "_q1" forward (one Q tile beside two stages of K and V; Dk and Dv not multiples of 8 at Dk = 127,
     * one token, one partial chunk); or the float32 kernels where neither fits (BF16 input at Dk = 200
     * on an A100), in 16 value columns a block where 32 do not fit (their "_c16" entries: Dk = 136 on a
     * 99 KB GPU, 240 on an A100; Dv not a multiple of 16).
     */
    @ParameterizedTest(name = "limit={0} T={1} H={2} Dk={3} Dv={4} {5} -> {6}")
    @CsvSource({
            "166912, 1000, 3, 128, 128, BF16, lightning_forward_tc_bf16",
            "166912, 63, 5, 128, 72, F16, lightning_forward_tc_f16",
            "166912, 1000, 3, 160, 136, BF16, lightning_forward_tc_bf16_wide",
            "166912, 1000, 3, 200, 136, BF16, lightning_forward_generic_bf16",
            "166912, 1000, 3, 200, 40, F32, lightning_forward_generic_f32",
            "101376, 1000, 3, 64, 64, BF16, lightning_forward_tc_bf16_n64",
            "101376, 1000, 3, 80, 48, F16, lightning_forward_tc_f16",
            "101376, 1000, 3, 96, 100, BF16, lightning_forward_tc_bf16_q1",
            "101376, 1000, 3, 128, 128, BF16, lightning_forward_tc_bf16_q1",
            "101376, 63, 5, 120, 200, F16, lightning_forward_tc_f16_q1",
            "101376, 1000, 3, 127, 70, BF16, lightning_forward_tc_bf16_q1",
            "101376, 1, 2, 112, 40, F16, lightning_forward_tc_f16_q1",
            "101376, 1, 3, 100, 33, F32, lightning_forward_generic_f32",
            "101376, 1000, 3, 136, 100, BF16, lightning_forward_generic_bf16_c16",
            "101376, 63, 5, 136, 40, F32, lightning_forward_generic_f32_c16",
            "166912, 1000, 3, 240, 72, F16, lightning_forward_generic_f16_c16"})
    void eachShapeRunsOnWhatTheLimitLeavesIt(int limit, int t, int h, int dk, int dv, DType dtype, String kernel) {
        try (CudaBackend b = limitedTo(limit)) {
            AttentionSpec spec = new AttentionSpec(h, dk, dv, Slopes.minimax(h), 0.8, 64);
            Kernels.Choice choice = b.kernels.kernelsFor(spec, dtype);
            assertEquals(kernel, choice.forward());
            assertTrue(choice.smemForward() <= limit && choice.smemStates() <= limit, choice.toString());
            SplittableRandom rnd = new SplittableRandom(17L * limit + 31L * dk + dv);
            TokenTensor q = Inputs.random(rnd, dtype, t, h, dk);
            TokenTensor k = Inputs.random(rnd, dtype, t, h, dk);
            TokenTensor v = Inputs.random(rnd, dtype, t, h, dv);
            LightningState s0 = Inputs.randomState(rnd, h, dk, dv);
            GpuBackendTest.assertAgreesWithTheRecurrence(spec, q, k, v, s0, dtype, b);
        }
    }

    /** The normalized elu1 forward (the carve-up's largest fixed part, sZ) in two stages on an A100's bytes. */
    @Test
    void theNormalizedForwardRunsInTwoStages() {
        try (CudaBackend b = limitedTo(A100)) {
            int h = 3;
            AttentionSpec spec = new AttentionSpec(h, 128, 128, Slopes.minimax(h), 0.5, 64)
                    .withFeatureMap(FeatureMap.ELU1).withNormalization(1e-3);
            Kernels.Choice choice = b.kernels.kernelsFor(spec, DType.BF16);
            assertEquals("lightning_forward_tc_bf16_norm", choice.forward());
            assertEquals(A100, choice.smemForward(), "the A100's bytes: two stages at Dk = 128");
            SplittableRandom rnd = new SplittableRandom(5);
            TokenTensor q = Inputs.random(rnd, DType.BF16, 1000, h, 128);
            TokenTensor k = Inputs.random(rnd, DType.BF16, 1000, h, 128);
            TokenTensor v = Inputs.random(rnd, DType.BF16, 1000, h, 128);
            try (CudaBackend full = new CudaBackend(0, true, Backends.DEFAULT_GPU_MEMORY)) {
                full.kernels.hopperKernels = false;
                LightningState s0 = LightningState.zeros(spec);
                TokenTensor o = TokenTensor.allocate(DType.F32, 1000, h, 128);
                TokenTensor expect = TokenTensor.allocate(DType.F32, 1000, h, 128);
                LightningState s = b.forward(spec, q, k, v, s0, o);
                LightningState e = full.forward(spec, q, k, v, s0, expect);
                // the same kernel with more stages: the stages change when a chunk's copies land, not what is
                // computed, so the outputs and states agree bit for bit
                assertEquals(0, java.util.Arrays.compare(Inputs.bits(o.toFloats()), Inputs.bits(expect.toFloats())),
                        "two stages and three write the same o");
                assertEquals(0, java.util.Arrays.compare(Inputs.bits(s.kv()), Inputs.bits(e.kv())), "and S");
            }
        }
    }

    /**
     * Every variant at Dk = 128 under 99 KB, on the kernels that take it there: the mma.sync "_q1" forward
     * (BF16, F16) and the float32 kernels' "_c16" entries (F32). Grouped heads (Hq 6, Hk 2, Hv 3), elu1,
     * normalization, an initial state and checkpoints, Dv = 80 (two or five column tiles, one of which writes z),
     * on a window at sequence position 64, against the float64 recurrence; identity normalized; relu with slope 8.
     */
    @ParameterizedTest(name = "{0}")
    @MethodSource("smallGpuVariants")
    void everyVariantRunsWithinA99KbBlock(VariantCase c) {
        try (CudaBackend b = limitedTo(SMALL)) {
            String type = Kernels.type(c.dtype());
            String norm = c.normalized() ? "_norm" : "";
            assertEquals(c.dtype() == DType.F32 ? "lightning_forward_generic_f32_c16" : "lightning_forward_tc_" + type
                    + norm + "_q1", b.kernels.kernelsFor(c.spec(), c.dtype()).forward());
            GpuBackendTest.assertVariantAgreesWithTheRecurrence(c, b);
        }
    }

    static Stream<VariantCase> smallGpuVariants() {
        return Stream.of(
                new VariantCase(1000, 6, 2, 3, 128, 80, "minimax", FeatureMap.ELU1, true, true, DType.BF16, 192, 9301),
                new VariantCase(257, 3, 3, 3, 128, 128, "8", FeatureMap.IDENTITY, true, false, DType.F16, 64, 9302),
                new VariantCase(1000, 2, 2, 6, 100, 72, "8", FeatureMap.RELU, false, true, DType.BF16, 128, 9304),
                new VariantCase(1000, 6, 2, 3, 128, 80, "minimax", FeatureMap.ELU1, true, true, DType.F32, 192, 9303));
    }

    /**
     * The "_q1" forward (a 99 KB GPU's bytes) and the narrow forward (the full limit) differ in where Q waits and in
     * which warps load it, not in the arithmetic of any element, so under one forced plan (four segments: incoming
     * states) they write the same bits: o and the final state (and advance()'s, the one states kernel in other stage
     * counts); with the identity, elu1 and relu, normalized or not, on tokens that end in a partial chunk.
     */
    @ParameterizedTest(name = "T={0} H={1} Dk={2} Dv={3} {4} {5} normalized={6}")
    @CsvSource({"1000, 3, 128, 72, BF16, IDENTITY, false", "257, 2, 120, 200, F16, ELU1, false",
            "130, 5, 96, 64, BF16, RELU, false", "1000, 3, 128, 128, BF16, ELU1, true",
            "63, 2, 100, 40, F16, IDENTITY, true"})
    void theQ1ForwardWritesTheNarrowForwardsBits(int t, int h, int dk, int dv, DType dtype, FeatureMap phi,
                                                boolean normalized) {
        try (CudaBackend small = limitedTo(SMALL); CudaBackend full = limitedTo(Kernels.HOPPER_SHARED_BYTES)) {
            AttentionSpec plain = new AttentionSpec(h, dk, dv, Slopes.minimax(h), 0.7, 64).withFeatureMap(phi);
            AttentionSpec spec = normalized ? plain.withNormalization(1e-3) : plain;
            String family = Kernels.type(dtype) + (normalized ? "_norm" : "");
            assertEquals("lightning_forward_tc_" + family + "_q1", small.kernels.kernelsFor(spec, dtype).forward());
            assertEquals("lightning_forward_tc_" + family, full.kernels.kernelsFor(spec, dtype).forward());
            assertSameBits(spec, RandomInputs.random(spec, dtype, t, t * 11L + dk), small, full);
        }
    }

    /**
     * The float32 kernels' two widths differ in their thread tiles, not in the arithmetic of any element, so under
     * one forced plan the "_c16" entries (a 99 KB GPU's bytes) and the 32-column ones (the float32 backend at the
     * full limit) write the same bits: o, the final state and advance()'s. Dv not a multiple of 16 or 32.
     */
    @ParameterizedTest(name = "T={0} H={1} Dk={2} Dv={3} {4}")
    @CsvSource({"1000, 3, 132, 72, BF16", "257, 2, 120, 40, F32", "64, 5, 136, 8, F16"})
    void sixteenAndThirtyTwoColumnsWriteTheSameBits(int t, int h, int dk, int dv, DType dtype) {
        try (CudaBackend narrow = limitedTo(SMALL);
             CudaBackend wide = new CudaBackend(0, false, Backends.DEFAULT_GPU_MEMORY)) {
            AttentionSpec spec = new AttentionSpec(h, dk, dv, Slopes.minimax(h), 0.7, 64);
            String type = Kernels.type(dtype);
            assertEquals("lightning_forward_generic_" + type + "_c16", narrow.kernels.kernelsFor(spec, dtype).forward());
            assertEquals("lightning_forward_generic_" + type, wide.kernels.kernelsFor(spec, dtype).forward());
            RandomInputs in = RandomInputs.random(spec, dtype, t, t * 7L + dk);
            assertSameBits(spec, in, narrow, wide);
            GpuBackendTest.assertAgreesWithTheRecurrence(spec, in.q(), in.k(), in.v(), in.s0(), in.dtype(), narrow);
        }
    }

    /** q, k, v of {@code dtype} and an initial state (with a normalizer where the spec has one), random from a seed. */
    record RandomInputs(TokenTensor q, TokenTensor k, TokenTensor v, LightningState s0, DType dtype) {
        static RandomInputs random(AttentionSpec spec, DType dtype, int t, long seed) {
            SplittableRandom rnd = new SplittableRandom(seed);
            int h = spec.heads();
            TokenTensor q = Inputs.random(rnd, dtype, t, h, spec.dk());
            TokenTensor k = Inputs.random(rnd, dtype, t, h, spec.dk());
            TokenTensor v = Inputs.random(rnd, dtype, t, h, spec.dv());
            return new RandomInputs(q, k, v, Inputs.randomState(rnd, spec), dtype);
        }
    }

    /**
     * Runs {@code in} on both backends under one forced plan (four segments: incoming states) and asserts they write
     * the same bits: o, the final state and advance()'s (S, and z where the spec normalizes).
     */
    private static void assertSameBits(AttentionSpec spec, RandomInputs in, CudaBackend a, CudaBackend b) {
        float[][] got = new float[2][];
        float[][] state = new float[2][];
        float[][] advanced = new float[2][];
        float[][] z = new float[2][];
        float[][] advancedZ = new float[2][];
        CudaBackend[] both = {a, b};
        for (int i = 0; i < 2; i++) {
            both[i].kernels.perSegment.forcedPlan = n -> SegmentPlan.cut(n, 4, 1);
            TokenTensor o = TokenTensor.allocate(in.dtype(), in.q().tokens(), spec.heads(), spec.dv());
            LightningState after = both[i].forward(spec, in.q(), in.k(), in.v(), in.s0(), o);
            LightningState advancedState = both[i].advance(spec, in.k(), in.v(), in.s0());
            state[i] = after.kv();
            got[i] = o.toFloats();
            advanced[i] = advancedState.kv();
            z[i] = spec.normalized() ? after.normalizer() : new float[0];
            advancedZ[i] = spec.normalized() ? advancedState.normalizer() : new float[0];
        }
        assertEquals(0, java.util.Arrays.compare(Inputs.bits(got[0]), Inputs.bits(got[1])), "o");
        assertEquals(0, java.util.Arrays.compare(Inputs.bits(state[0]), Inputs.bits(state[1])), "S");
        assertEquals(0, java.util.Arrays.compare(Inputs.bits(advanced[0]), Inputs.bits(advanced[1])), "advance() S");
        assertEquals(0, java.util.Arrays.compare(Inputs.bits(z[0]), Inputs.bits(z[1])), "z");
        assertEquals(0, java.util.Arrays.compare(Inputs.bits(advancedZ[0]), Inputs.bits(advancedZ[1])), "advance() z");
    }

    /**
     * A shape no GPU kernel fits is refused before a launch, naming the bytes and what to do, as the kind of
     * refusal CpuFallback sends to the CPU under --backend auto (its tests and TablesTest's take it from there).
     */
    @ParameterizedTest(name = "limit={0} Dk={1} {2}")
    @CsvSource({"101376, 144, BF16", "101376, 138, F32", "166912, 256, BF16"})
    void aShapeNoKernelFitsIsRefusedWithTheWayOut(int limit, int dk, DType dtype) {
        try (CudaBackend b = limitedTo(limit)) {
            int h = 2;
            AttentionSpec spec = new AttentionSpec(h, dk, 64, Slopes.minimax(h), 1.0, 64);
            SplittableRandom rnd = new SplittableRandom(3);
            TokenTensor q = Inputs.random(rnd, dtype, 100, h, dk);
            TokenTensor k = Inputs.random(rnd, dtype, 100, h, dk);
            TokenTensor v = Inputs.random(rnd, dtype, 100, h, 64);
            TokenTensor o = TokenTensor.allocate(dtype, 100, h, 64);
            RuntimeException thrown = assertThrows(RuntimeException.class,
                    () -> b.forward(spec, q, k, v, LightningState.zeros(h, dk, 64), o));
            Throwable e = thrown;
            while (e != null && !(e instanceof GpuUnusableException)) {
                e = e.getCause();
            }
            assertTrue(e != null, "a GpuUnusableException, so that the job says 'no usable GPU': " + thrown);
            assertTrue(((GpuUnusableException) e).noKernel(), "of the no-kernel kind, which --backend auto sends to the "
                    + "CPU (CpuFallback): " + e);
            assertTrue(e.getMessage().contains("at most " + limit + " bytes of shared memory")
                    && e.getMessage().contains("Dk = " + dk) && e.getMessage().contains("--backend cpu"), e.getMessage());
            // the backend is still usable for a shape that fits
            AttentionSpec small = new AttentionSpec(h, 64, 64, Slopes.minimax(h), 1.0, 64);
            TokenTensor q2 = Inputs.random(rnd, DType.BF16, 100, h, 64);
            TokenTensor k2 = Inputs.random(rnd, DType.BF16, 100, h, 64);
            TokenTensor v2 = Inputs.random(rnd, DType.BF16, 100, h, 64);
            GpuBackendTest.assertAgreesWithTheRecurrence(small, q2, k2, v2, LightningState.zeros(h, 64, 64), DType.BF16, b);
        }
    }
}
