package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Reads a job output on the local disk in either form: one safetensors file {@code NAME}, or the
 * parts form {@code NAME.index.json} with its part files ({@link OutputParts}). Either way it
 * presents the same tensors (lightning: o, final_state, and where the run made them
 * final_normalizer, states, normalizers; softmax: o, and with --write-lse lse) and reads any
 * rows of them with positioned reads, never a whole file.
 */
public final class OutputReader implements AutoCloseable {
    /** Rows [from, to) of a tensor lie in {@code file} from byte {@code begin}. */
    private static final class Segment {
        final Path file;
        final long from;
        final long to;
        final long begin;

        Segment(Path file, long from, long to, long begin) {
            this.file = file;
            this.from = from;
            this.to = to;
            this.begin = begin;
        }
    }

    private static final class Tensor {
        final DType dtype;
        final long[] shape;
        final long rowBytes;
        final List<Segment> segments = new ArrayList<>();

        Tensor(DType dtype, long[] shape) {
            this.dtype = dtype;
            this.shape = shape;
            long row = dtype.bytes();
            for (int i = 1; i < shape.length; i++) {
                row = Math.multiplyExact(row, shape[i]);
            }
            this.rowBytes = row;
        }
    }

    private final Map<String, Tensor> tensors = new LinkedHashMap<>();
    private final Map<String, String> metadata;
    private final Map<Path, FileChannel> open = new LinkedHashMap<>();
    /** Set by {@link #close()}: reads are refused (one reopened the file, and kept it open until a second close). */
    private boolean closed;

    private OutputReader(Map<String, String> metadata) {
        this.metadata = Collections.unmodifiableMap(metadata);
    }

    /**
     * Opens the output at {@code path}: a safetensors file, or a parts index ({@code *.index.json}).
     * Given {@code NAME} where only {@code NAME.index.json} exists, reads the index. An output of a later
     * {@link FormatVersion} than this build reads is refused ({@link FormatVersion.TooNew}).
     */
    public static OutputReader open(Path path) throws IOException {
        Path index = path.getFileName().toString().endsWith(OutputParts.INDEX_SUFFIX) ? path
                : path.resolveSibling(OutputParts.indexName(path.getFileName().toString()));
        if (!Files.exists(path) && !Files.exists(index)) {
            // say both forms looked for: the index alone would name a file the caller never gave
            throw new java.io.FileNotFoundException(path + ": no output of that name: " + (path.equals(index)
                    ? "no such parts index" : "neither " + path + " (one file) nor " + index + " (the parts form) "
                    + "exists") + "; check the name and the --output directory of the run that wrote it");
        }
        if (!Files.exists(path) || path.equals(index)) {
            return openIndex(index);
        }
        SafetensorsHeader h = header(path);
        FormatVersion.check(path.toString(), h.metadata());
        OutputReader r = new OutputReader(h.metadata());
        for (TensorEntry e : h.tensors().values()) {
            Tensor t = new Tensor(e.dtype(), e.shape());
            t.segments.add(new Segment(path, 0, e.dim(0), e.begin()));
            r.tensors.put(e.name(), t);
        }
        return r;
    }

    private static OutputReader openIndex(Path index) throws IOException {
        OutputParts.Index parsed = OutputParts.readIndex(index.toString(), Files.readAllBytes(index));
        OutputReader r = new OutputReader(new LinkedHashMap<>(parsed.metadata));
        parsed.shapes.forEach((name, shape) -> r.tensors.put(name, new Tensor(parsed.dtypes.get(name), shape)));
        Path dir = index.toAbsolutePath().getParent();
        for (OutputParts.IndexedPart part : parsed.parts) {
            Path file = dir.resolve(part.file);
            if (!Files.isRegularFile(file)) {
                throw new InvalidInputException(index + ": names the part " + part.file + ", which is missing; the "
                        + "output is incomplete: rerun the job that wrote it");
            }
            SafetensorsHeader h = header(file);
            for (Map.Entry<String, long[]> e : part.rows.entrySet()) {
                Tensor t = r.tensors.get(e.getKey());
                TensorEntry in = h.tensor(e.getKey());
                long from = e.getValue()[0];
                long to = e.getValue()[1];
                if (in == null || in.rank() == 0 || in.dim(0) != to - from
                        || in.byteLength() != (to - from) * t.rowBytes) {
                    throw new InvalidInputException(file + ": does not hold rows [" + from + ", " + to + ") of "
                            + e.getKey() + " as " + index + " says");
                }
                // the bytes fit; so would another dtype of the same width or the row's dimensions in another order
                long[] rowShape = java.util.Arrays.copyOfRange(in.shape(), 1, in.shape().length);
                long[] indexRow = java.util.Arrays.copyOfRange(t.shape, 1, t.shape.length);
                if (!t.dtype.safetensorsName().equals(in.dtypeName()) || !java.util.Arrays.equals(rowShape, indexRow)) {
                    throw new InvalidInputException(file + ": holds " + e.getKey() + " as " + in.dtypeName() + " rows of "
                            + java.util.Arrays.toString(rowShape) + ", where " + index + " says " + t.dtype
                            + " rows of " + java.util.Arrays.toString(indexRow) + "; the index and its parts come from "
                            + "different runs: rerun the job that wrote them");
                }
                t.segments.add(new Segment(file, from, to, in.begin()));
            }
        }
        for (Map.Entry<String, Tensor> e : r.tensors.entrySet()) {
            Tensor t = e.getValue();
            t.segments.sort(java.util.Comparator.comparingLong(s -> s.from));
            long next = 0;
            for (Segment s : t.segments) {
                if (s.from != next) {
                    throw new InvalidInputException(index + ": the parts of " + e.getKey() + " do not tile its rows: "
                            + "rows from " + next + " expected, a part starts at " + s.from);
                }
                next = s.to;
            }
            if (next != (t.shape.length == 0 ? 1 : t.shape[0])) {
                throw new InvalidInputException(index + ": the parts of " + e.getKey() + " end at row " + next
                        + ", the tensor has " + t.shape[0]);
            }
        }
        return r;
    }

