package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.cuda.CudaBackend;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The executor's path without Spark or Hadoop: read a file by token ranges, pass 1 on the first
 * piece, the float32 combine, pass 2 on both pieces through small windows, the output bytes held
 * against the float64 recurrence over the whole file. On the CPU always; on the GPU (tensor-core
 * and float32 kernels) where one is usable, which is how bin/gpu-check runs it on a GPU machine.
 */
@Tag("gpu")
class PieceWorkOnBackendsTest {
    @TempDir
    Path tmp;

    @Test
    void cpuThroughTheExecutorPath() throws Exception {
        try (AttentionBackend cpu = new CpuBackend()) {
            for (DType dtype : DType.values()) {
                check(cpu, dtype);
            }
        }
    }

    @Test
    @NeedsGpu
    void gpuThroughTheExecutorPath() throws Exception {
        try (AttentionBackend gpu = Backends.create("gpu"); AttentionBackend generic = Backends.create("gpu-generic")) {
            for (DType dtype : DType.values()) {
                check(gpu, dtype);
                check(generic, dtype);
            }
        }
    }

    private void check(AttentionBackend backend, DType dtype) throws Exception {
        int t = 3000;
        int h = 3;
        int dk = 40;
        int dv = 24;
        SplittableRandom rnd = new SplittableRandom(dtype.ordinal() + 31);
        Path file = tmp.resolve(backend.name() + "-" + dtype + ".safetensors");
        List<SafetensorsFile.Tensor> tensors = new ArrayList<>();
        tensors.add(SafetensorsFile.Tensor.of("q", dtype, new long[] {t, h, dk}, uniform(rnd, t * h * dk)));
        tensors.add(SafetensorsFile.Tensor.of("k", dtype, new long[] {t, h, dk}, uniform(rnd, t * h * dk)));
        tensors.add(SafetensorsFile.Tensor.of("v", dtype, new long[] {t, h, dv}, uniform(rnd, t * h * dv)));
        tensors.add(SafetensorsFile.Tensor.of("initial_state", DType.F32, new long[] {h, dk, dv}, uniform(rnd, h * dk * dv)));
        SafetensorsFile.write(file, tensors);

        try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
            RangeReader in = (position, buf, off, len) -> {
                synchronized (raf) {
                    raf.seek(position);
                    raf.readFully(buf, off, len);
                }
            };
            SequenceFile f = SequenceFile.describe(file.toString(), file.getFileName().toString(), raf.length(), in,
                    Slopes::minimax);
            AttentionSpec spec = f.spec(0.5, 64);
            Piece first = new Piece(0, 0, 2, 0, 1024);
            Piece second = new Piece(0, 1, 2, 1024, t);
            PieceWork work = new PieceWork(0.5, 64, 64 * 1024, dtype); // windows of a few chunks
            LightningState initial = PieceWork.initialState(in, f, 0);
            LightningState local = work.localState(backend, in, f, first);
            LightningState incoming = initial.then(spec, first.tokens(), local);
            ByteArrayOutputStream o = new ByteArrayOutputStream();
            work.outputs(backend, in, f, first, initial, o);
            LightningState last = work.outputs(backend, in, f, second, incoming, o);

            Map<String, SafetensorsFile.Tensor> all = SafetensorsFile.read(file);
            TokenTensor expect = TokenTensor.allocate(DType.F32, t, h, dv);
            LightningState expectState = new RecurrentReference().forward(spec, all.get("q").asTokens(),
                    all.get("k").asTokens(), all.get("v").asTokens(), initial, expect);
            TokenTensor got = TokenTensor.wrap(dtype, t, h, dv, ByteBuffer.wrap(o.toByteArray()));
            double limit = dtype == DType.F32 ? 1e-5 : dtype == DType.F16 ? 2e-3 : 6e-3;
            double eo = dev.lightning.attention.engine.reference.Accuracy.relativeError(got.toFloats(), expect.toFloats());
            double es = dev.lightning.attention.engine.reference.Accuracy.relativeError(last.kv(), expectState.kv());
            String who = backend.name() + "@" + backend.device() + " " + dtype;
            System.out.printf("PieceWorkOnBackendsTest %s: o error %.2e, state error %.2e%n", who, eo, es);
            assertTrue(eo <= limit, who + " o relative error " + eo);
            assertTrue(es <= 1e-5, who + " state relative error " + es);
        }
    }

    private static float[] uniform(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }
}
