package dev.lightning.attention.job.output;

import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The output lock on its own: exclusion, the refresh that keeps it alive, losing it, and a race for a stale one. */
class OutputLockTest {
    @TempDir
    java.nio.file.Path tmp;

    private final PrintStream quiet = new PrintStream(new ByteArrayOutputStream());

    private FileSystem fs() throws Exception {
        return HadoopPaths.fileSystem(new Path(tmp.toUri()), new Configuration());
    }

    /** A held lock refuses a second holder and keeps being refreshed, so it never goes stale while held. */
    @Test
    void aHeldLockIsRefreshedAndExclusive() throws Exception {
        FileSystem fs = fs();
        Path out = new Path(tmp.toUri());
        try (OutputLock lock = OutputLock.acquire(fs, out, "first", 1.0, quiet)) {
            java.nio.file.Path file = tmp.resolve(OutputLock.NAME);
            Files.setLastModifiedTime(file, FileTime.fromMillis(System.currentTimeMillis() - 60_000));
            Thread.sleep(1_000); // the refresh runs every quarter of the stale time (at least 200 ms)
            long age = System.currentTimeMillis() - Files.getLastModifiedTime(file).toMillis();
            assertTrue(age < 900, "refreshed " + age + " ms ago");
            InvalidInputException e = assertThrows(InvalidInputException.class,
                    () -> OutputLock.acquire(fs, out, "second", 1.0, quiet));
            assertTrue(e.getMessage().contains("in use by run first"), e.getMessage());
            assertTrue(lock.held());
        }
        assertFalse(Files.exists(tmp.resolve(OutputLock.NAME)), "released");
    }

    /** A file system whose setTimes does nothing, as Hadoop's default (object store connectors): an object's time is its upload's. */
    static final class NoSetTimesFs extends org.apache.hadoop.fs.FilterFileSystem {
        NoSetTimesFs(FileSystem fs) {
            super(fs);
        }

        @Override
        public void setTimes(Path p, long mtime, long atime) {
        }
    }

    /**
     * Where setTimes does nothing, the lock is still refreshed (written again): it went stale
     * --lock-stale-seconds after it was taken, and a run from another host took over the lock of a
     * live run and removed its staging.
     */
    @Test
    void aHeldLockIsRefreshedWhereSetTimesDoesNothing() throws Exception {
        FileSystem fs = new NoSetTimesFs(fs());
        Path out = new Path(tmp.toUri());
        try (OutputLock lock = OutputLock.acquire(fs, out, "first", 1.0, quiet)) {
            java.nio.file.Path file = tmp.resolve(OutputLock.NAME);
            String content = Files.readString(file);
            Files.setLastModifiedTime(file, FileTime.fromMillis(System.currentTimeMillis() - 60_000));
            Thread.sleep(1_000);
            long age = System.currentTimeMillis() - Files.getLastModifiedTime(file).toMillis();
            assertTrue(age < 900, "refreshed " + age + " ms ago");
            assertTrue(lock.held()); // never taken for another run's while it is written again
            String now = Files.readString(file);
            for (int i = 0; i < 20 && now.isEmpty(); i++) { // the local file system's create truncates first
                Thread.sleep(10);
                now = Files.readString(file);
            }
            assertEquals(content, now, "the same lock, written again");
        }
        assertFalse(Files.exists(tmp.resolve(OutputLock.NAME)), "released");
    }

    /**
     * A file system whose setTimes does nothing (so each refresh writes the lock again) and whose rewrite of the lock
     * by the heartbeat, once armed, takes 500 ms after the create has emptied the file; an interrupt in that time
     * aborts the write, as an interruptible write would, and leaves the file empty.
     */
    static final class SlowRewriteFs extends org.apache.hadoop.fs.FilterFileSystem {
        final CountDownLatch writing = new CountDownLatch(1);
        volatile boolean armed;

        SlowRewriteFs(FileSystem fs) {
            super(fs);
        }

        @Override
        public void setTimes(Path p, long mtime, long atime) {
        }

