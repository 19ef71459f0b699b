package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The cut of an output file among pieces, for both attentions' layouts: every piece's shares,
 * written where they say, rebuild a random file byte for byte (from the rows their slices name,
 * read at the tensors' own offsets), for uneven cuts, tiny pieces and one piece; the rows each
 * piece gets are those the attention defines (o by token, states by checkpoint, the final state
 * with the last token); layouts that do not describe the file are refused.
 */
class OutputLayoutTest {
    static final int H = 3;
    static final int DK = 4;
    static final int DV = 5;

    static SafetensorsHeader lightningHeader(long t, int every, boolean normalized) {
        List<SafetensorsHeader.Spec> specs = new ArrayList<>();
        specs.add(new SafetensorsHeader.Spec("o", DType.BF16, t, H, DV));
        specs.add(new SafetensorsHeader.Spec("final_state", DType.F32, H, DK, DV));
        if (normalized) {
            specs.add(new SafetensorsHeader.Spec("final_normalizer", DType.F32, H, DK));
        }
        if (every > 0) {
            specs.add(new SafetensorsHeader.Spec("states", DType.F32, t / every, H, DK, DV));
            if (normalized) {
                specs.add(new SafetensorsHeader.Spec("normalizers", DType.F32, t / every, H, DK));
            }
        }
        return SafetensorsHeader.layout("x.safetensors", specs, Map.of());
    }

    static SafetensorsHeader softmaxHeader(long t, int hq, boolean lse) {
        List<SafetensorsHeader.Spec> specs = new ArrayList<>();
        specs.add(new SafetensorsHeader.Spec("o", DType.F16, t, hq, DV));
        if (lse) {
            specs.add(new SafetensorsHeader.Spec("lse", DType.F32, t, hq));
        }
        return SafetensorsHeader.layout("y.safetensors", specs, Map.of());
    }

    /** A file of random data under {@code h}. */
    static byte[] randomFile(SafetensorsHeader h, long seed) {
        byte[] file = new byte[(int) h.fileSize()];
        new SplittableRandom(seed).nextBytes(file);
        System.arraycopy(h.encode(), 0, file, 0, (int) h.dataStart());
        return file;
    }

    /**
     * The file rebuilt from the pieces' shares: the header, then for each piece and stream the
     * rows its slices name, taken from {@code file} at the tensor's own offsets and put at the
     * share's begin. Bytes no share covers stay 0, so a gap shows.
     */
    static byte[] rebuild(OutputLayout layout, long[] pieces, byte[] file) {
        SafetensorsHeader h = layout.header();
        byte[] out = new byte[file.length];
        System.arraycopy(file, 0, out, 0, (int) h.dataStart());
        boolean[] covered = new boolean[file.length];
        long start = 0;
        for (long n : pieces) {
            for (OutputLayout.Share s : layout.share(start, start + n)) {
                long at = s.begin;
                for (OutputLayout.Slice slice : s.slices) {
                    TensorEntry t = h.tensor(slice.tensor);
                    long row = t.byteLength() / t.dim(0);
                    int len = (int) ((slice.to - slice.from) * row);
                    System.arraycopy(file, (int) (t.begin() + slice.from * row), out, (int) at, len);
                    for (int i = 0; i < len; i++) {
                        assertTrue(!covered[(int) at + i], "byte " + (at + i) + " written twice");
                        covered[(int) at + i] = true;
                    }
                    at += len;
                }
                assertEquals(s.begin + s.bytes, at, s.stream + ": the share's bytes are its slices'");
            }
            start += n;
        }
        return out;
    }

    /** Uneven pieces, tiny ones among them, adding up to {@code t}. */
    static long[] pieces(long t, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        List<Long> p = new ArrayList<>();
        for (long left = t; left > 0; ) {
            long n = Math.min(left, r.nextInt(4) == 0 ? 1 + r.nextInt(3) : 1 + r.nextInt(300));
            p.add(n);
            left -= n;
        }
        return p.stream().mapToLong(Long::longValue).toArray();
    }

    @Test
    void lightningSharesRebuildTheFile() {
        for (long t : new long[] {1, 63, 1000}) {
            for (int every : new int[] {0, 1, 128}) {
                for (boolean normalized : new boolean[] {false, true}) {
                    SafetensorsHeader h = lightningHeader(t, every, normalized);
                    OutputLayout layout = OutputLayout.lightning(h, t, every);
                    byte[] file = randomFile(h, t * 31 + every);
                    for (long[] pieces : List.of(new long[] {t}, pieces(t, every + t), ones(t))) {
                        String what = "T " + t + ", every " + every + ", normalized " + normalized + ", pieces "
                                + pieces.length;
                        assertArrayEquals(file, rebuild(layout, pieces, file), what);
                        assertEquals(shareCount(layout, pieces), layout.tiling(pieces).size(), what);
                    }
                }
            }
        }
    }

    @Test
    void lightningRowsFollowTheirTokens() {
        SafetensorsHeader h = lightningHeader(1000, 128, true);
        OutputLayout layout = OutputLayout.lightning(h, 1000, 128);
        assertEquals(List.of("o", "states", "normalizers"), layout.streams());
        // tokens [100, 300): o rows 100..299, the state after token 255 (row 1), no final state
        List<OutputLayout.Share> mid = layout.share(100, 300);
        assertEquals(List.of("o", "states", "normalizers"), streams(mid));
        assertSlice(mid.get(0).slices.get(0), "o", 100, 300);
        assertEquals(1, mid.get(0).slices.size());
        assertSlice(mid.get(1).slices.get(0), "states", 0, 2); // after tokens 127 and 255
        assertEquals(h.tensor("o").begin() + 100L * H * DV * 2, mid.get(0).begin);
        // tokens [900, 1000): o rows, then final_state and final_normalizer in the o stream; state after 895 is before
        List<OutputLayout.Share> last = layout.share(900, 1000);
        assertEquals(List.of("o"), streams(last), "no checkpoint in (900, 1000]: after token 1023 would be the next");
        assertEquals(3, last.get(0).slices.size());
        assertSlice(last.get(0).slices.get(1), "final_state", 0, H);
        assertSlice(last.get(0).slices.get(2), "final_normalizer", 0, H);
        assertEquals(100L * H * DV * 2 + 4L * H * DK * DV + 4L * H * DK, last.get(0).bytes);
        // one token that completes a checkpoint: token 127
        assertSlice(layout.share(127, 128).get(1).slices.get(0), "states", 0, 1);
        assertEquals(List.of("o"), streams(layout.share(128, 129)));
    }

    @Test
    void softmaxSharesRebuildTheFile() {
        for (long t : new long[] {1, 63, 1000}) {
            for (boolean lse : new boolean[] {false, true}) {
                SafetensorsHeader h = softmaxHeader(t, 6, lse);
                OutputLayout layout = OutputLayout.softmax(h, t);
                assertEquals(lse ? List.of("o", "lse") : List.of("o"), layout.streams());
                byte[] file = randomFile(h, t + (lse ? 1 : 0));
                for (long[] pieces : List.of(new long[] {t}, pieces(t, t), ones(t))) {
                    assertArrayEquals(file, rebuild(layout, pieces, file), "T " + t + ", lse " + lse);
                }
                List<OutputLayout.Share> s = layout.share(t / 2, t);
                assertSlice(s.get(0).slices.get(0), "o", t / 2, t);
                if (lse && t > 1) {
                    assertSlice(s.get(1).slices.get(0), "lse", t / 2, t);
                    assertEquals(h.tensor("lse").begin() + (t / 2) * 6 * 4, s.get(1).begin);
                }
            }
        }
    }

    @Test
    void layoutsThatDoNotDescribeTheFileAreRefused() {
        SafetensorsHeader h = lightningHeader(1000, 128, false);
        // states in the header, none in the layout
        IllegalArgumentException missing = assertThrows(IllegalArgumentException.class,
                () -> OutputLayout.lightning(h, 1000, 0));
        assertTrue(missing.getMessage().contains("states"), missing.getMessage());
        // a cut that gives another row count
        IllegalArgumentException rows = assertThrows(IllegalArgumentException.class,
                () -> OutputLayout.lightning(h, 1000, 100));
        assertTrue(rows.getMessage().contains("7 rows") && rows.getMessage().contains("10"), rows.getMessage());
        // o over other tokens than the layout's
        assertThrows(IllegalArgumentException.class, () -> OutputLayout.softmax(softmaxHeader(10, 2, true), 11));
        // a stream whose tensors do not follow each other in the file: o then states (final_state lies between)
        Map<String, List<OutputLayout.Column>> streams = new LinkedHashMap<>();
        streams.put("o", List.of(OutputLayout.column("o", OutputLayout.Cut.PER_TOKEN),
                OutputLayout.column("states", OutputLayout.Cut.every(128))));
        streams.put("final", List.of(OutputLayout.column("final_state", OutputLayout.Cut.AT_END)));
        OutputLayout odd = new OutputLayout(h, 1000, streams);
        odd.share(0, 100); // no state in it: fine
        IllegalStateException apart = assertThrows(IllegalStateException.class, () -> odd.share(0, 200));
        assertTrue(apart.getMessage().contains("states"), apart.getMessage());
        // pieces that do not add up to the tokens
        OutputLayout good = OutputLayout.lightning(h, 1000, 128);
        assertThrows(IllegalStateException.class, () -> good.tiling(new long[] {500, 499}));
    }

    private static long[] ones(long t) {
        long[] p = new long[(int) Math.min(t, 200)];
        Arrays.fill(p, 1);
        p[p.length - 1] += t - p.length;
        return p;
    }

    private static int shareCount(OutputLayout layout, long[] pieces) {
        int n = 0;
        long start = 0;
        for (long p : pieces) {
            n += layout.share(start, start + p).size();
            start += p;
        }
        return n;
    }

    private static List<String> streams(List<OutputLayout.Share> shares) {
        List<String> names = new ArrayList<>();
        shares.forEach(s -> names.add(s.stream));
        return names;
    }

    private static void assertSlice(OutputLayout.Slice s, String tensor, long from, long to) {
        assertEquals(tensor + " [" + from + ", " + to + ")", s.tensor + " [" + s.from + ", " + s.to + ")");
    }
}
