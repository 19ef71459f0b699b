package dev.lightning.attention.engine.cuda;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.Slopes;
import jcuda.driver.CUdeviceptr;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.EnumSet;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

/**
 * The struct bytes of each launch as {@link Kernels} fills them (host only, no GPU): every field at
 * the offset of lightning_args.cuh's C layout (8-byte fields first, no padding), read back here at
 * offsets written out by hand so that a reordered mirror fails too. Device addresses are made up
 * (an unallocated pointer plus a byte offset is that offset).
 */
class KernelLaunchArgsTest {
    // offsets of struct LightningArgs, in declaration order
    private static final int Q = 0;
    private static final int K = 8;
    private static final int V = 16;
    private static final int O = 24;
    private static final int SLOPES = 32;
    private static final int INCOMING = 40;
    private static final int INCOMING_NORM = 48;
    private static final int STATES = 56;
    private static final int STATES_NORM = 64;
    private static final int CHECKPOINTS = 72;
    private static final int CHECKPOINT_NORMS = 80;
    private static final int SCAN_LOCALS = 88;
    private static final int SCAN_LOCAL_NORMS = 96;
    private static final int SCAN_FINAL = 104;
    private static final int SCAN_FINAL_NORM = 112;
    private static final int POSITION = 120;
    private static final int FIRST_CHECKPOINT = 128;
    private static final int N = 136;
    private static final int HEADS = 140;
    private static final int HEADS_Q = 144;
    private static final int HEADS_K = 148;
    private static final int HEADS_V = 152;
    private static final int DK = 156;
    private static final int DV = 160;
    private static final int SEG_TOKENS = 164;
    private static final int CHECKPOINT_EVERY = 168;
    private static final int FEATURE_MAP = 172;
    private static final int NORMALIZE = 176;
    private static final int SCAN_COUNT = 180;
    private static final int SCAN_EVERY = 184;
    private static final int SCAN_SUB_TOKENS = 188;
    private static final int SCAN_OUT_COUNT = 192;
    private static final int SCALE = 196;
    private static final int EPS = 200;
    private static final int LEAD_TOKENS = 204;
    private static final int SIZE = 208;

    /** H = 6 from Hq = 3, Hk = 2, Hv = 6; Dk != Dv; elu1; normalized. */
    private static final AttentionSpec SPEC = new AttentionSpec(6, 24, 40, Slopes.minimax(6), 0.75, 64)
            .withHeads(3, 2, 6).withFeatureMap(FeatureMap.ELU1).withNormalization(1e-5);

    private static CUdeviceptr at(long address) {
        return new CUdeviceptr().withByteOffset(address);
    }

