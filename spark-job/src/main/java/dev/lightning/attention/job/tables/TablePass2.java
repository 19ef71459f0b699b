package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.BatchStep;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.StateStore;
import dev.lightning.attention.engine.TokenBatch;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.tables.TableShuffle.Block;
import dev.lightning.attention.job.tables.TableShuffle.Key;
import dev.lightning.attention.job.tables.TableTask.Lazy;
import dev.lightning.attention.job.tables.TableTask.Peek;
import dev.lightning.attention.stream.CpuFallback;
import dev.lightning.attention.stream.NonFiniteOutputException;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.NonFinite;
import dev.lightning.attention.tensor.TokenTensor;
import scala.Tuple2;

import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * Pass 2 of a table run, one task's iterator: o of every block, the final state of every sequence
 * and, with --state-every, the states recorded on the way, as {@link Out} records. Each piece
 * streams its windows through {@link AttentionBackend#forward} from its incoming state (piece 0:
 * the sequence's initial state; a later piece: the scan's, zipped in from the incoming-states
 * shuffle in the same order), writing an o record per block; a sequence's last piece also its final
 * state. Runs of consecutive short unsplit sequences of one spec go through the engine's
 * {@link BatchStep} instead, many sequences per call (on a GPU one launch per batch), their states
 * in a {@link StateStore}. Every o value and every state is scanned for NaN/Inf before it leaves the task.
 */
public final class TablePass2 extends Lazy<TablePass2.Out> {
    /** Unsplit sequences of at most this many tokens go through the batch step. */
    static final int BATCH_MAX_TOKENS = 64;
    /** The most sequences of one batch step. */
    static final int BATCH_MAX_SEQUENCES = 4096;
    /** The last resort of a non-finite output's advice: a table run refuses --skip-nonfinite (TableRun). */
    static final String NO_SKIP = "leave the sequence's rows out of the run (a table run has no --skip-nonfinite)";

    /**
     * An output: a block of o ({@link #O}: data its bytes from token {@code start}), a sequence's
     * final state ({@link #FINAL_STATE}) or a recorded state ({@link #CHECKPOINT}: {@code start} its
     * index c), the states as S in data and z in normalizer (null without normalization).
     */
    public static final class Out implements Serializable {
        private static final long serialVersionUID = 1L;
        static final byte O = 0;
        static final byte FINAL_STATE = 1;
        static final byte CHECKPOINT = 2;
        byte kind;
        int seq;
        long start;
        int tokens;
        byte[] data;
        byte[] normalizer;

        Out() {
        }

        /** The bit of {@code kind} in a set of kinds ({@link TablePass2#TablePass2}'s {@code kinds}). */
        static int bit(byte kind) {
            return 1 << kind;
        }

        /** Every kind: pass 2 computed once for all the outputs. */
        static final int ALL = bit(O) | bit(FINAL_STATE) | bit(CHECKPOINT);
    }

    private final TableTask task;
    private final TablePlan plan;
    private final JobConfig cfg;
    private final Peek<Tuple2<Key, Block>> in;
    private final Peek<Tuple2<Key, byte[]>> incoming;
    private final int kinds;
    private AttentionBackend backend;
    /** Where a window goes that no GPU kernel fits or, with --gpu-oom cpu, the GPU's memory does not hold. */
    private CpuFallback.Windows fallback;
    /** Whether the batch step runs on the CPU for the rest of the task: the GPU's ran out of memory (--gpu-oom cpu). */
    private boolean stepOnCpu;
    private BatchStep step;
    private StateStore store;
    /**
     * The batch step's states on their way in and out ({@code kvIn}, {@code zIn}, {@code kvOut}, {@code zOut}: the
     * store's slots one after the other, z null without normalization), made with the step and kept for its batches;
     * {@code dirty[i]}: slot i's part of kvIn and zIn holds a state of an earlier batch. 32 MiB each at H = 8, D =
     * 128, which a new buffer per batch allocated and zeroed (on G1 a humongous one) twice over.
     */
    private ByteBuffer kvIn;
    private ByteBuffer zIn;
    private ByteBuffer kvOut;
    private ByteBuffer zOut;
    private boolean[] dirty;
    /** The arrays a window of several blocks is copied into, kept from one window to the next (TableTask.window). */
    private final byte[][] windowArrays = new byte[3][];

