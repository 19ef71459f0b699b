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
        super(file + ": " + count + " NaN/Inf value(s) in the output " + tensor + " (" + dtype + "), " + where
                + ", the first at " + first + "; " + advice(tensor, dtype), sequence, at, count, first);
    }

    private static String advice(String tensor, DType dtype) {
        String skip = "--skip-nonfinite to skip such sequences and list them in the run report";
        if (dtype == DType.F16 || dtype == DType.BF16) {
            return tensor + " is " + dtype + " (largest value " + (dtype == DType.F16 ? "65504" : "3.39e38")
                    + ") and the values likely overflowed it: pass --output-dtype f32, or " + skip;
        }
        return "float32 overflowed in the computation: check the magnitude of q, k, v and --scale, or pass " + skip;
    }
}
