package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * A task attempt that outlives its stage (its executor was declared lost but still runs: a long GC
 * pause, a network partition) and writes its piece of an in-place output while the driver commits
 * the run. The commit renames the staged file into the output directory, and the attempt holds the
 * file open from before: without a fence its positioned writes land in the published file after the
 * commit, and another backend (a GPU attempt against its CPU retry) writes other bytes, so a published
 * result with _SUCCESS beside it would change under its readers. With the fence the commit waits
 * for the attempt's ranges, and an attempt that starts later fails: the published file never changes.
 */
class ZombieAttemptTest {
    @TempDir
    java.nio.file.Path tmp;

    private static final int T = 8;
    private static final int H = 2;
    private static final int D = 4;

    @Test
    void anAttemptThatOutlivesTheCommitDoesNotChangeThePublishedFile() throws Exception {
        RawLocalFileSystem fs = new RawLocalFileSystem();
        fs.initialize(java.net.URI.create("file:///"), new Configuration());
        Path output = new Path(tmp.toUri().toString() + "/out");
        fs.mkdirs(output);
        Staging staging = new Staging(output, "zombie", false);
        fs.mkdirs(staging.path());
        Staging.writeAtomically(fs, staging.runFile(), "driver",
                RunInfo.encode(new ObjectMapper().createObjectNode(), true, "now"));
        SafetensorsHeader header = SafetensorsHeader.layout("a.safetensors",
                List.of(new SafetensorsHeader.Spec("o", DType.F32, T, H, D), new SafetensorsHeader.Spec("lse", DType.F32, T, H)),
                Map.of());
        OutputLayout layout = OutputLayout.softmax(header, T);
        SplitOutputs split = new SplitOutputs(SplitOutputs.Form.IN_PLACE, staging);
        split.prepare(fs, List.of("a.safetensors"), List.of(header));
        Piece[] pieces = {new Piece(0, 0, 2, 0, T / 2), new Piece(0, 1, 2, T / 2, T)};
        for (Piece p : pieces) { // the attempts that finished the pass
            split.writePiece(fs, "a.safetensors", layout, p, "1-" + p.index() + "-" + p.index(), rows(p, (byte) 1));
        }
        staging.stageReport(fs, new ObjectMapper().createObjectNode());

        java.nio.file.Path published = java.nio.file.Path.of(tmp.resolve("out").toString(), "a.safetensors");
        PrintStream quiet = new PrintStream(new ByteArrayOutputStream());
        // piece 1's first attempt, on a lost executor: it has opened the staged file and computes (another backend:
        // other bytes) while the driver, its retry done, commits
        CountDownLatch computing = new CountDownLatch(1);
        CountDownLatch committed = new CountDownLatch(1);
        Throwable[] zombieFailed = {null};
        Thread zombie = new Thread(() -> {
            try {
                split.writePiece(fs, "a.safetensors", layout, pieces[1], "1-1-9", out -> {
                    computing.countDown();
                    try {
                        committed.await(2, TimeUnit.SECONDS); // as long as the commit lets it
                    } catch (InterruptedException e) {
                        throw new IOException(e);
                    }
                    rows(pieces[1], (byte) 2).writeTo(out);
                });
            } catch (Throwable e) {
                zombieFailed[0] = e;
            }
        });
        zombie.start();
        assertTrue(computing.await(30, TimeUnit.SECONDS));
        try (OutputLock lock = OutputLock.acquire(fs, output, "zombie", 120, quiet)) {
            Commit.commit(fs, output, staging, List.of("a.safetensors"), List.of("a.safetensors"), List.of(), false,
                    lock, quiet);
        }
        byte[] atCommit = Files.readAllBytes(published);
        committed.countDown();
        zombie.join(30_000);
        assertArrayEquals(atCommit, Files.readAllBytes(published),
                "the published file does not change once the commit has returned");
        // done with its piece, the attempt records it (Pass2Tasks), in a staging directory that the commit removed
        assertThrows(IOException.class, () -> staging.markDone(fs, "pass2-s0-p1-1", "1-1-9", List.of()));

        // an attempt that starts after the commit finds no staged file and writes nothing
        assertThrows(IOException.class, () -> split.writePiece(fs, "a.safetensors", layout, pieces[0], "1-0-9",
                rows(pieces[0], (byte) 3)));
        assertArrayEquals(atCommit, Files.readAllBytes(published));
        assertFalse(Files.exists(tmp.resolve("out").resolve(Staging.PARENT)),
                "no staging directory is made again in the output directory");
    }

    /** Rows of piece {@code p}: o then lse, every byte {@code fill}. */
    private static SplitOutputs.Body rows(Piece p, byte fill) {
        return out -> {
            long n = p.end() - p.start();
            byte[] o = new byte[(int) (n * H * D * 4)];
            byte[] lse = new byte[(int) (n * H * 4)];
            Arrays.fill(o, fill);
            Arrays.fill(lse, fill);
            out.get("o").write(o);
            out.get("lse").write(lse);
        };
    }
}