    /**
     * @param kinds the records to return, a set of {@link Out#bit}s: every output is computed and
     *              checked for NaN/Inf whatever it holds, but only these are made into records (a copy of
     *              their bytes each). The job that writes one table when pass 2 is computed again for each
     *              ({@link TableCompute}) takes its own kind: the o job made every final state, 512 KiB a
     *              sequence at H = 8, D = 128, for the filter to drop, and the final-states job every o block.
     */
    TablePass2(TableTask task, Iterator<Tuple2<Key, Block>> in, Iterator<Tuple2<Key, byte[]>> incoming, int kinds) {
        this.task = task;
        this.plan = task.plan;
        this.cfg = task.cfg;
        this.in = new Peek<>(in);
        this.incoming = new Peek<>(incoming);
        this.kinds = kinds;
    }

    /** Whether records of {@code kind} are returned. */
    private boolean returns(byte kind) {
        return (kinds & Out.bit(kind)) != 0;
    }

    @Override
    boolean more() {
        if (!in.hasNext()) {
            return false;
        }
        if (backend == null) {
            backend = task.openBackend();
            fallback = task.fallback();
            TableTask.atTaskEnd(this::closeStep);
        }
        Block initial = null;
        if (in.peek()._1.start < 0) {
            initial = in.next()._2;
        }
        Key first = in.peek()._1;
        int s = first.seq;
        if (batched(s)) {
            batch(initial);
            FaultPoints.reach("table-pass2");
            return true;
        }
        int piece = plan.pieceOf(s, first.start);
        AttentionSpec spec = task.spec(s);
        LightningState state;
        if (piece == 0) {
            state = TableTask.initialOf(spec, initial);
        } else {
            Tuple2<Key, byte[]> t = incoming.next();
            if (t._1.seq != s || t._1.start != plan.pieceStarts[s][piece]) {
                throw new IllegalStateException("pass 2 of " + plan.names[s] + " piece " + piece
                        + ": the incoming states are out of step");
            }
            state = LightningState.fromBytes(spec, ByteBuffer.wrap(t._2).order(ByteOrder.LITTLE_ENDIAN));
        }
        DType oDtype = cfg.outputDtype(plan.dtype[s]);
        long budget = task.budgetTokens(s, task.windowBytes(backend));
        long[] firstStart = new long[1];
        while (true) {
            List<Long> starts = new ArrayList<>();
            List<Block> rows = task.nextWindow(in, s, piece, budget, firstStart, starts);
            if (rows.isEmpty()) {
                break;
            }
            int n = TableTask.sum(rows);
            TokenTensor[] t = task.window(s, rows, n, windowArrays);
            TokenTensor o = TokenTensor.allocate(oDtype, n, spec.heads(), spec.dv());
            state = forward(s, spec, t, firstStart[0], state, o);
            emit(s, spec, rows, starts, o);
        }
        if (piece == plan.pieces(s) - 1) {
            emitState(s, spec, state);
        }
        FaultPoints.reach("table-pass2");
        return true;
    }

    /**
     * Whether sequence {@code s} goes through the batch step: short and unsplit, and, with
     * --state-every N, shorter than N (the batch step records no states between its tokens).
     */
    private boolean batched(int s) {
        long every = cfg.get(Settings.STATE_EVERY);
        return !plan.split(s) && plan.tokens[s] <= BATCH_MAX_TOKENS && (every == 0 || plan.tokens[s] < every);
    }

