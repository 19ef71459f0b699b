package dev.lightning.attention.stream;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.TreeSet;

/**
 * Float64 spot checks of single o rows, computed from the input directly (any {@link RangeReader}:
 * a file, or a {@link SyntheticSequence}), without the state and without the rest of the sequence.
 *
 * <p>Math. Unrolling the recurrence, o_t = scale * sum_{s <= t} lambda^(t-s) (phi(q_t) . phi(k_s)) v_s
 * (+ scale * lambda^(t+1) phi(q_t) S_init), and with normalization the denominator is
 * sum_{s <= t} lambda^(t-s) phi(q_t) . phi(k_s) (+ lambda^(t+1) phi(q_t) . z_init) + eps. Each term
 * costs Dk + Dv products, so one row costs (Dk + Dv) per head and token of history instead of the
 * Dk * Dv of a state update. Terms older than W tokens together weigh at most
 * lambda^W / (1 - lambda) times the largest term; W is the smallest with that below 1e-12
 * ({@link #TRUNCATION}), so the sum over (t - W, t] is the float64 value to about 1e-12 relative.
 * The initial state's term is added whatever W: its weight lambda^(t+1) is below lambda^W, but the
 * state itself has no bound against the tokens' terms (a state stored after a long run, or one of
 * 1e18, outweighs them by as much), and the term costs Dk * Dv a head, less than a token of history
 * read. When W >= t + 1 the sum is exact (all tokens). A head whose W and t + 1 both exceed
 * {@link #MAX_HISTORY} (slope below about 7e-6, far into the sequence) is not checked: the point is
 * marked with the reason instead of spending minutes on it.
 *
 * <p>Error. Per head, max_j |o_j - ref_j| / max_j |ref_j| (relative to the row's scale: an element
 * near a zero crossing has no meaningful relative error), and the point's error is the largest over
 * heads. {@link #tolerance} gives the bound for the output dtype.
 */
public final class SpotCheck {
    /** Relative weight of the history a truncated check drops. */
    public static final double TRUNCATION = 1e-12;
    /** Most tokens of history one head of a check reads (about a second per head at D = 64). */
    public static final long MAX_HISTORY = 1L << 22;
    /** Sampled tokens spread over a sequence (including its first and last). */
    public static final int SPREAD = 16;
    /** Pieces, spread over a split sequence, whose first and last tokens are sampled too. */
    public static final int BOUNDARY_PIECES = 8;
    private static final int BLOCK = 1024;

    private SpotCheck() {
    }

    /**
     * The largest error {@link Point#relError} allowed for o stored in {@code o}: about 2.5 times
     * the dtype's unit roundoff for BF16 (2^-8) and F16 (2^-11), which covers the rounding of o
     * (at most one unit roundoff of the row's largest value) and of the 16-bit products some GPU
     * kernels use; for F32, 1e-4 covers float32 accumulation over long histories.
     */
    public static double tolerance(DType o) {
        switch (o) {
            case BF16:
                return 1e-2;
            case F16:
                return 1.2e-3;
            default:
                return 1e-4;
        }
    }

    /** Tokens of history a head of decay rate {@code slope} needs for {@link #TRUNCATION}; Long.MAX_VALUE for 0. */
    public static long history(double slope) {
        if (!(slope > 0)) {
            return Long.MAX_VALUE;
        }
        // lambda^W / (1 - lambda) <= 1e-12  <=>  W >= (ln 1e12 - ln(1 - lambda)) / slope
        double w = Math.ceil((-Math.log(TRUNCATION) - Math.log(-Math.expm1(-slope))) / slope);
        return w >= Long.MAX_VALUE ? Long.MAX_VALUE : Math.max(1, (long) w);
    }

    /**
     * The sampled tokens of a sequence of {@code tokens} that lie in piece {@code p}, sorted:
     * {@link #SPREAD} tokens round(i (T-1) / (SPREAD-1)) (the first and last among them), and the first
     * and last token of {@link #BOUNDARY_PIECES} pieces round(j (P-1) / (BOUNDARY_PIECES-1)). A
     * function of (T, the plan) only, so every task finds the same set.
     */
    public static long[] samples(long tokens, Piece p) {
        TreeSet<Long> all = new TreeSet<>();
        for (int i = 0; i < SPREAD; i++) {
            all.add(Math.round(i * (double) (tokens - 1) / (SPREAD - 1)));
        }
        int count = p.count();
        for (int j = 0; j < BOUNDARY_PIECES; j++) {
            if (Math.round(j * (double) (count - 1) / (BOUNDARY_PIECES - 1)) == p.index()) {
                all.add(p.start());
                all.add(p.end() - 1);
            }
        }
        return all.subSet(p.start(), p.end()).stream().mapToLong(Long::longValue).toArray();
    }

