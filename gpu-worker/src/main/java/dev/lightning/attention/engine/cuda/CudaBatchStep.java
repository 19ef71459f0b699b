package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.BatchStep;
import dev.lightning.attention.engine.StateStore;
import dev.lightning.attention.engine.TokenBatch;
import dev.lightning.attention.engine.cuda.BatchArgs.Field;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;
import jcuda.driver.CUstream;
import jcuda.driver.JCudaDriver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * The GPU batch step: states resident in a {@link CudaStateStore}, one kernel launch per step
 * (lightning_batch.cu), never one per sequence. A step copies the packed q, k, v, the offsets and
 * the slots to the device (one pinned staging buffer, one stream), launches, and copies o back;
 * only the new tokens cross the bus, the states stay where they are.
 *
 * <p>o comes back in the inputs' dtype and is converted on the host when the caller's o has
 * another; a float32 o with 16-bit inputs runs the float32 kernel on the widened inputs (16-bit
 * values widen exactly), so that o is not rounded to 16 bits first, as {@link CudaBackend} does.
 */
public final class CudaBatchStep implements BatchStep {
    private final AttentionSpec spec;
    private final CudaDevice device;
    private final BatchModule module;
    private final StreamMemory lane;
    private final DeviceAllocator memory;
    private final CUstream stream;
    private final Buffer slopes;
    private final Buffer inputs;
    private final Buffer output;
    private final Buffer hostIn;
    private final Buffer hostOut;
    private boolean closed;

    private CudaBatchStep(AttentionSpec spec, int ordinal, long memoryLimit) {
        this.spec = spec;
        this.device = CudaDevice.open(ordinal);
        this.module = BatchModule.on(device);
        this.lane = new StreamMemory("GPU batch step on " + device, memoryLimit);
        this.memory = lane.memory;
        this.stream = lane.stream;
        this.slopes = memory.device("slopes");
        this.inputs = memory.device("q, k, v, offsets, slots");
        this.output = memory.device("o");
        this.hostIn = memory.pinned("input staging");
        this.hostOut = memory.pinned("output staging");
        try {
            device.makeCurrent();
            lane.createStream(0);
            ByteBuffer b = ByteBuffer.allocate(spec.heads() * 4).order(ByteOrder.LITTLE_ENDIAN);
            for (int h = 0; h < spec.heads(); h++) {
                b.putFloat(h * 4, (float) spec.slope(h));
            }
            slopes.ensure(b.capacity());
            JCudaDriver.cuMemcpyHtoD(slopes.ptr, jcuda.Pointer.to(b.array()), b.capacity());
        } catch (RuntimeException | Error e) {
            closed = true;
            RuntimeException f = release(); // what failed to go back is said with the failure, not dropped
            if (f != null) {
                e.addSuppressed(f);
            }
            throw e;
        }
    }

    /**
     * The GPU step for {@code spec} on CUDA device {@code ordinal}, holding at most {@code memoryLimit}
     * device bytes with its state stores ({@link DeviceAllocator#UNLIMITED}: what the device has);
     * throws IllegalStateException where no GPU is usable.
     */
    public static CudaBatchStep open(AttentionSpec spec, int ordinal, long memoryLimit) {
        return new CudaBatchStep(spec, ordinal, memoryLimit);
    }

    /** The allocator of the step's buffers, parent of its state stores'. */
    DeviceAllocator memory() {
        return memory;
    }

    @Override
    public String name() {
        return "gpu";
    }

    @Override
    public String device() {
        return device.toString();
    }

    @Override
    public AttentionSpec spec() {
        return spec;
    }

    @Override
    public StateStore allocate(int slots) {
        checkOpen();
        return new CudaStateStore(this, device, spec, slots);
    }

