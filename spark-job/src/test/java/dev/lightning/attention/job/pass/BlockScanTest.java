package dev.lightning.attention.job.pass;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.engine.reference.Accuracy;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The blocked scan ({@link BlockScan}) against the sequential one and against the float64
 * recurrence of the incoming states, on random states and uneven piece lengths, for element
 * counts around the block size and for trees of one to three levels; every unit within its bound.
 */
class BlockScanTest {
    /** Three heads: one that hardly decays, one in between, one whose decay underflows over a block. */
    private static final AttentionSpec PLAIN = new AttentionSpec(3, 5, 7, new double[] {1e-6, 0.003, 8}, 1.0, 64);
    private static final AttentionSpec NORMALIZED = PLAIN.withNormalization(1e-5);

    /** A sequence's scan input: the initial state, and each element's tokens and local state. */
    private static final class Input {
        final AttentionSpec spec;
        final LightningState initial;
        final long[] tokens;
        final LightningState[] local;

        Input(AttentionSpec spec, int elements, long seed) {
            SplittableRandom rnd = new SplittableRandom(seed);
            this.spec = spec;
            this.initial = random(spec, rnd);
            this.tokens = new long[elements];
            this.local = new LightningState[elements];
            for (int i = 0; i < elements; i++) {
                // uneven pieces: 1 to 300 tokens, so block sums differ from block to block
                tokens[i] = 1 + rnd.nextInt(300);
                local[i] = random(spec, rnd);
            }
        }

        /** Start token of piece p (p = 0..M). */
        long start(long p) {
            long s = 0;
            for (int i = 0; i < p; i++) {
                s += tokens[i];
            }
            return s;
        }
    }

