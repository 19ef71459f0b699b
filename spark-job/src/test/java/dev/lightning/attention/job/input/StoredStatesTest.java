package dev.lightning.attention.job.input;

import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.OutputParts;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The safetensors state store: what a committed directory (or its manifest) holds, read back exactly. */
class StoredStatesTest {
    private static final Configuration CONF = new Configuration();

    @TempDir
    Path tmp;

    private static float[] random(SplittableRandom rnd, int n) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) (rnd.nextDouble() * 2 - 1);
        }
        return x;
    }

    /** A result as the job writes it: o [T, H, Dv] BF16, final_state, and z when given. */
    private static void result(Path file, int t, int h, int dk, int dv, float[] s, float[] z) throws IOException {
        List<SafetensorsFile.Tensor> ts = new ArrayList<>();
        ts.add(SafetensorsFile.Tensor.of("o", DType.BF16, new long[] {t, h, dv}, new float[t * h * dv]));
        ts.add(SafetensorsFile.Tensor.of("final_state", DType.F32, new long[] {h, dk, dv}, s));
        if (z != null) {
            ts.add(SafetensorsFile.Tensor.of("final_normalizer", DType.F32, new long[] {h, dk}, z));
        }
        Files.createDirectories(file.getParent());
        SafetensorsFile.write(file, ts);
    }

    @Test
    void listsResultsReadsThemExactlyAndIgnoresOtherFiles() throws IOException {
        SplittableRandom rnd = new SplittableRandom(3);
        Path dir = Files.createDirectories(tmp.resolve("out"));
        float[] s = random(rnd, 3 * 5 * 7);
        float[] z = random(rnd, 3 * 5);
        result(dir.resolve("r.safetensors"), 11, 3, 5, 7, s, z);
        float[] s2 = random(rnd, 2 * 4 * 4);
        result(dir.resolve("sub/x.safetensors"), 1, 2, 4, 4, s2, null);
        Files.writeString(dir.resolve("notes.txt"), "not a result");
        Files.write(dir.resolve("broken.safetensors"), new byte[] {(byte) 200, 0, 0, 0, 0, 0, 0, 0, '{'});
        Files.write(dir.resolve(".hidden"), new byte[3]);
        Files.writeString(dir.resolve("_lightning_report.json"), "{}");
        assertThrows(InvalidInputException.class, () -> StoredStates.open(CONF, dir.toString()),
                "no _SUCCESS: not a committed output");
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);

        Map<String, StoredStates.State> states = StoredStates.open(CONF, dir.toString()).states();
        assertEquals(List.of("r.safetensors", "sub/x.safetensors"), new ArrayList<>(states.keySet()));
        Map<String, String> unreadable = StoredStates.open(CONF, dir.toString()).unreadable();
        assertEquals(List.of("broken.safetensors", "notes.txt"), new ArrayList<>(unreadable.keySet()));
        StoredStates.State r = states.get("r.safetensors");
        assertEquals(11, r.tokens);
        assertTrue(r.normalizer);
        assertEquals("S [3, 5, 7] with z [3, 5]", r.shape());
        AttentionSpec spec = new AttentionSpec(3, 5, 7, new double[] {0.1, 0.2, 0.3}, 1.0, 1).withNormalization(1e-5);
        LightningState read = r.read(CONF, spec, "r.safetensors", 0);
        assertArrayEquals(s, read.kv());
        assertArrayEquals(z, read.normalizer());
        StoredStates.State x = states.get("sub/x.safetensors");
        assertEquals(1, x.tokens);
        assertTrue(!x.normalizer);
        AttentionSpec plain = new AttentionSpec(2, 4, 4, new double[] {0.1, 0.2}, 1.0, 1);
        assertArrayEquals(s2, x.read(CONF, plain, "sub/x.safetensors", 1).kv());
        assertNull(r.mismatch(spec));
        assertTrue(r.mismatch(new AttentionSpec(3, 5, 7, new double[] {0.1, 0.2, 0.3}, 1.0, 1)).toString()
                .startsWith("expected S [3, 5, 7] without a normalizer z (no --normalize) for its input, found S [3, 5, 7] "
                        + "with z [3, 5] in file:"));
        assertTrue(x.mismatch(new AttentionSpec(2, 4, 3, new double[] {0.1, 0.2}, 1.0, 1)).toString()
                .contains("expected S [2, 4, 3]"));
    }

    /**
     * --initial-states that is no committed output says which it is: a file (it said "no such directory"), a
     * directory no run wrote into (it said that its run had failed and to rerun that run with --resume), or an output
     * whose run did not finish.
     */
    @Test
    void initialStatesThatIsNoCommittedOutputSaysWhichItIs(@TempDir Path dir) throws Exception {
        Path file = Files.writeString(dir.resolve("a.safetensors"), "a result");
        String m = assertThrows(InvalidInputException.class, () -> StoredStates.committed(CONF, file.toString()))
                .getMessage();
        assertEquals("--initial-states " + file + " is a file, expected a directory: give the --output directory of an "
                + "earlier run, not one of its results", m);
        Path inputs = Files.createDirectories(dir.resolve("day1"));
        Files.writeString(inputs.resolve("a.safetensors"), "an input");
        m = assertThrows(InvalidInputException.class, () -> StoredStates.committed(CONF, inputs.toString())).getMessage();
        assertTrue(m.startsWith("--initial-states " + inputs + " has no _SUCCESS, nor a report, staging or lock of any "
                + "run: it is not the --output of a lightning run;") && !m.contains("--resume"), m);
        Files.createDirectories(inputs.resolve("_temporary").resolve("lightning-1"));
        m = assertThrows(InvalidInputException.class, () -> StoredStates.committed(CONF, inputs.toString())).getMessage();
        assertTrue(m.contains("it is not the output of a run that finished") && m.contains("--resume for a run over "
                + "files"), m);
    }

    /**
     * A stored state that does not fit says what to change, not only what was expected and found: the run's
     * --normalize or --feature-map where they alone differ (as the run that stored it had them), else the input or the
     * stored set. The message gave no advice for these three.
     */
    @Test
    void aStateThatDoesNotFitSaysWhatToChange() {
        AttentionSpec plain = new AttentionSpec(2, 4, 3, new double[] {0.1, 0.2}, 1.0, 1);
        String normalized = String.valueOf(StoredStates.mismatch(2, 4, 3, true, null, "prev/a.safetensors", plain));
        assertTrue(normalized.startsWith("expected S [2, 4, 3] without a normalizer z (no --normalize) for its input, "
                + "found S [2, 4, 3] with z [2, 4] in prev/a.safetensors; ")
                && normalized.endsWith("the run that stored it normalized: add --normalize, as it did"), normalized);
        String unnormalized = String.valueOf(StoredStates.mismatch(2, 4, 3, false, null, "prev/a.safetensors",
                plain.withNormalization(1e-5)));
        assertTrue(unnormalized.endsWith("the run that stored it did not normalize: leave --normalize out, as it did"),
                unnormalized);
        String heads = String.valueOf(StoredStates.mismatch(4, 4, 3, true, null, "prev/a.safetensors", plain));
        assertTrue(heads.contains("found S [4, 4, 3] with z [4, 4]") && heads.endsWith("a continued sequence keeps its "
                + "heads and widths; give it the next segment of the sequence that state belongs to, or continue from "
                + "another directory's states"), heads);
        String map = String.valueOf(StoredStates.mismatch(2, 4, 3, false, "elu1", "prev/a.safetensors", plain));
        assertEquals("the stored state was computed with --feature-map elu1, this run uses identity (prev/a.safetensors); "
                + "give --feature-map elu1, as that run did", map);
    }

    /** A manifest is the set (entries by file here and by URI elsewhere), if the directory's last run wrote it. */
    @Test
    void manifestIsTheSetOnlyWhenCurrent() throws IOException {
        SplittableRandom rnd = new SplittableRandom(4);
        Path elsewhere = tmp.resolve("earlier/u.safetensors");
        float[] su = random(rnd, 8);
        result(elsewhere, 4, 1, 2, 4, su, null);
        Path dir = Files.createDirectories(tmp.resolve("out"));
        result(dir.resolve("w.safetensors"), 10, 1, 2, 4, random(rnd, 8), null);
        result(dir.resolve("not-in-the-set.safetensors"), 3, 1, 2, 4, random(rnd, 8), null);
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        StoredStates.State u = SafetensorsStates.read(org.apache.hadoop.fs.FileSystem.getLocal(CONF),
                new org.apache.hadoop.fs.Path(tmp.resolve("earlier").toUri())).states().get("u.safetensors");
        Files.write(dir.resolve("_states.json"), SafetensorsStates.manifest(Map.of("w.safetensors", 10L),
                Map.of("u.safetensors", u)));
        Files.writeString(dir.resolve("_lightning_report.json"), "{\"status\": \"succeeded\"}");
        InvalidInputException stale = assertThrows(InvalidInputException.class,
                () -> StoredStates.open(CONF, dir.toString()));
        assertTrue(stale.getMessage().contains("_states.json was not written by the directory's last run"),
                stale.getMessage());

        Files.writeString(dir.resolve("_lightning_report.json"), "{\"statesManifest\": true}");
        Map<String, StoredStates.State> states = StoredStates.open(CONF, dir.toString()).states();
        assertEquals(List.of("u.safetensors", "w.safetensors"), new ArrayList<>(states.keySet()));
        assertEquals(10, states.get("w.safetensors").tokens);
        assertEquals(4, states.get("u.safetensors").tokens);
        assertArrayEquals(su, states.get("u.safetensors").read(CONF,
                new AttentionSpec(1, 2, 4, new double[] {0.5}, 1.0, 1), "u.safetensors", 0).kv());
        String text = new String(Files.readAllBytes(dir.resolve("_states.json")), StandardCharsets.UTF_8);
        assertTrue(text.contains("\"file\" : \"w.safetensors\"") && text.contains("\"uri\" : \"file:"), text);
        assertTrue(text.contains("\"format_version\" : 1,"), text);

        // a later build's manifest (FormatVersion) is refused, naming it; none without the key is read as before
        Files.writeString(dir.resolve("_states.json"), text.replace("\"format_version\" : 1,",
                "\"format_version\" : 2,"));
        InvalidInputException later = assertThrows(dev.lightning.attention.stream.FormatVersion.TooNew.class,
                () -> StoredStates.open(CONF, dir.toString()));
        assertTrue(later.getMessage().contains("_states.json: format_version 2: written by a later build")
                && later.getMessage().contains("this build reads format 1"), later.getMessage());
        Files.writeString(dir.resolve("_states.json"), text.replace("\"format_version\" : 1,", ""));
        assertEquals(10, StoredStates.open(CONF, dir.toString()).states().get("w.safetensors").tokens);
        Files.writeString(dir.resolve("_states.json"), text);

        Files.delete(elsewhere);
        InvalidInputException missing = assertThrows(InvalidInputException.class,
                () -> StoredStates.open(CONF, dir.toString()));
        assertTrue(missing.getMessage().contains("u.safetensors") && missing.getMessage().contains("missing"),
                missing.getMessage());
    }

    /**
     * A manifest records the size and modification time of each state it names in an earlier
     * directory: a file that changed since is refused, naming the sequence, the file, what was
     * recorded and what is there. A manifest's token count that contradicts the stored file's own
     * is refused too, also in a manifest written before sizes and times were recorded (read
     * without comparing them).
     */
    @Test
    void manifestRefusesAStateFileChangedSinceAndTokensTheFileContradicts() throws IOException {
        SplittableRandom rnd = new SplittableRandom(5);
        Path elsewhere = tmp.resolve("earlier/u.safetensors");
        result(elsewhere, 4, 1, 2, 4, random(rnd, 8), null);
        Path dir = Files.createDirectories(tmp.resolve("out"));
        result(dir.resolve("w.safetensors"), 3, 1, 2, 4, random(rnd, 8), null);
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        Files.writeString(dir.resolve("_lightning_report.json"), "{\"statesManifest\": true}");
        StoredStates.State u = SafetensorsStates.read(org.apache.hadoop.fs.FileSystem.getLocal(CONF),
                new org.apache.hadoop.fs.Path(tmp.resolve("earlier").toUri())).states().get("u.safetensors");
        byte[] manifest = SafetensorsStates.manifest(Map.of("w.safetensors", 3L), Map.of("u.safetensors", u));
        Files.write(dir.resolve("_states.json"), manifest);
        assertEquals(4, StoredStates.open(CONF, dir.toString()).states().get("u.safetensors").tokens);
        String text = new String(manifest, StandardCharsets.UTF_8);
        assertTrue(text.contains("\"bytes\" : " + Files.size(elsewhere))
                && text.contains("\"modified\" : " + Files.getLastModifiedTime(elsewhere).toMillis()), text);

        // the same size, another time (a copy, or a file rewritten in place)
        java.nio.file.attribute.FileTime was = Files.getLastModifiedTime(elsewhere);
        Files.setLastModifiedTime(elsewhere, java.nio.file.attribute.FileTime.fromMillis(was.toMillis() - 60_000));
        InvalidInputException changed = assertThrows(InvalidInputException.class,
                () -> StoredStates.open(CONF, dir.toString()));
        String m = changed.getMessage();
        assertTrue(m.contains("u.safetensors") && m.contains(elsewhere.toString()) && m.contains("replaced")
                && m.contains(java.time.Instant.ofEpochMilli(was.toMillis()).toString()), m);
        Files.setLastModifiedTime(elsewhere, was);
        assertEquals(4, StoredStates.open(CONF, dir.toString()).states().get("u.safetensors").tokens);

        // another state of 5 tokens there: refused by its size and time; in an older manifest, by its tokens
        result(elsewhere, 5, 1, 2, 4, random(rnd, 8), null);
        assertThrows(InvalidInputException.class, () -> StoredStates.open(CONF, dir.toString()));
        String uri = elsewhere.toUri().toString();
        Files.writeString(dir.resolve("_states.json"), "{\"format\": \"lightning-states-1\", \"sequences\": {"
                + "\"u.safetensors\": {\"uri\": \"" + uri + "\", \"tokens\": 4},"
                + "\"w.safetensors\": {\"file\": \"w.safetensors\", \"tokens\": 3}}}");
        InvalidInputException tokens = assertThrows(InvalidInputException.class,
                () -> StoredStates.open(CONF, dir.toString()));
        assertTrue(tokens.getMessage().contains("u.safetensors") && tokens.getMessage().contains("4 tokens")
                && tokens.getMessage().contains("5"), tokens.getMessage());
        Files.writeString(dir.resolve("_states.json"), "{\"format\": \"lightning-states-1\", \"sequences\": {"
                + "\"u.safetensors\": {\"uri\": \"" + uri + "\", \"tokens\": 5},"
                + "\"w.safetensors\": {\"file\": \"w.safetensors\", \"tokens\": 3}}}");
        assertEquals(5, StoredStates.open(CONF, dir.toString()).states().get("u.safetensors").tokens,
                "an older manifest without sizes and times: read as before");
    }

    /**
     * A result in the parts form is read through its index only in the index format this build
     * writes (OutputParts.FORMAT): one of another format (another build's) is not a readable state,
     * and says which format it has and which was expected, rather than be read by this build's layout.
     */
    @Test
    void aPartsIndexOfAnotherFormatIsNoState() throws IOException {
        SplittableRandom rnd = new SplittableRandom(5);
        Path dir = Files.createDirectories(tmp.resolve("parts"));
        float[] s = random(rnd, 2 * 4 * 4);
        result(dir.resolve("r.safetensors.parts/o-00000-of-00001.safetensors"), 3, 2, 4, 4, s, null);
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        String index = "{\"format\": \"%s\", \"metadata\": {}, \"tensors\": {\"o\": {\"dtype\": \"BF16\", "
                + "\"shape\": [3, 2, 4]}, \"final_state\": {\"dtype\": \"F32\", \"shape\": [2, 4, 4]}}, \"parts\": "
                + "[{\"file\": \"r.safetensors.parts/o-00000-of-00001.safetensors\", \"tensors\": {\"o\": [0, 3], "
                + "\"final_state\": [0, 2]}}]}";

        Files.writeString(dir.resolve("r.safetensors.index.json"), String.format(index,
                dev.lightning.attention.stream.OutputParts.FORMAT));
        StoredStates.State r = StoredStates.open(CONF, dir.toString()).states().get("r.safetensors");
        assertEquals(3, r.tokens);
        assertArrayEquals(s, r.read(CONF, new AttentionSpec(2, 4, 4, new double[] {0.1, 0.2}, 1.0, 1),
                "r.safetensors", 0).kv());

        Files.writeString(dir.resolve("r.safetensors.index.json"), String.format(index, "lightning-parts-9"));
        StoredStates stored = StoredStates.open(CONF, dir.toString());
        assertNull(stored.states().get("r.safetensors"));
        String why = stored.unreadable().get("r.safetensors");
        assertTrue(why != null && why.contains("a parts index of format 'lightning-parts-9', expected "
                + dev.lightning.attention.stream.OutputParts.FORMAT), String.valueOf(why));
    }

    /**
     * A manifest whose entries are not ones a run writes (edited, or damaged) is refused before
     * compute, naming the manifest and the sequence: an entry without its place, with a place that
     * is not one (a name reaching outside the directory, a URI that does not parse), with a token
     * count, size or time that is not a whole number, a size without its time, two entries for one
     * sequence, and a manifest without its sequences (which had read as an empty set: every input
     * started from zero). Each used to escape as an IllegalArgumentException or NullPointerException
     * with a stack trace, or be taken.
     */
    @Test
    void manifestEntriesOtherThanARunWritesAreRefusedNamingTheSequence() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("out"));
        result(dir.resolve("w.safetensors"), 3, 1, 2, 4, random(new SplittableRandom(6), 8), null);
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        Files.writeString(dir.resolve("_lightning_report.json"), "{\"statesManifest\": true}");
        String head = "{\"format\": \"lightning-states-1\", \"sequences\": {";
        Files.writeString(dir.resolve("_states.json"), head + "\"w.safetensors\": {\"file\": \"w.safetensors\", "
                + "\"tokens\": 3}}}");
        assertEquals(3, StoredStates.open(CONF, dir.toString()).states().get("w.safetensors").tokens);

        String uri = tmp.resolve("earlier/u.safetensors").toUri().toString();
        Map<String, String> entries = new java.util.LinkedHashMap<>();
        entries.put("no place", "{\"tokens\": 3}");
        entries.put("both places", "{\"file\": \"w.safetensors\", \"uri\": \"" + uri + "\", \"tokens\": 3}");
        entries.put("not an object", "\"w.safetensors\"");
        entries.put("file a number", "{\"file\": 5, \"tokens\": 3}");
        entries.put("file outside", "{\"file\": \"../w.safetensors\", \"tokens\": 3}");
        entries.put("file empty", "{\"file\": \"\", \"tokens\": 3}");
        entries.put("uri unparsable", "{\"uri\": \"file:/a b/\\u00e9 :x\", \"tokens\": 3}");
        entries.put("uri relative", "{\"uri\": \"w.safetensors\", \"tokens\": 3}");
        entries.put("tokens text", "{\"file\": \"w.safetensors\", \"tokens\": \"three\"}");
        entries.put("tokens negative", "{\"file\": \"w.safetensors\", \"tokens\": -3}");
        entries.put("bytes text", "{\"uri\": \"" + uri + "\", \"tokens\": 3, \"bytes\": \"10\", \"modified\": 1}");
        entries.put("bytes alone", "{\"uri\": \"" + uri + "\", \"tokens\": 3, \"bytes\": 10}");
        for (Map.Entry<String, String> e : entries.entrySet()) {
            Files.writeString(dir.resolve("_states.json"), head + "\"w.safetensors\": " + e.getValue() + "}}");
            InvalidInputException refused = assertThrows(InvalidInputException.class,
                    () -> StoredStates.open(CONF, dir.toString()), e.getKey());
            assertTrue(refused.getMessage().contains("_states.json: the entry of 'w.safetensors'")
                    && refused.getMessage().contains("restore it"), e.getKey() + ": " + refused.getMessage());
        }
        Files.writeString(dir.resolve("_states.json"), head + "\"w.safetensors\": {\"file\": \"w.safetensors\", "
                + "\"tokens\": 3}, \"w.safetensors\": {\"file\": \"w.safetensors\", \"tokens\": 7}}}");
        InvalidInputException twice = assertThrows(InvalidInputException.class,
                () -> StoredStates.open(CONF, dir.toString()));
        assertTrue(twice.getMessage().contains("_states.json") && twice.getMessage().contains("w.safetensors"),
                twice.getMessage());
        for (String sequences : new String[] {"", ", \"sequences\": [\"w.safetensors\"]"}) {
            Files.writeString(dir.resolve("_states.json"), "{\"format\": \"lightning-states-1\"" + sequences + "}");
            InvalidInputException none = assertThrows(InvalidInputException.class,
                    () -> StoredStates.open(CONF, dir.toString()), sequences);
            assertTrue(none.getMessage().contains("'sequences' must be an object"), none.getMessage());
        }
    }

    /**
     * A stored result in the parts form whose index is not one the job writes is no readable state: an input of
     * its name is refused, naming why (its stored state listed as unreadable), rather than the run failing with a
     * stack trace: a part named outside the directory (IllegalArgumentException from HadoopPaths.child), a
     * missing part holding the final state (FileNotFoundException), a token count that is not a whole number
     * (read as -1 or as the largest long, which the continued output recorded as its token_offset).
     */
    @Test
    void aPartsIndexOtherThanOneTheJobWritesIsNoReadableState() throws IOException {
        SafetensorsHeader whole = SafetensorsHeader.layout("z.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, 4, 1, 2),
                new SafetensorsHeader.Spec("final_state", DType.F32, 1, 2, 2)), Map.of("scale", "1.0"));
        Path dir = Files.createDirectories(tmp.resolve("out"));
        List<OutputParts.Part> parts = OutputParts.partsOf(OutputLayout.lightning(whole, 4, 0), "z.safetensors", 0, 1,
                0, 4);
        for (OutputParts.Part p : parts) {
            Path f = dir.resolve(p.file);
            Files.createDirectories(f.getParent());
            Files.write(f, java.util.Arrays.copyOf(p.header.encode(), (int) p.bytes()));
        }
        String good = new String(OutputParts.index(whole, parts), StandardCharsets.UTF_8);
        Files.writeString(dir.resolve("z.safetensors.index.json"), good);
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        assertEquals(4, StoredStates.open(CONF, dir.toString()).states().get("z.safetensors").tokens);

        String file = parts.get(0).file;
        for (String[] edit : new String[][] {
                {"\"" + file + "\"", "\"../elsewhere.safetensors\"", "relative"},
                {"\"" + file + "\"", "\"z.safetensors.parts/gone.safetensors\"", "missing"},
                {"[ 4, 1, 2 ]", "[ 9223372036854775807, 1, 2 ]", "shape"},
                {"[ 4, 1, 2 ]", "[ \"4\", 1, 2 ]", "whole number"}}) {
            assertTrue(good.contains(edit[0]), edit[0]);
            Files.writeString(dir.resolve("z.safetensors.index.json"), good.replace(edit[0], edit[1]));
            StoredStates set = StoredStates.open(CONF, dir.toString());
            assertNull(set.states().get("z.safetensors"), edit[1]);
            String why = set.unreadable().get("z.safetensors");
            assertTrue(why != null && why.contains("z.safetensors.index.json") && why.contains(edit[2]),
                    edit[1] + ": " + why);
        }
    }

    /**
     * A stored result's token_offset must be a token count that, with its T, a long holds: "-1" was read as one (the
     * state then said it had absorbed T - 1 tokens), and one near the largest long wrapped to a negative count, and
     * a continued output records that count as its own token_offset. Each is no readable state, with the reason.
     */
    @Test
    void aStoredTokenOffsetThatIsNoTokenCountIsNoReadableState() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("out"));
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        List<SafetensorsFile.Tensor> tensors = List.of(
                SafetensorsFile.Tensor.of("o", DType.BF16, new long[] {10, 1, 4}, new float[40]),
                SafetensorsFile.Tensor.of("final_state", DType.F32, new long[] {1, 2, 4}, new float[8]));
        SafetensorsFile.write(dir.resolve("r.safetensors"), tensors, Map.of("token_offset", "300"));
        assertEquals(310, StoredStates.open(CONF, dir.toString()).states().get("r.safetensors").tokens);
        for (String offset : new String[] {"-1", "-300", String.valueOf(Long.MAX_VALUE - 5), "ten"}) {
            SafetensorsFile.write(dir.resolve("r.safetensors"), tensors, Map.of("token_offset", offset));
            StoredStates set = StoredStates.open(CONF, dir.toString());
            assertNull(set.states().get("r.safetensors"), offset);
            String why = set.unreadable().get("r.safetensors");
            assertTrue(why != null && why.contains("token_offset '" + offset + "' is not a token count"),
                    offset + ": " + why);
        }
    }

    /**
     * A state the manifest names that holds none is refused naming its file once: the refusal
     * prefixed the location to a message that already began with it ("--initial-states: X: X: ...",
     * or the file's own name after its URI), for a damaged header, a final_state of the wrong type
     * and a parts index whose part with the final state is missing.
     */
    @Test
    void aManifestStateThatHoldsNoneIsRefusedNamingItsFileOnce() throws IOException {
        Path earlier = Files.createDirectories(tmp.resolve("earlier"));
        Path one = earlier.resolve("u.safetensors");
        result(one, 4, 1, 2, 4, new float[8], null);
        SafetensorsHeader whole = SafetensorsHeader.layout("z.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, 4, 1, 2),
                new SafetensorsHeader.Spec("final_state", DType.F32, 1, 2, 2)), Map.of("scale", "1.0"));
        List<OutputParts.Part> parts = OutputParts.partsOf(OutputLayout.lightning(whole, 4, 0), "z.safetensors", 0, 1,
                0, 4);
        for (OutputParts.Part p : parts) {
            Path f = earlier.resolve(p.file);
            Files.createDirectories(f.getParent());
            Files.write(f, java.util.Arrays.copyOf(p.header.encode(), (int) p.bytes()));
        }
        Files.write(earlier.resolve("z.safetensors.index.json"), OutputParts.index(whole, parts));
        Files.write(earlier.resolve("_SUCCESS"), new byte[0]);
        Map<String, StoredStates.State> stored = SafetensorsStates.read(org.apache.hadoop.fs.FileSystem.getLocal(CONF),
                new org.apache.hadoop.fs.Path(earlier.toUri())).states();
        Path dir = Files.createDirectories(tmp.resolve("out"));
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        Files.writeString(dir.resolve("_lightning_report.json"), "{\"statesManifest\": true}");

        Files.write(dir.resolve("_states.json"), SafetensorsStates.manifest(Map.of(),
                Map.of("u.safetensors", stored.get("u.safetensors"))));
        byte[] good = Files.readAllBytes(one);
        byte[] damaged = good.clone();
        damaged[8] = '[';
        Files.write(one, damaged);
        assertNamedOnce("u.safetensors", "header must start with '{'", dir);
        SafetensorsFile.write(one, List.of(
                SafetensorsFile.Tensor.of("o", DType.BF16, new long[] {4, 1, 4}, new float[16]),
                SafetensorsFile.Tensor.of("final_state", DType.BF16, new long[] {1, 2, 4}, new float[8])));
        assertNamedOnce("u.safetensors", "final_state must be F32", dir);

        Files.write(dir.resolve("_states.json"), SafetensorsStates.manifest(Map.of(),
                Map.of("z.safetensors", stored.get("z.safetensors"))));
        for (OutputParts.Part p : parts) {
            Files.delete(earlier.resolve(p.file));
        }
        assertNamedOnce("z.safetensors.index.json", "holds the final state and is missing", dir);
    }

    /**
     * A stored result's input_bytes and input_sample say what it was computed from, and an input of that size and
     * sample is refused as the same segment appended twice. A value no input's can equal (a sample that is no
     * lower-case CRC32C in hex, a negative size) was read as recorded, and the check was off without a word; it is
     * no readable state, with the reason. A recorded pair as a run writes it is read and compared.
     */
    @Test
    void aRecordedInputThatNoInputCanMatchIsNoReadableState() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("out"));
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        List<SafetensorsFile.Tensor> tensors = List.of(
                SafetensorsFile.Tensor.of("o", DType.BF16, new long[] {10, 1, 4}, new float[40]),
                SafetensorsFile.Tensor.of("final_state", DType.F32, new long[] {1, 2, 4}, new float[8]));
        SafetensorsFile.write(dir.resolve("r.safetensors"), tensors, Map.of("input_bytes", "100",
                "input_sample", "0badf00d"));
        StoredStates.State read = StoredStates.open(CONF, dir.toString()).states().get("r.safetensors");
        assertTrue(read.computedFrom(100, "0badf00d") && !read.computedFrom(100, "badf00d"));
        for (String[] bad : new String[][] {{"100", "garbage"}, {"100", ""}, {"100", "0BADF00D"},
                {"100", "10badf00d"}, {"100", " badf00d"}, {"-100", "badf00d"}}) {
            SafetensorsFile.write(dir.resolve("r.safetensors"), tensors, Map.of("input_bytes", bad[0],
                    "input_sample", bad[1]));
            StoredStates set = StoredStates.open(CONF, dir.toString());
            assertNull(set.states().get("r.safetensors"), bad[0] + "/" + bad[1]);
            String why = set.unreadable().get("r.safetensors");
            String key = bad[0].startsWith("-") ? "input_bytes '" + bad[0] + "' is not a size in bytes"
                    : "input_sample '" + bad[1] + "' is not a content sample";
            assertTrue(why != null && why.contains("r.safetensors: metadata " + key) && why.contains("rerun"),
                    bad[0] + "/" + bad[1] + ": " + why);
        }
    }

    /**
     * A stored result of a later format (its metadata's format_version) is refused, naming the file, its format and
     * the formats this build reads, also where no input continues it: taken as "no readable state", it would drop out
     * of the complete state set this run's manifest lists. The parts form's index likewise. Results without the key
     * (the other tests' fixtures: every result written before versions were recorded) and of format 1 are read.
     */
    @Test
    void aStoredResultOfALaterFormatIsRefused() throws IOException {
        SplittableRandom rnd = new SplittableRandom(8);
        Path dir = Files.createDirectories(tmp.resolve("out"));
        result(dir.resolve("old.safetensors"), 3, 1, 2, 4, random(rnd, 8), null);
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        List<SafetensorsFile.Tensor> ts = List.of(
                SafetensorsFile.Tensor.of("o", DType.BF16, new long[] {3, 1, 4}, new float[12]),
                SafetensorsFile.Tensor.of("final_state", DType.F32, new long[] {1, 2, 4}, random(rnd, 8)));
        Path current = dir.resolve("current.safetensors");
        SafetensorsFile.write(current, ts, Map.of(dev.lightning.attention.stream.FormatVersion.KEY, "1"));
        assertEquals(List.of("current.safetensors", "old.safetensors"),
                new ArrayList<>(StoredStates.open(CONF, dir.toString()).states().keySet()));

        Path later = dir.resolve("later.safetensors");
        SafetensorsFile.write(later, ts, Map.of(dev.lightning.attention.stream.FormatVersion.KEY, "2"));
        InvalidInputException e = assertThrows(dev.lightning.attention.stream.FormatVersion.TooNew.class,
                () -> StoredStates.open(CONF, dir.toString()));
        assertTrue(e.getMessage().contains(later + ": format_version 2: written by a later build") && e.getMessage().contains("this build reads format 1")
                && e.getMessage().contains("Use a build of lightning that reads format 2"), e.getMessage());
        Files.delete(later);

        // the parts form: the index's metadata is the output's
        SafetensorsHeader whole = SafetensorsHeader.layout("p.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, 3, 1, 4),
                new SafetensorsHeader.Spec("final_state", DType.F32, 1, 2, 4)),
                Map.of(dev.lightning.attention.stream.FormatVersion.KEY, "2"));
        List<OutputParts.Part> parts = OutputParts.partsOf(OutputLayout.lightning(whole, 3, 0), "p.safetensors", 0, 1,
                0, 3);
        for (OutputParts.Part p : parts) {
            Files.createDirectories(dir.resolve(p.file).getParent());
            Files.write(dir.resolve(p.file), java.util.Arrays.copyOf(p.header.encode(), (int) p.bytes()));
        }
        Path index = Files.write(dir.resolve("p.safetensors.index.json"), OutputParts.index(whole, parts));
        e = assertThrows(dev.lightning.attention.stream.FormatVersion.TooNew.class,
                () -> StoredStates.open(CONF, dir.toString()));
        assertTrue(e.getMessage().contains("p.safetensors.index.json: format_version 2"), e.getMessage());
        Files.delete(index);
        assertEquals(2, StoredStates.open(CONF, dir.toString()).states().size());
    }


    private static void assertNamedOnce(String file, String why, Path dir) {
        String m = assertThrows(InvalidInputException.class, () -> StoredStates.open(CONF, dir.toString()))
                .getMessage();
        assertTrue(m.startsWith("--initial-states: file:") && m.contains(why), m);
        assertEquals(m.indexOf(file), m.lastIndexOf(file), m);
    }
}
