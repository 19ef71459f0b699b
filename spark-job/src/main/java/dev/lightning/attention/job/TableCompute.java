package dev.lightning.attention.job;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.BatchStep;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.StateStore;
import dev.lightning.attention.engine.TokenBatch;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.NonFinite;
import dev.lightning.attention.tensor.TokenTensor;
import org.apache.spark.Partitioner;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.JavaPairRDD;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.storage.StorageLevel;
import scala.Tuple2;

import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

import static dev.lightning.attention.job.TableSchema.*;

/**
 * Lightning attention over tables, as Spark transformations (no files between the passes).
 *
 * <p>Design. Every block row is keyed by (sequence index, start) and cut where the plan cuts its
 * sequence into pieces; one {@code repartitionAndSortWithinPartitions}, with a partitioner built
 * from the plan ({@link TablePlan}: short sequences many to a task, long ones in chunk-aligned
 * pieces over several tasks), brings each task its pieces' blocks in token order, after the
 * sequence's initial state (a record at start -1, from the sequences table or, with
 * --initial-states, from the stored final_states table). That sorted shuffle
 * is the only pass over the binaries between executors, and it runs once: pass 1 and pass 2 are
 * two jobs over the same shuffled RDD, and Spark reuses its map output. Then:
 * <ul>
 *   <li><b>pass 1</b> (only when a sequence is split): each piece but a sequence's last streams
 *       its blocks through {@link AttentionBackend#advance} into its local state; piece 0 starts
 *       from the sequence's initial state, so the scan below needs no initial state of its own;
 *   <li><b>the scan</b>: the local states, sorted by (sequence, piece) with each sequence in one
 *       partition, are folded in piece order with {@link LightningState#then}
 *       ({@code incoming(p+1) = lambda^n_p incoming(p) + local(p)}, the job's combine), holding
 *       two states at a time; the incoming states are shuffled to their pieces' tasks with the
 *       same partitioner and zipped with the blocks;
 *   <li><b>pass 2</b>: each piece streams its blocks through {@link AttentionBackend#forward} from
 *       its incoming state, in windows of whole blocks of at most --window-bytes (--gpu-window-bytes
 *       on a GPU), writing an o row per block; a sequence's last piece also its final state. Runs of
 *       consecutive short unsplit sequences of one spec go through the engine's {@link BatchStep}
 *       instead, many sequences per call (on a GPU one launch per batch), their states in a
 *       {@link StateStore}.
 * </ul>
 * Everything is a function of the rows and the plan (the sort fixes the order, windows are cut
 * at fixed places), so a rerun or a retried task gives the same bytes. The blocked scan of the
 * files job ({@link BlockScan}) is not used here: the fold streams a sequence's states in one
 * task, which bounds memory but not time for a sequence of very many pieces.
 */