    /** One sampled o row: its token, bytes (as the file would hold them) and check. */
    public static final class Point {
        public final long token;
        private final byte[] row;
        /** The error as defined above; NaN when not checked. */
        public final double relError;
        /** max |ref| over the row. */
        public final double maxAbsRef;
        /** Tokens of history read (the most of any head). */
        public final long history;
        /** Whether the reference used every token (and the initial state), not a truncated history. */
        public final boolean exact;
        /** Why the point was not checked; null when it was. */
        public final String unchecked;

        Point(long token, byte[] row, double relError, double maxAbsRef, long history, boolean exact,
              String unchecked) {
            this.token = token;
            this.row = row.clone();
            this.relError = relError;
            this.maxAbsRef = maxAbsRef;
            this.history = history;
            this.exact = exact;
            this.unchecked = unchecked;
        }

        static Point unchecked(long token, byte[] row, String why) {
            return new Point(token, row, Double.NaN, Double.NaN, 0, false, why);
        }

        public byte[] row() {
            return row.clone();
        }

        public boolean checked() {
            return unchecked == null;
        }

        void write(DataOutputStream out) throws IOException {
            out.writeLong(token);
            out.writeInt(row.length);
            out.write(row);
            out.writeDouble(relError);
            out.writeDouble(maxAbsRef);
            out.writeLong(history);
            out.writeBoolean(exact);
            out.writeBoolean(unchecked != null);
            if (unchecked != null) {
                out.writeUTF(unchecked);
            }
        }

        static Point read(DataInputStream in) throws IOException {
            long token = in.readLong();
            byte[] row = new byte[in.readInt()];
            in.readFully(row);
            double rel = in.readDouble();
            double ref = in.readDouble();
            long history = in.readLong();
            boolean exact = in.readBoolean();
            String why = in.readBoolean() ? in.readUTF() : null;
            return new Point(token, row, rel, ref, history, exact, why);
        }

        @Override
        public String toString() {
            return "o[" + token + "]: " + (checked() ? String.format("rel. error %.3g (max |ref| %.4g, %s)", relError,
                    maxAbsRef, exact ? "exact" : history + " tokens of history") : "unchecked: " + unchecked);
        }
    }

    /** The row {@code point} holds, checked against the float64 reference. */
    public static Point check(RangeReader in, SequenceFile f, AttentionSpec spec, DType oDtype, Point point)
            throws IOException {
        return check(in, f, spec, oDtype, point, null);
    }

    /**
     * The same for a sequence that starts from {@code initial} (a state stored by an earlier run)
     * instead of the file's initial_state; null: the file's, or zero.
     */
    public static Point check(RangeReader in, SequenceFile f, AttentionSpec spec, DType oDtype, Point point,
                              LightningState initial) throws IOException {
        long t = point.token;
        int heads = spec.heads();
        long needed = 0;
        boolean exact = true;
        for (int h = 0; h < heads; h++) {
            long w = Math.min(t + 1, history(spec.slope(h)));
            if (w > MAX_HISTORY) {
                return Point.unchecked(t, point.row, String.format("head %d (slope %.3g) needs %s tokens of history "
                        + "for a 1e-12 float64 reference at token %d, more than the %d a check may read", h,
                        spec.slope(h), history(spec.slope(h)) == Long.MAX_VALUE ? "all" : history(spec.slope(h)), t,
                        MAX_HISTORY));
            }
            needed = Math.max(needed, w);
            exact &= w == t + 1;
        }
        double[] ref = reference(in, f, spec, t, initial);
        TokenTensor o = TokenTensor.wrap(oDtype, 1, heads, spec.dv(), ByteBuffer.wrap(point.row));
        double worst = 0;
        double maxRef = 0;
        for (int h = 0; h < heads; h++) {
            double diff = 0;
            double scale = 0;
            for (int j = 0; j < spec.dv(); j++) {
                double r = ref[h * spec.dv() + j];
                diff = Math.max(diff, Math.abs(o.get(0, h, j) - r));
                scale = Math.max(scale, Math.abs(r));
            }
            double rel = scale > 0 ? diff / scale : diff;
            worst = Double.isNaN(rel) ? Double.POSITIVE_INFINITY : Math.max(worst, rel);
            maxRef = Math.max(maxRef, scale);
        }
        return new Point(t, point.row, worst, maxRef, needed, exact, null);
    }

