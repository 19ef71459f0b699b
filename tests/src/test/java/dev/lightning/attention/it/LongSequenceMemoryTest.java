package dev.lightning.attention.it;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.cpu.CpuBackend;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A 10M-token sequence through the job in a JVM of 2 GB heap (driver and executor, local mode):
 * tasks hold one window and a few states, the driver never a tensor. The output is held against
 * the CPU backend run over the whole sequence in one call.
 */
class LongSequenceMemoryTest {
    static final int TOKENS = 10_000_000;
    static final int HEADS = 1;
    static final int DK = 8;
    static final int DV = 8;

    @TempDir
    Path tmp;

    @Test
    void tenMillionTokensRunInATwoGigabyteHeap() throws Exception {
        Path in = Files.createDirectories(tmp.resolve("in"));
        Path file = in.resolve("long.safetensors");
        writeRandom(file);
        Path out = tmp.resolve("out");

        Path home = Path.of("..").toAbsolutePath().normalize();
        List<String> cmd = new ArrayList<>();
        cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        cmd.add("-Xmx2g");
        cmd.addAll(Arrays.asList(Files.readString(home.resolve("spark-job/target/jvm.options")).trim().split("\\s+")));
        cmd.add("-Dlog4j2.configurationFile=" + home.resolve("conf/log4j2.properties"));
        cmd.add("-cp");
        cmd.add(System.getProperty("java.class.path"));
        cmd.add("dev.lightning.attention.job.LightningMain");
        cmd.addAll(List.of("run", "--input", in.toString(), "--output", out.toString(), "--master", "local[2]",
                "--partition-tokens", "1048576", "--progress-seconds", "30"));
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(tmp.resolve("job.log").toFile()).start();
        assertTrue(p.waitFor(10, TimeUnit.MINUTES), "job did not finish in 10 minutes");
        String log = Files.readString(tmp.resolve("job.log"));
        assertEquals(0, p.exitValue(), log);
        assertTrue(log.contains("10 pieces"), log);

        Map<String, SafetensorsFile.Tensor> input = SafetensorsFile.read(file);
        Map<String, SafetensorsFile.Tensor> result = SafetensorsFile.read(out.resolve("long.safetensors"));
        AttentionSpec spec = new AttentionSpec(HEADS, DK, DV, Slopes.minimax(HEADS), 1.0, 64);
        TokenTensor expect = TokenTensor.allocate(DType.BF16, TOKENS, HEADS, DV);
        LightningState state = new CpuBackend().forward(spec, input.get("q").asTokens(), input.get("k").asTokens(),
                input.get("v").asTokens(), LightningState.zeros(HEADS, DK, DV), expect);
        assertTrue(JobHarness.relativeError(result.get("o").toFloats(), expect.toFloats()) <= 2e-3,
                "o against the one-call CPU run");
        assertTrue(JobHarness.relativeError(result.get("final_state").toFloats(), state.kv()) <= 1e-5,
                "final state against the one-call CPU run");
    }

    /** Streams a BF16 sequence file to disk without holding it. */
    private static void writeRandom(Path file) throws IOException {
        SafetensorsHeader header = SafetensorsHeader.layout(file.getFileName().toString(), List.of(
                new SafetensorsHeader.Spec("q", DType.BF16, TOKENS, HEADS, DK),
                new SafetensorsHeader.Spec("k", DType.BF16, TOKENS, HEADS, DK),
                new SafetensorsHeader.Spec("v", DType.BF16, TOKENS, HEADS, DV)), Map.of());
        SplittableRandom rnd = new SplittableRandom(10);
        try (OutputStream o = new BufferedOutputStream(Files.newOutputStream(file), 1 << 20)) {
            o.write(header.encode());
            ByteBuffer b = ByteBuffer.allocate(1 << 16).order(ByteOrder.LITTLE_ENDIAN);
            for (int tensor = 0; tensor < 3; tensor++) {
                long count = (long) TOKENS * HEADS * (tensor < 2 ? DK : DV);
                for (long i = 0; i < count; i++) {
                    DType.BF16.put(b, b.position(), (float) (rnd.nextDouble() * 2 - 1));
                    b.position(b.position() + 2);
                    if (!b.hasRemaining()) {
                        o.write(b.array(), 0, b.position());
                        b.clear();
                    }
                }
                o.write(b.array(), 0, b.position());
                b.clear();
            }
        }
    }
}
