package dev.lightning.attention.plan;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Plans partitions of about {@code partitionTokens} tokens. Sequences are taken in order; one
 * that fits a partition is never split (many short sequences share a partition, next-fit), one
 * longer than a partition is cut into pieces of exactly the partition size, each starting at a
 * multiple of the chunk size, so the blocks of a split run are the blocks of an unsplit one.
 * The last, shorter piece of a long sequence may share its partition with the sequences after it.
 */
public final class PiecePlanner {
    private final long partitionTokens;
    private final int chunkSize;

    /**
     * @param partitionTokens target tokens per partition; rounded down to a multiple of the chunk
     *                        size, and at least one chunk
     * @param chunkSize       block size of the kernels; piece starts are multiples of it
     */
    public PiecePlanner(long partitionTokens, int chunkSize) {
        if (chunkSize < 1) {
            throw new IllegalArgumentException("chunk size must be >= 1, got " + chunkSize);
        }
        if (partitionTokens < 1) {
            throw new IllegalArgumentException("partition tokens must be >= 1, got " + partitionTokens);
        }
        this.chunkSize = chunkSize;
        this.partitionTokens = Math.max(chunkSize, partitionTokens - partitionTokens % chunkSize);
    }

    /** Tokens per partition after rounding to the chunk size. */
    public long partitionTokens() {
        return partitionTokens;
    }

    /**
     * @param sequenceTokens tokens of each sequence, in order; every one at least 1
     * @return the partitions, each a non-empty list of pieces in sequence order
     */
    public List<List<Piece>> plan(long[] sequenceTokens) {
        List<List<Piece>> partitions = new ArrayList<>();
        List<Piece> current = new ArrayList<>();
        long used = 0;
        for (int s = 0; s < sequenceTokens.length; s++) {
            long t = sequenceTokens[s];
            if (t < 1) {
                throw new IllegalArgumentException("sequence " + s + " has " + t + " tokens; every sequence needs at least 1");
            }
            if (t <= partitionTokens) {
                if (used + t > partitionTokens) {
                    partitions.add(current);
                    current = new ArrayList<>();
                    used = 0;
                }
                current.add(new Piece(s, 0, 1, 0, t));
                used += t;
                continue;
            }
            if (used > 0) {
                partitions.add(current);
                current = new ArrayList<>();
                used = 0;
            }
            long count = (t + partitionTokens - 1) / partitionTokens;
            if (count > Integer.MAX_VALUE) {
                throw new IllegalArgumentException("sequence " + s + " of " + t + " tokens would need " + count
                        + " pieces; raise the partition size");
            }
            for (int p = 0; p < count; p++) {
                long start = p * partitionTokens;
                long end = Math.min(t, start + partitionTokens);
                current.add(new Piece(s, p, (int) count, start, end));
                used += end - start;
                if (used >= partitionTokens) {
                    partitions.add(current);
                    current = new ArrayList<>();
                    used = 0;
                }
            }
        }
        if (!current.isEmpty()) {
            partitions.add(current);
        }
        List<List<Piece>> out = new ArrayList<>(partitions.size());
        for (List<Piece> p : partitions) {
            out.add(Collections.unmodifiableList(p));
        }
        return Collections.unmodifiableList(out);
    }

    /**
     * Packs consecutive partitions into at most {@code maxTasks} groups of about equal tokens, for
     * plans with more partitions than a pass should have tasks: a task then computes the pieces
     * of its group one after the other (the job stages a task's consecutive pieces of a sequence
     * together). Partition i goes to group floor((tokens before it + half its tokens) * maxTasks /
     * total tokens), so the groups are consecutive, in order, and none is empty. A plan of at most
     * {@code maxTasks} partitions is returned as it is.
     *
     * @param partitions a plan, as {@link #plan} returns it
     * @param maxTasks   the most groups, at least 1
     */
    public static List<List<Piece>> pack(List<List<Piece>> partitions, int maxTasks) {
        if (maxTasks < 1) {
            throw new IllegalArgumentException("tasks per pass must be >= 1, got " + maxTasks);
        }
        if (partitions.size() <= maxTasks) {
            return partitions;
        }
        long total = 0;
        for (List<Piece> p : partitions) {
            total += tokens(p);
        }
        List<List<Piece>> groups = new ArrayList<>();
        List<Piece> current = new ArrayList<>();
        long before = 0;
        long group = -1;
        for (List<Piece> p : partitions) {
            long t = tokens(p);
            // in double: monotone in `before` (so groups stay consecutive), and no overflow of tokens * tasks
            long g = Math.min(maxTasks - 1, (long) ((before + t / 2) / (double) total * maxTasks));
            if (g != group && !current.isEmpty()) {
                groups.add(Collections.unmodifiableList(current));
                current = new ArrayList<>();
            }
            group = g;
            current.addAll(p);
            before += t;
        }
        groups.add(Collections.unmodifiableList(current));
        return Collections.unmodifiableList(groups);
    }

    private static long tokens(List<Piece> partition) {
        long t = 0;
        for (Piece p : partition) {
            t += p.tokens();
        }
        return t;
    }

    public int chunkSize() {
        return chunkSize;
    }
}
