package dev.lightning.attention.job.hadoop;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

public class HadoopPathsTest {
    /** Names a file system allows that a URI parser reads differently. */
    public static final List<String> ODD_NAMES = List.of("run:1.safetensors", "a b.safetensors", "100%.safetensors",
            "%41.safetensors", "x#1.safetensors", "q?.safetensors", "x[1].safetensors", "c,d.safetensors",
            "{e}.safetensors", "ünï.safetensors", "日本.safetensors", "a:b:c");

    @TempDir
    java.nio.file.Path tmp;

    @Test
    void childKeepsEveryCharacterOfTheName() throws Exception {
        Path dir = new Path(tmp.toString());
        FileSystem fs = HadoopPaths.fileSystem(dir, new Configuration());
        for (String name : ODD_NAMES) {
            Path child = HadoopPaths.child(dir, name);
            assertEquals(name, child.getName(), name);
            assertEquals(dir, child.getParent(), name);
            byte[] content = name.getBytes(StandardCharsets.UTF_8);
            try (FSDataOutputStream out = fs.create(child, false)) {
                out.write(content);
            }
            assertArrayEquals(content, Files.readAllBytes(tmp.resolve(name)), name + " on disk under its own name");
            try (FSDataInputStream in = fs.open(HadoopPaths.child(dir, name))) {
                byte[] back = new byte[content.length];
                in.readFully(back);
                assertArrayEquals(content, back, name);
            }
            // what a listing gives back names the same file, and survives the URI round trip tasks use
            FileStatus listed = fs.getFileStatus(child);
            assertEquals(name, listed.getPath().getName());
            Path again = new Path(java.net.URI.create(listed.getPath().toUri().toString()));
            assertEquals(listed.getPath(), again, name);
        }
        assertEquals(ODD_NAMES.size(), fs.listStatus(dir).length, "each file under its name, no side files");
    }

    @Test
    void childTakesRelativePathsAndRelativeDirectories() {
        Path dir = new Path("file:/data/in");
        Path nested = HadoopPaths.child(dir, "sub/run:1.safetensors");
        assertEquals("run:1.safetensors", nested.getName());
        assertEquals("sub", nested.getParent().getName());
        assertEquals("file:/data/in/sub/run:1.safetensors", nested.toString());
        assertEquals("hdfs://nn:8020/x/a b", HadoopPaths.child(new Path("hdfs://nn:8020/x"), "a b").toString());
        assertEquals("/a:b", HadoopPaths.child(new Path("/"), "a:b").toUri().getPath());
        Path relative = HadoopPaths.child(new Path("out"), "a:b.safetensors");
        assertNull(relative.toUri().getScheme());
        assertEquals("a:b.safetensors", relative.getName());
        assertEquals("out", relative.getParent().getName());
        for (String bad : new String[] {"", "/abs", "a/", "a//b", "../x", "a/./b"}) {
            assertThrows(IllegalArgumentException.class, () -> HadoopPaths.child(dir, bad), bad);
        }
    }

    @Test
    void parseTakesUrisAndLocalNamesWithColons() {
        assertEquals("hdfs", HadoopPaths.parse("hdfs://nn:8020/data/in").toUri().getScheme());
        assertEquals("/data/in", HadoopPaths.parse("hdfs://nn:8020/data/in").toUri().getPath());
        Path colon = HadoopPaths.parse("run:1.safetensors");
        assertNull(colon.toUri().getScheme());
        assertEquals("run:1.safetensors", colon.getName());
        assertEquals("100%.safetensors", HadoopPaths.parse("/tmp/100%.safetensors").getName());
        assertEquals("x#1.safetensors", HadoopPaths.parse("/tmp/x#1.safetensors").getName());
    }
}
