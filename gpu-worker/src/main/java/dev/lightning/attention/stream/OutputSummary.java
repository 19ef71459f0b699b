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
import java.util.Map;
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

    /** Metadata keys of a result file written in --output-mode checksums. */
    public static final String MODE = "output_mode";
    public static final String CRC = "o_crc32c";
    public static final String SPOT_CHECKS = "spot_checks";
    public static final String MAX_ERROR = "spot_check_max_rel_error";
    public static final String TOLERANCE = "spot_check_tolerance";

    /**
     * The result file's metadata for this summary of a whole sequence's o ([T, H, Dv] in
     * {@code oDtype}): the checksum, length, sum and max |o|, the sampled tokens (whose rows the file
     * holds as {@code o_sampled}) and the spot-check table as JSON:
     * [{"token", "rel_error", "max_abs_ref", "history", "exact"} or {"token", "unchecked"}], with the
     * tolerance the run holds them to.
     */
    public Map<String, String> metadata(long tokens, int heads, int dv, DType oDtype, double tolerance) {
        Map<String, String> m = new java.util.TreeMap<>();
        m.put(MODE, "checksums");
        m.put("o_shape", tokens + "," + heads + "," + dv);
        m.put("o_dtype", oDtype.name());
        m.put(CRC, crcHex());
        m.put("o_bytes", Long.toString(bytes));
        m.put("o_sum", Double.toString(sum));
        m.put("o_max_abs", Double.toString(maxAbs));
        StringBuilder t = new StringBuilder();
        com.fasterxml.jackson.databind.ObjectMapper json = new com.fasterxml.jackson.databind.ObjectMapper();
        com.fasterxml.jackson.databind.node.ArrayNode table = json.createArrayNode();
        double worst = 0;
        for (SpotCheck.Point p : samples) {
            t.append(t.length() == 0 ? "" : ",").append(p.token);
            com.fasterxml.jackson.databind.node.ObjectNode n = table.addObject().put("token", p.token);
            if (p.checked()) {
                n.put("rel_error", p.relError).put("max_abs_ref", p.maxAbsRef).put("history", p.history)
                        .put("exact", p.exact);
                worst = Math.max(worst, p.relError);
            } else {
                n.put("unchecked", p.unchecked);
            }
        }
        m.put("o_sampled_tokens", t.toString());
        m.put(SPOT_CHECKS, table.toString());
        m.put(MAX_ERROR, Double.toString(worst));
        m.put(TOLERANCE, Double.toString(tolerance));
        return m;
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
