package dev.lightning.attention.tensor;

import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.nio.ByteOrder;

/**
 * The vector pass of {@link NonFinite}'s scan over a byte array (jdk.incubator.vector; loaded only
 * where the JVM has the module, see {@link NonFinite}): it finds the first block of values that may
 * hold a NaN or Inf, and the word scan counts that block exactly.
 *
 * <p>The test, per block of {@link #VECTORS} vectors: masked to its exponent bits, a value is
 * non-finite exactly when it equals the mask (exponent all ones); the mask is also the largest
 * value a masked lane can take, and it is positive as a signed lane (0x7f800000, 0x7f80, 0x7c00),
 * so a block holds a non-finite value exactly when the lanewise maximum of its masked values equals
 * the mask. One AND and one MAX per vector, one reduction per block, no per-value branch. The
 * block is a method of its own so that it is compiled by invocation count after a few thousand
 * blocks (a few MiB), not by on-stack replacement of a long loop: on this VM a loop over 64 MiB
 * ran its first call at interpreted Vector API speed for about 110 ms, the method form 70 ms.
 */
final class VectorSkip implements NonFinite.Skip {
    private static final VectorSpecies<Integer> INTS = IntVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> SHORTS = ShortVector.SPECIES_PREFERRED;
    /** Vectors per block: 16 (1 KiB of 512-bit vectors), so that one reduction serves 16 loads. */
    static final int VECTORS = 16;
    private static final int F32_EXPONENT = 0x7f800000;
    private static final short BF16_EXPONENT = 0x7f80;
    private static final short F16_EXPONENT = 0x7c00;

    @Override
    public int blockValues(DType dtype) {
        return VECTORS * (dtype == DType.F32 ? INTS.length() : SHORTS.length());
    }

    @Override
    public int skipFinite(byte[] a, int base, int from, int to, DType dtype) {
        int block = blockValues(dtype);
        int i = from;
        if (dtype == DType.F32) {
            for (; i + block <= to; i += block) {
                if (maxExponent32(a, base + 4 * i) == F32_EXPONENT) {
                    return i;
                }
            }
        } else {
            short mask = dtype == DType.F16 ? F16_EXPONENT : BF16_EXPONENT;
            for (; i + block <= to; i += block) {
                if (maxExponent16(a, base + 2 * i, mask) == mask) {
                    return i;
                }
            }
        }
        return i;
    }

    /** The largest exponent field (bits 0x7f800000) of the 16 vectors of float32 values at byte {@code at} of {@code a}. */
    private static int maxExponent32(byte[] a, int at) {
        int step = INTS.vectorByteSize();
        IntVector max = IntVector.fromByteArray(INTS, a, at, ByteOrder.LITTLE_ENDIAN).and(F32_EXPONENT);
        for (int v = 1; v < VECTORS; v++) {
            max = max.max(IntVector.fromByteArray(INTS, a, at + v * step, ByteOrder.LITTLE_ENDIAN).and(F32_EXPONENT));
        }
        return max.reduceLanes(VectorOperators.MAX);
    }

    /** The largest {@code mask}ed field of the 16 vectors of 16-bit values at byte {@code at} of {@code a}. */
    private static short maxExponent16(byte[] a, int at, short mask) {
        int step = SHORTS.vectorByteSize();
        ShortVector max = ShortVector.fromByteArray(SHORTS, a, at, ByteOrder.LITTLE_ENDIAN).and(mask);
        for (int v = 1; v < VECTORS; v++) {
            max = max.max(ShortVector.fromByteArray(SHORTS, a, at + v * step, ByteOrder.LITTLE_ENDIAN).and(mask));
        }
        return max.reduceLanes(VectorOperators.MAX);
    }
}
