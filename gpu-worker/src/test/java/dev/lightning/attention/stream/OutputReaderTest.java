package dev.lightning.attention.stream;

import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The parts form against the one-file form, without Spark: a random output file (BF16 o of
 * T = 1000, H = 3, Dv = 5, F32 states every 128 tokens, normalizers) is cut into the parts
 * {@link OutputParts} lays out for uneven pieces, by copying byte ranges of the one file; the
 * reader presents the same bytes from either form, for any rows, and refuses an index whose parts
 * do not tile a tensor.
 */
class OutputReaderTest {
    static final int T = 1000;
    static final int H = 3;
    static final int DK = 4;
    static final int DV = 5;
    static final int EVERY = 128;

    @TempDir
    Path tmp;

    @Test
    void bothFormsReadTheSame() throws IOException {
        SafetensorsHeader whole = SafetensorsHeader.layout("x.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, T, H, DV),
                new SafetensorsHeader.Spec("final_state", DType.F32, H, DK, DV),
                new SafetensorsHeader.Spec("final_normalizer", DType.F32, H, DK),
                new SafetensorsHeader.Spec("states", DType.F32, T / EVERY, H, DK, DV),
                new SafetensorsHeader.Spec("normalizers", DType.F32, T / EVERY, H, DK)), Map.of("scale", "0.5"));
        byte[] file = new byte[(int) whole.fileSize()];
        new SplittableRandom(5).nextBytes(file);
        System.arraycopy(whole.encode(), 0, file, 0, (int) whole.dataStart());
        Path one = Files.write(tmp.resolve("x.safetensors"), file);

        Path dir = Files.createDirectories(tmp.resolve("parts"));
        long[] pieces = {64, 320, 1, 448, 167}; // uneven: one piece holds no state, one several
        OutputLayout layout = OutputLayout.lightning(whole, T, EVERY);
        List<OutputParts.Part> parts = new ArrayList<>();
        long start = 0;
        for (int i = 0; i < pieces.length; i++) {
            parts.addAll(OutputParts.partsOf(layout, "x.safetensors", i, pieces.length, start, start + pieces[i]));
            start += pieces[i];
        }
        for (OutputParts.Part p : parts) {
            java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
            b.write(p.header.encode());
            for (OutputLayout.Slice s : p.slices) {
                TensorEntry t = whole.tensor(s.tensor);
                long row = t.byteLength() / t.dim(0);
                b.write(file, (int) (t.begin() + s.from * row), (int) ((s.to - s.from) * row));
            }
            assertEquals(p.bytes(), b.size(), p.file);
            Path f = dir.resolve(p.file);
            Files.createDirectories(f.getParent());
            Files.write(f, b.toByteArray());
        }
        Path index = Files.write(dir.resolve("x.safetensors.index.json"), OutputParts.index(whole, parts));
        assertTrue(parts.stream().noneMatch(p -> p.file.startsWith("x.safetensors.parts/states-00002")),
                "the one-token piece records no state and has no states part");
        // total_size, as README says: the bytes of all part files on disk, headers included (what
        // the output occupies), not only the tensors' bytes
        long onDisk = 0;
        for (OutputParts.Part p : parts) {
            onDisk += Files.size(dir.resolve(p.file));
        }
        assertEquals(Long.toString(onDisk), new com.fasterxml.jackson.databind.ObjectMapper().readTree(index.toFile())
                .path("metadata").path("total_size").asText());

