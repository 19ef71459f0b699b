package dev.lightning.attention.stream;

import dev.lightning.attention.engine.reference.Accuracy;
import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code o} in another dtype than the inputs, and NaN/Inf that appear only in what a piece
 * computes: found window by window as o is written, reported as the output (with its first
 * position) and not as the input, and the piece stops at that window.
 */
class PieceWorkOutputDtypeTest {
    /** Small heads, so that windows of one chunk are cheap and positions easy to name. */
    private static final int H = 2;
    private static final int DK = 8;
    private static final int DV = 4;
    private static final int CHUNK = 64;

    @TempDir
    Path tmp;

    /** A sequence file on disk, read by token ranges as a task reads it. */
    private final class Input implements AutoCloseable {
        final Path file;
        final RandomAccessFile raf;
        final RangeReader in;
        final SequenceFile f;

        Input(String name, DType dtype, int tokens, float[] q, float[] k, float[] v) throws IOException {
            file = tmp.resolve(name);
            SafetensorsFile.write(file, List.of(
                    SafetensorsFile.Tensor.of("q", dtype, new long[] {tokens, H, DK}, q),
                    SafetensorsFile.Tensor.of("k", dtype, new long[] {tokens, H, DK}, k),
                    SafetensorsFile.Tensor.of("v", dtype, new long[] {tokens, H, DV}, v)));
            raf = new RandomAccessFile(file.toFile(), "r");
            in = (position, buf, off, len) -> {
                raf.seek(position);
                raf.readFully(buf, off, len);
            };
            f = SequenceFile.describe(file.toString(), name, raf.length(), in, Slopes::minimax);
        }

        /** The float64 recurrence over the file's values (as rounded to its dtype); o in float32. */
        float[] reference(double scale) throws IOException {
            Map<String, SafetensorsFile.Tensor> t = SafetensorsFile.read(file);
            TokenTensor o = TokenTensor.allocate(DType.F32, (int) f.tokens, H, DV);
            new RecurrentReference().forward(f.spec(scale, CHUNK), t.get("q").asTokens(), t.get("k").asTokens(),
                    t.get("v").asTokens(), LightningState.zeros(H, DK, DV), o);
            return o.toFloats();
        }

        /** Pass 2 of the whole sequence as one piece, in windows of one chunk; o as floats. */
        float[] outputs(AttentionBackend backend, double scale, DType out) throws IOException {
            ByteArrayOutputStream o = new ByteArrayOutputStream();
            PieceWork work = new PieceWork(scale, CHUNK, oneChunk(f, out), out);
            work.outputs(backend, in, f, whole(), LightningState.zeros(H, DK, DV), o);
            assertEquals(f.tokens * H * DV * out.bytes(), o.size(), "bytes of o in " + out);
            return TokenTensor.wrap(out, (int) f.tokens, H, DV, ByteBuffer.wrap(o.toByteArray())).toFloats();
        }

        Piece whole() {
            return new Piece(0, 0, 1, 0, f.tokens);
        }

        @Override
        public void close() throws IOException {
            raf.close();
        }
    }

    /** A window budget of exactly one chunk of q, k, v and o in {@code out}. */
    private static long oneChunk(SequenceFile f, DType out) {
        return (f.inputBytesPerToken() + f.outputBytesPerToken(out)) * CHUNK;
    }

    @Test
    void windowsCountTheOutputBytesInTheOutputDtype() throws IOException {
        float[] zeros = new float[CHUNK * 8 * H * DK];
        float[] v = new float[CHUNK * 8 * H * DV];
        try (Input x = new Input("sizes.safetensors", DType.BF16, CHUNK * 8, zeros, zeros, v)) {
            assertEquals(H * DV * 4, x.f.outputBytesPerToken(DType.F32));
            assertEquals(H * DV * 2, x.f.outputBytesPerToken(DType.BF16));
            // q, k, v take 80 bytes a token, o 16 in BF16 and 32 in F32: 4 chunks of the one are 3 of the other
            long budget = 4 * oneChunk(x.f, DType.BF16);
            assertEquals(4 * CHUNK, new PieceWork(1.0, CHUNK, budget, DType.BF16).windowTokens(x.f, x.whole()));
            assertEquals(3 * CHUNK, new PieceWork(1.0, CHUNK, budget, DType.F32).windowTokens(x.f, x.whole()));
        }
    }

