package dev.lightning.attention.it;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;
import org.apache.hadoop.fs.permission.FsPermission;
import org.apache.hadoop.util.Progressable;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The local file system under the scheme {@code objstore://}, behaving as an object store
 * connector does (S3A is the model), for runs that cannot reach one:
 * <ul>
 *   <li>not a {@link RawLocalFileSystem} (the job's local fast paths, file locks and in-place
 *       writes do not apply), no concat, no append;</li>
 *   <li>{@code setTimes} does nothing (Hadoop's default: an object's time is that of its upload);</li>
 *   <li>rename is a copy followed by a delete, file by file, and the copy gets a new modification
 *       time; it refuses to replace an existing file. {@link #failPublishAfter} makes the renames
 *       into or out of a {@code _temporary} directory (a commit's) fail once that many files were
 *       copied, as a connector stopped half way through leaves them: a file copied and its source
 *       not yet deleted; a directory's files split between source and destination.</li>
 *   <li>{@link #fillStagingAfter} makes writes into a {@code _temporary} directory (a run's staging) fail as a
 *       full disk's do, with the JDK's "No space left on device", once that many bytes were written there.</li>
 * </ul>
 */
public final class ObjectStoreFileSystem extends FileSystem {
    static final String SCHEME = "objstore";
    private static final URI NAME = URI.create(SCHEME + ":///");
    /** Files that renames into or out of _temporary may still copy before they fail; negative: no failure. */
    private static final AtomicInteger publishBudget = new AtomicInteger(-1);

    /** Renames into or out of a _temporary directory fail once {@code files} more files were copied (negative: never). */
    static void failPublishAfter(int files) {
        publishBudget.set(files);
    }

    /** Requests made: status calls (a HEAD each on S3) and listings. */
    static final AtomicInteger statusCalls = new AtomicInteger(), listCalls = new AtomicInteger();

    /** Bytes that writes into _temporary may still write before they fail; negative: no failure. */
    private static final java.util.concurrent.atomic.AtomicLong stagingRoom = new java.util.concurrent.atomic.AtomicLong(-1);

    /** Writes into a _temporary directory fail as on a full disk once {@code bytes} more were written (negative: never). */
    static void fillStagingAfter(long bytes) {
        stagingRoom.set(bytes);
    }

    private final RawLocalFileSystem local = new RawLocalFileSystem();
    private Path workingDir = new Path(SCHEME + ":" + System.getProperty("user.dir"));

    /** The --conf that registers this file system. */
    static String conf() {
        return "spark.hadoop.fs." + SCHEME + ".impl=" + ObjectStoreFileSystem.class.getName();
    }

    @Override
    public void initialize(URI name, Configuration conf) throws IOException {
        super.initialize(name, conf);
        local.initialize(URI.create("file:///"), conf);
        setConf(conf);
    }

    @Override
    public URI getUri() {
        return NAME;
    }

    @Override
    public String getScheme() {
        return SCHEME;
    }

    private Path toLocal(Path p) {
        Path q = p.isAbsolute() ? p : new Path(workingDir, p);
        return new Path("file", null, q.toUri().getPath());
    }

    private Path toStore(Path p) {
        return new Path(SCHEME, null, p.toUri().getPath());
    }

    private FileStatus toStore(FileStatus s) {
        return new FileStatus(s.isDirectory() ? 0 : s.getLen(), s.isDirectory(), 1, 32 << 20,
                s.getModificationTime(), 0, FsPermission.getFileDefault(), "user", "user", toStore(s.getPath()));
    }

    @Override
    public FSDataInputStream open(Path f, int bufferSize) throws IOException {
        return local.open(toLocal(f), bufferSize);
    }

    @Override
    public FSDataOutputStream create(Path f, FsPermission permission, boolean overwrite, int bufferSize,
                                     short replication, long blockSize, Progressable progress) throws IOException {
        if (!overwrite && exists(f)) { // a check, then the upload: not atomic, as S3A without conditional writes
            throw new FileAlreadyExistsException(f + " already exists");
        }
        if (exists(f) && getFileStatus(f).isDirectory()) {
            throw new FileAlreadyExistsException(f + " is a directory");
        }
        FSDataOutputStream out = local.create(toLocal(f), permission, true, bufferSize, replication, blockSize, progress);
        if (!f.toUri().getPath().contains("/_temporary/")) {
            return out;
        }
        return new FSDataOutputStream(new java.io.OutputStream() {
            @Override
            public void write(int b) throws IOException {
                write(new byte[] {(byte) b}, 0, 1);
            }

            @Override
            public void write(byte[] b, int off, int len) throws IOException {
                if (stagingRoom.get() >= 0 && stagingRoom.addAndGet(-len) < 0) {
                    stagingRoom.set(0);
                    throw new IOException("No space left on device");
                }
                out.write(b, off, len);
            }

            @Override
            public void close() throws IOException {
                out.close();
            }
        }, null);
    }

    @Override
    public FSDataOutputStream append(Path f, int bufferSize, Progressable progress) throws IOException {
        throw new UnsupportedOperationException("Append is not supported by " + getClass().getSimpleName());
    }

    @Override
    public boolean rename(Path src, Path dst) throws IOException {
        FileStatus from;
        try {
            from = getFileStatus(src);
        } catch (FileNotFoundException e) {
            return false;
        }
        Path to = dst;
        if (exists(dst)) {
            FileStatus d = getFileStatus(dst);
            if (d.isFile()) {
                return false; // never replaces a file
            }
            if (from.isFile()) {
                to = new Path(dst, src.getName());
                if (exists(to)) {
                    return false;
                }
            } else if (listStatus(dst).length > 0) {
                return false; // a directory that is not empty
            } else {
                delete(dst, false);
            }
        }
        List<Path> files = new ArrayList<>();
        collect(src, files);
        // a commit's: into the output (publishing) or out of it (an old result moved aside into the staging)
        boolean publishing = src.toUri().getPath().contains("/_temporary/")
                != dst.toUri().getPath().contains("/_temporary/");
        String root = src.toUri().getPath();
        int n = 0;
        for (Path f : files) { // each file copied, then its source deleted, as a connector's bulk rename pages them
            if (publishing && publishBudget.get() >= 0 && publishBudget.getAndDecrement() == 0) {
                publishBudget.set(-1);
                throw new IOException("simulated failure of rename " + src + " to " + dst + " after " + n
                        + " of " + files.size() + " file(s) moved");
            }
            Path target = new Path(to.toUri().getPath() + f.toUri().getPath().substring(root.length()));
            java.nio.file.Path t = local.pathToFile(toLocal(target)).toPath();
            java.nio.file.Files.createDirectories(t.getParent());
            java.nio.file.Files.copy(local.pathToFile(toLocal(f)).toPath(), t); // a new object: a new time
            if (publishing && publishBudget.get() == 0 && from.isFile()) {
                publishBudget.set(-1);
                throw new IOException("simulated failure of rename " + src + " to " + dst + " after copying, before "
                        + "deleting the source");
            }
            delete(f, false);
            n++;
        }
        if (from.isDirectory() && files.isEmpty()) {
            mkdirs(to);
        }
        delete(src, true);
        return true;
    }

    private void collect(Path p, List<Path> into) throws IOException {
        FileStatus s = getFileStatus(p);
        if (s.isFile()) {
            into.add(s.getPath());
            return;
        }
        for (FileStatus c : listStatus(p)) {
            collect(c.getPath(), into);
        }
    }

    @Override
    public boolean delete(Path f, boolean recursive) throws IOException {
        return local.delete(toLocal(f), recursive);
    }

    @Override
    public FileStatus[] listStatus(Path f) throws IOException {
        listCalls.incrementAndGet();
        FileStatus[] all = local.listStatus(toLocal(f));
        for (int i = 0; i < all.length; i++) {
            all[i] = toStore(all[i]);
        }
        return all;
    }

    @Override
    public void setWorkingDirectory(Path dir) {
        workingDir = dir.isAbsolute() ? dir : new Path(workingDir, dir);
    }

    @Override
    public Path getWorkingDirectory() {
        return workingDir;
    }

    @Override
    public boolean mkdirs(Path f, FsPermission permission) throws IOException {
        return local.mkdirs(toLocal(f), permission);
    }

    @Override
    public FileStatus getFileStatus(Path f) throws IOException {
        statusCalls.incrementAndGet();
        return toStore(local.getFileStatus(toLocal(f)));
    }
}
