package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.DType;

/**
 * NaN or infinite values in what a task computed from finite inputs: in {@code o} as written in the
 * output dtype (most often an F16 overflow: its largest value is 65504), or in the recurrent state
 * that becomes {@code final_state}. Found window by window, before the window's bytes are written;
 * the piece stops there.
 */
public final class NonFiniteOutputException extends NonFiniteException {
    private static final long serialVersionUID = 1L;

    /**
     * @param at     first token of the window where the values were found
     * @param first  the first position, {@code o[token, head, index]} or {@code final_state[head, i, j]}
     * @param tensor {@code o} or {@code final_state}
     * @param dtype  the dtype the tensor is written in
     * @param where  which part of the tensor was scanned, such as "tokens [0, 64)"
     */
    NonFiniteOutputException(String file, int sequence, long at, long count, String first, String tensor,
                             DType dtype, String where) {
        this(file, sequence, at, count, first, tensor, dtype, where, false);
    }

    /**
     * @param zeroEps whether {@code o} is that of a normalized run with eps 0, where o = num / (phi(q) . z)
     *                is 0/0 wherever phi(q) . z is 0, and overflows where it is below float32's normal range
     */
    NonFiniteOutputException(String file, int sequence, long at, long count, String first, String tensor,
                             DType dtype, String where, boolean zeroEps) {
        super(file + ": " + count + " NaN/Inf value(s) in the output " + tensor + " (" + dtype + "), " + where
                + ", the first at " + first + "; " + advice(tensor, dtype, zeroEps), sequence, at, count, first);
    }

    /**
     * What to do: an F16 o overflows above 65504, which F32 holds; a BF16 o has float32's range
     * (3.39e38 against 3.40e38), so its infinities are float32's own, as an F32 o's are; with
     * --normalize-eps 0 the likely cause is a zero denominator. The one statement of it: a table
     * run's pass 2 gives the same, with its own last resort.
     */
    public static String advice(String tensor, DType dtype, boolean zeroEps) {
        return advice(tensor, dtype, zeroEps, "pass --skip-nonfinite to skip such sequences and list them in the run "
                + "report");
    }

    /**
     * The same, with {@code skip} the last resort (a clause after "or"): a table run refuses --skip-nonfinite, and
     * its advice must not send the user to it.
     */
    public static String advice(String tensor, DType dtype, boolean zeroEps, String skip) {
        if (zeroEps) {
            return "the run normalizes with --normalize-eps 0, so a token whose phi(q) . z is 0 has o = 0/0 (relu maps "
                    + "a q row without a positive element, or keys without one, to 0), and one below 1e-38 overflows "
                    + "float32: pass an eps above 0 (the default is 1e-5), or " + skip;
        }
        if (dtype == DType.F16) {
            return tensor + " is F16 (largest value 65504) and the values likely overflowed it: pass --output-dtype f32, "
                    + "or " + skip;
        }
        return "float32 overflowed in the computation" + (dtype == DType.BF16 ? " (BF16 has float32's range: "
                + "--output-dtype f32 would not hold it)" : "") + ": check the magnitude of q, k, v and --scale, or "
                + skip;
    }
}
