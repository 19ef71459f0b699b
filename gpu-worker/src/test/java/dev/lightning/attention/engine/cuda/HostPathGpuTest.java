package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.Inputs;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.ByteBuffer;
import java.nio.ReadOnlyBufferException;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The host path of the GPU backend: tensors in registered host memory ({@code hostTensor}, copied
 * by the device with no staging), heap tensors staged on one thread (the first pipeline) and on
 * several. The same launches on the same data give the same bits (the kernels use no atomics), so
 * every way must give the one-thread staged path's bytes exactly, on the pipeline and the serial
 * path; that path itself is held to the float64 recurrence. Skipped, with a message saying why,
 * where no GPU is usable. Run with assertions on: the allocator's leak check then fails close()
 * on a registration left behind.
 */
@NeedsGpu
class HostPathGpuTest {
    private static CudaBackend gpu;
    /** The staging threads and the host stages of {@link #gpu}. */
    private static BenchHooks hooks;

    @BeforeAll
    static void open() {
        gpu = new CudaBackend(0, true, Backends.DEFAULT_GPU_MEMORY);
        hooks = new BenchHooks(gpu);
        System.out.println("HostPathGpuTest on " + gpu.device() + ", assertions "
                + (DeviceAllocator.LEAKS_ARE_ERRORS ? "on" : "off"));
    }

    @AfterAll
    static void close() {
        if (gpu != null) {
            gpu.close();
        }
    }

    /**
     * One forward() and advance() result: o's bytes, the final state, advance()'s state, and
     * forward()'s host stages in ms (staging in, unstaging out, waiting) and slices.
     */
    private record Result(byte[] o, float[] state, float[] advanced, double[] stages, int slices) {
        void assertSame(Result expect, String who) {
            assertArrayEquals(expect.o, o, who + ": o bytes");
            assertArrayEquals(expect.state, state, who + ": final state");
            assertArrayEquals(expect.advanced, advanced, who + ": advance() state");
        }
    }

    /** A registered copy of {@code x} from {@code backend}. */
    private static TokenTensor registered(CudaBackend backend, TokenTensor x, List<TokenTensor> made) {
        TokenTensor r = backend.hostTensor(x.dtype(), x.tokens(), x.heads(), x.dim());
        r.putBytes(x.bytes());
        made.add(r);
        return r;
    }

    private static Result run(CudaBackend b, AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                              LightningState s0, TokenTensor o) {
        poison(o);
        LightningState s = b.forward(spec, q, k, v, s0, o);
        double[] stages = new BenchHooks(b).lastHostStagesMillis();
        int slices = b.lastSlices; // before advance(), whose k and v alone make fewer slices
        LightningState a = b.advance(spec, k, v, s0);
        return new Result(bytes(o), s.kv(), a.kv(), stages, slices);
    }

    @ParameterizedTest(name = "{0}, slices of {1} tokens (0: automatic)")
    @CsvSource({"F32, 128", "F32, 0", "BF16, 192", "BF16, 0", "F16, 64", "F16, 0"})
    void registeredAndStagedTensorsGiveTheOneThreadPathsBytes(DType dtype, int sliceTokens) {
        SplittableRandom rnd = new SplittableRandom(41L * sliceTokens + dtype.ordinal());
        int t = 1000;
        int h = 3;
        int dk = 96;
        int dv = 136;
        AttentionSpec spec = new AttentionSpec(h, dk, dv, Slopes.minimax(h), 0.75, 64);
        TokenTensor q = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor k = Inputs.random(rnd, dtype, t, h, dk);
        TokenTensor v = Inputs.random(rnd, dtype, t, h, dv);
        LightningState s0 = Inputs.randomState(rnd, h, dk, dv);
        List<TokenTensor> made = new ArrayList<>();
        TokenTensor rq = registered(gpu, q, made);
        TokenTensor rk = registered(gpu, k, made);
        TokenTensor rv = registered(gpu, v, made);
        TokenTensor ro = gpu.hostTensor(dtype, t, h, dv);
        made.add(ro);
        try {
            gpu.forcedSliceTokens = sliceTokens;
            for (boolean overlap : new boolean[] {true, false}) {
                gpu.overlapCopies = overlap;
                hooks.copyThreads(1);
                Result expect = run(gpu, spec, q, k, v, s0, TokenTensor.allocate(dtype, t, h, dv));
                if (overlap) {
                    TokenTensor ref = TokenTensor.allocate(DType.F32, t, h, dv);
                    LightningState refState = new RecurrentReference().forward(spec, q, k, v, s0, ref);
                    float[] got = TokenTensor.wrap(dtype, t, h, dv, ByteBuffer.wrap(expect.o)).toFloats();
                    double eo = Inputs.relativeError(got, ref.toFloats());
                    double es = Inputs.relativeError(expect.state, refState.kv());
                    assertTrue(eo <= GpuBackendTest.outputLimit(dtype), dtype + " output relative error " + eo);
                    assertTrue(es <= 1e-5, dtype + " state relative error " + es);
                }
                String who = dtype + " slices of " + sliceTokens + " overlap=" + overlap;
                hooks.copyThreads(4);
                run(gpu, spec, q, k, v, s0, TokenTensor.allocate(dtype, t, h, dv)).assertSame(expect, who + ", 4 threads");
                Result all = run(gpu, spec, rq, rk, rv, s0, ro);
                all.assertSame(expect, who + ", all registered");
                assertEquals(0.0, all.stages[0], who + ": registered inputs were staged");
                assertEquals(0.0, all.stages[1], who + ": a registered o was unstaged");
                run(gpu, spec, rq, rk, rv, s0, TokenTensor.allocate(dtype, t, h, dv))
                        .assertSame(expect, who + ", registered inputs, heap o");
                run(gpu, spec, q, rk, v, s0, ro).assertSame(expect, who + ", registered k and o, heap q and v");
                // views of registered blocks at an offset: a window inside larger tensors
                TokenTensor big = gpu.hostTensor(dtype, t + 70, h, dk);
                made.add(big);
                big.slice(70, t).putBytes(q.bytes());
                run(gpu, spec, big.slice(70, t), rk, rv, s0, ro).assertSame(expect, who + ", q at a block offset");
            }
        } finally {
            gpu.forcedSliceTokens = 0;
            gpu.overlapCopies = true;
            hooks.copyThreads(HostCopies.defaultThreads());
            made.forEach(gpu::releaseHostTensor);
        }
    }

