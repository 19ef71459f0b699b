package dev.lightning.attention.job;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.stream.OutputParts;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;
import org.apache.hadoop.fs.CommonPathCapabilities;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RawLocalFileSystem;

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
import java.util.List;
import java.util.Locale;
import java.util.zip.CRC32C;

/**
 * Pass 2's outputs of the sequences whose output file is not one stream: those split into pieces
 * (each piece computes a slice of o) and, with --state-every, every sequence (its states follow o
 * and the final state in the file, but are computed along with o). No task copies a sequence's
 * output: each piece writes its own share, in one of three forms ({@code --output-form}):
 * <ul>
 *   <li>{@link Form#IN_PLACE}: the driver creates the staged output file once, with its header
 *       and its final length (sparse), before pass 2; each piece writes its byte ranges (its rows
 *       of o, its rows of states and normalizers, the last piece the final state) with positioned
 *       writes. Needs a file system that has them: Hadoop's local one ({@code file:}), so local
 *       disks and shared POSIX mounts;
 *   <li>{@link Form#CONCAT}: each piece writes its o, states and normalizers as hidden parts
 *       beside the staged file, the last piece also the final state; after pass 2 the driver
 *       writes the header as the staged file and appends the parts to it with the file system's
 *       concat, which moves blocks and copies no data (HDFS);
 *   <li>{@link Form#PARTS}: the output is {@code NAME.index.json} and part files
 *       ({@link OutputParts}), published as they are; any file system.
 * </ul>
 * The one-file forms give the same bytes as an unsplit sequence's output file. Every range or
 * part a piece writes is in its marker with its CRC32C, so --resume keeps only pieces whose bytes
 * still verify, and a retried piece writes the same bytes to the same places.
 */
final class SplitOutputs implements Serializable {
    private static final long serialVersionUID = 1L;

    /** How a split sequence's outputs are written. */
    enum Form {
        IN_PLACE, CONCAT, PARTS;

        String key() {
            return name().toLowerCase(Locale.ROOT).replace('_', '-');
        }

