package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.stream.FormatVersion;
import dev.lightning.attention.stream.PositionedOutput;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.FileNotFoundException;
import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.Serializable;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.StandardOpenOption;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * Where one run keeps everything it writes before the commit publishes it:
 * {@code <output>/_temporary/lightning-<run>/} (a name Hadoop and Spark readers skip).
 * <pre>
 *   run.json             who made it, the {@link #FORMAT} it stages in, and the fingerprint of inputs
 *                        and settings (for --resume)
 *   local/, incoming/    pass-1 local states, one file per task and sequence
 *                        ({@code PieceGroups}), and the scan's incoming
 *                        states, one file per block of the scan ({@link #prefixes})
 *   files/NAME           output files, published into the output directory by the commit. A sequence
 *                        split into pieces (or, lightning, any with --state-every) is written there without
 *                        one task copying it, by {@link SplitOutputs}: in place (the driver creates the file,
 *                        each piece writes its byte ranges), as hidden parts beside it that the driver joins
 *                        with the file system's concat, or as NAME.index.json and NAME.parts/. With
 *                        --output-mode checksums files/NAME is one small file written from parts/
 *   done/UNIT.json       one marker per finished unit of work (the pieces of one sequence that one task
 *                        computed, a block of the scan): its files (or byte ranges of a file written in
 *                        place) with size and CRC32C
 *   partials/            softmax: partial results of (query piece, key pieces) items, merged per query
 *                        piece into the piece's share of files/NAME
 *   parts/               lightning with --output-mode checksums: the o summaries of each task's pieces
 *                        ({@link #summaries}), each piece's recorded states and the final state
 *                        ({@link #checksumsPart})
 *   scan/                the blocked scan's summaries and carries above level 0 (see
 *                        {@code BlockScan})
 *   shared-check/        before the first pass on a cluster, the files by which the driver and the executors
 *                        see that they share --output ({@link SharedOutputCheck}); removed once seen
 *   _lightning_report.json, commit.json    the report, and the commit record (see {@link Commit})
 * </pre>
 * Every file is written aside and renamed into place (or, in place, its byte ranges are rewritten),
 * and its bytes are a function of the input and settings alone, so a retried or resumed task
 * writes the same bytes on the same backend (a GPU task retried on the CPU writes other roundings,
 * each within the float64 checks: where its rename cannot replace the first attempt's file, its
 * marker records that file; {@link #writeAtomically}). A unit whose marker
 * still matches its files (sizes and checksums) is not computed again by {@code --resume}.
 */
public final class Staging implements Serializable {
    private static final long serialVersionUID = 1L;
    public static final String PARENT = "_temporary";
    static final String PREFIX = "lightning-";

    /**
     * The version of what a run stages, which run.json records and --resume compares before the
     * fingerprint: the layout of the files and markers above. A marker proves only that its bytes
     * are still there, not what they mean, so work staged by a build of another format is never
     * kept: its files may be laid out otherwise. Change it with any change to that layout. What the
     * staged bytes hold (pass 1's local states, the scan's incoming states, the outputs) is the
     * engine's computation, which run.json records as {@link dev.lightning.attention.engine.EngineBuild#digest}
     * beside it: work staged by a build whose engine code differs is not kept either, or the resumed
     * run would publish outputs that neither build writes uninterrupted (a fix of pass 1 silently
     * left out of them). Builds before the format was recorded staged none; the product version
     * ({@link Version}) is the same for every build of a release and cannot tell them apart.
     */
    public static final String FORMAT = "lightning-staging-1";

    public final String root;
    /** Whether tasks may keep units an earlier attempt of this run finished (--resume). */
    public final boolean resume;

    public Staging(Path output, String runId, boolean resume) {
        this.root = new Path(new Path(output, PARENT), PREFIX + runId).toString();
        this.resume = resume;
    }

    /** The staging directories of all runs in {@code output} (complete or not), oldest name first. */
    public static List<Path> all(FileSystem fs, Path output) throws IOException {
        return listed(fs, output, true);
    }

    /**
     * The entries of {@code <output>/_temporary} named as a run's staging ({@code lightning-*}) that no run staged
     * (see {@link #all}): the runs leave them alone, neither finishing a commit from them nor removing them.
     */
    public static List<Path> notRuns(FileSystem fs, Path output) throws IOException {
        return listed(fs, output, false);
    }

    private static List<Path> listed(FileSystem fs, Path output, boolean runs) throws IOException {
        List<Path> found = new ArrayList<>();
        Path parent = new Path(output, PARENT);
        try {
            for (FileStatus s : fs.listStatus(parent)) {
                if (s.getPath().getName().startsWith(PREFIX) && (s.isDirectory() || !runs)
                        && isRun(fs, s.getPath()) == runs) {
                    found.add(s.getPath());
                }
            }
        } catch (FileNotFoundException e) {
            return found;
        }
        found.sort(null);
        return found;
    }

    /**
     * Whether {@code dir} is a run's staging: a real directory (a symbolic link is followed by the listing, and the
     * commit it finished from there, and the removal, would reach outside the output) holding run.json, which a run
     * writes before anything else there and its removal ({@link #removeTree}) deletes last; or one holding nothing
     * but run.json's partial file (a run killed as it started). A directory of that name holding anything else was
     * made by hand or by another tool: removing it as an earlier run's staging deleted what no run wrote.
     */
    private static boolean isRun(FileSystem fs, Path dir) throws IOException {
        java.nio.file.Path local = HadoopPaths.localFile(fs, dir);
        if (local != null && !Files.isDirectory(local, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return false;
        }
        if (fs.exists(new Path(dir, RUN_FILE))) {
            return true;
        }
        try {
            for (FileStatus s : fs.listStatus(dir)) {
                if (!s.isFile() || !s.getPath().getName().startsWith(partialName(RUN_FILE, ""))) {
                    return false;
                }
            }
        } catch (FileNotFoundException e) {
            return false; // removed meanwhile
        }
        return true;
    }

    /** The file that makes a directory a run's staging ({@link #isRun}): who made it, and with what. */
    static final String RUN_FILE = "run.json";

    public static String runIdOf(Path stagingDir) {
        return stagingDir.getName().substring(PREFIX.length());
    }

    public Path path() {
        return new Path(root);
    }

    public Path runFile() {
        return new Path(root, RUN_FILE);
    }

    Path report() {
        return new Path(root, Commit.REPORT);
    }

    /**
     * Stages the run report, replacing one an earlier attempt of this run staged (a failed run's,
     * before --resume): writeAtomically keeps an existing file where the file system's rename
     * does not replace (HDFS), which is right for the same bytes and wrong for a new report. Every run's report is
     * written here, so here it gets this build's {@link FormatVersion}: later runs read it back
     * ({@link Commit#readReport}).
     */
    public void stageReport(FileSystem fs, ObjectNode report) throws IOException {
        FormatVersion.put(report);
        fs.delete(report(), false);
        writeAtomically(fs, report(), "driver",
                new ObjectMapper().enable(com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT)
                        .writeValueAsBytes(report));
    }

    /**
     * The local states (pass 1) of pieces {@code first..last} of a sequence, computed by one task:
     * their {@link dev.lightning.attention.engine.LightningState#toBytes} one after the other, piece
     * j at (j - first) state sizes. One file per task and sequence, not per piece
     * ({@code PieceGroups}).
     */
    public Path localStates(int sequence, int first, int last) {
        return new Path(root, "local/s" + sequence + "-p" + first + "-" + last + ".f32");
    }

    /**
     * The prefixes y_(bB+1) .. y_(bB+count) of level {@code level} of a sequence's blocked scan,
     * written in order by the down unit of block {@code block}
     * ({@code BlockScan}), y_j at ((j - 1) mod B) state sizes. At level 0
     * these are the incoming states of pieces bB+1 .. bB+count.
     */
    public Path prefixes(int sequence, int level, int block) {
        return new Path(root, (level == 0 ? "incoming/s" + sequence : "scan/s" + sequence + "-l" + level + "-y")
                + "-b" + block + ".f32");
    }

    /** Element j of level L >= 1 of a sequence's blocked scan: the summary of block j of level L - 1. */
    public Path scanElement(int sequence, int level, int j) {
        return new Path(root, "scan/s" + sequence + "-l" + level + "-e" + j + ".f32");
    }

    /**
     * A part of output {@code name} that a concat joins into its staged file ({@code --output-form
     * concat}): what piece {@code piece} wrote through stream {@code stream} of the output's layout
     * ({@link dev.lightning.attention.stream.OutputLayout}: o, states, normalizers, lse). Beside the
     * staged file, as HDFS's concat has wanted its sources in the target's directory.
     */
    Path concatPart(String name, String stream, int piece) {
        Path staged = stagedOutput(name);
        return HadoopPaths.child(staged.getParent(), "." + staged.getName() + ".p" + piece + "." + stream);
    }

    /** Softmax: the partial (o and lse per query block, float32) of query piece {@code piece} over key pieces {@code firstKey..lastKey}. */
    public Path softmaxPartial(int sequence, int piece, int firstKey, int lastKey) {
        return new Path(root, "partials/s" + sequence + "-p" + piece + "-k" + firstKey + "-" + lastKey + ".f32");
    }

    /**
     * --output-mode checksums: what piece {@code piece} of a sequence stages for its result file
     * ({@code Pass2Tasks}): {@code kind} "states" and "normalizers" (its
     * recorded S and z), or "final" (piece -1: the sequence's final state). Its o summary goes with
     * its task's ({@link #summaries}).
     */
    public Path checksumsPart(int sequence, int piece, String kind) {
        return new Path(root, "parts/s" + sequence + (piece < 0 ? "" : "-p" + piece) + "." + kind);
    }

    /**
     * --output-mode checksums: the o summaries of pieces {@code first..last} of a sequence, staged
     * by one task ({@code PieceGroups}): for each piece in order, its
     * length (4 bytes, big-endian) and its {@code OutputSummary.toBytes}.
     */
    public Path summaries(int sequence, int first, int last) {
        return new Path(root, "parts/s" + sequence + "-p" + first + "-" + last + ".o-summaries");
    }

    /** Where {@link SharedOutputCheck} has the driver and the executors leave files for each other. */
    Path sharedCheck() {
        return new Path(root, "shared-check");
    }

    /** The complete output file of {@code name} (a name relative to the output directory). */
    public Path stagedOutput(String name) {
        return HadoopPaths.child(new Path(root, "files"), name);
    }

    private Path marker(String unit) {
        return new Path(root, "done/" + unit + ".json");
    }

    // ---------------------------------------------------------------- units of work

    /**
     * What a unit wrote: a whole file, or (offset >= 0) bytes [offset, offset + size) of one; how
     * long, its CRC32C. A part that a concat moves into a file later names that file and where its
     * bytes land there ({@code concatInto}, {@code at}), so that it still verifies once it is gone.
     */
    public static final class Written {
        final Path path;
        final long offset;
        final long size;
        final long crc;
        final Path concatInto;
        final long at;

        Written(Path path, long size, long crc) {
            this(path, -1, size, crc, null, -1);
        }

        Written(Path path, long offset, long size, long crc, Path concatInto, long at) {
            this.path = path;
            this.offset = offset;
            this.size = size;
            this.crc = crc;
            this.concatInto = concatInto;
            this.at = at;
        }

        /** This whole file, to be concatenated into {@code target} at {@code at}. */
        Written concatenatedInto(Path target, long at) {
            return new Written(path, -1, size, crc, target, at);
        }
    }

    /** Records that {@code unit} is finished with these files (written after the files are in place). */
    public void markDone(FileSystem fs, String unit, String attempt, List<Written> files) throws IOException {
        ObjectMapper json = new ObjectMapper();
        ObjectNode n = json.createObjectNode();
        ArrayNode list = n.putArray("files");
        for (Written w : files) {
            ObjectNode f = list.addObject().put("path", w.path.toUri().toString()).put("size", w.size)
                    .put("crc32c", w.crc);
            if (w.offset >= 0) {
                f.put("offset", w.offset);
            }
            if (w.concatInto != null) {
                f.put("concatInto", w.concatInto.toUri().toString()).put("at", w.at);
            }
        }
        byte[] bytes = json.writeValueAsBytes(n);
        writeAtomically(fs, marker(unit), attempt, o -> o.write(bytes));
    }

    /**
     * Whether {@code unit} was finished by an earlier attempt of this run and its files are still
     * exactly as recorded (read back and checksummed). Only with --resume; otherwise false.
     */
    public boolean alreadyDone(FileSystem fs, String unit) throws IOException {
        if (!resume) {
            return false;
        }
        JsonNode n;
        try (InputStream in = fs.open(marker(unit))) {
            n = new ObjectMapper().readTree(in);
        } catch (FileNotFoundException e) {
            return false;
        } catch (IOException e) {
            return false; // a marker that does not parse is no proof: compute the unit again
        }
        for (JsonNode f : n.path("files")) {
            if (!verifies(fs, f)) {
                return false;
            }
        }
        return n.path("files").size() > 0;
    }

    /**
     * Whether a marker's entry still holds: its file (or range), or where a concat moved the file. An entry
     * that is not one {@link #markDone} writes (a damaged marker: no path URI, size or checksum) holds nothing,
     * as a marker that does not parse.
     */
    private static boolean verifies(FileSystem fs, JsonNode f) throws IOException {
        Path p = markedPath(f.path("path"));
        if (p == null || !f.path("size").canConvertToExactIntegral() || f.path("size").asLong() < 0
                || !f.path("crc32c").canConvertToExactIntegral()
                || f.has("offset") && !f.path("offset").canConvertToExactIntegral()
                || f.has("concatInto") && (markedPath(f.path("concatInto")) == null
                || !f.path("at").canConvertToExactIntegral())) {
            return false;
        }
        long size = f.path("size").asLong(-1);
        long crc = f.path("crc32c").asLong(-1);
        long offset = f.path("offset").asLong(-1);
        if (offset >= 0) {
            return crc(fs, p, offset, size) == crc;
        }
        try {
            return fs.getFileStatus(p).getLen() == size && crc(fs, p) == crc;
        } catch (FileNotFoundException e) {
            if (!f.has("concatInto")) {
                return false;
            }
            return crc(fs, markedPath(f.path("concatInto")), f.path("at").asLong(), size) == crc;
        }
    }

    /** A marker's file as {@link #markDone} records it (its URI), or null where the entry holds none. */
    private static Path markedPath(JsonNode uri) {
        if (!uri.isTextual()) {
            return null;
        }
        try {
            java.net.URI u = new java.net.URI(uri.textValue());
            return u.getPath() != null && !u.getPath().isEmpty() ? new Path(u) : null;
        } catch (java.net.URISyntaxException | IllegalArgumentException e) {
            return null;
        }
    }

    /** CRC32C of bytes [offset, offset + size) of {@code p}; -1 when the file is missing or shorter. */
    static long crc(FileSystem fs, Path p, long offset, long size) throws IOException {
        CRC32C crc = new CRC32C();
        byte[] buf = new byte[(int) Math.min(1 << 20, Math.max(1, size))];
        try (FSDataInputStream in = fs.open(p)) {
            if (fs.getFileStatus(p).getLen() < offset + size) {
                return -1;
            }
            for (long done = 0; done < size; ) {
                int n = (int) Math.min(buf.length, size - done);
                in.readFully(offset + done, buf, 0, n);
                crc.update(buf, 0, n);
                done += n;
            }
        } catch (FileNotFoundException e) {
            return -1;
        }
        return crc.getValue();
    }

    static long crc(FileSystem fs, Path p) throws IOException {
        CRC32C crc = new CRC32C();
        byte[] buf = new byte[1 << 20];
        try (InputStream in = fs.open(p)) {
            for (int r; (r = in.read(buf)) > 0; ) {
                crc.update(buf, 0, r);
            }
        }
        return crc.getValue();
    }

    // ---------------------------------------------------------------- atomic writes

    /**
     * The hidden name under which {@code attempt} writes file {@code name} until it is whole
     * ({@link #writeAtomically}); with an empty attempt, the start of every such name ({@link #isRun} reads it).
     * Every partial file the product writes is named so, the demo's and generate's input files too
     * ({@code Demo.writeInto}): one convention for what a listing skips and a directory check takes as partial.
     */
    public static String partialName(String name, String attempt) {
        return "." + name + ".inprogress-" + attempt;
    }

    /** Something that writes a file's whole content. */
    public interface Content {
        void writeTo(OutputStream out) throws IOException;
    }

    /**
     * Writes {@code dst} completely under a hidden temporary name, then renames it into place, so
     * no reader ever sees a partial file. If another attempt of the same task got there first
     * (HDFS's rename does not replace), its file stays, and the size and CRC32C returned are those
     * of that file, read back: an attempt on another backend (a GPU task retried on the CPU) wrote
     * other bytes, and a marker must describe the file that is there, or --resume would never find
     * the unit done. Otherwise returns the size and CRC32C of what was written. A failure of the
     * write is the one thrown; one of removing the partial file after it is added to it.
     */
    public static Written writeAtomically(FileSystem fs, Path dst, String attempt, Content content) throws IOException {
        Path tmp = HadoopPaths.child(dst.getParent(), partialName(dst.getName(), attempt));
        boolean done = false;
        long[] sizeAndCrc;
        Throwable failed = null;
        try {
            java.nio.file.Path local = HadoopPaths.localFile(fs, tmp);
            sizeAndCrc = local != null ? writeLocal(local, content) : writeStream(fs, tmp, content);
            try {
                HadoopPaths.rename(fs, tmp, dst);
            } catch (IOException e) {
                if (!fs.exists(dst)) {
                    throw e;
                }
                // another attempt's file, which HDFS does not replace: describe it, not this attempt's bytes
                sizeAndCrc = new long[] {fs.getFileStatus(dst).getLen(), crc(fs, dst)};
            }
            done = true;
        } catch (Throwable e) {
            failed = e;
            throw e;
        } finally {
            try {
                if (fs.exists(tmp)) {
                    fs.delete(tmp, false);
                }
                if (!done && fs.exists(tmp)) {
                    throw new IOException("cannot remove the partial file " + tmp);
                }
            } catch (IOException cleanup) {
                // the write's own failure (a NonFinite or device-memory exception that the caller acts on) stays the
                // one thrown, the clean-up's added to it; after a good write the clean-up's is thrown
                if (failed == null) {
                    throw cleanup;
                }
                failed.addSuppressed(cleanup);
            }
        }
        return new Written(dst, sizeAndCrc[0], sizeAndCrc[1]);
    }

    /**
     * A new local file (replacing one of that name, parent directories created) written by
     * {@code content} through positioned writes of its channel ({@link PositionedOutput}), so that
     * a window's o goes from its buffer (off-heap, registered on the GPU) to the file with no heap
     * copy; returns the size and CRC32C written. java.nio rather than Hadoop's raw local file
     * system, which sets a new file's permission with a forked {@code chmod} where the Hadoop
     * native library is absent (as in Spark's own jars): about 5 ms a file against 0.1 ms (1,000
     * files of 1 KiB on the 2-core VM, shared), and a run stages a few files per piece. The
     * permission is the same in the usual case: 0666 less the umask (Hadoop's default umask, 022,
     * is the usual process umask).
     */
    private static long[] writeLocal(java.nio.file.Path file, Content content) throws IOException {
        java.nio.file.Path root = rootAbove(file.getParent());
        if (root != null && !Files.isDirectory(root)) {
            // the commit (or a later run) removed it, or this executor does not see the driver's --output:
            // the directories are not made again in the output directory
            throw UnsharedOutputException.stagingMissing(root);
        }
        Files.createDirectories(file.getParent());
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE)) {
            PositionedOutput out = PositionedOutput.unbounded(ch);
            content.writeTo(out);
            return new long[] {out.written(), out.crc32c()};
        }
    }

    /**
     * The staging directory ({@code _temporary/lightning-RUN}) that {@code dir} lies strictly below
     * (local/, done/, files/, ...), or null: the driver makes the staging directory itself with
     * run.json, and a task writes only below it.
     */
    private static java.nio.file.Path rootAbove(java.nio.file.Path dir) {
        for (java.nio.file.Path d = dir; d != null && d.getParent() != null; d = d.getParent()) {
            java.nio.file.Path up = d.getParent().getFileName();
            if (d.getFileName() != null && d.getFileName().toString().startsWith(PREFIX) && up != null
                    && PARENT.equals(up.toString())) {
                return d.equals(dir) ? null : d;
            }
        }
        return null;
    }

    /** A new file of any other file system written by {@code content}; returns the size and CRC32C written. */
    private static long[] writeStream(FileSystem fs, Path p, Content content) throws IOException {
        CRC32C crc = new CRC32C();
        long[] size = {0};
        try (OutputStream raw = create(fs, p);
             OutputStream out = new FilterOutputStream(raw) {
                 @Override
                 public void write(int b) throws IOException {
                     crc.update(b);
                     size[0]++;
                     raw.write(b);
                 }

                 @Override
                 public void write(byte[] b, int off, int len) throws IOException {
                     crc.update(b, off, len);
                     size[0] += len;
                     raw.write(b, off, len);
                 }
             }) {
            content.writeTo(out);
        }
        return new long[] {size[0], crc.getValue()};
    }

    /** A new file (replacing one of that name) of a file system other than the local one. */
    private static OutputStream create(FileSystem fs, Path p) throws IOException {
        return fs.create(p, true);
    }

    public static void writeAtomically(FileSystem fs, Path dst, String attempt, byte[] bytes) throws IOException {
        writeAtomically(fs, dst, attempt, o -> o.write(bytes));
    }

    /**
     * Positioned reads of states from staged files, keeping the file last read open: the states a
     * task reads come in runs from one file (a task's group of local states, a block of incoming
     * ones), so it opens each file once instead of once per state. Holds one open file and no state.
     */
    public static final class StateReader implements java.io.Closeable {
        private final FileSystem fs;
        private Path open;
        private FSDataInputStream in;
        private long length;

        public StateReader(FileSystem fs) {
            this.fs = fs;
        }

        private final int[] lastKey = {-1, -1, -1};
        private Path lastPath;

        /**
         * The path named by three numbers (sequence, level, block), made by {@code make} only when
         * they differ from the last call's: building a Hadoop path parses a URI, and the reads of a
         * run of pieces name the same file again and again.
         */
        public Path path(int a, int b, int c, java.util.function.Supplier<Path> make) {
            if (lastPath == null || lastKey[0] != a || lastKey[1] != b || lastKey[2] != c) {
                lastPath = make.get();
                lastKey[0] = a;
                lastKey[1] = b;
                lastKey[2] = c;
            }
            return lastPath;
        }

        /** {@code into.length} bytes at {@code offset} of {@code file}; fails when the file is shorter. */
        public byte[] read(Path file, long offset, byte[] into) throws IOException {
            if (file != open && !file.equals(open)) {
                close();
                in = fs.open(file);
                open = file;
                java.nio.file.Path local = HadoopPaths.localFile(fs, file);
                length = local != null ? Files.size(local) : fs.getFileStatus(file).getLen();
            }
            if (offset + into.length > length) {
                throw new IOException(file + " holds " + length + " bytes, expected at least " + (offset + into.length)
                        + " (a state at " + offset + "); the staging directory was changed during the run: run again");
            }
            in.readFully(offset, into, 0, into.length);
            return into;
        }

        @Override
        public void close() throws IOException {
            if (in != null) {
                FSDataInputStream was = in;
                in = null;
                open = null;
                was.close();
            }
        }
    }

    /**
     * Removes staging directory {@code dir} and everything in it, its run.json last: a removal cut short (a kill)
     * leaves a directory that is still a run's ({@link #isRun}), which the next run removes. On the local file
     * system with java.nio, depth first, without following links: Hadoop's recursive delete lists and stats through
     * its own layers, about 0.1 ms a file here, which mattered while a run staged files per piece (see
     * BENCHMARKS.md, "Scan and driver at 100,000 pieces"). Elsewhere Hadoop's recursive delete of each entry.
     */
    static void removeTree(FileSystem fs, Path dir) throws IOException {
        java.nio.file.Path root = HadoopPaths.localFile(fs, dir);
        if (root == null) {
            try {
                for (FileStatus s : fs.listStatus(dir)) {
                    if (!s.getPath().getName().equals(RUN_FILE)) {
                        fs.delete(s.getPath(), true);
                    }
                }
            } catch (FileNotFoundException e) {
                return; // already gone
            }
            fs.delete(new Path(dir, RUN_FILE), false);
            fs.delete(dir, true);
            return;
        }
        if (!Files.exists(root, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            return;
        }
        java.nio.file.Path runFile = root.resolve(RUN_FILE);
        Files.walkFileTree(root, new java.nio.file.SimpleFileVisitor<>() {
            @Override
            public java.nio.file.FileVisitResult visitFile(java.nio.file.Path file,
                                                           java.nio.file.attribute.BasicFileAttributes attrs)
                    throws IOException {
                if (!file.equals(runFile)) {
                    Files.delete(file);
                }
                return java.nio.file.FileVisitResult.CONTINUE;
            }

            @Override
            public java.nio.file.FileVisitResult postVisitDirectory(java.nio.file.Path d, IOException e)
                    throws IOException {
                if (e != null) {
                    throw e;
                }
                if (d.equals(root)) {
                    Files.deleteIfExists(runFile);
                }
                Files.delete(d);
                return java.nio.file.FileVisitResult.CONTINUE;
            }
        });
    }

    /** Appends staged file {@code part} to {@code out}, after checking that it holds {@code expect} bytes. */
    public static void copyPart(FileSystem fs, Path part, long expect, OutputStream out) throws IOException {
        long len = fs.getFileStatus(part).getLen();
        if (len != expect) {
            throw new IOException(part + " holds " + len + " bytes, expected " + expect);
        }
        byte[] buf = new byte[1 << 20];
        try (InputStream in = fs.open(part)) {
            for (int r; (r = in.read(buf)) > 0; ) {
                out.write(buf, 0, r);
            }
        }
    }
}
