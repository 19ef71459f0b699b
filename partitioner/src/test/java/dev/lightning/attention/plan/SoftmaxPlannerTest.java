package dev.lightning.attention.plan;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SoftmaxPlannerTest {

    /** The pair count by its definition, one (t, j) at a time. */
    private static long bruteForce(long window, long qs, long qe, long ks, long ke) {
        long n = 0;
        for (long t = qs; t < qe; t++) {
            for (long j = ks; j < ke; j++) {
                if (j <= t && (window == 0 || j > t - window)) {
                    n++;
                }
            }
        }
        return n;
    }

    @Test
    void pairCountsMatchTheirDefinition() {
        SplittableRandom rnd = new SplittableRandom(14);
        for (int trial = 0; trial < 3000; trial++) {
            long window = rnd.nextInt(4) == 0 ? 0 : 1 + rnd.nextInt(150);
            long qs = rnd.nextInt(200);
            long qe = qs + 1 + rnd.nextInt(120);
            long ks = rnd.nextInt(250);
            long ke = ks + 1 + rnd.nextInt(120);
            SoftmaxPlanner p = new SoftmaxPlanner(window);
            assertEquals(bruteForce(window, qs, qe, ks, ke), p.pairs(qs, qe, ks, ke),
                    "W=" + window + " q[" + qs + "," + qe + ") k[" + ks + "," + ke + ")");
        }
    }

    /** Every visible (query, key) pair of every sequence is computed by exactly one item. */
    private static void coversEveryPairOnce(SoftmaxPlanner planner, List<List<Piece>> pieces, long[] tokens,
                                            SoftmaxPlanner.Plan plan) {
        Map<Long, Long> covered = new HashMap<>(); // (sequence, query piece) -> pairs
        Map<Long, Integer> items = new HashMap<>();
        for (List<SoftmaxPlanner.Block> task : plan.tasks) {
            for (SoftmaxPlanner.Block b : task) {
                long key = ((long) b.query.sequence() << 32) | b.query.index();
                covered.merge(key, planner.pairs(b.query.start(), b.query.end(), b.keyStart, b.keyEnd), Long::sum);
                items.merge(key, 1, Integer::sum);
            }
        }
        for (List<SoftmaxPlanner.Block> task : plan.tasks) {
            for (SoftmaxPlanner.Block b : task) {
                long key = ((long) b.query.sequence() << 32) | b.query.index();
                assertEquals(items.get(key) == 1, b.whole, b + ": whole exactly when it is the piece's only item");
            }
        }
        int merges = 0;
        for (List<Piece> partition : pieces) {
            for (Piece q : partition) {
                long key = ((long) q.sequence() << 32) | q.index();
                assertEquals(planner.pairs(q.start(), q.end(), 0, tokens[q.sequence()]), covered.get(key), q.toString());
                merges += items.get(key) > 1 ? 1 : 0;
            }
        }
        assertEquals(merges, plan.merges.size());
        for (List<SoftmaxPlanner.Block> m : plan.merges) {
            for (int i = 1; i < m.size(); i++) {
                assertEquals(m.get(i - 1).lastKeyPiece + 1, m.get(i).firstKeyPiece, "merge items in ascending key order");
            }
        }
    }

    @Test
    void sixteenPiecesWithoutAWindowAreEven() {
        long[] tokens = {65536};
        List<List<Piece>> pieces = new PiecePlanner(4096, 64).plan(tokens);
        assertEquals(16, pieces.size());
        SoftmaxPlanner planner = new SoftmaxPlanner(0);
        SoftmaxPlanner.Plan plan = planner.plan(pieces, new long[] {8 * 128}, pieces.size());
        assertEquals(16, plan.tasks.size());
        coversEveryPairOnce(planner, pieces, tokens, plan);
        // one task per query piece would be 16.5/8.5 = 1.94x the mean for the last one
        assertTrue(plan.imbalance() <= 1.07, "max/mean " + plan.imbalance()); // 8.5 units against 8
        assertTrue(plan.imbalance() >= 1.0);
    }

    @Test
    void windowsAndManySequencesStayEvenAndComplete() {
        SplittableRandom rnd = new SplittableRandom(7);
        for (int trial = 0; trial < 40; trial++) {
            int n = 1 + rnd.nextInt(6);
            long[] tokens = new long[n];
            long[] weights = new long[n];
            for (int s = 0; s < n; s++) {
                tokens[s] = 1 + rnd.nextInt(rnd.nextBoolean() ? 100 : 3000);
                weights[s] = 1 + rnd.nextInt(50);
            }
            long window = rnd.nextBoolean() ? 0 : 1 + rnd.nextInt(700);
            List<List<Piece>> pieces = new PiecePlanner(64 * (1 + rnd.nextInt(4)), 64).plan(tokens);
            SoftmaxPlanner planner = new SoftmaxPlanner(window);
            SoftmaxPlanner.Plan plan = planner.plan(pieces, weights, pieces.size());
            coversEveryPairOnce(planner, pieces, tokens, plan);
            assertFalse(plan.tasks.isEmpty());
            assertTrue(plan.tasks.size() <= pieces.size());
            long largestUnit = 0;
            for (List<Piece> partition : pieces) {
                for (Piece q : partition) {
                    largestUnit = Math.max(largestUnit, weights[q.sequence()] * (long) q.tokens() * q.tokens());
                }
            }
            // no task exceeds the mean by more than one unit on each side
            assertTrue(plan.maxTaskCost <= plan.meanTaskCost() + 2 * largestUnit, "max " + plan.maxTaskCost);
        }
    }

    @Test
    void aWindowDropsKeyPiecesOutOfRange() {
        long[] tokens = {1000};
        List<List<Piece>> pieces = new PiecePlanner(100, 10).plan(tokens);
        SoftmaxPlanner planner = new SoftmaxPlanner(150);
        SoftmaxPlanner.Plan plan = planner.plan(pieces, new long[] {1}, 1);
        assertEquals(1, plan.tasks.size());
        List<SoftmaxPlanner.Block> items = new ArrayList<>(plan.tasks.get(0));
        assertEquals(10, items.size());
        assertTrue(items.stream().allMatch(b -> b.whole));
        SoftmaxPlanner.Block last = items.get(9); // queries [900, 1000) see keys from 751: pieces 7..9
        assertEquals(7, last.firstKeyPiece);
        assertEquals(9, last.lastKeyPiece);
        assertEquals(0, plan.merges.size());
    }
}