        /**
         * The form {@code setting} ({@code --output-form}) gives on the file system of
         * {@code output}: {@code auto} takes in-place where the file system is Hadoop's local one,
         * else concat where it has a concat that moves data without copying, else parts. An
         * explicit form the file system cannot give is refused, saying which it can.
         */
        static Form choose(String setting, FileSystem fs, Path output) {
            boolean inPlace = fs instanceof RawLocalFileSystem;
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

    final Form form;
    private final Staging staging;

    SplitOutputs(Form form, Staging staging) {
        this.form = form;
        this.staging = staging;
    }

    /** Whether {@code pieces} pieces of a sequence under {@code variant} are written here (not in one stream). */
    static boolean needed(int pieces, Variant variant) {
        return pieces > 1 || variant.checkpoints();
    }

    // ---------------------------------------------------------------- where a piece's bytes go

    /** The byte ranges of one piece in the one-file form, from its header. */
    static final class Ranges {
        final long o;
        final long oBytes;
        final long states;
        final long statesBytes;
        final long normalizers;
        final long normalizersBytes;
        /** final_state (then final_normalizer, adjacent in the header), or -1 for a piece that is not the last. */
        final long last;
        final long lastBytes;
        /** The piece's first recorded state (a row of states) and their count. */
        final long checkpointFrom;
        final long checkpoints;

        Ranges(SafetensorsHeader h, AttentionSpec spec, Variant variant, Piece p) {
            TensorEntry oT = h.tensor("o");
            long tokenBytes = oT.byteLength() / Math.max(1, oT.dim(0));
            o = oT.begin() + p.start() * tokenBytes;
            oBytes = p.tokens() * tokenBytes;
            checkpointFrom = variant.checkpointsIn(0, p.start());
            checkpoints = variant.checkpointsIn(p.start(), p.tokens());
            TensorEntry s = h.tensor("states");
            TensorEntry z = h.tensor("normalizers");
            states = s == null ? -1 : s.begin() + checkpointFrom * LightningState.kvBytes(spec);
            statesBytes = s == null ? 0 : checkpoints * LightningState.kvBytes(spec);
            normalizers = z == null ? -1 : z.begin() + checkpointFrom * LightningState.normalizerBytes(spec);
            normalizersBytes = z == null ? 0 : checkpoints * LightningState.normalizerBytes(spec);
            last = p.isLast() ? h.tensor("final_state").begin() : -1;
            lastBytes = p.isLast() ? spec.stateBytes() : 0;
        }
    }

    /** One pass over a piece: o to the first stream, recorded S and z to the others; returns the final state. */
    interface Compute {
        LightningState run(OutputStream o, OutputStream states, OutputStream normalizers) throws IOException;
    }

    /**
     * Pass 2 of piece {@code p} of output {@code name} (laid out by {@code header}): computes it
     * once and writes its share in this run's form. Returns what it wrote, for its marker.
     */
    List<Staging.Written> writePiece(FileSystem fs, String name, SafetensorsHeader header, AttentionSpec spec,
                                     Variant variant, Piece p, String attempt, Compute compute) throws IOException {
        Ranges r = new Ranges(header, spec, variant, p);
        switch (form) {
            case IN_PLACE:
                return inPlace(fs, name, r, compute);
            case CONCAT:
                return concatParts(fs, name, header, r, p, attempt, compute);
            default:
                return parts(fs, name, header, r, p, attempt, compute);
        }
    }

    private List<Staging.Written> inPlace(FileSystem fs, String name, Ranges r, Compute compute) throws IOException {
        Path target = staging.stagedOutput(name);
        java.nio.file.Path file = ((RawLocalFileSystem) fs).pathToFile(target).toPath();
        List<Staging.Written> written = new ArrayList<>();
        // WRITE without CREATE: the driver made the file with its length; a missing one is an error, never a new file
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.WRITE)) {
            Range o = new Range(ch, r.o, r.oBytes);
            Range s = new Range(ch, r.states, r.statesBytes);
            Range z = new Range(ch, r.normalizers, r.normalizersBytes);
            LightningState last = compute.run(o, s, z);
            for (Range range : new Range[] {o, s, z}) {
                if (range.size > 0) {
                    written.add(range.finish(target));
                }
            }
            if (r.last >= 0) {
                Range fin = new Range(ch, r.last, r.lastBytes);
                fin.write(last.toBytes());
                written.add(fin.finish(target));
            }
        }
        return written;
    }

    private List<Staging.Written> concatParts(FileSystem fs, String name, SafetensorsHeader header, Ranges r, Piece p,
                                              String attempt, Compute compute) throws IOException {
        Path target = staging.stagedOutput(name);
        List<Staging.Written> written = new ArrayList<>();
        LightningState[] last = new LightningState[1];
        List<Path> paths = new ArrayList<>(List.of(staging.concatPart(name, "o", p.index())));
        long[] at = {r.o, r.states, r.normalizers};
        long[] sizes = {r.oBytes, r.statesBytes, r.normalizersBytes};
        if (r.statesBytes > 0) {
            paths.add(staging.concatPart(name, "states", p.index()));
        }
        if (r.normalizersBytes > 0) {
            paths.add(staging.concatPart(name, "normalizers", p.index()));
        }
        List<Staging.Written> files = new ArrayList<>();
        streams(fs, paths, attempt, files, new OutputStream[paths.size()], 0, out -> last[0] = compute.run(out[0],
                out.length > 1 ? out[1] : MustStayEmpty.INSTANCE, out.length > 2 ? out[2] : MustStayEmpty.INSTANCE));
        for (int i = 0; i < files.size(); i++) {
            Staging.Written w = files.get(i);
            expectSize(w, sizes[i]);
            written.add(w.concatenatedInto(target, at[i]));
        }
        if (r.last >= 0) {
            Staging.Written w = Staging.writeAtomically(fs, staging.concatPart(name, "final", -1), attempt,
                    out -> out.write(last[0].toBytes()));
            expectSize(w, r.lastBytes);
            written.add(w.concatenatedInto(target, r.last));
        }
        return written;
    }

