package dev.lightning.attention.it;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.it.JobHarness.Outcome;
import dev.lightning.attention.it.JobHarness.Result;
import dev.lightning.attention.it.JobHarness.Sequence;
import dev.lightning.attention.tensor.DType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static dev.lightning.attention.it.JobHarness.lightning;
import static dev.lightning.attention.it.JobHarness.relativeError;
import static dev.lightning.attention.it.JobHarness.succeed;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * {@code --initial-states}: old tokens in one run, new tokens in a second run that continues from
 * the first run's stored final states, through the command line on real directories. The second
 * run's outputs are held against a single run over the concatenation and against the float64
 * recurrence over the concatenation (computed here from the inputs, not by the job).
 */
class AppendJobTest {
    static final String MASTER = "local[2]";

    @TempDir
    Path tmp;

    private List<String> args(Path in, Path out, List<String> extra, String... more) {
        List<String> a = new ArrayList<>(List.of("run", "--input", in.toString(), "--output", out.toString(),
                "--master", MASTER));
        a.addAll(extra);
        a.addAll(List.of(more));
        return a;
    }

    private static Outcome run(List<String> a) {
        return succeed(a.toArray(new String[0]));
    }

    /** The {@code __metadata__} of a safetensors file. */
    static JsonNode metadata(Path file) throws IOException {
        byte[] raw = Files.readAllBytes(file);
        long n = java.nio.ByteBuffer.wrap(raw, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        return new ObjectMapper().readTree(new String(raw, 8, (int) n, java.nio.charset.StandardCharsets.UTF_8))
                .path("__metadata__");
    }

    /** Rows [from, to) of a [T, ...] float array with {@code row} values per token. */
    private static float[] rows(float[] x, int row, int from, int to) {
        return Arrays.copyOfRange(x, from * row, to * row);
    }

    /**
     * Plain attention, Dk != Dv, H = 3: "a" cut at 333 (not a chunk multiple), "b" with a 1-token
     * first run, "c" only in run 1 (untouched), "d" only in run 2 (no stored state: from zero), "e"
     * only in run 2 with its own initial_state (from that).
     * Run 2 unsplit and split into 64-token pieces (the stored state enters the scan as the
     * incoming state of piece 0); both equal the single run and the float64 reference.
     */
    @Test
    void appendEqualsOneRunOverTheConcatenation() throws IOException {
        float[] slopes = {1e-6f, 0.05f, 1f};
        Sequence a = Sequence.random(1, 1000, 3, 16, 20, DType.F32, slopes, false);
        Sequence b = Sequence.random(2, 63, 3, 16, 20, DType.F32, null, false);
        Sequence c = Sequence.random(3, 100, 3, 16, 20, DType.F32, null, false);
        Sequence d = Sequence.random(4, 200, 3, 16, 20, DType.F32, null, false);
        Sequence e = Sequence.random(6, 90, 3, 16, 20, DType.F32, null, true); // its own initial_state
        int cutA = 333;
        int cutB = 1;
        Path oldIn = JobHarness.writeSequences(tmp.resolve("old-in"), Map.of(
                "a.safetensors", a.range(0, cutA, null), "b.safetensors", b.range(0, cutB, null),
                "c.safetensors", c));
        Path newIn = JobHarness.writeSequences(tmp.resolve("new-in"), Map.of(
                "a.safetensors", a.range(cutA, a.tokens, null), "b.safetensors", b.range(cutB, b.tokens, null),
                "d.safetensors", d, "e.safetensors", e));
        Path old = tmp.resolve("old");
        run(args(oldIn, old, List.of(), "--partition-tokens", "128"));

        Result refA = a.reference(1.0);
        Result refB = b.reference(1.0);
        Result refD = d.reference(1.0);
        Result refE = e.reference(1.0);
        int rowA = 3 * 20;
        for (String partition : new String[] {"100000", "64"}) {
            Path out = tmp.resolve("new-" + partition);
            Outcome o = run(args(newIn, out, List.of("--initial-states", old.toString()), "--partition-tokens",
                    partition, "--window-bytes", "4k"));
            assertTrue(o.out.contains("2 of 4 sequences continue from a stored state"), o.out);
            if ("64".equals(partition)) {
                assertTrue(o.out.contains("scan"), "run 2 split: " + o.out);
            }
            Result gotA = Result.read(out.resolve("a.safetensors"));
            Result gotB = Result.read(out.resolve("b.safetensors"));
            Result gotD = Result.read(out.resolve("d.safetensors"));
            Result gotE = Result.read(out.resolve("e.safetensors"));
            String what = "partition " + partition;
            double errA = relativeError(gotA.o, rows(refA.o, rowA, cutA, a.tokens));
            assertTrue(errA <= 1e-5, what + ": a o vs float64 " + errA);
            assertTrue(relativeError(gotA.state, refA.state) <= 1e-5, what + ": a final state vs float64");
            assertTrue(relativeError(gotB.o, rows(refB.o, rowA, cutB, b.tokens)) <= 1e-5, what + ": b o vs float64");
            assertTrue(relativeError(gotB.state, refB.state) <= 1e-5, what + ": b final state vs float64");
            // no stored state: from zero, as a run without --initial-states
            assertTrue(relativeError(gotD.o, refD.o) <= 1e-5, what + ": d o vs float64 from zero");
            assertTrue(relativeError(gotD.state, refD.state) <= 1e-5, what + ": d state vs float64 from zero");
            // no stored state, its own initial_state: from that
            assertTrue(relativeError(gotE.o, refE.o) <= 1e-5, what + ": e o vs float64 from its initial_state");
            // where each output sits in its whole sequence
            assertEquals("333", metadata(out.resolve("a.safetensors")).path("token_offset").asText(), what);
            assertEquals("1", metadata(out.resolve("b.safetensors")).path("token_offset").asText(), what);
            assertTrue(metadata(out.resolve("d.safetensors")).path("token_offset").isMissingNode(), what);
            assertTrue(metadata(out.resolve("e.safetensors")).path("token_offset").isMissingNode(), what);
        }
        // against the job's own single run over the concatenation
        Path wholeIn = JobHarness.writeSequences(tmp.resolve("whole-in"), Map.of("a.safetensors", a));
        Path whole = tmp.resolve("whole");
        run(args(wholeIn, whole, List.of(), "--partition-tokens", "64"));
        Result one = Result.read(whole.resolve("a.safetensors"));
        Result split = Result.read(tmp.resolve("new-64").resolve("a.safetensors"));
        assertTrue(relativeError(split.o, rows(one.o, rowA, cutA, a.tokens)) <= 1e-5, "append vs one run: o");
        assertTrue(relativeError(split.state, one.state) <= 1e-5, "append vs one run: final state");

        // the complete state set: a, b, d here, c still in the old output, with the tokens each has absorbed
        JsonNode m = new ObjectMapper().readTree(tmp.resolve("new-64").resolve("_states.json").toFile());
        assertEquals("lightning-states-1", m.path("format").asText());
        JsonNode seqs = m.path("sequences");
        assertEquals(5, seqs.size(), m.toString());
        assertEquals("a.safetensors", seqs.path("a.safetensors").path("file").asText());
        assertEquals(1000, seqs.path("a.safetensors").path("tokens").asLong());
        assertEquals(63, seqs.path("b.safetensors").path("tokens").asLong());
        assertEquals(200, seqs.path("d.safetensors").path("tokens").asLong());
        String cUri = seqs.path("c.safetensors").path("uri").asText();
        assertEquals(old.resolve("c.safetensors").toUri().getPath(), java.net.URI.create(cUri).getPath(), m.toString());
        assertEquals(100, seqs.path("c.safetensors").path("tokens").asLong());
        assertFalse(Files.exists(tmp.resolve("new-64").resolve("c.safetensors")), "untouched: not copied");

        // a third run from the second's state set: c is found through the manifest, b through its file here
        Sequence c2 = Sequence.random(5, 70, 3, 16, 20, DType.F32, null, false);
        Path thirdIn = JobHarness.writeSequences(tmp.resolve("third-in"), Map.of("c.safetensors", c2));
        Path third = tmp.resolve("third");
        run(args(thirdIn, third, List.of("--initial-states", tmp.resolve("new-64").toString())));
        float[] cq = concat(c.q, c2.q);
        Sequence cc = new Sequence(170, 3, 16, 20, DType.F32, cq, concat(c.k, c2.k), concat(c.v, c2.v), null, null);
        Result refC = cc.reference(1.0);
        Result gotC = Result.read(third.resolve("c.safetensors"));
        assertTrue(relativeError(gotC.o, rows(refC.o, rowA, 100, 170)) <= 1e-5, "c continued through the manifest");
        JsonNode m3 = new ObjectMapper().readTree(third.resolve("_states.json").toFile()).path("sequences");
        assertEquals(170, m3.path("c.safetensors").path("tokens").asLong());
        assertEquals(tmp.resolve("new-64").resolve("a.safetensors").toUri().getPath(),
                java.net.URI.create(m3.path("a.safetensors").path("uri").asText()).getPath());
        assertEquals(1000, m3.path("a.safetensors").path("tokens").asLong());

        // a directory without a manifest: a continued result's tokens are its token_offset + T
        Path bare = Files.createDirectories(tmp.resolve("bare"));
        Files.copy(tmp.resolve("new-64").resolve("a.safetensors"), bare.resolve("a.safetensors"));
        Files.write(bare.resolve("_SUCCESS"), new byte[0]);
        Path fourth = tmp.resolve("fourth");
        run(args(thirdIn, fourth, List.of("--initial-states", bare.toString())));
        assertEquals(1000, new ObjectMapper().readTree(fourth.resolve("_states.json").toFile()).path("sequences")
                .path("a.safetensors").path("tokens").asLong());
    }

    private static float[] concat(float[] x, float[] y) {
        float[] r = Arrays.copyOf(x, x.length + y.length);
        System.arraycopy(y, 0, r, x.length, y.length);
        return r;
    }

    /**
     * Normalized elu1 with grouped heads (Hq = 6, Hk = 2, Hv = 3, H = 6), states every 64 tokens:
     * the stored z continues too, split and unsplit, and the recorded states of run 2 (counted from
     * its first token; the cut is a multiple of 64) are those of the concatenation from token 320.
     * Two append runs write the same bytes.
     */
    @Test
    void normalizedAppendWithCheckpoints() throws IOException {
        Sequence s = Sequence.grouped(11, 900, 6, 2, 3, 8, 12, DType.F32, null, false, false);
        int cut = 320;
        Path oldIn = JobHarness.writeSequences(tmp.resolve("old-in"), Map.of("s.safetensors", s.range(0, cut, null)));
        Path newIn = JobHarness.writeSequences(tmp.resolve("new-in"),
                Map.of("s.safetensors", s.range(cut, s.tokens, null)));
        List<String> variant = List.of("--feature-map", "elu1", "--normalize", "--normalize-eps", "1e-4",
                "--state-every", "64");
        Path old = tmp.resolve("old");
        run(args(oldIn, old, variant, "--partition-tokens", "128"));
        Result ref = s.reference(1.0, FeatureMap.ELU1, 1e-4, 64);
        int row = 6 * 12;
        int state = 6 * 8 * 12;
        int z = 6 * 8;
        List<byte[]> bytes = new ArrayList<>();
        for (String partition : new String[] {"100000", "128", "128"}) {
            Path out = tmp.resolve("new-" + partition + "-" + bytes.size());
            List<String> a = new ArrayList<>(variant);
            a.addAll(List.of("--initial-states", old.toString()));
            run(args(newIn, out, a, "--partition-tokens", partition, "--window-bytes", "4k"));
            Result got = Result.read(out.resolve("s.safetensors"));
            String what = "partition " + partition;
            assertEquals("320", metadata(out.resolve("s.safetensors")).path("token_offset").asText(), what);
            assertTrue(relativeError(got.o, rows(ref.o, row, cut, s.tokens)) <= 1e-5, what + ": o vs float64");
            assertTrue(relativeError(got.state, ref.state) <= 1e-5, what + ": final state");
            assertTrue(relativeError(got.normalizer, ref.normalizer) <= 1e-5, what + ": final normalizer");
            // run 2 records floor(580 / 64) = 9 states, after its tokens 63, 127, ...: the whole's 5th on
            assertEquals(9 * state, got.states.length);
            assertTrue(relativeError(got.states, rows(ref.states, state, cut / 64, cut / 64 + 9)) <= 1e-5,
                    what + ": recorded states");
            assertTrue(relativeError(got.normalizers, rows(ref.normalizers, z, cut / 64, cut / 64 + 9)) <= 1e-5,
                    what + ": recorded normalizers");
            bytes.add(Files.readAllBytes(out.resolve("s.safetensors")));
            bytes.add(Files.readAllBytes(out.resolve("_states.json")));
        }
        assertArrayEquals(bytes.get(2), bytes.get(4), "two split append runs: the same output bytes");
        assertArrayEquals(bytes.get(3), bytes.get(5), "two split append runs: the same manifest bytes");
    }

    /**
     * Refused before compute with exit 2: a stored state of another shape (naming the sequence,
     * what was expected and what was found), a stored plain state in a --normalize run, an input
     * holding its own initial_state as well, a stored result of the input's name that is not a
     * readable state (not started from zero), a directory that is not a committed output, and
     * --initial-states overlapping --output.
     */
    @Test
    void refusesStatesThatDoNotFit() throws IOException {
        Path oldIn = JobHarness.writeSequences(tmp.resolve("old-in"), Map.of(
                "x.safetensors", Sequence.random(1, 50, 3, 8, 6, DType.F32, null, false)));
        Path old = tmp.resolve("old");
        run(args(oldIn, old, List.of()));

        Path wrongHeads = JobHarness.writeSequences(tmp.resolve("heads"), Map.of(
                "x.safetensors", Sequence.random(2, 40, 2, 8, 6, DType.F32, null, false)));
        Outcome o = lightning(args(wrongHeads, tmp.resolve("o1"), List.of("--initial-states", old.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("x.safetensors") && o.err.contains("expected S [2, 8, 6]")
                && o.err.contains("found S [3, 8, 6]"), o.err);
        assertFalse(o.out.contains("pass 2"), "nothing computed: " + o.out);

        Path same = JobHarness.writeSequences(tmp.resolve("same"), Map.of(
                "x.safetensors", Sequence.random(3, 40, 3, 8, 6, DType.F32, null, false)));
        o = lightning(args(same, tmp.resolve("o2"), List.of("--initial-states", old.toString(), "--normalize"))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("x.safetensors") && o.err.contains("without a normalizer z")
                && o.err.contains("--normalize"), o.err);

        Path own = JobHarness.writeSequences(tmp.resolve("own"), Map.of(
                "x.safetensors", Sequence.random(4, 40, 3, 8, 6, DType.F32, null, true)));
        o = lightning(args(own, tmp.resolve("o3"), List.of("--initial-states", old.toString())).toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("x.safetensors") && o.err.contains("initial_state")
                && o.err.contains("stored state"), o.err);

        o = lightning(args(same, tmp.resolve("o5"), List.of("--initial-states", old.toString(), "--attention",
                "softmax")).toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("--initial-states") && o.err.contains("lightning attention only"), o.err);

        // other decay rates: its own slope tensor, or other default slopes
        Path slopes = JobHarness.writeSequences(tmp.resolve("slopes"), Map.of(
                "x.safetensors", Sequence.random(5, 40, 3, 8, 6, DType.F32, new float[] {1, 2, 3}, false)));
        o = lightning(args(slopes, tmp.resolve("o7"), List.of("--initial-states", old.toString())).toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("x.safetensors") && o.err.contains("decayed at slopes")
                && o.err.contains("[1.0, 2.0, 3.0]"), o.err);
        o = lightning(args(same, tmp.resolve("o8"), List.of("--initial-states", old.toString(), "--default-slopes",
                "transnormer", "--layer", "1", "--layers", "3")).toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("decayed at slopes"), o.err);

        Path broken = Files.createDirectories(tmp.resolve("broken"));
        Files.write(broken.resolve("x.safetensors"), new byte[] {1, 2, 3});
        Files.write(broken.resolve("_SUCCESS"), new byte[0]);
        o = lightning(args(same, tmp.resolve("o6"), List.of("--initial-states", broken.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("x.safetensors: the stored result of that name holds no readable state"), o.err);

        Path uncommitted = Files.createDirectories(tmp.resolve("uncommitted"));
        Files.copy(old.resolve("x.safetensors"), uncommitted.resolve("x.safetensors"));
        o = lightning(args(same, tmp.resolve("o4"), List.of("--initial-states", uncommitted.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("_SUCCESS") && o.err.contains("uncommitted"), o.err);

        o = lightning(args(same, old, List.of("--initial-states", old.toString(), "--overwrite"))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("overlaps --initial-states"), o.err);
        o = lightning(args(same, old.resolve("sub"), List.of("--initial-states", old.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("overlaps --initial-states"), o.err);
        assertFalse(Files.exists(old.resolve("sub")));
    }

    /**
     * --resume: a split append run failed in pass 2 resumes to the bytes of an uninterrupted one;
     * a stored state file that changed since (its modification time) makes --resume refuse, naming
     * the initial states.
     */
    @Test
    void resumedAppendEqualsUninterrupted() throws IOException {
        Sequence s = Sequence.random(7, 700, 2, 8, 10, DType.F32, null, false);
        Path oldIn = JobHarness.writeSequences(tmp.resolve("old-in"), Map.of("s.safetensors", s.range(0, 200, null)));
        Path newIn = JobHarness.writeSequences(tmp.resolve("new-in"), Map.of("s.safetensors", s.range(200, 700, null)));
        Path old = tmp.resolve("old");
        run(args(oldIn, old, List.of()));
        List<String> append = List.of("--initial-states", old.toString(), "--partition-tokens", "64");
        Path expected = tmp.resolve("expected");
        run(args(newIn, expected, append));

        Path out = tmp.resolve("resumed");
        Outcome failed = JobHarness.failingAt("pass2:3", args(newIn, out, append).toArray(new String[0]));
        assertEquals(1, failed.status, failed.out + failed.err);
        assertFalse(Files.exists(out.resolve("s.safetensors")), "nothing published");

        Path state = old.resolve("s.safetensors");
        java.nio.file.attribute.FileTime was = Files.getLastModifiedTime(state);
        Files.setLastModifiedTime(state, java.nio.file.attribute.FileTime.fromMillis(was.toMillis() + 5000));
        List<String> resume = new ArrayList<>(append);
        resume.add("--resume");
        Outcome refused = lightning(args(newIn, out, resume).toArray(new String[0]));
        assertEquals(2, refused.status, refused.out + refused.err);
        assertTrue(refused.err.contains("initialStates"), refused.err);

        Files.setLastModifiedTime(state, was);
        Outcome resumed = run(args(newIn, out, resume));
        assertTrue(resumed.out.contains("resumed:"), resumed.out);
        for (String f : new String[] {"s.safetensors", "_states.json"}) {
            assertArrayEquals(Files.readAllBytes(expected.resolve(f)), Files.readAllBytes(out.resolve(f)), f);
        }
    }

    /**
     * Segment i of {@code s}, tokens [bounds[i], bounds[i + 1]), as the input directory {@code prefix + i} holding
     * one file, s.safetensors: the consecutive segments of one sequence an append chain takes.
     */
    private Path[] segments(String prefix, Sequence s, int... bounds) throws IOException {
        Path[] dirs = new Path[bounds.length - 1];
        for (int i = 0; i < dirs.length; i++) {
            dirs[i] = JobHarness.writeSequences(tmp.resolve(prefix + i), Map.of("s.safetensors",
                    s.range(bounds[i], bounds[i + 1], null)));
        }
        return dirs;
    }

    /** Rewrites {@code file}'s header with {@code entries} added to its {@code __metadata__}. */
    static void putMetadata(Path file, Map<String, String> entries) throws IOException {
        editMetadata(file, meta -> entries.forEach(meta::put));
    }

    /** Rewrites {@code file}'s header with its {@code __metadata__} changed by {@code edit}. */
    static void editMetadata(Path file, java.util.function.Consumer<com.fasterxml.jackson.databind.node.ObjectNode> edit)
            throws IOException {
        byte[] raw = Files.readAllBytes(file);
        int n = (int) java.nio.ByteBuffer.wrap(raw, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        ObjectMapper json = new ObjectMapper();
        com.fasterxml.jackson.databind.node.ObjectNode header = (com.fasterxml.jackson.databind.node.ObjectNode)
                json.readTree(new String(raw, 8, n, java.nio.charset.StandardCharsets.UTF_8));
        com.fasterxml.jackson.databind.node.ObjectNode meta = header.has("__metadata__")
                ? (com.fasterxml.jackson.databind.node.ObjectNode) header.get("__metadata__")
                : header.putObject("__metadata__");
        edit.accept(meta);
        StringBuilder text = new StringBuilder(json.writeValueAsString(header));
        while (text.length() % 8 != 0) {
            text.append(' ');
        }
        byte[] h = text.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8);
        java.nio.ByteBuffer out = java.nio.ByteBuffer.allocate(8 + h.length + raw.length - 8 - n)
                .order(java.nio.ByteOrder.LITTLE_ENDIAN);
        out.putLong(h.length).put(h).put(raw, 8 + n, raw.length - 8 - n);
        Files.write(file, out.array());
    }

    /**
     * A manifest names an untouched state by where it lies in an earlier directory; when that
     * file is replaced since (here: the earlier directory rewritten with --overwrite from another
     * sequence of the same name), the next append is refused before compute instead of continuing
     * from the other state. A manifest without the file's size and time (as written before they
     * were recorded) is still read, and its token count, which the replaced file contradicts, is
     * refused too.
     */
    @Test
    void refusesAStoredStateReplacedSinceTheManifestNamedIt() throws IOException {
        Sequence a = Sequence.random(21, 300, 2, 8, 6, DType.F32, null, false);
        Sequence b = Sequence.random(22, 300, 2, 8, 6, DType.F32, null, false);
        Sequence other = Sequence.random(23, 167, 2, 8, 6, DType.F32, null, false);
        Path s1 = tmp.resolve("s1");
        run(args(JobHarness.writeSequences(tmp.resolve("d1"), Map.of("a.safetensors", a.range(0, 200, null),
                "b.safetensors", b.range(0, 200, null))), s1, List.of()));
        Path s2 = tmp.resolve("s2");
        run(args(JobHarness.writeSequences(tmp.resolve("d2"), Map.of("a.safetensors", a.range(200, 300, null))), s2,
                List.of("--initial-states", s1.toString())));
        Path d3 = JobHarness.writeSequences(tmp.resolve("d3"), Map.of("b.safetensors", b.range(200, 300, null)));
        // an append from s2 that publishes into s1, which holds b's state that s2's manifest names: it would replace
        // that state (and break s2's chain for good), so it is refused before compute, and s1 stays as it was
        byte[] bBefore = Files.readAllBytes(s1.resolve("b.safetensors"));
        Outcome o = lightning(args(d3, s1, List.of("--initial-states", s2.toString()), "--overwrite")
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("holds") && o.err.contains("the stored state of b.safetensors")
                && o.err.contains(s2.toString()), o.err);
        assertFalse(o.out.contains("pass 2"), "nothing computed: " + o.out);
        assertTrue(java.util.Arrays.equals(bBefore, Files.readAllBytes(s1.resolve("b.safetensors"))), "s1 untouched");
        // s1 rewritten by a run without --initial-states: b is now another sequence's state, of 167 tokens
        run(args(JobHarness.writeSequences(tmp.resolve("d1b"), Map.of("b.safetensors", other)), s1, List.of(),
                "--overwrite"));
        o = lightning(args(d3, tmp.resolve("s3"), List.of("--initial-states", s2.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("b.safetensors") && o.err.contains(s1.resolve("b.safetensors").toString())
                && o.err.contains("replaced"), o.err);
        assertFalse(o.out.contains("pass 2"), "nothing computed: " + o.out);
        assertFalse(Files.exists(tmp.resolve("s3").resolve("b.safetensors")));
        JsonNode entry = new ObjectMapper().readTree(s2.resolve("_states.json").toFile()).path("sequences")
                .path("b.safetensors");
        assertTrue(entry.has("uri") && entry.has("bytes") && entry.has("modified"), entry.toString());

        // the same manifest as one written before the files were recorded: the tokens disagree
        String text = Files.readString(s2.resolve("_states.json"));
        String old = text.replaceAll("\"bytes\" : \\d+,\\s*", "").replaceAll(",\\s*\"modified\" : \\d+", "");
        assertFalse(old.contains("modified"), old);
        Files.writeString(s2.resolve("_states.json"), old);
        o = lightning(args(d3, tmp.resolve("s3"), List.of("--initial-states", s2.toString())).toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("b.safetensors") && o.err.contains("200") && o.err.contains("167"), o.err);
        assertFalse(o.out.contains("pass 2"), "nothing computed: " + o.out);
    }

    /**
     * Each output records the input it was computed from (size and content sample), so a segment
     * appended onto the state that already absorbed it is refused (its tokens would count twice):
     * the first run's own input onto its output, and an append's input onto that append's output,
     * also from a copy under another directory. Rerunning the same append (from the same stored
     * state) still works and writes the same bytes. Each continued output also records the inputs
     * its stored state had absorbed before (earlier_inputs), so any earlier segment of the chain is
     * refused too: in one file, in the parts form's index and in a checksums result.
     */
    @Test
    void refusesTheSameSegmentAppendedTwice() throws IOException {
        Sequence s = Sequence.random(31, 300, 2, 8, 6, DType.F32, null, false);
        Path[] segs = segments("seg", s, 0, 100, 200, 300);
        Path seg0 = segs[0], seg1 = segs[1], seg2 = segs[2];
        Path s0 = tmp.resolve("s0");
        run(args(seg0, s0, List.of()));
        Outcome o = lightning(args(seg0, tmp.resolve("x0"), List.of("--initial-states", s0.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("s.safetensors") && o.err.contains("twice"), o.err);
        assertFalse(o.out.contains("pass 2"), "nothing computed: " + o.out);

        Path s1 = tmp.resolve("s1");
        run(args(seg1, s1, List.of("--initial-states", s0.toString())));
        byte[] first = Files.readAllBytes(s1.resolve("s.safetensors"));
        Path copy = Files.createDirectories(tmp.resolve("copy"));
        Files.copy(seg1.resolve("s.safetensors"), copy.resolve("s.safetensors"));
        for (Path in : new Path[] {seg1, copy}) {
            o = lightning(args(in, tmp.resolve("x1"), List.of("--initial-states", s1.toString()))
                    .toArray(new String[0]));
            assertEquals(2, o.status, in + ": " + o.out + o.err);
            assertTrue(o.err.contains("s.safetensors") && o.err.contains("twice"), o.err);
        }
        // the same append again: it continues from s0, which recorded seg0
        run(args(seg1, s1, List.of("--initial-states", s0.toString()), "--overwrite"));
        assertArrayEquals(first, Files.readAllBytes(s1.resolve("s.safetensors")), "a rerun writes the same bytes");
        run(args(seg2, tmp.resolve("s2"), List.of("--initial-states", s1.toString())));
        Result got = Result.read(tmp.resolve("s2").resolve("s.safetensors"));
        assertTrue(relativeError(got.state, s.reference(1.0).state) <= 1e-5, "the chain's final state");

        // the chain is recorded whole: s2's result lists seg1's input, then seg0's, so either given again onto s2 is
        // refused (it had only compared the stored result's own input, so seg0 onto s2 ran and counted it twice)
        JsonNode meta = metadata(tmp.resolve("s2").resolve("s.safetensors"));
        String[] earlier = meta.path("earlier_inputs").asText().split(",");
        assertEquals(2, earlier.length, meta.toString());
        assertEquals(metadata(s1.resolve("s.safetensors")).path("input_bytes").asText() + "/"
                + metadata(s1.resolve("s.safetensors")).path("input_sample").asText(), earlier[0], meta.toString());
        assertEquals(metadata(s0.resolve("s.safetensors")).path("input_bytes").asText() + "/"
                + metadata(s0.resolve("s.safetensors")).path("input_sample").asText(), earlier[1], meta.toString());
        for (Path in : new Path[] {seg0, seg1}) {
            o = lightning(args(in, tmp.resolve("x2"), List.of("--initial-states", tmp.resolve("s2").toString()))
                    .toArray(new String[0]));
            assertEquals(2, o.status, in + ": " + o.out + o.err);
            assertTrue(o.err.contains("s.safetensors") && o.err.contains("in an earlier segment")
                    && o.err.contains("twice"), o.err);
            assertFalse(o.out.contains("pass 2"), "nothing computed: " + o.out);
        }
        // split into pieces and written as parts, and as a checksums result: the index and the result record it too
        Sequence longer = Sequence.random(32, 900, 2, 8, 6, DType.F32, null, false);
        Path[] ls = segments("l", longer, 0, 300, 600, 900);
        Path l0 = ls[0], l1 = ls[1], l2 = ls[2];
        run(args(l0, tmp.resolve("t0"), List.of()));
        run(args(l1, tmp.resolve("t1"), List.of("--initial-states", tmp.resolve("t0").toString()),
                "--partition-tokens", "128", "--output-form", "parts"));
        assertTrue(Files.exists(tmp.resolve("t1").resolve("s.safetensors.index.json")), "the parts form");
        run(args(l2, tmp.resolve("t2"), List.of("--initial-states", tmp.resolve("t1").toString()),
                "--partition-tokens", "128", "--output-mode", "checksums"));
        for (Path in : new Path[] {l0, l1}) {
            o = lightning(args(in, tmp.resolve("x3"), List.of("--initial-states", tmp.resolve("t2").toString()))
                    .toArray(new String[0]));
            assertEquals(2, o.status, in + ": " + o.out + o.err);
            assertTrue(o.err.contains("s.safetensors") && o.err.contains("in an earlier segment"), o.err);
        }
    }

    /**
     * An input whose metadata says where it starts ({@code token_offset}) is refused when the
     * stored state it would continue has absorbed another count of tokens (a generation skipped),
     * or when --initial-states has none for it, or when the run has no --initial-states at all (a files
     * run and a table run; a token_offset that is no token count too); an input without a stored state is
     * named in a warning (a renamed input starts from zero).
     */
    @Test
    void refusesADeclaredOffsetThatIsNotTheStoredOneAndWarnsOfUnmatchedInputs() throws IOException {
        Sequence s = Sequence.random(41, 300, 2, 8, 6, DType.F32, null, false);
        Path[] segs = segments("seg", s, 0, 100, 200, 300);
        Path seg0 = segs[0], seg1 = segs[1], seg2 = segs[2];
        putMetadata(seg1.resolve("s.safetensors"), Map.of("token_offset", "100"));
        putMetadata(seg2.resolve("s.safetensors"), Map.of("token_offset", "200"));
        Path s0 = tmp.resolve("s0");
        run(args(seg0, s0, List.of()));
        // a later segment without --initial-states: it would start from zero, as if it began the sequence
        Outcome o;
        for (List<String> form : List.of(List.<String>of(), List.of("--output-format", "parquet"))) {
            o = lightning(args(seg1, tmp.resolve("w" + form.size()), form).toArray(new String[0]));
            assertEquals(2, o.status, form + ": " + o.out + o.err);
            assertTrue(o.err.contains("s.safetensors") && o.err.contains("token_offset 100")
                    && o.err.contains("no --initial-states"), o.err);
            assertFalse(Files.exists(tmp.resolve("w" + form.size())), "nothing written: " + o.out);
        }
        Path malformed = Files.createDirectories(tmp.resolve("malformed"));
        Files.copy(seg1.resolve("s.safetensors"), malformed.resolve("s.safetensors"));
        putMetadata(malformed.resolve("s.safetensors"), Map.of("token_offset", "-3"));
        o = lightning(args(malformed, tmp.resolve("w-bad"), List.of()).toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("'-3' is not a token count"), o.err);
        o = lightning(args(seg2, tmp.resolve("x"), List.of("--initial-states", s0.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, o.out + o.err);
        assertTrue(o.err.contains("s.safetensors") && o.err.contains("token_offset 200") && o.err.contains("100"),
                o.err);
        assertFalse(o.out.contains("pass 2"), "nothing computed: " + o.out);
        Path s1 = tmp.resolve("s1");
        run(args(seg1, s1, List.of("--initial-states", s0.toString())));
        assertEquals("100", metadata(s1.resolve("s.safetensors")).path("token_offset").asText());

        // renamed: no stored state of its name
        Path renamed = Files.createDirectories(tmp.resolve("renamed"));
        Files.copy(seg2.resolve("s.safetensors"), renamed.resolve("t.safetensors"));
        o = lightning(args(renamed, tmp.resolve("y"), List.of("--initial-states", s1.toString()))
                .toArray(new String[0]));
        assertEquals(2, o.status, "declares token_offset 200 but would start from zero: " + o.out + o.err);
        assertTrue(o.err.contains("t.safetensors") && o.err.contains("token_offset 200"), o.err);
        Path plain = JobHarness.writeSequences(tmp.resolve("plain"), Map.of("u.safetensors", s.range(200, 300, null)));
        o = run(args(plain, tmp.resolve("z"), List.of("--initial-states", s1.toString())));
        assertTrue(o.out.contains("warning") && o.out.contains("u.safetensors") && o.out.contains("no stored state"),
                o.out);
        run(args(seg2, tmp.resolve("s2"), List.of("--initial-states", s1.toString())));
    }

    /**
     * A stored state whose result records no input (as results written before inputs were recorded) cannot be
     * compared with the segment appended to it; the run continues it and says so in a warning naming the result.
     * A state that records its input gives no such warning.
     */
    @Test
    void warnsWhereAStoredStateRecordsNoInput() throws IOException {
        Sequence s = Sequence.random(33, 150, 2, 8, 6, DType.F32, null, false);
        Path[] segs = segments("seg", s, 0, 50, 100, 150);
        Path seg0 = segs[0], seg1 = segs[1], seg2 = segs[2];
        Path s0 = tmp.resolve("s0");
        run(args(seg0, s0, List.of()));
        Outcome o = run(args(seg1, tmp.resolve("s1"), List.of("--initial-states", s0.toString())));
        assertFalse(o.out.contains("record no input"), o.out);
        editMetadata(s0.resolve("s.safetensors"), meta -> {
            meta.remove("input_bytes");
            meta.remove("input_sample");
        });
        o = run(args(seg1, tmp.resolve("s1-again"), List.of("--initial-states", s0.toString())));
        assertTrue(o.out.contains("warning: --initial-states: 1 stored state(s) record no input")
                && o.out.contains("s0/s.safetensors"), o.out);
        // what s1-again recorded of its chain starts at its own input: seg0's is unknown
        assertTrue(metadata(tmp.resolve("s1-again").resolve("s.safetensors")).path("earlier_inputs").isMissingNode());
        o = run(args(seg2, tmp.resolve("s2"), List.of("--initial-states", tmp.resolve("s1-again").toString())));
        assertFalse(o.out.contains("record no input"), o.out);
    }

    /**
     * States stored in the parts form (a split sequence's NAME.index.json, the final state in its
     * last part) and in --output-mode checksums results continue as one-file results do, also
     * into a checksums run, whose float64 spot checks start from the stored state; a stored
     * state holding NaN fails the run like a non-finite initial_state (exit 2), and with
     * --skip-nonfinite the sequence is skipped and its stored state stays its current one.
     */
    @Test
    void partsAndChecksumsStoresAndNonFiniteStates() throws IOException {
        Sequence p = Sequence.random(8, 400, 2, 8, 6, DType.F32, null, false);
        Sequence q = Sequence.random(9, 300, 2, 8, 6, DType.F32, null, false);
        Path oldIn = JobHarness.writeSequences(tmp.resolve("old-in"), Map.of(
                "p.safetensors", p.range(0, 150, null), "q.safetensors", q.range(0, 130, null)));
        Path newIn = JobHarness.writeSequences(tmp.resolve("new-in"), Map.of(
                "p.safetensors", p.range(150, 400, null), "q.safetensors", q.range(130, 300, null)));
        Result refP = p.reference(1.0);
        Result refQ = q.reference(1.0);
        for (String[] form : new String[][] {{"--output-form", "parts"}, {"--output-mode", "checksums"}}) {
            Path old = tmp.resolve("old-" + form[1]);
            run(args(oldIn, old, List.of(form), "--partition-tokens", "64"));
            if ("parts".equals(form[1])) {
                assertTrue(Files.exists(old.resolve("p.safetensors.index.json")), "stored in the parts form");
                // q alone appended: the manifest names p's untouched state by a file that is there, its parts
                // index, in the form the manifest's other URIs take; the next append continues p from it
                Path qOnly = JobHarness.writeSequences(tmp.resolve("q-only"), Map.of("q.safetensors",
                        q.range(130, 300, null)));
                Path partial = tmp.resolve("partial-parts");
                run(args(qOnly, partial, List.of("--initial-states", old.toString())));
                String uri = new ObjectMapper().readTree(partial.resolve("_states.json").toFile()).path("sequences")
                        .path("p.safetensors").path("uri").asText();
                assertEquals(old.resolve("p.safetensors.index.json"), Path.of(java.net.URI.create(uri)), uri);
                assertTrue(uri.startsWith("file:/") && !uri.startsWith("file://"), uri);
                Path pNext = tmp.resolve("p-next-parts");
                run(args(JobHarness.writeSequences(tmp.resolve("p-next"), Map.of("p.safetensors",
                        p.range(150, 400, null))), pNext, List.of("--initial-states", partial.toString())));
                Result next = Result.read(pNext.resolve("p.safetensors"));
                assertTrue(relativeError(next.o, rows(refP.o, 12, 150, 400)) <= 1e-5, "p continued via the index");
                assertTrue(relativeError(next.state, refP.state) <= 1e-5, "p state continued via the index");
            }
            Path out = tmp.resolve("new-" + form[1]);
            run(args(newIn, out, List.of("--initial-states", old.toString()), "--partition-tokens", "64"));
            Result got = Result.read(out.resolve("p.safetensors"));
            assertTrue(relativeError(got.o, rows(refP.o, 12, 150, 400)) <= 1e-5, form[1] + ": p o vs float64");
            assertTrue(relativeError(got.state, refP.state) <= 1e-5, form[1] + ": p state vs float64");
            JsonNode m = new ObjectMapper().readTree(out.resolve("_states.json").toFile()).path("sequences");
            assertEquals(400, m.path("p.safetensors").path("tokens").asLong(), form[1] + " " + m);

            if ("checksums".equals(form[1])) {
                // checksums out too: the float64 spot checks start from the stored state (they fail from zero)
                Path sums = tmp.resolve("new-sums");
                Outcome o = run(args(newIn, sums, List.of("--initial-states", old.toString(), "--output-mode",
                        "checksums"), "--partition-tokens", "64"));
                assertTrue(o.out.contains("p.safetensors: o crc32c"), o.out);
                for (String n : new String[] {"p.safetensors", "q.safetensors"}) {
                    JsonNode meta = metadata(sums.resolve(n));
                    assertEquals("p.safetensors".equals(n) ? "150" : "130", meta.path("token_offset").asText(), n);
                    assertTrue(Double.parseDouble(meta.path("spot_check_max_rel_error").asText()) <= 1e-4,
                            n + ": " + meta);
                }
                Result got2 = Result.read(out.resolve("q.safetensors"));
                assertTrue(relativeError(got2.state, refQ.state) <= 1e-5, "q state vs float64");
            }
        }

        // a NaN in q's stored final state (one-file result): fails; with --skip-nonfinite q is skipped
        Path old = tmp.resolve("old-nan");
        run(args(oldIn, old, List.of()));
        Path qOut = old.resolve("q.safetensors");
        byte[] raw = Files.readAllBytes(qOut);
        Map<String, dev.lightning.attention.tensor.SafetensorsFile.Tensor> t =
                dev.lightning.attention.tensor.SafetensorsFile.read(qOut);
        long headerLength = java.nio.ByteBuffer.wrap(raw, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        JsonNode header = new ObjectMapper().readTree(new String(raw, 8, (int) headerLength,
                java.nio.charset.StandardCharsets.UTF_8));
        int at = (int) (8 + headerLength + header.path("final_state").path("data_offsets").get(0).asLong()) + 4 * 5;
        java.nio.ByteBuffer.wrap(raw).order(java.nio.ByteOrder.LITTLE_ENDIAN).putFloat(at, Float.NaN);
        Files.write(qOut, raw);
        assertEquals(2 * 8 * 6, t.get("final_state").toFloats().length);
        Outcome failed = lightning(args(newIn, tmp.resolve("nan-fails"), List.of("--initial-states", old.toString()))
                .toArray(new String[0]));
        assertEquals(2, failed.status, failed.out + failed.err); // bad input, as a NaN in initial_state
        assertTrue((failed.out + failed.err).contains("q.safetensors") && (failed.out + failed.err)
                .contains("stored final_state"), failed.out + failed.err);
        Path skip = tmp.resolve("nan-skipped");
        Outcome skipped = run(args(newIn, skip, List.of("--initial-states", old.toString(), "--skip-nonfinite")));
        assertTrue(skipped.out.contains("skipped q.safetensors"), skipped.out);
        assertFalse(Files.exists(skip.resolve("q.safetensors")));
        JsonNode m = new ObjectMapper().readTree(skip.resolve("_states.json").toFile()).path("sequences");
        assertEquals(qOut.toUri().getPath(), java.net.URI.create(m.path("q.safetensors").path("uri").asText()).getPath(),
                "the skipped sequence's stored state stays its current one: " + m);
        assertEquals("p.safetensors", m.path("p.safetensors").path("file").asText());
    }
}
