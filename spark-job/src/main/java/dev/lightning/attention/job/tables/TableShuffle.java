package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.NonFinite;
import org.apache.spark.Partitioner;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import scala.Tuple2;

import java.io.Serializable;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;

import static dev.lightning.attention.job.tables.TableSchema.*;

/**
 * The one shuffle of a table run's binaries: every block row becomes records keyed by
 * (sequence index, start), cut where the plan cuts its sequence into pieces, plus one record at
 * start -1 per sequence that starts from a given state (its sequences-table row, or with
 * --initial-states its stored final_states row). {@code repartitionAndSortWithinPartitions} with
 * {@link TaskPartitioner} (built from the {@link TablePlan}) brings each task its pieces' records in
 * token order, the initial state first. Pass 1 and pass 2 both read that shuffle's output; Spark
 * runs it once. The byte lengths of q, k and v are checked here, on the map side, so a wrong
 * length stops the run before any compute task starts.
 */
public final class TableShuffle {
    private TableShuffle() {
    }

    /**
     * The records of {@code blocks} (conformed, validated), {@code sequences} (conformed; null when
     * there is none) and {@code stored} (the conformed final states of an earlier run; null without
     * --initial-states), sorted into the plan's tasks in token order.
     */
    static JavaPairRDD<Key, Block> sorted(TablePlan plan, Dataset<Row> blocks, Dataset<Row> sequences,
                                          Dataset<Row> stored, boolean normalize) {
        TablePlan p = plan;
        JavaPairRDD<Key, Block> records = blocks.javaRDD().flatMapToPair(r -> blockRecords(p, r));
        if (sequences != null) {
            records = records.union(sequences.javaRDD().flatMapToPair(r -> initialRecords(p, r, normalize)));
        }
        if (stored != null) {
            int state = FINAL_STATES.at(FINAL_STATE);
            int norm = FINAL_STATES.at(FINAL_NORMALIZER);
            records = records.union(stored.javaRDD().flatMapToPair(r -> initialRecord(p, r.getString(0),
                    (byte[]) r.get(state), (byte[]) r.get(norm), normalize, "--initial-states " + FINAL_STATES.name
                            + " table", FINAL_STATE, FINAL_NORMALIZER)));
        }
        JavaPairRDD<Key, Block> shuffled = records.repartitionAndSortWithinPartitions(new TaskPartitioner(plan),
                new KeyOrder());
        shuffled.setName("lightning tables: blocks by task, in token order");
        return shuffled;
    }

    /** (sequence index, start); start -1 is the sequence's initial state. In the scan, start is a piece index. */
    public static final class Key implements Serializable {
        private static final long serialVersionUID = 1L;
        int seq;
        long start;

        Key() {
        }

        Key(int seq, long start) {
            this.seq = seq;
            this.start = start;
        }
    }

    static final class KeyOrder implements Comparator<Key>, Serializable {
        private static final long serialVersionUID = 1L;

        @Override
        public int compare(Key a, Key b) {
            int c = Integer.compare(a.seq, b.seq);
            return c != 0 ? c : Long.compare(a.start, b.start);
        }
    }

    /** A block of tokens (q, k, v bytes), or an initial state (tokens -1: q holds S, k z or null). */
    public static final class Block implements Serializable {
        private static final long serialVersionUID = 1L;
        int tokens;
        byte[] q;
        byte[] k;
        byte[] v;

        Block() {
        }

        Block(int tokens, byte[] q, byte[] k, byte[] v) {
            this.tokens = tokens;
            this.q = q;
            this.k = k;
            this.v = v;
        }
    }

    /** Sends each key to the task of its piece. */
    static final class TaskPartitioner extends Partitioner {
        private static final long serialVersionUID = 1L;
        private final TablePlan plan;

        TaskPartitioner(TablePlan plan) {
            this.plan = plan;
        }

        @Override
        public int numPartitions() {
            return plan.tasks;
        }

        @Override
        public int getPartition(Object key) {
            Key k = (Key) key;
            return plan.taskOf(k.seq, k.start);
        }
    }

