package dev.lightning.attention.stream;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** How SoftmaxWork sizes its query blocks. */
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
}
