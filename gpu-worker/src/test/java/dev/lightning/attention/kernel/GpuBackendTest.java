package dev.lightning.attention.kernel;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The GPU backends (tensor-core and float32 kernels) on the CPU backend's test cases, against the
 * float64 recurrence. Outputs are written in the input's dtype, as the job writes them, and held to
 * the job's limits for that dtype (F32 1e-5, F16 2e-3, BF16 6e-3); states, float32 everywhere, to
 * 1e-5. Skipped, with a message saying why, where no GPU is usable.
 */
class GpuBackendTest {
    private static CudaBackend tensorCores;
    /** The tensor-core backend kept to the portable (mma.sync) kernels, also on a Hopper GPU. */
    private static CudaBackend portable;
    private static CudaBackend generic;

    @BeforeAll
    static void open() {
        String reason = CudaBackend.unavailableReason();
        if (reason != null) {
            System.out.println("GpuBackendTest SKIPPED: " + reason);
        }
        Assumptions.assumeTrue(reason == null, "no usable GPU: " + reason);
        tensorCores = new CudaBackend(0, true, Backends.DEFAULT_GPU_MEMORY);
        portable = new CudaBackend(0, true, Backends.DEFAULT_GPU_MEMORY);
        portable.hopperKernels = false;
        generic = new CudaBackend(0, false, Backends.DEFAULT_GPU_MEMORY);
        System.out.println("GpuBackendTest on " + tensorCores.device());
    }

    @AfterAll
    static void close() {
        if (tensorCores != null) {
            tensorCores.close();
            portable.close();
            generic.close();
        }
    }

    static double outputLimit(DType dtype) {
        return dtype == DType.F32 ? 1e-5 : dtype == DType.F16 ? 2e-3 : 6e-3;
    }

    static java.util.stream.Stream<org.junit.jupiter.params.provider.Arguments> cases() {
        return BackendAgreementTest.cases();
    }

    @ParameterizedTest(name = "T={0} H={1} Dk={2} Dv={3} slopes={4} initial={5} {6}")
    @MethodSource("cases")
    void gpuAgreesWithTheRecurrence(int t, int h, int dk, int dv, String slopeSet, boolean initial, DType dtype,
                                    long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        AttentionSpec spec = new AttentionSpec(h, dk, dv, BackendAgreementTest.slopes(slopeSet, h), 0.75, 64);
        TokenTensor q = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor k = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor v = Inputs.random(rnd, dtype, t, h, dv);
        LightningState s0 = initial ? Inputs.randomState(rnd, h, dk, dv) : LightningState.zeros(h, dk, dv);
        assertAgreesWithTheRecurrence(spec, q, k, v, s0, dtype, tensorCores, generic);
    }

    /** forward() and advance() of each backend against the float64 recurrence, at the job's limits. */
    private static void assertAgreesWithTheRecurrence(AttentionSpec spec, TokenTensor q, TokenTensor k,
                                                      TokenTensor v, LightningState s0, DType dtype,
                                                      CudaBackend... backends) {
        TokenTensor expect = TokenTensor.allocate(DType.F32, q.tokens(), spec.heads(), spec.dv());
        LightningState expectState = new RecurrentReference().forward(spec, q, k, v, s0, expect);
        for (CudaBackend backend : backends) {
            TokenTensor o = TokenTensor.allocate(dtype, q.tokens(), spec.heads(), spec.dv());
            poison(o);
            LightningState s = backend.forward(spec, q, k, v, s0, o);
            double eo = Inputs.relativeError(o.toFloats(), expect.toFloats());
            double es = Inputs.relativeError(s.kv(), expectState.kv());
            double ea = Inputs.relativeError(backend.advance(spec, k, v, s0).kv(), expectState.kv());
            String who = backend.name() + " " + dtype;
            assertTrue(eo <= outputLimit(dtype), who + " output relative error " + eo);
            assertTrue(es <= 1e-5, who + " final state relative error " + es);
            assertTrue(ea <= 1e-5, who + " advance() state relative error " + ea);
        }
    }