    /**
     * The records of one block row (columns in {@link TableSchema#BLOCKS} order): its byte lengths
     * checked, cut at the plan's piece boundaries. Rows of sequences the run does not compute
     * (rejected with --skip-invalid) give none.
     */
    static Iterator<Tuple2<Key, Block>> blockRecords(TablePlan plan, Row r) {
        String name = r.getString(0);
        int s = plan.index(name);
        if (s < 0) {
            return Collections.emptyIterator();
        }
        long start = r.getLong(1);
        int tokens = r.getInt(2);
        byte[] q = (byte[]) r.get(9);
        byte[] k = (byte[]) r.get(10);
        byte[] v = (byte[]) r.get(11);
        // a null tensor is said as such (it read "q holds -1 bytes"), as the checks with --skip-invalid say it
        String problem = q == null ? TableValidation.nullDataProblem(name, start, tokens, Q)
                : k == null ? TableValidation.nullDataProblem(name, start, tokens, K)
                : v == null ? TableValidation.nullDataProblem(name, start, tokens, V)
                : TableValidation.byteLengthProblem(name, start, tokens, plan.headsQ[s], plan.headsK[s], plan.headsV[s],
                        plan.dk[s], plan.dv[s], plan.dtype[s], q.length, k.length, v.length);
        if (problem != null) {
            throw new InvalidInputException(problem);
        }
        int first = plan.pieceOf(s, start);
        int last = plan.pieceOf(s, start + tokens - 1);
        if (first == last) {
            return Collections.singletonList(new Tuple2<>(new Key(s, start), new Block(tokens, q, k, v))).iterator();
        }
        int es = plan.dtype[s].bytes();
        int qt = plan.headsQ[s] * plan.dk[s] * es;
        int kt = plan.headsK[s] * plan.dk[s] * es;
        int vt = plan.headsV[s] * plan.dv[s] * es;
        List<Tuple2<Key, Block>> cut = new ArrayList<>();
        for (int p = first; p <= last; p++) {
            long from = Math.max(start, plan.pieceStarts[s][p]);
            long to = Math.min(start + tokens, plan.pieceEnd(s, p));
            int a = (int) (from - start);
            int n = (int) (to - from);
            cut.add(new Tuple2<>(new Key(s, from), new Block(n, java.util.Arrays.copyOfRange(q, a * qt, (a + n) * qt),
                    java.util.Arrays.copyOfRange(k, a * kt, (a + n) * kt),
                    java.util.Arrays.copyOfRange(v, a * vt, (a + n) * vt))));
        }
        return cut.iterator();
    }

    /** The initial-state record of a sequences-table row (columns in {@link TableSchema#SEQUENCES} order), if it has one. */
    static Iterator<Tuple2<Key, Block>> initialRecords(TablePlan plan, Row r, boolean normalize) {
        if (r.isNullAt(2) && r.isNullAt(3)) {
            return Collections.emptyIterator();
        }
        return initialRecord(plan, r.getString(0), (byte[]) r.get(2), (byte[]) r.get(3), normalize, "sequences table",
                INITIAL_STATE, INITIAL_NORMALIZER);
    }

    /**
     * The initial-state record of sequence {@code name} from a row of {@code table} (the sequences
     * table, or a stored final_states table): S and z (null: zero) with their byte lengths and
     * values checked; none when the run does not compute the sequence.
     */
    static Iterator<Tuple2<Key, Block>> initialRecord(TablePlan plan, String name, byte[] givenState, byte[] givenNorm,
                                                      boolean normalize, String table, String stateCol,
                                                      String normCol) {
        int s = plan.index(name);
        if (s < 0) {
            return Collections.emptyIterator();
        }
        int h = plan.heads(s);
        long kv = LightningState.bytes(h, plan.dk[s], plan.dv[s]);
        long z = LightningState.normalizerBytes(h, plan.dk[s]);
        byte[] state = givenState == null ? new byte[(int) kv] : givenState;
        byte[] norm = givenNorm == null ? (normalize ? new byte[(int) z] : null) : givenNorm;
        String where = table + ", sequence '" + name + "': ";
        if (state.length != kv) {
            throw new InvalidInputException(where + stateCol + " holds " + state.length + " bytes, expected [H " + h
                    + ", Dk " + plan.dk[s] + ", Dv " + plan.dv[s] + "] F32 = " + kv);
        }
        if (norm != null && norm.length != z) {
            throw new InvalidInputException(where + normCol + " holds " + norm.length + " bytes, expected [H "
                    + h + ", Dk " + plan.dk[s] + "] F32 = " + z);
        }
        for (byte[] b : norm == null ? new byte[][] {state} : new byte[][] {state, norm}) {
            NonFinite.Found f = NonFinite.scan(b, 0, b.length / 4, DType.F32);
            if (f.count > 0) {
                throw new InvalidInputException(where + (b == state ? stateCol : normCol) + " holds "
                        + f.count + " NaN/Inf value(s), the first at element " + f.first);
            }
        }
        return Collections.singletonList(new Tuple2<>(new Key(s, -1), new Block(-1, state, norm, null))).iterator();
    }
}
