package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.DType;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * What the checksum sink keeps of a run of {@code o} bytes instead of the bytes: their CRC32C and
 * length, the sum and largest magnitude of the values, and the o rows at sampled tokens with their
 * float64 spot checks ({@link SpotCheck}). Summaries of consecutive ranges combine in order
 * ({@link #then}) into the summary of the whole: the CRC32C of a sequence's o is exactly that of
 * the o bytes an ordinary run writes into its file (the tensor's data, without the header).
 * Immutable.
 */
public final class OutputSummary {
    public final int crc;
    public final long bytes;
    /** Sum of the o values (as stored, in float64). */
    public final double sum;
    /** Largest |o| (as stored). */
    public final double maxAbs;
    /** Sampled rows, in token order. */
    public final List<SpotCheck.Point> samples;

    public OutputSummary(int crc, long bytes, double sum, double maxAbs, List<SpotCheck.Point> samples) {
        this.crc = crc;
        this.bytes = bytes;
        this.sum = sum;
        this.maxAbs = maxAbs;
        this.samples = Collections.unmodifiableList(new ArrayList<>(samples));
    }

    /** The summary of nothing: the start of a combination. */
    public static OutputSummary empty() {
        return new OutputSummary(0, 0, 0, 0, List.of());
    }

    /** The summary of this range followed by {@code next}. */
    public OutputSummary then(OutputSummary next) {
        List<SpotCheck.Point> all = new ArrayList<>(samples);
        all.addAll(next.samples);
        return new OutputSummary(Crc32c.combine(crc, next.crc, next.bytes), bytes + next.bytes, sum + next.sum,
                Math.max(maxAbs, next.maxAbs), all);
    }

    /** The same summary with its sampled rows replaced by {@code checked} (the rows with their checks). */
    public OutputSummary withSamples(List<SpotCheck.Point> checked) {
        return new OutputSummary(crc, bytes, sum, maxAbs, checked);
    }

    /** The CRC32C as 8 lower-case hex digits. */
    public String crcHex() {
        return String.format("%08x", crc);
    }

    /** A compact binary form, for the staged per-piece file. */
    public byte[] toBytes() {
        ByteArrayOutputStream b = new ByteArrayOutputStream();
        try (DataOutputStream out = new DataOutputStream(b)) {
            out.writeInt(crc);
            out.writeLong(bytes);
            out.writeDouble(sum);
            out.writeDouble(maxAbs);
            out.writeInt(samples.size());
            for (SpotCheck.Point p : samples) {
                p.write(out);
            }
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
        return b.toByteArray();
    }

    public static OutputSummary fromBytes(byte[] raw) throws IOException {
        try (DataInputStream in = new DataInputStream(new ByteArrayInputStream(raw))) {
            int crc = in.readInt();
            long bytes = in.readLong();
            double sum = in.readDouble();
            double maxAbs = in.readDouble();
            int n = in.readInt();
            List<SpotCheck.Point> samples = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                samples.add(SpotCheck.Point.read(in));
            }
            return new OutputSummary(crc, bytes, sum, maxAbs, samples);
        }
    }

    /**
     * The sink: an OutputStream that takes the o bytes pass 2 would write for tokens from
     * {@code firstToken} on, keeps the summary and the rows of {@code sampleTokens} (sorted, inside
     * the range), and writes nothing.
     */
    public static final class Sink extends OutputStream {
        private final CRC32C crc = new CRC32C();
        private final DType dtype;
        private final long firstToken;
        private final int tokenBytes;
        private final long[] sampleTokens;
        private final byte[][] rows;
        private final byte[] pending = new byte[4];
        private int pendingBytes;
        private long written;
        private double sum;
        private double maxAbs;

        public Sink(DType dtype, long firstToken, int tokenBytes, long[] sampleTokens) {
            this.dtype = dtype;
            this.firstToken = firstToken;
            this.tokenBytes = tokenBytes;
            this.sampleTokens = sampleTokens.clone();
            this.rows = new byte[sampleTokens.length][tokenBytes];
        }

        @Override
        public void write(int b) {
            write(new byte[] {(byte) b}, 0, 1);
        }

        @Override
        public void write(byte[] b, int off, int len) {
            crc.update(b, off, len);
            for (int i = 0; i < sampleTokens.length; i++) {
                long rowStart = (sampleTokens[i] - firstToken) * tokenBytes;
                long from = Math.max(rowStart, written);
                long to = Math.min(rowStart + tokenBytes, written + len);
                if (from < to) {
                    System.arraycopy(b, off + (int) (from - written), rows[i], (int) (from - rowStart), (int) (to - from));
                }
            }
            written += len;
            int es = dtype.bytes();
            int at = off;
            int end = off + len;
            while (pendingBytes > 0 && at < end) { // finish an element split across writes
                pending[pendingBytes++] = b[at++];
                if (pendingBytes == es) {
                    add(dtype.get(ByteBuffer.wrap(pending).order(ByteOrder.LITTLE_ENDIAN), 0));
                    pendingBytes = 0;
                }
            }
            int whole = (end - at) / es;
            ByteBuffer view = ByteBuffer.wrap(b, at, whole * es).slice().order(ByteOrder.LITTLE_ENDIAN);
            double s = 0;
            double m = maxAbs;
            for (int i = 0; i < whole; i++) {
                float x = dtype.get(view, i * es);
                s += x;
                m = Math.max(m, Math.abs(x));
            }
            sum += s;
            maxAbs = m;
            at += whole * es;
            while (at < end) {
                pending[pendingBytes++] = b[at++];
            }
        }

        private void add(float x) {
            sum += x;
            maxAbs = Math.max(maxAbs, Math.abs(x));
        }

        /** The summary of everything written, with the sampled rows not yet checked. */
        public OutputSummary summary() {
            if (pendingBytes != 0) {
                throw new IllegalStateException("o ends inside an element: " + written + " bytes of " + dtype);
            }
            List<SpotCheck.Point> points = new ArrayList<>();
            for (int i = 0; i < sampleTokens.length; i++) {
                long rowEnd = (sampleTokens[i] - firstToken + 1) * tokenBytes;
                if (rowEnd > written) {
                    throw new IllegalStateException("sampled token " + sampleTokens[i] + " was not written: "
                            + written + " bytes from token " + firstToken);
                }
                points.add(SpotCheck.Point.unchecked(sampleTokens[i], rows[i], "not checked yet"));
            }
            return new OutputSummary((int) crc.getValue(), written, sum, maxAbs, points);
        }
    }
}
