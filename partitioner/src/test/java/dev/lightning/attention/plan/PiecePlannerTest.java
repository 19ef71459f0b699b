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
}
