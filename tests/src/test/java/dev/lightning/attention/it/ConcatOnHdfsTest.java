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
        Outcome failed;
        System.setProperty("lightning.test.failAt", "assemble:1");
        try {
            failed = JobHarness.lightning(args(in, again));
        } finally {
            System.clearProperty("lightning.test.failAt");
        }
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

    private static byte[] read(Path p) throws IOException {
        try (InputStream s = hdfs.open(p)) {
            return s.readAllBytes();
        }
    }
}
