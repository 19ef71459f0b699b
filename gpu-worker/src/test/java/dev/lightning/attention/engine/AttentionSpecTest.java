package dev.lightning.attention.engine;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.TokenTensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The spec as the one owner of the head layout: grouping, which head reads which, its checks. */
class AttentionSpecTest {

    private static AttentionSpec spec(int heads) {
        return new AttentionSpec(heads, 16, 8, Slopes.minimax(heads), 1.0, 64);
    }

    @Test
    void groupingErrorsNameTheCounts() {
        String m = refused(() -> AttentionSpec.checkGrouping(6, 4, 3));
        assertTrue(m.contains("Hq=6") && m.contains("Hk=4") && m.contains("Hv=3"), m);
        assertTrue(m.contains("H = max of them = 6"), m);
        m = refused(() -> AttentionSpec.checkGrouping(8, 3, 8));
        assertTrue(m.contains("Hk=3") && m.contains("= 8"), m);
        m = refused(() -> AttentionSpec.checkGrouping(0, 1, 1));
        assertTrue(m.contains("Hq=0") && m.contains("1..65536"), m);
        m = refused(() -> AttentionSpec.checkGrouping(1L << 17, 1, 1));
        assertTrue(m.contains("1..65536"), m);
        // and through the spec
        m = refused(() -> spec(6).withHeads(6, 4, 3));
        assertTrue(m.contains("Hq=6") && m.contains("Hk=4") && m.contains("Hv=3"), m);
        // counts that divide pass
        AttentionSpec.checkGrouping(64, 8, 8);
        AttentionSpec.checkGrouping(2, 2, 6);
        AttentionSpec.checkGrouping(6, 2, 3);
    }

    /** A state too large for one array is refused naming the most heads that fit (it wrapped: H = 32768, D = 256). */
    @Test
    void aStateMustFitOneArray() {
        String m = refused(() -> new AttentionSpec(32768, 256, 256, new double[32768], 1.0, 64));
        assertTrue(m.contains("32768 x 256 x 256") && m.contains("at most 32767 heads"), m);
        assertEquals(32767 * 256 * 256, new AttentionSpec(32767, 256, 256, new double[32767], 1.0, 64).stateSize());
    }

    @Test
    void gqaHeadsReadTheirGroupsKAndV() {
        AttentionSpec s = spec(64).withHeads(64, 8, 8);
        assertEquals(64, s.heads());
        assertFalse(s.ungrouped());
        for (int h = 0; h < 64; h++) {
            assertEquals(h, s.qHead(h));
            assertEquals(h / 8, s.kHead(h));
            assertEquals(h / 8, s.vHead(h));
        }
        assertEquals(0, s.kHead(7));
        assertEquals(1, s.kHead(8));
        assertEquals(7, s.vHead(63));
    }

    @Test
    void groupedValueHeadsShareQAndK() {
        AttentionSpec s = spec(6).withHeads(2, 2, 6);
        int[] qk = {0, 0, 0, 1, 1, 1};
        for (int h = 0; h < 6; h++) {
            assertEquals(qk[h], s.qHead(h), "q head of " + h);
            assertEquals(qk[h], s.kHead(h), "k head of " + h);
            assertEquals(h, s.vHead(h), "v head of " + h);
        }
        // mixed: Hq=6, Hk=2, Hv=3
        AttentionSpec mixed = spec(6).withHeads(6, 2, 3);
        int[] k = {0, 0, 0, 1, 1, 1};
        int[] v = {0, 0, 1, 1, 2, 2};
        for (int h = 0; h < 6; h++) {
            assertEquals(h, mixed.qHead(h));
            assertEquals(k[h], mixed.kHead(h));
            assertEquals(v[h], mixed.vHead(h));
        }
    }

    /**
     * Head counts become a spec in one place: H is the largest count, whichever of q, k and v has it, and the slopes
     * are H's. A file's, a table's and the reference check's specs were each built from max(Hq, Hk, Hv) themselves.
     */
    @Test
    void groupedHeadCountsMakeTheSpecOfTheLargest() {
        assertEquals(6, AttentionSpec.heads(6, 2, 3));
        assertEquals(6, AttentionSpec.heads(2, 2, 6));
        assertEquals(8, AttentionSpec.heads(1, 8, 2));
        AttentionSpec s = AttentionSpec.grouped(2, 2, 6, 16, 8, Slopes.minimax(6), 0.5, 32);
        assertEquals(new AttentionSpec(6, 16, 8, Slopes.minimax(6), 0.5, 32).withHeads(2, 2, 6), s);
        assertEquals(6, s.heads());
        assertEquals(2, s.headsQ());
        assertEquals(6, s.headsV());
        String m = refused(() -> AttentionSpec.grouped(2, 2, 6, 16, 8, Slopes.minimax(2), 1.0, 64));
        assertTrue(m.contains("expected 6 slopes"), m);
    }