        try (OutputReader a = OutputReader.open(one); OutputReader b = OutputReader.open(dir.resolve("x.safetensors"))) {
            assertEquals(List.copyOf(a.tensors()), List.copyOf(b.tensors()));
            assertEquals("0.5", b.metadata().get("scale"));
            for (String t : a.tensors()) {
                long rows = a.shape(t)[0];
                assertArrayEquals(a.shape(t), b.shape(t), t);
                assertArrayEquals(a.rows(t, 0, rows), b.rows(t, 0, rows), t);
                for (long[] r : new long[][] {{0, 1}, {63, 65}, {383, 385}, {rows - 1, rows}, {1, rows - 1}}) {
                    if (r[1] <= rows && r[0] < r[1]) {
                        assertArrayEquals(a.rows(t, r[0], r[1]), b.rows(t, r[0], r[1]), t + Arrays.toString(r));
                    }
                }
            }
            float[] fs = b.floats("final_state");
            assertEquals(H * DK * DV, fs.length);
            assertArrayEquals(a.floats("final_state"), fs);
            // both forms against the file's own bytes, not only against each other
            for (String t : a.tensors()) {
                TensorEntry e = whole.tensor(t);
                long row = e.byteLength() / e.dim(0);
                for (long[] r : new long[][] {{0, e.dim(0)}, {1, 2}, {e.dim(0) - 1, e.dim(0)}, {2, 2}}) {
                    byte[] want = Arrays.copyOfRange(file, (int) (e.begin() + r[0] * row), (int) (e.begin() + r[1] * row));
                    assertArrayEquals(want, a.rows(t, r[0], r[1]), t + Arrays.toString(r) + ", one file");
                    assertArrayEquals(want, b.rows(t, r[0], r[1]), t + Arrays.toString(r) + ", parts");
                }
                long rows = e.dim(0);
                assertThrows(IndexOutOfBoundsException.class, () -> b.rows(t, -1, 1), t);
                assertThrows(IndexOutOfBoundsException.class, () -> b.rows(t, 2, 1), t);
                assertThrows(IndexOutOfBoundsException.class, () -> b.rows(t, 0, rows + 1), t);
            }
            java.nio.ByteBuffer raw = java.nio.ByteBuffer.wrap(file).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            TensorEntry o = whole.tensor("o");
            float[] rows63 = b.floats("o", 63, 65);
            assertEquals(2 * H * DV, rows63.length);
            for (int i = 0; i < rows63.length; i++) {
                float want = DType.BF16.get(raw, (int) (o.begin() + (63L * H * DV + i) * 2));
                assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(rows63[i]), "o value " + i);
            }
            assertEquals(List.of("o", "final_state", "final_normalizer", "states", "normalizers"), List.copyOf(b.tensors()));
        }

        // the index's parts listed in another order read the same: the reader sorts each tensor's parts by row
        com.fasterxml.jackson.databind.ObjectMapper mapper = new com.fasterxml.jackson.databind.ObjectMapper();
        com.fasterxml.jackson.databind.node.ObjectNode shuffled = (com.fasterxml.jackson.databind.node.ObjectNode)
                mapper.readTree(Files.readString(index));
        com.fasterxml.jackson.databind.node.ArrayNode reversed = mapper.createArrayNode();
        for (int i = shuffled.path("parts").size() - 1; i >= 0; i--) {
            reversed.add(shuffled.path("parts").get(i));
        }
        shuffled.set("parts", reversed);
        Path reindexed = Files.write(dir.resolve("reversed.index.json"), mapper.writeValueAsBytes(shuffled));
        try (OutputReader a = OutputReader.open(one); OutputReader r = OutputReader.open(reindexed)) {
            for (String t : a.tensors()) {
                long rows = a.shape(t)[0];
                assertArrayEquals(a.rows(t, 0, rows), r.rows(t, 0, rows), t + ", parts listed in reverse");
            }
        }

        // an index that lost a part: refused, naming the tensor and the gap
        String json = Files.readString(index).replace("\"x.safetensors.parts/o-00001-of-00005.safetensors\"",
                "\"x.safetensors.parts/o-00003-of-00005.safetensors\"");
        Path broken = Files.writeString(dir.resolve("broken.index.json"), json);
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> OutputReader.open(broken));
        assertTrue(e.getMessage().contains("o-00003") || e.getMessage().contains("tile"), e.getMessage());

        // an index whose o is another dtype of the same width, or whose rows are [Dv, H]: the parts' bytes fit
        // both, and were read as the index said before (F16 values from BF16 bytes); refused, naming both
        String sameWidth = Files.readString(index).replaceFirst("\"dtype\"\\s*:\\s*\"BF16\"", "\"dtype\":\"F16\"");
        assertTrue(!sameWidth.equals(Files.readString(index)), "the index names o's dtype");
        Path f16 = Files.writeString(dir.resolve("f16.index.json"), sameWidth);
        e = assertThrows(InvalidInputException.class, () -> OutputReader.open(f16));
        assertTrue(e.getMessage().contains("BF16") && e.getMessage().contains("F16") && e.getMessage().contains("rerun"),
                e.getMessage());
        String transposed = Files.readString(index).replaceFirst("\\[\\s*" + T + "\\s*,\\s*" + H + "\\s*,\\s*" + DV
                + "\\s*\\]", "[" + T + "," + DV + "," + H + "]");
        assertTrue(!transposed.equals(Files.readString(index)), "the index names o's shape");
        Path swapped = Files.writeString(dir.resolve("swapped.index.json"), transposed);
        e = assertThrows(InvalidInputException.class, () -> OutputReader.open(swapped));
        assertTrue(e.getMessage().contains("[" + H + ", " + DV + "]") && e.getMessage().contains("[" + DV + ", " + H + "]"),
                e.getMessage());
    }

    /**
     * A name with no output in either form is refused naming both forms it looked for and what to check; it used
     * to fail with "NAME.index.json (No such file or directory)", a file the caller never named.
     */
    /**
     * Part files are named in ASCII digits whatever the JVM's locale: in an Arabic one, %05d wrote
     * {@code o-٠٠٠٠٠-of-٠٠٠٠٢.safetensors}, which a later run's --overwrite refused as "not a part file".
     */
    @Test
    void partNamesAreAsciiInAnyLocale() {
        SafetensorsHeader whole = SafetensorsHeader.layout("x.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, T, H, DV)), Map.of());
        java.util.Locale before = java.util.Locale.getDefault();
        try {
            for (String tag : new String[]{"ar-EG", "fa-IR", "mr-IN"}) {
                java.util.Locale.setDefault(java.util.Locale.forLanguageTag(tag));
                List<OutputParts.Part> parts = OutputParts.partsOf(OutputLayout.lightning(whole, T, 0), "d/x.safetensors",
                        1, 2, 500, T);
                assertEquals(List.of("x.safetensors.parts/o-00001-of-00002.safetensors"),
                        parts.stream().map(p -> p.file).collect(java.util.stream.Collectors.toList()), tag);
            }
        } finally {
            java.util.Locale.setDefault(before);
        }
    }

    @Test
    void aMissingOutputNamesBothFormsItLookedFor() {
        Path missing = tmp.resolve("missing.safetensors");
        IOException e = assertThrows(java.io.FileNotFoundException.class, () -> OutputReader.open(missing));
        assertTrue(e.getMessage().contains(missing.toString()) && e.getMessage().contains("missing.safetensors.index.json")
                && e.getMessage().contains("neither") && e.getMessage().contains("check"), e.getMessage());
    }

    @Test
    void aClosedReaderRefusesReadsAndClosesAgainQuietly() throws IOException {
        SafetensorsHeader h = SafetensorsHeader.layout("y.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.F32, 4, 1, 2)), Map.of());
        byte[] file = new byte[(int) h.fileSize()];
        System.arraycopy(h.encode(), 0, file, 0, (int) h.dataStart());
        Path one = Files.write(tmp.resolve("y.safetensors"), file);
        OutputReader r = OutputReader.open(one);
        assertEquals(8, r.rows("o", 0, 1).length);
        r.close();
        // a read after close reopened the file, and the channel stayed open until a second close
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> r.rows("o", 0, 1));
        assertTrue(e.getMessage().contains("closed"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> r.floats("o"));
        r.close(); // idempotent
    }

    /**
     * An index other than one {@link OutputParts#index} writes is refused in one line naming the index and what
     * is wrong, before any part is read: a part named outside the index's directory or not by a string, rows that
     * are not [from, to] within the tensor, a tensor of no known dtype or of a shape no file holds, metadata that
     * is not strings, and a part that is missing. They used to escape as NullPointerException,
     * IllegalArgumentException, ArithmeticException or NoSuchFileException, or read a file outside the output.
     */
    @Test
    void anIndexOtherThanOneTheJobWritesIsRefusedInOneLine() throws IOException {
        SafetensorsHeader whole = SafetensorsHeader.layout("z.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, 4, 1, 2),
                new SafetensorsHeader.Spec("final_state", DType.F32, 1, 2, 2)), Map.of("scale", "1.0"));
        OutputLayout layout = OutputLayout.lightning(whole, 4, 0);
        List<OutputParts.Part> parts = new ArrayList<>(OutputParts.partsOf(layout, "z.safetensors", 0, 1, 0, 4));
        for (OutputParts.Part p : parts) {
            Path f = Files.createDirectories(tmp.resolve(p.file).getParent()).resolve(tmp.resolve(p.file).getFileName());
            Files.write(f, java.util.Arrays.copyOf(p.header.encode(), (int) p.bytes()));
        }
        String good = new String(OutputParts.index(whole, parts), java.nio.charset.StandardCharsets.UTF_8);
        Path index = tmp.resolve("z.safetensors.index.json");
        Files.writeString(index, good);
        try (OutputReader r = OutputReader.open(index)) {
            assertEquals(4, r.shape("o")[0]);
        }
        String file = parts.get(0).file;
        Files.writeString(tmp.resolve("outside.safetensors"), "not read");
        List<String[]> edits = new ArrayList<>(); // text of the index, and what it is replaced with
        edits.add(new String[] {"\"" + file + "\"", "\"../outside.safetensors\""});
        edits.add(new String[] {"\"file\" : \"" + file + "\"", "\"file\" : 7"});
        edits.add(new String[] {"\"o\" : [ 0, 4 ]", "\"o\" : 4"});
        edits.add(new String[] {"\"o\" : [ 0, 4 ]", "\"o\" : [ 0, 5 ]"});
        edits.add(new String[] {"\"final_state\" : [ 0, 1 ]", "\"final_state\" : [ 1, 0 ]"});
        edits.add(new String[] {"\"dtype\" : \"BF16\"", "\"dtype\" : \"I16\""});
        edits.add(new String[] {"[ 4, 1, 2 ]", "[ 4, 1, 4611686018427387904 ]"});
        edits.add(new String[] {"\"scale\" : \"1.0\"", "\"scale\" : 1.0"});
        edits.add(new String[] {"\"" + file + "\"", "\"z.safetensors.parts/missing.safetensors\""});
        for (String[] e : edits) {
            assertTrue(good.contains(e[0]), e[0] + " in " + good);
            Files.writeString(index, good.replace(e[0], e[1]));
            InvalidInputException refused = assertThrows(InvalidInputException.class, () -> OutputReader.open(index),
                    e[1]);
            assertTrue(refused.getMessage().startsWith(index.toString()) && refused.getMessage().contains("rerun")
                    && !refused.getMessage().contains("\n"), e[1] + ": " + refused.getMessage());
        }
    }

    /**
     * An output's {@link FormatVersion} (its metadata's format_version): a later one than this build reads is refused,
     * one file or the parts form, naming the file, its format, the formats this build reads and what to do, before a
     * part is read; one without the key (every output written before versions were recorded) or of this build's
     * format reads as always; a value that is no positive integer is refused as damaged, not as a later format.
     */
    @Test
    void anOutputOfALaterFormatIsRefusedAndOneWithoutTheKeyRead() throws IOException {
        for (boolean parts : new boolean[] {false, true}) {
            for (String version : new String[] {null, "1", "2", "18446744073709551617", "0", "x", "01"}) {
                Map<String, String> metadata = new java.util.TreeMap<>(Map.of("scale", "1.0"));
                if (version != null) {
                    metadata.put(FormatVersion.KEY, version);
                }
                Path dir = Files.createDirectories(tmp.resolve((parts ? "parts-" : "one-") + version));
                SafetensorsHeader whole = SafetensorsHeader.layout("v.safetensors", List.of(
                        new SafetensorsHeader.Spec("o", DType.F32, 4, 1, 2),
                        new SafetensorsHeader.Spec("final_state", DType.F32, 1, 2, 2)), metadata);
                Path opened;
                if (parts) {
                    List<OutputParts.Part> written = OutputParts.partsOf(OutputLayout.lightning(whole, 4, 0),
                            "v.safetensors", 0, 1, 0, 4);
                    for (OutputParts.Part p : written) {
                        Path f = Files.createDirectories(dir.resolve(p.file).getParent()).resolve(
                                dir.resolve(p.file).getFileName());
                        Files.write(f, java.util.Arrays.copyOf(p.header.encode(), (int) p.bytes()));
                    }
                    opened = Files.write(dir.resolve("v.safetensors.index.json"), OutputParts.index(whole, written));
                    if ("2".equals(version)) { // refused before any part is read
                        Files.delete(dir.resolve(written.get(0).file));
                    }
                } else {
                    byte[] file = new byte[(int) whole.fileSize()];
                    System.arraycopy(whole.encode(), 0, file, 0, (int) whole.dataStart());
                    opened = Files.write(dir.resolve("v.safetensors"), file);
                }
                if (version == null || version.equals("1")) {
                    try (OutputReader r = OutputReader.open(opened)) {
                        assertEquals(4, r.shape("o")[0], opened.toString());
                    }
                    continue;
                }
                InvalidInputException e = assertThrows(InvalidInputException.class, () -> OutputReader.open(opened),
                        opened.toString());
                String m = e.getMessage();
                if (version.equals("2") || version.length() > 2) {
                    assertTrue(e instanceof FormatVersion.TooNew && m.startsWith(opened.toString() + ": format_version "
                            + version + ": written by a later build of lightning") && m.contains("this build reads "
                            + "format 1 (records without format_version are format 1)") && m.contains("Use a build "
                            + "of lightning that reads format " + version), m);
                } else {
                    assertTrue(!(e instanceof FormatVersion.TooNew) && m.startsWith(opened.toString()
                            + ": format_version '" + version + "' is not a format") && m.contains("edited or damaged"),
                            m);
                }
            }
        }
    }
}
