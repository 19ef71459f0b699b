package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.DeviceMemoryException;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.SoftmaxPartial;
import dev.lightning.attention.engine.SoftmaxSpec;
import dev.lightning.attention.engine.cuda.DeviceAllocator.Buffer;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;
import jcuda.driver.CUstream;
import jcuda.driver.CUstream_flags;
import jcuda.driver.JCudaDriver;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Causal softmax attention on a GPU (softmax.cu through {@link SoftmaxKernels}): one task's
 * buffers ({@link DeviceAllocator}, bounded by the memory budget) and stream on a shared
 * {@link CudaDevice}. Made by {@link CudaBackend#softmax}.
 *
 * <p>A block call whose queries and keys do not fit the budget at once is computed in slices: query
 * slices one after the other, and for each, the key slices that some of its queries can see (the
 * others are skipped, as the kernels skip tiles), each launch giving the partial of its key slice,
 * combined on the host with {@link SoftmaxPartial#merge} in key order, so the same call gives the
 * same bytes every time. When the whole call fits, it is one launch.
 *
 * <p>Input dtypes: BF16/F16 on the tensor cores (o and lse float32 all the same), F32 on the
 * float32 kernel; q, k, v of different dtypes are widened to F32 (exactly) first.
 */
final class CudaSoftmaxBackend implements SoftmaxBackend {
    private final CudaDevice device;
    private final long memoryBudget;
    private final StreamMemory lane;
    private final DeviceAllocator memory;
    private final CUstream stream;
    private final Buffer qDev;
    private final Buffer kDev;
    private final Buffer vDev;
    private final Buffer oDev;
    private final Buffer lseDev;
    private final Buffer hostIn;
    private final Buffer hostOut;
    private boolean closed;
    /** Whether the Hopper (wgmma) kernels may run (tests turn them off to check the portable ones there). */
    boolean hopperKernels = true;
    /** The kernel of the last launch (tests, benchmarks). */
    String lastKernel = "";
    /** Query and key slices of the last call (tests: that a small budget really slices). */
    int lastQuerySlices;
    int lastKeySlices;

    CudaSoftmaxBackend(int ordinal, long memoryBudget) {
        if (memoryBudget <= 0) {
            throw new IllegalArgumentException("GPU memory budget must be > 0 bytes, got " + memoryBudget);
        }
        this.device = CudaDevice.open(ordinal);
        this.memoryBudget = memoryBudget;
        this.lane = new StreamMemory("GPU softmax backend on " + device, memoryBudget);
        this.memory = lane.memory;
        this.stream = lane.stream;
        this.qDev = memory.device("q");
        this.kDev = memory.device("k");
        this.vDev = memory.device("v");
        this.oDev = memory.device("o");
        this.lseDev = memory.device("lse");
        this.hostIn = memory.pinned("upload staging");
        this.hostOut = memory.pinned("download staging");
        device.makeCurrent();
        try {
            device.softmaxShapes(); // loads the module now, so a broken build fails here
            lane.createStream(CUstream_flags.CU_STREAM_NON_BLOCKING);
        } catch (RuntimeException | Error e) {
            closed = true;
            RuntimeException f = release();
            if (f != null) {
                e.addSuppressed(f);
            }
            if (e instanceof CudaException) {
                throw device.setupFailed((CudaException) e);
            }
            throw e;
        }
    }

    @Override
    public String name() {
        return "softmax-gpu";
    }

    @Override
    public String device() {
        return "cuda:" + device.ordinal;
    }

    @Override
    public int gpuOrdinal() {
        return device.ordinal;
    }

    @Override
    public void forward(SoftmaxSpec spec, TokenTensor q, long qStart, TokenTensor k, TokenTensor v, long kStart,
                        SoftmaxPartial out) {
        spec.checkForward(q, qStart, k, v, kStart, out);
        if (closed) {
            throw new IllegalStateException("softmax GPU backend is closed");
        }
        if (q.dtype() != k.dtype() || q.dtype() != v.dtype()) {
            // 16-bit values widen exactly: the float32 kernel then computes from the same numbers
            forward(spec, q.toF32(), qStart, k.toF32(), v.toF32(), kStart, out);
            return;
        }
        device.makeCurrent();
        int nq = q.tokens();
        int nk = k.tokens();
        if (nq == 0) {
            return;
        }
        if (nk == 0) {
            out.clear();
            return;
        }
        Plan plan = plan(spec, q.dtype(), nq, nk);
        try {
            run(spec, q, qStart, k, v, kStart, out, plan);
        } catch (CudaException e) {
            device.noteError(lane.drainQuietly());
            device.noteError(e);
            String what = "GPU " + device + ": softmax attention of " + nq + " queries over " + nk + " keys [" + spec
                    + ", " + q.dtype() + "] failed: " + e.getMessage();
            if (String.valueOf(e.getMessage()).contains("OUT_OF_MEMORY")) {
                throw new DeviceMemoryException(what + " (lower --gpu-memory, or use smaller pieces)", e);
            }
            throw new IllegalStateException(what, e);
        } catch (RuntimeException | Error e) {
            device.noteError(lane.drainQuietly());
            throw e;
        }
    }


    /** Query and key slice sizes: the whole call when it fits the budget, else slices that do. */
    record Plan(int querySlice, int keySlice) {
    }

    Plan plan(SoftmaxSpec spec, DType dtype, int nq, int nk) {
        long e = dtype.bytes();
        long qToken = (long) spec.headsQ() * (spec.dk() * e + spec.dv() * 4L + 4L); // q in, o and lse out
        long kvToken = (long) spec.headsK() * (spec.dk() + spec.dv()) * e;
        long budget = memoryBudget;
        if (nq * qToken + nk * kvToken <= budget) {
            return new Plan(nq, nk);
        }
        // keys get up to half of the budget, queries the rest
        long ks = Math.min(nk, Math.max(1, budget / 2 / kvToken));
        long qs = Math.min(nq, (budget - ks * kvToken) / qToken);
        if (qs < 1) {
            throw new DeviceMemoryException("GPU softmax attention needs at least " + (qToken + kvToken)
                    + " bytes of device memory for one query and one key of " + spec + ", the budget is " + budget
                    + " bytes; raise --gpu-memory", null);
        }
        return new Plan((int) qs, (int) ks);
    }

    private void run(SoftmaxSpec spec, TokenTensor q, long qStart, TokenTensor k, TokenTensor v, long kStart,
                     SoftmaxPartial out, Plan plan) {
        int nq = q.tokens();
        int nk = k.tokens();
        int hq = spec.headsQ();
        int dv = spec.dv();
        SoftmaxKernels.Choice kernel = SoftmaxKernels.choose(device.softmaxShapes(), q.dtype(), spec,
                hopperKernels);
        lastKernel = kernel.kernel();
        int sq = plan.querySlice();
        int sk = plan.keySlice();
        qDev.ensure((long) sq * q.tokenBytes());
        kDev.ensure((long) sk * k.tokenBytes());
        vDev.ensure((long) sk * v.tokenBytes());
        oDev.ensure((long) sq * hq * dv * 4);
        lseDev.ensure((long) sq * hq * 4);
        lastQuerySlices = (nq + sq - 1) / sq;
        lastKeySlices = (nk + sk - 1) / sk;
        int residentKeys = -1; // the key slice now on the device
        for (int qa = 0; qa < nq; qa += sq) {
            int qn = Math.min(sq, nq - qa);
            long tMin = qStart + qa;
            long tMax = tMin + qn - 1;
            // the whole call at once writes straight into out; a query slice accumulates on its own
            SoftmaxPartial target = qn == nq ? out : SoftmaxPartial.empty(spec, qn);
            boolean any = false;
            boolean qUploaded = false;
            for (int ka = 0; ka < nk; ka += sk) {
                int kn = Math.min(sk, nk - ka);
                long jMin = kStart + ka;
                long jMax = jMin + kn - 1;
                if (jMin > tMax || jMax < spec.firstVisibleKey(tMin)) {
                    continue; // no query of this slice sees a key of that one
                }
                if (!qUploaded) {
                    upload(qDev, q.slice(qa, qn).bytes());
                    qUploaded = true;
                }
                if (residentKeys != ka) {
                    upload(kDev, k.slice(ka, kn).bytes());
                    upload(vDev, v.slice(ka, kn).bytes());
                    residentKeys = ka;
                }
                SoftmaxArgs args = SoftmaxKernels.args(spec, qDev.ptr, tMin, qn, kDev.ptr, vDev.ptr, jMin, kn,
                        oDev.ptr, lseDev.ptr);
                Kernels.launch(device, stream, kernel.kernel(), kernel.rowTiles(spec, qn), spec.headsK(), 1,
                        kernel.threads(), kernel.smem(), args.params());
                if (!any) {
                    download(target, qn);
                    any = true;
                } else {
                    SoftmaxPartial part = SoftmaxPartial.empty(spec, qn);
                    download(part, qn);
                    target.merge(part);
                }
            }
            if (!any) {
                target.clear();
            }
            if (target != out) {
                int rowAt = qa * hq;
                System.arraycopy(target.o(), 0, out.o(), rowAt * dv, qn * hq * dv);
                System.arraycopy(target.lse(), 0, out.lse(), rowAt, qn * hq);
            }
        }
    }

    /** Host bytes -> pinned staging -> device, on the stream; returns once the copy is done. */
    private void upload(Buffer dst, ByteBuffer src) {
        long len = src.remaining();
        dst.ensure(len);
        hostIn.ensure(len);
        hostIn.host.getByteBuffer(0, len).put(src.duplicate());
        JCudaDriver.cuMemcpyHtoDAsync(dst.ptr, hostIn.host, len, stream);
        JCudaDriver.cuStreamSynchronize(stream); // the staging buffer is refilled by the next upload
    }

    /** The launch's o and lse of n queries -> {@code into} (after the kernel, on the stream). */
    private void download(SoftmaxPartial into, int n) {
        long oBytes = 4L * n * into.heads() * into.dv();
        long lseBytes = 4L * n * into.heads();
        hostOut.ensure(oBytes + lseBytes);
        JCudaDriver.cuMemcpyDtoHAsync(hostOut.host, oDev.ptr, oBytes, stream);
        JCudaDriver.cuMemcpyDtoHAsync(hostOut.host.withByteOffset(oBytes), lseDev.ptr, lseBytes, stream);
        JCudaDriver.cuStreamSynchronize(stream);
        ByteBuffer b = hostOut.host.getByteBuffer(0, oBytes + lseBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.asFloatBuffer().get(into.o(), 0, (int) (oBytes / 4));
        b.position((int) oBytes);
        b.slice().order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(into.lse(), 0, (int) (lseBytes / 4));
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

    /** Drains the stream, frees every buffer and the allocator, destroys the stream: the first failure, or null. */
    private RuntimeException release() {
        RuntimeException failure = lane.release(qDev, kDev, vDev, oDev, lseDev, hostIn, hostOut);
        device.noteErrors(failure); // an error the context keeps, met only here, still makes later work fail fast
        return failure;
    }
}
