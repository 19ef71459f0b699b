package dev.lightning.attention.tensor;

import java.nio.ByteBuffer;
import java.util.Locale;

/**
 * The element types a sequence file may hold, with their safetensors names and little-endian
 * codecs. Decoding is exact; encoding rounds to nearest, ties to even, as PyTorch does.
 */
public enum DType {
    F32(4),
    F16(2),
    BF16(2);

    private final int bytes;

    DType(int bytes) {
        this.bytes = bytes;
    }

    /** Size of one element in bytes. */
    public int bytes() {
        return bytes;
    }

    /** The name safetensors headers use ("F32", "F16", "BF16"). */
    public String safetensorsName() {
        return name();
    }

    /**
     * Parses a safetensors dtype name.
     *
     * @throws IllegalArgumentException for any other name, listing the supported ones
     */
    public static DType fromSafetensors(String name) {
        if (name != null) {
            for (DType t : values()) {
                if (t.name().equals(name.toUpperCase(Locale.ROOT))) {
                    return t;
                }
            }
        }
        throw new IllegalArgumentException(
                "unsupported dtype '" + name + "': expected one of F32, F16, BF16");
    }

    /** Reads the element at byte offset {@code at} of a little-endian buffer. */
    public float get(ByteBuffer buf, int at) {
        switch (this) {
            case F32:
                return buf.getFloat(at);
            case F16:
                return halfToFloat(buf.getShort(at));
            default:
                return bf16ToFloat(buf.getShort(at));
        }
    }

    /** Writes {@code value}, rounded to this type, at byte offset {@code at}. */
    public void put(ByteBuffer buf, int at, float value) {
        switch (this) {
            case F32:
                buf.putFloat(at, value);
                break;
            case F16:
                buf.putShort(at, floatToHalf(value));
                break;
            default:
                buf.putShort(at, floatToBf16(value));
                break;
        }
    }

    /** The value this type stores for {@code value}: what a write followed by a read gives. */
    public float round(float value) {
        switch (this) {
            case F32:
                return value;
            case F16:
                return halfToFloat(floatToHalf(value));
            default:
                return bf16ToFloat(floatToBf16(value));
        }
    }

    // ---- bfloat16: the upper half of a float32 ----

    static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xffff) << 16);
    }

    /**
     * value rounded to bfloat16 (its bit pattern): to nearest, ties to even, a NaN kept a (quiet) NaN.
     * The one statement of this rounding; the CPU backend's vector form is held against it by its tests.
     */
    public static short floatToBf16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if ((bits & 0x7fffffff) > 0x7f800000) {
            return (short) ((bits >>> 16) | 0x0040); // keep NaN a (quiet) NaN
        }
        int roundingBias = 0x7fff + ((bits >>> 16) & 1);
        return (short) ((bits + roundingBias) >>> 16);
    }

    // ---- IEEE binary16 ----

    static float halfToFloat(short h) {
        int bits = h & 0xffff;
        int sign = (bits & 0x8000) << 16;
        int exp = (bits >>> 10) & 0x1f;
        int mant = bits & 0x3ff;
        if (exp == 0x1f) {
            return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
        }
        if (exp == 0) {
            // zero or subnormal: mant * 2^-24, exact in float32
            float magnitude = mant * 0x1p-24f;
            return sign == 0 ? magnitude : -magnitude;
        }
        return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
    }

    static short floatToHalf(float value) {
        int bits = Float.floatToRawIntBits(value);
        int sign = (bits >>> 16) & 0x8000;
        int abs = bits & 0x7fffffff;
        if (abs > 0x7f800000) {
            return (short) (sign | 0x7e00 | ((abs >>> 13) & 0x3ff)); // NaN stays NaN
        }
        if (abs >= 0x477ff000) {
            // at or above 65520 (halfway between the largest half and 2^16) rounds to infinity
            return (short) (sign | 0x7c00);
        }
        if (abs < 0x38800000) {
            // below the smallest normal half (2^-14): subnormal or zero, value = m * 2^-24
            float magnitude = Float.intBitsToFloat(abs);
            // Math.rint rounds half to even, which is IEEE's rule for the subnormal grid too.
            int m = (int) Math.rint(magnitude * 0x1p24f);
            return (short) (sign | m); // m == 0x400 lands exactly on the smallest normal
        }
        int exp = ((abs >>> 23) - 112) << 10;
        int mant = abs & 0x7fffff;
        int half = exp | (mant >>> 13);
        int rest = mant & 0x1fff;
        if (rest > 0x1000 || (rest == 0x1000 && (half & 1) == 1)) {
            half++; // a carry into the exponent is still the correctly rounded value
        }
        return (short) (sign | half);
    }
}
