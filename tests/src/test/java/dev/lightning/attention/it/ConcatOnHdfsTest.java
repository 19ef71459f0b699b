package dev.lightning.attention.it;

import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The concat output form on a real HDFS: Hadoop's in-process mini cluster (a NameNode and a
 * DataNode of Hadoop 3.4.2, the version Spark 4.1 ships), with 1 MiB blocks so that the parts and
 * the joined file span several. auto picks concat there; the joined files are byte for byte the
 * in-place files of the same run on the local disk, no part is left beside them, and --resume
 * after the parts were joined keeps every piece (their bytes verify at their places in the file).
 * Skips nothing: the mini cluster runs wherever the build does.
 */
class ConcatOnHdfsTest {
    @TempDir
    static java.nio.file.Path tmp;
    static MiniDFSCluster cluster;
    static FileSystem hdfs;

    @BeforeAll
    static void startHdfs() throws IOException {
        Configuration conf = new Configuration();
        conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, tmp.resolve("hdfs").toString());
        conf.setLong("dfs.blocksize", 1 << 20);
        conf.setInt("dfs.replication", 1);
        cluster = new MiniDFSCluster.Builder(conf).numDataNodes(1).build();
        cluster.waitActive();
        hdfs = cluster.getFileSystem();
    }

    @AfterAll
    static void stopHdfs() {
        if (cluster != null) {
            cluster.shutdown();
        }
    }

    private static String[] args(java.nio.file.Path in, String out, String... more) {
        List<String> a = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out, "--master",
                "local[2]", "--backend", "cpu", "--chunk-size", "64", "--partition-tokens", "4096", "--normalize",
                "--state-every", "1024", "--conf", "spark.hadoop.dfs.blocksize=1048576",
                "--conf", "spark.hadoop.dfs.replication=1"));
        a.addAll(Arrays.asList(more));
        return a.toArray(new String[0]);
    }

    @Test
    void concatJoinsThePartsIntoTheInPlaceBytes() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        // 30,000 tokens, H = 4, Dv = 32, F32 o: 15 MiB of o in 8 pieces (about 1.9 MiB, two blocks, each)
        files.put("long.safetensors", Sequence.grouped(41, 30000, 4, 4, 4, 16, 32, DType.F32, null, true, false));
        files.put("short.safetensors", Sequence.grouped(42, 100, 2, 2, 2, 8, 8, DType.BF16, null, false, false));
        java.nio.file.Path in = JobHarness.writeSequences(tmp.resolve("in"), files);
        java.nio.file.Path local = tmp.resolve("local");
        succeed(args(in, local.toString(), "--output-form", "in-place"));
        String out = hdfs.getUri() + "/results";
        Outcome o = succeed(args(in, out));
        assertTrue(o.out.contains("--output-form concat"), "auto gives concat on HDFS:\n" + o.out);
        for (String name : files.keySet()) {
            assertArrayEquals(Files.readAllBytes(local.resolve(name)), read(new Path(out, name)), name);
        }
        List<String> left = new ArrayList<>();
        for (FileStatus s : hdfs.listStatus(new Path(out))) {
            left.add(s.getPath().getName());
        }
        left.sort(null);
        assertEquals(List.of("_SUCCESS", "_lightning_report.json", "long.safetensors", "short.safetensors"), left);
        assertTrue(hdfs.getFileBlockLocations(new Path(out, "long.safetensors"), 0, Long.MAX_VALUE).length > 8,
                "the joined file keeps the parts' blocks");

        // a run that fails after its parts were joined: --resume keeps every piece, verified in the joined file
        String again = hdfs.getUri() + "/again";
        Outcome failed = JobHarness.failingAt("assemble:1", args(in, again));
        assertTrue(failed.status != 0 && (failed.out + failed.err).contains("failing at assemble"), failed.err);
        assertFalse(hdfs.exists(new Path(again, "long.safetensors")), "nothing published by the failed run");
        Outcome resumed = succeed(args(in, again, "--resume"));
        java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit").matcher(resumed.out);
        // 8 + 1 pass-2 pieces, 7 pass-1 pieces and the scan of the long sequence
        assertTrue(kept.find() && Integer.parseInt(kept.group(1)) == 17, resumed.out);
        for (String name : files.keySet()) {
            assertArrayEquals(Files.readAllBytes(local.resolve(name)), read(new Path(again, name)), name + " resumed");
        }
        String report = new String(read(new Path(again, "_lightning_report.json")), java.nio.charset.StandardCharsets.UTF_8);
        assertTrue(report.contains("\"status\" : \"succeeded\""), "the resumed run's report, not the failed one's:\n"
                + report);
    }

    /**
     * Softmax runs write their split sequences through the same forms: on HDFS auto gives concat,
     * and the joined files (o and lse of every piece, in file order) are byte for byte the in-place
     * files on the local disk; a run that fails after the join resumes keeping every unit.
     */
    @Test
    void softmaxConcatJoinsThePartsIntoTheInPlaceBytes() throws IOException {
        Map<String, Sequence> files = new LinkedHashMap<>();
        // 12,000 tokens, Hq = 4, Hk = 2, Dv = 32, F32 o: 5.9 MiB of o and 0.2 MiB of lse in 6 pieces
        files.put("long.safetensors", Sequence.grouped(43, 12000, 4, 2, 2, 16, 32, DType.BF16, null, false, false));
        files.put("short.safetensors", Sequence.grouped(44, 100, 2, 1, 1, 8, 8, DType.F32, null, false, false));
        java.nio.file.Path in = JobHarness.writeSequences(tmp.resolve("softmax-in"), files);
        List<String> base = List.of("run", "--attention", "softmax", "--input", in.toString(), "--master", "local[2]",
                "--backend", "cpu", "--partition-tokens", "2048", "--write-lse", "--output-dtype",
                "f32", "--conf", "spark.hadoop.dfs.blocksize=1048576", "--conf", "spark.hadoop.dfs.replication=1",
                "--output");
        java.nio.file.Path local = tmp.resolve("softmax-local");
        succeed(with(base, local.toString(), "--output-form", "in-place"));
        String out = hdfs.getUri() + "/softmax";
        Outcome o = succeed(with(base, out));
        assertTrue(o.out.contains("1 output(s) written by their pieces, --output-form concat"), o.out);
        assertTrue(o.out.contains("softmax 2/2: merge"), "partials merged, their rows joined too:\n" + o.out);
        for (String name : files.keySet()) {
            assertArrayEquals(Files.readAllBytes(local.resolve(name)), read(new Path(out, name)), name);
        }
        List<String> left = new ArrayList<>();
        for (FileStatus s : hdfs.listStatus(new Path(out))) {
            left.add(s.getPath().getName());
        }
        left.sort(null);
        assertEquals(List.of("_SUCCESS", "_lightning_report.json", "long.safetensors", "short.safetensors"), left);

        String again = hdfs.getUri() + "/softmax-again";
        Outcome failed = JobHarness.failingAt("assemble:1", with(base, again));
        assertTrue(failed.status != 0 && (failed.out + failed.err).contains("failing at assemble"), failed.err);
        assertFalse(hdfs.exists(new Path(again, "long.safetensors")), "nothing published by the failed run");
        Outcome resumed = succeed(with(base, again, "--resume"));
        com.fasterxml.jackson.databind.JsonNode plan = new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree(read(new Path(out, "_lightning_report.json"))).get("softmax");
        java.util.regex.Matcher kept = java.util.regex.Pattern.compile("resumed: (\\d+) unit").matcher(resumed.out);
        // every work item and every merge, verified where the concat put their bytes
        assertTrue(kept.find() && Integer.parseInt(kept.group(1))
                == plan.get("items").asInt() + plan.get("mergedQueryPieces").asInt(), plan + "\n" + resumed.out);
        for (String name : files.keySet()) {
            assertArrayEquals(Files.readAllBytes(local.resolve(name)), read(new Path(again, name)), name + " resumed");
        }
    }

    private static String[] with(List<String> base, String... more) {
        List<String> a = new ArrayList<>(base);
        a.addAll(Arrays.asList(more));
        return a.toArray(new String[0]);
    }

    private static byte[] read(Path p) throws IOException {
        try (InputStream s = hdfs.open(p)) {
            return s.readAllBytes();
        }
    }
}