    /**
     * One window of sequence {@code s}, tokens [at, at + n) (n = o's tokens), through the backend
     * from {@code state}, recording the states --state-every asks for (checkpoint c is the state
     * after token (c+1)N - 1; those with at < (c+1)N <= at + n fall here) as they pass: the state
     * the computation holds there, not a second computation. The backends record them between
     * chunks of a window that starts at a chunk multiple ({@link Checkpoints}), but a window of whole
     * blocks starts where a block does; so the tokens before the window's first chunk multiple run
     * on their own first. N is a multiple of the chunk size, so a state to record among them can
     * only be the one after their last token: the state that call returns.
     */
    private LightningState forward(int s, AttentionSpec spec, TokenTensor[] t, long at, LightningState state,
                                   TokenTensor o) {
        if (step != null && backend.gpuOrdinal() >= 0 && !stepOnCpu) {
            // its device memory and the backend's would add up past --gpu-memory (a CPU step, after --gpu-oom cpu
            // moved the batches there, holds none: it stays, with its scratch, for the task's next batch)
            closeStep();
        }
        int n = o.tokens();
        int every = Math.toIntExact(cfg.get(Settings.STATE_EVERY));
        String what = "sequence '" + plan.names[s] + "', pass 2";
        DType dtype = plan.dtype[s];
        if (every == 0 || Checkpoints.count(every, at, n) == 0) {
            LightningState before = state;
            return fallback.run(backend, spec, dtype, what, b -> b.forward(spec, t[0], t[1], t[2], before, o));
        }
        int chunk = spec.chunkSize();
        int head = (int) Math.min(n, (chunk - at % chunk) % chunk);
        if (head > 0) {
            LightningState before = state;
            state = fallback.run(backend, spec, dtype, what, b -> b.forward(spec, t[0].slice(0, head),
                    t[1].slice(0, head), t[2].slice(0, head), before, o.slice(0, head)));
            if ((at + head) % every == 0) {
                emitCheckpoint(s, (at + head) / every - 1, state.toBytes(), spec);
            }
        }
        if (head < n) {
            int m = n - head;
            Checkpoints cp = Checkpoints.of(spec, every, at + head, m);
            LightningState before = state;
            state = fallback.run(backend, spec, dtype, what, b -> b.forward(spec, t[0].slice(head, m),
                    t[1].slice(head, m), t[2].slice(head, m), before, o.slice(head, m), cp));
            for (int i = 0; i < cp.count(); i++) {
                emitCheckpoint(s, cp.first() + i, cp.state(spec, i).toBytes(), spec);
            }
        }
        return state;
    }

    /** A recorded state: c its index, {@code all} S and (normalizing) z as LightningState's bytes. */
    private void emitCheckpoint(int s, long c, byte[] all, AttentionSpec spec) {
        Out r = new Out();
        r.kind = Out.CHECKPOINT;
        r.seq = s;
        r.start = c;
        split(r, all, spec);
        checkFinite(r, spec);
        if (returns(r.kind)) {
            ready.add(r);
        }
    }

    /** Sets {@code r}'s data to S and its normalizer to z (or null) of a state's bytes. */
    private static void split(Out r, byte[] all, AttentionSpec spec) {
        int kv = (int) LightningState.kvBytes(spec);
        r.data = java.util.Arrays.copyOfRange(all, 0, kv);
        r.normalizer = spec.normalized() ? java.util.Arrays.copyOfRange(all, kv, all.length) : null;
    }

    /** Outputs of one window: a row of o per block (checked, and made only where o blocks are returned). */
    private void emit(int s, AttentionSpec spec, List<Block> rows, List<Long> starts, TokenTensor o) {
        // writable: a heap buffer with its array, which the scan reads in place (a read-only view it copies)
        ByteBuffer all = o.writableBytes();
        int per = o.tokenBytes();
        int at = 0;
        for (int i = 0; i < rows.size(); i++) {
            Out r = new Out();
            r.kind = Out.O;
            r.seq = s;
            r.start = starts.get(i);
            r.tokens = rows.get(i).tokens;
            NonFinite.Found f = NonFinite.scan(all, at * per, r.tokens * per / o.dtype().bytes(), o.dtype());
            if (returns(r.kind)) {
                r.data = new byte[r.tokens * per];
                all.get(at * per, r.data);
            }
            at += r.tokens;
            if (f.count > 0) {
                int w = o.dim();
                long e = f.first;
                // the first row block that holds any stops the task: its count, not the sequence's
                throw new InvalidInputException("sequence '" + plan.names[s] + "': o holds NaN/Inf values (" + f.count
                        + " in tokens [" + r.start + ", " + (r.start + r.tokens) + ")), the first at o["
                        + (r.start + e / ((long) o.heads() * w)) + ", "
                        + (e / w) % o.heads() + ", " + e % w + "] (token, head, index)"
                        + "; " + NonFiniteOutputException.advice("o", o.dtype(), spec.normalized() && spec.eps() == 0,
                        NO_SKIP));
            }
            if (r.data != null) {
                ready.add(r);
            }
        }
    }

    private void emitState(int s, AttentionSpec spec, LightningState state) {
        Out r = new Out();
        r.kind = Out.FINAL_STATE;
        r.seq = s;
        r.start = plan.tokens[s];
        split(r, state.toBytes(), spec);
        checkFinite(r, spec);
        if (returns(r.kind)) {
            ready.add(r);
        }
    }