        @Override
        public org.apache.hadoop.fs.FSDataOutputStream create(Path f, org.apache.hadoop.fs.permission.FsPermission
                permission, boolean overwrite, int bufferSize, short replication, long blockSize,
                org.apache.hadoop.util.Progressable progress) throws java.io.IOException {
            org.apache.hadoop.fs.FSDataOutputStream out = super.create(f, permission, overwrite, bufferSize, replication,
                    blockSize, progress);
            if (!armed || !Thread.currentThread().getName().equals("lightning-lock-heartbeat")) {
                return out;
            }
            armed = false;
            writing.countDown();
            try {
                Thread.sleep(500);
            } catch (InterruptedException e) {
                out.close();
                throw new java.io.InterruptedIOException("interrupted while writing the lock");
            }
            return out;
        }
    }

    /**
     * Closing while a refresh writes the lock again: close waits for that write and then removes the lock. Before
     * session 41 close interrupted the heartbeat (an aborted rewrite left the lock empty, which reads as no one's, so
     * close kept it) and deleted outside the monitor a refresh holds (a refresh could write it again after the
     * delete): either way a lock was left behind for the next run to wait out as stale.
     */
    @Test
    void closeWaitsForARefreshUnderWayAndRemovesTheLock() throws Exception {
        SlowRewriteFs fs = new SlowRewriteFs(fs());
        Path out = new Path(tmp.toUri());
        OutputLock lock = OutputLock.acquire(fs, out, "first", 1.0, quiet); // a refresh every 250 ms
        fs.armed = true;
        assertTrue(fs.writing.await(5, java.util.concurrent.TimeUnit.SECONDS), "a refresh began writing the lock");
        lock.close();
        assertFalse(Files.exists(tmp.resolve(OutputLock.NAME)), "the lock is removed, though a refresh was writing it");
    }

    /** A run whose lock was taken over (it looked stale) knows it and refuses to publish. */
    @Test
    void aLockTakenOverIsLost() throws Exception {
        FileSystem fs = fs();
        Path out = new Path(tmp.toUri());
        OutputLock lock = OutputLock.acquire(fs, out, "slow", 120.0, quiet);
        Files.writeString(tmp.resolve(OutputLock.NAME), "{\"runId\":\"other\",\"host\":\"h\",\"pid\":1}");
        assertFalse(lock.held());
        // said in one line by the command line, without a class name and a stack trace
        dev.lightning.attention.job.failure.ExplainedFailure e =
                assertThrows(dev.lightning.attention.job.failure.ExplainedFailure.class, lock::check);
        assertTrue(e.getMessage().contains("nothing was published"), e.getMessage());
        lock.close();
        assertTrue(Files.readString(tmp.resolve(OutputLock.NAME)).contains("other"), "the other run's lock stays");
    }

    /**
     * Something else at the lock's name (a link, a directory, a file that holds no lock's record) is refused with
     * what it is and what to do, however old, and never taken over: taking over deletes it. Before, a link to a
     * file read as "in use by run ? (process -1 on host ?", or was taken over once old, and a dangling link or a
     * directory made the run say another run kept taking the lock.
     */
    @Test
    void whatIsNotALockIsRefusedAndLeftAlone() throws Exception {
        FileSystem fs = fs();
        Path out = new Path(tmp.toUri());
        java.nio.file.Path lockFile = tmp.resolve(OutputLock.NAME);
        java.nio.file.Path target = Files.createTempFile(tmp.getParent(), "users-notes", ".txt");
        Files.writeString(target, "a user's notes");
        long old = System.currentTimeMillis() - 3_600_000;
        try {
            Files.createSymbolicLink(lockFile, target);
            refused(fs, out, "is a symbolic link");
            Files.delete(lockFile);
            Files.createSymbolicLink(lockFile, tmp.resolve("nowhere"));
            refused(fs, out, "is a symbolic link");
            Files.delete(lockFile);
            Files.createDirectory(lockFile);
            refused(fs, out, "is a directory");
            Files.delete(lockFile);
            Files.writeString(lockFile, "not a lock");
            Files.setLastModifiedTime(lockFile, FileTime.fromMillis(old));
            refused(fs, out, "(it is not JSON)");
            Files.writeString(lockFile, "{\"note\":1}");
            Files.setLastModifiedTime(lockFile, FileTime.fromMillis(old));
            refused(fs, out, "does not hold a lock's record");
            assertEquals("{\"note\":1}", Files.readString(lockFile));
            assertEquals("a user's notes", Files.readString(target));
        } finally {
            Files.deleteIfExists(target);
        }
    }

