package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Checkpoints;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The vector kernel gives the same bytes whatever the host's vector width: a task retried, or a run
 * resumed, on a host of another width (AVX2's 8 lanes against AVX-512's 16) must write what the first
 * attempt wrote. Java cannot change its vector width inside a JVM, so the test runs this class's
 * {@link #main} in JVMs held to narrower vectors ({@code -XX:UseAVX=2}: 8 floats, {@code -XX:UseAVX=1}:
 * 4) and compares their lines with its own: the sums of {@link Kernel#dot} and
 * {@link Kernel#maskedMultiplySum} at many lengths (the normalizer's denominator holds both), and the
 * CRC32C of both passes' results (local state, o, final state, recorded states) for each feature map,
 * normalized or not, F32 and BF16, grouped heads, at head widths that leave tails after whole vectors,
 * and of the batch step's loop ({@link BatchHead}).
 * x86 only (UseAVX is its flag); where the host has no wider vectors than a child, the two agree
 * trivially.
 */
class VectorWidthTest {
    /** One line per checked result (bits in hex, or a CRC32C). */
    static List<String> results() {
        Kernel kernel = Kernel.best();
        List<String> out = new ArrayList<>();
        Random r = new Random(7);
        for (int n = 1; n <= 80; n++) {
            float[] x = new float[n + 3];
            float[] y = new float[n + 3];
            for (int i = 0; i < x.length; i++) {
                x[i] = (float) r.nextGaussian();
                y[i] = (float) r.nextGaussian();
            }
            int valid = n - r.nextInt(Math.min(n, 17) + 1);
            float dot = kernel.dot(x, 2, y, 1, n);
            float masked = kernel.maskedMultiplySum(y.clone(), 1, x, 2, valid, n);
            out.add("n " + n + " dot " + Integer.toHexString(Float.floatToRawIntBits(dot)) + " masked "
                    + Integer.toHexString(Float.floatToRawIntBits(masked)));
        }
        // both passes of each variant at widths that leave tails after whole vectors of every length
        CpuBackend backend = new CpuBackend(kernel, false);
        Object[][] cases = {
            {FeatureMap.ELU1, true, DType.F32, 2, 2, 40, 24},
            {FeatureMap.IDENTITY, true, DType.BF16, 2, 1, 20, 12},
            {FeatureMap.RELU, true, DType.F32, 3, 3, 72, 56},
            {FeatureMap.ELU1, false, DType.BF16, 4, 2, 36, 40},
            {FeatureMap.IDENTITY, false, DType.F32, 1, 1, 24, 8},
        };
        for (Object[] c : cases) {
            FeatureMap phi = (FeatureMap) c[0];
            boolean normalized = (Boolean) c[1];
            DType dtype = (DType) c[2];
            int heads = (Integer) c[3];
            int headsK = (Integer) c[4];
            int dk = (Integer) c[5];
            int dv = (Integer) c[6];
            double[] slopes = new double[heads];
            for (int h = 0; h < heads; h++) {
                slopes[h] = 0.05 * (h + 1);
            }
            AttentionSpec spec = new AttentionSpec(heads, dk, dv, slopes, 0.3, 64).withHeads(heads, headsK, heads)
                    .withFeatureMap(phi);
            if (normalized) {
                spec = spec.withNormalization(1e-5);
            }
            int tokens = 300;
            TokenTensor q = random(dtype, tokens, heads, dk, r);
            TokenTensor k = random(dtype, tokens, headsK, dk, r);
            TokenTensor v = random(dtype, tokens, heads, dv, r);
            LightningState local = backend.advance(spec, k, v, LightningState.zeros(spec));
            TokenTensor o = TokenTensor.allocate(dtype, tokens, heads, dv);
            Checkpoints states = Checkpoints.of(spec, 128, 0, tokens);
            LightningState fin = backend.forward(spec, q, k, v, local, o, states);
            String name = phi + (normalized ? " normalized " : " ") + dtype + " " + heads + "/" + headsK + " " + dk + "x" + dv;
            StringBuilder recorded = new StringBuilder();
            for (int i = 0; i < states.count(); i++) {
                recorded.append(' ').append(crc(states.state(spec, i)));
            }
            out.add(name + ": pass 1 " + crc(local) + ", o " + crc(o.bytes()) + ", final state " + crc(fin)
                    + ", states" + recorded);
        }
        // the batch step's loop (BatchHead), both forms of the decay's code, at widths with tails
        for (float code : new float[] {0.01f, -0.9f}) {
            for (int dv : new int[] {8, 24, 40, 12}) {
                int dk = 20;
                int n = 7;
                float[] st = new float[dk * dv];
                float[] q = new float[n * dk];
                float[] k = new float[n * dk];
                float[] v = new float[n * dv];
                for (float[] a : new float[][] {st, q, k, v}) {
                    for (int i = 0; i < a.length; i++) {
                        a[i] = (float) r.nextGaussian();
                    }
                }
                float[] acc = new float[n * dv];
                BatchHead.update(code, st, 0, dk, dv, q, k, v, acc, n);
                CRC32C c = new CRC32C();
                for (float f : st) {
                    c.update(Float.floatToRawIntBits(f));
                }
                for (float f : acc) {
                    c.update(Float.floatToRawIntBits(f));
                }
                out.add("batch head code " + code + " Dv " + dv + ": " + Long.toHexString(c.getValue()));
            }
        }
        return out;
    }

    private static TokenTensor random(DType dtype, int tokens, int heads, int dim, Random r) {
        float[] x = new float[tokens * heads * dim];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return TokenTensor.of(dtype, tokens, heads, dim, x);
    }

    private static String crc(java.nio.ByteBuffer bytes) {
        CRC32C c = new CRC32C();
        c.update(bytes);
        return Long.toHexString(c.getValue());
    }

    /** S and, normalized, z. */
    private static String crc(LightningState s) {
        CRC32C c = new CRC32C();
        for (float f : s.data()) {
            c.update(Float.floatToRawIntBits(f));
        }
        if (s.normalized()) {
            for (float f : s.normalizerData()) {
                c.update(Float.floatToRawIntBits(f));
            }
        }
        return Long.toHexString(c.getValue());
    }

    /** The child: its lanes on stderr, the results on stdout. */
    public static void main(String[] args) {
        System.err.println("lanes " + Kernel.best().name());
        for (String line : results()) {
            System.out.println(line);
        }
    }

    @Test
    void narrowerVectorsGiveTheSameBytes() throws Exception {
        String arch = System.getProperty("os.arch");
        assumeTrue(arch.equals("amd64") || arch.equals("x86_64"), "UseAVX is an x86 flag; this is " + arch);
        assumeTrue(Kernel.vectorOrNull() != null, "no Vector API in this JVM");
        List<String> own = results();
        for (int avx : new int[] {2, 1}) {
            String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
            Process p = new ProcessBuilder(java, "-XX:UseAVX=" + avx, "--add-modules", "jdk.incubator.vector",
                    "-cp", System.getProperty("java.class.path"), VectorWidthTest.class.getName())
                    .redirectError(ProcessBuilder.Redirect.PIPE).start();
            String stdout = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            String stderr = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
            assertTrue(p.waitFor(60, TimeUnit.SECONDS), "the child JVM (UseAVX=" + avx + ") did not end");
            assertEquals(0, p.exitValue(), "the child JVM (UseAVX=" + avx + ") failed: " + stderr);
            List<String> theirs = List.of(stdout.strip().split("\\R"));
            String lanes = stderr.lines().filter(l -> l.startsWith("lanes ")).findFirst().orElse("lanes ?").substring(6);
            assertEquals(own.size(), theirs.size(), "UseAVX=" + avx + ", " + lanes + ": " + stdout);
            for (int i = 0; i < own.size(); i++) {
                assertEquals(own.get(i), theirs.get(i), "UseAVX=" + avx + ", " + lanes + ", against this JVM's "
                        + Kernel.best().name() + ", line " + i);
            }
        }
    }
}