    @Override
    public void step(StateStore states, TokenBatch batch, TokenTensor o) {
        checkOpen();
        BatchStep.check(this, states, batch, o);
        CudaStateStore store = CudaStateStore.of(states, this);
        if (batch.count() == 0) {
            return;
        }
        TokenTensor q = batch.q();
        TokenTensor k = batch.k();
        TokenTensor v = batch.v();
        if (o.dtype() == DType.F32 && batch.dtype() != DType.F32) {
            q = q.toF32();
            k = k.toF32();
            v = v.toF32();
        }
        DType dtype = q.dtype();
        device.makeCurrent();
        try {
            TokenTensor result = o.dtype() == dtype ? o : TokenTensor.allocate(dtype, o.tokens(), o.heads(), o.dim());
            run(store, batch, q, k, v, result);
            if (result != o) {
                o.putBytes(TokenTensor.of(o.dtype(), o.tokens(), o.heads(), o.dim(), result.toFloats()).bytes());
            }
        } catch (CudaException e) {
            device.noteError(lane.drainQuietly());
            device.noteError(e);
            throw new IllegalStateException("GPU " + device + ": batch step of " + batch + " [" + spec + "] failed: "
                    + e.getMessage(), e);
        }
    }


    /** Sections of the input staging buffer, each starting at a multiple of 256 bytes. */
    private static long align(long at) {
        return (at + 255) / 256 * 256;
    }

    private void run(CudaStateStore store, TokenBatch batch, TokenTensor q, TokenTensor k, TokenTensor v,
                     TokenTensor o) {
        int n = batch.count();
        int tiles = (spec.dv() + module.columns - 1) / module.columns;
        int tilesPerCta = spec.normalized() ? tiles : 1;
        long blocks = (long) n * spec.heads() * (tiles / tilesPerCta);
        if (blocks > Integer.MAX_VALUE) {
            throw new IllegalArgumentException("a batch of " + n + " sequences needs " + blocks + " CTAs at " + spec
                    + ", more than one launch holds (2^31 - 1): split it into smaller batches");
        }
        // staging: q | k | v | offsets | slots, the sequences in slot order (see slotOrder)
        int[] order = slotOrder(batch.slots());
        int[] offsets = order == null ? batch.offsets() : reorderedOffsets(batch, order);
        int[] slots = order == null ? batch.slots() : permuted(batch.slots(), order);
        TokenTensor[] tokens = {q, k, v};
        ByteBuffer[] parts = {q.bytes(), k.bytes(), v.bytes(), ints(offsets), ints(slots)};
        long[] at = new long[parts.length + 1];
        for (int i = 0; i < parts.length; i++) {
            at[i + 1] = align(at[i] + parts[i].remaining());
        }
        long oBytes = (long) o.tokens() * o.tokenBytes();
        inputs.ensure(at[parts.length]);
        output.ensure(Math.max(1, oBytes));
        hostIn.ensure(at[parts.length]);
        hostOut.ensure(Math.max(1, oBytes));
        ByteBuffer stage = hostIn.host.getByteBuffer(0, at[parts.length]);
        for (int i = 0; i < parts.length; i++) {
            stage.position((int) at[i]);
            if (order != null && i < tokens.length) {
                for (int seq : order) {                  // sequence by sequence, in slot order
                    stage.put(tokens[i].slice(batch.start(seq), batch.length(seq)).bytes());
                }
            } else {
                stage.put(parts[i].duplicate());
            }
        }
        JCudaDriver.cuMemcpyHtoDAsync(inputs.ptr, hostIn.host, at[parts.length], stream);
        int rows = rowsPerThread(spec.dk());
        int group = Math.max(1, Math.min(module.group, batch.maxTokens()));
        BatchArgs args = new BatchArgs()
                .ptr(Field.Q, inputs.ptr.withByteOffset(at[0]))
                .ptr(Field.K, inputs.ptr.withByteOffset(at[1]))
                .ptr(Field.V, inputs.ptr.withByteOffset(at[2]))
                .ptr(Field.O, output.ptr)
                .ptr(Field.SLOPES, slopes.ptr)
                .ptr(Field.STATES, store.kvPointer())
                .ptr(Field.NORMS, store.zPointer())
                .ptr(Field.OFFSETS, inputs.ptr.withByteOffset(at[3]))
                .ptr(Field.SLOTS, inputs.ptr.withByteOffset(at[4]))
                .i32(Field.COUNT, n)
                .i32(Field.HEADS, spec.heads())
                .i32(Field.HEADS_Q, spec.headsQ())
                .i32(Field.HEADS_K, spec.headsK())
                .i32(Field.HEADS_V, spec.headsV())
                .i32(Field.DK, spec.dk())
                .i32(Field.DV, spec.dv())
                .i32(Field.TILES_PER_CTA, tilesPerCta)
                .i32(Field.GROUP, group)
                .i32(Field.FEATURE_MAP, spec.featureMap().code())
                .i32(Field.NORMALIZE, spec.normalized() ? 1 : 0)
                .f32(Field.SCALE, (float) spec.scale())
                .f32(Field.EPS, (float) spec.eps());
        boolean staged = module.staged(rows, batch.maxTokens());
        String kernel = kernelName(q.dtype(), rows, staged);
        JCudaDriver.cuLaunchKernel(module.function(kernel), (int) blocks, 1, 1, module.threads, 1, 1,
                module.sharedBytes(spec.dk(), group, staged ? rows : 0), stream, args.params(), null);
        if (oBytes > 0) {
            JCudaDriver.cuMemcpyDtoHAsync(hostOut.host, output.ptr, oBytes, stream);
        }
        JCudaDriver.cuStreamSynchronize(stream);
        if (oBytes > 0) {
            ByteBuffer back = hostOut.host.getByteBuffer(0, oBytes);
            if (order == null) {
                o.putBytes(back);
            } else {
                for (int r = 0; r < order.length; r++) {   // o rows back to the batch's order
                    int seq = order[r];
                    back.position(offsets[r] * o.tokenBytes());
                    o.slice(batch.start(seq), batch.length(seq)).putBytes(back);
                }
            }
        }
    }

