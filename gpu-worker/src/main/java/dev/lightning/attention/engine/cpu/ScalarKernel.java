package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.Decay;
import dev.lightning.attention.engine.FeatureMap;

/**
 * The kernel without the Vector API: C in tiles of 4 x 4 scalars held in locals, 16 multiply-adds
 * per 8 loads. (The JIT of Java 17 does not vectorize an axpy row update {@code c[co + j] +=
 * s b[bo + j]} whose two offsets differ: it cannot rule out that the arrays are one and overlap,
 * so row updates run one element at a time anyway, with a load and a store per multiply-add.)
 * The elementwise helpers are {@link Kernel}'s plain loops.
 */
final class ScalarKernel extends Kernel {
    @Override
    String name() {
        return "scalar";
    }

    @Override
    void product(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb,
                 float[] c, int co, int ldc, int rows, int cols, int depth, boolean add) {
        multiply(a, ao, ais, ads, b, bo, ldb, c, co, ldc, rows, cols, depth, add ? ACCUMULATE : SET, 0f);
    }

    @Override
    void productScaleAdd(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb,
                         float[] c, int co, int ldc, int rows, int cols, int depth, float code) {
        multiply(a, ao, ais, ads, b, bo, ldb, c, co, ldc, rows, cols, depth, SCALE_ADD, code);
    }

    /** {@link #product} or {@link #productScaleAdd}, by mode. */
    private static void multiply(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb,
                                 float[] c, int co, int ldc, int rows, int cols, int depth, int mode, float code) {
        int rows4 = rows & ~3;
        int cols4 = cols & ~3;
        for (int i = 0; i < rows4; i += 4) {
            for (int j = 0; j < cols4; j += 4) {
                tile4x4(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
            }
        }
        // the edges: rows past the last 4, and columns past the last 4 of every row
        for (int i = 0; i < rows; i++) {
            int from = i < rows4 ? cols4 : 0;
            int aRow = ao + i * ais;
            for (int j = from; j < cols; j++) {
                float sum = mode == ACCUMULATE ? c[co + i * ldc + j] : 0f;
                for (int d = 0; d < depth; d++) {
                    sum += a[aRow + d * ads] * b[bo + d * ldb + j];
                }
                int at = co + i * ldc + j;
                c[at] = mode == SCALE_ADD ? Decay.carry(c[at], sum, code) : sum;
            }
        }
    }

    private static void tile4x4(float[] a, int a0, int ais, int ads, float[] b, int b0, int ldb,
                                float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        float s00 = 0f, s01 = 0f, s02 = 0f, s03 = 0f;
        float s10 = 0f, s11 = 0f, s12 = 0f, s13 = 0f;
        float s20 = 0f, s21 = 0f, s22 = 0f, s23 = 0f;
        float s30 = 0f, s31 = 0f, s32 = 0f, s33 = 0f;
        if (mode == ACCUMULATE) {
            s00 = c[c0]; s01 = c[c0 + 1]; s02 = c[c0 + 2]; s03 = c[c0 + 3];
            s10 = c[c1]; s11 = c[c1 + 1]; s12 = c[c1 + 2]; s13 = c[c1 + 3];
            s20 = c[c2]; s21 = c[c2 + 1]; s22 = c[c2 + 2]; s23 = c[c2 + 3];
            s30 = c[c3]; s31 = c[c3 + 1]; s32 = c[c3 + 2]; s33 = c[c3 + 3];
        }
        for (int d = 0, at = a0, bRow = b0; d < depth; d++, at += ads, bRow += ldb) {
            float b0v = b[bRow];
            float b1v = b[bRow + 1];
            float b2v = b[bRow + 2];
            float b3v = b[bRow + 3];
            float x = a[at];
            s00 += x * b0v; s01 += x * b1v; s02 += x * b2v; s03 += x * b3v;
            x = a[at + ais];
            s10 += x * b0v; s11 += x * b1v; s12 += x * b2v; s13 += x * b3v;
            x = a[at + 2 * ais];
            s20 += x * b0v; s21 += x * b1v; s22 += x * b2v; s23 += x * b3v;
            x = a[at + 3 * ais];
            s30 += x * b0v; s31 += x * b1v; s32 += x * b2v; s33 += x * b3v;
        }
        if (mode == SCALE_ADD) {
            s00 = Decay.carry(c[c0], s00, code);
            s01 = Decay.carry(c[c0 + 1], s01, code);
            s02 = Decay.carry(c[c0 + 2], s02, code);
            s03 = Decay.carry(c[c0 + 3], s03, code);
            s10 = Decay.carry(c[c1], s10, code);
            s11 = Decay.carry(c[c1 + 1], s11, code);
            s12 = Decay.carry(c[c1 + 2], s12, code);
            s13 = Decay.carry(c[c1 + 3], s13, code);
            s20 = Decay.carry(c[c2], s20, code);
            s21 = Decay.carry(c[c2 + 1], s21, code);
            s22 = Decay.carry(c[c2 + 2], s22, code);
            s23 = Decay.carry(c[c2 + 3], s23, code);
            s30 = Decay.carry(c[c3], s30, code);
            s31 = Decay.carry(c[c3 + 1], s31, code);
            s32 = Decay.carry(c[c3 + 2], s32, code);
            s33 = Decay.carry(c[c3 + 3], s33, code);
        }
        c[c0] = s00; c[c0 + 1] = s01; c[c0 + 2] = s02; c[c0 + 3] = s03;
        c[c1] = s10; c[c1 + 1] = s11; c[c1 + 2] = s12; c[c1 + 3] = s13;
        c[c2] = s20; c[c2 + 1] = s21; c[c2 + 2] = s22; c[c2 + 3] = s23;
        c[c3] = s30; c[c3 + 1] = s31; c[c3 + 2] = s32; c[c3 + 3] = s33;
    }

    @Override
    void elu1(float[] x, int off, int n) {
        for (int i = off, end = off + n; i < end; i++) {
            x[i] = FeatureMap.ELU1.apply(x[i]);
        }
    }
}
