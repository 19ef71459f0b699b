package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionBackend;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.Backends;
import dev.lightning.attention.engine.GpuUnusableException;
import dev.lightning.attention.engine.Inputs;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.NeedsGpu;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.engine.SoftmaxBackend;
import dev.lightning.attention.engine.reference.RecurrentReference;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import jcuda.CudaException;
import jcuda.driver.CUcontext;
import jcuda.driver.CUdevice;
import jcuda.driver.CUdeviceptr;
import jcuda.driver.JCudaDriver;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A GPU another process has taken: a tenant on a shared node that allocated all of its memory
 * (the same path as a device in exclusive-process mode held by another process: the context or a
 * module cannot be had). Opening a backend there must fail as {@link GpuUnusableException}, which
 * {@code --backend auto} answers by computing on the CPU and {@code gpu} by failing the task with
 * the reason, not as a raw CudaException (which failed the task under auto too) and not as the PTX
 * needing a newer driver (the message a failed module load gave, remembered for the process's life).
 * Once the other process lets go, the next backend of the same process opens the device and computes.
 *
 * <p>Both the taker and the opener are child JVMs: this test's JVM may hold a context already.
 */
@Tag("gpu")
class TakenDeviceGpuTest {
    @TempDir
    Path tmp;

    /** Child: takes all of device 0's memory it can get, says how much is left, and holds it until its stdin closes. */
    public static final class Taker {
        public static void main(String[] args) throws Exception {
            JCudaDriver.setExceptionsEnabled(true);
            JCudaDriver.cuInit(0);
            CUdevice device = new CUdevice();
            JCudaDriver.cuDeviceGet(device, 0);
            CUcontext context = new CUcontext();
            JCudaDriver.cuDevicePrimaryCtxRetain(context, device);
            JCudaDriver.cuCtxSetCurrent(context);
            List<CUdeviceptr> held = new ArrayList<>();
            long bytes = 0;
            for (long chunk = 1L << 30; chunk >= 1L << 20; chunk /= 2) {
                while (true) {
                    CUdeviceptr p = new CUdeviceptr();
                    try {
                        JCudaDriver.cuMemAlloc(p, chunk);
                    } catch (CudaException e) {
                        break;
                    }
                    held.add(p);
                    bytes += chunk;
                }
            }
            long[] free = new long[1];
            long[] total = new long[1];
            JCudaDriver.cuMemGetInfo(free, total);
            System.out.println("TAKEN " + bytes + " FREE " + free[0] + " TOTAL " + total[0]);
            System.out.flush();
            while (System.in.read() >= 0) {
                // hold until the test closes stdin
            }
            System.out.println("RELEASED " + held.size());
        }
    }

    /** Child: opens a lightning and a softmax GPU backend, says how each went, waits for a line, and does it again. */
    public static final class Opener {
        public static void main(String[] args) throws Exception {
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            System.out.println("FIRST " + attempt());
            System.out.flush();
            in.readLine();
            System.out.println("SECOND " + attempt());
            System.out.flush();
        }

        private static String attempt() {
            StringBuilder said = new StringBuilder();
            try (AttentionBackend b = Backends.gpu(0, 1L << 30)) {
                said.append("lightning OPENED ").append(compare(b));
            } catch (GpuUnusableException e) {
                said.append("lightning UNUSABLE ").append(e.getMessage().replace('\n', ' '));
            } catch (Throwable t) {
                said.append("lightning OTHER ").append(String.valueOf(t).replace('\n', ' '));
            }
            said.append(" | ");
            try (SoftmaxBackend b = Backends.softmaxGpu(0, 1L << 30)) {
                said.append("softmax OPENED");
            } catch (GpuUnusableException e) {
                said.append("softmax UNUSABLE ").append(e.getMessage().replace('\n', ' '));
            } catch (Throwable t) {
                said.append("softmax OTHER ").append(String.valueOf(t).replace('\n', ' '));
            }
            return said.toString();
        }

        /** A small forward on the GPU against the float64 recurrence: "ok" or the errors. */
        private static String compare(AttentionBackend gpu) {
            SplittableRandom rnd = new SplittableRandom(41);
            int t = 63;
            int h = 3;
            int dk = 32;
            int dv = 48;
            AttentionSpec spec = new AttentionSpec(h, dk, dv, Slopes.minimax(h), 0.5, 64);
            TokenTensor q = Inputs.random(rnd, DType.BF16, t, h, dk);
            TokenTensor k = Inputs.random(rnd, DType.BF16, t, h, dk);
            TokenTensor v = Inputs.random(rnd, DType.BF16, t, h, dv);
            LightningState s0 = Inputs.randomState(rnd, h, dk, dv);
            TokenTensor o = TokenTensor.allocate(DType.F32, t, h, dv);
            LightningState s = gpu.forward(spec, q, k, v, s0, o);
            TokenTensor ref = TokenTensor.allocate(DType.F32, t, h, dv);
            LightningState refState = new RecurrentReference().forward(spec, q, k, v, s0, ref);
            double eo = Inputs.relativeError(o.toFloats(), ref.toFloats());
            double es = Inputs.relativeError(s.kv(), refState.kv());
            return eo <= 1e-4 && es <= 1e-5 ? "ok" : "wrong: o " + eo + ", state " + es;
        }
    }

    /** The class path of this test's JVM, for its children (the launcher's own loader, or surefire's). */
    private static String classPath() {
        Set<String> entries = new LinkedHashSet<>();
        for (ClassLoader l = TakenDeviceGpuTest.class.getClassLoader(); l != null; l = l.getParent()) {
            if (l instanceof URLClassLoader) {
                for (URL u : ((URLClassLoader) l).getURLs()) {
                    if ("file".equals(u.getProtocol())) {
                        entries.add(new File(u.getPath()).getPath());
                    }
                }
            }
        }
        for (String e : System.getProperty("java.class.path").split(File.pathSeparator)) {
            entries.add(e);
        }
        return String.join(File.pathSeparator, entries);
    }

    private Process child(Class<?> main, String name) throws Exception {
        // each child unpacks JCuda's native library into a directory of its own
        Path own = java.nio.file.Files.createDirectories(tmp.resolve(name));
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        return new ProcessBuilder(java, "-Djava.io.tmpdir=" + own, "-cp", classPath(), main.getName())
                .redirectError(tmp.resolve(name + ".err").toFile()).start();
    }

    /** What child {@code name} wrote to stderr so far (its last 4,000 characters), for a failure's message. */
    private String err(String name) {
        try {
            String all = java.nio.file.Files.readString(tmp.resolve(name + ".err"));
            return all.substring(Math.max(0, all.length() - 4000));
        } catch (java.io.IOException e) {
            return "(no stderr: " + e + ")";
        }
    }

    private String readLine(BufferedReader r, Process p, String who, String name) throws Exception {
        // not r.readLine() on this thread: a child that hangs must fail the test, whose finally then ends it
        java.util.concurrent.CompletableFuture<String> next = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                return r.readLine();
            } catch (java.io.IOException e) {
                return null;
            }
        });
        String line;
        try {
            line = next.get(120, TimeUnit.SECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            throw new AssertionError(who + " said nothing for 120 s; its stderr: " + err(name));
        }
        assertNotNull(line, who + " said nothing (exit " + (p.waitFor(5, TimeUnit.SECONDS) ? p.exitValue() : -1)
                + "); its stderr: " + err(name));
        System.out.println("TakenDeviceGpuTest: " + who + ": " + line);
        return line;
    }

    @Test
    @NeedsGpu
    void aTakenDeviceIsUnusableForNowAndUsableOnceFreed() throws Exception {
        Process taker = child(Taker.class, "taker");
        Process opener = null;
        try {
            BufferedReader takerOut = new BufferedReader(new InputStreamReader(taker.getInputStream(), StandardCharsets.UTF_8));
            String taken = readLine(takerOut, taker, "taker", "taker");
            assertTrue(taken.startsWith("TAKEN "), taken);
            opener = child(Opener.class, "opener");
            BufferedReader openerOut = new BufferedReader(new InputStreamReader(opener.getInputStream(), StandardCharsets.UTF_8));
            String first = readLine(openerOut, opener, "opener while taken", "opener");
            assertFalse(first.contains("OTHER"), "a taken device fails as GpuUnusableException: " + first);
            assertFalse(first.contains("OPENED"), "the device opened with its memory taken (" + taken + "): " + first);
            assertTrue(first.contains("cannot open cuda:0 now"), first + "; the opener's stderr: " + err("opener"));
            assertFalse(first.contains("needs a driver for CUDA"), "not blamed on the driver: " + first);
            taker.getOutputStream().close();
            assertTrue(taker.waitFor(60, TimeUnit.SECONDS), "the taker ends when its stdin closes");
            try (Writer w = new OutputStreamWriter(opener.getOutputStream(), StandardCharsets.UTF_8)) {
                w.write("go\n");
            }
            String second = readLine(openerOut, opener, "opener once freed", "opener");
            assertTrue(second.contains("lightning OPENED ok") && second.contains("softmax OPENED"),
                    "the same process opens the device once it is free, and computes: " + second + "; the opener's "
                            + "stderr: " + err("opener"));
            assertTrue(opener.waitFor(60, TimeUnit.SECONDS));
        } finally {
            taker.destroyForcibly();
            if (opener != null) {
                opener.destroyForcibly();
            }
        }
    }
}