    /**
     * Every tensor-core family at its edges: on a Hopper GPU the wgmma kernels (Dk <= 128, Dv > 64),
     * and everywhere the portable ones: the narrow kernels (load warps) up to Dk = 128, the wide ones
     * above; Dv not a multiple of a CTA's columns (64 portable, 128 Hopper).
     */
    @ParameterizedTest(name = "T={0} Dk={1} Dv={2} {3}")
    @org.junit.jupiter.params.provider.CsvSource({
            "63, 128, 128, BF16", "1000, 128, 72, BF16", "1000, 128, 136, F16",
            "63, 200, 136, BF16", "1000, 200, 136, BF16", "1000, 256, 40, F16"})
    void narrowAndWideKernelsAgreeWithTheRecurrence(int t, int dk, int dv, DType dtype) {
        SplittableRandom rnd = new SplittableRandom(31L * t + dk + dv);
        int h = 3;
        AttentionSpec spec = new AttentionSpec(h, dk, dv, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor k = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor v = Inputs.random(rnd, dtype, t, h, dv);
        LightningState s0 = Inputs.randomState(rnd, h, dk, dv);
        assertAgreesWithTheRecurrence(spec, q, k, v, s0, dtype, tensorCores, portable);
    }

    /**
     * Segment plans, on each family. With 132 SMs (H100, H200): T = 20000, H = 2 is cut into 66
     * short segments by either family; H = 50, Dv = 48 and (Hopper kernels) H = 50, Dv = 128 into two,
     * with pass 1 cut finer than pass 2 (every second sub-segment starts a segment); H = 33, Dv = 100
     * into four on the Hopper kernels and none on the portable ones (66 CTAs fill half the GPU).
     */
    @ParameterizedTest(name = "T={0} H={1} Dk={2} Dv={3}")
    @org.junit.jupiter.params.provider.CsvSource({"20000, 2, 128, 128", "3000, 50, 128, 128", "3000, 50, 64, 48",
            "4100, 33, 96, 100"})
    void segmentPlansAgreeWithTheRecurrence(int t, int h, int dk, int dv) {
        SplittableRandom rnd = new SplittableRandom(7L * t + h);
        AttentionSpec spec = new AttentionSpec(h, dk, dv, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = Inputs.random(rnd, DType.BF16, t, h, dk);
        TokenTensor k = Inputs.random(rnd, DType.BF16, t, h, dk);
        TokenTensor v = Inputs.random(rnd, DType.BF16, t, h, dv);
        LightningState s0 = Inputs.randomState(rnd, h, dk, dv);
        assertAgreesWithTheRecurrence(spec, q, k, v, s0, DType.BF16, tensorCores, portable);
    }

    /** Long windows split into segments (and a tiny budget forcing slices) give the one-segment answer. */
    @Test
    void segmentsAndSlicesAgree() {
        SplittableRandom rnd = new SplittableRandom(99);
        int t = 20_000;
        AttentionSpec spec = new AttentionSpec(2, 64, 48, new double[] {1e-6, 0.05}, 1.0, 64);
        TokenTensor q = Inputs.random(rnd, DType.BF16, t, 2, 64);
        TokenTensor k = Inputs.random(rnd, DType.BF16, t, 2, 64);
        TokenTensor v = Inputs.random(rnd, DType.BF16, t, 2, 48);
        LightningState s0 = Inputs.randomState(rnd, 2, 64, 48);
        TokenTensor expect = TokenTensor.allocate(DType.F32, t, 2, 48);
        LightningState expectState = new CpuBackend().forward(spec, q, k, v, s0, expect);
        try (CudaBackend sliced = new CudaBackend(0, true, 4L << 20)) {
            for (CudaBackend b : new CudaBackend[] {tensorCores, generic, sliced}) {
                TokenTensor o = TokenTensor.allocate(DType.BF16, t, 2, 48);
                poison(o);
                LightningState s = b.forward(spec, q, k, v, s0, o);
                assertTrue(Inputs.relativeError(o.toFloats(), expect.toFloats()) <= 6e-3, b.name());
                assertTrue(Inputs.relativeError(s.kv(), expectState.kv()) <= 1e-5, b.name() + " state");
            }
        }
    }

    private static void poison(TokenTensor o) {
        for (int t = 0; t < o.tokens(); t++) {
            for (int h = 0; h < o.heads(); h++) {
                for (int d = 0; d < o.dim(); d++) {
                    o.set(t, h, d, Float.NaN);
                }
            }
        }
    }
}