    private static SafetensorsHeader header(Path file) throws IOException {
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            ByteBuffer prefix = ByteBuffer.allocate(8);
            SafetensorsFile.readFully(ch, prefix, 0);
            String name = file.getFileName().toString();
            ByteBuffer json = ByteBuffer.allocate((int) SafetensorsHeader.headerLength(name, prefix.array(), size));
            SafetensorsFile.readFully(ch, json, 8);
            return SafetensorsHeader.parse(name, json.array(), size);
        }
    }

    /** The tensors, in the one-file form's order. */
    public java.util.Set<String> tensors() {
        return Collections.unmodifiableSet(tensors.keySet());
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    public DType dtype(String tensor) {
        return tensor(tensor).dtype;
    }

    public long[] shape(String tensor) {
        return tensor(tensor).shape.clone();
    }

    /** The little-endian bytes of rows [from, to) of {@code tensor}'s first dimension. */
    public byte[] rows(String tensor, long from, long to) throws IOException {
        if (closed) {
            throw new IllegalStateException("this output reader is closed: open the output again to read " + tensor);
        }
        Tensor t = tensor(tensor);
        if (from < 0 || to < from || to > t.shape[0]) {
            throw new IndexOutOfBoundsException(tensor + ": rows [" + from + ", " + to + ") of " + t.shape[0]);
        }
        ByteBuffer out = ByteBuffer.allocate(Math.toIntExact((to - from) * t.rowBytes));
        for (Segment s : t.segments) {
            long a = Math.max(from, s.from);
            long b = Math.min(to, s.to);
            if (a < b) {
                ByteBuffer dst = out.slice((int) ((a - from) * t.rowBytes), (int) ((b - a) * t.rowBytes));
                SafetensorsFile.readFully(channel(s.file), dst, s.begin + (a - s.from) * t.rowBytes);
            }
        }
        return out.array();
    }

    /** Rows [from, to) of {@code tensor} as floats. */
    public float[] floats(String tensor, long from, long to) throws IOException {
        DType dtype = dtype(tensor);
        ByteBuffer b = ByteBuffer.wrap(rows(tensor, from, to)).order(ByteOrder.LITTLE_ENDIAN);
        float[] x = new float[b.capacity() / dtype.bytes()];
        for (int i = 0; i < x.length; i++) {
            x[i] = dtype.get(b, i * dtype.bytes());
        }
        return x;
    }

    /** The whole of {@code tensor} as floats (for the small ones: final_state, and so on). */
    public float[] floats(String tensor) throws IOException {
        return floats(tensor, 0, tensor(tensor).shape[0]);
    }

    private Tensor tensor(String name) {
        Tensor t = tensors.get(name);
        if (t == null) {
            throw new IllegalArgumentException("no tensor '" + name + "' in this output; it has " + tensors.keySet());
        }
        return t;
    }

    private FileChannel channel(Path file) throws IOException {
        FileChannel ch = open.get(file);
        if (ch == null) {
            ch = FileChannel.open(file, StandardOpenOption.READ);
            open.put(file, ch);
        }
        return ch;
    }

    @Override
    public void close() throws IOException {
        closed = true;
        IOException first = null;
        for (FileChannel ch : open.values()) {
            try {
                ch.close();
            } catch (IOException e) {
                if (first == null) {
                    first = e;
                }
            }
        }
        open.clear();
        if (first != null) {
            throw first;
        }
    }
}