    /** Token offsets of the batch's sequences laid out in {@code order}. */
    private static int[] reorderedOffsets(TokenBatch batch, int[] order) {
        int[] offsets = new int[order.length + 1];
        for (int r = 0; r < order.length; r++) {
            offsets[r + 1] = offsets[r] + batch.length(order[r]);
        }
        return offsets;
    }

    private static int[] permuted(int[] values, int[] order) {
        int[] out = new int[order.length];
        for (int r = 0; r < order.length; r++) {
            out[r] = values[order[r]];
        }
        return out;
    }

    /**
     * The batch's sequences by ascending slot, or null when the slots already ascend. The host stages
     * the sequences in this order (and puts o back in the batch's), so that CTAs launched together
     * read and write neighbouring states, as a copy does: on the H200 the decode step of 65,536 states
     * moved 0.82 of the copy bandwidth with the slots in random order and 0.90 with them ascending
     * (BENCHMARKS.md, "Many short sequences"). Reordering in the kernel instead, through an index
     * array, cost more than it gained there: one more dependent load raised the registers a thread
     * takes and fewer CTAs stayed resident.
     */
    static int[] slotOrder(int[] slots) {
        boolean ascending = true;
        for (int i = 1; i < slots.length && ascending; i++) {
            ascending = slots[i - 1] < slots[i];
        }
        if (ascending) {
            return null;
        }
        long[] keyed = new long[slots.length];
        for (int i = 0; i < slots.length; i++) {
            keyed[i] = ((long) slots[i] << 32) | i;      // slots are non-negative: sorts by slot, then index
        }
        Arrays.sort(keyed);
        int[] order = new int[slots.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = (int) keyed[i];
        }
        return order;
    }

    /** Rows of S each thread holds: the kernels come for Dk up to 4, 8 and 16 thread-row counts. */
    private int rowsPerThread(int dk) {
        return dk <= 4 * module.rowGroups ? 4 : dk <= 8 * module.rowGroups ? 8 : 16;
    }

    /** The kernel for {@code dtype} at {@code rows} rows of S a thread; staged: S in shared memory. */
    static String kernelName(DType dtype, int rows, boolean staged) {
        return "lightning_batch_step_" + Kernels.type(dtype) + "_r" + rows + (staged ? BatchModule.STAGED_SUFFIX : "");
    }

    private static ByteBuffer ints(int[] values) {
        ByteBuffer b = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
        b.asIntBuffer().put(values);
        return b;
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("GPU batch step is closed");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        device.makeCurrentToRelease(); // also after an error broke the context: what this holds is still given back
        RuntimeException failure = release();
        if (failure != null) {
            throw failure;
        }
    }

    /** Drains the stream, frees the buffers, then the allocator, then destroys the stream; the first failure, or null. */
    private RuntimeException release() {
        RuntimeException failure = lane.release(slopes, inputs, output, hostIn, hostOut);
        device.noteErrors(failure); // an error the context keeps, met only here, still makes later work fail fast
        return failure;
    }
}
