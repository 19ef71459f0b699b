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
    /**
     * Scans {@code elements} values of {@code dtype} starting at byte {@code offset} (absolute) of
     * {@code buf}, whatever its position, order or kind (heap, direct, read-only); the same count
     * and first index as the array scan of the same bytes.
     */
    public static Found scan(java.nio.ByteBuffer buf, int offset, int elements, DType dtype) {
        if (buf.hasArray()) {
            return scan(buf.array(), buf.arrayOffset() + offset, elements, dtype);
        }
        java.nio.ByteBuffer b = buf.duplicate().order(java.nio.ByteOrder.LITTLE_ENDIAN);
        long count = 0;
        long first = -1;
        // the exponent field of each dtype, in the value's upper 16 bits (F32) or in the whole 16 (BF16, F16)
        int mask = dtype == DType.F16 ? 0x7c00 : 0x7f80;
        if (dtype == DType.F32) {
            for (int i = 0; i < elements; i++) {
                if ((b.getShort(offset + 4 * i + 2) & mask) == mask) {
                    count++;
                    first = first < 0 ? i : first;
                }
            }
        } else {
            for (int i = 0; i < elements; i++) {
                if ((b.getShort(offset + 2 * i) & mask) == mask) {
                    count++;
                    first = first < 0 ? i : first;
                }
            }
        }
        return new Found(count, first);
    }
}
