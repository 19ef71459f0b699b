package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.tables.TableShuffle.Block;
import dev.lightning.attention.job.tables.TableShuffle.Key;
import dev.lightning.attention.job.tables.TableTask.Lazy;
import dev.lightning.attention.job.tables.TableTask.Peek;
import dev.lightning.attention.stream.CpuFallback;
import dev.lightning.attention.tensor.TokenTensor;
import scala.Tuple2;

import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

/**
 * Pass 1 of a table run, one task's iterator: the local state of every piece that has a successor
 * (pieces of split sequences but their last), from zero, or for piece 0 from the sequence's
 * initial state so that the scan needs none of its own: the piece's windows streamed through
 * {@link AttentionBackend#advance}. Emits (sequence, piece index) and the state's bytes; the
 * other pieces' records are skipped (pass 2 alone computes them).
 */
final class TablePass1 extends Lazy<Tuple2<Key, byte[]>> {
    private final TableTask task;
    private final TablePlan plan;
    private final Peek<Tuple2<Key, Block>> in;
    private AttentionBackend backend;
    private CpuFallback.Windows fallback;
    /** The arrays a window of several blocks is copied into, kept from one window to the next (TableTask.window). */
    private final byte[][] windowArrays = new byte[3][];

    TablePass1(TableTask task, Iterator<Tuple2<Key, Block>> in) {
        this.task = task;
        this.plan = task.plan;
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
            backend = task.openBackend();
            fallback = task.fallback();
        }
        AttentionSpec spec = task.spec(s);
        LightningState state = piece == 0 ? TableTask.initialOf(spec, initial) : LightningState.zeros(spec);
        long budget = task.budgetTokens(s, task.windowBytes(backend));
        while (true) {
            List<Block> rows = task.nextWindow(in, s, piece, budget, new long[1], new ArrayList<>());
            if (rows.isEmpty()) {
                break;
            }
            TokenTensor[] t = task.window(s, rows, TableTask.sum(rows), windowArrays);
            LightningState before = state;
            state = fallback.run(backend, spec, plan.dtype[s], "sequence '" + plan.names[s] + "', piece " + piece
                    + " (pass 1)", b -> b.advance(spec, t[1], t[2], before));
        }
        ready.add(new Tuple2<>(new Key(s, piece), state.toBytes()));
        FaultPoints.reach("table-pass1");
        return true;
    }
}
