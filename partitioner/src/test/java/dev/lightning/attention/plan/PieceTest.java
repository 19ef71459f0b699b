package dev.lightning.attention.plan;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** A piece's bounds at each edge, its position flags and its identity (pieces are map keys in the job). */
class PieceTest {

    @Test
    void acceptsEachBoundAtItsEdgeAndRefusesOnePast() {
        // the smallest valid piece in every field: sequence 0, piece 0 of 1, one token at 0
        Piece p = new Piece(0, 0, 1, 0, 1);
        assertEquals(1, p.tokens());
        // the last piece of a count, and a piece ending one token after it starts
        assertEquals(3, new Piece(2, 3, 4, 7, 8).index());
        assertThrows(IllegalArgumentException.class, () -> new Piece(-1, 0, 1, 0, 1), "sequence < 0");
        assertThrows(IllegalArgumentException.class, () -> new Piece(0, -1, 1, 0, 1), "index < 0");
        assertThrows(IllegalArgumentException.class, () -> new Piece(0, 0, 0, 0, 1), "count < 1");
        assertThrows(IllegalArgumentException.class, () -> new Piece(0, 4, 4, 0, 1), "index == count");
        assertThrows(IllegalArgumentException.class, () -> new Piece(0, 0, 1, -1, 1), "start < 0");
        assertThrows(IllegalArgumentException.class, () -> new Piece(0, 0, 1, 5, 5), "end == start");
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Piece(3, 1, 2, 9, 4));
        assertEquals("bad piece 1/2 [9, 4) of sequence 3", e.getMessage());
    }

    @Test
    void positionFlagsFollowIndexAndCount() {
        Piece only = new Piece(0, 0, 1, 0, 10);
        assertTrue(only.isFirst());
        assertTrue(only.isLast());
        assertFalse(only.isSplit());
        Piece first = new Piece(0, 0, 3, 0, 64);
        Piece middle = new Piece(0, 1, 3, 64, 128);
        Piece last = new Piece(0, 2, 3, 128, 150);
        assertTrue(first.isFirst() && !first.isLast() && first.isSplit());
        assertTrue(!middle.isFirst() && !middle.isLast() && middle.isSplit());
        assertTrue(!last.isFirst() && last.isLast() && last.isSplit());
        assertEquals(3, last.count());
        assertEquals(22, last.tokens());
        assertEquals("sequence 0 piece 2/3 tokens [128, 150)", last.toString());
    }

    @Test
    void equalByEveryFieldAndHashedConsistently() {
        Piece p = new Piece(4, 1, 3, 64, 128);
        Piece same = new Piece(4, 1, 3, 64, 128);
        assertEquals(p, same);
        assertEquals(p.hashCode(), same.hashCode());
        assertNotEquals(p, new Piece(5, 1, 3, 64, 128), "sequence");
        assertNotEquals(p, new Piece(4, 0, 3, 64, 128), "index");
        assertNotEquals(p, new Piece(4, 1, 2, 64, 128), "count");
        assertNotEquals(p, new Piece(4, 1, 3, 0, 128), "start");
        assertNotEquals(p, new Piece(4, 1, 3, 64, 127), "end");
        assertNotEquals(p, (Object) "sequence 4 piece 1/3 tokens [64, 128)", "another type");
        // the hash spreads pieces of one sequence, and of neighbouring sequences
        assertNotEquals(p.hashCode(), new Piece(4, 2, 3, 128, 192).hashCode());
        assertNotEquals(p.hashCode(), new Piece(5, 1, 3, 64, 128).hashCode());
    }
}