    private static ByteBuffer bytes(KernelArgs a) {
        byte[] b = a.toBytes();
        assertEquals(SIZE, b.length, "sizeof(LightningArgs)");
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** The fields every launch shares: shape, heads, variant, scale, eps, slopes. */
    private static void assertCommon(ByteBuffer b, AttentionSpec spec, int n) {
        assertEquals(0x1000, b.getLong(SLOPES), "slopes");
        assertEquals(n, b.getInt(N), "n");
        assertEquals(spec.heads(), b.getInt(HEADS), "heads");
        assertEquals(spec.headsQ(), b.getInt(HEADS_Q), "headsQ");
        assertEquals(spec.headsK(), b.getInt(HEADS_K), "headsK");
        assertEquals(spec.headsV(), b.getInt(HEADS_V), "headsV");
        assertEquals(spec.dk(), b.getInt(DK), "dk");
        assertEquals(spec.dv(), b.getInt(DV), "dv");
        assertEquals(spec.featureMap().code(), b.getInt(FEATURE_MAP), "featureMap");
        assertEquals(spec.normalized() ? 1 : 0, b.getInt(NORMALIZE), "normalize");
        assertEquals((float) spec.scale(), b.getFloat(SCALE), "scale");
        assertEquals((float) spec.eps(), b.getFloat(EPS), "eps");
    }

    @Test
    void aForwardLaunchHoldsItsTensorsStatesCheckpointsAndVariant() {
        KernelArgs common = Kernels.common(SPEC, 1000, at(0x1000));
        Kernels.States incoming = new Kernels.States(at(0x5000), at(0x5800));
        Kernels.States after = new Kernels.States(at(0x6000), at(0x6800));
        Kernels.CheckpointTarget cp = new Kernels.CheckpointTarget(new Kernels.States(at(0x7000), at(0x7800)), 128,
                (3L << 32) + 64, 100_663_296L, true);
        ByteBuffer b = bytes(Kernels.forwardArgs(common, at(0x2000), at(0x2100), at(0x2200), at(0x2300), 192, 192,
                incoming, after, cp));
        assertCommon(b, SPEC, 1000);
        assertEquals(0x2000, b.getLong(Q));
        assertEquals(0x2100, b.getLong(K));
        assertEquals(0x2200, b.getLong(V));
        assertEquals(0x2300, b.getLong(O));
        assertEquals(192, b.getInt(SEG_TOKENS));
        assertEquals(0, b.getInt(LEAD_TOKENS), "an even cut leaves the lead 0, as the field was before it");
        assertEquals(0x5000, b.getLong(INCOMING));
        assertEquals(0x5800, b.getLong(INCOMING_NORM));
        assertEquals(0x6000, b.getLong(STATES));
        assertEquals(0x6800, b.getLong(STATES_NORM));
        assertEquals(0x7000, b.getLong(CHECKPOINTS));
        assertEquals(0x7800, b.getLong(CHECKPOINT_NORMS));
        assertEquals(128, b.getInt(CHECKPOINT_EVERY));
        assertEquals((3L << 32) + 64, b.getLong(POSITION), "position, beyond 2^32 tokens");
        assertEquals(100_663_296L, b.getLong(FIRST_CHECKPOINT));
        // the scan's fields stay zero: kernels read them as absent
        for (int off : new int[] {SCAN_LOCALS, SCAN_LOCAL_NORMS, SCAN_FINAL, SCAN_FINAL_NORM}) {
            assertEquals(0, b.getLong(off), "offset " + off);
        }
        for (int off : new int[] {SCAN_COUNT, SCAN_EVERY, SCAN_SUB_TOKENS, SCAN_OUT_COUNT}) {
            assertEquals(0, b.getInt(off), "offset " + off);
        }
        // the common part is copied, not changed, by a launch
        assertEquals(0, bytes(common).getLong(Q));

        // an uneven cut: the lead where shorter than the other segments; the rest of the bytes unchanged
        ByteBuffer uneven = bytes(Kernels.forwardArgs(common, at(0x2000), at(0x2100), at(0x2200), at(0x2300), 192, 64,
                incoming, after, cp));
        assertEquals(64, uneven.getInt(LEAD_TOKENS));
        uneven.putInt(LEAD_TOKENS, 0);
        assertEquals(b, uneven);
        assertThrows(IllegalArgumentException.class, () -> Kernels.forwardArgs(common, at(0x2000), at(0x2100),
                at(0x2200), at(0x2300), 192, 256, incoming, after, cp), "a lead longer than the segments");
        assertThrows(IllegalArgumentException.class, () -> Kernels.forwardArgs(common, at(0x2000), at(0x2100),
                at(0x2200), at(0x2300), 192, 0, incoming, after, cp), "no lead");
    }

    @Test
    void aStatesLaunchReadsOnlyKAndVAndWritesLocalStates() {
        AttentionSpec plain = new AttentionSpec(5, 16, 24, Slopes.minimax(5), 1.0, 64);
        ByteBuffer b = bytes(Kernels.statesArgs(Kernels.common(plain, 640, at(0x1000)), at(0x2100), at(0x2200), 128,
                128, new Kernels.States(at(0x3000), null)));
        assertCommon(b, plain, 640);
        assertEquals(0x2100, b.getLong(K));
        assertEquals(0x2200, b.getLong(V));
        assertEquals(128, b.getInt(SEG_TOKENS));
        assertEquals(0, b.getInt(LEAD_TOKENS));
        assertEquals(0x3000, b.getLong(STATES));
        for (int off : new int[] {Q, O, INCOMING, INCOMING_NORM, STATES_NORM, CHECKPOINTS, CHECKPOINT_NORMS}) {
            assertEquals(0, b.getLong(off), "offset " + off);
        }
        assertEquals(0, b.getInt(CHECKPOINT_EVERY));
        assertEquals(0, b.getInt(NORMALIZE));
        assertEquals(0, b.getInt(FEATURE_MAP));
    }

    @Test
    void aScanLaunchHoldsLocalsSegmentsAndResultForSAndZ() {
        KernelArgs common = Kernels.common(SPEC, 1000, at(0x1000));
        ByteBuffer b = bytes(Kernels.scanArgs(common, new Kernels.States(at(0x3000), at(0x3800)), 14, 2, 64, 64,
                new Kernels.States(at(0x5000), at(0x5800)), new Kernels.States(at(0x6000), at(0x6800)), 8,
                Kernels.States.NONE));
        assertCommon(b, SPEC, 1000);
        assertEquals(0x3000, b.getLong(SCAN_LOCALS));
        assertEquals(0x3800, b.getLong(SCAN_LOCAL_NORMS));
        assertEquals(14, b.getInt(SCAN_COUNT));
        assertEquals(2, b.getInt(SCAN_EVERY));
        assertEquals(64, b.getInt(SCAN_SUB_TOKENS));
        assertEquals(0, b.getInt(LEAD_TOKENS));
        assertEquals(0x5000, b.getLong(INCOMING));
        assertEquals(0x5800, b.getLong(INCOMING_NORM));
        assertEquals(0x6000, b.getLong(STATES));
        assertEquals(0x6800, b.getLong(STATES_NORM));
        assertEquals(8, b.getInt(SCAN_OUT_COUNT));
        assertEquals(0, b.getLong(SCAN_FINAL));
        assertEquals(0, b.getLong(SCAN_FINAL_NORM));

        // advance() over an uneven plan's two segments: pieces of 448 tokens, the first 192
        ByteBuffer advance = bytes(Kernels.scanArgs(common, new Kernels.States(at(0x3000), at(0x3800)), 2, 1, 448, 192,
                Kernels.States.packed(SPEC, at(0x5000)), Kernels.States.NONE, 0, Kernels.States.packed(SPEC, at(0x9000))));
        assertEquals(0x9000, advance.getLong(SCAN_FINAL));
        // a packed state: z right after S's H * Dk * Dv floats
        assertEquals(0x9000 + 4L * 6 * 24 * 40, advance.getLong(SCAN_FINAL_NORM));
        assertEquals(0x5000 + 4L * 6 * 24 * 40, advance.getLong(INCOMING_NORM));
        assertEquals(0, advance.getLong(STATES));
        assertEquals(0, advance.getInt(SCAN_OUT_COUNT));
        assertEquals(448, advance.getInt(SCAN_SUB_TOKENS));
        assertEquals(192, advance.getInt(LEAD_TOKENS));
    }

    @Test
    void aPackedStateOfAnUnnormalizedSpecHasNoZ() {
        AttentionSpec plain = new AttentionSpec(2, 8, 8, Slopes.minimax(2), 1.0, 64);
        Kernels.States s = Kernels.States.packed(plain, at(0x4000));
        assertEquals(0x4000, KernelArgs.address(s.s()));
        assertEquals(null, s.z());
    }

    @Test
    void variantsOfALaunch() {
        AttentionSpec plain = new AttentionSpec(4, 8, 8, Slopes.minimax(4), 1.0, 64);
        assertEquals(EnumSet.noneOf(Kernels.Variant.class), Kernels.Variant.of(plain, false));
        assertEquals(Set.of(Kernels.Variant.CHECKPOINTS), Kernels.Variant.of(plain, true));
        assertEquals(Set.of(Kernels.Variant.GROUPED, Kernels.Variant.FEATURE_MAP, Kernels.Variant.NORMALIZED),
                Kernels.Variant.of(SPEC, false));
        assertEquals(Set.of(Kernels.Variant.GROUPED), Kernels.Variant.of(plain.withHeads(4, 1, 4), false));
        assertEquals(Set.of(Kernels.Variant.FEATURE_MAP), Kernels.Variant.of(plain.withFeatureMap(FeatureMap.RELU), false));
    }
}