    private List<Staging.Written> parts(FileSystem fs, String name, SafetensorsHeader header, Ranges r, Piece p,
                                        String attempt, Compute compute) throws IOException {
        List<OutputParts.Part> parts = OutputParts.partsOf(header, name, p.index(), p.count(), p.start(), p.tokens(),
                r.checkpointFrom, r.checkpoints);
        List<Path> paths = new ArrayList<>();
        for (OutputParts.Part part : parts) {
            paths.add(partPath(name, part));
        }
        List<Staging.Written> files = new ArrayList<>();
        LightningState[] last = new LightningState[1];
        streams(fs, paths, attempt, files, new OutputStream[paths.size()], 0, out -> {
            for (int i = 0; i < out.length; i++) {
                out[i].write(parts.get(i).header.encode());
            }
            last[0] = compute.run(out[0], out.length > 1 ? out[1] : MustStayEmpty.INSTANCE,
                    out.length > 2 ? out[2] : MustStayEmpty.INSTANCE);
            if (r.last >= 0) {
                out[0].write(last[0].toBytes());
            }
        });
        for (int i = 0; i < files.size(); i++) {
            expectSize(files.get(i), parts.get(i).bytes());
        }
        return files;
    }

    /** The staged path of a part file ({@link OutputParts.Part#file} is relative to the output's directory). */
    private Path partPath(String name, OutputParts.Part part) {
        return staging.stagedOutput(publishedPartName(name, part));
    }

    private static String publishedPartName(String name, OutputParts.Part part) {
        int slash = name.lastIndexOf('/');
        return (slash < 0 ? "" : name.substring(0, slash + 1)) + part.file;
    }

    interface Streams {
        void writeTo(OutputStream[] out) throws IOException;
    }

    /** Opens each of {@code paths} with {@link Staging#writeAtomically}, all at once, and runs {@code body} on them. */
    private static void streams(FileSystem fs, List<Path> paths, String attempt, List<Staging.Written> written,
                                OutputStream[] open, int i, Streams body) throws IOException {
        if (i == paths.size()) {
            body.writeTo(open);
            return;
        }
        Staging.Written[] mine = new Staging.Written[1];
        List<Staging.Written> inner = new ArrayList<>();
        mine[0] = Staging.writeAtomically(fs, paths.get(i), attempt, out -> {
            open[i] = out;
            streams(fs, paths, attempt, inner, open, i + 1, body);
        });
        written.add(mine[0]);
        written.addAll(inner);
    }

    private static void expectSize(Staging.Written w, long size) throws IOException {
        if (w.size != size) {
            throw new IOException(w.path + ": wrote " + w.size + " bytes, the layout has " + size);
        }
    }

    /** Where a piece records no state: a write there would be a layout error, never silently dropped. */
    private static final class MustStayEmpty extends OutputStream {
        static final MustStayEmpty INSTANCE = new MustStayEmpty();

        @Override
        public void write(int b) throws IOException {
            throw new IOException("a piece wrote a recorded state where its layout has none");
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            if (len > 0) {
                write(0);
            }
        }
    }

    /**
     * Bytes [begin, begin + size) of a file, written in order with positioned writes, with their
     * CRC32C; writing past the end, or finishing short of it, is an error.
     */
    private static final class Range extends OutputStream {
        private final FileChannel ch;
        private final long begin;
        private final long size;
        private final CRC32C crc = new CRC32C();
        private long done;

        Range(FileChannel ch, long begin, long size) {
            this.ch = ch;
            this.begin = begin;
            this.size = size;
        }

        @Override
        public void write(int b) throws IOException {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) throws IOException {
            if (done + len > size) {
                throw new IOException("a piece wrote past its range [" + begin + ", " + (begin + size) + ") of "
                        + size + " bytes");
            }
            crc.update(b, off, len);
            ByteBuffer buf = ByteBuffer.wrap(b, off, len);
            while (buf.hasRemaining()) {
                ch.write(buf, begin + done + (buf.position() - off));
            }
            done += len;
        }

