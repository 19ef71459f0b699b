package dev.lightning.attention.job.pass;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;

import java.io.IOException;
import java.io.Serializable;
import java.util.ArrayList;
import java.util.List;

/**
 * The scan of a split sequence, cut into blocks so that no task touches more than about
 * {@link #blockSize} states however many pieces the sequence has, and the order of its stages.
 *
 * <p>The math. A sequence of P pieces has M = P - 1 elements e_i = (n_i, L_i), i &lt; M: the
 * tokens of piece i and its local state from zero (pass 1; S and, normalizing, z). Piece p starts
 * from
 * <pre>
 *   incoming(0)     = c                              the file's initial_state (and initial_normalizer), or zero
 *   incoming(p + 1) = lambda^(n_p) incoming(p) + L_p  per head, in float32: {@link LightningState#then}
 * </pre>
 * The combine (S_a, n_a) (+) (S_b, n_b) = (lambda^(n_b) S_a + S_b, n_a + n_b) is associative, so
 * incoming(j) = c (+) e_0 (+) ... (+) e_(j-1) may be grouped freely, equal up to float32 rounding.
 *
 * <p>The blocked scan with blocks of B. At each level L the elements x_0..x_(m-1) are to be
 * turned into their prefixes y_j = c (+) x_0 (+) ... (+) x_(j-1), j = 1..m. At level 0 the
 * elements are the e_i and y_j = incoming(j).
 * <ul>
 *   <li>A level of m &lt;= B elements is the top: one task sweeps its one block from c, in order
 *       (for M &lt;= B this is the sequential scan itself, and the whole scan).
 *   <li>Otherwise its elements fall into K = ceil(m / B) blocks of B, the last possibly shorter.
 *       <b>Up:</b> every block but the last is summarized, s_b = x_(bB) (+) ... (+) x_(bB+B-1)
 *       (folded from its first element in order: its state from zero over its tokens). The K - 1
 *       summaries are the elements of level L + 1, whose prefixes Y_b = c (+) s_0 (+) ... (+)
 *       s_(b-1) are the carries into the blocks of level L (computed there, recursively).
 *       <b>Down:</b> block b is swept from its carry (c for b = 0, Y_b above), in order:
 *       y_(bB+i+1) = carry (+) x_(bB) (+) ... (+) x_(bB+i).
 * </ul>
 * Every summary covers B full blocks of the level below, so element j of level L covers the
 * pieces [j B^L, (j+1) B^L), all with a successor. Levels shrink by B, so the depth D is at most
 * log_B(M) (D = 1 for 100,000 small states); the stages run up 0, ..., up D-1, down D (the top),
 * down D-1, ..., down 0: 2D + 1 Spark jobs, every unit of a stage independent of the others.
 *
 * <p>Each unit reads at most B elements and one carry and writes at most B states; its fold
 * order is fixed by the plan, so a retried or resumed unit writes the same bytes.
 */
public final class BlockScan {
    /** About the bytes of states one scan unit reads (and as many it writes): see {@link #blockSize}. */
    static final long UNIT_STATE_BYTES = 64L << 20;
    /** The fewest elements per block: below it the tree gets deep (2D + 1 stages) for nothing. */
    static final int MIN_BLOCK = 16;
    /** The most: a block is also one unit of --resume, whose marker lists every state it wrote. */
    static final int MAX_BLOCK = 1024;
    /**
     * A system property that sets the block size of every scan of the run, read by the driver
     * only. For tests, so that a small input reaches a scan of several levels; it changes the
     * grouping of the sums, so a run and its --resume must agree on it.
     */
    static final String BLOCK_PROPERTY = "lightning.test.scanBlock";

    private BlockScan() {
    }

    /**
     * Elements per block for states of {@code stateBytes}: {@link #UNIT_STATE_BYTES} worth of
     * them, between {@link #MIN_BLOCK} and {@link #MAX_BLOCK}. A function of the state size alone,
     * so a resumed run groups its sums as the run it continues did. H = 8, Dk = Dv = 128 (512 KiB
     * states): 128 per block; 1 KiB states: 1024.
     */
    public static int blockSize(long stateBytes) {
        String forced = System.getProperty(BLOCK_PROPERTY);
        if (forced != null) {
            int b = Integer.parseInt(forced.trim());
            if (b < 2) {
                throw new IllegalArgumentException(BLOCK_PROPERTY + " must be at least 2, got " + b);
            }
            return b;
        }
        return (int) Math.max(MIN_BLOCK, Math.min(MAX_BLOCK, UNIT_STATE_BYTES / Math.max(1, stateBytes)));
    }

    /** The levels of the scan of one sequence. Immutable. */
    public static final class Plan implements Serializable {
        private static final long serialVersionUID = 1L;
        final int block;
        /** Elements per level: sizes[0] = M, sizes[L+1] = ceil(sizes[L] / B) - 1, the last one (the top) at most B. */
        private final int[] sizes;

        public Plan(int elements, int block) {
            if (elements < 1 || block < 2) {
                throw new IllegalArgumentException("a scan needs at least 1 element and blocks of at least 2, got "
                        + elements + " and " + block);
            }
            this.block = block;
            List<Integer> s = new ArrayList<>();
            for (int m = elements; ; m = blocks(m, block) - 1) {
                s.add(m);
                if (m <= block) {
                    break;
                }
            }
            this.sizes = s.stream().mapToInt(Integer::intValue).toArray();
        }