    /**
     * Fails the task at the first NaN/Inf of a state record, as a files run fails its final_state and states: a
     * state that overflowed float32 while o did not (o_t reads the state of the chunk before plus the chunk's own
     * terms, the state sums all of them) was written to final_states/ and states/ as Inf, with _SUCCESS.
     */
    private void checkFinite(Out r, AttentionSpec spec) {
        checkFinite(r.kind, r.seq, r.start, r.data, 0, r.normalizer, 0, spec);
    }

    /**
     * {@link #checkFinite(Out, AttentionSpec)} of a state of {@code kind} whose S is at byte {@code kvAt} of
     * {@code kv} and z (null without normalization) at {@code zAt} of {@code z}.
     */
    private void checkFinite(byte kind, int seq, long start, byte[] kv, int kvAt, byte[] zs, int zAt,
                             AttentionSpec spec) {
        boolean last = kind == Out.FINAL_STATE;
        String prefix = last ? "" : start + ", ";
        for (int part = 0; part < (zs == null ? 1 : 2); part++) {
            boolean z = part == 1;
            byte[] b = z ? zs : kv;
            int elements = (int) (z ? LightningState.normalizerBytes(spec) : LightningState.kvBytes(spec)) / 4;
            NonFinite.Found f = NonFinite.scan(b, z ? zAt : kvAt, elements, DType.F32);
            if (f.count == 0) {
                continue;
            }
            String tensor = z ? (last ? "final_normalizer" : "normalizers") : (last ? "final_state" : "states");
            long e = f.first;
            int per = z ? spec.dk() : spec.dk() * spec.dv();
            String at = z ? e / per + ", " + e % per
                    : e / per + ", " + (e % per) / spec.dv() + ", " + e % spec.dv();
            throw new InvalidInputException("sequence '" + plan.names[seq] + "': " + tensor + " holds NaN/Inf values ("
                    + f.count + (last ? "" : " in state " + start) + "), the first at " + tensor + "[" + prefix + at
                    + "] (" + (last ? "" : "state, ") + (z ? "head, index" : "head, row, column") + "); "
                    + NonFiniteOutputException.advice(tensor, DType.F32, false, NO_SKIP));
        }
    }

    private void closeStep() {
        try {
            if (store != null) {
                StateStore s = store;
                store = null;
                s.close();
            }
        } finally {
            if (step != null) {
                BatchStep b = step;
                step = null;
                b.close();
            }
        }
    }

    /**
     * The first {@code m} slots' states in (kvIn, zIn), {@code batch} through the batch step of {@code spec}
     * (made, with its store of {@code slots}, where there is none: on the GPU when {@code gpu}, within
     * --gpu-memory, the backend's buffers released first so that the two do not add up), o written and the
     * states out (kvOut, zOut). Repeatable: it reads only kvIn, zIn and the batch, and writes o and kvOut, zOut
     * whole.
     */
    private void step(AttentionSpec spec, int slots, boolean gpu, int m, TokenBatch batch, TokenTensor o) {
        if (step == null) {
            if (gpu) {
                backend.releaseDeviceBuffers(); // the step and its store then have all of --gpu-memory
            }
            step = gpu ? task.gpuBatchStep(spec, backend.gpuOrdinal()) : BatchStep.cpu(spec);
            store = step.allocate(slots);
        }
        kvIn.clear();
        if (zIn != null) {
            zIn.clear();
        }
        store.copyIn(0, m, kvIn, zIn);
        step.step(store, batch, o);
        kvOut.clear();
        if (zOut != null) {
            zOut.clear();
        }
        store.copyOut(0, m, kvOut, zOut);
    }

    /**
     * How many sequences one batch step takes within {@code budget} bytes: half of it for their states, at most
     * {@link #BATCH_MAX_SEQUENCES}, and at most as many as one heap buffer stages (the states go in and out through a
     * ByteBuffer each, kv and z: below 2 GiB; 4,096 states of H = 8, D = 128 fill it, a 4 GiB window would ask more).
     */
    static int batchSlots(long budget, AttentionSpec spec) {
        long perBuffer = Math.max(1, Math.max(LightningState.kvBytes(spec), LightningState.normalizerBytes(spec)));
        return (int) Math.max(1, Math.min(Math.min(BATCH_MAX_SEQUENCES, budget / 2 / spec.stateBytes()),
                (Integer.MAX_VALUE - 16) / perBuffer));
    }

