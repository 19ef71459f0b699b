package dev.lightning.attention.plan;

import java.io.Serializable;

/**
 * Tokens {@code [start, end)} of one sequence: the unit a task computes. Piece {@code index} of
 * {@code count}; a sequence's pieces are consecutive, start at multiples of the chunk size, and
 * cover it exactly. Immutable.
 */
public final class Piece implements Serializable {
    private static final long serialVersionUID = 1L;

    private final int sequence;
    private final int index;
    private final int count;
    private final long start;
    private final long end;

    public Piece(int sequence, int index, int count, long start, long end) {
        if (sequence < 0 || index < 0 || count < 1 || index >= count || start < 0 || end <= start) {
            throw new IllegalArgumentException("bad piece " + index + "/" + count + " [" + start + ", " + end
                    + ") of sequence " + sequence);
        }
        this.sequence = sequence;
        this.index = index;
        this.count = count;
        this.start = start;
        this.end = end;
    }

    /** Index of the sequence in the plan's input order. */
    public int sequence() {
        return sequence;
    }

    /** Position of this piece within its sequence, 0-based. */
    public int index() {
        return index;
    }

    /** How many pieces the sequence has. */
    public int count() {
        return count;
    }

    public long start() {
        return start;
    }

    public long end() {
        return end;
    }

    public int tokens() {
        return Math.toIntExact(end - start);
    }

    public boolean isFirst() {
        return index == 0;
    }

    public boolean isLast() {
        return index == count - 1;
    }

    /** Whether the sequence is split, so its pieces need the cross-piece scan. */
    public boolean isSplit() {
        return count > 1;
    }

    @Override
    public boolean equals(Object o) {
        if (!(o instanceof Piece)) {
            return false;
        }
        Piece p = (Piece) o;
        return sequence == p.sequence && index == p.index && count == p.count && start == p.start && end == p.end;
    }

    @Override
    public int hashCode() {
        return (sequence * 31 + index) * 31 + Long.hashCode(start);
    }

    @Override
    public String toString() {
        return "sequence " + sequence + " piece " + index + "/" + count + " tokens [" + start + ", " + end + ")";
    }
}
