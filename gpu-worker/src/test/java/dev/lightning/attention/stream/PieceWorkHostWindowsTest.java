package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.cuda.CudaBackend;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The executor's path in a task's window buffers from the backend's host tensors, held byte for
 * byte against the heap path (byte arrays read by a stream, the path before host tensors) over
 * whole split sequences: awkward sizes, every dtype, o in another dtype, several files and pieces
 * through one set of buffers, as a task runs them. On the CPU the host tensors are direct buffers
 * of a test backend that counts them, and the CPU backend's own (off-heap blocks kept by the JVM);
 * on the GPU they are the driver-registered ones, where one is usable (the GPU machine's run).
 */
@Tag("gpu")
class PieceWorkHostWindowsTest {
    @TempDir
    Path tmp;

    /** The CPU backend with off-heap host tensors that say which block they lie in, counted. */
    static final class DirectCpu extends WrappedBackend {
        final Map<Object, Long> live = new IdentityHashMap<>();
        int handedOut;
        int released;

        DirectCpu() {
            super(new CpuBackend());
        }

        @Override
        public String name() {
            return "cpu-direct";
        }

        @Override
        public TokenTensor hostTensor(DType dtype, int tokens, int heads, int dim) {
            long bytes = (long) tokens * heads * dim * dtype.bytes();
            Object block = new Object();
            live.put(block, bytes);
            handedOut++;
            return TokenTensor.wrap(dtype, tokens, heads, dim, ByteBuffer.allocateDirect((int) bytes), block, 0);
        }

        @Override
        public void releaseHostTensor(TokenTensor t) {
            if (live.remove(t.memory()) != null) {
                released++;
            }
        }

        long liveBytes() {
            return live.values().stream().mapToLong(Long::longValue).sum();
        }
    }

    /** One input file with q [T, Hq, Dk], k [T, Hk, Dk], v [T, Hv, Dv] of random values in (-1, 1). */
    private Path write(String name, DType dtype, int t, int hq, int hk, int hv, int dk, int dv, long seed)
            throws IOException {
        SplittableRandom rnd = new SplittableRandom(seed);
        Path file = tmp.resolve(name);
        SafetensorsFile.write(file, List.of(
                SafetensorsFile.Tensor.of("q", dtype, new long[] {t, hq, dk}, uniform(rnd, t * hq * dk)),
                SafetensorsFile.Tensor.of("k", dtype, new long[] {t, hk, dk}, uniform(rnd, t * hk * dk)),
                SafetensorsFile.Tensor.of("v", dtype, new long[] {t, hv, dv}, uniform(rnd, t * hv * dv))));
        return file;
    }

    /** What one path wrote for a sequence: o of every piece in order, and the final state. */
    private record Run(byte[] o, byte[] state) {
    }

    /**
     * Pass 1 on every piece but the last, the float32 combine, pass 2 on every piece: the
     * executor's path with {@code windows} ({@code heap} reads through a stream into arrays, the
     * other through the file's channel) and o written to a file stream.
     */
    private Run run(AttentionBackend backend, WindowBuffers windows, Path file, int pieces, long windowBytes,
                    DType out, boolean heap) throws IOException {
        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r");
             FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            RangeReader in = heap ? (position, buf, off, len) -> {
                raf.seek(position);
                raf.readFully(buf, off, len);
            } : RangeReader.of(channel);
            SequenceFile f = SequenceFile.describe(file.toString(), file.getFileName().toString(), raf.length(), in,
                    Slopes::minimax);
            PieceWork work = new PieceWork(0.5, 64, windowBytes, out == null ? f.dtype : out).reusing(windows);
            AttentionSpec spec = work.spec(f);
            List<Piece> ps = new ArrayList<>();
            long chunks = (f.tokens + 63) / 64;
            for (int i = 0; i < pieces; i++) {
                long start = Math.min(f.tokens, chunks * i / pieces * 64);
                long end = i == pieces - 1 ? f.tokens : Math.min(f.tokens, chunks * (i + 1) / pieces * 64);
                ps.add(new Piece(0, i, pieces, start, end));
            }
            LightningState incoming = PieceWork.initialState(in, f, 0);
            Path o = tmp.resolve(file.getFileName() + (heap ? ".heap" : ".host") + ".o");
            LightningState last = incoming;
            try (OutputStream stream = new FileOutputStream(o.toFile())) {
                for (Piece p : ps) {
                    last = work.outputs(backend, in, f, p, incoming, stream);
                    LightningState local = work.localState(backend, in, f, p);
                    incoming = incoming.then(spec, p.tokens(), local);
                }
            }
            return new Run(Files.readAllBytes(o), last.toBytes());
        }
    }

    /** The files a task runs in a row: awkward sizes, grouped heads, Dk != Dv, every dtype. */
    private List<Object[]> cases() throws IOException {
        List<Object[]> c = new ArrayList<>();
        c.add(new Object[] {write("t1-bf16.st", DType.BF16, 1, 3, 3, 3, 40, 24, 1), 1, DType.BF16});
        c.add(new Object[] {write("t63-f16.st", DType.F16, 63, 3, 3, 3, 16, 8, 2), 1, DType.F16});
        c.add(new Object[] {write("t1000-f32.st", DType.F32, 1000, 6, 2, 3, 40, 24, 3), 3, DType.F32});
        c.add(new Object[] {write("t1000-bf16-f32o.st", DType.BF16, 1000, 5, 5, 5, 32, 48, 4), 4, DType.F32});
        c.add(new Object[] {write("t700-f16-bf16o.st", DType.F16, 700, 3, 3, 3, 40, 24, 5), 2, DType.BF16});
        c.add(new Object[] {write("t63-bf16-again.st", DType.BF16, 63, 3, 3, 3, 40, 24, 6), 1, DType.BF16});
        return c;
    }

    @Test
    void hostWindowsWriteTheHeapPathsBytes() throws IOException {
        long windowBytes = 40 * 1024; // a few chunks a window: many windows a piece
        List<Object[]> cases = cases();
        try (DirectCpu direct = new DirectCpu(); CpuBackend cpu = new CpuBackend()) {
            WindowBuffers task = WindowBuffers.of(direct); // one task: every file and piece
            long largest = 0;
            for (Object[] c : cases) {
                Path file = (Path) c[0];
                Run heap = run(cpu, WindowBuffers.heap(), file, (int) c[1], windowBytes, (DType) c[2], true);
                Run host = run(direct, task, file, (int) c[1], windowBytes, (DType) c[2], false);
                assertArrayEquals(heap.o, host.o, file + ": o");
                assertArrayEquals(heap.state, host.state, file + ": final state");
                Run cpuOwn = run(cpu, WindowBuffers.of(cpu), file, (int) c[1], windowBytes, (DType) c[2], false);
                assertArrayEquals(heap.o, cpuOwn.o, file + ": o on the CPU backend's own (off-heap) host tensors");
                largest = Math.max(largest, windowOf(file, windowBytes, (DType) c[2]));
                assertEquals(1, direct.live.size(), "one block a task");
                assertEquals(direct.liveBytes(), task.bytes());
                assertTrue(task.bytes() <= largest, "window memory " + task.bytes() + " within the largest window "
                        + largest + " (page-aligned)");
            }
            // the block only grows (never per piece or window); each replaced block released at once
            assertTrue(direct.handedOut <= cases.size(), "host tensors taken " + direct.handedOut);
            assertEquals(direct.handedOut - 1, direct.released, "every replaced block released");
            int before = direct.handedOut;
            Object[] again = cases.get(2);
            run(direct, task, (Path) again[0], (int) again[1], windowBytes, (DType) again[2], false);
            assertEquals(before, direct.handedOut, "a file no larger than the blocks takes no new host tensor");
        }
    }

    /**
     * A caller that passes no window buffers (tests, benchmarks) gets a block per call and gives it
     * back when the call returns, failed or not: nothing piles up until the backend closes.
     */
    @Test
    void callsWithoutTaskBuffersGiveTheirBlockBack() throws IOException {
        Path file = write("own.st", DType.BF16, 300, 3, 3, 3, 16, 8, 11);
        try (DirectCpu direct = new DirectCpu(); CpuBackend cpu = new CpuBackend();
             FileChannel c = FileChannel.open(file, StandardOpenOption.READ)) {
            RangeReader in = RangeReader.of(c);
            SequenceFile f = SequenceFile.describe(file.toString(), "own.st", c.size(), in, Slopes::minimax);
            PieceWork work = new PieceWork(0.5, 64, 16 * 1024, f.dtype);
            Piece whole = new Piece(0, 0, 1, 0, f.tokens);
            ByteArrayOutputStream viaDirect = new ByteArrayOutputStream();
            for (int r = 0; r < 3; r++) {
                work.localState(direct, in, f, whole);
                viaDirect.reset();
                work.outputs(direct, in, f, whole, LightningState.zeros(work.spec(f)), viaDirect);
                assertEquals(0, direct.live.size(), "blocks left after call " + r);
            }
            assertEquals(6, direct.handedOut);
            ByteArrayOutputStream viaHeap = new ByteArrayOutputStream();
            work.reusing(WindowBuffers.heap()).outputs(cpu, in, f, whole, LightningState.zeros(work.spec(f)), viaHeap);
            assertArrayEquals(viaHeap.toByteArray(), viaDirect.toByteArray());
            RangeReader truncated = (position, buf, off, len) -> {
                throw new java.io.EOFException("cut");
            };
            assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                    () -> work.outputs(direct, truncated, f, whole, LightningState.zeros(work.spec(f)),
                            new ByteArrayOutputStream()));
            assertEquals(0, direct.live.size(), "a failed call gives its block back too");
        }
    }

    /** The same non-finite input and output failures, word for word, on both paths. */
    @Test
    void nonFiniteFailuresSayTheSameOnBothPaths() throws IOException {
        int t = 700;
        SplittableRandom rnd = new SplittableRandom(9);
        float[] q = uniform(rnd, t * 2 * 8);
        float[] k = uniform(rnd, t * 2 * 8);
        float[] v = uniform(rnd, t * 2 * 4);
        k[(333 * 2 + 1) * 8 + 5] = Float.NaN;
        k[(600 * 2) * 8] = Float.POSITIVE_INFINITY;
        Path bad = tmp.resolve("nan.st");
        SafetensorsFile.write(bad, List.of(SafetensorsFile.Tensor.of("q", DType.BF16, new long[] {t, 2, 8}, q),
                SafetensorsFile.Tensor.of("k", DType.BF16, new long[] {t, 2, 8}, k),
                SafetensorsFile.Tensor.of("v", DType.BF16, new long[] {t, 2, 4}, v)));
        float[] big = uniform(rnd, t * 2 * 4);
        for (int i = 0; i < big.length; i++) {
            big[i] *= 60000; // o about sum of v over ~1/(1-lambda) tokens: past F16's 65504
        }
        Path overflow = tmp.resolve("overflow.st");
        SafetensorsFile.write(overflow, List.of(SafetensorsFile.Tensor.of("q", DType.F32, new long[] {t, 2, 8}, q),
                SafetensorsFile.Tensor.of("k", DType.F32, new long[] {t, 2, 8}, uniform(rnd, t * 2 * 8)),
                SafetensorsFile.Tensor.of("v", DType.F32, new long[] {t, 2, 4}, big)));
        try (DirectCpu direct = new DirectCpu(); CpuBackend cpu = new CpuBackend()) {
            WindowBuffers task = WindowBuffers.of(direct);
            NonFiniteInputException heapIn = assertThrows(NonFiniteInputException.class,
                    () -> run(cpu, WindowBuffers.heap(), bad, 2, 8 * 1024, null, true));
            NonFiniteInputException hostIn = assertThrows(NonFiniteInputException.class,
                    () -> run(direct, task, bad, 2, 8 * 1024, null, false));
            assertEquals(heapIn.getMessage(), hostIn.getMessage());
            assertTrue(heapIn.getMessage().contains("k[333, 1, 5]"), heapIn.getMessage());
            NonFiniteOutputException heapOut = assertThrows(NonFiniteOutputException.class,
                    () -> run(cpu, WindowBuffers.heap(), overflow, 1, 8 * 1024, DType.F16, true));
            NonFiniteOutputException hostOut = assertThrows(NonFiniteOutputException.class,
                    () -> run(direct, task, overflow, 1, 8 * 1024, DType.F16, false));
            assertEquals(heapOut.getMessage(), hostOut.getMessage());
            assertTrue(heapOut.getMessage().contains("o["), heapOut.getMessage());
        }
    }

    /**
     * On the GPU: registered host tensors (one set for the task) against heap windows, byte for
     * byte, on the tensor-core and float32 kernels; the backend's close() unregisters them under
     * the allocator's leak check (with -ea).
     */
    @Test
    @NeedsGpu
    void gpuRegisteredWindowsWriteTheHeapPathsBytes() throws IOException {
        List<Object[]> cases = cases();
        for (String kind : new String[] {"gpu", "gpu-generic"}) {
            try (AttentionBackend gpu = dev.lightning.attention.engine.Backends.create(kind)) {
                WindowBuffers task = WindowBuffers.of(gpu);
                for (Object[] c : cases) {
                    Path file = (Path) c[0];
                    // windows of whole 64-token chunks the GPU kernels take (the chunk size here is 64)
                    Run heap = run(gpu, WindowBuffers.heap(), file, (int) c[1], 256 * 1024, (DType) c[2], true);
                    Run host = run(gpu, task, file, (int) c[1], 256 * 1024, (DType) c[2], false);
                    assertArrayEquals(heap.o, host.o, kind + " " + file + ": o");
                    assertArrayEquals(heap.state, host.state, kind + " " + file + ": final state");
                }
                assertTrue(task.bytes() > 0 && task.bytes() <= 256 * 1024 + 4 * WindowBuffers.ALIGN,
                        "window memory " + task.bytes());
            }
        }
    }

    /** Bytes of one window of {@code file} (q, k, v, o, each rounded up to a page), as PieceWork sizes it. */
    private static long windowOf(Path file, long windowBytes, DType out) throws IOException {
        try (FileChannel c = FileChannel.open(file, StandardOpenOption.READ)) {
            SequenceFile f = SequenceFile.describe(file.toString(), "x", c.size(), RangeReader.of(c), Slopes::minimax);
            DType o = out == null ? f.dtype : out;
            int n = new PieceWork(0.5, 64, windowBytes, o).windowTokens(f, new Piece(0, 0, 1, 0, f.tokens));
            AttentionSpec s = f.spec(0.5, 64);
            long pages = 0;
            for (long b : new long[] {(long) n * s.headsQ() * s.dk() * f.dtype.bytes(),
                    (long) n * s.headsK() * s.dk() * f.dtype.bytes(), (long) n * s.headsV() * s.dv() * f.dtype.bytes(),
                    (long) n * s.heads() * s.dv() * o.bytes()}) {
                pages += (b + WindowBuffers.ALIGN - 1) / WindowBuffers.ALIGN;
            }
            return pages * WindowBuffers.ALIGN;
        }
    }

    private static float[] uniform(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }
}