    /**
     * Consecutive short unsplit sequences of one spec, through one batch step: their blocks
     * packed token-major, a slot each, the slots loaded with their initial states (or zeros)
     * and read back as final states.
     */
    private void batch(Block firstInitial) {
        int s0 = in.peek()._1.seq;
        AttentionSpec spec = task.spec(s0);
        boolean gpu = backend.gpuOrdinal() >= 0;
        // states and tokens get half each; on the GPU both stay within --gpu-memory, the step's limit
        long budget = gpu ? Math.min(task.windowBytes(backend), cfg.get(Settings.GPU_MEMORY)) : task.windowBytes(backend);
        int slots = batchSlots(budget, spec);
        long tokenBudget = task.budgetTokens(s0, budget / 2);
        if (step == null || !step.spec().equals(spec)) {
            closeStep();
            int kv = (int) LightningState.kvBytes(spec);
            int zb = (int) LightningState.normalizerBytes(spec);
            kvIn = ByteBuffer.allocate(kv * slots).order(ByteOrder.LITTLE_ENDIAN);
            kvOut = ByteBuffer.allocate(kv * slots).order(ByteOrder.LITTLE_ENDIAN);
            zIn = spec.normalized() ? ByteBuffer.allocate(zb * slots).order(ByteOrder.LITTLE_ENDIAN) : null;
            zOut = spec.normalized() ? ByteBuffer.allocate(zb * slots).order(ByteOrder.LITTLE_ENDIAN) : null;
            dirty = new boolean[slots];
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
                task.checkFinite(s, t._1.start, t._2);
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
            // the next sequence joins if it is batched too, of the same spec, and fits
            Tuple2<Key, Block> next = in.peek();
            int ns = next._1.seq;
            if (!batched(ns) || tokens + plan.tokens[ns] > tokenBudget
                    || !task.spec(ns).equals(spec)) {
                break;
            }
            if (next._1.start < 0) {
                initial = in.next()._2;
            }
        }
        int m = seqs.size();
        TokenTensor[] t = task.window(s0, rows, tokens, windowArrays);
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
        // each slot's initial state, or zeros where it has none (a slot that held one in an earlier batch cleared)
        for (int i = 0; i < m; i++) {
            Block b = initials.get(i);
            if (b != null) {
                kvIn.put(i * kv, b.q);
                if (zIn != null) {
                    zIn.put(i * zb, b.k);
                }
                dirty[i] = true;
            } else if (dirty[i]) {
                java.util.Arrays.fill(kvIn.array(), i * kv, (i + 1) * kv, (byte) 0);
                if (zIn != null) {
                    java.util.Arrays.fill(zIn.array(), i * zb, (i + 1) * zb, (byte) 0);
                }
                dirty[i] = false;
            }
        }
        TokenBatch batch = TokenBatch.of(spec, t[0], t[1], t[2], off, slot);
        TokenTensor o = TokenTensor.allocate(cfg.outputDtype(plan.dtype[s0]), tokens, spec.heads(), spec.dv());
        String what = m + " short sequence(s) from '" + plan.names[s0] + "' (a batch step)";
        try {
            step(spec, slots, gpu && !stepOnCpu, m, batch, o);
        } catch (RuntimeException e) {
            if (!gpu || stepOnCpu) {
                throw e;
            }
            CpuFallback.toCpuOrRethrow(e, cfg.gpuOomToCpu(), false, what, "it");
            stepOnCpu = true; // the task's later batches too: the step's memory is what ran out
            closeStep();
            step(spec, slots, false, m, batch, o);
        }
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
            emit(seqs.get(i), spec, own, ownStarts, o.slice(off[i], off[i + 1] - off[i]));
        }
        byte[] zs = zOut == null ? null : zOut.array();
        for (int i = 0; i < m; i++) {
            int seq = seqs.get(i);
            checkFinite(Out.FINAL_STATE, seq, plan.tokens[seq], kvOut.array(), i * kv, zs, i * zb, spec);
            if (returns(Out.FINAL_STATE)) {
                Out r = new Out();
                r.kind = Out.FINAL_STATE;
                r.seq = seq;
                r.start = plan.tokens[seq];
                r.data = java.util.Arrays.copyOfRange(kvOut.array(), i * kv, (i + 1) * kv);
                r.normalizer = zs == null ? null : java.util.Arrays.copyOfRange(zs, i * zb, (i + 1) * zb);
                ready.add(r);
            }
        }
    }
}
