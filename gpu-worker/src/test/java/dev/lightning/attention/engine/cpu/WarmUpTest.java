package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The CPU backend's JIT warm-up ({@link WarmUp}): a long call runs it once per JVM and kind, a
 * concurrent caller of the same kind waits for it instead of starting another, a short call does
 * not run it, and the calls' results are the same bytes as a backend's that never warms up. Each
 * test uses head widths no other test of this JVM asks for, so that its kind is fresh.
 */
class WarmUpTest {
    private static TokenTensor random(DType type, int tokens, int heads, int dim, Random r) {
        float[] x = new float[tokens * heads * dim];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return TokenTensor.of(type, tokens, heads, dim, x);
    }

    private static float[] bytesAsFloats(TokenTensor o) {
        java.nio.ByteBuffer b = o.bytes();
        float[] f = new float[b.remaining() / 2];
        for (int i = 0; i < f.length; i++) {
            f[i] = b.getShort(b.position() + 2 * i); // raw 16-bit words (bf16 o): exact comparison
        }
        return f;
    }

    @Test
    void aLongCallWarmsUpOnceAndComputesTheSameBytes() throws Exception {
        // Dk = 72, Dv = 56, H = 3 (grouped k: Hk = 1), T = 11,111 (not whole chunks): 11,111 * 3 * 72 * 56
        // multiply-adds of state, over WarmUp.FROM_WORK
        int tokens = 11_111;
        AttentionSpec spec = new AttentionSpec(3, 72, 56, new double[] {0.01, 0.2, 1.5}, 0.125, 64)
                .withHeads(3, 1, 3);
        assertTrue(WarmUp.worth(spec, tokens));
        Random r = new Random(91);
        TokenTensor q = random(DType.F32, tokens, 3, 72, r);
        TokenTensor k = random(DType.F32, tokens, 1, 72, r);
        TokenTensor v = random(DType.F32, tokens, 3, 56, r);
        LightningState zero = LightningState.zeros(spec);
        Kernel kernel = Kernel.best();

        // the backend that never warms up: the expected bytes
        CpuBackend plain = new CpuBackend(kernel, false);
        LightningState expectedLocal = plain.advance(spec, k, v, zero);
        TokenTensor expectedO = TokenTensor.allocate(DType.F32, tokens, 3, 56);
        LightningState expectedFinal = plain.forward(spec, q, k, v, expectedLocal, expectedO, Checkpoints.none());

        int before = WarmUp.runs();
        CpuBackend warming = new CpuBackend(kernel, true);
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            // two task threads start the same kind at once: one warm-up between them
            Future<LightningState> a = pool.submit(() -> warming.advance(spec, k, v, zero));
            Future<LightningState> b = pool.submit(() -> warming.advance(spec, k, v, zero));
            assertArrayEquals(expectedLocal.data(), a.get().data());
            assertArrayEquals(expectedLocal.data(), b.get().data());
        } finally {
            pool.shutdown();
        }
        assertEquals(before + 1, WarmUp.runs(), "one warm-up for two concurrent calls of a kind");
        TokenTensor o = TokenTensor.allocate(DType.F32, tokens, 3, 56);
        LightningState fin = warming.forward(spec, q, k, v, expectedLocal, o, Checkpoints.none());
        assertEquals(before + 1, WarmUp.runs(), "pass 2 of the same kind: warmed up already");
        assertEquals(expectedO.bytes(), o.bytes(), "o, byte for byte");
        assertArrayEquals(expectedFinal.data(), fin.data());
    }

    @Test
    void everyVariantWarmsUpOnItsOwnAndKeepsItsBytes() {
        // normalized elu1 in bfloat16, Dk = 88, Dv = 40: a kind of its own (the warm-up's backends
        // compute it in its own scratch); T = 30,000 for 30,000 * 2 * 88 * 40 over FROM_WORK
        int tokens = 30_000;
        AttentionSpec spec = new AttentionSpec(2, 88, 40, new double[] {0.05, 3.0}, 0.3, 64)
                .withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5);
        assertTrue(WarmUp.worth(spec, tokens));
        Random r = new Random(17);
        TokenTensor q = random(DType.BF16, tokens, 2, 88, r);
        TokenTensor k = random(DType.BF16, tokens, 2, 88, r);
        TokenTensor v = random(DType.BF16, tokens, 2, 40, r);
        LightningState zero = LightningState.zeros(spec);
        Kernel kernel = Kernel.best();
        TokenTensor expected = TokenTensor.allocate(DType.BF16, tokens, 2, 40);
        LightningState expectedState = new CpuBackend(kernel, false).forward(spec, q, k, v, zero, expected,
                Checkpoints.none());
        int before = WarmUp.runs();
        TokenTensor o = TokenTensor.allocate(DType.BF16, tokens, 2, 40);
        LightningState state = new CpuBackend(kernel, true).forward(spec, q, k, v, zero, o, Checkpoints.none());
        assertEquals(before + 1, WarmUp.runs());
        assertArrayEquals(bytesAsFloats(expected), bytesAsFloats(o));
        assertArrayEquals(expectedState.data(), state.data());
        assertArrayEquals(expectedState.normalizerData(), state.normalizerData());
        // o in float32 over bfloat16 input (--output-dtype f32): the same kind, no second warm-up
        TokenTensor expected32 = TokenTensor.allocate(DType.F32, tokens, 2, 40);
        new CpuBackend(kernel, false).forward(spec, q, k, v, zero, expected32, Checkpoints.none());
        TokenTensor o32 = TokenTensor.allocate(DType.F32, tokens, 2, 40);
        new CpuBackend(kernel, true).forward(spec, q, k, v, zero, o32, Checkpoints.none());
        assertEquals(before + 1, WarmUp.runs(), "o's type is not part of the kind");
        assertEquals(expected32.bytes(), o32.bytes());
    }

    @Test
    void aShortCallDoesNotWarmUp() {
        // Dk = 24, Dv = 104, H = 5: T = 1000 is 12.5M multiply-adds of state, under FROM_WORK
        AttentionSpec spec = new AttentionSpec(5, 24, 104, new double[] {0.1, 0.2, 0.3, 0.4, 0.5}, 1.0, 64);
        assertFalse(WarmUp.worth(spec, 1000));
        Random r = new Random(5);
        int before = WarmUp.runs();
        new CpuBackend(Kernel.best(), true).advance(spec, random(DType.F32, 1000, 5, 24, r),
                random(DType.F32, 1000, 5, 104, r), LightningState.zeros(spec));
        assertEquals(before, WarmUp.runs());
    }
}