    /** F32 o from BF16 inputs keeps what BF16 o rounds away: it is the float32 result of the same inputs. */
    @Test
    void f32OutputFromBf16InputIsCloserToTheReference() throws IOException {
        int t = 1000;
        SplittableRandom rnd = new SplittableRandom(41);
        try (Input x = new Input("bf16.safetensors", DType.BF16, t, uniform(rnd, t * H * DK), uniform(rnd, t * H * DK),
                uniform(rnd, t * H * DV)); AttentionBackend cpu = new CpuBackend()) {
            float[] expect = x.reference(0.5);
            double wide = Accuracy.relativeError(x.outputs(cpu, 0.5, DType.F32), expect);
            double narrow = Accuracy.relativeError(x.outputs(cpu, 0.5, DType.BF16), expect);
            System.out.printf("PieceWorkOutputDtypeTest BF16 in: F32 o error %.2e, BF16 o error %.2e%n", wide, narrow);
            assertTrue(wide <= 1e-5, "F32 o relative error " + wide);
            assertTrue(narrow > 1e-4, "BF16 o should carry BF16 rounding, relative error " + narrow);
            assertTrue(wide * 100 < narrow, "F32 o error " + wide + " vs BF16 o error " + narrow);
        }
    }

    /**
     * F16 inputs whose outputs overflow F16: token 150 of head 1 has q, k, v all 200, so its o is
     * about 200 * 8 * 200 * 200 = 6.4e7 in every index; every other value is below 1 and head 1's
     * other queries are zero (so no other o of head 1 overflows). F16 o fails at o[150, 1, 0]
     * with the window's count, after computing only the windows up to it; F32 o is finite and
     * matches the float64 reference.
     */
    @Test
    void f16OverflowIsReportedAtItsFirstPositionAndF32OutputHoldsIt() throws IOException {
        int t = 400;
        int bad = 150;
        SplittableRandom rnd = new SplittableRandom(43);
        float[] q = uniform(rnd, t * H * DK);
        float[] k = uniform(rnd, t * H * DK);
        float[] v = uniform(rnd, t * H * DV);
        for (int i = 0; i < t; i++) {
            for (int d = 0; d < DK; d++) {
                q[(i * H + 1) * DK + d] = i == bad ? 200f : 0f;
                if (i == bad) {
                    k[(i * H + 1) * DK + d] = 200f;
                }
            }
        }
        for (int d = 0; d < DV; d++) {
            v[(bad * H + 1) * DV + d] = 200f;
        }
        try (Input x = new Input("f16.safetensors", DType.F16, t, q, k, v)) {
            CountingBackend cpu = new CountingBackend(new CpuBackend(), null);
            ByteArrayOutputStream o = new ByteArrayOutputStream();
            PieceWork work = new PieceWork(1.0, CHUNK, oneChunk(x.f, DType.F16), DType.F16);
            NonFiniteOutputException e = assertThrows(NonFiniteOutputException.class, () ->
                    work.outputs(cpu, x.in, x.f, x.whole(), LightningState.zeros(H, DK, DV), o));
            assertInstanceOf(InvalidInputException.class, e, "the CLI's exit status 2");
            assertEquals("o[150, 1, 0]", e.first);
            assertEquals(DV, e.count, "every index of o[150, 1] overflows, nothing else");
            assertEquals("0\t128\t" + DV + "\to[150, 1, 0]", e.record());
            String m = e.getMessage();
            assertTrue(m.startsWith("f16.safetensors: " + DV + " NaN/Inf value(s) in the output o (F16), tokens [128, 192), "
                    + "the first at o[150, 1, 0]; "), m);
            assertTrue(m.contains("pass --output-dtype f32") && m.contains("--skip-nonfinite"), m);
            assertFalse(m.contains("\n"), "one line: " + m);
            assertEquals(3, cpu.forwards, "windows [0, 64), [64, 128), [128, 192) and no more");
            assertEquals(128 * H * DV * 2, o.size(), "the bad window is not written");

            float[] expect = x.reference(1.0);
            float[] wide = x.outputs(new CpuBackend(), 1.0, DType.F32);
            for (float w : wide) {
                assertTrue(Float.isFinite(w), "F32 o holds the values F16 cannot");
            }
            assertTrue(Math.abs(expect[(bad * H + 1) * DV] - 6.4e7) < 0.1 * 6.4e7, "the case overflows F16: "
                    + expect[(bad * H + 1) * DV]);
            for (int h = 0; h < H; h++) {
                double err = Accuracy.relativeError(head(wide, t, h), head(expect, t, h));
                assertTrue(err <= 1e-5, "F32 o of head " + h + ": relative error " + err);
            }
        }
    }