    private static LightningState random(AttentionSpec spec, SplittableRandom rnd) {
        float[] kv = new float[spec.stateSize()];
        for (int i = 0; i < kv.length; i++) {
            kv[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        if (!spec.normalized()) {
            return LightningState.of(spec.heads(), spec.dk(), spec.dv(), kv);
        }
        float[] z = new float[spec.normalizerSize()];
        for (int i = 0; i < z.length; i++) {
            z[i] = (float) (0.5 + rnd.nextDouble());
        }
        return LightningState.of(spec.heads(), spec.dk(), spec.dv(), kv, z);
    }

    /** The scan as it was, one task: incoming(p+1) = then(incoming(p), n_p, local_p); index 0 unused. */
    private static LightningState[] sequential(Input in) {
        LightningState[] incoming = new LightningState[in.local.length + 1];
        LightningState s = in.initial;
        for (int p = 0; p < in.local.length; p++) {
            s = s.then(in.spec, in.tokens[p], in.local[p]);
            incoming[p + 1] = s;
        }
        return incoming;
    }

    /** The float64 recurrence of the incoming states (S then z as one vector), from the same float32 inputs. */
    private static double[][] float64(Input in) {
        AttentionSpec spec = in.spec;
        int h = spec.heads();
        int sPer = spec.dk() * spec.dv();
        int zPer = spec.normalized() ? spec.dk() : 0;
        double[] s = toDoubles(in.initial);
        double[][] out = new double[in.local.length + 1][];
        for (int p = 0; p < in.local.length; p++) {
            double[] l = toDoubles(in.local[p]);
            for (int head = 0; head < h; head++) {
                double decay = Math.exp(-spec.slope(head) * in.tokens[p]);
                for (int x = head * sPer; x < (head + 1) * sPer; x++) {
                    s[x] = decay * s[x] + l[x];
                }
                for (int x = h * sPer + head * zPer; x < h * sPer + (head + 1) * zPer; x++) {
                    s[x] = decay * s[x] + l[x];
                }
            }
            out[p + 1] = s.clone();
        }
        return out;
    }

    private static double[] toDoubles(LightningState st) {
        float[] kv = st.kv();
        float[] z = st.normalized() ? st.normalizer() : new float[0];
        double[] d = new double[kv.length + z.length];
        for (int i = 0; i < kv.length; i++) {
            d[i] = kv[i];
        }
        for (int i = 0; i < z.length; i++) {
            d[kv.length + i] = z[i];
        }
        return d;
    }

    private static float[] toFloats(LightningState st) {
        float[] kv = st.kv();
        float[] z = st.normalized() ? st.normalizer() : new float[0];
        float[] f = Arrays.copyOf(kv, kv.length + z.length);
        System.arraycopy(z, 0, f, kv.length, z.length);
        return f;
    }

    /** States in memory, each written once and read only after it was written; reads and writes counted per unit. */
    private static final class Memory implements BlockScan.States {
        final Input in;
        final Map<String, LightningState> written = new HashMap<>();
        int reads;
        int writes;
        int initialReads;

        Memory(Input in) {
            this.in = in;
        }

        @Override
        public LightningState initial() {
            reads++;
            initialReads++;
            return in.initial;
        }

        @Override
        public LightningState element(int level, int j) {
            reads++;
            return level == 0 ? in.local[j] : get("e", level, j);
        }

        @Override
        public void putElement(int level, int j, LightningState s) {
            assertTrue(level >= 1, "elements above level 0 only");
            put("e", level, j, s);
        }

        @Override
        public LightningState prefix(int level, int j) {
            reads++;
            assertTrue(level >= 1, "carries come from above level 0");
            return get("y", level, j);
        }

        @Override
        public void putPrefix(int level, int j, LightningState s) {
            put("y", level, j, s);
        }

        private LightningState get(String kind, int level, int j) {
            LightningState s = written.get(kind + level + "-" + j);
            assertNotNull(s, kind + " " + j + " of level " + level + " read before any unit wrote it");
            return s;
        }

        private void put(String kind, int level, int j, LightningState s) {
            writes++;
            assertNull(written.put(kind + level + "-" + j, s), kind + " " + j + " of level " + level + " written twice");
        }
    }

    /**
     * Runs the blocked scan of {@code in} stage by stage as the driver does, the units of each
     * stage in a random order (they are independent), each within its bound; returns incoming(1..M).
     */
    private static LightningState[] blocked(Input in, int block, long shuffleSeed) throws Exception {
        BlockScan.Plan plan = new BlockScan.Plan(in.local.length, block);
        Memory mem = new Memory(in);
        Random shuffle = new Random(shuffleSeed);
        for (int stage = 0; stage < BlockScan.stages(plan.depth()); stage++) {
            List<BlockScan.Unit> units = new ArrayList<>(plan.units(stage, plan.depth()));
            assertFalse(units.isEmpty(), "stage " + stage + " of a scan of depth " + plan.depth() + " has work");
            Collections.shuffle(units, shuffle);
            for (BlockScan.Unit u : units) {
                int reads = mem.reads;
                int writes = mem.writes;
                BlockScan.run(in.spec, u, BlockScan.tokens(plan, u, in::start), mem);
                assertTrue(mem.reads - reads <= block + 1, u + " read " + (mem.reads - reads) + " states");
                assertTrue(mem.writes - writes <= block, u + " wrote " + (mem.writes - writes) + " states");
            }
        }
        LightningState[] incoming = new LightningState[in.local.length + 1];
        for (int j = 1; j <= in.local.length; j++) {
            incoming[j] = mem.get("y", 0, j);
        }
        // the initial state is the carry into block 0 of each level, read once there
        assertEquals(plan.depth() + 1, mem.initialReads, "initial state reads");
        assertEquals(in.local.length + plan.extraStates(), mem.writes, "states written");
        return incoming;
    }

    private static void check(AttentionSpec spec, int elements, int block, long seed) throws Exception {
        Input in = new Input(spec, elements, seed);
        LightningState[] seq = sequential(in);
        LightningState[] got = blocked(in, block, seed);
        double[][] ref = float64(in);
        String what = elements + " elements, blocks of " + block + (spec.normalized() ? ", normalized" : "");
        double worst = 0;
        double worstSequential = 0;
        for (int j = 1; j <= elements; j++) {
            float[] a = toFloats(got[j]);
            float[] b = toFloats(seq[j]);
            float[] r = new float[ref[j].length];
            for (int i = 0; i < r.length; i++) {
                r[i] = (float) ref[j][i];
            }
            if (elements <= block) {
                assertArrayEquals(b, a, what + ": one block is the sequential scan itself, bit for bit, at " + j);
            }
            double vsSeq = Accuracy.relativeError(a, b);
            double vsRef = Accuracy.relativeError(a, r);
            double seqVsRef = Accuracy.relativeError(b, r);
            // float32 rounding: within the project's float32 target of the float64 recurrence, and
            // the blocked grouping no worse than the sequential one (beyond a few roundings)
            assertTrue(vsSeq <= 1e-5, what + ": incoming(" + j + ") blocked vs sequential " + vsSeq);
            assertTrue(vsRef <= 1e-5, what + ": incoming(" + j + ") blocked vs float64 " + vsRef);
            assertTrue(seqVsRef <= 1e-5, what + ": incoming(" + j + ") sequential vs float64 " + seqVsRef);
            assertTrue(vsRef <= 2 * seqVsRef + 3e-7, what + ": incoming(" + j + ") blocked " + vsRef
                    + " against sequential " + seqVsRef + ", both vs float64");
            worst = Math.max(worst, vsRef);
            worstSequential = Math.max(worstSequential, seqVsRef);
        }
        System.out.printf("BlockScanTest: %s: largest relative error vs float64 %.2e blocked, %.2e sequential%n", what,
                worst, worstSequential);
    }

    @Test
    void blockedEqualsSequentialAroundTheBlockSize() throws Exception {
        for (int block : new int[] {4, 16}) {
            for (int elements : new int[] {1, 2, block - 1, block, block + 1, block * block + 3}) {
                check(PLAIN, elements, block, 1000L * block + elements);
                check(NORMALIZED, elements, block, 7 + 1000L * block + elements);
            }
        }
    }

    @Test
    void deepTrees() throws Exception {
        // 4^3 + 4 + 1 = 69 elements in blocks of 4: levels of 69, 17, 4 (depth 2); 300 in blocks of 3: depth 4
        assertEquals(2, new BlockScan.Plan(69, 4).depth());
        check(NORMALIZED, 69, 4, 11);
        BlockScan.Plan deep = new BlockScan.Plan(300, 3);
        assertEquals(4, deep.depth());
        check(PLAIN, 300, 3, 12);
        check(PLAIN, 1000, 2, 13);
    }

    /** The same scan in another unit order (as retries and executors would run it) writes the same bits. */
    @Test
    void deterministicWhateverTheUnitOrder() throws Exception {
        Input in = new Input(NORMALIZED, 4 * 4 * 4 + 9, 21);
        LightningState[] a = blocked(in, 4, 1);
        LightningState[] b = blocked(in, 4, 2);
        for (int j = 1; j < a.length; j++) {
            assertArrayEquals(a[j].toBytes(), b[j].toBytes(), "incoming(" + j + ")");
        }
    }

    @Test
    void planLevelsAndStages() {
        // 100,000 pieces of small states: one level of summaries (97 of them), three stages
        BlockScan.Plan small = new BlockScan.Plan(99_999, BlockScan.MAX_BLOCK);
        assertEquals(1, small.depth());
        assertEquals(97, small.elements(1));
        assertEquals(3, BlockScan.stages(small.depth()));
        assertEquals(97, small.units(0, 1).size(), "up: every block but the last");
        assertEquals(1, small.units(1, 1).size(), "the top: one block");
        assertEquals(98, small.units(2, 1).size(), "down: every block");
        // the same in blocks of 16: 99,999 -> 6,249 -> 390 -> 24 -> 1
        BlockScan.Plan deep = new BlockScan.Plan(99_999, 16);
        assertEquals(4, deep.depth());
        assertEquals(6249, deep.elements(1));
        assertEquals(1, deep.elements(4));
        // a shallower sequence in a deeper run: its stages wait, none runs out of order
        BlockScan.Plan one = new BlockScan.Plan(5, 16);
        for (int stage = 0; stage < BlockScan.stages(4); stage++) {
            assertEquals(stage == 8 ? 1 : 0, one.units(stage, 4).size(), "stage " + stage);
        }
        // block sizes follow the state size, within their bounds
        assertEquals(BlockScan.MAX_BLOCK, BlockScan.blockSize(1024));
        assertEquals(128, BlockScan.blockSize(8L * 128 * 128 * 4));
        assertEquals(BlockScan.MIN_BLOCK, BlockScan.blockSize(64L * 256 * 256 * 4));
        assertThrows(IllegalArgumentException.class, () -> new BlockScan.Plan(0, 4));
    }
}
