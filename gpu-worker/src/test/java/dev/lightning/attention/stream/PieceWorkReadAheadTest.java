package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Reading one window ahead ({@link PieceWork#readAhead}) against one window after the other
 * at half the byte budget (read-ahead's two windows share it): the same o bytes and states over whole split sequences of awkward sizes, on heap windows and
 * on a task's off-heap blocks (both blocks reused by every piece); the same non-finite failures
 * word for word, with the same o written before them; and no block left behind when the
 * computation, or a read running ahead of it, fails.
 */
class PieceWorkReadAheadTest {
    @TempDir
    Path tmp;

    private Path write(String name, DType dtype, int t, int hq, int hk, int hv, int dk, int dv, long seed)
            throws IOException {
        SplittableRandom rnd = new SplittableRandom(seed);
        return write(name, dtype, t, hq, hk, hv, dk, dv, uniform(rnd, t * hq * dk), uniform(rnd, t * hk * dk),
                uniform(rnd, t * hv * dv));
    }

    private Path write(String name, DType dtype, int t, int hq, int hk, int hv, int dk, int dv, float[] q, float[] k,
                       float[] v) throws IOException {
        Path file = tmp.resolve(name);
        SafetensorsFile.write(file, List.of(SafetensorsFile.Tensor.of("q", dtype, new long[] {t, hq, dk}, q),
                SafetensorsFile.Tensor.of("k", dtype, new long[] {t, hk, dk}, k),
                SafetensorsFile.Tensor.of("v", dtype, new long[] {t, hv, dv}, v)));
        return file;
    }

    /** o of every piece in order, the local states of pass 1 and the final state. */
    private record Run(byte[] o, byte[] locals, byte[] state) {
    }

    /** Pass 1 and pass 2 over {@code pieces} pieces of {@code file}, as a task runs them in {@code windows}. */
    private static Run run(AttentionBackend backend, WindowBuffers windows, boolean readAhead, Path file, int pieces,
                           long windowBytes, ByteArrayOutputStream o) throws IOException {
        try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
            RangeReader in = RangeReader.of(channel);
            SequenceFile f = SequenceFile.describe(file.toString(), file.getFileName().toString(), channel.size(), in,
                    Slopes::minimax);
            // read-ahead's windows have half the budget each: in turn, the same windows take half of it
            PieceWork work = new PieceWork(0.5, 64, readAhead ? windowBytes : windowBytes / 2, f.dtype).reusing(windows)
                    .readAhead(readAhead);
            AttentionSpec spec = work.spec(f);
            long chunks = (f.tokens + 63) / 64;
            LightningState incoming = PieceWork.initialState(in, f, 0);
            LightningState last = incoming;
            ByteArrayOutputStream locals = new ByteArrayOutputStream();
            for (int i = 0; i < pieces; i++) {
                long start = Math.min(f.tokens, chunks * i / pieces * 64);
                long end = i == pieces - 1 ? f.tokens : Math.min(f.tokens, chunks * (i + 1) / pieces * 64);
                Piece p = new Piece(0, i, pieces, start, end);
                last = work.outputs(backend, in, f, p, incoming, o);
                LightningState local = work.localState(backend, in, f, p);
                locals.write(local.toBytes());
                incoming = incoming.then(spec, p.tokens(), local);
            }
            return new Run(o.toByteArray(), locals.toByteArray(), last.toBytes());
        }
    }

    @Test
    void readingAheadWritesTheSameBytes() throws IOException {
        long windowBytes = 24 * 1024; // a chunk or two a window: many windows a piece, odd counts too
        List<Object[]> cases = new ArrayList<>();
        cases.add(new Object[] {write("t1.st", DType.BF16, 1, 3, 3, 3, 40, 24, 1), 1});
        cases.add(new Object[] {write("t63.st", DType.F16, 63, 3, 3, 3, 16, 8, 2), 1});
        cases.add(new Object[] {write("t1000.st", DType.F32, 1000, 6, 2, 3, 40, 24, 3), 3});
        cases.add(new Object[] {write("t1000-bf16.st", DType.BF16, 1000, 5, 5, 5, 32, 48, 4), 4});
        cases.add(new Object[] {write("t700.st", DType.F16, 700, 3, 3, 3, 40, 24, 5), 2});
        // a window larger than either block so far but smaller than both together (147,456 bytes against
        // 102,400 each), then one larger than all: both of the task's blocks must grow, each on its own
        cases.add(new Object[] {write("t1000-mid.st", DType.BF16, 1000, 6, 6, 6, 48, 48, 7), 2});
        cases.add(new Object[] {write("t1000-wide.st", DType.F32, 1000, 8, 8, 8, 64, 64, 6), 2});
        try (PieceWorkHostWindowsTest.DirectCpu direct = new PieceWorkHostWindowsTest.DirectCpu();
             CpuBackend cpu = new CpuBackend()) {
            WindowBuffers task = WindowBuffers.of(direct); // one task: every file and piece, both blocks
            for (Object[] c : cases) {
                Path file = (Path) c[0];
                int pieces = (int) c[1];
                Run plain = run(cpu, WindowBuffers.heap(), false, file, pieces, windowBytes, new ByteArrayOutputStream());
                Run heapAhead = run(cpu, WindowBuffers.heap(), true, file, pieces, windowBytes,
                        new ByteArrayOutputStream());
                Run hostAhead = run(direct, task, true, file, pieces, windowBytes, new ByteArrayOutputStream());
                for (Run r : new Run[] {heapAhead, hostAhead}) {
                    assertArrayEquals(plain.o, r.o, file + ": o");
                    assertArrayEquals(plain.locals, r.locals, file + ": local states");
                    assertArrayEquals(plain.state, r.state, file + ": final state");
                }
                assertTrue(plain.o.length > 0 && !allZero(plain.o), file + ": o was computed");
            }
            // a task holds two blocks at most, both counted, however many pieces and windows it runs,
            // each as large as the widest file's window (64 tokens of 8 KiB of q, k, v and o)
            assertTrue(direct.live.size() <= 2, "blocks held " + direct.live.size());
            assertTrue(task.bytes() >= 2 * 64 * 8192, "window memory " + task.bytes());
            assertEquals(direct.liveBytes(), task.bytes());
            task.release();
            assertEquals(0, direct.live.size(), "release() gives both blocks back");
        }
    }

    /**
     * On the GPU: a task's registered blocks with read-ahead against heap windows read in turn,
     * byte for byte, over several files and pieces; then a second task's backend, which takes the
     * first one's blocks (kept registered, their bytes the first task's) and must give the same.
     */
    @Test
    @NeedsGpu
    void gpuReadingAheadWritesTheSameBytes() throws IOException {
        long windowBytes = 256 * 1024; // whole 64-token chunks, several windows a piece
        Path[] files = {write("g1000.st", DType.BF16, 1000, 6, 6, 6, 64, 64, 21),
                write("g3000.st", DType.BF16, 3000, 5, 5, 5, 64, 32, 22)};
        for (int task = 0; task < 2; task++) {
            try (AttentionBackend gpu = dev.lightning.attention.engine.Backends.create("gpu")) {
                WindowBuffers windows = WindowBuffers.of(gpu);
                for (Path file : files) {
                    Run plain = run(gpu, WindowBuffers.heap(), false, file, 3, windowBytes, new ByteArrayOutputStream());
                    Run ahead = run(gpu, windows, true, file, 3, windowBytes, new ByteArrayOutputStream());
                    assertArrayEquals(plain.o, ahead.o, "task " + task + " " + file + ": o");
                    assertArrayEquals(plain.locals, ahead.locals, "task " + task + " " + file + ": local states");
                    assertArrayEquals(plain.state, ahead.state, "task " + task + " " + file + ": final state");
                }
            }
        }
    }

    /** The same failures, word for word, and the same o written before them, ahead or not. */
    @Test
    void nonFiniteInputsFailTheSameWay() throws IOException {
        int t = 900;
        SplittableRandom rnd = new SplittableRandom(9);
        float[] q = uniform(rnd, t * 2 * 8);
        float[] k = uniform(rnd, t * 2 * 8);
        float[] v = uniform(rnd, t * 2 * 4);
        v[(520 * 2 + 1) * 4 + 3] = Float.NaN; // in a later window than the first
        q[(800 * 2) * 8 + 1] = Float.NEGATIVE_INFINITY;
        Path bad = write("nan.st", DType.BF16, t, 2, 2, 2, 8, 4, q, k, v);
        try (PieceWorkHostWindowsTest.DirectCpu direct = new PieceWorkHostWindowsTest.DirectCpu()) {
            ByteArrayOutputStream plainO = new ByteArrayOutputStream();
            ByteArrayOutputStream aheadO = new ByteArrayOutputStream();
            NonFiniteInputException plain = assertThrows(NonFiniteInputException.class,
                    () -> run(direct, WindowBuffers.of(direct), false, bad, 1, 8 * 1024, plainO));
            WindowBuffers task = WindowBuffers.of(direct);
            NonFiniteInputException ahead = assertThrows(NonFiniteInputException.class,
                    () -> run(direct, task, true, bad, 1, 8 * 1024, aheadO));
            assertEquals(plain.getMessage(), ahead.getMessage());
            assertTrue(plain.getMessage().contains("v[520, 1, 3]") && plain.getMessage().contains(" 2 NaN/Inf"),
                    plain.getMessage());
            assertTrue(plainO.size() > 0, "windows before the bad one were written");
            assertArrayEquals(plainO.toByteArray(), aheadO.toByteArray(), "o written before the failure");
        }
    }

    /**
     * The first NaN/Inf named is that of the earliest token, whichever of q, k, v holds it and however long the
     * windows are: a window scanned q, then k, then v, and named the first bad value of the first tensor that had
     * one, so a whole-piece window named q[100] where windows of 64 tokens named v[3].
     */
    @Test
    void theFirstNonFiniteIsTheEarliestTokenWhateverTheWindows() throws IOException {
        int t = 128;
        SplittableRandom rnd = new SplittableRandom(21);
        float[] q = uniform(rnd, t * 2 * 8);
        float[] k = uniform(rnd, t * 2 * 8);
        float[] v = uniform(rnd, t * 2 * 4);
        q[(100 * 2) * 8] = Float.NaN;
        k[(90 * 2 + 1) * 8 + 5] = Float.POSITIVE_INFINITY;
        v[(3 * 2 + 1) * 4 + 2] = Float.NaN;
        Path bad = write("first.st", DType.F32, t, 2, 2, 2, 8, 4, q, k, v);
        try (FileChannel c = FileChannel.open(bad, StandardOpenOption.READ); CpuBackend cpu = new CpuBackend()) {
            RangeReader in = RangeReader.of(c);
            SequenceFile f = SequenceFile.describe(bad.toString(), "first.st", c.size(), in, Slopes::minimax);
            Piece whole = new Piece(0, 0, 1, 0, t);
            for (long windowBytes : new long[] {64 * 192, 1 << 20}) { // 192 bytes a token: windows of 64, 128 tokens
                for (boolean ahead : new boolean[] {false, true}) {
                    PieceWork work = new PieceWork(0.5, 64, ahead ? 2 * windowBytes : windowBytes, DType.F32)
                            .readAhead(ahead);
                    String what = windowBytes + " bytes a window" + (ahead ? ", reading ahead" : "");
                    NonFiniteInputException pass2 = assertThrows(NonFiniteInputException.class,
                            () -> work.outputs(cpu, in, f, whole, LightningState.zeros(work.spec(f)),
                                    new ByteArrayOutputStream()), what);
                    assertEquals("v[3, 1, 2]", pass2.first, what + ": pass 2");
                    assertEquals(3, pass2.count, what);
                    NonFiniteInputException pass1 = assertThrows(NonFiniteInputException.class,
                            () -> work.localState(cpu, in, f, whole), what);
                    assertEquals("v[3, 1, 2]", pass1.first, what + ": pass 1 (k and v)");
                }
            }
        }
    }

    /** A backend whose n-th computation fails: the read running ahead then is still in flight. */
    private static final class FailingCpu extends WrappedBackend {
        final AtomicInteger calls = new AtomicInteger();
        final int failAt;

        FailingCpu(int failAt) {
            super(new PieceWorkHostWindowsTest.DirectCpu());
            this.failAt = failAt;
        }

        /** The blocks this backend handed out, as its inner backend counts them. */
        PieceWorkHostWindowsTest.DirectCpu direct() {
            return (PieceWorkHostWindowsTest.DirectCpu) inner;
        }

        @Override
        public String name() {
            return "cpu-failing";
        }

        private void maybeFail() {
            if (calls.incrementAndGet() == failAt) {
                throw new IllegalStateException("injected failure at computation " + failAt);
            }
        }

        @Override
        public LightningState advance(AttentionSpec spec, TokenTensor k, TokenTensor v, LightningState state) {
            maybeFail();
            return super.advance(spec, k, v, state);
        }

        @Override
        public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o, Checkpoints checkpoints) {
            maybeFail();
            return super.forward(spec, q, k, v, state, o, checkpoints);
        }
    }

    @Test
    void failuresLeaveNoBlockBehind() throws IOException {
        Path file = write("fail.st", DType.BF16, 1000, 3, 3, 3, 16, 8, 12);
        try (FileChannel c = FileChannel.open(file, StandardOpenOption.READ)) {
            RangeReader in = RangeReader.of(c);
            SequenceFile f = SequenceFile.describe(file.toString(), "fail.st", c.size(), in, Slopes::minimax);
            PieceWork work = new PieceWork(0.5, 64, 8 * 1024, f.dtype).readAhead(true);
            Piece whole = new Piece(0, 0, 1, 0, f.tokens);
            assertTrue(work.windowTokens(f, whole) < f.tokens / 3, "several windows a piece");
            // the call's own blocks: both given back when its second window's computation fails
            FailingCpu failing = new FailingCpu(2);
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> work.outputs(failing, in, f, whole, LightningState.zeros(work.spec(f)),
                            new ByteArrayOutputStream()));
            assertTrue(e.getMessage().contains("injected failure"), e.getMessage());
            assertEquals(2, failing.direct().handedOut, "two blocks taken");
            assertEquals(0, failing.direct().live.size(), "blocks left after the failure");
            // a read running ahead that fails (the file ends early) fails the call as the read says
            // a read running ahead that fails (k and v end at token 300) fails the call as the read says
            assertTrue(f.kOffset < f.vOffset);
            RangeReader cut = new RangeReader() {
                private void check(long position) throws IOException {
                    if (position >= f.kOffset + 300L * 3 * 16 * 2 && position < f.vOffset
                            || position >= f.vOffset + 300L * 3 * 8 * 2) {
                        throw new java.io.EOFException("cut");
                    }
                }

                @Override
                public void readFully(long position, byte[] buf, int off, int len) throws IOException {
                    check(position);
                    in.readFully(position, buf, off, len);
                }

                @Override
                public void readFully(long position, ByteBuffer dst) throws IOException {
                    check(position);
                    in.readFully(position, dst);
                }
            };
            PieceWorkHostWindowsTest.DirectCpu direct = new PieceWorkHostWindowsTest.DirectCpu();
            assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                    () -> work.localState(direct, cut, f, whole));
            assertEquals(0, direct.live.size(), "blocks left after a failed read");
            // a task's buffers: the failure leaves both blocks with the task, whose release() frees them
            FailingCpu again = new FailingCpu(3);
            WindowBuffers task = WindowBuffers.of(again);
            assertThrows(IllegalStateException.class, () -> work.reusing(task).localState(again, in, f, whole));
            assertEquals(2, again.direct().live.size());
            task.release();
            assertEquals(0, again.direct().live.size(), "the task's release frees both blocks");
        }
    }

    private static boolean allZero(byte[] b) {
        for (byte x : b) {
            if (x != 0) {
                return false;
            }
        }
        return true;
    }

    private static float[] uniform(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }
}
