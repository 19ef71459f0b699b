package dev.lightning.attention.plan;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PiecePlannerTest {

    @Test
    void shortSequencesSharePartitionsAndLongOnesSpanMany() {
        PiecePlanner planner = new PiecePlanner(1000, 64);
        assertEquals(960, planner.partitionTokens());
        List<List<Piece>> plan = planner.plan(new long[] {100, 200, 300, 5000, 10, 960, 1});
        // 100+200+300 share; 5000 -> 5 full pieces + 200; the 200 remainder shares with 10;
        // 960 fills one; 1 gets its own.
        assertEquals(List.of(0, 1, 2), sequencesOf(plan.get(0)));
        for (int p = 1; p <= 5; p++) {
            assertEquals(1, plan.get(p).size());
            assertEquals(960, plan.get(p).get(0).tokens());
        }
        assertEquals(List.of(3, 4), sequencesOf(plan.get(6)));
        assertEquals(List.of(5), sequencesOf(plan.get(7)));
        assertEquals(List.of(6), sequencesOf(plan.get(8)));
        assertEquals(9, plan.size());
        assertEquals(200, plan.get(6).get(0).tokens());
        assertTrue(plan.get(6).get(0).isLast());
    }

    private static List<Integer> sequencesOf(List<Piece> partition) {
        List<Integer> out = new ArrayList<>();
        for (Piece p : partition) {
            out.add(p.sequence());
        }
        return out;
    }

    /** On random inputs: pieces cover every sequence exactly, in order, chunk-aligned, within budget. */
    @Test
    void piecesCoverEverySequenceInOrder() {
        SplittableRandom rnd = new SplittableRandom(5);
        for (int trial = 0; trial < 200; trial++) {
            int chunk = 1 + rnd.nextInt(100);
            long budget = 1 + rnd.nextInt(5000);
            long[] lengths = new long[1 + rnd.nextInt(30)];
            for (int i = 0; i < lengths.length; i++) {
                lengths[i] = 1 + rnd.nextInt(rnd.nextBoolean() ? 50 : 20000);
            }
            PiecePlanner planner = new PiecePlanner(budget, chunk);
            long[] covered = new long[lengths.length];
            int lastSequence = -1;
            for (List<Piece> partition : planner.plan(lengths)) {
                assertTrue(!partition.isEmpty());
                long tokens = 0;
                for (Piece p : partition) {
                    assertTrue(p.sequence() >= lastSequence, "sequences in order");
                    lastSequence = p.sequence();
                    assertEquals(covered[p.sequence()], p.start(), "pieces are consecutive");
                    assertEquals(0, p.start() % chunk, "pieces start at chunk multiples");
                    covered[p.sequence()] = p.end();
                    tokens += p.tokens();
                    assertEquals(p.isLast(), p.end() == lengths[p.sequence()]);
                }
                assertTrue(tokens <= planner.partitionTokens() || partition.size() == 1);
            }
            for (int i = 0; i < lengths.length; i++) {
                assertEquals(lengths[i], covered[i], "sequence " + i + " covered");
            }
        }
    }

    @Test
    void rejectsEmptySequences() {
        assertThrows(IllegalArgumentException.class, () -> new PiecePlanner(10, 2).plan(new long[] {3, 0}));
    }

    /** Packing keeps every piece once, in order, in at most the asked number of groups of about equal tokens. */
    @Test
    void packsManyPartitionsIntoBoundedGroups() {
        PiecePlanner planner = new PiecePlanner(64, 64);
        // 100,000 pieces of one sequence (the last one short), then short sequences sharing partitions
        long[] lengths = new long[40];
        lengths[0] = 64L * 99_999 + 17;
        SplittableRandom rnd = new SplittableRandom(5);
        for (int i = 1; i < lengths.length; i++) {
            lengths[i] = 1 + rnd.nextInt(64);
        }
        List<List<Piece>> plan = planner.plan(lengths);
        for (int max : new int[] {1, 7, 1024, 4096}) {
            List<List<Piece>> groups = PiecePlanner.pack(plan, max);
            assertTrue(groups.size() <= max && groups.size() >= Math.min(max, plan.size()) / 2,
                    max + " tasks: " + groups.size() + " groups");
            List<Piece> flat = new ArrayList<>();
            long most = 0;
            long total = 0;
            for (List<Piece> g : groups) {
                assertTrue(!g.isEmpty(), "no empty group");
                flat.addAll(g);
                long t = g.stream().mapToLong(Piece::tokens).sum();
                most = Math.max(most, t);
                total += t;
            }
            List<Piece> expected = new ArrayList<>();
            plan.forEach(expected::addAll);
            assertEquals(expected, flat, "every piece once, in plan order");
            // about equal: none more than twice the mean (plus one partition)
            assertTrue(most <= 2 * total / groups.size() + 64, max + " tasks: largest group " + most);
        }
        List<List<Piece>> small = planner.plan(new long[] {1000});
        assertTrue(PiecePlanner.pack(small, 1024) == small, "a plan within the bound stays as it is");
        assertThrows(IllegalArgumentException.class, () -> PiecePlanner.pack(small, 0));
    }

    /** Each edge of the planner's rules: a partition filled exactly, a sequence exactly one partition long, the rounding. */
    @Test
    void partitionEdges() {
        PiecePlanner one = new PiecePlanner(8, 1);
        assertEquals(1, one.chunkSize());
        // 3 + 5 fills a partition exactly and shares it; 3 + 6 does not fit
        assertEquals(List.of(List.of(0, 1)), one.plan(new long[] {3, 5}).stream().map(PiecePlannerTest::sequencesOf).toList());
        assertEquals(List.of(List.of(0), List.of(1)),
                one.plan(new long[] {3, 6}).stream().map(PiecePlannerTest::sequencesOf).toList());
        // a sequence of exactly one partition is one unsplit piece; one token more makes two pieces
        List<List<Piece>> exact = one.plan(new long[] {8, 1});
        assertEquals(new Piece(0, 0, 1, 0, 8), exact.get(0).get(0));
        assertEquals(List.of(List.of(0), List.of(1)), exact.stream().map(PiecePlannerTest::sequencesOf).toList());
        List<List<Piece>> over = one.plan(new long[] {9});
        assertEquals(List.of(List.of(new Piece(0, 0, 2, 0, 8)), List.of(new Piece(0, 1, 2, 8, 9))), over);
        // rounding: down to a chunk multiple, but never below one chunk; one token a partition is allowed
        assertEquals(64, new PiecePlanner(127, 64).partitionTokens());
        assertEquals(64, new PiecePlanner(10, 64).partitionTokens());
        assertEquals(1, new PiecePlanner(1, 1).partitionTokens());
        assertEquals(List.of(List.of(new Piece(0, 0, 2, 0, 1)), List.of(new Piece(0, 1, 2, 1, 2))),
                new PiecePlanner(1, 1).plan(new long[] {2}));
        assertThrows(IllegalArgumentException.class, () -> new PiecePlanner(0, 1));
        assertThrows(IllegalArgumentException.class, () -> new PiecePlanner(8, 0));
    }

    /**
     * The packing rule as its javadoc states it, on a case worked by hand: partition i goes to group
     * floor((tokens before it + half its tokens) * maxTasks / total).
     */
    @Test
    void packFollowsTheStatedRule() {
        PiecePlanner planner = new PiecePlanner(10, 1);
        // partitions of 10, 10, 10, 10 tokens (one sequence of 40), packed into 2 groups:
        // (0 + 5) 2 / 40 = 0.25, (10 + 5) 2 / 40 = 0.75, 1.25, 1.75 -> groups {0, 1}, {2, 3}
        List<List<Piece>> even = planner.plan(new long[] {40});
        assertEquals(List.of(2, 2), PiecePlanner.pack(even, 2).stream().map(List::size).toList());
        // 10, 10, 10, 10, 2 + 3 + 5 (three sequences sharing one partition), packed into 3 groups of total 50:
        // (0+5) 3/50 = 0.3, 0.9, 1.5, 2.1, (40+5) 3/50 = 2.7 -> partitions {0, 1}, {2}, {3, 4}
        List<List<Piece>> mixed = planner.plan(new long[] {40, 2, 3, 5});
        assertEquals(5, mixed.size());
        List<List<Piece>> groups = PiecePlanner.pack(mixed, 3);
        assertEquals(List.of(2, 1, 4), groups.stream().map(List::size).toList());
        assertEquals(List.of(20L, 10L, 20L), groups.stream().map(g -> g.stream().mapToLong(Piece::tokens).sum()).toList());
        // with as many tasks as partitions the plan is returned as it is
        assertTrue(PiecePlanner.pack(mixed, 5) == mixed);
    }
}
