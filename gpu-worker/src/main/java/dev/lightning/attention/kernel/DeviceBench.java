package dev.lightning.attention.kernel;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.util.Locale;
import java.util.concurrent.ForkJoinPool;
import java.util.stream.IntStream;

/**
 * The GPU benchmark: our forward of one whole sequence on one GPU, data already on the device
 * (pass 1 + scan + pass 2, as the job computes a split sequence), timed with device events, for
 * the shapes fla is compared on. Prints one "RESULT" line per shape for bin/gpu-check's table, and
 * first checks correctness on the device-made data against the float64 chunked reference.
 * <pre>
 *   DeviceBench [--shapes 65536x64x128,262144x64x128,1048576x64x128,1048576x8x128] [--runs 10]
 * </pre>
 */
public final class DeviceBench {
    private DeviceBench() {
    }

    public static void main(String[] args) {
        String shapes = "65536x64x128,262144x64x128,1048576x64x128,1048576x8x128";
        int runs = 10;
        for (int i = 0; i + 1 < args.length; i += 2) {
            if ("--shapes".equals(args[i])) {
                shapes = args[i + 1];
            } else if ("--runs".equals(args[i])) {
                runs = Integer.parseInt(args[i + 1]);
            } else {
                throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        String reason = CudaBackend.unavailableReason();
        if (reason != null) {
            System.out.println("DeviceBench: no usable GPU: " + reason);
            System.exit(2);
        }
        try (CudaBackend backend = new CudaBackend(0, true, Long.MAX_VALUE)) {
            System.out.println("DeviceBench on " + backend.device());
            double copy = backend.copyBandwidth(4L << 30, 5);
            System.out.printf(Locale.ROOT, "RESULT copy %.3f TB/s%n", copy / 1e12);
            check(backend, 65536, 8, 128, 128);
            check(backend, 4100, 3, 72, 40);
            for (String shape : shapes.split(",")) {
                String[] p = shape.split("x");
                int t = Integer.parseInt(p[0]);
                int h = Integer.parseInt(p[1]);
                int d = Integer.parseInt(p[2]);
                AttentionSpec spec = new AttentionSpec(h, d, d, Slopes.minimax(h), 1.0, 64);
                backend.prepareResident(spec, DType.BF16, t, 7);
                double elements = (double) t * h * d;
                // As the backend runs it (segments only where heads leave the GPU idle), and forced
                // through the two-pass path (pass 1 + scan + pass 2), as a split sequence is computed.
                for (int forced : new int[] {1, 2}) {
                    backend.minSegments = forced;
                    float ms = backend.timeResident(spec, DType.BF16, t, runs);
                    int segments = backend.lastSegments;
                    // bytes the passes must move: q, k, v read and o written; k, v again for the tokens
                    // pass 1 covers (all but the last segment)
                    double bytes = 4 * elements * 2 + 2 * elements * 2 * backend.lastPass1Tokens / t;
                    System.out.printf(Locale.ROOT, "RESULT %s T=%d H=%d D=%d ms=%.3f tokens_per_s=%.4g copy_share=%.3f "
                                    + "segments=%d kernels=%s%n", forced == 1 ? "ours" : "ours-two-pass", t, h, d, ms,
                            t / (ms / 1e3), bytes / (ms / 1e3) / copy, segments, backend.lastKernels);
                }
                backend.minSegments = 1;
                backend.releaseBuffers();
            }
        }
    }

    /** Our bf16 output on device-made inputs against the float64 chunked reference, two heads. */
    private static void check(CudaBackend backend, int t, int h, int dk, int dv) {
        double[] slopes = Slopes.minimax(h);
        AttentionSpec spec = new AttentionSpec(h, dk, dv, slopes, 1.0, 64);
        backend.prepareResident(spec, DType.BF16, t, 11);
        backend.timeResident(spec, DType.BF16, t, 1);
        TokenTensor[] qkvo = backend.readResident(spec, DType.BF16, t);
        int checked = Math.min(2, h);
        double[] err = new double[checked];
        ForkJoinPool.commonPool().submit(() -> IntStream.range(0, checked).parallel().forEach(head -> {
            AttentionSpec one = new AttentionSpec(1, dk, dv, new double[] {slopes[head]}, 1.0, 64);
            TokenTensor q = head(qkvo[0], head);
            TokenTensor k = head(qkvo[1], head);
            TokenTensor v = head(qkvo[2], head);
            TokenTensor o = head(qkvo[3], head);
            TokenTensor ref = TokenTensor.allocate(DType.F32, t, 1, dv);
            new ChunkedReference().forward(one, q, k, v, LightningState.zeros(1, dk, dv), ref);
            err[head] = Accuracy.relativeError(o.toFloats(), ref.toFloats());
        })).join();
        double worst = 0;
        for (double e : err) {
            worst = Math.max(worst, e);
        }
        System.out.printf(Locale.ROOT, "RESULT check T=%d H=%d Dk=%d Dv=%d bf16 output relative error %.3e (heads 0..%d, "
                + "float64 reference) %s%n", t, h, dk, dv, worst, checked - 1, worst <= 4e-3 ? "ok" : "FAILED");
        backend.releaseBuffers();
    }

    private static TokenTensor head(TokenTensor x, int head) {
        TokenTensor out = TokenTensor.allocate(x.dtype(), x.tokens(), 1, x.dim());
        float[] row = new float[x.dim()];
        for (int t = 0; t < x.tokens(); t++) {
            x.readHead(head, t, 1, row);
            out.writeHead(0, t, 1, row);
        }
        return out;
    }
}
