package dev.lightning.attention.job.output;

import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.OutputParts;
import dev.lightning.attention.stream.PositionedOutput;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.apache.hadoop.fs.CommonPathCapabilities;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.io.OutputStream;
import java.io.Serializable;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The outputs of the sequences whose output file is not written as one stream by one task: those
 * split into pieces (each piece computes a slice of the rows) and, for lightning with
 * --state-every, every sequence (its states follow o and the final state in the file, but are
 * computed along with o). No task copies a sequence's output: each piece writes its own share, as
 * the file's {@link OutputLayout} cuts it (lightning: o, the final state, states and normalizers;
 * softmax: o and lse), in one of three forms ({@code --output-form}):
 * <ul>
 *   <li>{@link Form#IN_PLACE}: the driver creates the staged output file once, with its header
 *       and its final length (sparse), before the pieces run; each piece writes its byte ranges
 *       (one per stream of the layout in which it has rows) with positioned writes. Needs a file
 *       system that has them: Hadoop's local one ({@code file:}), so local disks and shared POSIX
 *       mounts;
 *   <li>{@link Form#CONCAT}: each piece writes a hidden part per stream beside the staged file;
 *       after the pieces the driver writes the header as the staged file and appends the parts
 *       to it in file order with the file system's concat, which moves blocks and copies no data
 *       (HDFS);
 *   <li>{@link Form#PARTS}: the output is {@code NAME.index.json} and part files
 *       ({@link OutputParts}), published as they are; any file system.
 * </ul>
 * The one-file forms give the same bytes as an unsplit sequence's output file. Every range or
 * part a piece writes is in its marker with its CRC32C, so --resume keeps only pieces whose bytes
 * still verify, and a retried piece writes the same bytes to the same places. Lightning's pass 2
 * ({@code Pass2Tasks}) and softmax's blocks and merge passes
 * ({@code SoftmaxTasks}) write through here.
 */
public final class SplitOutputs implements Serializable {
    private static final long serialVersionUID = 1L;

    /** How a split sequence's outputs are written. */
    public enum Form {
        IN_PLACE, CONCAT, PARTS;

        public String key() {
            return name().toLowerCase(Locale.ROOT).replace('_', '-');
        }

        /**
         * The form {@code setting} ({@code --output-form}) gives on the file system of
         * {@code output}: {@code auto} takes in-place where the file system is Hadoop's local one,
         * else concat where it has a concat that moves data without copying, else parts. An
         * explicit form the file system cannot give is refused, saying which it can.
         */
        public static Form choose(String setting, FileSystem fs, Path output) {
            boolean inPlace = HadoopPaths.isLocal(fs);
            boolean concat = !inPlace && hasConcat(fs, output);
            switch (setting) {
                case "auto":
                    return inPlace ? IN_PLACE : concat ? CONCAT : PARTS;
                case "in-place":
                    if (!inPlace) {
                        throw refused(setting, fs, "positioned writes into one file need Hadoop's local file system "
                                + "(file: paths: local disks and shared POSIX mounts)", concat ? "concat" : "parts");
                    }
                    return IN_PLACE;
                case "concat":
                    if (!concat) {
                        throw refused(setting, fs, inPlace
                                ? "the local file system's concat copies the data" : "it has no concat",
                                inPlace ? "in-place" : "parts");
                    }
                    return CONCAT;
                case "parts":
                    return PARTS;
                default:
                    throw new IllegalArgumentException("--output-form " + setting);
            }
        }

        private static boolean hasConcat(FileSystem fs, Path output) {
            try {
                return fs.hasPathCapability(output, CommonPathCapabilities.FS_CONCAT);
            } catch (IOException | RuntimeException e) {
                return false;
            }
        }

        private static InvalidInputException refused(String setting, FileSystem fs, String why, String instead) {
            return new InvalidInputException("--output-form " + setting + ": the output's file system ("
                    + fs.getUri().getScheme() + ") cannot give it: " + why + "; use --output-form " + instead + " or auto");
        }
    }

    public final Form form;
    private final Staging staging;

    SplitOutputs(Form form, Staging staging) {
        this.form = form;
        this.staging = staging;
    }

    /** This run's: --output-form on the file system of the output, which holds {@code staging}. */
    public static SplitOutputs of(JobConfig cfg, FileSystem outputFs, Staging staging) {
        return new SplitOutputs(Form.choose(cfg.get(Settings.OUTPUT_FORM), outputFs, staging.path()), staging);
    }

    /** Whether {@code pieces} pieces of a lightning sequence under {@code variant} are written here (not in one stream). */
    public static boolean needed(int pieces, Variant variant) {
        return pieces > 1 || variant.checkpoints();
    }

    // ---------------------------------------------------------------- where a piece's bytes go

    /** The streams a piece writes its rows to, by the names of the layout's streams. */
    public interface Streams {
        /**
         * Stream {@code name}. One in which the piece has no rows (a piece in which no state is
         * recorded; a stream the layout lacks) takes no bytes: a write there is a layout error,
         * never silently dropped.
         */
        OutputStream get(String name);
    }

    /** One pass over a piece, writing each of its rows to its stream, each stream in order. */
    public interface Body {
        void writeTo(Streams out) throws IOException;
    }

    /**
     * Piece {@code p} of output {@code name} (laid out by {@code layout}): runs {@code body} once,
     * its streams going where this run's form puts the piece's share. Checks that every stream
     * got exactly its bytes. Returns what it wrote, for the piece's marker.
     */
    public List<Staging.Written> writePiece(FileSystem fs, String name, OutputLayout layout, Piece p, String attempt,
                                            Body body) throws IOException {
        List<OutputLayout.Share> shares = layout.share(p.start(), p.end());
        switch (form) {
            case IN_PLACE:
                return inPlace(fs, name, shares, body);
            case CONCAT:
                return concatParts(fs, name, shares, p, attempt, body);
            default:
                return parts(fs, name, layout, shares, p, attempt, body);
        }
    }

    private List<Staging.Written> inPlace(FileSystem fs, String name, List<OutputLayout.Share> shares, Body body)
            throws IOException {
        Path target = staging.stagedOutput(name);
        java.nio.file.Path file = HadoopPaths.localFile(fs, target);
        List<Staging.Written> written = new ArrayList<>();
        // WRITE without CREATE: the driver made the file with its length; a missing one is an error, never a new file
        // (READ too: a shared lock needs it)
        FileChannel opened;
        Object key;
        try {
            key = fileKey(file);
            opened = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE);
        } catch (java.nio.file.NoSuchFileException e) {
            // the driver created it before the pass: this executor does not see the driver's --output
            throw UnsharedOutputException.onExecutor(target, e);
        }
        try (FileChannel ch = opened) {
            fence(ch, file, key, shares);
            List<String> names = new ArrayList<>();
            // each range takes a window's o as the buffer it is (off-heap on the GPU), no heap copy
            PositionedOutput[] ranges = new PositionedOutput[shares.size()];
            for (int i = 0; i < ranges.length; i++) {
                names.add(shares.get(i).stream);
                ranges[i] = new PositionedOutput(ch, shares.get(i).begin, shares.get(i).bytes);
            }
            body.writeTo(streams(names, ranges));
            for (int i = 0; i < ranges.length; i++) {
                ranges[i].finish();
                written.add(new Staging.Written(target, shares.get(i).begin, shares.get(i).bytes, ranges[i].crc32c(),
                        null, -1));
            }
        }
        return written;
    }

    /**
     * Before a piece writes into an in-place staged file: takes a shared lock on each of its byte
     * ranges (held until its channel closes), then checks that {@code file} still names the file it
     * opened. The commit renames a staged file into the output directory under an exclusive lock on it
     * ({@link Commit}), so an attempt that outlived its stage (an executor the driver lost, still
     * running) either finishes its ranges before the file is published or fails here: it never changes
     * a published file (an attempt on another backend writes other bytes). Where the file system
     * refuses locks (a mount without them), the check alone stays.
     */
    private static void fence(FileChannel ch, java.nio.file.Path file, Object key, List<OutputLayout.Share> shares)
            throws IOException {
        for (OutputLayout.Share s : shares) {
            if (s.bytes == 0) {
                continue; // a lock of no bytes would be one to the end of the file
            }
            try {
                ch.lock(s.begin, s.bytes, true);
            } catch (java.nio.channels.OverlappingFileLockException e) {
                // another attempt of this piece in this JVM, or the commit: this one is not needed
                throw new IOException(file + ": bytes [" + s.begin + ", " + (s.begin + s.bytes) + ") are being written "
                        + "by another attempt of this piece in this executor, or the file is being committed", e);
            } catch (IOException e) {
                // no locks on this file system: the check below still keeps an attempt that starts late out
            }
        }
        Object now;
        try {
            now = fileKey(file);
        } catch (java.nio.file.NoSuchFileException e) {
            now = null;
        }
        if (now == null || !now.equals(key)) {
            throw new IOException(file + " was committed or replaced before this task attempt wrote its share (an "
                    + "attempt that outlived its stage, e.g. on an executor the driver lost); nothing was written");
        }
    }

    /** What identifies the file {@code file} names (device and inode), or its path where the system has none. */
    private static Object fileKey(java.nio.file.Path file) throws IOException {
        Object key = Files.readAttributes(file, java.nio.file.attribute.BasicFileAttributes.class,
                java.nio.file.LinkOption.NOFOLLOW_LINKS).fileKey();
        return key != null ? key : file;
    }

    private List<Staging.Written> concatParts(FileSystem fs, String name, List<OutputLayout.Share> shares, Piece p,
                                              String attempt, Body body) throws IOException {
        Path target = staging.stagedOutput(name);
        List<String> names = new ArrayList<>();
        List<Path> paths = new ArrayList<>();
        for (OutputLayout.Share s : shares) {
            names.add(s.stream);
            paths.add(staging.concatPart(name, s.stream, p.index()));
        }
        List<Staging.Written> files = new ArrayList<>();
        open(fs, paths, attempt, files, new OutputStream[paths.size()], 0, out -> body.writeTo(streams(names, out)));
        List<Staging.Written> written = new ArrayList<>();
        for (int i = 0; i < files.size(); i++) {
            Staging.Written w = files.get(i);
            expectSize(w, shares.get(i).bytes);
            written.add(w.concatenatedInto(target, shares.get(i).begin));
        }
        return written;
    }

    private List<Staging.Written> parts(FileSystem fs, String name, OutputLayout layout,
                                        List<OutputLayout.Share> shares, Piece p, String attempt, Body body)
            throws IOException {
        List<OutputParts.Part> parts = OutputParts.partsOf(layout, name, p.index(), p.count(), p.start(), p.end());
        List<String> names = new ArrayList<>();
        List<Path> paths = new ArrayList<>();
        for (int i = 0; i < parts.size(); i++) {
            names.add(shares.get(i).stream); // partsOf makes a part per share, in the same order
            paths.add(partPath(name, parts.get(i)));
        }
        List<Staging.Written> files = new ArrayList<>();
        open(fs, paths, attempt, files, new OutputStream[paths.size()], 0, out -> {
            for (int i = 0; i < out.length; i++) {
                out[i].write(parts.get(i).header.encode());
            }
            body.writeTo(streams(names, out));
        });
        for (int i = 0; i < files.size(); i++) {
            expectSize(files.get(i), parts.get(i).bytes());
        }
        return files;
    }

    /** The streams of a piece: {@code out[i]} is stream {@code names[i]}; any other takes no bytes. */
    private static Streams streams(List<String> names, OutputStream[] out) {
        Map<String, OutputStream> byName = new LinkedHashMap<>();
        for (int i = 0; i < out.length; i++) {
            byName.put(names.get(i), out[i]);
        }
        return stream -> byName.getOrDefault(stream, MustStayEmpty.INSTANCE);
    }

    /** The staged path of a part file ({@link OutputParts.Part#file} is relative to the output's directory). */
    private Path partPath(String name, OutputParts.Part part) {
        return staging.stagedOutput(publishedPartName(name, part));
    }

    private static String publishedPartName(String name, OutputParts.Part part) {
        int slash = name.lastIndexOf('/');
        return (slash < 0 ? "" : name.substring(0, slash + 1)) + part.file;
    }

    private interface Opened {
        void writeTo(OutputStream[] out) throws IOException;
    }

    /** Opens each of {@code paths} with {@link Staging#writeAtomically}, all at once, and runs {@code body} on them. */
    private static void open(FileSystem fs, List<Path> paths, String attempt, List<Staging.Written> written,
                             OutputStream[] open, int i, Opened body) throws IOException {
        if (i == paths.size()) {
            body.writeTo(open);
            return;
        }
        Staging.Written[] mine = new Staging.Written[1];
        List<Staging.Written> inner = new ArrayList<>();
        mine[0] = Staging.writeAtomically(fs, paths.get(i), attempt, out -> {
            open[i] = out;
            open(fs, paths, attempt, inner, open, i + 1, body);
        });
        written.add(mine[0]);
        written.addAll(inner);
    }

    private static void expectSize(Staging.Written w, long size) throws IOException {
        if (w.size != size) {
            throw new IOException(w.path + ": wrote " + w.size + " bytes, the layout has " + size);
        }
    }

    /** Where a piece has no rows: a write there would be a layout error, never silently dropped. */
    private static final class MustStayEmpty extends OutputStream {
        static final MustStayEmpty INSTANCE = new MustStayEmpty();

        @Override
        public void write(int b) throws IOException {
            throw new IOException("a piece wrote rows to a stream in which its layout gives it none");
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            if (len > 0) {
                write(0);
            }
        }
    }

    // ---------------------------------------------------------------- the driver's steps

    /**
     * Before the pieces run (lightning's pass 2, softmax's blocks pass), in place: creates the
     * staged output file of each sequence in {@code headers} with its header and its full length
     * (the data a sparse hole of zeros), so that no task ever creates or truncates it. With
     * --resume a file that already has this header and length is kept: the pieces that wrote into
     * it verify against their markers. Written aside and renamed, so a file is either complete in
     * size or absent.
     */
    public void prepare(FileSystem fs, List<String> names, List<SafetensorsHeader> headers) throws IOException {
        if (form != Form.IN_PLACE) {
            return;
        }
        for (int i = 0; i < names.size(); i++) {
            SafetensorsHeader h = headers.get(i);
            byte[] head = h.encode();
            java.nio.file.Path file = HadoopPaths.localFile(fs, staging.stagedOutput(names.get(i)));
            if (staging.resume && Files.isRegularFile(file) && Files.size(file) == h.fileSize()
                    && Arrays.equals(head, firstBytes(file, head.length))) {
                continue;
            }
            Files.createDirectories(file.getParent());
            java.nio.file.Path tmp = file.resolveSibling(Staging.partialName(file.getFileName().toString(), "driver"));
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING,
                    StandardOpenOption.WRITE)) {
                ByteBuffer b = ByteBuffer.wrap(head);
                while (b.hasRemaining()) {
                    ch.write(b, b.position());
                }
                ch.truncate(h.fileSize());
                if (ch.size() < h.fileSize()) {
                    ch.write(ByteBuffer.allocate(1), h.fileSize() - 1); // the length, without writing the data
                }
            }
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        }
    }

    private static byte[] firstBytes(java.nio.file.Path file, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            while (b.hasRemaining() && ch.read(b, b.position()) >= 0) {
                // until full or at the end
            }
        }
        return b.array();
    }

    /**
     * After the pieces: finishes output {@code name} (laid out by {@code layout}) of pieces of
     * {@code pieceTokens} tokens and returns the names the commit publishes for it, the one the
     * readers open last at the end. In place there is nothing left to do. With concat the driver
     * writes the header as the staged file and appends every piece's part of every stream in file
     * order ({@link OutputLayout#tiling}); a repeated call (a resumed run) finds the parts gone into
     * the file and checks its length. In parts the driver writes the index.
     */
    public List<String> finish(FileSystem fs, String name, OutputLayout layout, long[] pieceTokens) throws IOException {
        List<OutputLayout.PieceShare> tiling = layout.tiling(pieceTokens); // also checks that the shares tile the file
        switch (form) {
            case IN_PLACE:
                return List.of(name);
            case CONCAT:
                concat(fs, name, layout, tiling);
                return List.of(name);
            default:
                List<OutputParts.Part> parts = new ArrayList<>();
                List<String> names = new ArrayList<>();
                long start = 0;
                for (int i = 0; i < pieceTokens.length; i++) {
                    for (OutputParts.Part part : OutputParts.partsOf(layout, name, i, pieceTokens.length, start,
                            start + pieceTokens[i])) {
                        parts.add(part);
                        names.add(publishedPartName(name, part));
                    }
                    start += pieceTokens[i];
                }
                String index = OutputParts.indexName(name);
                byte[] json = OutputParts.index(layout.header(), parts);
                Path staged = staging.stagedOutput(index);
                if (fs.exists(staged)) {
                    fs.delete(staged, false); // an earlier attempt's: the same bytes, written again
                }
                Staging.writeAtomically(fs, staged, "driver", json);
                names.add(index);
                return names;
        }
    }

    private void concat(FileSystem fs, String name, OutputLayout layout, List<OutputLayout.PieceShare> tiling)
            throws IOException {
        Path target = staging.stagedOutput(name);
        SafetensorsHeader header = layout.header();
        List<Path> sources = new ArrayList<>();
        for (OutputLayout.PieceShare s : tiling) {
            sources.add(staging.concatPart(name, s.share.stream, s.piece));
        }
        int present = 0;
        for (Path s : sources) {
            present += fs.exists(s) ? 1 : 0;
        }
        if (present == 0 && fs.exists(target) && fs.getFileStatus(target).getLen() == header.fileSize()) {
            return; // joined by an earlier attempt of this run; its pieces verified against their places in it
        }
        if (present != sources.size()) {
            throw new IOException("cannot join the parts of " + name + ": " + present + " of " + sources.size()
                    + " are in " + target.getParent() + " (a resumed run recomputed a piece of a file an earlier "
                    + "attempt had already joined); rerun without --resume");
        }
        if (fs.exists(target)) {
            fs.delete(target, false);
        }
        Staging.writeAtomically(fs, target, "driver", header.encode());
        fs.concat(target, sources.toArray(new Path[0]));
        long len = fs.getFileStatus(target).getLen();
        if (len != header.fileSize()) {
            throw new IOException("the concat of " + sources.size() + " parts into " + target + " gave " + len
                    + " bytes, expected " + header.fileSize());
        }
    }
}