    /**
     * Finite F32 inputs whose products overflow float32 (k and v of 1e20 at token 70, head 0):
     * the infinities appear only in the computation and are reported as o, with the advice that
     * fits an F32 o (no --output-dtype).
     */
    @Test
    void float32OverflowFromFiniteInputsIsTheOutputsFault() throws IOException {
        int t = 200;
        SplittableRandom rnd = new SplittableRandom(47);
        float[] q = uniform(rnd, t * H * DK);
        float[] k = uniform(rnd, t * H * DK);
        float[] v = uniform(rnd, t * H * DV);
        for (int d = 0; d < DK; d++) {
            q[70 * H * DK + d] = 1f;
            k[70 * H * DK + d] = 1e20f;
        }
        for (int d = 0; d < DV; d++) {
            v[70 * H * DV + d] = 1e20f;
        }
        try (Input x = new Input("f32.safetensors", DType.F32, t, q, k, v); AttentionBackend cpu = new CpuBackend()) {
            PieceWork work = new PieceWork(1.0, CHUNK, oneChunk(x.f, DType.F32), DType.F32);
            NonFiniteOutputException e = assertThrows(NonFiniteOutputException.class, () -> work.outputs(cpu, x.in,
                    x.f, x.whole(), LightningState.zeros(H, DK, DV), new ByteArrayOutputStream()));
            assertEquals("o[70, 0, 0]", e.first);
            assertTrue(e.getMessage().contains("in the output o (F32), tokens [64, 128)"), e.getMessage());
            assertTrue(e.getMessage().contains("float32 overflowed") && !e.getMessage().contains("--output-dtype"),
                    e.getMessage());
        }
    }

    /**
     * The same float32 overflow with a BF16 o (F32 input, --output-dtype bf16): BF16 has float32's
     * range, so the advice is float32's, not --output-dtype f32, which would fail the same way.
     */
    @Test
    void float32OverflowIntoBf16OutputDoesNotAdviseF32Output() throws IOException {
        int t = 130;
        SplittableRandom rnd = new SplittableRandom(59);
        float[] q = uniform(rnd, t * H * DK);
        float[] k = uniform(rnd, t * H * DK);
        float[] v = uniform(rnd, t * H * DV);
        for (int d = 0; d < DK; d++) {
            q[(77 * H + 1) * DK + d] = 1f;
            k[(77 * H + 1) * DK + d] = 3e19f;
        }
        for (int d = 0; d < DV; d++) {
            v[(77 * H + 1) * DV + d] = 3e19f;
        }
        try (Input x = new Input("f32.safetensors", DType.F32, t, q, k, v); AttentionBackend cpu = new CpuBackend()) {
            for (DType out : new DType[] {DType.BF16, DType.F32}) {
                PieceWork work = new PieceWork(1.0, CHUNK, oneChunk(x.f, out), out);
                NonFiniteOutputException e = assertThrows(NonFiniteOutputException.class, () -> work.outputs(cpu, x.in,
                        x.f, x.whole(), LightningState.zeros(H, DK, DV), new ByteArrayOutputStream()));
                assertEquals("o[77, 1, 0]", e.first);
                String m = e.getMessage();
                assertTrue(m.contains("in the output o (" + out + ")") && m.contains("float32 overflowed")
                        && !m.contains("pass --output-dtype f32") && m.contains("--skip-nonfinite"), m);
            }
        }
    }