    /**
     * The local disk under another scheme (a connector standing on the raw local file system) is locked as the
     * local one: a link at the lock's name is refused. Before, the lock tested the scheme "file", took such a file
     * system for an object store and read the link's target as a lock ("in use by run ?").
     */
    @Test
    void theLocalDiskUnderAnotherSchemeIsLockedAsTheLocalOne() throws Exception {
        FileSystem fs = new dev.lightning.attention.job.hadoop.HadoopPathsTest.AliasedLocalFs();
        fs.initialize(java.net.URI.create("aliased:///"), new Configuration());
        Path out = new Path("aliased://" + tmp);
        java.nio.file.Path target = Files.writeString(tmp.resolve("users-notes.txt"), "{\"runId\":\"x\"}");
        Files.createSymbolicLink(tmp.resolve(OutputLock.NAME), target);
        refused(fs, out, "is a symbolic link");
        Files.delete(tmp.resolve(OutputLock.NAME));
        try (OutputLock lock = OutputLock.acquire(fs, out, "mine", 1.0, quiet)) {
            assertTrue(lock.held());
            assertTrue(Files.readString(tmp.resolve(OutputLock.NAME)).contains("\"mine\""));
        }
        assertFalse(Files.exists(tmp.resolve(OutputLock.NAME)), "released");
    }

