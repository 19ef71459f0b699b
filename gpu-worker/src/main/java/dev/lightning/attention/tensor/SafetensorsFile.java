package dev.lightning.attention.tensor;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Whole safetensors files on the local disk: for generating inputs (the demo, tests) and for
 * reading results back. The job itself never reads a whole file; it reads token ranges.
 */
public final class SafetensorsFile {
    private SafetensorsFile() {
    }

    /** A named tensor with its little-endian bytes. */
    public static final class Tensor {
        public final String name;
        public final DType dtype;
        public final long[] shape;
        private final byte[] bytes;

        public Tensor(String name, DType dtype, long[] shape, byte[] bytes) {
            this.name = name;
            this.dtype = dtype;
            this.shape = shape.clone();
            this.bytes = bytes;
        }

        /** A tensor of {@code values} rounded to {@code dtype}. */
        public static Tensor of(String name, DType dtype, long[] shape, float[] values) {
            ByteBuffer b = ByteBuffer.allocate(values.length * dtype.bytes()).order(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < values.length; i++) {
                dtype.put(b, i * dtype.bytes(), values[i]);
            }
            return new Tensor(name, dtype, shape, b.array());
        }

        /** The values as floats, in order. */
        public float[] toFloats() {
            ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
            float[] out = new float[bytes.length / dtype.bytes()];
            for (int i = 0; i < out.length; i++) {
                out[i] = dtype.get(b, i * dtype.bytes());
            }
            return out;
        }

        /** A [T, H, D] view of a rank-3 tensor. */
        public TokenTensor asTokens() {
            if (shape.length != 3) {
                throw new IllegalArgumentException(name + " has rank " + shape.length + ", expected [T, H, D]");
            }
            return TokenTensor.wrap(dtype, (int) shape[0], (int) shape[1], (int) shape[2], ByteBuffer.wrap(bytes));
        }

        public byte[] bytes() {
            return bytes.clone();
        }
    }

    /** Writes {@code tensors} in order to {@code file} (replacing it). */
    public static void write(Path file, List<Tensor> tensors) throws IOException {
        write(file, tensors, Map.of());
    }

    /** Writes {@code tensors} in order to {@code file} (replacing it), with {@code metadata} in its header's {@code __metadata__}. */
    public static void write(Path file, List<Tensor> tensors, Map<String, String> metadata) throws IOException {
        List<SafetensorsHeader.Spec> specs = new ArrayList<>();
        for (Tensor t : tensors) {
            specs.add(new SafetensorsHeader.Spec(t.name, t.dtype, t.shape));
        }
        SafetensorsHeader header = SafetensorsHeader.layout(file.getFileName().toString(), specs, metadata);
        try (OutputStream out = Files.newOutputStream(file)) {
            out.write(header.encode());
            for (Tensor t : tensors) {
                out.write(t.bytes);
            }
        }
    }

    /** A tensor's values in order, one a call: what {@link #writeStreamed} writes without holding the tensor whole. */
    @FunctionalInterface
    public interface Values {
        float next();
    }

    /** A tensor to write from its {@link Values}: name, dtype and shape, and where its values come from. */
    public record Streamed(SafetensorsHeader.Spec spec, Values values) {
    }

    /**
     * Writes {@code tensors} in order to {@code file} (replacing it), with {@code metadata} in its header: each value
     * is drawn from its tensor's source as it is written, rounded to the dtype, 4 MiB at a time, so a file of any
     * size takes a few MB of memory.
     */
    public static void writeStreamed(Path file, List<Streamed> tensors, Map<String, String> metadata)
            throws IOException {
        List<SafetensorsHeader.Spec> specs = new ArrayList<>();
        for (Streamed t : tensors) {
            specs.add(t.spec());
        }
        SafetensorsHeader header = SafetensorsHeader.layout(file.getFileName().toString(), specs, metadata);
        try (FileChannel out = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(out, ByteBuffer.wrap(header.encode()));
            ByteBuffer block = ByteBuffer.allocate(1 << 22).order(ByteOrder.LITTLE_ENDIAN);
            for (Streamed t : tensors) {
                DType dtype = t.spec().dtype;
                long n = t.spec().bytes() / dtype.bytes();
                int per = block.capacity() / dtype.bytes();
                for (long done = 0; done < n; ) {
                    int m = (int) Math.min(per, n - done);
                    block.clear();
                    for (int i = 0; i < m; i++) {
                        dtype.put(block, i * dtype.bytes(), t.values().next());
                    }
                    block.limit(m * dtype.bytes());
                    writeFully(out, block);
                    done += m;
                }
            }
        }
    }

    private static void writeFully(FileChannel out, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) {
            out.write(b);
        }
    }

    /** Reads every tensor of a file whose dtype is F32, F16 or BF16, in header order. */
    public static Map<String, Tensor> read(Path file) throws IOException {
        String name = file.getFileName().toString();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ)) {
            long size = ch.size();
            ByteBuffer prefix = ByteBuffer.allocate(8);
            readFully(ch, prefix, 0);
            long n = SafetensorsHeader.headerLength(name, prefix.array(), size);
            ByteBuffer json = ByteBuffer.allocate((int) n);
            readFully(ch, json, 8);
            SafetensorsHeader header = SafetensorsHeader.parse(name, json.array(), size);
            Map<String, Tensor> out = new LinkedHashMap<>();
            for (TensorEntry e : header.tensors().values()) {
                ByteBuffer data = ByteBuffer.allocate(Math.toIntExact(e.byteLength()));
                readFully(ch, data, e.begin());
                out.put(e.name(), new Tensor(e.name(), e.dtype(), e.shape(), data.array()));
            }
            return out;
        }
    }

    /**
     * Fills {@code dst} from its position to its limit with the bytes of {@code ch} at {@code at} (the
     * file position of {@code dst}'s position); InvalidInputException where the file ends first. The
     * channel's own position does not move. A local safetensors file's reads: this class's and
     * {@code OutputReader}'s.
     */
    public static void readFully(FileChannel ch, ByteBuffer dst, long at) throws IOException {
        long start = at - dst.position();
        while (dst.hasRemaining()) {
            if (ch.read(dst, start + dst.position()) < 0) {
                throw new InvalidInputException("unexpected end of file at " + (start + dst.position()));
            }
        }
    }
}
