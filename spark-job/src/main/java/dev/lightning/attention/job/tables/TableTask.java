package dev.lightning.attention.job.tables;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.BatchStep;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.exec.ExecutorBackends;
import dev.lightning.attention.job.tables.TableShuffle.Block;
import dev.lightning.attention.job.tables.TableShuffle.Key;
import dev.lightning.attention.stream.CpuFallback;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.NonFinite;
import dev.lightning.attention.tensor.TokenTensor;
import org.apache.spark.TaskContext;
import scala.Tuple2;

import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.NoSuchElementException;

import static dev.lightning.attention.job.tables.TableSchema.*;

/**
 * What the tasks of a table run's passes share: the run's options and plan (shipped to every task
 * in its closure), the sequence's computation ({@link #spec}), the task's backend, and the
 * windows: a piece's records, read from the sorted shuffle in token order, gathered into windows
 * of whole blocks of at most --window-bytes (--gpu-window-bytes on a GPU) and concatenated into
 * q, k, v tensors, each block scanned for NaN/Inf first, and a window's call sent to the CPU where
 * no GPU kernel fits its shape ({@link #fallback}). Windows are cut at fixed places (a
 * function of the rows and the plan), so a rerun or a retried task computes the same bytes.
 */
class TableTask implements Serializable {
    private static final long serialVersionUID = 1L;

    final JobConfig cfg;
    final TablePlan plan;

    TableTask(JobConfig cfg, TablePlan plan) {
        this.cfg = cfg;
        this.plan = plan;
    }

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
    abstract static class Lazy<T> implements Iterator<T> {
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

    AttentionBackend openBackend() {
        AttentionBackend b = ExecutorBackends.open(cfg.get(Settings.BACKEND), cfg.get(Settings.GPU_RESOURCE),
                cfg.get(Settings.GPU_MEMORY));
        atTaskEnd(b::close);
        return b;
    }

    /**
     * The task's rule for a window the GPU cannot compute: under --backend auto a window no GPU kernel
     * fits (its head widths need more shared memory a block than the device gives) runs on the CPU, and
     * the shape's later windows go there directly; with --gpu-oom cpu a window the GPU's memory does
     * not hold, even in one-chunk launches, runs there; otherwise the task fails with the reason and
     * the way out. Closed with the task.
     */
    CpuFallback.Windows fallback() {
        CpuFallback.Windows f = new CpuFallback.Windows(cfg.gpuOomToCpu(), cfg.gpuOptional());
        atTaskEnd(f::close);
        return f;
    }

    /**
     * Runs {@code close} when the Spark task this thread runs ends, failed or not (nothing outside a
     * task: a test that drives a pass directly closes what it opened itself).
     */
    static void atTaskEnd(Runnable close) {
        TaskContext ctx = TaskContext.get();
        if (ctx != null) {
            ctx.addTaskCompletionListener((org.apache.spark.util.TaskCompletionListener) c -> close.run());
        }
    }

    /** The GPU's batch step of {@code spec} on device {@code ordinal}, within --gpu-memory. */
    BatchStep gpuBatchStep(AttentionSpec spec, int ordinal) {
        return BatchStep.gpu(spec, ordinal, cfg.get(Settings.GPU_MEMORY));
    }

    long windowBytes(AttentionBackend b) {
        return cfg.get(b.gpuOrdinal() >= 0 ? Settings.GPU_WINDOW_BYTES : Settings.WINDOW_BYTES);
    }

    static LightningState initialOf(AttentionSpec spec, Block initial) {
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

    /**
     * The blocks of one window, concatenated into q, k, v tensors (no copy for a single block).
     * Several blocks are copied into {@code spare}'s arrays (q, k, v), which a task keeps from one
     * window to the next and which are replaced here where too small: a window of 64 sequences of
     * 64 tokens at H = 8, D = 128 is 24 MiB, and new arrays for each (zeroed, on G1 humongous ones)
     * were 1.9 GB of the 35 GB a run of 2,000 such sequences allocated. The tensors are views of
     * those arrays, valid until the next call with the same {@code spare}.
     */
    TokenTensor[] window(int s, List<Block> rows, int tokens, byte[][] spare) {
        DType dt = plan.dtype[s];
        ByteBuffer[] parts = new ByteBuffer[3];
        for (int x = 0; x < 3; x++) {
            if (rows.size() == 1) {
                Block b = rows.get(0);
                parts[x] = ByteBuffer.wrap(x == 0 ? b.q : x == 1 ? b.k : b.v);
                continue;
            }
            int size = 0;
            for (Block b : rows) {
                size += (x == 0 ? b.q : x == 1 ? b.k : b.v).length;
            }
            if (spare[x] == null || spare[x].length < size) {
                spare[x] = new byte[size];
            }
            byte[] all = spare[x];
            int at = 0;
            for (Block b : rows) {
                byte[] src = x == 0 ? b.q : x == 1 ? b.k : b.v;
                System.arraycopy(src, 0, all, at, src.length);
                at += src.length;
            }
            parts[x] = ByteBuffer.wrap(all, 0, size);
        }
        return new TokenTensor[] {
                TokenTensor.wrap(dt, tokens, plan.headsQ[s], plan.dk[s], parts[0]),
                TokenTensor.wrap(dt, tokens, plan.headsK[s], plan.dk[s], parts[1]),
                TokenTensor.wrap(dt, tokens, plan.headsV[s], plan.dv[s], parts[2])};
    }

    /** Fails on NaN or Inf in a block's q, k or v, naming the sequence, the block and the first position. */
    void checkFinite(int s, long start, Block b) {
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
    List<Block> nextWindow(Peek<Tuple2<Key, Block>> in, int s, int piece, long budgetTokens, long[] firstStart,
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

    /**
     * Tokens of sequence {@code s} a window of {@code bytes} holds: q, k, v and a float32 o per
     * token and, with --state-every N, the states the window records, 1/N of one per token. At most
     * as many as keep each of the window's tensors, one Java array each, below 2 GiB (a window of
     * 8 GiB of F32 at H = 64, D = 128 would hold 65,536 tokens: q alone 2^31 bytes), as the files
     * run's windows are held (PieceWork.windowTokens).
     */
    long budgetTokens(int s, long bytes) {
        long perToken = plan.inputBytesPerToken(s) + (long) plan.heads(s) * plan.dv[s] * 4;
        long every = cfg.get(Settings.STATE_EVERY);
        if (every > 0) {
            perToken += (spec(s).stateBytes() + every - 1) / every;
        }
        return tokensWithin(bytes, perToken);
    }

    /** Tokens of {@code perToken} bytes that {@code bytes} hold, at least 1, at most a Java array's 2 GiB in all. */
    static long tokensWithin(long bytes, long perToken) {
        return Math.max(1, Math.min(bytes / perToken, (Integer.MAX_VALUE - 16) / perToken));
    }

    static int sum(List<Block> rows) {
        int n = 0;
        for (Block b : rows) {
            n += b.tokens;
        }
        return n;
    }
}
