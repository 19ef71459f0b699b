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
        // the items' token shares add up to each query piece's tokens, each in proportion to its cost (within 1)
        Map<Long, Long> shares = new HashMap<>();
        Map<Long, Long> costs = new HashMap<>();
        for (List<SoftmaxPlanner.Block> task : plan.tasks) {
            for (SoftmaxPlanner.Block b : task) {
                long key = ((long) b.query.sequence() << 32) | b.query.index();
                shares.merge(key, b.tokens, Long::sum);
                costs.merge(key, b.cost, Long::sum);
            }
        }
        for (List<SoftmaxPlanner.Block> task : plan.tasks) {
            for (SoftmaxPlanner.Block b : task) {
                long key = ((long) b.query.sequence() << 32) | b.query.index();
                double exact = (double) b.query.tokens() * b.cost / costs.get(key);
                assertTrue(b.tokens >= 0 && Math.abs(b.tokens - exact) <= 1, b + ": " + b.tokens + " tokens of "
                        + b.query.tokens() + ", cost " + b.cost + " of " + costs.get(key));
            }
        }
        int merges = 0;
        for (List<Piece> partition : pieces) {
            for (Piece q : partition) {
                long key = ((long) q.sequence() << 32) | q.index();
                assertEquals(q.tokens(), shares.get(key), q + ": its items' token shares");
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

    /**
     * The balancing restated from the class comment, as a naive twin: the units are the (query piece, key piece)
     * pairs of each sequence with a visible pair, in (sequence, query, key) order; target j of the task count is
     * total j / tasks, and its cut is the nearer of the two unit boundaries around it (the earlier on a tie). The
     * plan's tasks must be exactly the runs between those cuts, its items the runs' units grouped by query piece.
     */
    @Test
    void tasksAreTheRunsBetweenTheBoundariesNearestTheTargets() {
        SplittableRandom rnd = new SplittableRandom(21);
        for (int trial = 0; trial < 300; trial++) {
            int n = 1 + rnd.nextInt(4);
            long[] tokens = new long[n];
            long[] weights = new long[n];
            for (int s = 0; s < n; s++) {
                tokens[s] = 1 + rnd.nextInt(rnd.nextBoolean() ? 40 : 700);
                weights[s] = 1 + rnd.nextInt(9);
            }
            long window = rnd.nextBoolean() ? 0 : 1 + rnd.nextInt(300);
            List<List<Piece>> pieces = new PiecePlanner(16 * (1 + rnd.nextInt(8)), 16).plan(tokens);
            int taskCount = 1 + rnd.nextInt(3 * pieces.size() + 2);
            SoftmaxPlanner planner = new SoftmaxPlanner(window);
            SoftmaxPlanner.Plan plan = planner.plan(pieces, weights, taskCount);

            List<Piece[]> units = new ArrayList<>(); // {query piece, key piece}
            List<Long> costs = new ArrayList<>();
            List<Piece> all = new ArrayList<>();
            pieces.forEach(all::addAll);
            for (Piece q : all) {
                for (Piece k : all) {
                    if (k.sequence() == q.sequence() && k.index() <= q.index()
                            && bruteForce(window, q.start(), q.end(), k.start(), k.end()) > 0) {
                        units.add(new Piece[] {q, k});
                        costs.add(bruteForce(window, q.start(), q.end(), k.start(), k.end()) * weights[q.sequence()]);
                    }
                }
            }
            long[] prefix = new long[units.size() + 1];
            for (int i = 0; i < units.size(); i++) {
                prefix[i + 1] = prefix[i] + costs.get(i);
            }
            long total = prefix[units.size()];
            java.util.TreeSet<Integer> cuts = new java.util.TreeSet<>(List.of(0, units.size()));
            for (int j = 1; j < taskCount && total > 0; j++) {
                double target = (double) total * j / taskCount;
                int b = 1;
                while (prefix[b] < target) {
                    b++;
                }
                cuts.add(target - prefix[b - 1] <= prefix[b] - target ? b - 1 : b);
            }
            List<Integer> bounds = new ArrayList<>(cuts);
            String where = "trial " + trial + ": tokens " + java.util.Arrays.toString(tokens) + ", W " + window + ", "
                    + taskCount + " tasks";
            assertEquals(Math.max(0, bounds.size() - 1), plan.tasks.size(), where + ": task count");
            long most = 0;
            long least = Long.MAX_VALUE;
            int items = 0;
            for (int t = 0; t < plan.tasks.size(); t++) {
                List<Piece[]> expected = units.subList(bounds.get(t), bounds.get(t + 1));
                List<Piece[]> got = new ArrayList<>();
                long taskCost = 0;
                for (SoftmaxPlanner.Block b : plan.tasks.get(t)) {
                    long blockCost = 0;
                    for (int k = b.firstKeyPiece; k <= b.lastKeyPiece; k++) {
                        Piece[] u = units.get(bounds.get(t) + got.size());
                        got.add(u);
                        assertEquals(b.query, u[0], where);
                        assertEquals(k, u[1].index(), where);
                        blockCost += costs.get(bounds.get(t) + got.size() - 1);
                    }
                    assertEquals(all.stream().filter(p -> p.sequence() == b.query.sequence() && p.index() == b.firstKeyPiece)
                            .findFirst().orElseThrow().start(), b.keyStart, where);
                    assertEquals(blockCost, b.cost, where + ": " + b);
                    taskCost += blockCost;
                    items++;
                }
                assertEquals(expected.size(), got.size(), where + ": task " + t);
                most = Math.max(most, taskCost);
                least = Math.min(least, taskCost);
            }
            assertEquals(total, plan.totalCost, where);
            assertEquals(most, plan.maxTaskCost, where);
            assertEquals(plan.tasks.isEmpty() ? 0 : least, plan.minTaskCost, where);
            assertEquals(items, plan.items(), where);
        }
    }

    /** A key piece that ends exactly where a window starts is left out; one token more of window takes it in. */
    @Test
    void windowEdgeAtAPieceBoundary() {
        long[] tokens = {192};
        List<List<Piece>> pieces = new PiecePlanner(64, 64).plan(tokens);
        // queries [128, 192): with W = 65 the first sees keys (63, 128], i.e. from 64, so piece 0 ([0, 64)) is not needed
        SoftmaxPlanner.Block last = new SoftmaxPlanner(65).plan(pieces, new long[] {1}, 1).tasks.get(0).get(2); // one item a query piece
        assertEquals(2, last.query.index());
        assertEquals(1, last.firstKeyPiece);
        assertEquals(64, last.keyStart);
        assertEquals(192, last.keyEnd);
        // with W = 66 it sees key 63
        List<SoftmaxPlanner.Block> wider = new SoftmaxPlanner(66).plan(pieces, new long[] {1}, 1).tasks.get(0);
        assertEquals(0, wider.get(wider.size() - 1).firstKeyPiece);
        assertEquals(66, new SoftmaxPlanner(66).window());
        assertEquals("sequence 0 piece 2/3 tokens [128, 192) over key pieces 1..2 [64, 192)", last.toString());
    }

    /**
     * A run whose total cost passes Long.MAX_VALUE is cut as evenly as a small one: 64M tokens of causal softmax
     * at Hq = 64, Dk = Dv = 128 (MiniMax-01's softmax layers) cost 3.7e19 multiply-adds (2^65; about 20 minutes
     * of 64 H100s). The total used to wrap (to 5.5e11, 2^65 + 2^39 in a long) and with it the running sums the
     * cuts compare to their targets: the plan was one task of all 524,800 items, the whole run on one executor.
     */
    @Test
    void aTotalCostPastLongMaxValueIsStillCutEvenly() {
        long[] tokens = {1L << 26};
        List<List<Piece>> pieces = new PiecePlanner(65536, 64).plan(tokens);
        long weight = 64 * (128 + 128);
        SoftmaxPlanner.Plan plan = new SoftmaxPlanner(0).plan(pieces, new long[] {weight}, pieces.size());
        double pairs = 0;
        for (List<Piece> partition : pieces) {
            for (Piece q : partition) {
                pairs += SoftmaxPlanner.pairs(q.start(), q.end(), 0, q.end(), 0);
            }
        }
        assertTrue(pairs * weight > Long.MAX_VALUE, "the test's total passes a long: " + pairs * weight);
        assertEquals(pieces.size(), plan.tasks.size(), "as many tasks as partitions");
        assertTrue(plan.imbalance() >= 1.0 && plan.imbalance() <= 1.01, "max/mean " + plan.imbalance());
        assertEquals(pairs * weight, plan.totalCost, 1e-12 * pairs * weight, "the plan's total, as reported");
        // the progress shares still add up to the tokens
        long shared = 0;
        for (List<SoftmaxPlanner.Block> task : plan.tasks) {
            for (SoftmaxPlanner.Block b : task) {
                shared += b.tokens;
            }
        }
        assertEquals(tokens[0], shared);
    }

    /** More tasks than units gives one task a unit, none empty; no pieces give an empty plan with sane figures. */
    @Test
    void fewUnitsAndNone() {
        List<List<Piece>> one = new PiecePlanner(64, 64).plan(new long[] {10});
        SoftmaxPlanner planner = new SoftmaxPlanner(0);
        SoftmaxPlanner.Plan plan = planner.plan(one, new long[] {3}, 4);
        assertEquals(1, plan.tasks.size());
        assertEquals(1, plan.items());
        assertEquals(55 * 3, plan.totalCost); // 10 queries see 1 + 2 + ... + 10 keys
        assertEquals(plan.totalCost, plan.minTaskCost);
        assertEquals(1.0, plan.imbalance());
        // a target halfway between two boundaries takes the earlier: three units of 1 in 2 tasks are 1 + 2, not 2 + 1
        SoftmaxPlanner.Plan tie = planner.plan(new PiecePlanner(64, 64).plan(new long[] {1, 1, 1}), new long[] {1, 1, 1}, 2);
        assertEquals(List.of(1, 2), tie.tasks.stream().map(List::size).toList());
        SoftmaxPlanner.Plan empty = planner.plan(List.of(), new long[0], 3);
        assertEquals(0, empty.tasks.size());
        assertEquals(0, empty.items());
        assertEquals(0, empty.minTaskCost);
        assertEquals(0.0, empty.meanTaskCost());
        assertEquals(1.0, empty.imbalance(), "an empty plan is even, not NaN");
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> planner.plan(one, new long[] {1}, 0));
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> new SoftmaxPlanner(-1));
    }
}
