package dev.lightning.attention.engine.cpu;

import dev.lightning.attention.engine.Decay;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.tensor.DType;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The kernel on jdk.incubator.vector: C is computed in tiles of 4 rows by 4 vectors (L = the
 * preferred species' lanes, 16 with AVX-512) held in 16 accumulator registers; per step d of the
 * depth a tile loads 4 vectors of B's row d, broadcasts 4 elements of A's column d and does 16
 * FMAs, so it is bound by the FMA units, not by loads. Where the species has fewer than 16 lanes
 * (AVX2: 16 registers in all) the wide tile is 4 rows by 2 vectors. Narrower tails of C take
 * 4 x 3, 4 x 2, 8 x 1 (then 4 x 1) and 1 x 1 vector tiles, and columns past the last whole
 * vector a scalar loop.
 *
 * <p>Where B's rows are 64 or 128 floats apart (the backend's scratch matrices at head widths 64
 * and 128) and A is in rows or given transposed at B's stride, the whole 4 x 4 tiles run in
 * copies of the tile whose strides are constants ({@link #tile4x4rows}, {@link #tile4x4cols}):
 * C2 then checks their bounds once per tile instead of six times per step.
 *
 * <p>Column tiles are the outer loop, row blocks the inner one, so the panel of B a column tile
 * reads ({@code depth x 4L} floats: 32 KiB for depth 128) stays in L1 across the row blocks.
 * Loaded only through {@link Kernel#vectorOrNull}: a JVM without the module fails to link this
 * class, and the backend takes {@link ScalarKernel}.
 *
 * <p>The carry. The state update's store is Decay.carry, lambda^m c + sum, by the decay code's two
 * forms: c + (sum - code c) with code = 1 - lambda^m, and (-code) c + sum with code = -lambda^m where
 * lambda^m is below 1/2. The tiles write
 * both as one, x keep + (sum - x less) with keep = 1, less = code or keep = -code, less = 0 (the same
 * roundings: x 1 and sum - x 0 are exact for finite x), from broadcasts made once a tile and the
 * Vector API's own calls only. A helper of ours holding the two forms (babf5e3e) was not inlined
 * into these large tiles (C2: NodeCountInliningCutoff), so its vectors were boxed, and the rows
 * tiles, which blend the store in every mode, ran pass 2's plain products at half speed too: the
 * kernels fell from about 80 to 30 to 45 GFLOP per CPU-second (BENCHMARKS.md, "A regression"). The
 * vector c is loaded once a store (cv): with two loads a site, pass 1's tiles left C2's node budget
 * and ran at 1.4.
 */
final class VectorKernel extends Kernel {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length();
    /** Ints and shorts of as many lanes as S, for bfloat16 widening. */
    private static final VectorSpecies<Integer> INTS = VectorSpecies.of(int.class, S.vectorShape());
    private static final VectorSpecies<Short> HALVES = VectorSpecies.of(short.class, VectorShape.forBitSize(L * 16));
    /** Vectors per row of the wide tile: 4 where there are 32 registers (AVX-512), else 2. */
    private static final int WIDE = L >= 16 ? 4 : 2;
    /** One column tile of the wide tile (4 vectors): B's row stride for the constant-stride tiles is 1 or 2 of it. */
    private static final int PANEL = 4 * L;

    int lanes() {
        return L;
    }

    @Override
    String name() {
        return "vector (" + S.vectorBitSize() + "-bit, " + L + " float lanes)";
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


    /**
     * The tiles over C: whole 4 x WIDE tiles first (by the constant-stride tiles where B's rows are
     * one or two panels apart and A's layout fits them); then the 1 to 3 vectors of columns left, as one
     * tile of 4 rows by that many vectors (12 accumulators at 3), or at 1 vector 8 rows at a time (8
     * accumulators: 4 would leave the FMA units waiting on their own latency, 4 cycles for each
     * chain); the rows past the last 4 a vector at a time; the columns past the last vector a scalar
     * at a time.
     */
    private static void multiply(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb,
                                 float[] c, int co, int ldc, int rows, int cols, int depth, int mode, float code) {
        int rows4 = rows & ~3;
        int j = 0;
        boolean wide = ldb == 2 * PANEL;
        if (WIDE == 4 && (ldb == PANEL || wide)) {
            // B's rows one or two panels apart: the whole column tiles by the constant-stride tiles
            boolean rowsOfA = ads == 1;
            if (rowsOfA || ais == 1 && ads == ldb) {
                for (; j + PANEL <= cols; j += PANEL) {
                    for (int i = 0; i < rows4; i += 4) {
                        int at = co + i * ldc + j;
                        if (rowsOfA && wide) {
                            tile4x4rows2(a, ao + i * ais, ais, b, bo + j, c, at, ldc, depth, mode, code);
                        } else if (rowsOfA) {
                            tile4x4rows(a, ao + i * ais, ais, b, bo + j, c, at, ldc, depth, mode, code);
                        } else if (wide) {
                            tile4x4cols2(a, ao + i, b, bo + j, c, at, ldc, depth, mode, code);
                        } else {
                            tile4x4cols(a, ao + i, b, bo + j, c, at, ldc, depth, mode, code);
                        }
                    }
                }
            }
        }
        for (; j + WIDE * L <= cols; j += WIDE * L) {
            for (int i = 0; i < rows4; i += 4) {
                if (WIDE == 4) {
                    tile4x4(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
                } else {
                    tile4x2(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
                }
            }
        }
        int left = (cols - j) / L;
        if (WIDE == 4 && ldb == PANEL && ads == 1) {
            // the narrow tails at constant strides too (the scores' bands of 16, 32 and 48 columns)
            if (left == 3) {
                for (int i = 0; i < rows4; i += 4) {
                    tile4x3rows(a, ao + i * ais, ais, b, bo + j, c, co + i * ldc + j, ldc, depth, mode, code);
                }
            } else if (left == 2) {
                for (int i = 0; i < rows4; i += 4) {
                    tile4x2rows(a, ao + i * ais, ais, b, bo + j, c, co + i * ldc + j, ldc, depth, mode, code);
                }
            } else if (left == 1) {
                int i = 0;
                for (; i + 8 <= rows4; i += 8) {
                    tile8x1rows(a, ao + i * ais, ais, b, bo + j, c, co + i * ldc + j, ldc, depth, mode, code);
                }
                for (; i < rows4; i += 4) {
                    tile4x1(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
                }
            }
        } else if (left == 3) {
            for (int i = 0; i < rows4; i += 4) {
                tile4x3(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
            }
        } else if (left == 2) {
            for (int i = 0; i < rows4; i += 4) {
                tile4x2(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
            }
        } else if (left == 1) {
            int i = 0;
            for (; i + 8 <= rows4; i += 8) {
                tile8x1(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
            }
            for (; i < rows4; i += 4) {
                tile4x1(a, ao + i * ais, ais, ads, b, bo + j, ldb, c, co + i * ldc + j, ldc, depth, mode, code);
            }
        }
        int vectorCols = j + left * L;
        for (int i = rows4; i < rows; i++) {
            for (int jv = 0; jv < vectorCols; jv += L) {
                tile1x1(a, ao + i * ais, ads, b, bo + jv, ldb, c, co + i * ldc + jv, depth, mode, code);
            }
        }
        if (vectorCols < cols) {
            scalarColumns(a, ao, ais, ads, b, bo, ldb, c, co, ldc, rows, vectorCols, cols, depth, mode, code);
        }
    }

    /** Columns [from, to) of C, every row, one element at a time (what no whole vector covers). */
    private static void scalarColumns(float[] a, int ao, int ais, int ads, float[] b, int bo, int ldb, float[] c, int co,
                                      int ldc, int rows, int from, int to, int depth, int mode, float code) {
        for (int i = 0; i < rows; i++) {
            int aRow = ao + i * ais;
            for (int j = from; j < to; j++) {
                int at = co + i * ldc + j;
                float sum = mode == ACCUMULATE ? c[at] : 0f;
                for (int d = 0; d < depth; d++) {
                    sum = Math.fma(a[aRow + d * ads], b[bo + d * ldb + j], sum);
                }
                c[at] = mode == SCALE_ADD ? Decay.carry(c[at], sum, code) : sum;
            }
        }
    }

    private static void tile4x4(float[] a, int a0, int ais, int ads, float[] b, int b0, int ldb,
                                float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s02;
        FloatVector s03;
        FloatVector s10;
        FloatVector s11;
        FloatVector s12;
        FloatVector s13;
        FloatVector s20;
        FloatVector s21;
        FloatVector s22;
        FloatVector s23;
        FloatVector s30;
        FloatVector s31;
        FloatVector s32;
        FloatVector s33;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s01 = FloatVector.fromArray(S, c, c0 + L);
            s02 = FloatVector.fromArray(S, c, c0 + 2 * L);
            s03 = FloatVector.fromArray(S, c, c0 + 3 * L);
            s10 = FloatVector.fromArray(S, c, c1);
            s11 = FloatVector.fromArray(S, c, c1 + L);
            s12 = FloatVector.fromArray(S, c, c1 + 2 * L);
            s13 = FloatVector.fromArray(S, c, c1 + 3 * L);
            s20 = FloatVector.fromArray(S, c, c2);
            s21 = FloatVector.fromArray(S, c, c2 + L);
            s22 = FloatVector.fromArray(S, c, c2 + 2 * L);
            s23 = FloatVector.fromArray(S, c, c2 + 3 * L);
            s30 = FloatVector.fromArray(S, c, c3);
            s31 = FloatVector.fromArray(S, c, c3 + L);
            s32 = FloatVector.fromArray(S, c, c3 + 2 * L);
            s33 = FloatVector.fromArray(S, c, c3 + 3 * L);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s01 = zero;
            s02 = zero;
            s03 = zero;
            s10 = zero;
            s11 = zero;
            s12 = zero;
            s13 = zero;
            s20 = zero;
            s21 = zero;
            s22 = zero;
            s23 = zero;
            s30 = zero;
            s31 = zero;
            s32 = zero;
            s33 = zero;
        }
        for (int d = 0, at = a0, bRow = b0; d < depth; d++, at += ads, bRow += ldb) {
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector b2v = FloatVector.fromArray(S, b, bRow + 2 * L);
            FloatVector b3v = FloatVector.fromArray(S, b, bRow + 3 * L);
            FloatVector x = FloatVector.broadcast(S, a[at]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            s02 = b2v.fma(x, s02);
            s03 = b3v.fma(x, s03);
            x = FloatVector.broadcast(S, a[at + ais]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            s12 = b2v.fma(x, s12);
            s13 = b3v.fma(x, s13);
            x = FloatVector.broadcast(S, a[at + 2 * ais]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            s22 = b2v.fma(x, s22);
            s23 = b3v.fma(x, s23);
            x = FloatVector.broadcast(S, a[at + 3 * ais]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
            s32 = b2v.fma(x, s32);
            s33 = b3v.fma(x, s33);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c0 + L);
            cv.mul(keep).add(s01.sub(cv.mul(less))).intoArray(c, c0 + L);
            cv = FloatVector.fromArray(S, c, c0 + 2 * L);
            cv.mul(keep).add(s02.sub(cv.mul(less))).intoArray(c, c0 + 2 * L);
            cv = FloatVector.fromArray(S, c, c0 + 3 * L);
            cv.mul(keep).add(s03.sub(cv.mul(less))).intoArray(c, c0 + 3 * L);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c1 + L);
            cv.mul(keep).add(s11.sub(cv.mul(less))).intoArray(c, c1 + L);
            cv = FloatVector.fromArray(S, c, c1 + 2 * L);
            cv.mul(keep).add(s12.sub(cv.mul(less))).intoArray(c, c1 + 2 * L);
            cv = FloatVector.fromArray(S, c, c1 + 3 * L);
            cv.mul(keep).add(s13.sub(cv.mul(less))).intoArray(c, c1 + 3 * L);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c2 + L);
            cv.mul(keep).add(s21.sub(cv.mul(less))).intoArray(c, c2 + L);
            cv = FloatVector.fromArray(S, c, c2 + 2 * L);
            cv.mul(keep).add(s22.sub(cv.mul(less))).intoArray(c, c2 + 2 * L);
            cv = FloatVector.fromArray(S, c, c2 + 3 * L);
            cv.mul(keep).add(s23.sub(cv.mul(less))).intoArray(c, c2 + 3 * L);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c3 + L);
            cv.mul(keep).add(s31.sub(cv.mul(less))).intoArray(c, c3 + L);
            cv = FloatVector.fromArray(S, c, c3 + 2 * L);
            cv.mul(keep).add(s32.sub(cv.mul(less))).intoArray(c, c3 + 2 * L);
            cv = FloatVector.fromArray(S, c, c3 + 3 * L);
            cv.mul(keep).add(s33.sub(cv.mul(less))).intoArray(c, c3 + 3 * L);
        } else {
            s00.intoArray(c, c0);
            s01.intoArray(c, c0 + L);
            s02.intoArray(c, c0 + 2 * L);
            s03.intoArray(c, c0 + 3 * L);
            s10.intoArray(c, c1);
            s11.intoArray(c, c1 + L);
            s12.intoArray(c, c1 + 2 * L);
            s13.intoArray(c, c1 + 3 * L);
            s20.intoArray(c, c2);
            s21.intoArray(c, c2 + L);
            s22.intoArray(c, c2 + 2 * L);
            s23.intoArray(c, c2 + 3 * L);
            s30.intoArray(c, c3);
            s31.intoArray(c, c3 + L);
            s32.intoArray(c, c3 + 2 * L);
            s33.intoArray(c, c3 + 3 * L);
        }
    }

    /**
     * All lanes set when {@code mode} is {@code which}, none otherwise, from a vector compare: no
     * branch for the JIT to profile. The tiles of pass 2's products at Dv = 64 and 128
     * ({@link #tile4x4rows}, {@link #tile4x4rows2}) take their mode this way. Pass 1's state update
     * now runs {@link #tile4x4cols} and {@link #tile4x4cols2} (K's rows as A transposed), which
     * only pass 1 calls, always scale-adding, so they keep their branches; the general tiles
     * branch too (not measured). The masks date from when pass 1 ran tile4x4rows: with branches,
     * C2 compiled them in pass 1, which only scale-adds, with pass 2's set and
     * accumulate paths as uncommon traps; pass 2's first call then deoptimized {@code tile4x4rows},
     * and it ran in the Vector API's Java fallbacks again for 1.6 s of a 2-piece job
     * (LogCompilation; BENCHMARKS.md, "The JIT between the passes").
     * The cost: the tile loads C whatever the mode (16 loads, and for the store 16 loads and
     * multiply-adds, against 1,536 vector operations of a 64-deep tile), and the blends.
     */
    private static VectorMask<Float> modeMask(int mode, int which) {
        return IntVector.broadcast(INTS, mode).compare(VectorOperators.EQ, which).cast(S);
    }

    /**
     * {@link #tile4x4} for A in contiguous rows (ads = 1) and B's rows one panel apart (ldb = 4L;
     * {@link #tile4x4rows2} two panels): every index in the loop is the counter times a constant
     * plus an invariant, so C2 checks the bounds once before the loop. The general tile carries
     * its strides in variables, which C2's range-check elimination cannot use, so it checks six
     * indices per step. (One method per stride: a method holding both loops had C2 box the 16
     * accumulators where the loops join, about 1 GFLOP/s.)
     */
    private static void tile4x4rows(float[] a, int a0, int ais, float[] b, int b0,
                                    float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s02;
        FloatVector s03;
        FloatVector s10;
        FloatVector s11;
        FloatVector s12;
        FloatVector s13;
        FloatVector s20;
        FloatVector s21;
        FloatVector s22;
        FloatVector s23;
        FloatVector s30;
        FloatVector s31;
        FloatVector s32;
        FloatVector s33;
        // the mode as lane masks, not branches (see modeMask)
        VectorMask<Float> accumulate = modeMask(mode, ACCUMULATE);
        VectorMask<Float> scaleAdd = modeMask(mode, SCALE_ADD);
        FloatVector zero = FloatVector.zero(S);
        s00 = zero.blend(FloatVector.fromArray(S, c, c0), accumulate);
        s01 = zero.blend(FloatVector.fromArray(S, c, c0 + L), accumulate);
        s02 = zero.blend(FloatVector.fromArray(S, c, c0 + 2 * L), accumulate);
        s03 = zero.blend(FloatVector.fromArray(S, c, c0 + 3 * L), accumulate);
        s10 = zero.blend(FloatVector.fromArray(S, c, c1), accumulate);
        s11 = zero.blend(FloatVector.fromArray(S, c, c1 + L), accumulate);
        s12 = zero.blend(FloatVector.fromArray(S, c, c1 + 2 * L), accumulate);
        s13 = zero.blend(FloatVector.fromArray(S, c, c1 + 3 * L), accumulate);
        s20 = zero.blend(FloatVector.fromArray(S, c, c2), accumulate);
        s21 = zero.blend(FloatVector.fromArray(S, c, c2 + L), accumulate);
        s22 = zero.blend(FloatVector.fromArray(S, c, c2 + 2 * L), accumulate);
        s23 = zero.blend(FloatVector.fromArray(S, c, c2 + 3 * L), accumulate);
        s30 = zero.blend(FloatVector.fromArray(S, c, c3), accumulate);
        s31 = zero.blend(FloatVector.fromArray(S, c, c3 + L), accumulate);
        s32 = zero.blend(FloatVector.fromArray(S, c, c3 + 2 * L), accumulate);
        s33 = zero.blend(FloatVector.fromArray(S, c, c3 + 3 * L), accumulate);
        int a1 = a0 + ais;
        int a2 = a1 + ais;
        int a3 = a2 + ais;
        for (int d = 0; d < depth; d++) {
            int bRow = b0 + d * PANEL;
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector b2v = FloatVector.fromArray(S, b, bRow + 2 * L);
            FloatVector b3v = FloatVector.fromArray(S, b, bRow + 3 * L);
            FloatVector x = FloatVector.broadcast(S, a[a0 + d]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            s02 = b2v.fma(x, s02);
            s03 = b3v.fma(x, s03);
            x = FloatVector.broadcast(S, a[a1 + d]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            s12 = b2v.fma(x, s12);
            s13 = b3v.fma(x, s13);
            x = FloatVector.broadcast(S, a[a2 + d]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            s22 = b2v.fma(x, s22);
            s23 = b3v.fma(x, s23);
            x = FloatVector.broadcast(S, a[a3 + d]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
            s32 = b2v.fma(x, s32);
            s33 = b3v.fma(x, s33);
        }
        // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
        FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
        FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
        FloatVector cv;
        cv = FloatVector.fromArray(S, c, c0);
        s00.blend(cv.mul(keep).add(s00.sub(cv.mul(less))), scaleAdd).intoArray(c, c0);
        cv = FloatVector.fromArray(S, c, c0 + L);
        s01.blend(cv.mul(keep).add(s01.sub(cv.mul(less))), scaleAdd).intoArray(c, c0 + L);
        cv = FloatVector.fromArray(S, c, c0 + 2 * L);
        s02.blend(cv.mul(keep).add(s02.sub(cv.mul(less))), scaleAdd).intoArray(c, c0 + 2 * L);
        cv = FloatVector.fromArray(S, c, c0 + 3 * L);
        s03.blend(cv.mul(keep).add(s03.sub(cv.mul(less))), scaleAdd).intoArray(c, c0 + 3 * L);
        cv = FloatVector.fromArray(S, c, c1);
        s10.blend(cv.mul(keep).add(s10.sub(cv.mul(less))), scaleAdd).intoArray(c, c1);
        cv = FloatVector.fromArray(S, c, c1 + L);
        s11.blend(cv.mul(keep).add(s11.sub(cv.mul(less))), scaleAdd).intoArray(c, c1 + L);
        cv = FloatVector.fromArray(S, c, c1 + 2 * L);
        s12.blend(cv.mul(keep).add(s12.sub(cv.mul(less))), scaleAdd).intoArray(c, c1 + 2 * L);
        cv = FloatVector.fromArray(S, c, c1 + 3 * L);
        s13.blend(cv.mul(keep).add(s13.sub(cv.mul(less))), scaleAdd).intoArray(c, c1 + 3 * L);
        cv = FloatVector.fromArray(S, c, c2);
        s20.blend(cv.mul(keep).add(s20.sub(cv.mul(less))), scaleAdd).intoArray(c, c2);
        cv = FloatVector.fromArray(S, c, c2 + L);
        s21.blend(cv.mul(keep).add(s21.sub(cv.mul(less))), scaleAdd).intoArray(c, c2 + L);
        cv = FloatVector.fromArray(S, c, c2 + 2 * L);
        s22.blend(cv.mul(keep).add(s22.sub(cv.mul(less))), scaleAdd).intoArray(c, c2 + 2 * L);
        cv = FloatVector.fromArray(S, c, c2 + 3 * L);
        s23.blend(cv.mul(keep).add(s23.sub(cv.mul(less))), scaleAdd).intoArray(c, c2 + 3 * L);
        cv = FloatVector.fromArray(S, c, c3);
        s30.blend(cv.mul(keep).add(s30.sub(cv.mul(less))), scaleAdd).intoArray(c, c3);
        cv = FloatVector.fromArray(S, c, c3 + L);
        s31.blend(cv.mul(keep).add(s31.sub(cv.mul(less))), scaleAdd).intoArray(c, c3 + L);
        cv = FloatVector.fromArray(S, c, c3 + 2 * L);
        s32.blend(cv.mul(keep).add(s32.sub(cv.mul(less))), scaleAdd).intoArray(c, c3 + 2 * L);
        cv = FloatVector.fromArray(S, c, c3 + 3 * L);
        s33.blend(cv.mul(keep).add(s33.sub(cv.mul(less))), scaleAdd).intoArray(c, c3 + 3 * L);
    }


    /** {@link #tile4x4rows} for B's rows two panels apart (ldb = 8L). */
    private static void tile4x4rows2(float[] a, int a0, int ais, float[] b, int b0,
                                     float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s02;
        FloatVector s03;
        FloatVector s10;
        FloatVector s11;
        FloatVector s12;
        FloatVector s13;
        FloatVector s20;
        FloatVector s21;
        FloatVector s22;
        FloatVector s23;
        FloatVector s30;
        FloatVector s31;
        FloatVector s32;
        FloatVector s33;
        // the mode as lane masks, not branches (see modeMask)
        VectorMask<Float> accumulate = modeMask(mode, ACCUMULATE);
        VectorMask<Float> scaleAdd = modeMask(mode, SCALE_ADD);
        FloatVector zero = FloatVector.zero(S);
        s00 = zero.blend(FloatVector.fromArray(S, c, c0), accumulate);
        s01 = zero.blend(FloatVector.fromArray(S, c, c0 + L), accumulate);
        s02 = zero.blend(FloatVector.fromArray(S, c, c0 + 2 * L), accumulate);
        s03 = zero.blend(FloatVector.fromArray(S, c, c0 + 3 * L), accumulate);
        s10 = zero.blend(FloatVector.fromArray(S, c, c1), accumulate);
        s11 = zero.blend(FloatVector.fromArray(S, c, c1 + L), accumulate);
        s12 = zero.blend(FloatVector.fromArray(S, c, c1 + 2 * L), accumulate);
        s13 = zero.blend(FloatVector.fromArray(S, c, c1 + 3 * L), accumulate);
        s20 = zero.blend(FloatVector.fromArray(S, c, c2), accumulate);
        s21 = zero.blend(FloatVector.fromArray(S, c, c2 + L), accumulate);
        s22 = zero.blend(FloatVector.fromArray(S, c, c2 + 2 * L), accumulate);
        s23 = zero.blend(FloatVector.fromArray(S, c, c2 + 3 * L), accumulate);
        s30 = zero.blend(FloatVector.fromArray(S, c, c3), accumulate);
        s31 = zero.blend(FloatVector.fromArray(S, c, c3 + L), accumulate);
        s32 = zero.blend(FloatVector.fromArray(S, c, c3 + 2 * L), accumulate);
        s33 = zero.blend(FloatVector.fromArray(S, c, c3 + 3 * L), accumulate);
        int a1 = a0 + ais;
        int a2 = a1 + ais;
        int a3 = a2 + ais;
        for (int d = 0; d < depth; d++) {
            int bRow = b0 + d * (2 * PANEL);
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector b2v = FloatVector.fromArray(S, b, bRow + 2 * L);
            FloatVector b3v = FloatVector.fromArray(S, b, bRow + 3 * L);
            FloatVector x = FloatVector.broadcast(S, a[a0 + d]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            s02 = b2v.fma(x, s02);
            s03 = b3v.fma(x, s03);
            x = FloatVector.broadcast(S, a[a1 + d]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            s12 = b2v.fma(x, s12);
            s13 = b3v.fma(x, s13);
            x = FloatVector.broadcast(S, a[a2 + d]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            s22 = b2v.fma(x, s22);
            s23 = b3v.fma(x, s23);
            x = FloatVector.broadcast(S, a[a3 + d]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
            s32 = b2v.fma(x, s32);
            s33 = b3v.fma(x, s33);
        }
        // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
        FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
        FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
        FloatVector cv;
        cv = FloatVector.fromArray(S, c, c0);
        s00.blend(cv.mul(keep).add(s00.sub(cv.mul(less))), scaleAdd).intoArray(c, c0);
        cv = FloatVector.fromArray(S, c, c0 + L);
        s01.blend(cv.mul(keep).add(s01.sub(cv.mul(less))), scaleAdd).intoArray(c, c0 + L);
        cv = FloatVector.fromArray(S, c, c0 + 2 * L);
        s02.blend(cv.mul(keep).add(s02.sub(cv.mul(less))), scaleAdd).intoArray(c, c0 + 2 * L);
        cv = FloatVector.fromArray(S, c, c0 + 3 * L);
        s03.blend(cv.mul(keep).add(s03.sub(cv.mul(less))), scaleAdd).intoArray(c, c0 + 3 * L);
        cv = FloatVector.fromArray(S, c, c1);
        s10.blend(cv.mul(keep).add(s10.sub(cv.mul(less))), scaleAdd).intoArray(c, c1);
        cv = FloatVector.fromArray(S, c, c1 + L);
        s11.blend(cv.mul(keep).add(s11.sub(cv.mul(less))), scaleAdd).intoArray(c, c1 + L);
        cv = FloatVector.fromArray(S, c, c1 + 2 * L);
        s12.blend(cv.mul(keep).add(s12.sub(cv.mul(less))), scaleAdd).intoArray(c, c1 + 2 * L);
        cv = FloatVector.fromArray(S, c, c1 + 3 * L);
        s13.blend(cv.mul(keep).add(s13.sub(cv.mul(less))), scaleAdd).intoArray(c, c1 + 3 * L);
        cv = FloatVector.fromArray(S, c, c2);
        s20.blend(cv.mul(keep).add(s20.sub(cv.mul(less))), scaleAdd).intoArray(c, c2);
        cv = FloatVector.fromArray(S, c, c2 + L);
        s21.blend(cv.mul(keep).add(s21.sub(cv.mul(less))), scaleAdd).intoArray(c, c2 + L);
        cv = FloatVector.fromArray(S, c, c2 + 2 * L);
        s22.blend(cv.mul(keep).add(s22.sub(cv.mul(less))), scaleAdd).intoArray(c, c2 + 2 * L);
        cv = FloatVector.fromArray(S, c, c2 + 3 * L);
        s23.blend(cv.mul(keep).add(s23.sub(cv.mul(less))), scaleAdd).intoArray(c, c2 + 3 * L);
        cv = FloatVector.fromArray(S, c, c3);
        s30.blend(cv.mul(keep).add(s30.sub(cv.mul(less))), scaleAdd).intoArray(c, c3);
        cv = FloatVector.fromArray(S, c, c3 + L);
        s31.blend(cv.mul(keep).add(s31.sub(cv.mul(less))), scaleAdd).intoArray(c, c3 + L);
        cv = FloatVector.fromArray(S, c, c3 + 2 * L);
        s32.blend(cv.mul(keep).add(s32.sub(cv.mul(less))), scaleAdd).intoArray(c, c3 + 2 * L);
        cv = FloatVector.fromArray(S, c, c3 + 3 * L);
        s33.blend(cv.mul(keep).add(s33.sub(cv.mul(less))), scaleAdd).intoArray(c, c3 + 3 * L);
    }


    /**
     * {@link #tile4x4} for A given transposed (ais = 1: the 4 rows of a step are 4 consecutive
     * floats) with its steps as far apart as B's rows, one panel ({@link #tile4x4cols2}: two):
     * constant strides, bounds checked once before the loop ({@link #tile4x4rows}).
     */
    private static void tile4x4cols(float[] a, int a0, float[] b, int b0,
                                    float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s02;
        FloatVector s03;
        FloatVector s10;
        FloatVector s11;
        FloatVector s12;
        FloatVector s13;
        FloatVector s20;
        FloatVector s21;
        FloatVector s22;
        FloatVector s23;
        FloatVector s30;
        FloatVector s31;
        FloatVector s32;
        FloatVector s33;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s01 = FloatVector.fromArray(S, c, c0 + L);
            s02 = FloatVector.fromArray(S, c, c0 + 2 * L);
            s03 = FloatVector.fromArray(S, c, c0 + 3 * L);
            s10 = FloatVector.fromArray(S, c, c1);
            s11 = FloatVector.fromArray(S, c, c1 + L);
            s12 = FloatVector.fromArray(S, c, c1 + 2 * L);
            s13 = FloatVector.fromArray(S, c, c1 + 3 * L);
            s20 = FloatVector.fromArray(S, c, c2);
            s21 = FloatVector.fromArray(S, c, c2 + L);
            s22 = FloatVector.fromArray(S, c, c2 + 2 * L);
            s23 = FloatVector.fromArray(S, c, c2 + 3 * L);
            s30 = FloatVector.fromArray(S, c, c3);
            s31 = FloatVector.fromArray(S, c, c3 + L);
            s32 = FloatVector.fromArray(S, c, c3 + 2 * L);
            s33 = FloatVector.fromArray(S, c, c3 + 3 * L);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s01 = zero;
            s02 = zero;
            s03 = zero;
            s10 = zero;
            s11 = zero;
            s12 = zero;
            s13 = zero;
            s20 = zero;
            s21 = zero;
            s22 = zero;
            s23 = zero;
            s30 = zero;
            s31 = zero;
            s32 = zero;
            s33 = zero;
        }
        for (int d = 0; d < depth; d++) {
            int bRow = b0 + d * PANEL;
            int at = a0 + d * PANEL;
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector b2v = FloatVector.fromArray(S, b, bRow + 2 * L);
            FloatVector b3v = FloatVector.fromArray(S, b, bRow + 3 * L);
            FloatVector x = FloatVector.broadcast(S, a[at]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            s02 = b2v.fma(x, s02);
            s03 = b3v.fma(x, s03);
            x = FloatVector.broadcast(S, a[at + 1]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            s12 = b2v.fma(x, s12);
            s13 = b3v.fma(x, s13);
            x = FloatVector.broadcast(S, a[at + 2]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            s22 = b2v.fma(x, s22);
            s23 = b3v.fma(x, s23);
            x = FloatVector.broadcast(S, a[at + 3]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
            s32 = b2v.fma(x, s32);
            s33 = b3v.fma(x, s33);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c0 + L);
            cv.mul(keep).add(s01.sub(cv.mul(less))).intoArray(c, c0 + L);
            cv = FloatVector.fromArray(S, c, c0 + 2 * L);
            cv.mul(keep).add(s02.sub(cv.mul(less))).intoArray(c, c0 + 2 * L);
            cv = FloatVector.fromArray(S, c, c0 + 3 * L);
            cv.mul(keep).add(s03.sub(cv.mul(less))).intoArray(c, c0 + 3 * L);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c1 + L);
            cv.mul(keep).add(s11.sub(cv.mul(less))).intoArray(c, c1 + L);
            cv = FloatVector.fromArray(S, c, c1 + 2 * L);
            cv.mul(keep).add(s12.sub(cv.mul(less))).intoArray(c, c1 + 2 * L);
            cv = FloatVector.fromArray(S, c, c1 + 3 * L);
            cv.mul(keep).add(s13.sub(cv.mul(less))).intoArray(c, c1 + 3 * L);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c2 + L);
            cv.mul(keep).add(s21.sub(cv.mul(less))).intoArray(c, c2 + L);
            cv = FloatVector.fromArray(S, c, c2 + 2 * L);
            cv.mul(keep).add(s22.sub(cv.mul(less))).intoArray(c, c2 + 2 * L);
            cv = FloatVector.fromArray(S, c, c2 + 3 * L);
            cv.mul(keep).add(s23.sub(cv.mul(less))).intoArray(c, c2 + 3 * L);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c3 + L);
            cv.mul(keep).add(s31.sub(cv.mul(less))).intoArray(c, c3 + L);
            cv = FloatVector.fromArray(S, c, c3 + 2 * L);
            cv.mul(keep).add(s32.sub(cv.mul(less))).intoArray(c, c3 + 2 * L);
            cv = FloatVector.fromArray(S, c, c3 + 3 * L);
            cv.mul(keep).add(s33.sub(cv.mul(less))).intoArray(c, c3 + 3 * L);
        } else {
            s00.intoArray(c, c0);
            s01.intoArray(c, c0 + L);
            s02.intoArray(c, c0 + 2 * L);
            s03.intoArray(c, c0 + 3 * L);
            s10.intoArray(c, c1);
            s11.intoArray(c, c1 + L);
            s12.intoArray(c, c1 + 2 * L);
            s13.intoArray(c, c1 + 3 * L);
            s20.intoArray(c, c2);
            s21.intoArray(c, c2 + L);
            s22.intoArray(c, c2 + 2 * L);
            s23.intoArray(c, c2 + 3 * L);
            s30.intoArray(c, c3);
            s31.intoArray(c, c3 + L);
            s32.intoArray(c, c3 + 2 * L);
            s33.intoArray(c, c3 + 3 * L);
        }
    }

    /** {@link #tile4x4cols} for steps two panels apart (ads = ldb = 8L). */
    private static void tile4x4cols2(float[] a, int a0, float[] b, int b0,
                                     float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s02;
        FloatVector s03;
        FloatVector s10;
        FloatVector s11;
        FloatVector s12;
        FloatVector s13;
        FloatVector s20;
        FloatVector s21;
        FloatVector s22;
        FloatVector s23;
        FloatVector s30;
        FloatVector s31;
        FloatVector s32;
        FloatVector s33;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s01 = FloatVector.fromArray(S, c, c0 + L);
            s02 = FloatVector.fromArray(S, c, c0 + 2 * L);
            s03 = FloatVector.fromArray(S, c, c0 + 3 * L);
            s10 = FloatVector.fromArray(S, c, c1);
            s11 = FloatVector.fromArray(S, c, c1 + L);
            s12 = FloatVector.fromArray(S, c, c1 + 2 * L);
            s13 = FloatVector.fromArray(S, c, c1 + 3 * L);
            s20 = FloatVector.fromArray(S, c, c2);
            s21 = FloatVector.fromArray(S, c, c2 + L);
            s22 = FloatVector.fromArray(S, c, c2 + 2 * L);
            s23 = FloatVector.fromArray(S, c, c2 + 3 * L);
            s30 = FloatVector.fromArray(S, c, c3);
            s31 = FloatVector.fromArray(S, c, c3 + L);
            s32 = FloatVector.fromArray(S, c, c3 + 2 * L);
            s33 = FloatVector.fromArray(S, c, c3 + 3 * L);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s01 = zero;
            s02 = zero;
            s03 = zero;
            s10 = zero;
            s11 = zero;
            s12 = zero;
            s13 = zero;
            s20 = zero;
            s21 = zero;
            s22 = zero;
            s23 = zero;
            s30 = zero;
            s31 = zero;
            s32 = zero;
            s33 = zero;
        }
        for (int d = 0; d < depth; d++) {
            int bRow = b0 + d * (2 * PANEL);
            int at = a0 + d * (2 * PANEL);
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector b2v = FloatVector.fromArray(S, b, bRow + 2 * L);
            FloatVector b3v = FloatVector.fromArray(S, b, bRow + 3 * L);
            FloatVector x = FloatVector.broadcast(S, a[at]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            s02 = b2v.fma(x, s02);
            s03 = b3v.fma(x, s03);
            x = FloatVector.broadcast(S, a[at + 1]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            s12 = b2v.fma(x, s12);
            s13 = b3v.fma(x, s13);
            x = FloatVector.broadcast(S, a[at + 2]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            s22 = b2v.fma(x, s22);
            s23 = b3v.fma(x, s23);
            x = FloatVector.broadcast(S, a[at + 3]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
            s32 = b2v.fma(x, s32);
            s33 = b3v.fma(x, s33);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c0 + L);
            cv.mul(keep).add(s01.sub(cv.mul(less))).intoArray(c, c0 + L);
            cv = FloatVector.fromArray(S, c, c0 + 2 * L);
            cv.mul(keep).add(s02.sub(cv.mul(less))).intoArray(c, c0 + 2 * L);
            cv = FloatVector.fromArray(S, c, c0 + 3 * L);
            cv.mul(keep).add(s03.sub(cv.mul(less))).intoArray(c, c0 + 3 * L);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c1 + L);
            cv.mul(keep).add(s11.sub(cv.mul(less))).intoArray(c, c1 + L);
            cv = FloatVector.fromArray(S, c, c1 + 2 * L);
            cv.mul(keep).add(s12.sub(cv.mul(less))).intoArray(c, c1 + 2 * L);
            cv = FloatVector.fromArray(S, c, c1 + 3 * L);
            cv.mul(keep).add(s13.sub(cv.mul(less))).intoArray(c, c1 + 3 * L);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c2 + L);
            cv.mul(keep).add(s21.sub(cv.mul(less))).intoArray(c, c2 + L);
            cv = FloatVector.fromArray(S, c, c2 + 2 * L);
            cv.mul(keep).add(s22.sub(cv.mul(less))).intoArray(c, c2 + 2 * L);
            cv = FloatVector.fromArray(S, c, c2 + 3 * L);
            cv.mul(keep).add(s23.sub(cv.mul(less))).intoArray(c, c2 + 3 * L);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c3 + L);
            cv.mul(keep).add(s31.sub(cv.mul(less))).intoArray(c, c3 + L);
            cv = FloatVector.fromArray(S, c, c3 + 2 * L);
            cv.mul(keep).add(s32.sub(cv.mul(less))).intoArray(c, c3 + 2 * L);
            cv = FloatVector.fromArray(S, c, c3 + 3 * L);
            cv.mul(keep).add(s33.sub(cv.mul(less))).intoArray(c, c3 + 3 * L);
        } else {
            s00.intoArray(c, c0);
            s01.intoArray(c, c0 + L);
            s02.intoArray(c, c0 + 2 * L);
            s03.intoArray(c, c0 + 3 * L);
            s10.intoArray(c, c1);
            s11.intoArray(c, c1 + L);
            s12.intoArray(c, c1 + 2 * L);
            s13.intoArray(c, c1 + 3 * L);
            s20.intoArray(c, c2);
            s21.intoArray(c, c2 + L);
            s22.intoArray(c, c2 + 2 * L);
            s23.intoArray(c, c2 + 3 * L);
            s30.intoArray(c, c3);
            s31.intoArray(c, c3 + L);
            s32.intoArray(c, c3 + 2 * L);
            s33.intoArray(c, c3 + 3 * L);
        }
    }

    private static void tile4x3(float[] a, int a0, int ais, int ads, float[] b, int b0, int ldb,
                                float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s02;
        FloatVector s10;
        FloatVector s11;
        FloatVector s12;
        FloatVector s20;
        FloatVector s21;
        FloatVector s22;
        FloatVector s30;
        FloatVector s31;
        FloatVector s32;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s01 = FloatVector.fromArray(S, c, c0 + L);
            s02 = FloatVector.fromArray(S, c, c0 + 2 * L);
            s10 = FloatVector.fromArray(S, c, c1);
            s11 = FloatVector.fromArray(S, c, c1 + L);
            s12 = FloatVector.fromArray(S, c, c1 + 2 * L);
            s20 = FloatVector.fromArray(S, c, c2);
            s21 = FloatVector.fromArray(S, c, c2 + L);
            s22 = FloatVector.fromArray(S, c, c2 + 2 * L);
            s30 = FloatVector.fromArray(S, c, c3);
            s31 = FloatVector.fromArray(S, c, c3 + L);
            s32 = FloatVector.fromArray(S, c, c3 + 2 * L);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s01 = zero;
            s02 = zero;
            s10 = zero;
            s11 = zero;
            s12 = zero;
            s20 = zero;
            s21 = zero;
            s22 = zero;
            s30 = zero;
            s31 = zero;
            s32 = zero;
        }
        for (int d = 0, at = a0, bRow = b0; d < depth; d++, at += ads, bRow += ldb) {
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector b2v = FloatVector.fromArray(S, b, bRow + 2 * L);
            FloatVector x = FloatVector.broadcast(S, a[at]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            s02 = b2v.fma(x, s02);
            x = FloatVector.broadcast(S, a[at + ais]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            s12 = b2v.fma(x, s12);
            x = FloatVector.broadcast(S, a[at + 2 * ais]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            s22 = b2v.fma(x, s22);
            x = FloatVector.broadcast(S, a[at + 3 * ais]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
            s32 = b2v.fma(x, s32);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c0 + L);
            cv.mul(keep).add(s01.sub(cv.mul(less))).intoArray(c, c0 + L);
            cv = FloatVector.fromArray(S, c, c0 + 2 * L);
            cv.mul(keep).add(s02.sub(cv.mul(less))).intoArray(c, c0 + 2 * L);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c1 + L);
            cv.mul(keep).add(s11.sub(cv.mul(less))).intoArray(c, c1 + L);
            cv = FloatVector.fromArray(S, c, c1 + 2 * L);
            cv.mul(keep).add(s12.sub(cv.mul(less))).intoArray(c, c1 + 2 * L);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c2 + L);
            cv.mul(keep).add(s21.sub(cv.mul(less))).intoArray(c, c2 + L);
            cv = FloatVector.fromArray(S, c, c2 + 2 * L);
            cv.mul(keep).add(s22.sub(cv.mul(less))).intoArray(c, c2 + 2 * L);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c3 + L);
            cv.mul(keep).add(s31.sub(cv.mul(less))).intoArray(c, c3 + L);
            cv = FloatVector.fromArray(S, c, c3 + 2 * L);
            cv.mul(keep).add(s32.sub(cv.mul(less))).intoArray(c, c3 + 2 * L);
        } else {
            s00.intoArray(c, c0);
            s01.intoArray(c, c0 + L);
            s02.intoArray(c, c0 + 2 * L);
            s10.intoArray(c, c1);
            s11.intoArray(c, c1 + L);
            s12.intoArray(c, c1 + 2 * L);
            s20.intoArray(c, c2);
            s21.intoArray(c, c2 + L);
            s22.intoArray(c, c2 + 2 * L);
            s30.intoArray(c, c3);
            s31.intoArray(c, c3 + L);
            s32.intoArray(c, c3 + 2 * L);
        }
    }

    private static void tile4x2(float[] a, int a0, int ais, int ads, float[] b, int b0, int ldb,
                                float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s10;
        FloatVector s11;
        FloatVector s20;
        FloatVector s21;
        FloatVector s30;
        FloatVector s31;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s01 = FloatVector.fromArray(S, c, c0 + L);
            s10 = FloatVector.fromArray(S, c, c1);
            s11 = FloatVector.fromArray(S, c, c1 + L);
            s20 = FloatVector.fromArray(S, c, c2);
            s21 = FloatVector.fromArray(S, c, c2 + L);
            s30 = FloatVector.fromArray(S, c, c3);
            s31 = FloatVector.fromArray(S, c, c3 + L);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s01 = zero;
            s10 = zero;
            s11 = zero;
            s20 = zero;
            s21 = zero;
            s30 = zero;
            s31 = zero;
        }
        for (int d = 0, at = a0, bRow = b0; d < depth; d++, at += ads, bRow += ldb) {
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector x = FloatVector.broadcast(S, a[at]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            x = FloatVector.broadcast(S, a[at + ais]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            x = FloatVector.broadcast(S, a[at + 2 * ais]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            x = FloatVector.broadcast(S, a[at + 3 * ais]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c0 + L);
            cv.mul(keep).add(s01.sub(cv.mul(less))).intoArray(c, c0 + L);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c1 + L);
            cv.mul(keep).add(s11.sub(cv.mul(less))).intoArray(c, c1 + L);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c2 + L);
            cv.mul(keep).add(s21.sub(cv.mul(less))).intoArray(c, c2 + L);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c3 + L);
            cv.mul(keep).add(s31.sub(cv.mul(less))).intoArray(c, c3 + L);
        } else {
            s00.intoArray(c, c0);
            s01.intoArray(c, c0 + L);
            s10.intoArray(c, c1);
            s11.intoArray(c, c1 + L);
            s20.intoArray(c, c2);
            s21.intoArray(c, c2 + L);
            s30.intoArray(c, c3);
            s31.intoArray(c, c3 + L);
        }
    }

    private static void tile4x1(float[] a, int a0, int ais, int ads, float[] b, int b0, int ldb,
                                float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s10;
        FloatVector s20;
        FloatVector s30;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s10 = FloatVector.fromArray(S, c, c1);
            s20 = FloatVector.fromArray(S, c, c2);
            s30 = FloatVector.fromArray(S, c, c3);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s10 = zero;
            s20 = zero;
            s30 = zero;
        }
        for (int d = 0, at = a0, bRow = b0; d < depth; d++, at += ads, bRow += ldb) {
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector x = FloatVector.broadcast(S, a[at]);
            s00 = b0v.fma(x, s00);
            x = FloatVector.broadcast(S, a[at + ais]);
            s10 = b0v.fma(x, s10);
            x = FloatVector.broadcast(S, a[at + 2 * ais]);
            s20 = b0v.fma(x, s20);
            x = FloatVector.broadcast(S, a[at + 3 * ais]);
            s30 = b0v.fma(x, s30);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
        } else {
            s00.intoArray(c, c0);
            s10.intoArray(c, c1);
            s20.intoArray(c, c2);
            s30.intoArray(c, c3);
        }
    }

    private static void tile8x1(float[] a, int a0, int ais, int ads, float[] b, int b0, int ldb,
                                float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        int c4 = c3 + ldc;
        int c5 = c4 + ldc;
        int c6 = c5 + ldc;
        int c7 = c6 + ldc;
        FloatVector s00;
        FloatVector s10;
        FloatVector s20;
        FloatVector s30;
        FloatVector s40;
        FloatVector s50;
        FloatVector s60;
        FloatVector s70;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s10 = FloatVector.fromArray(S, c, c1);
            s20 = FloatVector.fromArray(S, c, c2);
            s30 = FloatVector.fromArray(S, c, c3);
            s40 = FloatVector.fromArray(S, c, c4);
            s50 = FloatVector.fromArray(S, c, c5);
            s60 = FloatVector.fromArray(S, c, c6);
            s70 = FloatVector.fromArray(S, c, c7);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s10 = zero;
            s20 = zero;
            s30 = zero;
            s40 = zero;
            s50 = zero;
            s60 = zero;
            s70 = zero;
        }
        for (int d = 0, at = a0, bRow = b0; d < depth; d++, at += ads, bRow += ldb) {
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector x = FloatVector.broadcast(S, a[at]);
            s00 = b0v.fma(x, s00);
            x = FloatVector.broadcast(S, a[at + ais]);
            s10 = b0v.fma(x, s10);
            x = FloatVector.broadcast(S, a[at + 2 * ais]);
            s20 = b0v.fma(x, s20);
            x = FloatVector.broadcast(S, a[at + 3 * ais]);
            s30 = b0v.fma(x, s30);
            x = FloatVector.broadcast(S, a[at + 4 * ais]);
            s40 = b0v.fma(x, s40);
            x = FloatVector.broadcast(S, a[at + 5 * ais]);
            s50 = b0v.fma(x, s50);
            x = FloatVector.broadcast(S, a[at + 6 * ais]);
            s60 = b0v.fma(x, s60);
            x = FloatVector.broadcast(S, a[at + 7 * ais]);
            s70 = b0v.fma(x, s70);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c4);
            cv.mul(keep).add(s40.sub(cv.mul(less))).intoArray(c, c4);
            cv = FloatVector.fromArray(S, c, c5);
            cv.mul(keep).add(s50.sub(cv.mul(less))).intoArray(c, c5);
            cv = FloatVector.fromArray(S, c, c6);
            cv.mul(keep).add(s60.sub(cv.mul(less))).intoArray(c, c6);
            cv = FloatVector.fromArray(S, c, c7);
            cv.mul(keep).add(s70.sub(cv.mul(less))).intoArray(c, c7);
        } else {
            s00.intoArray(c, c0);
            s10.intoArray(c, c1);
            s20.intoArray(c, c2);
            s30.intoArray(c, c3);
            s40.intoArray(c, c4);
            s50.intoArray(c, c5);
            s60.intoArray(c, c6);
            s70.intoArray(c, c7);
        }
    }

    /** {@link #tile4x3} for A in rows and B's rows one panel apart (ldb = 4L), as {@link #tile4x4rows}: the scores' narrow bands. */
    private static void tile4x3rows(float[] a, int a0, int ais, float[] b, int b0,
                                    float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s02;
        FloatVector s10;
        FloatVector s11;
        FloatVector s12;
        FloatVector s20;
        FloatVector s21;
        FloatVector s22;
        FloatVector s30;
        FloatVector s31;
        FloatVector s32;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s01 = FloatVector.fromArray(S, c, c0 + L);
            s02 = FloatVector.fromArray(S, c, c0 + 2 * L);
            s10 = FloatVector.fromArray(S, c, c1);
            s11 = FloatVector.fromArray(S, c, c1 + L);
            s12 = FloatVector.fromArray(S, c, c1 + 2 * L);
            s20 = FloatVector.fromArray(S, c, c2);
            s21 = FloatVector.fromArray(S, c, c2 + L);
            s22 = FloatVector.fromArray(S, c, c2 + 2 * L);
            s30 = FloatVector.fromArray(S, c, c3);
            s31 = FloatVector.fromArray(S, c, c3 + L);
            s32 = FloatVector.fromArray(S, c, c3 + 2 * L);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s01 = zero;
            s02 = zero;
            s10 = zero;
            s11 = zero;
            s12 = zero;
            s20 = zero;
            s21 = zero;
            s22 = zero;
            s30 = zero;
            s31 = zero;
            s32 = zero;
        }
        int a1 = a0 + ais;
        int a2 = a1 + ais;
        int a3 = a2 + ais;
        for (int d = 0; d < depth; d++) {
            int bRow = b0 + d * PANEL;
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector b2v = FloatVector.fromArray(S, b, bRow + 2 * L);
            FloatVector x = FloatVector.broadcast(S, a[a0 + d]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            s02 = b2v.fma(x, s02);
            x = FloatVector.broadcast(S, a[a1 + d]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            s12 = b2v.fma(x, s12);
            x = FloatVector.broadcast(S, a[a2 + d]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            s22 = b2v.fma(x, s22);
            x = FloatVector.broadcast(S, a[a3 + d]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
            s32 = b2v.fma(x, s32);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c0 + L);
            cv.mul(keep).add(s01.sub(cv.mul(less))).intoArray(c, c0 + L);
            cv = FloatVector.fromArray(S, c, c0 + 2 * L);
            cv.mul(keep).add(s02.sub(cv.mul(less))).intoArray(c, c0 + 2 * L);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c1 + L);
            cv.mul(keep).add(s11.sub(cv.mul(less))).intoArray(c, c1 + L);
            cv = FloatVector.fromArray(S, c, c1 + 2 * L);
            cv.mul(keep).add(s12.sub(cv.mul(less))).intoArray(c, c1 + 2 * L);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c2 + L);
            cv.mul(keep).add(s21.sub(cv.mul(less))).intoArray(c, c2 + L);
            cv = FloatVector.fromArray(S, c, c2 + 2 * L);
            cv.mul(keep).add(s22.sub(cv.mul(less))).intoArray(c, c2 + 2 * L);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c3 + L);
            cv.mul(keep).add(s31.sub(cv.mul(less))).intoArray(c, c3 + L);
            cv = FloatVector.fromArray(S, c, c3 + 2 * L);
            cv.mul(keep).add(s32.sub(cv.mul(less))).intoArray(c, c3 + 2 * L);
        } else {
            s00.intoArray(c, c0);
            s01.intoArray(c, c0 + L);
            s02.intoArray(c, c0 + 2 * L);
            s10.intoArray(c, c1);
            s11.intoArray(c, c1 + L);
            s12.intoArray(c, c1 + 2 * L);
            s20.intoArray(c, c2);
            s21.intoArray(c, c2 + L);
            s22.intoArray(c, c2 + 2 * L);
            s30.intoArray(c, c3);
            s31.intoArray(c, c3 + L);
            s32.intoArray(c, c3 + 2 * L);
        }
    }

    /** {@link #tile4x2} for A in rows and B's rows one panel apart (ldb = 4L), as {@link #tile4x4rows}: the scores' narrow bands. */
    private static void tile4x2rows(float[] a, int a0, int ais, float[] b, int b0,
                                    float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        FloatVector s00;
        FloatVector s01;
        FloatVector s10;
        FloatVector s11;
        FloatVector s20;
        FloatVector s21;
        FloatVector s30;
        FloatVector s31;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s01 = FloatVector.fromArray(S, c, c0 + L);
            s10 = FloatVector.fromArray(S, c, c1);
            s11 = FloatVector.fromArray(S, c, c1 + L);
            s20 = FloatVector.fromArray(S, c, c2);
            s21 = FloatVector.fromArray(S, c, c2 + L);
            s30 = FloatVector.fromArray(S, c, c3);
            s31 = FloatVector.fromArray(S, c, c3 + L);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s01 = zero;
            s10 = zero;
            s11 = zero;
            s20 = zero;
            s21 = zero;
            s30 = zero;
            s31 = zero;
        }
        int a1 = a0 + ais;
        int a2 = a1 + ais;
        int a3 = a2 + ais;
        for (int d = 0; d < depth; d++) {
            int bRow = b0 + d * PANEL;
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector b1v = FloatVector.fromArray(S, b, bRow + L);
            FloatVector x = FloatVector.broadcast(S, a[a0 + d]);
            s00 = b0v.fma(x, s00);
            s01 = b1v.fma(x, s01);
            x = FloatVector.broadcast(S, a[a1 + d]);
            s10 = b0v.fma(x, s10);
            s11 = b1v.fma(x, s11);
            x = FloatVector.broadcast(S, a[a2 + d]);
            s20 = b0v.fma(x, s20);
            s21 = b1v.fma(x, s21);
            x = FloatVector.broadcast(S, a[a3 + d]);
            s30 = b0v.fma(x, s30);
            s31 = b1v.fma(x, s31);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c0 + L);
            cv.mul(keep).add(s01.sub(cv.mul(less))).intoArray(c, c0 + L);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c1 + L);
            cv.mul(keep).add(s11.sub(cv.mul(less))).intoArray(c, c1 + L);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c2 + L);
            cv.mul(keep).add(s21.sub(cv.mul(less))).intoArray(c, c2 + L);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c3 + L);
            cv.mul(keep).add(s31.sub(cv.mul(less))).intoArray(c, c3 + L);
        } else {
            s00.intoArray(c, c0);
            s01.intoArray(c, c0 + L);
            s10.intoArray(c, c1);
            s11.intoArray(c, c1 + L);
            s20.intoArray(c, c2);
            s21.intoArray(c, c2 + L);
            s30.intoArray(c, c3);
            s31.intoArray(c, c3 + L);
        }
    }

    /** {@link #tile8x1} for A in rows and B's rows one panel apart (ldb = 4L), as {@link #tile4x4rows}: the scores' narrow bands. */
    private static void tile8x1rows(float[] a, int a0, int ais, float[] b, int b0,
                                    float[] c, int c0, int ldc, int depth, int mode, float code) {
        int c1 = c0 + ldc;
        int c2 = c1 + ldc;
        int c3 = c2 + ldc;
        int c4 = c3 + ldc;
        int c5 = c4 + ldc;
        int c6 = c5 + ldc;
        int c7 = c6 + ldc;
        FloatVector s00;
        FloatVector s10;
        FloatVector s20;
        FloatVector s30;
        FloatVector s40;
        FloatVector s50;
        FloatVector s60;
        FloatVector s70;
        if (mode == ACCUMULATE) {
            s00 = FloatVector.fromArray(S, c, c0);
            s10 = FloatVector.fromArray(S, c, c1);
            s20 = FloatVector.fromArray(S, c, c2);
            s30 = FloatVector.fromArray(S, c, c3);
            s40 = FloatVector.fromArray(S, c, c4);
            s50 = FloatVector.fromArray(S, c, c5);
            s60 = FloatVector.fromArray(S, c, c6);
            s70 = FloatVector.fromArray(S, c, c7);
        } else {
            FloatVector zero = FloatVector.zero(S);
            s00 = zero;
            s10 = zero;
            s20 = zero;
            s30 = zero;
            s40 = zero;
            s50 = zero;
            s60 = zero;
            s70 = zero;
        }
        int a1 = a0 + ais;
        int a2 = a1 + ais;
        int a3 = a2 + ais;
        int a4 = a3 + ais;
        int a5 = a4 + ais;
        int a6 = a5 + ais;
        int a7 = a6 + ais;
        for (int d = 0; d < depth; d++) {
            int bRow = b0 + d * PANEL;
            FloatVector b0v = FloatVector.fromArray(S, b, bRow);
            FloatVector x = FloatVector.broadcast(S, a[a0 + d]);
            s00 = b0v.fma(x, s00);
            x = FloatVector.broadcast(S, a[a1 + d]);
            s10 = b0v.fma(x, s10);
            x = FloatVector.broadcast(S, a[a2 + d]);
            s20 = b0v.fma(x, s20);
            x = FloatVector.broadcast(S, a[a3 + d]);
            s30 = b0v.fma(x, s30);
            x = FloatVector.broadcast(S, a[a4 + d]);
            s40 = b0v.fma(x, s40);
            x = FloatVector.broadcast(S, a[a5 + d]);
            s50 = b0v.fma(x, s50);
            x = FloatVector.broadcast(S, a[a6 + d]);
            s60 = b0v.fma(x, s60);
            x = FloatVector.broadcast(S, a[a7 + d]);
            s70 = b0v.fma(x, s70);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s00.sub(cv.mul(less))).intoArray(c, c0);
            cv = FloatVector.fromArray(S, c, c1);
            cv.mul(keep).add(s10.sub(cv.mul(less))).intoArray(c, c1);
            cv = FloatVector.fromArray(S, c, c2);
            cv.mul(keep).add(s20.sub(cv.mul(less))).intoArray(c, c2);
            cv = FloatVector.fromArray(S, c, c3);
            cv.mul(keep).add(s30.sub(cv.mul(less))).intoArray(c, c3);
            cv = FloatVector.fromArray(S, c, c4);
            cv.mul(keep).add(s40.sub(cv.mul(less))).intoArray(c, c4);
            cv = FloatVector.fromArray(S, c, c5);
            cv.mul(keep).add(s50.sub(cv.mul(less))).intoArray(c, c5);
            cv = FloatVector.fromArray(S, c, c6);
            cv.mul(keep).add(s60.sub(cv.mul(less))).intoArray(c, c6);
            cv = FloatVector.fromArray(S, c, c7);
            cv.mul(keep).add(s70.sub(cv.mul(less))).intoArray(c, c7);
        } else {
            s00.intoArray(c, c0);
            s10.intoArray(c, c1);
            s20.intoArray(c, c2);
            s30.intoArray(c, c3);
            s40.intoArray(c, c4);
            s50.intoArray(c, c5);
            s60.intoArray(c, c6);
            s70.intoArray(c, c7);
        }
    }

    private static void tile1x1(float[] a, int a0, int ads, float[] b, int b0, int ldb, float[] c, int c0, int depth,
                                int mode, float code) {
        FloatVector s = mode == ACCUMULATE ? FloatVector.fromArray(S, c, c0) : FloatVector.zero(S);
        for (int d = 0, at = a0, bRow = b0; d < depth; d++, at += ads, bRow += ldb) {
            s = FloatVector.fromArray(S, b, bRow).fma(FloatVector.broadcast(S, a[at]), s);
        }
        if (mode == SCALE_ADD) {
            // Decay.carry as x keep + (sum - x less): see the class comment, "The carry"
            FloatVector keep = FloatVector.broadcast(S, code >= 0 ? 1f : -code);
            FloatVector less = FloatVector.broadcast(S, code >= 0 ? code : 0f);
            FloatVector cv;
            cv = FloatVector.fromArray(S, c, c0);
            cv.mul(keep).add(s.sub(cv.mul(less))).intoArray(c, c0);
        } else {
            s.intoArray(c, c0);
        }
    }

    /**
     * Where L is 16 (AVX-512), by 4 x 4 blocks of scalars ({@link #transposeBlocks}); other
     * species: L rows at a time, column d of L consecutive rows one gather (lane t reads row t, the
     * index map {0, lds, 2 lds, ...}) stored as L contiguous floats of dst's row d. The rows past
     * the last whole block or L as the scalar form.
     */
    @Override
    void transpose(float[] src, int so, int lds, int rows, int cols, float[] dst, int dso, int ldd) {
        if (L == 16) {
            transposeBlocks(src, so, lds, rows, cols, dst, dso, ldd);
            return;
        }
        int[] rowsAt = new int[L];
        for (int t = 0; t < L; t++) {
            rowsAt[t] = t * lds;
        }
        int j = 0;
        for (; j + L <= rows; j += L) {
            int at = so + j * lds;
            for (int d = 0, to = dso + j; d < cols; d++, to += ldd) {
                FloatVector.fromArray(S, src, at + d, rowsAt, 0).intoArray(dst, to);
            }
        }
        transposeRows(src, so, lds, j, rows, cols, dst, dso, ldd);
    }

    @Override
    void scale(float s, float[] x, int xo, float[] y, int yo, int n) {
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector.fromArray(S, x, xo + j).mul(s).intoArray(y, yo + j);
        }
        for (; j < n; j++) {
            y[yo + j] = s * x[xo + j];
        }
    }

    @Override
    void scaleAdd(float s, float[] y, int yo, float[] x, int xo, int n) {
        int j = 0;
        for (; j + L <= n; j += L) {
            FloatVector.fromArray(S, y, yo + j).mul(s).add(FloatVector.fromArray(S, x, xo + j)).intoArray(y, yo + j);
        }
        for (; j < n; j++) {
            y[yo + j] = s * y[yo + j] + x[xo + j];
        }
    }

    @Override
    void addWeightedRows(float[] w, int wLast, float[] x, int xo, int ldx, int m, float[] y, int yo, int n) {
        int e = 0;
        for (; e + L <= n; e += L) {
            FloatVector acc = FloatVector.fromArray(S, y, yo + e);
            for (int j = 0; j < m; j++) {
                acc = FloatVector.fromArray(S, x, xo + j * ldx + e).fma(FloatVector.broadcast(S, w[wLast - j]), acc);
            }
            acc.intoArray(y, yo + e);
        }
        // the tail fused as the lanes are: which elements are lanes follows the vector width, and
        // an unfused tail made the normalizer z (pass 2's denominators) of AVX2 and AVX-512 hosts differ
        for (; e < n; e++) {
            float acc = y[yo + e];
            for (int j = 0; j < m; j++) {
                acc = Math.fma(w[wLast - j], x[xo + j * ldx + e], acc);
            }
            y[yo + e] = acc;
        }
    }

    /**
     * The sums of {@link #maskedMultiplySum} and {@link #dot} run over whole blocks of this many
     * floats, each position of a block its own running sum (the lanes of one, two or four vectors),
     * and add the positions' sums in order, then the tail one by one: the same roundings at 4, 8 and
     * 16 lanes. A sum over the lanes of one vector followed the host's vector width instead, and the
     * normalizer's sums of --normalize (the row sum and q . z) with it: a host of AVX2 (8 lanes) and
     * one of AVX-512 (16) wrote different last bits of o for the same piece, so a task retried, or a
     * run resumed, on the other kind of host changed the output's bytes. At 16 lanes the sums are
     * those before, reduceLanes of one vector: it adds lane 0 first on x86 (C2's reduction and the
     * Java fallback alike), the order addLanes takes for narrower vectors, so AVX-512 hosts write the
     * bytes they wrote, at their speed (VectorWidthTest holds the orders to each other: a JDK that
     * reduced in another order would fail it).
     */
    static final int SUM_BLOCK = 16;

    /** {@code s} plus the lanes of {@code v}, lane 0 first: a 16-lane reduceLanes' order, for the narrower vectors' blocks. */
    private static float addLanes(float s, FloatVector v) {
        for (int i = 0; i < L; i++) {
            s += v.lane(i);
        }
        return s;
    }

    /**
     * Whole blocks ({@link #SUM_BLOCK}) below {@code valid} multiplied, the rest (at most a block and
     * a scalar tail where the backend asks for n rounded up to whole vectors) one element at a time.
     * A blend with a VectorMask there was as fast warm but, in a fresh JVM, had the JIT compile about 70
     * more methods of the Java 17 mask classes' fallbacks (ColdBench with -XX:+PrintCompilation;
     * an AND with lane masks, about 140).
     */
    @Override
    float maskedMultiplySum(float[] y, int yo, float[] x, int xo, int valid, int n) {
        if (SUM_BLOCK % L != 0 && L < SUM_BLOCK) {
            return super.maskedMultiplySum(y, yo, x, xo, valid, n); // vectors of 1 or 2 floats: no JVM has them
        }
        int whole = Math.min(valid, n);
        int j = 0;
        float sum;
        if (L >= SUM_BLOCK) {
            FloatVector acc = FloatVector.zero(S);
            for (; j + L <= whole; j += L) {
                FloatVector p = FloatVector.fromArray(S, y, yo + j).mul(FloatVector.fromArray(S, x, xo + j));
                p.intoArray(y, yo + j);
                acc = acc.add(p);
            }
            sum = acc.reduceLanes(VectorOperators.ADD); // lane 0 first, as addLanes (see SUM_BLOCK)
        } else if (L * 2 == SUM_BLOCK) {
            FloatVector a0 = FloatVector.zero(S);
            FloatVector a1 = FloatVector.zero(S);
            for (; j + SUM_BLOCK <= whole; j += SUM_BLOCK) {
                FloatVector p0 = FloatVector.fromArray(S, y, yo + j).mul(FloatVector.fromArray(S, x, xo + j));
                FloatVector p1 = FloatVector.fromArray(S, y, yo + j + L).mul(FloatVector.fromArray(S, x, xo + j + L));
                p0.intoArray(y, yo + j);
                p1.intoArray(y, yo + j + L);
                a0 = a0.add(p0);
                a1 = a1.add(p1);
            }
            sum = addLanes(addLanes(0f, a0), a1);
        } else {
            FloatVector a0 = FloatVector.zero(S);
            FloatVector a1 = FloatVector.zero(S);
            FloatVector a2 = FloatVector.zero(S);
            FloatVector a3 = FloatVector.zero(S);
            for (; j + SUM_BLOCK <= whole; j += SUM_BLOCK) {
                FloatVector p0 = FloatVector.fromArray(S, y, yo + j).mul(FloatVector.fromArray(S, x, xo + j));
                FloatVector p1 = FloatVector.fromArray(S, y, yo + j + L).mul(FloatVector.fromArray(S, x, xo + j + L));
                FloatVector p2 = FloatVector.fromArray(S, y, yo + j + 2 * L).mul(FloatVector.fromArray(S, x, xo + j + 2 * L));
                FloatVector p3 = FloatVector.fromArray(S, y, yo + j + 3 * L).mul(FloatVector.fromArray(S, x, xo + j + 3 * L));
                p0.intoArray(y, yo + j);
                p1.intoArray(y, yo + j + L);
                p2.intoArray(y, yo + j + 2 * L);
                p3.intoArray(y, yo + j + 3 * L);
                a0 = a0.add(p0);
                a1 = a1.add(p1);
                a2 = a2.add(p2);
                a3 = a3.add(p3);
            }
            sum = addLanes(addLanes(addLanes(addLanes(0f, a0), a1), a2), a3);
        }
        for (; j < n; j++) {
            float p = j < valid ? y[yo + j] * x[xo + j] : 0f;
            y[yo + j] = p;
            sum += p;
        }
        return sum;
    }

    /** In whole blocks ({@link #SUM_BLOCK}), then the tail one by one: see there. */
    @Override
    float dot(float[] x, int xo, float[] y, int yo, int n) {
        if (SUM_BLOCK % L != 0 && L < SUM_BLOCK) {
            return super.dot(x, xo, y, yo, n); // vectors of 1 or 2 floats: no JVM has them
        }
        int j = 0;
        float sum;
        if (L >= SUM_BLOCK) {
            FloatVector acc = FloatVector.zero(S);
            for (; j + L <= n; j += L) {
                acc = FloatVector.fromArray(S, x, xo + j).fma(FloatVector.fromArray(S, y, yo + j), acc);
            }
            sum = acc.reduceLanes(VectorOperators.ADD); // lane 0 first, as addLanes (see SUM_BLOCK)
        } else if (L * 2 == SUM_BLOCK) {
            FloatVector a0 = FloatVector.zero(S);
            FloatVector a1 = FloatVector.zero(S);
            for (; j + SUM_BLOCK <= n; j += SUM_BLOCK) {
                a0 = FloatVector.fromArray(S, x, xo + j).fma(FloatVector.fromArray(S, y, yo + j), a0);
                a1 = FloatVector.fromArray(S, x, xo + j + L).fma(FloatVector.fromArray(S, y, yo + j + L), a1);
            }
            sum = addLanes(addLanes(0f, a0), a1);
        } else {
            FloatVector a0 = FloatVector.zero(S);
            FloatVector a1 = FloatVector.zero(S);
            FloatVector a2 = FloatVector.zero(S);
            FloatVector a3 = FloatVector.zero(S);
            for (; j + SUM_BLOCK <= n; j += SUM_BLOCK) {
                a0 = FloatVector.fromArray(S, x, xo + j).fma(FloatVector.fromArray(S, y, yo + j), a0);
                a1 = FloatVector.fromArray(S, x, xo + j + L).fma(FloatVector.fromArray(S, y, yo + j + L), a1);
                a2 = FloatVector.fromArray(S, x, xo + j + 2 * L).fma(FloatVector.fromArray(S, y, yo + j + 2 * L), a2);
                a3 = FloatVector.fromArray(S, x, xo + j + 3 * L).fma(FloatVector.fromArray(S, y, yo + j + 3 * L), a3);
            }
            sum = addLanes(addLanes(addLanes(addLanes(0f, a0), a1), a2), a3);
        }
        for (; j < n; j++) {
            sum += x[xo + j] * y[yo + j];
        }
        return sum;
    }

    /**
     * S2I sign-extends each short; shifting left by 16 drops the extension, leaving the bfloat16
     * bits as the upper half of a float32.
     */
    @Override
    void widenBf16(short[] src, float[] dst, int n) {
        int i = 0;
        for (; i + L <= n; i += L) {
            ((IntVector) ShortVector.fromArray(HALVES, src, i).convertShape(VectorOperators.S2I, INTS, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, i);
        }
        for (; i < n; i++) {
            dst[i] = Float.intBitsToFloat(src[i] << 16);
        }
    }

    /**
     * {@link Kernel#narrowBf16} a vector at a time, in integer lanes on the float bits: bits plus
     * 0x7fff plus the kept half's lowest bit, shifted down 16 (to nearest, ties to even; a carry
     * into the exponent rounds up to the next binade or to infinity, as it should), and for a NaN
     * its upper half with the quiet bit set; then narrowed to shorts. Measured on this project's
     * 2-core VM (one thread, o of T = 16,384, H = 8, Dv = 64 in blocks of 64 tokens): 1.3 ms
     * against 6.3 to 7.8 ms for the scalar loop, which was a sixth of pass 2 (BENCHMARKS.md).
     */
    @Override
    void narrowBf16(float[] src, int off, short[] dst, int n) {
        int i = 0;
        for (; i + L <= n; i += L) {
            IntVector bits = FloatVector.fromArray(S, src, off + i).reinterpretAsInts();
            IntVector upper = bits.lanewise(VectorOperators.LSHR, 16);
            IntVector rounded = bits.add(upper.and(1)).add(0x7fff).lanewise(VectorOperators.LSHR, 16);
            VectorMask<Integer> nan = bits.and(0x7fffffff).compare(VectorOperators.GT, 0x7f800000);
            ((ShortVector) rounded.blend(upper.or(0x0040), nan).convertShape(VectorOperators.I2S, HALVES, 0))
                    .intoArray(dst, i);
        }
        for (; i < n; i++) {
            dst[i] = DType.floatToBf16(src[off + i]);
        }
    }

    /**
     * elu1 a vector at a time: x + 1 in the lanes where x > 0, exp x in the others, with exp as
     * below ({@link #exp}); NaN stays NaN, as in {@link FeatureMap#apply(float)}. Lanes below
     * ln 2^-126 = -87.34, where {@link #exp} stops at 2^-126, take {@link FeatureMap#apply(float)}
     * instead: exp in float64 rounded once (a subnormal, 0 below -103.97), the value of the scalar
     * kernel and of this loop's tail. With the floor, a q row below -87.34 got phi 2^-126 in every
     * lane (6.5e6 times exp(-103)), so its o was off by as much, and normalized with a small eps its
     * o was the unweighted mean of the heads' S / z; and since which elements are lanes and which
     * the tail depends on the window's length, a split run differed from the unsplit one. The tail
     * takes the lanes' exp too ({@link Kernel#exp}, the same bits): with the float64 exp there, which
     * elements got which exp followed the vector width, and a host of AVX2 and one of AVX-512 wrote
     * different o.
     */
    @Override
    void elu1(float[] x, int off, int n) {
        int i = off;
        int end = off + n;
        for (; i + L <= end; i += L) {
            FloatVector v = FloatVector.fromArray(S, x, i);
            VectorMask<Float> positive = v.compare(VectorOperators.GT, 0f);
            // exp(min(v, 0)) written out: #exp's steps, in its order, so the same bits. Called, it
            // made elu1 small enough (213 bytes of bytecode) for C2 to inline into the CPU backend's
            // pass, whose compile then ran out of its node budget before exp (NodeCountInliningCutoff
            // in -XX:+PrintInlining): exp became a call taking and returning boxed vectors, and JFR
            // showed Vector API frames (reinterpretAsFloats, check0) beside elu1 in pass 2. Written
            // out, elu1 is over C2's FreqInlineSize (325 bytes): it is compiled on its own, with a
            // budget of its own. BENCHMARKS.md "elu1's map compiled on its own".
            FloatVector c = v.min(0f).max(MIN_NORMAL_LOG);
            FloatVector shifted = c.fma(FloatVector.broadcast(S, LOG2E), FloatVector.broadcast(S, ROUNDER));
            FloatVector r = shifted.sub(ROUNDER);
            FloatVector g = r.fma(FloatVector.broadcast(S, -LN2_HI), c);
            g = r.fma(FloatVector.broadcast(S, -LN2_LO), g);
            FloatVector p = g.fma(FloatVector.broadcast(S, 1f / 5040), FloatVector.broadcast(S, 1f / 720));
            p = p.fma(g, FloatVector.broadcast(S, 1f / 120));
            p = p.fma(g, FloatVector.broadcast(S, 1f / 24));
            p = p.fma(g, FloatVector.broadcast(S, 1f / 6));
            p = p.fma(g, FloatVector.broadcast(S, 0.5f));
            p = p.fma(g, FloatVector.broadcast(S, 1f));
            p = p.fma(g, FloatVector.broadcast(S, 1f));
            IntVector bits = shifted.reinterpretAsInts().sub(0x4B400000 - 127).lanewise(VectorOperators.LSHL, 23);
            p.mul(bits.reinterpretAsFloats()).blend(v.add(1f), positive).intoArray(x, i);
            VectorMask<Float> tiny = v.compare(VectorOperators.LT, MIN_NORMAL_LOG);
            if (tiny.anyTrue()) {
                for (int j = tiny.firstTrue(); j < L; j++) {
                    if (tiny.laneIsSet(j)) {
                        x[i + j] = FeatureMap.ELU1.apply(v.lane(j));
                    }
                }
            }
        }
        for (; i < end; i++) {
            float v = x[i];
            x[i] = v > 0 ? v + 1f : v < MIN_NORMAL_LOG ? FeatureMap.ELU1.apply(v) : Kernel.exp(v);
        }
    }

    /** relu a vector at a time: x in the lanes where x > 0, else +0 (NaN too), as {@link FeatureMap#apply(float)}. */
    @Override
    void relu(float[] x, int off, int n) {
        int i = off;
        int end = off + n;
        FloatVector zero = FloatVector.zero(S);
        for (; i + L <= end; i += L) {
            FloatVector v = FloatVector.fromArray(S, x, i);
            zero.blend(v, v.compare(VectorOperators.GT, 0f)).intoArray(x, i);
        }
        super.relu(x, i, end - i);
    }

    /**
     * {@link Kernel#softmaxStep} a vector of query columns at a time (L columns: L rows' maxima,
     * sums and rescalings side by side, no reductions across lanes), the tail columns by the
     * scalar form. Lane by lane the same operations in the same order as the scalar form
     * ({@link Kernel#softmaxColumn}), so the same bits.
     */
    @Override
    void softmaxStep(float[] s, int so, int lds, int rows, int cols, float[] m, float[] l, int mo, float[] alpha) {
        int c = 0;
        for (; c + L <= cols; c += L) {
            FloatVector old = FloatVector.fromArray(S, m, mo + c);
            FloatVector max = old;
            for (int j = 0, x = so + c; j < rows; j++, x += lds) {
                max = max.max(FloatVector.fromArray(S, s, x));
            }
            FloatVector shift = max.blend(0f, max.eq(Float.NEGATIVE_INFINITY));
            FloatVector a = expFlush(old.sub(shift));
            FloatVector sum = FloatVector.zero(S);
            for (int j = 0, x = so + c; j < rows; j++, x += lds) {
                FloatVector p = expFlush(FloatVector.fromArray(S, s, x).sub(shift));
                p.intoArray(s, x);
                sum = sum.add(p);
            }
            FloatVector.fromArray(S, l, mo + c).fma(a, sum).intoArray(l, mo + c);
            max.intoArray(m, mo + c);
            a.intoArray(alpha, c);
        }
        for (; c < cols; c++) {
            softmaxColumn(s, so + c, lds, rows, m, l, mo + c, alpha, c);
        }
    }

    /** exp x for x &lt;= 0, 0 below ln 2^-126 and for -inf: {@link Kernel#expFlush} lane by lane. */
    static FloatVector expFlush(FloatVector x) {
        return exp(x).blend(0f, x.lt(MIN_NORMAL_LOG));
    }

    /**
     * exp x for x &lt;= 0 (positive lanes are not asked for): x = r ln 2 + g with
     * r = round(x / ln 2) and |g| &lt;= ln 2 / 2 (Cody-Waite, ln 2 in two parts, so g is exact to
     * float32), exp g by its Taylor polynomial of degree 7 (the first term left out is below 5e-9
     * relative), times 2^r built in the exponent bits. Measured against exp in float64 over every
     * float32 x in [-87.34, 0] (1.12e9 values, 2026-12-02): at most 0.94 ulp (at x = -5.89), mean
     * 0.062 ulp, 0.45% of results not the correctly rounded one. x below ln 2^-126 = -87.34 is taken as that: exp
     * there is 2^-126 = 1.2e-38, the float32 normal range's end, against 0 or a subnormal; NaN
     * stays NaN. The Vector API's EXP (Java 17) takes about twice as long. {@link #elu1} writes these
     * steps out in its loop (why: there); a change here goes there too, and VectorWidthTest, whose
     * vector widths put an element in lanes or in the scalar tail (Kernel#exp), holds them to one bits.
     */
    static FloatVector exp(FloatVector x) {
        FloatVector c = x.max(MIN_NORMAL_LOG);
        FloatVector shifted = c.fma(FloatVector.broadcast(S, LOG2E), FloatVector.broadcast(S, ROUNDER));
        FloatVector r = shifted.sub(ROUNDER);
        FloatVector g = r.fma(FloatVector.broadcast(S, -LN2_HI), c);
        g = r.fma(FloatVector.broadcast(S, -LN2_LO), g);
        FloatVector p = g.fma(FloatVector.broadcast(S, 1f / 5040), FloatVector.broadcast(S, 1f / 720));
        p = p.fma(g, FloatVector.broadcast(S, 1f / 120));
        p = p.fma(g, FloatVector.broadcast(S, 1f / 24));
        p = p.fma(g, FloatVector.broadcast(S, 1f / 6));
        p = p.fma(g, FloatVector.broadcast(S, 0.5f));
        p = p.fma(g, FloatVector.broadcast(S, 1f));
        p = p.fma(g, FloatVector.broadcast(S, 1f));
        // 2^r: r + 127 in the exponent field; the rounder's bits are 0x4B400000 + r
        IntVector bits = shifted.reinterpretAsInts().sub(0x4B400000 - 127).lanewise(VectorOperators.LSHL, 23);
        return p.mul(bits.reinterpretAsFloats());
    }
}
