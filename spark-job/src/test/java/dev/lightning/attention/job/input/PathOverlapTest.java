package dev.lightning.attention.job.input;

import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertDoesNotThrow;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class PathOverlapTest {
    private static final Configuration CONF = new Configuration();

    @TempDir
    java.nio.file.Path tmp;
    java.nio.file.Path in;
    java.nio.file.Path real;

    @BeforeEach
    void inputDirectory() throws IOException {
        in = Files.createDirectories(tmp.resolve("in"));
        Files.write(in.resolve("a.safetensors"), new byte[] {1});
        Files.write(Files.createDirectories(in.resolve("sub")).resolve("b.safetensors"), new byte[] {2});
        real = in.toRealPath();
    }

    private void check(String input, boolean recursive, String output) throws IOException {
        List<InputFile> inputs = InputListing.list(CONF, input, recursive);
        PathOverlap.check(CONF, inputs, new Path(output));
    }

    /** Refused, naming --output as given and resolved, the input, and what to do. */
    private void refused(String input, boolean recursive, String output, String relation, String resolvedOutput) {
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> check(input, recursive, output));
        String m = e.getMessage();
        String given = new Path(output).toString();
        String prefix = "--output " + given + " (resolved: " + resolvedOutput + ") " + relation + " ";
        assertTrue(m.startsWith(prefix), m);
        // the input's path follows the relation ("contains the input" is not "contains the input file")
        String rest = m.substring(prefix.length());
        assertTrue(rest.startsWith("/") || rest.matches("(?s)[a-z]+:.*"), relation + " then: " + rest);
        assertTrue(m.contains("choose an output directory outside the input"), m);
    }

    @Test
    void theInputItselfIsRefusedHoweverItIsSpelled() throws IOException {
        refused(in.toString(), false, in.toString(), "is the same as the input", real.toString());
        refused(in.toString(), false, "file://" + in + "/", "is the same as the input", real.toString());
        refused(in.toString(), false, in + "/sub/..", "is the same as the input", real.toString());
        java.nio.file.Path link = Files.createSymbolicLink(tmp.resolve("link"), in);
        refused(in.toString(), false, link.toString(), "is the same as the input", real.toString());
        // the link as the input, the directory as the output
        refused(link.toString(), false, in.toString(), "is the same as the input", real.toString());
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> check(in.toString(), false,
                link.toString()));
        assertTrue(e.getMessage().contains("(resolved: " + real + ")") && e.getMessage().contains(in.toString()),
                "the input as given and as resolved: " + e.getMessage());
    }

    @Test
    void anOutputInsideTheInputIsRefusedEvenBeforeItExists() throws IOException {
        refused(in.toString(), false, in + "/results", "lies inside the input", real + "/results");
        refused(in.toString(), true, in + "/sub", "lies inside the input", real + "/sub");
        java.nio.file.Path link = Files.createSymbolicLink(tmp.resolve("link"), in);
        refused(in.toString(), false, link + "/new/deeper", "lies inside the input", real + "/new/deeper");
        // a dangling link is followed to where creating the output would put it
        java.nio.file.Path dangling = Files.createSymbolicLink(tmp.resolve("dangling"), in.resolve("later"));
        refused(in.toString(), false, dangling.toString(), "lies inside the input", real + "/later");
    }

    @Test
    void anOutputHoldingTheInputIsRefused() throws IOException {
        refused(in.toString(), false, tmp.toString(), "contains the input", tmp.toRealPath().toString());
        refused(in + "/a.safetensors", false, in.toString(), "contains the input", real.toString());
        refused(in + "/sub", false, in.toString(), "contains the input", real.toString());
        refused(in + "/sub/b.safetensors", false, in.toString(), "contains the input", real.toString());
    }

    @Test
    void anInputFileReachingIntoTheOutputThroughALinkIsRefused() throws IOException {
        java.nio.file.Path out = Files.createDirectories(tmp.resolve("out"));
        Files.write(out.resolve("c.safetensors"), new byte[] {3});
        Files.createSymbolicLink(in.resolve("linked"), out);
        assertDoesNotThrow(() -> check(in.toString(), false, out.toString()), "not recursive: the link is not read");
        refused(in.toString(), true, out.toString(), "contains the input file", out.toRealPath().toString());
    }

    @Test
    void separateDirectoriesAreAccepted() throws IOException {
        assertDoesNotThrow(() -> check(in.toString(), false, tmp.resolve("in2").toString()),
                "a name prefix is no overlap");
        assertDoesNotThrow(() -> check(in.toString(), false, tmp.resolve("inx/in").toString()));
        assertDoesNotThrow(() -> check(in + "/a.safetensors", false, in + "/sub"),
                "the directory of an input file named explicitly, but not holding it");
        java.nio.file.Path outside = Files.createDirectories(tmp.resolve("outside"));
        java.nio.file.Path link = Files.createSymbolicLink(tmp.resolve("out-link"), outside);
        assertDoesNotThrow(() -> check(in.toString(), true, link.toString()));
    }

    /** The local disk under another scheme: a file system that is not "file", without symlinks. */
    public static final class OtherFs extends org.apache.hadoop.fs.RawLocalFileSystem {
        @Override
        public java.net.URI getUri() {
            return java.net.URI.create("other:///");
        }

        @Override
        public boolean supportsSymlinks() {
            return false;
        }
    }

    @Test
    void otherFileSystemsCompareResolvedQualifiedPaths() throws IOException {
        Configuration conf = new Configuration();
        conf.set("fs.other.impl", OtherFs.class.getName());
        conf.setBoolean("fs.other.impl.disable.cache", true);
        String other = "other://" + in;
        Path root = new Path(other);
        Path file = HadoopPaths.child(root, "sub/b.safetensors");
        List<InputFile> inputs = List.of(new InputFile(new org.apache.hadoop.fs.LocatedFileStatus(
                new org.apache.hadoop.fs.FileStatus(1, false, 1, 1, 0, file), null), "sub/b.safetensors", root));
        InvalidInputException same = assertThrows(InvalidInputException.class,
                () -> PathOverlap.check(conf, inputs, new Path(other + "/")));
        assertTrue(same.getMessage().contains("(resolved: " + other + ") is the same as the input"), same.getMessage());
        InvalidInputException inside = assertThrows(InvalidInputException.class,
                () -> PathOverlap.check(conf, inputs, new Path(other + "/new/deeper")));
        assertTrue(inside.getMessage().contains("(resolved: " + other + "/new/deeper) lies inside the input"),
                inside.getMessage());
        InvalidInputException holds = assertThrows(InvalidInputException.class,
                () -> PathOverlap.check(conf, inputs, new Path("other://" + tmp)));
        assertTrue(holds.getMessage().contains("contains the input"), holds.getMessage());
        assertDoesNotThrow(() -> PathOverlap.check(conf, inputs, new Path("other://" + tmp + "/in2")));
        assertDoesNotThrow(() -> PathOverlap.check(conf, inputs, new Path("file://" + tmp + "/in/x")),
                "another file system");
    }
}
