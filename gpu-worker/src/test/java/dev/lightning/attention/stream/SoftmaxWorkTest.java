package dev.lightning.attention.stream;

import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** How SoftmaxWork sizes its query blocks, what it lets through to the output, and what it counts as it goes. */
class SoftmaxWorkTest {
    /**
     * However large the byte budget, a query block's buffers stay within one Java array, as lightning's windows do
     * (PieceWorkVariantTest): its q bytes and its partial as bytes ({@code SoftmaxPartial#toBytes}, which the merge
     * reads back whole). At Hq = 64, Dk = Dv = 256, F32 a query costs 65,536 bytes of q and 65,792 of partial:
     * 32,640 tokens at most (510 whole chunks). --window-bytes 16g (8 GiB of query block) used to plan 43,520
     * tokens, 2.85e9 bytes of q: the int length wrapped and the task failed with NegativeArraySizeException.
     */
    @Test
    void queryBlocksStayWithinOneArrayWhateverTheBudget() throws Exception {
        SequenceFile f = new SyntheticSequence(1L << 20, 64, 256, 256, DType.F32, 1).describe(Slopes::minimax, false);
        SoftmaxSpec spec = new SoftmaxSpec(64, 64, 256, 256, SoftmaxSpec.defaultScale(256), SoftmaxSpec.NO_WINDOW);
        long qTokenBytes = 64L * 256 * 4;
        for (long budget : new long[] {8L << 30, 1L << 40}) {
            SoftmaxWork work = new SoftmaxWork(spec, 64, budget, 1L << 20);
            int n = work.queryBlockTokens(f);
            assertEquals(32640, n, "query block tokens at a budget of " + budget);
            assertTrue(n * qTokenBytes <= Integer.MAX_VALUE - 16, "q of " + n + " tokens fits one array");
            assertTrue(n * work.partialBytesPerToken() <= Integer.MAX_VALUE - 16, "a partial of " + n
                    + " tokens fits one array");
        }
        // budgets that fit are untouched: 512 MiB holds 2,723 queries, 2,688 in whole chunks
        assertEquals(2688, new SoftmaxWork(spec, 64, 512L << 20, 1L << 20).queryBlockTokens(f));
    }

    /**
     * A row whose every score scale * q . k is below float32's range is -inf throughout, which the
     * backends take for "no key seen": o = 0 (finite, so o's scan passed it) and lse = -inf. The job
     * wrote those zeros with exit status 0 (scale 1e37, q . k = -406 to -460: the float64 o is a
     * weighted mean of v, far from 0). The rows are refused as an overflow instead, lse or not.
     */
    @Test
    void rowsWhoseScoresAllOverflowAreRefusedNotWrittenAsZeros() throws Exception {
        int t = 4;
        int d = 4;
        SoftmaxSpec spec = new SoftmaxSpec(1, 1, d, d, 1e37, SoftmaxSpec.NO_WINDOW);
        float[] q = new float[t * d];
        float[] k = new float[t * d];
        float[] v = new float[t * d];
        for (int i = 0; i < q.length; i++) {
            q[i] = -1f;
            k[i] = 100f + i;
            v[i] = 0.5f + i % 3;
        }
        SoftmaxPartial p = SoftmaxPartial.empty(spec, t);
        try (SoftmaxBackend cpu = Backends.softmaxCpu()) {
            cpu.forward(spec, TokenTensor.of(DType.F32, t, 1, d, q), 0, TokenTensor.of(DType.F32, t, 1, d, k),
                    TokenTensor.of(DType.F32, t, 1, d, v), 0, p);
        }
        SequenceFile f = new SyntheticSequence(t, 1, d, d, DType.F32, 1).describe(Slopes::minimax, false);
        ByteArrayOutputStream o = new ByteArrayOutputStream();
        NonFiniteOutputException e = assertThrows(NonFiniteOutputException.class,
                () -> SoftmaxWork.writeRows(f, 0, 0, p, DType.F32, o, null));
        assertTrue(e.getMessage().contains("lse[0, 0]") && e.getMessage().contains("--scale")
                && e.getMessage().contains("overflowed float32"), e.getMessage());
        assertEquals(0, o.size(), "nothing of the block is written");

        // finite scores: written as before
        SoftmaxSpec fine = new SoftmaxSpec(1, 1, d, d, 1.0, SoftmaxSpec.NO_WINDOW);
        try (SoftmaxBackend cpu = Backends.softmaxCpu()) {
            cpu.forward(fine, TokenTensor.of(DType.F32, t, 1, d, q), 0, TokenTensor.of(DType.F32, t, 1, d, k),
                    TokenTensor.of(DType.F32, t, 1, d, v), 0, p);
        }
        ByteArrayOutputStream lse = new ByteArrayOutputStream();
        SoftmaxWork.writeRows(f, 0, 0, p, DType.F32, o, lse);
        assertEquals(4 * t * d, o.size());
        assertEquals(4 * t, lse.size());
    }

    /**
     * An item tells its progress per key block, in visible (query, key) pairs, the measure its cost and
     * token share are planned by: a softmax task's progress line stood still until the item ended
     * (minutes on the CPU). Queries [128, 256) of a 256-token sequence over all its keys, in query
     * blocks of 64 and key blocks of 16: 12 key blocks for the first query block, 16 for the second,
     * adding up to the range's pairs; with a window of 40 only the blocks a query block can see, from
     * its first visible key (89, 153).
     */
    @Test
    void eachKeyBlockCountsItsVisiblePairs() throws Exception {
        int t = 256;
        int d = 8;
        SequenceFile f = new SyntheticSequence(t, 1, d, d, DType.F32, 1).describe(Slopes::minimax, false);
        for (long window : new long[] {SoftmaxSpec.NO_WINDOW, 40}) {
            SoftmaxSpec spec = new SoftmaxSpec(1, 1, d, d, SoftmaxSpec.defaultScale(d), window);
            // a query costs 32 bytes of q and 2 x 36 of partials, a key 64 bytes of k and v
            SoftmaxWork plain = new SoftmaxWork(spec, 16, 64 * 104, 16 * 64);
            assertEquals(64, plain.queryBlockTokens(f));
            assertEquals(16, plain.keyBlockTokens(f));
            List<Long> told = new ArrayList<>();
            int[] blocks = {0};
            try (SoftmaxBackend cpu = Backends.softmaxCpu()) {
                plain.counting(told::add).compute(cpu, new SyntheticSequence(t, 1, d, d, DType.F32, 1).reader(), f, 0,
                        128, 256, 0, 256, (at, p) -> blocks[0]++);
            }
            assertEquals(2, blocks[0]);
            assertEquals(window == SoftmaxSpec.NO_WINDOW ? 12 + 16 : 7 + 7, told.size(),
                    "one count per key block: " + told);
            assertEquals(window == SoftmaxSpec.NO_WINDOW ? 64 * 16 : spec.visiblePairs(128, 64, 89, 16), told.get(0));
            assertTrue(told.stream().allMatch(n -> n > 0), told.toString());
            assertEquals(spec.visiblePairs(128, 128, 0, 256), told.stream().mapToLong(Long::longValue).sum(),
                    "the counts add up to the range's pairs");
        }
    }
}
