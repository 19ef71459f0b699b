package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.plan.PiecePlanner;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.tensor.DType;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * What a run over tables knows before compute: its sequences (sorted by name, so a sequence's
 * index is the same in every run over the same data), their shapes and slopes, and the plan of
 * pieces and tasks ({@link PiecePlanner}: short sequences packed many to a partition, long ones cut
 * into chunk-aligned pieces, partitions packed into a bounded number of tasks). Shipped to tasks
 * inside their closures (a few tens of bytes per sequence); the partitioner of the shuffle reads
 * it to send every block to the task of its piece.
 */
final class TablePlan implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Sorted; a sequence's index is its position. */
    final String[] names;
    final long[] tokens;
    final int[] headsQ;
    final int[] headsK;
    final int[] headsV;
    final int[] dk;
    final int[] dv;
    final DType[] dtype;
    /** The slopes of each sequence: from the sequences table, else the run's defaults for its H. */
    final double[][] slopes;
    /** Per sequence: whether it starts from a given state (the sequences table's, or a stored one with --initial-states). */
    final boolean[] initial;
    /**
     * Per sequence: the tokens its initial state has absorbed (0 when it starts from zero, the stored
     * row's {@code state_tokens} when it continues one, -1 when unknown), so its final state's are
     * this plus its tokens.
     */
    final long[] tokensBefore;
    /** Per sequence: the token where each piece starts (one entry, 0, for an unsplit sequence). */
    final long[][] pieceStarts;
    /** Per sequence: the task each piece runs in. */
    final int[][] pieceTasks;
    final int tasks;
    final int partitions;
    final long totalTokens;
    final int pieceCount;

    TablePlan(List<TableValidation.Summary> sequences, double[][] slopes, boolean[] initial, long[] tokensBefore,
              PiecePlanner planner, int maxTasks) {
        int n = sequences.size();
        names = new String[n];
        tokens = new long[n];
        headsQ = new int[n];
        headsK = new int[n];
        headsV = new int[n];
        dk = new int[n];
        dv = new int[n];
        dtype = new DType[n];
        for (int i = 0; i < n; i++) {
            TableValidation.Summary s = sequences.get(i);
            if (i > 0 && s.name.compareTo(names[i - 1]) <= 0) {
                throw new IllegalArgumentException("sequences must be sorted by name and distinct");
            }
            names[i] = s.name;
            tokens[i] = s.tokens;
            headsQ[i] = s.headsQ;
            headsK[i] = s.headsK;
            headsV[i] = s.headsV;
            dk[i] = s.dk;
            dv[i] = s.dv;
            dtype[i] = DType.valueOf(s.dtype);
        }
        this.slopes = slopes;
        this.initial = initial;
        this.tokensBefore = tokensBefore;
        List<List<Piece>> plan = byCost(planner.plan(tokens), planner.partitionTokens());
        partitions = plan.size();
        List<List<Piece>> packed = PiecePlanner.pack(plan, maxTasks);
        tasks = packed.size();
        pieceStarts = new long[n][];
        pieceTasks = new int[n][];
        long total = 0;
        int count = 0;
        for (int t = 0; t < packed.size(); t++) {
            for (Piece p : packed.get(t)) {
                int s = p.sequence();
                if (pieceStarts[s] == null) {
                    pieceStarts[s] = new long[p.count()];
                    pieceTasks[s] = new int[p.count()];
                }
                pieceStarts[s][p.index()] = p.start();
                pieceTasks[s][p.index()] = t;
                total += p.tokens();
                count++;
            }
        }
        totalTokens = total;
        pieceCount = count;
    }

    /**
     * The planner's partitions, cut further where their sequences' states outweigh their tokens.
     * The planner fills a partition with --partition-tokens tokens, but a short sequence costs its
     * initial and final state as well (read, written, shuffled): 1 MiB for H = 8, Dk = Dv = 128,
     * as much as 170 BF16 tokens of q, k and v. So each piece counts its tokens plus, for a
     * sequence's first and last piece, the state in tokens' worth of input bytes, and a partition
     * holds at most --partition-tokens of that. Partitions are only cut, never merged, so pieces
     * keep their order; 10,000 sequences of one token at H = 8, D = 128 become 27 partitions
     * instead of one, which keeps the cores busy.
     */
    private List<List<Piece>> byCost(List<List<Piece>> plan, long budget) {
        List<List<Piece>> out = new ArrayList<>();
        for (List<Piece> partition : plan) {
            List<Piece> cur = new ArrayList<>();
            long cost = 0;
            for (Piece p : partition) {
                int s = p.sequence();
                long stateTokens = (2 * stateBytes(s) + inputBytesPerToken(s) - 1) / inputBytesPerToken(s);
                long c = p.tokens() + ((p.isFirst() ? 1 : 0) + (p.isLast() ? 1 : 0)) * stateTokens / 2;
                if (!cur.isEmpty() && cost + c > budget) {
                    out.add(cur);
                    cur = new ArrayList<>();
                    cost = 0;
                }
                cur.add(p);
                cost += c;
            }
            if (!cur.isEmpty()) {
                out.add(cur);
            }
        }
        return out;
    }

    /** Bytes of S (and z when normalizing, not known here: S alone) of sequence {@code s}. */
    private long stateBytes(int s) {
        return LightningState.bytes(heads(s), dk[s], dv[s]);
    }

    int size() {
        return names.length;
    }

    /** The index of sequence {@code name}, or -1 when the run does not compute it (rejected with --skip-invalid). */
    int index(String name) {
        int at = Arrays.binarySearch(names, name);
        return at < 0 ? -1 : at;
    }

    int heads(int s) {
        return AttentionSpec.heads(headsQ[s], headsK[s], headsV[s]);
    }

    int pieces(int s) {
        return pieceStarts[s].length;
    }

    boolean split(int s) {
        return pieceStarts[s].length > 1;
    }

    /** The piece of sequence {@code s} that holds token {@code token} (the initial-state record, -1, goes with piece 0). */
    int pieceOf(int s, long token) {
        long[] starts = pieceStarts[s];
        if (starts.length == 1 || token <= 0) {
            return 0;
        }
        int at = Arrays.binarySearch(starts, token);
        return at >= 0 ? at : -at - 2;
    }

    long pieceEnd(int s, int piece) {
        return piece + 1 < pieceStarts[s].length ? pieceStarts[s][piece + 1] : tokens[s];
    }

    int taskOf(int s, long token) {
        return pieceTasks[s][pieceOf(s, token)];
    }

    /** The computation of sequence {@code s} in this run: its heads and slopes, the run's scale, chunk and variant. */
    AttentionSpec spec(int s, double scale, int chunkSize, Variant variant) {
        return spec(headsQ[s], headsK[s], headsV[s], dk[s], dv[s], slopes[s], scale, chunkSize, variant);
    }

    /** The computation of a sequence of these heads, widths and slopes (before a plan exists: the checks). */
    static AttentionSpec spec(int headsQ, int headsK, int headsV, int dk, int dv, double[] slopes, double scale,
                              int chunkSize, Variant variant) {
        return variant.apply(AttentionSpec.grouped(headsQ, headsK, headsV, dk, dv, slopes, scale, chunkSize));
    }

    /** Bytes of q, k and v of one token of sequence {@code s} ({@link AttentionSpec#inputBytesPerToken}). */
    long inputBytesPerToken(int s) {
        return AttentionSpec.inputBytesPerToken(headsQ[s], headsK[s], headsV[s], dk[s], dv[s], dtype[s]);
    }
}