        Staging.Written finish(Path file) throws IOException {
            if (done != size) {
                throw new IOException("a piece wrote " + done + " bytes of its range of " + size + " at " + begin);
            }
            return new Staging.Written(file, begin, size, crc.getValue(), null, -1);
        }
    }

    // ---------------------------------------------------------------- the driver's steps

    /**
     * Before pass 2, in place: creates the staged output file of each sequence in {@code headers}
     * with its header and its full length (the data a sparse hole of zeros), so that no task ever
     * creates or truncates it. With --resume a file that already has this header and length is
     * kept: the pieces that wrote into it verify against their markers. Written aside and renamed,
     * so a file is either complete in size or absent.
     */
    void prepare(FileSystem fs, List<String> names, List<SafetensorsHeader> headers) throws IOException {
        if (form != Form.IN_PLACE) {
            return;
        }
        for (int i = 0; i < names.size(); i++) {
            SafetensorsHeader h = headers.get(i);
            byte[] head = h.encode();
            java.nio.file.Path file = ((RawLocalFileSystem) fs).pathToFile(staging.stagedOutput(names.get(i))).toPath();
            if (staging.resume && Files.isRegularFile(file) && Files.size(file) == h.fileSize()
                    && Arrays.equals(head, firstBytes(file, head.length))) {
                continue;
            }
            Files.createDirectories(file.getParent());
            java.nio.file.Path tmp = file.resolveSibling("." + file.getFileName() + ".inprogress-driver");
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
     * After pass 2: finishes output {@code name} of {@code pieceTokens.length} pieces and returns
     * the names the commit publishes for it, the one the readers open last at the end. In place
     * there is nothing left to do. With concat the driver writes the header as the staged file
     * and appends every non-empty part in file order (o of each piece, the final state, then the
     * states and the normalizers of each piece); a repeated call (a resumed run) finds the parts
     * gone into the file and checks its length. In parts the driver writes the index.
     */
    List<String> finish(FileSystem fs, String name, SafetensorsHeader header, AttentionSpec spec, Variant variant,
                        long[] pieceTokens) throws IOException {
        List<Piece> pieces = new ArrayList<>();
        long start = 0;
        for (int i = 0; i < pieceTokens.length; i++) {
            pieces.add(new Piece(0, i, pieceTokens.length, start, start + pieceTokens[i]));
            start += pieceTokens[i];
        }
        switch (form) {
            case IN_PLACE:
                return List.of(name);
            case CONCAT:
                concat(fs, name, header, spec, variant, pieces);
                return List.of(name);
            default:
                List<OutputParts.Part> parts = new ArrayList<>();
                List<String> names = new ArrayList<>();
                for (Piece p : pieces) {
                    Ranges r = new Ranges(header, spec, variant, p);
                    for (OutputParts.Part part : OutputParts.partsOf(header, name, p.index(), p.count(), p.start(),
                            p.tokens(), r.checkpointFrom, r.checkpoints)) {
                        parts.add(part);
                        names.add(publishedPartName(name, part));
                    }
                }
                String index = OutputParts.indexName(name);
                byte[] json = OutputParts.index(header, parts);
                Path staged = staging.stagedOutput(index);
                if (fs.exists(staged)) {
                    fs.delete(staged, false); // an earlier attempt's: the same bytes, written again
                }
                Staging.writeAtomically(fs, staged, "driver", json);
                names.add(index);
                return names;
        }
    }

    private void concat(FileSystem fs, String name, SafetensorsHeader header, AttentionSpec spec, Variant variant,
                        List<Piece> pieces) throws IOException {
        Path target = staging.stagedOutput(name);
        List<Path> sources = new ArrayList<>();
        for (Piece p : pieces) {
            sources.add(staging.concatPart(name, "o", p.index()));
        }
        sources.add(staging.concatPart(name, "final", -1));
        for (String kind : new String[] {"states", "normalizers"}) {
            for (Piece p : pieces) {
                Ranges r = new Ranges(header, spec, variant, p);
                if ("states".equals(kind) ? r.statesBytes > 0 : r.normalizersBytes > 0) {
                    sources.add(staging.concatPart(name, kind, p.index()));
                }
            }
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
