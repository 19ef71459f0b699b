package dev.lightning.attention.tensor;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Finds NaN and infinite values in raw little-endian tensor bytes by their exponent bits, without
 * decoding: an all-ones exponent is Inf or NaN in all three dtypes.
 *
 * <p>The bytes are read 8 at a time (2 float32 or 4 16-bit values in one long) and a word is
 * tested for "some value has an all-ones exponent" with a few integer operations; only a word
 * that passes is looked at value by value, to count and place what it holds. Finite data, the
 * common case, thus costs about one long load and five operations per 8 bytes instead of two
 * byte loads and a compare per value: the job scans every input and output byte, and the
 * byte-at-a-time loop was 45% of the CPU job's samples on a 3 GiB F32 file (BENCHMARKS.md, "CPU:
 * the whole job against a numpy peer").
 */
public final class NonFinite {
    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

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
        int size = dtype == DType.F32 ? 4 : 2;
        // per lane of a word: the exponent field, the lane's lowest bit and its highest bit
        long exponent;
        long low;
        long high;
        if (dtype == DType.F32) {
            exponent = 0x7f8000007f800000L;
            low = 0x0000000100000001L;
            high = 0x8000000080000000L;
        } else {
            exponent = dtype == DType.BF16 ? 0x7f807f807f807f80L : 0x7c007c007c007c00L;
            low = 0x0001000100010001L;
            high = 0x8000800080008000L;
        }
        int perWord = 8 / size;
        int words = elements / perWord;
        long count = 0;
        long first = -1;
        for (int w = 0; w < words; w++) {
            // y's lane is 0 exactly where the value's exponent is all ones; (y - low) & ~y & high is
            // non-zero iff some lane of y is 0 (the sign bit is outside the exponent mask, so no
            // lane of y has its top bit set and none can pass without being 0)
            long y = ((long) LONGS.get(buf, offset + 8 * w) & exponent) ^ exponent;
            if (((y - low) & ~y & high) != 0) {
                for (int i = w * perWord, end = i + perWord; i < end; i++) {
                    if (nonFinite(buf, offset + size * i, dtype)) {
                        count++;
                        first = first < 0 ? i : first;
                    }
                }
            }
        }
        for (int i = words * perWord; i < elements; i++) {
            if (nonFinite(buf, offset + size * i, dtype)) {
                count++;
                first = first < 0 ? i : first;
            }
        }
        return new Found(count, first);
    }

    /** Whether the value of {@code dtype} at byte {@code at} has an all-ones exponent. */
    private static boolean nonFinite(byte[] buf, int at, DType dtype) {
        switch (dtype) {
            case F32: {
                int hi = ((buf[at + 3] & 0xff) << 8) | (buf[at + 2] & 0xff);
                return (hi & 0x7f80) == 0x7f80;
            }
            case BF16: {
                int bits = ((buf[at + 1] & 0xff) << 8) | (buf[at] & 0xff);
                return (bits & 0x7f80) == 0x7f80;
            }
            default: {
                int bits = ((buf[at + 1] & 0xff) << 8) | (buf[at] & 0xff);
                return (bits & 0x7c00) == 0x7c00;
            }
        }
    }
}