    /**
     * A window the automatic plan cuts (H = 8, D = 128, BF16, T = 20,000: 160 MB moved, four or
     * more slices of some 30 MB each, so the staging copies do run on several threads): 1, 4 and 8
     * staging threads and registered tensors give the same bytes, and agree with the CPU backend.
     */
    @Test
    void largeWindowsOnEveryPathGiveTheSameBytes() {
        SplittableRandom rnd = new SplittableRandom(2026);
        int t = 20_000;
        int h = 8;
        int d = 128;
        AttentionSpec spec = new AttentionSpec(h, d, d, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = Inputs.random(rnd, DType.BF16, t, h, d);
        TokenTensor k = Inputs.random(rnd, DType.BF16, t, h, d);
        TokenTensor v = Inputs.random(rnd, DType.BF16, t, h, d);
        LightningState s0 = Inputs.randomState(rnd, h, d, d);
        List<TokenTensor> made = new ArrayList<>();
        try {
            hooks.copyThreads(1);
            Result expect = run(gpu, spec, q, k, v, s0, TokenTensor.allocate(DType.BF16, t, h, d));
            assertTrue(expect.slices >= 4, expect.slices + " slices");
            TokenTensor cpu = TokenTensor.allocate(DType.F32, t, h, d);
            LightningState cpuState = new CpuBackend().forward(spec, q, k, v, s0, cpu);
            float[] got = TokenTensor.wrap(DType.BF16, t, h, d, ByteBuffer.wrap(expect.o)).toFloats();
            assertTrue(Inputs.relativeError(got, cpu.toFloats()) <= 6e-3, "output against the CPU backend");
            assertTrue(Inputs.relativeError(expect.state, cpuState.kv()) <= 1e-5, "state against the CPU backend");
            for (int threads : new int[] {4, 8}) {
                hooks.copyThreads(threads);
                Result r = run(gpu, spec, q, k, v, s0, TokenTensor.allocate(DType.BF16, t, h, d));
                r.assertSame(expect, threads + " staging threads");
                assertTrue(r.stages[0] > 0 && r.stages[1] > 0, "heap inputs and o are staged");
            }
            TokenTensor ro = gpu.hostTensor(DType.BF16, t, h, d);
            made.add(ro);
            Result r = run(gpu, spec, registered(gpu, q, made), registered(gpu, k, made), registered(gpu, v, made), s0,
                    ro);
            r.assertSame(expect, "registered");
            double[] stages = r.stages;
            assertEquals(0.0, stages[0], "registered inputs were staged");
            assertEquals(0.0, stages[1], "a registered o was unstaged");
        } finally {
            hooks.copyThreads(HostCopies.defaultThreads());
            made.forEach(gpu::releaseHostTensor);
        }
    }

    /**
     * A window that fails while its later slices are in flight (o read-only: the host cannot
     * unstage it, on several threads), with heap and with registered inputs, leaves the next
     * window's bytes exact.
     */
    @Test
    void aFailedWindowThenAGoodOne() {
        SplittableRandom rnd = new SplittableRandom(99);
        int t = 20_000;
        int h = 8;
        int d = 128;
        AttentionSpec spec = new AttentionSpec(h, d, d, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = Inputs.random(rnd, DType.BF16, t, h, d);
        TokenTensor k = Inputs.random(rnd, DType.BF16, t, h, d);
        TokenTensor v = Inputs.random(rnd, DType.BF16, t, h, d);
        LightningState s0 = Inputs.randomState(rnd, h, d, d);
        TokenTensor readOnly = TokenTensor.wrap(DType.BF16, t, h, d,
                ByteBuffer.allocate(t * h * d * 2).asReadOnlyBuffer());
        List<TokenTensor> made = new ArrayList<>();
        try {
            hooks.copyThreads(1);
            Result expect = run(gpu, spec, q, k, v, s0, TokenTensor.allocate(DType.BF16, t, h, d));
            hooks.copyThreads(8);
            TokenTensor rq = registered(gpu, q, made);
            TokenTensor rk = registered(gpu, k, made);
            TokenTensor rv = registered(gpu, v, made);
            TokenTensor ro = gpu.hostTensor(DType.BF16, t, h, d);
            made.add(ro);
            assertThrows(ReadOnlyBufferException.class, () -> gpu.forward(spec, q, k, v, s0, readOnly));
            run(gpu, spec, rq, rk, rv, s0, ro).assertSame(expect, "registered, after a failed heap window");
            assertThrows(ReadOnlyBufferException.class, () -> gpu.forward(spec, rq, rk, rv, s0, readOnly));
            run(gpu, spec, q, k, v, s0, TokenTensor.allocate(DType.BF16, t, h, d))
                    .assertSame(expect, "heap, after a failed registered window");
        } finally {
            hooks.copyThreads(HostCopies.defaultThreads());
            made.forEach(gpu::releaseHostTensor);
        }
    }

    /** F32 o from BF16 inputs (the widened path) with registered tensors: the heap path's bytes. */
    @Test
    void aWiderOutputInRegisteredMemory() {
        SplittableRandom rnd = new SplittableRandom(5);
        int t = 1000;
        int h = 3;
        AttentionSpec spec = new AttentionSpec(h, 96, 136, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = Inputs.random(rnd, DType.BF16, t, h, 96);
        TokenTensor k = Inputs.random(rnd, DType.BF16, t, h, 96);
        TokenTensor v = Inputs.random(rnd, DType.BF16, t, h, 136);
        LightningState s0 = Inputs.randomState(rnd, h, 96, 136);
        List<TokenTensor> made = new ArrayList<>();
        try {
            gpu.forcedSliceTokens = 192;
            Result expect = run(gpu, spec, q, k, v, s0, TokenTensor.allocate(DType.F32, t, h, 136));
            TokenTensor ro = gpu.hostTensor(DType.F32, t, h, 136);
            made.add(ro);
            run(gpu, spec, registered(gpu, q, made), registered(gpu, k, made), registered(gpu, v, made), s0, ro)
                    .assertSame(expect, "BF16 in, F32 out, registered");
        } finally {
            gpu.forcedSliceTokens = 0;
            made.forEach(gpu::releaseHostTensor);
        }
    }

    /**
     * A backend closed with its host tensors still registered releases them (no leak: with
     * assertions on, the allocator's check would fail close()); their bytes stay valid, and
     * another backend (to which they are plain direct buffers, staged) gives the same results.
     */
    @Test
    void closeReleasesRegistrationsAndTheBytesStayValid() {
        SplittableRandom rnd = new SplittableRandom(8);
        int t = 1000;
        int h = 3;
        AttentionSpec spec = new AttentionSpec(h, 64, 72, Slopes.minimax(h), 1.0, 64);
        TokenTensor q = Inputs.random(rnd, DType.BF16, t, h, 64);
        TokenTensor k = Inputs.random(rnd, DType.BF16, t, h, 64);
        TokenTensor v = Inputs.random(rnd, DType.BF16, t, h, 72);
        LightningState s0 = Inputs.randomState(rnd, h, 64, 72);
        List<TokenTensor> made = new ArrayList<>();
        CudaBackend own = new CudaBackend(0, true, Backends.DEFAULT_GPU_MEMORY);
        TokenTensor rq;
        TokenTensor rk;
        TokenTensor rv;
        TokenTensor ro;
        Result first;
        try {
            rq = registered(own, q, made);
            rk = registered(own, k, made);
            rv = registered(own, v, made);
            ro = own.hostTensor(DType.BF16, t, h, 72);
            own.releaseHostTensor(registered(own, q, made)); // released early: fine too
            first = run(own, spec, rq, rk, rv, s0, ro);
        } finally {
            own.close(); // with assertions on, a registration left open would fail here
        }
        assertThrows(IllegalStateException.class, () -> own.hostTensor(DType.BF16, 1, 1, 1));
        assertArrayEquals(first.o, bytes(ro), "o is still readable after close");
        Result other = run(gpu, spec, rq, rk, rv, s0, ro);
        other.assertSame(first, "the closed backend's tensors on another backend");
        assertTrue(other.stages[0] > 0, "another backend's tensors are staged");
        run(gpu, spec, q, k, v, s0, TokenTensor.allocate(DType.BF16, t, h, 72)).assertSame(first, "heap tensors");
    }

    private static byte[] bytes(TokenTensor t) {
        ByteBuffer b = t.bytes();
        byte[] out = new byte[b.remaining()];
        b.get(out);
        return out;
    }

    private static void poison(TokenTensor o) {
        ByteBuffer w = o.writableBytes();
        float nan = Float.NaN;
        for (int i = 0; i < o.tokens() * o.heads() * o.dim(); i++) {
            o.dtype().put(w, i * o.dtype().bytes(), nan);
        }
    }
}