    @Test
    void inputBytesPerTokenCountQKAndVOfTheirOwnHeads() {
        // q [Hq, Dk], k [Hk, Dk], v [Hv, Dv] a token: 2*16 + 2*16 + 6*8 = 112 elements
        assertEquals(112L * 2, AttentionSpec.inputBytesPerToken(2, 2, 6, 16, 8, DType.BF16));
        assertEquals(112L * 4, AttentionSpec.grouped(2, 2, 6, 16, 8, Slopes.minimax(6), 1.0, 64)
                .inputBytesPerToken(DType.F32));
        // counted in long: 2^16 heads of 256 + 256 + 256 elements in F32 pass 2^31 bytes
        assertEquals(3L * 65536 * 256 * 4, AttentionSpec.inputBytesPerToken(65536, 65536, 65536, 256, 256, DType.F32));
    }

    @Test
    void withHeadsRejectsAMaximumOtherThanH() {
        String m = refused(() -> spec(6).withHeads(2, 2, 4));
        assertTrue(m.contains("max(Hq, Hk, Hv) = 4") && m.contains("got 6"), m);
        m = refused(() -> spec(4).withHeads(8, 8, 8));
        assertTrue(m.contains("= 8") && m.contains("got 4"), m);
        assertTrue(spec(6).withHeads(6, 6, 6).ungrouped());
    }

    @Test
    void variantsSizesAndEquality() {
        AttentionSpec plain = spec(3);
        assertTrue(plain.plain());
        assertEquals(0, plain.eps());
        assertEquals(0, plain.normalizerSize());
        assertEquals(3 * 16 * 8, plain.stateSize());
        AttentionSpec normalized = plain.withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5);
        assertFalse(normalized.plain());
        assertFalse(plain.withFeatureMap(FeatureMap.RELU).plain());
        assertTrue(normalized.normalized());
        assertEquals(1e-5, normalized.eps());
        assertEquals(3 * 16, normalized.normalizerSize());
        assertEquals(FeatureMap.ELU1, normalized.featureMap());
        // the with* copies keep everything else
        assertEquals(FeatureMap.ELU1, normalized.withHeads(3, 1, 3).featureMap());
        assertTrue(normalized.withHeads(3, 1, 3).normalized());
        assertEquals(1, normalized.withHeads(3, 1, 3).headsK());
        // equality sees the layout and the variant
        assertEquals(spec(6).withHeads(6, 2, 3), spec(6).withHeads(6, 2, 3));
        assertNotEquals(spec(6).withHeads(6, 2, 3), spec(6).withHeads(6, 3, 2));
        assertNotEquals(plain, plain.withNormalization(1e-5));
        assertNotEquals(plain, plain.withFeatureMap(FeatureMap.RELU));
        assertTrue(spec(6).withHeads(6, 2, 3).toString().contains("Hq=6, Hk=2, Hv=3"));
        String m = refused(() -> plain.withNormalization(-1));
        assertTrue(m.contains("eps"), m);
        assertTrue(refused(() -> FeatureMap.of("gelu")).contains("identity, elu1 or relu"));
        assertEquals(FeatureMap.ELU1, FeatureMap.of("ELU1"));
    }

    /** The call checks use the grouped shapes: q [n, Hq, Dk], k [n, Hk, Dk], v [n, Hv, Dv], o [n, H, Dv]. */
    @Test
    void callChecksUseTheGroupedShapes() {
        AttentionSpec s = spec(6).withHeads(6, 2, 3).withNormalization(1e-5);
        TokenTensor q = TokenTensor.allocate(DType.F32, 10, 6, 16);
        TokenTensor k = TokenTensor.allocate(DType.F32, 10, 2, 16);
        TokenTensor v = TokenTensor.allocate(DType.F32, 10, 3, 8);
        TokenTensor o = TokenTensor.allocate(DType.F32, 10, 6, 8);
        LightningState state = LightningState.zeros(s);
        s.checkForward(q, k, v, state, o, Checkpoints.none());
        assertTrue(refused(() -> s.checkForward(q, q, v, state, o, Checkpoints.none())).startsWith("k is"));
        assertTrue(refused(() -> s.checkForward(q, k, k, state, o, Checkpoints.none())).startsWith("v is"));
        assertTrue(refused(() -> s.checkForward(k, k, v, state, o, Checkpoints.none())).startsWith("q is"));
        assertTrue(refused(() -> s.checkForward(q, k, v, state, v, Checkpoints.none())).startsWith("o is"));
        assertTrue(refused(() -> s.checkAdvance(k, v, LightningState.zeros(6, 16, 8))).contains("does not fit"));
        // checkpoints at positions that are not whole chunks are refused
        String m = refused(() -> s.checkForward(q, k, v, state, o, Checkpoints.of(s, 64, 32, 10)));
        assertTrue(m.contains("multiples of the chunk size 64"), m);
    }

    private static String refused(Executable call) {
        return assertThrows(IllegalArgumentException.class, call).getMessage();
    }
}
