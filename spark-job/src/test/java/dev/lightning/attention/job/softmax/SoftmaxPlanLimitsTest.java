package dev.lightning.attention.job.softmax;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.plan.PiecePlanner;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.stream.SyntheticSequence;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The softmax planner counts a unit's cost in a long: pieces whose cost would pass 2^63 are refused before Spark starts,
 * naming the largest piece that fits, instead of an overflow inside the planner (a 50M-token sequence in one piece at
 * Hq = 64, D = 128 threw "long overflow"); pieces at that bound plan.
 */
class SoftmaxPlanLimitsTest {
    private static List<List<Piece>> pieces(long tokens, long partitionTokens) {
        return new PiecePlanner(partitionTokens, 64).plan(new long[] {tokens});
    }

    @Test
    void piecesTooLongToCountAreRefusedWithTheLargestThatFits() throws Exception {
        SequenceFile f = new SyntheticSequence(50_000_000L, 64, 128, 128, DType.BF16, 1).describe(h -> new double[64],
                false);
        JobConfig cfg = JobConfig.resolve(Map.of("--input", "in", "--output", "out", "--attention", "softmax",
                "--partition-tokens", "50000000"), Map.of(), k -> null);
        String m = assertThrows(InvalidInputException.class,
                () -> SoftmaxJob.plan(cfg, List.of(f), pieces(50_000_000L, 50_000_000L))).getMessage();
        long most = (long) Math.sqrt(Long.MAX_VALUE / (64.0 * 256));
        most -= most % 64;
        assertTrue(m.startsWith("--partition-tokens 50000000 with --attention softmax") && m.contains("2^63")
                && m.contains("--partition-tokens " + most + " or less"), m);
        // at that bound the planner counts (three pieces: the last two units are the largest)
        JobConfig fits = JobConfig.resolve(Map.of("--input", "in", "--output", "out", "--attention", "softmax",
                "--partition-tokens", Long.toString(most)), Map.of(), k -> null);
        SoftmaxPlannerCheck.planned(SoftmaxJob.plan(fits, List.of(f), pieces(50_000_000L, most)));
    }

    /** What a plan must at least hold: some work. */
    static final class SoftmaxPlannerCheck {
        static void planned(dev.lightning.attention.plan.SoftmaxPlanner.Plan plan) {
            assertTrue(plan.tasks.size() >= 1);
            assertEquals(false, plan.tasks.get(0).isEmpty());
        }
    }
}