        private static int blocks(int m, int block) {
            return (m + block - 1) / block;
        }

        /** The top level: 0 when the sequence's M elements fit one block. */
        int depth() {
            return sizes.length - 1;
        }

        int elements(int level) {
            return sizes[level];
        }

        int blocks(int level) {
            return blocks(sizes[level], block);
        }

        /** The first piece covered by element {@code j} of {@code level}: j B^level. */
        long firstPiece(int level, long j) {
            long p = j;
            for (int l = 0; l < level; l++) {
                p *= block;
            }
            return p;
        }

        /** The units of this sequence in stage {@code stage} of a run whose deepest scan has depth {@code maxDepth}. */
        List<Unit> units(int stage, int maxDepth) {
            List<Unit> out = new ArrayList<>();
            if (stage < maxDepth) { // up at level `stage`
                int level = stage;
                if (level < depth()) {
                    for (int b = 0; b + 1 < blocks(level); b++) {
                        out.add(new Unit(true, level, b, b * block, block));
                    }
                }
            } else {
                int level = 2 * maxDepth - stage;
                if (level <= depth()) {
                    for (int b = 0; b < blocks(level); b++) {
                        out.add(new Unit(false, level, b, b * block, Math.min(block, sizes[level] - b * block)));
                    }
                }
            }
            return out;
        }

        /** States written besides the incoming ones: every summary and every carry above level 0. */
        public long extraStates() {
            long n = 0;
            for (int l = 1; l < sizes.length; l++) {
                n += 2L * sizes[l];
            }
            return n;
        }
    }

    /** Stages of a run whose deepest scan has depth {@code maxDepth}: up 0..D-1, then down D..0. */
    static int stages(int maxDepth) {
        return 2 * maxDepth + 1;
    }

    /** What stage {@code stage} does, for progress lines. */
    static String stageName(int stage, int maxDepth) {
        if (maxDepth == 0) {
            return "incoming states";
        }
        return stage < maxDepth ? "block summaries, level " + stage
                : stage == maxDepth ? "carries, level " + maxDepth + " (top)"
                : stage == stages(maxDepth) - 1 ? "incoming states" : "carries, level " + (2 * maxDepth - stage);
    }

    /**
     * One unit of a scan: the up (summary) or down (sweep) of block {@code block} of {@code level},
     * whose elements are {@code first .. first + count - 1} of the level.
     */
    static final class Unit implements Serializable {
        private static final long serialVersionUID = 1L;
        final boolean up;
        final int level;
        final int block;
        final int first;
        final int count;

        Unit(boolean up, int level, int block, int first, int count) {
            this.up = up;
            this.level = level;
            this.block = block;
            this.first = first;
            this.count = count;
        }

        /** The name of its done marker (with --resume). */
        String name(int sequence) {
            return "scan-s" + sequence + (up ? "-up" : "-down") + level + "-b" + block;
        }

        @Override
        public String toString() {
            return (up ? "up" : "down") + " level " + level + " block " + block + " (elements " + first + ".."
                    + (first + count - 1) + ")";
        }
    }

    /** Where a scan reads and writes the states of one sequence. */
    interface States {
        /** c: the state the sequence starts from. */
        LightningState initial() throws IOException;

        /** x_j of {@code level}: the local state of piece j at level 0, the summary of block j of level - 1 above. */
        LightningState element(int level, int j) throws IOException;

        /** Stores x_j of {@code level} (level &gt;= 1). */
        void putElement(int level, int j, LightningState s) throws IOException;

        /** y_j of {@code level} (level &gt;= 1): the carry into block j of level - 1. */
        LightningState prefix(int level, int j) throws IOException;

        /** Stores y_j of {@code level}: at level 0, incoming(j). */
        void putPrefix(int level, int j, LightningState s) throws IOException;
    }

    /**
     * Runs one unit. {@code tokens[i]} are the tokens of element {@code first + i} of its level
     * (the summaries' sums: see {@link Plan#firstPiece}).
     */
    static void run(AttentionSpec spec, Unit u, long[] tokens, States states) throws IOException {
        if (tokens.length != u.count) {
            throw new IllegalArgumentException(u + " needs the tokens of its " + u.count + " elements, got "
                    + tokens.length);
        }
        if (u.up) {
            // the block's state from zero: x_first, then each next element after it
            LightningState s = states.element(u.level, u.first);
            for (int i = 1; i < u.count; i++) {
                s = s.then(spec, tokens[i], states.element(u.level, u.first + i));
            }
            states.putElement(u.level + 1, u.block, s);
            return;
        }
        LightningState carry = u.block == 0 ? states.initial() : states.prefix(u.level + 1, u.block);
        for (int i = 0; i < u.count; i++) {
            carry = carry.then(spec, tokens[i], states.element(u.level, u.first + i));
            states.putPrefix(u.level, u.first + i + 1, carry);
        }
    }

    /**
     * The tokens of the elements of {@code u}, from the start token of each piece p in 0..M of the
     * sequence ({@code pieceStart}).
     */
    static long[] tokens(Plan plan, Unit u, java.util.function.LongUnaryOperator pieceStart) {
        long[] t = new long[u.count];
        for (int i = 0; i < u.count; i++) {
            t[i] = pieceStart.applyAsLong(plan.firstPiece(u.level, u.first + i + 1L))
                    - pieceStart.applyAsLong(plan.firstPiece(u.level, u.first + i));
        }
        return t;
    }
}
