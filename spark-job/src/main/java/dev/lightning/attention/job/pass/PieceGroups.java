package dev.lightning.attention.job.pass;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * The groups of one sequence's pieces that were staged together: consecutive pieces of one
 * sequence computed by one task of a pass ({@link PieceItem#runs}), which write one staged file and
 * one marker between them instead of one of each per piece. Piece j of the sequence lies in the
 * group whose range [first, last] holds it. The driver builds the groups from the same task lists
 * it hands to the pass, so a reader of the staged files (the scan, the checksum results) finds
 * each piece where its task put it. Immutable; two ints per group.
 */
final class PieceGroups implements Serializable {
    private static final long serialVersionUID = 1L;
    /** First piece of each group, increasing. */
    private final int[] first;
    /** Last piece of each group (inclusive). */
    private final int[] last;

    private PieceGroups(int[] first, int[] last) {
        this.first = first;
        this.last = last;
    }

    /** Collects the groups of one sequence, in any order; they must not overlap. */
    static final class Builder {
        private final List<int[]> ranges = new ArrayList<>();

        Builder add(int firstPiece, int lastPiece) {
            if (lastPiece < firstPiece) {
                throw new IllegalArgumentException("a group of pieces " + firstPiece + ".." + lastPiece);
            }
            ranges.add(new int[] {firstPiece, lastPiece});
            return this;
        }

        PieceGroups build() {
            ranges.sort((a, b) -> Integer.compare(a[0], b[0]));
            int[] f = new int[ranges.size()];
            int[] l = new int[ranges.size()];
            for (int i = 0; i < f.length; i++) {
                f[i] = ranges.get(i)[0];
                l[i] = ranges.get(i)[1];
                if (i > 0 && f[i] <= l[i - 1]) {
                    throw new IllegalArgumentException("groups of pieces overlap: " + f[i - 1] + ".." + l[i - 1]
                            + " and " + f[i] + ".." + l[i]);
                }
            }
            return new PieceGroups(f, l);
        }
    }

    /** The index of the group holding piece {@code piece}; fails when no group does. */
    int groupOf(int piece) {
        int i = Arrays.binarySearch(first, piece);
        if (i < 0) {
            i = -i - 2; // the last group starting before the piece
        }
        if (i < 0 || piece > last[i]) {
            throw new IllegalStateException("piece " + piece + " is in no staged group (groups " + this + ")");
        }
        return i;
    }

    int first(int group) {
        return first[group];
    }

    int last(int group) {
        return last[group];
    }

    int size() {
        return first.length;
    }

    @Override
    public String toString() {
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < first.length && i < 8; i++) {
            b.append(i == 0 ? "" : ", ").append(first[i]).append("..").append(last[i]);
        }
        return b.append(first.length > 8 ? ", ... (" + first.length + " groups)" : "").toString();
    }
}