    /**
     * The float64 o row of token {@code t} ([H, Dv] flattened) as defined above, each head summing
     * over min(t + 1, {@link #history}) tokens of history.
     */
    public static double[] reference(RangeReader in, SequenceFile f, AttentionSpec spec, long t) throws IOException {
        return reference(in, f, spec, t, null);
    }

    /** {@link #reference(RangeReader, SequenceFile, AttentionSpec, long)} from {@code initial} (null: the file's initial state or zero). */
    public static double[] reference(RangeReader in, SequenceFile f, AttentionSpec spec, long t, LightningState initial)
            throws IOException {
        int heads = spec.heads();
        int dk = spec.dk();
        int dv = spec.dv();
        FeatureMap phi = spec.featureMap();
        DType dt = f.dtype;
        AttentionSpec layout = f.layout();
        int qTokenBytes = layout.headsQ() * dk * dt.bytes();
        int kTokenBytes = layout.headsK() * dk * dt.bytes();
        int vTokenBytes = layout.headsV() * dv * dt.bytes();
        byte[] qRaw = new byte[qTokenBytes];
        SequenceFile.readFully(in, f.qOffset + t * qTokenBytes, qRaw, f.name);
        TokenTensor q = TokenTensor.wrap(dt, 1, layout.headsQ(), dk, ByteBuffer.wrap(qRaw));
        double[][] qPhi = new double[heads][dk];
        long[] first = new long[heads];
        long lo = t;
        for (int h = 0; h < heads; h++) {
            for (int i = 0; i < dk; i++) {
                qPhi[h][i] = phi.apply((double) q.get(0, spec.qHead(h), i));
            }
            first[h] = t + 1 - Math.min(t + 1, history(spec.slope(h)));
            lo = Math.min(lo, first[h]);
        }
        double[] out = new double[heads * dv];
        double[] den = new double[heads];
        byte[] kRaw = new byte[BLOCK * kTokenBytes];
        byte[] vRaw = new byte[BLOCK * vTokenBytes];
        for (long b = t + 1; b > lo; b -= BLOCK) {
            long a = Math.max(lo, b - BLOCK);
            int n = (int) (b - a);
            in.readFully(f.kOffset + a * kTokenBytes, kRaw, 0, n * kTokenBytes);
            in.readFully(f.vOffset + a * vTokenBytes, vRaw, 0, n * vTokenBytes);
            TokenTensor k = TokenTensor.wrap(dt, n, layout.headsK(), dk, ByteBuffer.wrap(kRaw, 0, n * kTokenBytes));
            TokenTensor v = TokenTensor.wrap(dt, n, layout.headsV(), dv, ByteBuffer.wrap(vRaw, 0, n * vTokenBytes));
            for (int h = 0; h < heads; h++) {
                int hk = spec.kHead(h);
                int hv = spec.vHead(h);
                double slope = spec.slope(h);
                for (long s = Math.max(a, first[h]); s < b; s++) {
                    int r = (int) (s - a);
                    double dot = 0;
                    for (int i = 0; i < dk; i++) {
                        dot += qPhi[h][i] * phi.apply((double) k.get(r, hk, i));
                    }
                    double w = Math.exp(-slope * (t - s)) * dot;
                    for (int j = 0; j < dv; j++) {
                        out[h * dv + j] += w * v.get(r, hv, j);
                    }
                    den[h] += w;
                }
            }
        }
        // every head, its history truncated or not (the class comment says why)
        if (initial != null || f.initialStateOffset >= 0 || f.initialNormalizerOffset >= 0) {
            LightningState init = initial != null ? initial : PieceWork.initialState(in, f, spec, 0);
            for (int h = 0; h < heads; h++) {
                double decay = Math.exp(-spec.slope(h) * (t + 1));
                for (int i = 0; i < dk; i++) {
                    for (int j = 0; j < dv; j++) {
                        out[h * dv + j] += decay * qPhi[h][i] * init.get(h, i, j);
                    }
                    if (spec.normalized()) {
                        den[h] += decay * qPhi[h][i] * init.normalizer(h, i);
                    }
                }
            }
        }
        for (int h = 0; h < heads; h++) {
            double divide = spec.normalized() ? den[h] + spec.eps() : 1;
            for (int j = 0; j < dv; j++) {
                out[h * dv + j] = spec.scale() * out[h * dv + j] / divide;
            }
        }
        return out;
    }
}
