package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.StateStore;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import jcuda.CudaException;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.JCudaDriver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A {@link StateStore} in device memory, as the batch-step kernels read it: S
 * {@code float [slots][H][Dk][Dv]} in one allocation and z {@code float [slots][H][Dk]} in another
 * (normalizing only). Made zero by {@link CudaBatchStep#allocate}; copies in and out go through a
 * pinned staging buffer of at most {@link #STAGING} bytes at a time, synchronously.
 */
final class CudaStateStore implements StateStore {
    /** Largest piece of a bulk copy staged at once. */
    static final long STAGING = 64L << 20;

    final CudaBatchStep owner;
    private final AttentionSpec spec;
    private final int slots;
    private final CudaDevice device;
    private final DeviceAllocator memory;
    private final Buffer kv;
    private final Buffer z;
    private final Buffer staging;
    private boolean closed;

    CudaStateStore(CudaBatchStep owner, CudaDevice device, AttentionSpec spec, int slots) {
        if (slots < 0) {
            throw new IllegalArgumentException("a state store needs 0 or more slots, got " + slots);
        }
        this.owner = owner;
        this.spec = spec;
        this.slots = slots;
        this.device = device;
        // a child of the step's allocator: the step's limit bounds its staging and all its stores
        this.memory = owner.memory().child("state store of " + slots + " slots on " + device,
                DeviceAllocator.UNLIMITED);
        this.kv = memory.device("states S");
        this.z = memory.device("states z");
        this.staging = memory.pinned("state staging");
        try {
            // inside the try: a device an earlier error broke refuses here, and this store's allocator,
            // already a child of the step's, must not stay open there (the step's close then reported a leak)
            device.makeCurrent();
            long kvBytes = StateStore.kvBytes(spec, slots);
            long zBytes = StateStore.normalizerBytes(spec, slots);
            kv.ensure(kvBytes);
            JCudaDriver.cuMemsetD32(kv.ptr, 0, kvBytes / 4);
            if (zBytes > 0) {
                z.ensure(zBytes);
                JCudaDriver.cuMemsetD32(z.ptr, 0, zBytes / 4);
            }
        } catch (CudaException | DeviceMemoryException e) {
            if (e instanceof CudaException c) {
                device.noteError(c); // an error the context keeps: later tasks and steps fail fast, saying so
            }
            closeAfter(e);
            String what = "cannot allocate a state store of " + slots + " slots (" + StateStore.kvBytes(spec, slots)
                    + " + " + StateStore.normalizerBytes(spec, slots) + " bytes) on " + device + ": " + e.getMessage()
                    + "; allocate fewer slots";
            if (e instanceof DeviceMemoryException) {
                throw new DeviceMemoryException(what, e);
            }
            throw new IllegalStateException(what, e);
        } catch (RuntimeException | Error e) {
            closeAfter(e);
            throw e;
        }
    }

    /** Closes this store after {@code failure} in its constructor; what close() throws is added to it. */
    private void closeAfter(Throwable failure) {
        try {
            close();
        } catch (RuntimeException f) {
            failure.addSuppressed(f);
        }
    }

    /** {@code states} as a store of {@code step}; a clear error for any other. */
    static CudaStateStore of(StateStore states, CudaBatchStep step) {
        if (!(states instanceof CudaStateStore) || ((CudaStateStore) states).owner != step) {
            throw new IllegalArgumentException("a state store on " + states.device() + " given to the GPU step on "
                    + step.device() + ": use a store from that step's allocate()");
        }
        CudaStateStore s = (CudaStateStore) states;
        if (s.closed) {
            throw new IllegalStateException("state store is closed");
        }
        return s;
    }

    /** S of every slot on the device. */
    CUdeviceptr kvPointer() {
        return kv.ptr;
    }

    /** z of every slot on the device, or null when the spec does not normalize. */
    CUdeviceptr zPointer() {
        return spec.normalized() ? z.ptr : null;
    }

    @Override
    public AttentionSpec spec() {
        return spec;
    }

    @Override
    public int slots() {
        return slots;
    }

    @Override
    public String device() {
        return device.toString();
    }

    @Override
    public LightningState read(int slot) {
        StateStore.checkSlot(slots, slot);
        ByteBuffer s = ByteBuffer.allocate((int) LightningState.kvBytes(spec)).order(ByteOrder.LITTLE_ENDIAN);
        ByteBuffer n = ByteBuffer.allocate((int) LightningState.normalizerBytes(spec)).order(ByteOrder.LITTLE_ENDIAN);
        copyOut(slot, 1, s, n);
        float[] kvf = new float[spec.stateSize()];
        s.asFloatBuffer().get(kvf);
        float[] zf = null;
        if (spec.normalized()) {
            zf = new float[spec.normalizerSize()];
            n.asFloatBuffer().get(zf);
        }
        return LightningState.own(spec.heads(), spec.dk(), spec.dv(), kvf, zf);
    }

    @Override
    public void write(int slot, LightningState state) {
        StateStore.checkSlot(slots, slot);
        if (!state.fits(spec)) {
            throw new IllegalArgumentException("state " + state + " does not fit the store's " + spec);
        }
        byte[] all = state.toBytes();
        int kvLen = (int) LightningState.kvBytes(spec);
        copyIn(slot, 1, ByteBuffer.wrap(all, 0, kvLen),
                spec.normalized() ? ByteBuffer.wrap(all, kvLen, all.length - kvLen) : null);
    }

    @Override
    public void copyIn(int first, int count, ByteBuffer kvBytes, ByteBuffer zBytes) {
        checkOpen();
        StateStore.checkRange(spec, slots, first, count, kvBytes, zBytes);
        device.makeCurrent();
        try {
            upload(kv.ptr.withByteOffset(LightningState.kvBytes(spec) * first), kvBytes, StateStore.kvBytes(spec, count));
            if (spec.normalized()) {
                upload(z.ptr.withByteOffset(LightningState.normalizerBytes(spec) * first), zBytes,
                        StateStore.normalizerBytes(spec, count));
            }
        } catch (CudaException e) {
            device.noteError(e);
            throw e;
        }
    }

    @Override
    public void copyOut(int first, int count, ByteBuffer kvBytes, ByteBuffer zBytes) {
        checkOpen();
        StateStore.checkRange(spec, slots, first, count, kvBytes, zBytes);
        device.makeCurrent();
        try {
            download(kv.ptr.withByteOffset(LightningState.kvBytes(spec) * first), kvBytes,
                    StateStore.kvBytes(spec, count));
            if (spec.normalized()) {
                download(z.ptr.withByteOffset(LightningState.normalizerBytes(spec) * first), zBytes,
                        StateStore.normalizerBytes(spec, count));
            }
        } catch (CudaException e) {
            device.noteError(e);
            throw e;
        }
    }

    /** {@code len} bytes from {@code src}'s position to the device at {@code dst}, through staging. */
    private void upload(CUdeviceptr dst, ByteBuffer src, long len) {
        ByteBuffer from = src.duplicate();
        for (long done = 0; done < len; ) {
            int piece = (int) Math.min(STAGING, len - done);
            staging.ensure(piece);
            ByteBuffer stage = staging.host.getByteBuffer(0, piece);
            ByteBuffer part = from.slice();
            part.limit(piece);
            stage.put(part);
            from.position(from.position() + piece);
            JCudaDriver.cuMemcpyHtoD(dst.withByteOffset(done), staging.host, piece);
            done += piece;
        }
    }

    /** {@code len} bytes from the device at {@code src} into {@code dst} from its position, through staging. */
    private void download(CUdeviceptr src, ByteBuffer dst, long len) {
        ByteBuffer to = dst.duplicate();
        for (long done = 0; done < len; ) {
            int piece = (int) Math.min(STAGING, len - done);
            staging.ensure(piece);
            JCudaDriver.cuMemcpyDtoH(staging.host, src.withByteOffset(done), piece);
            to.put(staging.host.getByteBuffer(0, piece));
            done += piece;
        }
    }

    private void checkOpen() {
        if (closed) {
            throw new IllegalStateException("state store on " + device + " is closed");
        }
    }

    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        // going on past failures, as the step's release does: a failed free (a broken context) must not
        // leave the other buffers to the allocator's leak check, nor the allocator open in the step's
        java.util.List<RuntimeException> failures = new java.util.ArrayList<>();
        // also after an error broke the context: what this holds is still given back
        SlicePipeline.attempt(failures, device::makeCurrentToRelease);
        for (Buffer b : new Buffer[] {kv, z, staging}) {
            SlicePipeline.attempt(failures, b::close);
        }
        SlicePipeline.attempt(failures, memory::close);
        RuntimeException first = SlicePipeline.firstOf(failures);
        if (first != null) {
            throw first;
        }
    }

    @Override
    public String toString() {
        return "CudaStateStore[" + slots + " slots, " + spec + ", " + device + (closed ? ", closed" : "") + "]";
    }
}