    /**
     * Normalized relu with eps 0: a token whose q row has no positive element has phi(q) . z = 0,
     * so o = 0/0 there, as in the float64 recurrence. It is reported at that token with the
     * advice that fits (an eps above 0), not as a float32 overflow; with eps 1e-5 the same input
     * runs and matches the recurrence.
     */
    @Test
    void zeroDenominatorWithZeroEpsIsNamedAsSuch() throws IOException {
        int t = 150;
        int bad = 101;
        SplittableRandom rnd = new SplittableRandom(61);
        float[] q = uniform(rnd, t * H * DK);
        float[] k = uniform(rnd, t * H * DK);
        float[] v = uniform(rnd, t * H * DV);
        for (int i = 0; i < t * H * DK; i++) {
            q[i] = Math.abs(q[i]) + 0.01f;
            k[i] = Math.abs(k[i]) + 0.01f;
        }
        for (int d = 0; d < DK; d++) {
            q[(bad * H) * DK + d] = -Math.abs(q[(bad * H) * DK + d]);
        }
        try (Input x = new Input("relu.safetensors", DType.F32, t, q, k, v); AttentionBackend cpu = new CpuBackend()) {
            PieceWork work = new PieceWork(1.0, CHUNK, new Variant(FeatureMap.RELU, true, 0, 0), oneChunk(x.f, DType.F32),
                    DType.F32);
            NonFiniteOutputException e = assertThrows(NonFiniteOutputException.class, () -> work.outputs(cpu, x.in,
                    x.f, x.whole(), LightningState.zeros(work.spec(x.f)), new ByteArrayOutputStream()));
            assertEquals("o[" + bad + ", 0, 0]", e.first);
            assertEquals(DV, e.count, "o[" + bad + ", 0] alone is 0/0");
            String m = e.getMessage();
            assertTrue(m.contains("--normalize-eps 0") && m.contains("0/0") && m.contains("eps above 0")
                    && !m.contains("float32 overflowed") && m.contains("--skip-nonfinite"), m);

            PieceWork withEps = new PieceWork(1.0, CHUNK, new Variant(FeatureMap.RELU, true, 1e-5, 0),
                    oneChunk(x.f, DType.F32), DType.F32);
            AttentionSpec spec = withEps.spec(x.f);
            ByteArrayOutputStream o = new ByteArrayOutputStream();
            withEps.outputs(cpu, x.in, x.f, x.whole(), LightningState.zeros(spec), o);
            float[] got = TokenTensor.wrap(DType.F32, t, H, DV, ByteBuffer.wrap(o.toByteArray())).toFloats();
            Map<String, SafetensorsFile.Tensor> in = SafetensorsFile.read(x.file);
            TokenTensor want = TokenTensor.allocate(DType.F32, t, H, DV);
            new RecurrentReference().forward(spec, in.get("q").asTokens(), in.get("k").asTokens(), in.get("v").asTokens(),
                    LightningState.zeros(spec), want);
            for (int d = 0; d < DV; d++) {
                assertEquals(0f, got[(bad * H) * DV + d], "o[" + bad + ", 0] with eps 1e-5: 0 / eps");
            }
            double err = Accuracy.relativeError(got, want.toFloats());
            assertTrue(err <= 1e-5, "o with eps 1e-5: relative error " + err);
        }
    }

