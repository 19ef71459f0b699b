package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.tables.TableShuffle.Key;
import dev.lightning.attention.job.tables.TableTask.Lazy;
import dev.lightning.attention.job.tables.TableTask.Peek;
import dev.lightning.attention.job.pass.BlockScan;
import org.apache.spark.Partitioner;
import scala.Tuple2;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Iterator;

/**
 * The scan of a table run, one task's iterator: a sequence's local states from pass 1, all in one
 * partition ({@link BySequence}) sorted by piece, folded in piece order with
 * {@link LightningState#then} ({@code incoming(p+1) = lambda^n_p incoming(p) + local(p)}, the job's
 * combine), holding two states at a time. Piece 0's local state already starts from the
 * sequence's initial state, so the fold needs none. Emits each later piece's incoming state,
 * keyed by (sequence, the piece's first token) for the shuffle to its pass-2 task. The blocked scan
 * of the files job ({@link BlockScan}) is not used: the fold streams a sequence's states in one
 * task, which bounds memory but not time for a sequence of very many pieces.
 */
final class TableScan extends Lazy<Tuple2<Key, byte[]>> {
    private final TableTask task;
    private final TablePlan plan;
    private final Peek<Tuple2<Key, byte[]>> in;

    TableScan(TableTask task, Iterator<Tuple2<Key, byte[]>> in) {
        this.task = task;
        this.plan = task.plan;
        this.in = new Peek<>(in);
    }

    @Override
    boolean more() {
        if (!in.hasNext()) {
            return false;
        }
        int s = in.peek()._1.seq;
        AttentionSpec spec = task.spec(s);
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
        FaultPoints.reach("table-scan");
        return true;
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
}
