package dev.lightning.attention.job.hadoop;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocalFileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.StandardCopyOption;

/**
 * Hadoop paths for names with any character a file system allows: from what the user typed
 * ({@link #parse}), for a file of a directory ({@link #child}), and the file system to open them
 * through ({@link #fileSystem}). Hadoop's {@code new Path(dir, "run:1.safetensors")} parses the
 * colon as a URI scheme and fails, so children are built from a relative path that starts with
 * "./" (no scheme can be read into it); spaces, {@code %}, {@code #}, {@code ?}, brackets and
 * non-ASCII letters are quoted by Hadoop's URI handling. Every path the job builds from a file
 * name goes through here, every rename the job does ({@link #rename}), and every step that goes
 * around a file system to the local disk ({@link #localFile}).
 */
public final class HadoopPaths {
    private HadoopPaths() {
    }

    /**
     * A path as the user typed it: a URI ({@code hdfs://nn/data}, {@code file:/tmp/x}) or a local
     * path, relative or absolute. A relative path whose first segment holds a colon
     * ({@code run:1.safetensors}) is not a valid URI and is taken as a local name.
     */
    public static Path parse(String userPath) {
        try {
            Path p = new Path(userPath);
            // "." and "./" come out as an empty path, which messages then show as nothing ("--output  (resolved:
            // ...)"): the working directory they name, as the local file system resolves them
            return p.toString().isEmpty() ? parse(java.nio.file.Path.of("").toAbsolutePath().toString()) : p;
        } catch (IllegalArgumentException e) {
            if (userPath.isEmpty() || userPath.startsWith("/")) {
                throw e;
            }
            return new Path(null, null, userPath);
        }
    }

    /**
     * The file system to open, create, rename and delete the job's files through. For a local path
     * that is the raw local file system: {@code LocalFileSystem} names a checksum side file
     * {@code .NAME.crc} with {@code new Path(parent, String)}, so every open, create, rename or
     * delete of a name holding a colon fails with a URISyntaxException; and the results are
     * self-describing files a user reads directly, which need no side files. (Listing through
     * {@code LocalFileSystem} is fine: it only hides the side files.)
     */
    public static FileSystem fileSystem(Path path, Configuration conf) throws IOException {
        FileSystem fs = path.getFileSystem(conf);
        return fs instanceof LocalFileSystem ? ((LocalFileSystem) fs).getRawFileSystem() : fs;
    }

    /**
     * The file of this machine's disk that {@code p} names, for the job to reach through java.nio
     * (links seen as links, hard links, fsync, file channels, atomic moves), where {@code fs} is
     * Hadoop's raw local file system; null on any other file system.
     * <p>
     * The test is the file system's class, not the path's scheme: going around {@code fs} is only
     * the same as going through it where {@code fs} adds nothing to the disk's own operations.
     * {@code LocalFileSystem} is a {@code ChecksumFileSystem} over the raw one and keeps a
     * {@code .NAME.crc} beside every file it writes, so a write around it leaves a side file that no
     * longer matches (the job's own files come through {@link #fileSystem}, which hands out the raw
     * one); a filter over the raw one (a test's, a connector's) has {@code file:} paths but may act
     * differently. A subclass of the raw one is the disk under another scheme or view, and its
     * {@code pathToFile} says which file a path is (a scheme test would miss it, and
     * {@code Paths.get(uri)} refuses a scheme other than {@code file}).
     */
    public static java.nio.file.Path localFile(FileSystem fs, Path p) {
        return fs instanceof RawLocalFileSystem local ? local.pathToFile(p).toPath() : null;
    }

    /** Whether {@link #localFile} gives the files of {@code fs}: the job may reach them through java.nio. */
    public static boolean isLocal(FileSystem fs) {
        return fs instanceof RawLocalFileSystem;
    }

    /**
     * {@code dir/name}, where {@code name} may hold '/' separators (nested outputs), taken
     * literally. A name that is empty, absolute, or has empty, "." or ".." segments is refused: it
     * would point outside {@code dir} or at {@code dir} itself.
     */
    public static Path child(Path dir, String name) {
        if (name.isEmpty() || name.startsWith("/") || name.endsWith("/")) {
            throw new IllegalArgumentException("expected a relative file name, got '" + name + "'");
        }
        for (String segment : name.split("/", -1)) {
            if (segment.isEmpty() || segment.equals(".") || segment.equals("..")) {
                throw new IllegalArgumentException("expected a relative file name without empty, '.' or '..' parts, "
                        + "got '" + name + "'");
            }
        }
        return new Path(dir, new Path(null, null, "./" + name));
    }

    /**
     * Renames {@code src} to {@code dst} in one step, or fails and changes nothing. On the local
     * file system a file replaces a file of that name, as rename(2) does. Hadoop's raw local
     * {@code rename} does not do this: where the system call fails (across mounts, onto a
     * directory) it copies, which a crash can leave half done at {@code dst}, and into a directory
     * {@code dst} it moves the file below it. So the local case is {@code Files.move} with
     * {@code ATOMIC_MOVE}; other file systems keep their own rename (HDFS's is atomic and does
     * not replace).
     *
     * @throws FileNotFoundException when {@code src} is gone
     * @throws IOException           when the file system refuses, saying why where it can
     */
    public static void rename(FileSystem fs, Path src, Path dst) throws IOException {
        if (isLocal(fs)) {
            java.nio.file.Path from = localFile(fs, src);
            java.nio.file.Path to = localFile(fs, dst);
            try {
                Files.move(from, to, StandardCopyOption.ATOMIC_MOVE);
            } catch (NoSuchFileException e) {
                throw (FileNotFoundException) new FileNotFoundException("cannot rename " + src + " to " + dst + ": "
                        + e.getFile() + " does not exist").initCause(e);
            } catch (AtomicMoveNotSupportedException e) {
                throw new IOException("cannot rename " + src + " to " + dst + " in one step: they lie on different "
                        + "file systems (a mount point inside the output directory?); keep the output directory, "
                        + "its staging (_temporary) and what it holds on one file system", e);
            } catch (IOException e) {
                throw new IOException("cannot rename " + src + " to " + dst + ": " + e, e);
            }
            return;
        }
        if (!fs.rename(src, dst)) {
            throw new IOException("cannot rename " + src + " to " + dst + " (" + fs.getUri() + " refused)");
        }
    }
}
