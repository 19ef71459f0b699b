package dev.lightning.attention.stream;

import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.LongVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.nio.ByteOrder;

/**
 * The BF16 and F32 bodies of {@link SyntheticSequence}'s generator on the Vector API: the same hash and the
 * same float32 arithmetic as the scalar code, lane by lane, so the bytes are identical (the tests
 * compare every element with {@link SyntheticSequence#value}). Loaded only where
 * jdk.incubator.vector is readable ({@link #load}); the scalar loop does the rest.
 *
 * <p>One LongVector holds the hashes of L consecutive blocks; read as ints, each int holds two
 * 16-bit u values, the even element in its low half (little-endian order, the order of the
 * elements). Both halves go through (u - 32767.5) * c and BF16 rounding, and are packed back into
 * one int, which is stored little-endian: two BF16 values per int, in element order.
 */
final class SyntheticVectors {
    private static final VectorSpecies<Long> LONGS = LongVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> INTS = IntVector.SPECIES_PREFERRED;
    private static final long GOLDEN = 0x9E3779B97F4A7C15L;
    private static final long[] IOTA = new long[LONGS.length()];

    static {
        for (int i = 0; i < IOTA.length; i++) {
            IOTA[i] = i;
        }
    }

    private SyntheticVectors() {
    }

    /** Blocks of four values per vector step. */
    static int blocksPerStep() {
        return LONGS.length();
    }

    /**
     * Writes the BF16 bytes of {@code steps * blocksPerStep()} whole blocks from {@code block}
     * (8 bytes each) at buf[at].
     */
    static void bf16(long key, long block, long steps, float c, byte[] buf, int at) {
        LongVector iota = LongVector.fromArray(LONGS, IOTA, 0);
        int lanes = LONGS.length();
        for (long s = 0; s < steps; s++, block += lanes, at += lanes * 8) {
            IntVector u = hash(iota.add(block), key).reinterpretAsInts();
            IntVector lo = round(u.and(0xffff), c);
            IntVector hi = round(u.lanewise(VectorOperators.LSHR, 16), c);
            lo.or(hi.lanewise(VectorOperators.LSHL, 16)).intoByteArray(buf, at, ByteOrder.LITTLE_ENDIAN);
        }
    }

    /**
     * Writes the F32 bytes of {@code steps * blocksPerStep()} whole blocks from {@code block}
     * (16 bytes each) at buf[at]: the hashes read as shorts are the u values in element order;
     * each half of them widens to ints (unsigned), becomes (u - 32767.5) * c and is stored.
     */
    static void f32(long key, long block, long steps, float c, byte[] buf, int at) {
        LongVector iota = LongVector.fromArray(LONGS, IOTA, 0);
        int lanes = LONGS.length();
        int half = INTS.length() * 4;
        for (long s = 0; s < steps; s++, block += lanes, at += lanes * 16) {
            LongVector z = hash(iota.add(block), key);
            jdk.incubator.vector.ShortVector u = z.reinterpretAsShorts();
            for (int part = 0; part < 2; part++) {
                IntVector wide = ((IntVector) u.convertShape(VectorOperators.S2I, INTS, part)).and(0xffff);
                ((jdk.incubator.vector.FloatVector) wide.convert(VectorOperators.I2F, 0)).sub(32767.5f).mul(c)
                        .intoByteArray(buf, at + part * half, ByteOrder.LITTLE_ENDIAN);
            }
        }
    }

    /** mix64(key + index * golden) per lane, as {@link SyntheticSequence#mix} computes it. */
    private static LongVector hash(LongVector index, long key) {
        LongVector z = index.mul(GOLDEN).add(key);
        z = z.lanewise(VectorOperators.XOR, z.lanewise(VectorOperators.LSHR, 30)).mul(0xBF58476D1CE4E5B9L);
        z = z.lanewise(VectorOperators.XOR, z.lanewise(VectorOperators.LSHR, 27)).mul(0x94D049BB133111EBL);
        return z.lanewise(VectorOperators.XOR, z.lanewise(VectorOperators.LSHR, 31));
    }

    /** BF16 bits of (u - 32767.5) * c, rounded to nearest even, in the low 16 bits. */
    private static IntVector round(IntVector u, float c) {
        IntVector bits = ((jdk.incubator.vector.FloatVector) u.convert(VectorOperators.I2F, 0)).sub(32767.5f).mul(c)
                .reinterpretAsInts();
        IntVector odd = bits.lanewise(VectorOperators.LSHR, 16).and(1);
        return bits.add(0x7fff).add(odd).lanewise(VectorOperators.LSHR, 16);
    }

    /** Whether this JVM can run it: null when jdk.incubator.vector does not link, or its vectors are short. */
    static boolean load() {
        try {
            return LONGS.length() >= 2 && INTS.length() == 2 * LONGS.length();
        } catch (LinkageError e) {
            return false;
        }
    }
}
