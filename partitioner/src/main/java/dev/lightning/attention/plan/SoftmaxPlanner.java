package dev.lightning.attention.plan;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * Plans the tasks of causal softmax attention over the pieces {@link PiecePlanner} cut.
 *
 * <p>Query piece q of a sequence needs key piece k for every k <= q whose tokens it can see (with
 * a window W, query t sees keys (t - W, t], so only the last few key pieces). A unit is one such
 * (query piece, key piece) block; its cost is the number of (query, key) pairs it computes,
 * {@link #pairs}, times the sequence's weight (Hq (Dk + Dv): the multiply-adds per pair). The
 * diagonal block is about half a full one; without a window piece q has q full blocks and one
 * diagonal, so cutting a sequence into one task per query piece would give the last task about
 * 2n times the first's work.
 *
 * <p>Balancing: the units are listed in a fixed order (sequence, query piece, key piece, all
 * ascending) and the list is cut into {@code taskCount} contiguous runs at the unit boundaries
 * nearest to the multiples of total / taskCount. A run therefore differs from the mean by less
 * than one unit on each side; for one sequence of n equal pieces without a window that is a
 * max/mean of at most 1 + 4/n (n = 16: at most 1.25; 1.06 as planned, 8.5 blocks against a mean of 8, see the test). Within a
 * run, consecutive units of one query piece form one work item: a (query piece, range of key
 * pieces) block. A query piece whose whole key range lands in one item is {@link Block#whole}: its
 * task writes its rows directly; the others are merged from their items' partials in ascending key
 * order. Deterministic: the same input and settings give the same plan, so a retried task
 * computes the same item.
 */
public final class SoftmaxPlanner {
    /** Stands for "no window": larger than any sequence. */
    private static final long UNBOUNDED = Long.MAX_VALUE / 4;

    private final long window;

    /** @param window W >= 1 (query t sees keys (t - W, t]), or 0 for none */
    public SoftmaxPlanner(long window) {
        if (window < 0) {
            throw new IllegalArgumentException("window must be >= 1 tokens or 0 for none, got " + window);
        }
        this.window = window;
    }

    /**
     * One work item: the queries of piece {@link #query} over the keys of pieces
     * {@code firstKeyPiece..lastKeyPiece} of the same sequence ({@link #keyStart} to {@link #keyEnd}).
     */
    public static final class Block implements Serializable {
        private static final long serialVersionUID = 1L;
        public final Piece query;
        public final int firstKeyPiece;
        public final int lastKeyPiece;
        public final long keyStart;
        public final long keyEnd;
        /** Weighted pairs of this item. */
        public final long cost;
        /** Whether this item covers every key piece the query piece sees: no merge is needed. */
        public final boolean whole;
        /**
         * This item's share of the query piece's tokens, for progress and rates: the piece's tokens
         * in proportion to the item's cost, rounded so that the shares of its items add up to its
         * tokens (each item computes all its query rows, but over part of their keys).
         */
        public final long tokens;

        Block(Piece query, int firstKeyPiece, int lastKeyPiece, long keyStart, long keyEnd, long cost, boolean whole,
              long tokens) {
            this.query = query;
            this.firstKeyPiece = firstKeyPiece;
            this.lastKeyPiece = lastKeyPiece;
            this.keyStart = keyStart;
            this.keyEnd = keyEnd;
            this.cost = cost;
            this.whole = whole;
            this.tokens = tokens;
        }

        @Override
        public String toString() {
            return query + " over key pieces " + firstKeyPiece + ".." + lastKeyPiece + " [" + keyStart + ", " + keyEnd
                    + ")";
        }
    }

    /** The tasks, each a list of items, and how even their costs are. */
    public static final class Plan {
        public final List<List<Block>> tasks;
        /** Per split query piece that needs a merge, its items in ascending key order (sequence, piece order). */
        public final List<List<Block>> merges;
        /**
         * Weighted pairs of the whole plan, as a double: a run's total passes Long.MAX_VALUE (64M tokens of causal
         * softmax at Hq = 64, D = 128 cost 2^65), a task's or a unit's does not.
         */
        public final double totalCost;
        public final long maxTaskCost;
        public final long minTaskCost;

        Plan(List<List<Block>> tasks, List<List<Block>> merges) {
            this.tasks = tasks;
            this.merges = merges;
            double total = 0;
            long max = 0;
            long min = Long.MAX_VALUE;
            for (List<Block> t : tasks) {
                long c = 0;
                for (Block b : t) {
                    c += b.cost;
                }
                total += c;
                max = Math.max(max, c);
                min = Math.min(min, c);
            }
            this.totalCost = total;
            this.maxTaskCost = max;
            this.minTaskCost = tasks.isEmpty() ? 0 : min;
        }

        public double meanTaskCost() {
            return tasks.isEmpty() ? 0 : totalCost / tasks.size();
        }

        /** max / mean task cost: 1 is perfectly even. */
        public double imbalance() {
            double mean = meanTaskCost();
            return mean > 0 ? maxTaskCost / mean : 1;
        }

        public int items() {
            int n = 0;
            for (List<Block> t : tasks) {
                n += t.size();
            }
            return n;
        }
    }

    /**
     * The number of pairs (t, j) with t in [qStart, qEnd), j in [kStart, kEnd) and j in
     * (t - W, t] (no lower bound without a window), in closed form: for each t the count is
     * min(kEnd, t + 1) - max(kStart, t - W + 1) clamped at 0, a piecewise linear function of t whose
     * pieces end where either min or max switches or the count reaches 0 (t = kStart - 1,
     * kEnd - 1, kStart + W - 1, kEnd + W - 1); each piece is an arithmetic series.
     */
    public long pairs(long qStart, long qEnd, long kStart, long kEnd) {
        return pairs(qStart, qEnd, kStart, kEnd, window);
    }

    /**
     * {@link #pairs(long, long, long, long)} for any window W ({@code 0}: none). The one count of
     * causal softmax work: the engine's {@code SoftmaxSpec.visiblePairs} is this too.
     */
    public static long pairs(long qStart, long qEnd, long kStart, long kEnd, long window) {
        long w = window == 0 ? UNBOUNDED : window;
        long[] cuts = {qStart, qEnd, kStart, kEnd, kStart + w, kEnd + w};
        java.util.Arrays.sort(cuts);
        long total = 0;
        for (int i = 0; i + 1 < cuts.length; i++) {
            long a = Math.max(cuts[i], qStart);
            long b = Math.min(cuts[i + 1], qEnd); // t in [a, b): count is linear there
            if (a >= b) {
                continue;
            }
            long first = count(a, kStart, kEnd, w);
            long last = count(b - 1, kStart, kEnd, w);
            if (first < 0 || last < 0) {
                // the count crosses 0 only at a cut, so one end below 0 means the whole piece is
                if (first > 0 || last > 0) {
                    throw new IllegalStateException("pair count changes sign inside [" + a + ", " + b + ")");
                }
                continue;
            }
            total += (first + last) * (b - a) / 2;
        }
        return total;
    }

    private static long count(long t, long kStart, long kEnd, long w) {
        return Math.min(kEnd, t + 1) - Math.max(kStart, t - w + 1);
    }

    /**
     * @param pieces    the pieces, by partition, as {@link PiecePlanner#plan} cut them
     * @param weights   per sequence, the cost of one (query, key) pair (e.g. Hq (Dk + Dv)); at least 1
     * @param taskCount how many tasks to cut the work into (the plan may have fewer when there are
     *                  fewer units)
     */
    public Plan plan(List<List<Piece>> pieces, long[] weights, int taskCount) {
        if (taskCount < 1) {
            throw new IllegalArgumentException("task count must be >= 1, got " + taskCount);
        }
        List<List<Piece>> bySequence = new ArrayList<>();
        for (List<Piece> partition : pieces) {
            for (Piece p : partition) {
                while (bySequence.size() <= p.sequence()) {
                    bySequence.add(new ArrayList<>());
                }
                bySequence.get(p.sequence()).add(p);
            }
        }
        // the units, in order, with their cost; units[i] = {sequence, query piece, key piece}
        List<int[]> units = new ArrayList<>();
        List<Long> costs = new ArrayList<>();
        int[] firstKey = null;
        List<int[]> firstKeys = new ArrayList<>();
        for (int s = 0; s < bySequence.size(); s++) {
            List<Piece> seq = bySequence.get(s);
            seq.sort((a, b) -> Integer.compare(a.index(), b.index()));
            firstKey = new int[seq.size()];
            for (Piece q : seq) {
                long lo = window == 0 ? 0 : Math.max(0, q.start() - window + 1);
                int k = q.index();
                while (k > 0 && seq.get(k - 1).end() > lo) {
                    k--;
                }
                firstKey[q.index()] = k;
                for (; k <= q.index(); k++) {
                    Piece kp = seq.get(k);
                    long c = pairs(q.start(), q.end(), kp.start(), kp.end());
                    units.add(new int[] {s, q.index(), k});
                    costs.add(Math.multiplyExact(c, weights[s]));
                }
            }
            firstKeys.add(firstKey);
        }
        // the sums in double: a unit's cost fits a long, the run's total need not (2^65 for 64M tokens at Hq = 64,
        // D = 128), and a wrapped total or prefix put every cut at the start: the whole run in one task. Exact as
        // longs up to 2^53, so smaller plans cut where they did
        double total = 0;
        // per unit, the cost of its query piece's units before it, and of all of them (by unit)
        double[] costBefore = new double[units.size()];
        double[] queryCost = new double[units.size()];
        for (int i = 0, first = 0; i < units.size(); i++) {
            if (i > 0 && (units.get(i)[0] != units.get(i - 1)[0] || units.get(i)[1] != units.get(i - 1)[1])) {
                first = i;
            }
            costBefore[i] = i == first ? 0 : costBefore[i - 1] + costs.get(i - 1);
            total += costs.get(i);
        }
        for (int i = units.size() - 1; i >= 0; i--) {
            boolean last = i + 1 == units.size() || units.get(i + 1)[0] != units.get(i)[0]
                    || units.get(i + 1)[1] != units.get(i)[1];
            queryCost[i] = last ? costBefore[i] + costs.get(i) : queryCost[i + 1];
        }
        // cut before unit i where the prefix sum is nearest to total * j / taskCount
        List<Integer> cuts = new ArrayList<>();
        cuts.add(0);
        double prefix = 0;
        int j = 1;
        for (int i = 0; i < units.size() && j < taskCount; i++) {
            double next = prefix + costs.get(i);
            double target = total * j / taskCount;
            while (j < taskCount && next >= target) {
                // the cut before unit i (prefix) or after it (next), whichever is nearer the target
                int at = target - prefix <= next - target ? i : i + 1;
                if (at > cuts.get(cuts.size() - 1)) {
                    cuts.add(at);
                }
                j++;
                target = total * j / taskCount;
            }
            prefix = next;
        }
        cuts.add(units.size());
        List<List<Block>> tasks = new ArrayList<>();
        List<List<Block>> mergesInOrder = new ArrayList<>();
        java.util.Map<Long, List<Block>> byQuery = new java.util.TreeMap<>();
        for (int c = 0; c + 1 < cuts.size(); c++) {
            int from = cuts.get(c);
            int to = cuts.get(c + 1);
            if (from >= to) {
                continue;
            }
            List<Block> task = new ArrayList<>();
            for (int i = from; i < to; ) {
                int[] u = units.get(i);
                int end = i;
                long cost = 0;
                while (end < to && units.get(end)[0] == u[0] && units.get(end)[1] == u[1]) {
                    cost += costs.get(end);
                    end++;
                }
                int lastKey = units.get(end - 1)[2];
                List<Piece> seq = bySequence.get(u[0]);
                Piece q = seq.get(u[1]);
                boolean whole = u[2] == firstKeys.get(u[0])[u[1]] && lastKey == u[1];
                long tokens = share(q.tokens(), costBefore[i] + cost, queryCost[i])
                        - share(q.tokens(), costBefore[i], queryCost[i]);
                Block b = new Block(q, u[2], lastKey, seq.get(u[2]).start(), seq.get(lastKey).end(), cost, whole,
                        tokens);
                task.add(b);
                if (!whole) {
                    byQuery.computeIfAbsent(((long) u[0] << 32) | u[1], x -> new ArrayList<>()).add(b);
                }
                i = end;
            }
            tasks.add(Collections.unmodifiableList(task));
        }
        for (List<Block> m : byQuery.values()) {
            mergesInOrder.add(Collections.unmodifiableList(m)); // items were added in ascending key order
        }
        return new Plan(Collections.unmodifiableList(tasks), Collections.unmodifiableList(mergesInOrder));
    }

    /** floor(tokens * cost / total), exact at both ends (all of a piece whose units cost nothing). */
    private static long share(long tokens, double cost, double total) {
        return cost >= total ? tokens : (long) Math.floor(tokens * cost / total);
    }

    public long window() {
        return window;
    }
}
