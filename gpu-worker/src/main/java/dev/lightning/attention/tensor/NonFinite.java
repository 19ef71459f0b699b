package dev.lightning.attention.tensor;

/**
 * Finds NaN and infinite values in raw little-endian tensor bytes by their exponent bits, without
 * decoding: an all-ones exponent is Inf or NaN in all three dtypes.
 */
public final class NonFinite {
    private NonFinite() {
    }

    /** What a scan found: how many non-finite values, and the element index of the first (-1 if none). */
    public static final class Found {
        public final long count;
        public final long first;

        Found(long count, long first) {
            this.count = count;
            this.first = first;
        }
    }

    /** Scans {@code elements} values of {@code dtype} starting at byte {@code offset} of {@code buf}. */
    public static Found scan(byte[] buf, int offset, int elements, DType dtype) {
        long count = 0;
        long first = -1;
        switch (dtype) {
            case F32:
                for (int i = 0; i < elements; i++) {
                    int at = offset + 4 * i;
                    int hi = ((buf[at + 3] & 0xff) << 8) | (buf[at + 2] & 0xff);
                    if ((hi & 0x7f80) == 0x7f80) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
                break;
            case BF16:
                for (int i = 0; i < elements; i++) {
                    int at = offset + 2 * i;
                    int bits = ((buf[at + 1] & 0xff) << 8) | (buf[at] & 0xff);
                    if ((bits & 0x7f80) == 0x7f80) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
                break;
            default:
                for (int i = 0; i < elements; i++) {
                    int at = offset + 2 * i;
                    int bits = ((buf[at + 1] & 0xff) << 8) | (buf[at] & 0xff);
                    if ((bits & 0x7c00) == 0x7c00) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
                break;
        }
        return new Found(count, first);
    }
}
