package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

class CpuFallbackTest {
    /** A GPU that is always out of memory. */
    static final class FullGpu implements AttentionBackend {
        @Override
        public String name() {
            return "gpu";
        }

        @Override
        public String device() {
            return "cuda:0";
        }

        @Override
        public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
            throw new DeviceMemoryException("out of memory", null);
        }

        @Override
        public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o,
                                      dev.lightning.attention.engine.Checkpoints checkpoints) {
            throw new DeviceMemoryException("out of memory", null);
        }
    }

    private static String attempt(AttentionBackend b) {
        b.advance(null, null, null, null);
        return b.name();
    }

    @Test
    void outOfMemoryGoesToTheCpuOnlyWhenConfigured() throws Exception {
        assertEquals("cpu", CpuFallback.run(new FullGpu(), true, false, "piece", b -> b instanceof FullGpu ? attempt(b) : b.name()));
        // wrapped, as PieceWork wraps backend failures with the file and tokens
        assertEquals("cpu", CpuFallback.run(new FullGpu(), true, false, "piece", b -> {
            if (b instanceof FullGpu) {
                throw new IllegalStateException("f.safetensors tokens [0, 64)", new DeviceMemoryException("oom", null));
            }
            return b.name();
        }));
        assertThrows(DeviceMemoryException.class, () -> CpuFallback.run(new FullGpu(), false, false, "piece", CpuFallbackTest::attempt));
        assertThrows(IllegalArgumentException.class, () -> CpuFallback.run(new FullGpu(), true, false, "piece", b -> {
            throw new IllegalArgumentException("not a memory problem");
        }));
    }

    /** Under --backend auto a piece no GPU kernel fits goes to the CPU; under gpu, or for another GPU failure, it fails. */
    @Test
    void aShapeNoGpuKernelFitsGoesToTheCpuUnderAuto() throws Exception {
        CpuFallback.Work<String> unfit = b -> {
            if (b instanceof FullGpu) {
                throw new IllegalStateException("f.safetensors tokens [0, 64)",
                        dev.lightning.attention.engine.GpuUnusableException.noKernelFor("cuda:0 gives a block at most 101376"));
            }
            return b.name();
        };
        assertEquals("cpu", CpuFallback.run(new FullGpu(), false, true, "piece", unfit));
        assertThrows(IllegalStateException.class, () -> CpuFallback.run(new FullGpu(), true, false, "piece", unfit));
        assertThrows(dev.lightning.attention.engine.GpuUnusableException.class,
                () -> CpuFallback.run(new FullGpu(), false, true, "piece", b -> {
                    throw new dev.lightning.attention.engine.GpuUnusableException("cuda:0 broke earlier", null);
                }));
        assertThrows(DeviceMemoryException.class, () -> CpuFallback.run(new FullGpu(), false, true, "piece",
                CpuFallbackTest::attempt), "out of memory stays --gpu-oom's");
    }

    /**
     * A task computing window by window: a shape no kernel fits goes to the CPU under auto and stays there (the
     * GPU asked once for it, another shape still asked), out of memory is asked again at every window; the
     * task's one CPU backend is closed with it.
     */
    @Test
    void windowsOfAShapeNoKernelFitsStayOnTheCpu() {
        AttentionSpec wide = new AttentionSpec(3, 160, 24, dev.lightning.attention.engine.Slopes.minimax(3), 1.0, 64);
        AttentionSpec narrow = new AttentionSpec(3, 64, 24, dev.lightning.attention.engine.Slopes.minimax(3), 1.0, 64);
        int[] asked = new int[3];
        AttentionBackend gpu = new FullGpu();
        try (CpuFallback.Windows w = new CpuFallback.Windows(true, true)) {
            for (int i = 0; i < 4; i++) {
                assertEquals("cpu", w.run(gpu, wide, dev.lightning.attention.tensor.DType.BF16, "wide", b -> {
                    if (b == gpu) {
                        asked[0]++;
                        throw dev.lightning.attention.engine.GpuUnusableException.noKernelFor("no kernel for Dk = 160");
                    }
                    return b.name();
                }));
                assertEquals("cpu", w.run(gpu, wide, dev.lightning.attention.tensor.DType.F32, "wide f32", b -> {
                    if (b == gpu) {
                        asked[1]++;
                        throw dev.lightning.attention.engine.GpuUnusableException.noKernelFor("no kernel for Dk = 160");
                    }
                    return b.name();
                }));
                assertEquals("cpu", w.run(gpu, narrow, dev.lightning.attention.tensor.DType.BF16, "narrow", b -> {
                    if (b == gpu) {
                        asked[2]++;
                        throw new DeviceMemoryException("out of memory", null);
                    }
                    return b.name();
                }));
            }
        }
        assertEquals(1, asked[0], "a shape no kernel fits: the GPU asked once");
        assertEquals(1, asked[1], "the same spec in another dtype is another shape, asked once too");
        assertEquals(4, asked[2], "out of memory: asked again at every window");
        try (CpuFallback.Windows strict = new CpuFallback.Windows(false, false)) {
            assertThrows(dev.lightning.attention.engine.GpuUnusableException.class,
                    () -> strict.run(gpu, wide, dev.lightning.attention.tensor.DType.BF16, "wide", b -> {
                        throw dev.lightning.attention.engine.GpuUnusableException.noKernelFor("no kernel");
                    }));
        }
    }
}
