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
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

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

    /** The raw local file system under another scheme, as a connector standing on the local disk registers it. */
    public static final class AliasedLocalFs extends org.apache.hadoop.fs.RawLocalFileSystem {
        @Override
        public java.net.URI getUri() {
            return java.net.URI.create("aliased:///");
        }
    }

    /**
     * The job goes around a file system through java.nio only where it is the raw local one, its subclasses included:
     * not Hadoop's LocalFileSystem, whose writes keep checksum side files, nor a filter over the raw one, though their
     * paths are file: paths. Before, two sites tested the scheme and the rest the class, so a lock on the local disk
     * under another scheme was taken as on an object store (no hard link, no check for a link at its name).
     */
    @Test
    void onlyTheRawLocalFileSystemIsReachedAround() throws Exception {
        Path dir = new Path(tmp.toUri());
        Path file = HadoopPaths.child(dir, "run:1.safetensors");
        FileSystem raw = HadoopPaths.fileSystem(dir, new Configuration());
        assertEquals(tmp.resolve("run:1.safetensors"), HadoopPaths.localFile(raw, file));
        assertTrue(HadoopPaths.isLocal(raw));
        FileSystem aliased = new AliasedLocalFs();
        aliased.initialize(java.net.URI.create("aliased:///"), new Configuration());
        assertEquals(tmp.resolve("x"), HadoopPaths.localFile(aliased, new Path("aliased://" + tmp + "/x")));
        FileSystem checked = FileSystem.getLocal(new Configuration());
        assertNull(HadoopPaths.localFile(checked, file), "LocalFileSystem writes side files");
        assertFalse(HadoopPaths.isLocal(checked));
        assertNull(HadoopPaths.localFile(new org.apache.hadoop.fs.FilterFileSystem(raw), file), "a filter may act otherwise");
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

    /** "." names the working directory, shown as such in messages (it parsed as an empty path, shown as nothing). */
    @Test
    void theWorkingDirectoryIsNamedInFull() {
        String cwd = new java.io.File("").getAbsolutePath();
        assertEquals(cwd, HadoopPaths.parse(".").toUri().getPath());
        assertEquals(cwd, HadoopPaths.parse("./").toUri().getPath());
        assertEquals("sub", HadoopPaths.parse("./sub").toString(), "other relative paths stay as given");
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

    /**
     * A rename is one step or nothing. Hadoop's raw local rename, where the system call fails,
     * copies instead: onto a directory it moved the file below it and reported success; across
     * mounts a crash could leave half a file where a result is published.
     */
    @Test
    void aLocalRenameIsOneStepOrNothing() throws Exception {
        FileSystem fs = HadoopPaths.fileSystem(new Path(tmp.toUri()), new Configuration());
        java.nio.file.Path src = Files.writeString(tmp.resolve("a:1.safetensors"), "new");
        java.nio.file.Path dir = Files.createDirectories(tmp.resolve("taken"));
        Files.writeString(dir.resolve("inside"), "kept");
        Path from = HadoopPaths.child(new Path(tmp.toUri()), "a:1.safetensors");
        java.io.IOException e = assertThrows(java.io.IOException.class,
                () -> HadoopPaths.rename(fs, from, HadoopPaths.child(new Path(tmp.toUri()), "taken")));
        assertTrue(e.getMessage().startsWith("cannot rename " + from + " to "), e.getMessage());
        assertEquals("new", Files.readString(src));
        assertEquals(List.of("inside"), names(dir));
        // a file replaces a file, as rename(2) does
        java.nio.file.Path old = Files.writeString(tmp.resolve("b.safetensors"), "old");
        HadoopPaths.rename(fs, from, HadoopPaths.child(new Path(tmp.toUri()), "b.safetensors"));
        assertEquals("new", Files.readString(old));
        assertFalse(Files.exists(src));
        // a source that is gone says so by its type, for the lock's takeover race
        assertThrows(java.io.FileNotFoundException.class,
                () -> HadoopPaths.rename(fs, from, HadoopPaths.child(new Path(tmp.toUri()), "c.safetensors")));
    }

    private static List<String> names(java.nio.file.Path dir) throws java.io.IOException {
        try (java.util.stream.Stream<java.nio.file.Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().collect(java.util.stream.Collectors.toList());
        }
    }
}