    private void refused(FileSystem fs, Path out, String what) {
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> OutputLock.acquire(fs, out, "mine", 1.0, quiet));
        assertTrue(e.getMessage().contains(what) && e.getMessage().contains("not a lock this tool writes")
                && e.getMessage().contains("remove it by hand"), e.getMessage());
    }

    private void writeLock(String host, long pid, String processStart, double staleSeconds, long ageMillis)
            throws Exception {
        java.nio.file.Path file = tmp.resolve(OutputLock.NAME);
        Files.writeString(file, "{\"runId\":\"holder\",\"host\":\"" + host + "\",\"pid\":" + pid
                + ",\"processStart\":\"" + processStart + "\",\"staleSeconds\":" + staleSeconds + "}");
        Files.setLastModifiedTime(file, FileTime.fromMillis(System.currentTimeMillis() - ageMillis));
    }

    /**
     * On its own host a holder whose process still runs keeps the lock however old its refresh
     * (a run stopped with Ctrl-Z): this JVM's own process stands for it. The same process id with
     * another start time is a process id reused: that lock is taken over at once.
     */
    @Test
    void aLiveProcessOnThisHostKeepsItsLockHoweverOld() throws Exception {
        FileSystem fs = fs();
        Path out = new Path(tmp.toUri());
        ProcessHandle self = ProcessHandle.current();
        writeLock(OutputLock.hostName(), self.pid(), OutputLock.processStart(self), 1.0, 3_600_000);
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> OutputLock.acquire(fs, out, "impatient", 1.0, quiet));
        assertTrue(e.getMessage().contains("in use by run holder"), e.getMessage());
        writeLock(OutputLock.hostName(), self.pid(), "2001-01-01T00:00:00Z", 1.0, 0);
        ByteArrayOutputStream said = new ByteArrayOutputStream();
        try (OutputLock lock = OutputLock.acquire(fs, out, "next", 120.0, new PrintStream(said, true))) {
            assertTrue(lock.held());
            assertTrue(said.toString().contains("its process id now names another process"), said.toString());
        }
    }

    /**
     * A holder on another host is judged by its age against the larger of the two runs' stale
     * times: a run started with a small --lock-stale-seconds does not take the lock of a run that
     * refreshes at the pace of a larger one.
     */
    @Test
    void anotherHostsLockGoesStaleAtTheLargerOfBothThresholds() throws Exception {
        FileSystem fs = fs();
        Path out = new Path(tmp.toUri());
        writeLock("elsewhere", 1, "2001-01-01T00:00:00Z", 600.0, 300_000);
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> OutputLock.acquire(fs, out, "impatient", 1.0, quiet));
        assertTrue(e.getMessage().contains("in use by run holder"), e.getMessage());
        writeLock("elsewhere", 1, "2001-01-01T00:00:00Z", 600.0, 700_000);
        try (OutputLock lock = OutputLock.acquire(fs, out, "patient", 1.0, quiet)) {
            assertTrue(lock.held());
        }
    }

    /** Eight contenders for one stale lock, twenty times: each time exactly one ends up holding it. */
    @Test
    void oneHolderWhenManyTakeOverAStaleLock() throws Exception {
        FileSystem fs = fs();
        Path out = new Path(tmp.toUri());
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try {
            for (int round = 0; round < 20; round++) {
                Files.writeString(tmp.resolve(OutputLock.NAME), "{\"runId\":\"dead\",\"host\":\"elsewhere\",\"pid\":1}");
                Files.setLastModifiedTime(tmp.resolve(OutputLock.NAME), FileTime.fromMillis(0));
                CountDownLatch start = new CountDownLatch(1);
                List<Future<OutputLock>> tries = new ArrayList<>();
                for (int i = 0; i < 8; i++) {
                    String id = "run-" + round + "-" + i;
                    tries.add(pool.submit(() -> {
                        start.await();
                        try {
                            return OutputLock.acquire(fs, out, id, 120.0, quiet);
                        } catch (InvalidInputException refused) {
                            return null;
                        }
                    }));
                }
                start.countDown();
                List<OutputLock> won = new ArrayList<>();
                for (Future<OutputLock> f : tries) {
                    if (f.get() != null) {
                        won.add(f.get());
                    }
                }
                // a contender can get a lock that a quicker one then takes back; exactly one still holds it
                long holders = won.stream().filter(OutputLock::held).count();
                assertEquals(1, holders, "round " + round + ": holders among " + won.size() + " winners");
                won.forEach(OutputLock::close);
                try (var left = Files.list(tmp)) {
                    assertEquals(0, left.count(), "round " + round + ": no lock and no side files left");
                }
            }
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * A stale lock that another contender takes over between this run's read of it and its move aside: what this run
     * moved aside is then the other contender's live lock, which goes back in place, and this run is refused naming
     * that run. Taking it over instead deletes a lock this run did not write, and both runs then hold the output.
     * The file system (the local one, reached through Hadoop's rename) lets the other contender in at that moment.
     */
    @Test
    void aStaleLockTakenOverBetweenTheReadAndTheMoveAsideIsGivenBack() throws Exception {
        Path out = new Path(tmp.toUri());
        java.nio.file.Path file = tmp.resolve(OutputLock.NAME);
        String quick = "{\"runId\":\"quick\",\"host\":\"elsewhere\",\"pid\":7,\"staleSeconds\":120.0}";
        boolean[] cutIn = {false};
        FileSystem fs = new org.apache.hadoop.fs.FilterFileSystem(fs()) {
            @Override
            public boolean rename(Path src, Path dst) throws java.io.IOException {
                if (!cutIn[0] && src.getName().equals(OutputLock.NAME) && dst.getName().startsWith(OutputLock.NAME)) {
                    cutIn[0] = true; // the quicker contender's takeover: its own lock, fresh, where the stale one was
                    Files.writeString(file, quick);
                }
                return super.rename(src, dst);
            }
        };
        Files.writeString(file, "{\"runId\":\"dead\",\"host\":\"elsewhere\",\"pid\":1}");
        Files.setLastModifiedTime(file, FileTime.fromMillis(0));
        OutputLock taken = null;
        try {
            taken = OutputLock.acquire(fs, out, "slow", 120.0, quiet);
        } catch (InvalidInputException refused) {
            assertTrue(refused.getMessage().contains("in use by run quick"), refused.getMessage());
        } finally {
            if (taken != null) {
                taken.close();
            }
        }
        assertTrue(cutIn[0], "the other contender came in between");
        assertTrue(taken == null, "the lock of a run that took it over first is not taken from it");
        assertEquals(quick, Files.readString(file), "the other contender's lock stays in place");
        try (var left = Files.list(tmp)) {
            assertEquals(List.of(OutputLock.NAME), left.map(f -> f.getFileName().toString()).toList(), "no side files");
        }
    }
}
