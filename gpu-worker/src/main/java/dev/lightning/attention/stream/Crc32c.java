package dev.lightning.attention.stream;

/**
 * CRC32C (Castagnoli, as {@link java.util.zip.CRC32C} computes it) of a concatenation from the
 * CRCs of its parts, so that per-piece checksums computed on different executors combine into the
 * checksum of a whole sequence's bytes without those bytes meeting in one place.
 *
 * <p>The math: without its pre- and post-inversion a CRC is linear over GF(2), and appending n zero
 * bytes to a message multiplies its register by x^(8n) modulo the polynomial P. With both
 * inversions (init and final xor all ones, as CRC32C has), the inversions cancel in
 * crc(A || B) = crc(A) * x^(8 |B|) mod P xor crc(B). Polynomials are held bit-reflected, as the
 * CRC itself holds them: bit 31 is x^0, bit 0 is x^31; x^(8n) is built from x^(2^k) by squaring,
 * so combining costs O(log n) products of 32 steps each.
 */
public final class Crc32c {
    /** P = x^32 + x^28 + x^27 + ... (0x1EDC6F41), bit-reflected, without the x^32 term. */
    private static final int POLY = 0x82F63B78;
    /** X2N[k] = x^(2^k) mod P, for every k a byte count can need (no reliance on the order of x). */
    private static final int[] X2N = new int[3 + 64];

    static {
        int p = 1 << 30; // x^1
        X2N[0] = p;
        for (int k = 1; k < X2N.length; k++) {
            X2N[k] = p = multiply(p, p);
        }
    }

    private Crc32c() {
    }

    /** a * b mod P, both bit-reflected. */
    static int multiply(int a, int b) {
        int product = 0;
        for (int m = 1 << 31; m != 0; m >>>= 1) {
            if ((a & m) != 0) {
                product ^= b;
            }
            b = (b & 1) != 0 ? (b >>> 1) ^ POLY : b >>> 1; // b * x
        }
        return product;
    }

    /** x^(8 bytes) mod P. */
    static int xPow8n(long bytes) {
        int p = 1 << 31; // x^0
        int k = 3; // x^(8n) = x^(n * 2^3)
        for (long n = bytes; n != 0; n >>>= 1, k++) {
            if ((n & 1) != 0) {
                p = multiply(X2N[k], p); // k < 3 + 64
            }
        }
        return p;
    }

    /** The CRC32C of A || B from crc(A), crc(B) and |B| in bytes (crc of nothing is 0). */
    public static int combine(int crcA, int crcB, long bytesB) {
        return multiply(xPow8n(bytesB), crcA) ^ crcB;
    }
}