    /**
     * A NaN that only the output path makes (a backend writing one into o, or into its state)
     * is reported as o or final_state, never as the input, and the piece stops at that window.
     */
    @Test
    void aNaNMadeInTheOutputPathIsReportedAsTheOutput() throws IOException {
        int t = 300;
        SplittableRandom rnd = new SplittableRandom(53);
        try (Input x = new Input("clean.safetensors", DType.BF16, t, uniform(rnd, t * H * DK), uniform(rnd, t * H * DK),
                uniform(rnd, t * H * DV))) {
            PieceWork work = new PieceWork(1.0, CHUNK, oneChunk(x.f, DType.F32), DType.F32);
            // window [192, 256): o[200, 1, 3] made NaN after the backend wrote it
            CountingBackend inO = new CountingBackend(new CpuBackend(), (at, o, s) -> {
                o.set((int) (200 - at), 1, 3, Float.NaN);
                return s;
            });
            inO.poisonAt = 192;
            NonFiniteException e = assertThrows(NonFiniteException.class, () ->
                    work.outputs(inO, x.in, x.f, x.whole(), LightningState.zeros(H, DK, DV), new ByteArrayOutputStream()));
            assertInstanceOf(NonFiniteOutputException.class, e, e.getMessage());
            assertEquals("o[200, 1, 3]", e.first);
            assertEquals(1, e.count);
            assertTrue(e.getMessage().startsWith("clean.safetensors: 1 NaN/Inf value(s) in the output o (F32), "
                    + "tokens [192, 256), the first at o[200, 1, 3]; "), e.getMessage());
            assertEquals(4, inO.forwards);

            // window [64, 128): the state after it made NaN at [1, 2, 3], o left finite
            CountingBackend inState = new CountingBackend(new CpuBackend(), (at, o, s) -> {
                float[] kv = s.kv();
                kv[(1 * DK + 2) * DV + 3] = Float.NaN;
                return LightningState.of(H, DK, DV, kv);
            });
            inState.poisonAt = 64;
            e = assertThrows(NonFiniteException.class, () -> work.outputs(inState, x.in, x.f, x.whole(),
                    LightningState.zeros(H, DK, DV), new ByteArrayOutputStream()));
            assertInstanceOf(NonFiniteOutputException.class, e, e.getMessage());
            assertEquals("final_state[1, 2, 3]", e.first);
            assertTrue(e.getMessage().contains("in the output final_state (F32), the state after token 127, "),
                    e.getMessage());
            assertEquals(2, inState.forwards);
        }
    }

    /** What a test backend changes in a window's results: o in place, the state by returning another. */
    private interface Poison {
        LightningState apply(long windowStart, TokenTensor o, LightningState state);
    }

    /** A backend that counts forward() calls and poisons the window starting at {@code poisonAt}. */
    private static final class CountingBackend extends WrappedBackend {
        final Poison poison;
        long poisonAt = -1;
        int forwards;
        private long next;

        CountingBackend(AttentionBackend inner, Poison poison) {
            super(inner);
            this.poison = poison;
        }

        @Override
        public String name() {
            return "counting-" + inner.name();
        }

        @Override
        public LightningState forward(AttentionSpec spec, TokenTensor q, TokenTensor k, TokenTensor v,
                                      LightningState state, TokenTensor o,
                                      dev.lightning.attention.engine.Checkpoints checkpoints) {
            forwards++;
            long at = next;
            next += k.tokens();
            LightningState s = inner.forward(spec, q, k, v, state, o, checkpoints);
            return at == poisonAt ? poison.apply(at, o, s) : s;
        }
    }

    /** Head {@code h} of a {@code [t, H, Dv]} array. */
    private static float[] head(float[] o, int t, int h) {
        float[] x = new float[t * DV];
        for (int i = 0; i < t; i++) {
            System.arraycopy(o, (i * H + h) * DV, x, i * DV, DV);
        }
        return x;
    }

    private static float[] uniform(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }
}