final class TableCompute implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Unsplit sequences of at most this many tokens go through the batch step. */
    static final int BATCH_MAX_TOKENS = 64;
    /** The most sequences of one batch step. */
    static final int BATCH_MAX_SEQUENCES = 4096;

    final JobConfig cfg;
    final TablePlan plan;

    TableCompute(JobConfig cfg, TablePlan plan) {
        this.cfg = cfg;
        this.plan = plan;
    }

    // ---------------------------------------------------------------- records

    /** (sequence index, start); start -1 is the sequence's initial state. In the scan, start is a piece index. */
    static final class Key implements Serializable {
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
    static final class Block implements Serializable {
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

    /** An output: a block of o, or (state) a sequence's final state with its normalizer. */
    static final class Out implements Serializable {
        private static final long serialVersionUID = 1L;
        boolean state;
        int seq;
        long start;
        int tokens;
        byte[] data;
        byte[] normalizer;

        Out() {
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

    /** The scan's partitioner: every piece of a sequence in one partition. */
    static final class BySequence extends Partitioner {
        private static final long serialVersionUID = 1L;
        private final int partitions;

        BySequence(int partitions) {
            this.partitions = partitions;
        }

        @Override
        public int numPartitions() {
            return partitions;
        }

        @Override
        public int getPartition(Object key) {
            return Math.floorMod(((Key) key).seq, partitions);
        }
    }

    // ---------------------------------------------------------------- the plan of transformations

    /** The outputs of a run, computed lazily and once (persisted): the o blocks and the final states. */
    static final class Outputs {
        final JavaRDD<Out> all;
        final Dataset<Row> o;
        final Dataset<Row> finalStates;

        Outputs(JavaRDD<Out> all, Dataset<Row> o, Dataset<Row> finalStates) {
            this.all = all;
            this.o = o;
            this.finalStates = finalStates;
        }
    }

    /**
     * The transformations of a run over {@code blocks} (conformed, validated), {@code sequences}
     * (conformed; null when there is none) and {@code stored}, the final states of an earlier run
     * (conformed and matched; null without --initial-states), as lazy datasets. A stored row of a
     * sequence computed here becomes its initial-state record, like a sequences-table state; the
     * others are carried into the final states unchanged (a union), so those are the complete set.
     */
    Outputs outputs(SparkSession spark, Dataset<Row> blocks, Dataset<Row> sequences, Dataset<Row> stored) {
        KeyOrder order = new KeyOrder();
        TaskPartitioner tasks = new TaskPartitioner(plan);
        TablePlan p = plan;
        boolean normalize = cfg.get(Settings.NORMALIZE);
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
        JavaPairRDD<Key, Block> shuffled = records.repartitionAndSortWithinPartitions(tasks, order);
        shuffled.setName("lightning tables: blocks by task, in token order");
        boolean anySplit = false;
        int splitCount = 0;
        for (int s = 0; s < plan.size(); s++) {
            if (plan.split(s)) {
                anySplit = true;
                splitCount++;
            }
        }
        JavaRDD<Out> out;
        if (anySplit) {
            JavaPairRDD<Key, byte[]> local = shuffled.mapPartitionsToPair(it -> new Pass1(it));
            local.setName("lightning tables: pass 1, local states");
            int scanPartitions = Math.max(1, Math.min(splitCount, spark.sparkContext().defaultParallelism()));
            JavaPairRDD<Key, byte[]> incoming = local
                    .repartitionAndSortWithinPartitions(new BySequence(scanPartitions), order)
                    .mapPartitionsToPair(it -> new Scan(it))
                    .repartitionAndSortWithinPartitions(tasks, order);
            incoming.setName("lightning tables: scan, incoming states");
            out = shuffled.zipPartitions(incoming, (a, b) -> new Pass2(a, b));
        } else {
            out = shuffled.mapPartitions(it -> new Pass2(it, Collections.emptyIterator()));
        }
        out.setName("lightning tables: pass 2, outputs");
        DType[] oDtypes = new DType[plan.size()];
        long oBytes = 0;
        long stateBytes = 0;
        for (int s = 0; s < oDtypes.length; s++) {
            oDtypes[s] = cfg.outputDtype(plan.dtype[s]);
            AttentionSpec spec = spec(s);
            oBytes += plan.tokens[s] * spec.heads() * spec.dv() * oDtypes[s].bytes();
            stateBytes += spec.stateBytes();
        }
        // The two outputs are two Spark jobs over pass 2. Where o outweighs the states (long
        // sequences), pass 2 runs once and its outputs are kept for the second job; where the
        // states do (many short sequences: 512 KiB of state per sequence against 2 KiB of o per
        // token at H = 8, D = 128), keeping them costs more than computing them again (their
        // serialization and spill to disk), so the second job recomputes pass 2 from the same
        // shuffle output (Spark reruns no shuffle), with the same bytes.
        if (oBytes > stateBytes) {
            out = out.persist(StorageLevel.MEMORY_AND_DISK_SER());
        }
        JavaRDD<Row> oRows = out.filter(r -> !r.state).map(r -> RowFactory.create(p.names[r.seq], r.start, r.tokens,
                oDtypes[r.seq].name(), p.heads(r.seq), p.dv[r.seq], r.data));
        String[] featureMaps = new String[plan.size()];
        for (int s = 0; s < featureMaps.length; s++) {
            featureMaps[s] = spec(s).featureMap().key();
        }
        JavaRDD<Row> stateRows = out.filter(r -> r.state).map(r -> RowFactory.create(p.names[r.seq], p.tokens[r.seq],
                p.heads(r.seq), p.dk[r.seq], p.dv[r.seq], boxed(p.slopes[r.seq]), r.data, r.normalizer,
                p.tokensBefore[r.seq] < 0 ? null : p.tokensBefore[r.seq] + p.tokens[r.seq], featureMaps[r.seq]));
        Dataset<Row> finalStates = spark.createDataFrame(stateRows, FINAL_STATES.schema());
        if (stored != null) {
            // the stored rows of sequences this run does not compute (absent from its blocks, or
            // rejected with --skip-invalid: their stored state is still their latest), as they are
            finalStates = finalStates.union(stored.filter((org.apache.spark.api.java.function.FilterFunction<Row>)
                    r -> p.index(r.getString(0)) < 0));
        }
        return new Outputs(out, spark.createDataFrame(oRows, O_BLOCKS.schema()), finalStates);
    }

    /** An array column's value as a Row holds it: a Scala sequence. */
    static scala.collection.immutable.List<Double> boxed(double[] v) {
        List<Double> l = new ArrayList<>(v.length);
        for (double x : v) {
            l.add(x);
        }
        return scala.jdk.javaapi.CollectionConverters.asScala(l).toList();
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
        String problem = TableValidation.byteLengthProblem(name, start, tokens, plan.headsQ[s], plan.headsK[s],
                plan.headsV[s], plan.dk[s], plan.dv[s], plan.dtype[s], q == null ? -1 : q.length,
                k == null ? -1 : k.length, v == null ? -1 : v.length);
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
        long kv = 4L * h * plan.dk[s] * plan.dv[s];
        long z = 4L * h * plan.dk[s];
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

    // ---------------------------------------------------------------- tasks

    /** An iterator with a look at the next element. */
    static final class Peek<T> {
        private final Iterator<T> it;
        private T next;

        Peek(Iterator<T> it) {
            this.it = it;
        }

        boolean hasNext() {
            return next != null || it.hasNext();
        }

        T peek() {
            if (next == null) {
                next = it.next();
            }
            return next;
        }

        T next() {
            T t = peek();
            next = null;
            return t;
        }
    }

    /** Produces outputs on demand, a unit of work at a time, so a task never holds more than a window's. */
    private abstract static class Lazy<T> implements Iterator<T> {
        final ArrayDeque<T> ready = new ArrayDeque<>();

        /** Computes the next unit into {@link #ready}; false when there is nothing left. */
        abstract boolean more();

        @Override
        public boolean hasNext() {
            while (ready.isEmpty()) {
                if (!more()) {
                    return false;
                }
            }
            return true;
        }

        @Override
        public T next() {
            if (!hasNext()) {
                throw new NoSuchElementException();
            }
            return ready.poll();
        }
    }

    AttentionSpec spec(int s) {
        return plan.spec(s, cfg.get(Settings.SCALE), cfg.chunkSize(), cfg.variant());
    }

    private AttentionBackend openBackend() {
        AttentionBackend b = ExecutorBackends.open(cfg.get(Settings.BACKEND), cfg.get(Settings.GPU_RESOURCE),
                cfg.get(Settings.GPU_MEMORY));
        TaskContext ctx = TaskContext.get();
        if (ctx != null) {
            ctx.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) c -> b.close());
        }
        return b;
    }

    private long windowBytes(AttentionBackend b) {
        return cfg.get(b.device().startsWith("cuda") ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES);
    }

    private static LightningState initialOf(AttentionSpec spec, Block initial) {
        if (initial == null) {
            return LightningState.zeros(spec);
        }
        ByteBuffer b = ByteBuffer.allocate((int) spec.stateBytes()).order(ByteOrder.LITTLE_ENDIAN);
        b.put(initial.q);
        if (spec.normalized()) {
            b.put(initial.k);
        }
        b.flip();
        return LightningState.fromBytes(spec, b);
    }

    /** The blocks of one window, concatenated into q, k, v tensors (no copy for a single block). */
    private TokenTensor[] window(int s, List<Block> rows, int tokens) {
        DType dt = plan.dtype[s];
        byte[][] parts = new byte[3][];
        for (int x = 0; x < 3; x++) {
            if (rows.size() == 1) {
                Block b = rows.get(0);
                parts[x] = x == 0 ? b.q : x == 1 ? b.k : b.v;
                continue;
            }
            int size = 0;
            for (Block b : rows) {
                size += (x == 0 ? b.q : x == 1 ? b.k : b.v).length;
            }
            byte[] all = new byte[size];
            int at = 0;
            for (Block b : rows) {
                byte[] src = x == 0 ? b.q : x == 1 ? b.k : b.v;
                System.arraycopy(src, 0, all, at, src.length);
                at += src.length;
            }
            parts[x] = all;
        }
        return new TokenTensor[] {
                TokenTensor.wrap(dt, tokens, plan.headsQ[s], plan.dk[s], ByteBuffer.wrap(parts[0])),
                TokenTensor.wrap(dt, tokens, plan.headsK[s], plan.dk[s], ByteBuffer.wrap(parts[1])),
                TokenTensor.wrap(dt, tokens, plan.headsV[s], plan.dv[s], ByteBuffer.wrap(parts[2]))};
    }

    /** Fails on NaN or Inf in a block's q, k or v, naming the sequence, the block and the first position. */
    private void checkFinite(int s, long start, Block b) {
        DType dt = plan.dtype[s];
        String[] names = {Q, K, V};
        byte[][] data = {b.q, b.k, b.v};
        int[] heads = {plan.headsQ[s], plan.headsK[s], plan.headsV[s]};
        int[] width = {plan.dk[s], plan.dk[s], plan.dv[s]};
        for (int x = 0; x < 3; x++) {
            NonFinite.Found f = NonFinite.scan(data[x], 0, data[x].length / dt.bytes(), dt);
            if (f.count > 0) {
                long e = f.first;
                long per = (long) heads[x] * width[x];
                throw new InvalidInputException("sequence '" + plan.names[s] + "', the block at " + start + ": "
                        + names[x] + " holds " + f.count + " NaN/Inf value(s), the first at " + names[x] + "["
                        + (start + e / per) + ", " + (e % per) / width[x] + ", " + e % width[x] + "] (token, head, index)");
            }
        }
    }

    /** Rows of the current piece, until the window budget; consumes them from {@code in}. */
    private List<Block> nextWindow(Peek<Tuple2<Key, Block>> in, int s, int piece, long budgetTokens, long[] firstStart,
                                   List<Long> starts) {
        List<Block> rows = new ArrayList<>();
        long tokens = 0;
        while (in.hasNext()) {
            Tuple2<Key, Block> t = in.peek();
            if (t._1.seq != s || t._1.start < 0 || plan.pieceOf(s, t._1.start) != piece) {
                break;
            }
            if (!rows.isEmpty() && tokens + t._2.tokens > budgetTokens) {
                break;
            }
            in.next();
            checkFinite(s, t._1.start, t._2);
            if (rows.isEmpty()) {
                firstStart[0] = t._1.start;
            }
            rows.add(t._2);
            starts.add(t._1.start);
            tokens += t._2.tokens;
        }
        return rows;
    }

    private long budgetTokens(int s, long bytes) {
        long perToken = plan.inputBytesPerToken(s) + (long) plan.heads(s) * plan.dv[s] * 4;
        return Math.max(1, bytes / perToken);
    }

    private static int sum(List<Block> rows) {
        int n = 0;
        for (Block b : rows) {
            n += b.tokens;
        }
        return n;
    }

    /** Pass 1: the local state of every piece that has a successor. */
    private final class Pass1 extends Lazy<Tuple2<Key, byte[]>> {
        private final Peek<Tuple2<Key, Block>> in;
        private AttentionBackend backend;

        Pass1(Iterator<Tuple2<Key, Block>> in) {
            this.in = new Peek<>(in);
        }

        @Override
        boolean more() {
            if (!in.hasNext()) {
                return false;
            }
            Block initial = null;
            if (in.peek()._1.start < 0) {
                initial = in.next()._2;
                if (!in.hasNext()) {
                    return true;
                }
            }
            Key first = in.peek()._1;
            int s = first.seq;
            int piece = plan.pieceOf(s, first.start);
            if (!plan.split(s) || piece == plan.pieces(s) - 1) {
                while (in.hasNext() && in.peek()._1.seq == s && in.peek()._1.start >= 0
                        && plan.pieceOf(s, in.peek()._1.start) == piece) {
                    in.next(); // computed in pass 2 only
                }
                return true;
            }
            if (backend == null) {
                backend = openBackend();
            }
            AttentionSpec spec = spec(s);
            LightningState state = piece == 0 ? initialOf(spec, initial) : LightningState.zeros(spec);
            long budget = budgetTokens(s, windowBytes(backend));
            while (true) {
                List<Block> rows = nextWindow(in, s, piece, budget, new long[1], new ArrayList<>());
                if (rows.isEmpty()) {
                    break;
                }
                TokenTensor[] t = window(s, rows, sum(rows));
                state = backend.advance(spec, t[1], t[2], state);
            }
            ready.add(new Tuple2<>(new Key(s, piece), state.toBytes()));
            return true;
        }
    }

    /** The scan: a sequence's local states in piece order folded into its pieces' incoming states. */
    private final class Scan extends Lazy<Tuple2<Key, byte[]>> {
        private final Peek<Tuple2<Key, byte[]>> in;

        Scan(Iterator<Tuple2<Key, byte[]>> in) {
            this.in = new Peek<>(in);
        }

        @Override
        boolean more() {
            if (!in.hasNext()) {
                return false;
            }
            int s = in.peek()._1.seq;
            AttentionSpec spec = spec(s);
            LightningState running = null;
            int expect = 0;
            while (in.hasNext() && in.peek()._1.seq == s) {
                Tuple2<Key, byte[]> t = in.next();
                int piece = (int) t._1.start;
                if (piece != expect++) {
                    throw new IllegalStateException("scan of " + plan.names[s] + ": expected piece " + (expect - 1)
                            + ", got " + piece);
                }
                LightningState local = LightningState.fromBytes(spec, ByteBuffer.wrap(t._2).order(ByteOrder.LITTLE_ENDIAN));
                long n = plan.pieceEnd(s, piece) - plan.pieceStarts[s][piece];
                running = piece == 0 ? local : running.then(spec, n, local);
                ready.add(new Tuple2<>(new Key(s, plan.pieceStarts[s][piece + 1]), running.toBytes()));
            }
            return true;
        }
    }

    /** Pass 2: o of every block and the final state of every sequence. */
    private final class Pass2 extends Lazy<Out> {
        private final Peek<Tuple2<Key, Block>> in;
        private final Peek<Tuple2<Key, byte[]>> incoming;
        private AttentionBackend backend;
        private BatchStep step;
        private StateStore store;

        Pass2(Iterator<Tuple2<Key, Block>> in, Iterator<Tuple2<Key, byte[]>> incoming) {
            this.in = new Peek<>(in);
            this.incoming = new Peek<>(incoming);
        }

        @Override
        boolean more() {
            if (!in.hasNext()) {
                return false;
            }
            if (backend == null) {
                backend = openBackend();
                TaskContext ctx = TaskContext.get();
                if (ctx != null) {
                    ctx.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) c -> closeStep());
                }
            }
            Block initial = null;
            if (in.peek()._1.start < 0) {
                initial = in.next()._2;
            }
            Key first = in.peek()._1;
            int s = first.seq;
            if (!plan.split(s) && plan.tokens[s] <= BATCH_MAX_TOKENS) {
                batch(initial);
                return true;
            }
            int piece = plan.pieceOf(s, first.start);
            AttentionSpec spec = spec(s);
            LightningState state;
            if (piece == 0) {
                state = initialOf(spec, initial);
            } else {
                Tuple2<Key, byte[]> t = incoming.next();
                if (t._1.seq != s || t._1.start != plan.pieceStarts[s][piece]) {
                    throw new IllegalStateException("pass 2 of " + plan.names[s] + " piece " + piece
                            + ": the incoming states are out of step");
                }
                state = LightningState.fromBytes(spec, ByteBuffer.wrap(t._2).order(ByteOrder.LITTLE_ENDIAN));
            }
            DType oDtype = cfg.outputDtype(plan.dtype[s]);
            long budget = budgetTokens(s, windowBytes(backend));
            while (true) {
                List<Long> starts = new ArrayList<>();
                List<Block> rows = nextWindow(in, s, piece, budget, new long[1], starts);
                if (rows.isEmpty()) {
                    break;
                }
                int n = sum(rows);
                TokenTensor[] t = window(s, rows, n);
                TokenTensor o = TokenTensor.allocate(oDtype, n, spec.heads(), spec.dv());
                state = backend.forward(spec, t[0], t[1], t[2], state, o);
                emit(s, rows, starts, o);
            }
            if (piece == plan.pieces(s) - 1) {
                emitState(s, spec, state);
            }
            return true;
        }

        /** Outputs of one window: a row of o per block. */
        private void emit(int s, List<Block> rows, List<Long> starts, TokenTensor o) {
            ByteBuffer all = o.bytes();
            int per = o.tokenBytes();
            int at = 0;
            for (int i = 0; i < rows.size(); i++) {
                Out r = new Out();
                r.seq = s;
                r.start = starts.get(i);
                r.tokens = rows.get(i).tokens;
                r.data = new byte[r.tokens * per];
                all.position(at * per);
                all.get(r.data);
                at += r.tokens;
                NonFinite.Found f = NonFinite.scan(r.data, 0, r.data.length / o.dtype().bytes(), o.dtype());
                if (f.count > 0) {
                    int w = o.dim();
                    long e = f.first;
                    throw new InvalidInputException("sequence '" + plan.names[s] + "': o holds " + f.count
                            + " NaN/Inf value(s), the first at o[" + (r.start + e / ((long) o.heads() * w)) + ", "
                            + (e / w) % o.heads() + ", " + e % w + "] (token, head, index)"
                            + (o.dtype() == DType.F32 ? "" : "; an " + o.dtype() + " o may overflow: pass --output-dtype f32"));
                }
                ready.add(r);
            }
        }

        private void emitState(int s, AttentionSpec spec, LightningState state) {
            Out r = new Out();
            r.state = true;
            r.seq = s;
            r.start = plan.tokens[s];
            byte[] all = state.toBytes();
            int kv = (int) LightningState.kvBytes(spec);
            r.data = java.util.Arrays.copyOfRange(all, 0, kv);
            r.normalizer = spec.normalized() ? java.util.Arrays.copyOfRange(all, kv, all.length) : null;
            ready.add(r);
        }

        private void closeStep() {
            if (store != null) {
                store.close();
                store = null;
            }
            if (step != null) {
                step.close();
                step = null;
            }
        }

        /**
         * Consecutive short unsplit sequences of one spec, through one batch step: their blocks
         * packed token-major, a slot each, the slots loaded with their initial states (or zeros)
         * and read back as final states.
         */
        private void batch(Block firstInitial) {
            int s0 = in.peek()._1.seq;
            AttentionSpec spec = spec(s0);
            long stateBytes = spec.stateBytes();
            boolean gpu = backend.device().startsWith("cuda:");
            // states and tokens get half each; on the GPU both stay within --gpu-memory, the step's limit
            long budget = gpu ? Math.min(windowBytes(backend), cfg.get(Settings.GPU_MEMORY)) : windowBytes(backend);
            int slots = (int) Math.max(1, Math.min(BATCH_MAX_SEQUENCES, budget / 2 / stateBytes));
            long tokenBudget = budgetTokens(s0, budget / 2);
            if (step == null || !step.spec().equals(spec)) {
                closeStep();
                step = gpu
                        ? BatchStep.gpu(spec, Integer.parseInt(backend.device().substring(5)), cfg.get(Settings.GPU_MEMORY))
                        : BatchStep.cpu(spec);
                store = step.allocate(slots);
            }
            List<Integer> seqs = new ArrayList<>();
            List<Block> initials = new ArrayList<>();
            List<Block> rows = new ArrayList<>();
            List<Long> starts = new ArrayList<>();
            List<Integer> rowSeq = new ArrayList<>();
            List<Integer> offsets = new ArrayList<>();
            offsets.add(0);
            int tokens = 0;
            Block initial = firstInitial;
            while (true) {
                Key k = in.peek()._1;
                int s = k.seq;
                seqs.add(s);
                initials.add(initial);
                while (in.hasNext() && in.peek()._1.seq == s) {
                    Tuple2<Key, Block> t = in.next();
                    checkFinite(s, t._1.start, t._2);
                    rows.add(t._2);
                    starts.add(t._1.start);
                    rowSeq.add(s);
                    tokens += t._2.tokens;
                }
                offsets.add(tokens);
                initial = null;
                if (seqs.size() >= slots || !in.hasNext()) {
                    break;
                }
                // the next sequence joins if it is short, unsplit, of the same spec, and fits
                Tuple2<Key, Block> next = in.peek();
                int ns = next._1.seq;
                if (plan.split(ns) || plan.tokens[ns] > BATCH_MAX_TOKENS || tokens + plan.tokens[ns] > tokenBudget
                        || !spec(ns).equals(spec)) {
                    break;
                }
                if (next._1.start < 0) {
                    initial = in.next()._2;
                }
            }
            int m = seqs.size();
            TokenTensor[] t = window(s0, rows, tokens);
            int[] off = new int[m + 1];
            int[] slot = new int[m];
            for (int i = 0; i <= m; i++) {
                off[i] = offsets.get(i);
            }
            for (int i = 0; i < m; i++) {
                slot[i] = i;
            }
            int kv = (int) LightningState.kvBytes(spec);
            int zb = (int) LightningState.normalizerBytes(spec);
            ByteBuffer kvIn = ByteBuffer.allocate(kv * m).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer zIn = spec.normalized() ? ByteBuffer.allocate(zb * m).order(ByteOrder.LITTLE_ENDIAN) : null;
            for (int i = 0; i < m; i++) {
                Block b = initials.get(i);
                if (b != null) {
                    kvIn.position(i * kv);
                    kvIn.put(b.q);
                    if (zIn != null) {
                        zIn.position(i * zb);
                        zIn.put(b.k);
                    }
                }
            }
            kvIn.clear();
            if (zIn != null) {
                zIn.clear();
            }
            store.copyIn(0, m, kvIn, zIn);
            TokenBatch batch = TokenBatch.of(spec, t[0], t[1], t[2], off, slot);
            TokenTensor o = TokenTensor.allocate(cfg.outputDtype(plan.dtype[s0]), tokens, spec.heads(), spec.dv());
            step.step(store, batch, o);
            // o rows, per sequence in order
            int from = 0;
            for (int i = 0; i < m; i++) {
                List<Block> own = new ArrayList<>();
                List<Long> ownStarts = new ArrayList<>();
                while (from < rows.size() && rowSeq.get(from).intValue() == seqs.get(i).intValue()) {
                    own.add(rows.get(from));
                    ownStarts.add(starts.get(from));
                    from++;
                }
                emit(seqs.get(i), own, ownStarts, o.slice(off[i], off[i + 1] - off[i]));
            }
            ByteBuffer kvOut = ByteBuffer.allocate(kv * m).order(ByteOrder.LITTLE_ENDIAN);
            ByteBuffer zOut = spec.normalized() ? ByteBuffer.allocate(zb * m).order(ByteOrder.LITTLE_ENDIAN) : null;
            store.copyOut(0, m, kvOut, zOut);
            for (int i = 0; i < m; i++) {
                Out r = new Out();
                r.state = true;
                r.seq = seqs.get(i);
                r.start = plan.tokens[r.seq];
                r.data = java.util.Arrays.copyOfRange(kvOut.array(), i * kv, (i + 1) * kv);
                r.normalizer = zOut == null ? null : java.util.Arrays.copyOfRange(zOut.array(), i * zb, (i + 1) * zb);
                ready.add(r);
            }
        }
    }
}
