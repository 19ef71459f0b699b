package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.BooleanNode;
import com.fasterxml.jackson.databind.node.DoubleNode;
import com.fasterxml.jackson.databind.node.IntNode;
import com.fasterxml.jackson.databind.node.LongNode;
import com.fasterxml.jackson.databind.node.NullNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;
import dev.lightning.attention.stream.OutputLayout;
import dev.lightning.attention.stream.OutputParts;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsFile;
import dev.lightning.attention.tensor.SafetensorsHeader;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * 250 edited state sets through the reader --initial-states uses (fixed seeds): a manifest, a parts
 * index, or a result's metadata, each with one JSON value replaced, removed or renamed. Each set is read (a
 * state whose own record is broken is listed as unreadable, with the reason) or refused with the project's
 * InvalidInputException; nothing else escapes, and every state read has a token count that is a count or
 * unknown (-1), never one wrapped below it.
 */
class StoredStatesFuzzTest {
    private static final Configuration CONF = new Configuration();
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path tmp;

    @Test
    void editedStateSetsAreReadOrRefusedAsInvalidInput() throws IOException {
        Path dir = Files.createDirectories(tmp.resolve("set"));
        Path earlier = tmp.resolve("earlier/u.safetensors");
        result(earlier, Map.of("token_offset", "0", "slopes", "0.5"));
        result(dir.resolve("w.safetensors"), Map.of("token_offset", "4", "input_bytes", "100",
                "input_sample", "0badf00d", "earlier_inputs", "90/feed"));
        SafetensorsHeader whole = SafetensorsHeader.layout("p.safetensors", List.of(
                new SafetensorsHeader.Spec("o", DType.BF16, 4, 1, 4),
                new SafetensorsHeader.Spec("final_state", DType.F32, 1, 2, 4)), Map.of("token_offset", "2"));
        List<OutputParts.Part> parts = OutputParts.partsOf(OutputLayout.lightning(whole, 4, 0), "p.safetensors", 0, 1,
                0, 4);
        for (OutputParts.Part p : parts) {
            Files.createDirectories(dir.resolve(p.file).getParent());
            Files.write(dir.resolve(p.file), java.util.Arrays.copyOf(p.header.encode(), (int) p.bytes()));
        }
        byte[] index = OutputParts.index(whole, parts);
        String uri = earlier.toUri().toString();
        byte[] manifest = JSON.writeValueAsBytes(JSON.readTree("{\"format\": \"lightning-states-1\", \"sequences\": {"
                + "\"w.safetensors\": {\"file\": \"w.safetensors\", \"tokens\": 8},"
                + "\"p.safetensors\": {\"file\": \"p.safetensors\", \"tokens\": 6},"
                + "\"u.safetensors\": {\"uri\": \"" + uri + "\", \"tokens\": 4, \"bytes\": " + Files.size(earlier)
                + ", \"modified\": " + Files.getLastModifiedTime(earlier).toMillis() + "}}}"));
        Files.write(dir.resolve("_SUCCESS"), new byte[0]);
        Files.writeString(dir.resolve("_lightning_report.json"), "{\"statesManifest\": true}");
        Files.write(dir.resolve("p.safetensors.index.json"), index);
        Files.write(dir.resolve("_states.json"), manifest);
        assertTrue(StoredStates.open(CONF, dir.toString()).states().size() == 3, "the unedited set reads whole");

        SplittableRandom rnd = new SplittableRandom(2027);
        int read = 0;
        int refused = 0;
        long start = System.nanoTime();
        for (int trial = 0; trial < 250; trial++) {
            Files.write(dir.resolve("_states.json"), manifest);
            Files.write(dir.resolve("p.safetensors.index.json"), index);
            result(dir.resolve("w.safetensors"), Map.of("token_offset", "4", "input_bytes", "100",
                    "input_sample", "0badf00d", "earlier_inputs", "90/feed"));
            String edit;
            int target = rnd.nextInt(3);
            if (target == 0) {
                JsonNode root = JSON.readTree(manifest);
                edit = "manifest: " + mutate(rnd, root);
                Files.write(dir.resolve("_states.json"), JSON.writeValueAsBytes(root));
            } else if (target == 1) {
                JsonNode root = JSON.readTree(index);
                edit = "index: " + mutate(rnd, root);
                Files.write(dir.resolve("p.safetensors.index.json"), JSON.writeValueAsBytes(root));
            } else {
                String key = new String[] {"token_offset", "input_bytes", "input_sample", "earlier_inputs", "slopes",
                        "feature_map"}[rnd.nextInt(6)];
                String value = text(rnd);
                edit = "metadata: " + key + " = '" + value + "'";
                result(dir.resolve("w.safetensors"), Map.of(key, value));
            }
            try {
                StoredStates set = StoredStates.open(CONF, dir.toString());
                for (StoredStates.State s : set.states().values()) {
                    assertTrue(s.tokens >= -1, edit + ": a state of " + s.tokens + " tokens");
                }
                read++;
            } catch (InvalidInputException e) {
                assertTrue(!e.getMessage().isEmpty() && !e.getMessage().contains("\n"), edit + ": " + e.getMessage());
                refused++;
            } catch (Throwable t) {
                fail("trial " + trial + " (" + edit + ") raised " + t, t);
            }
        }
        // printed, not asserted: a time limit in a unit test fails on a loaded 2-core machine (22 s there against 2 to
        // 14 s alone), and what a fuzz trial costs is no contract
        System.out.printf("StoredStatesFuzzTest: 250 state sets in %.1f s%n", (System.nanoTime() - start) / 1e9);
        assertTrue(read > 0 && refused > 0, read + " read, " + refused + " refused: the edits must vary");
    }

    /** A result of 4 tokens as a run writes it: o [4, 1, 4] BF16, final_state [1, 2, 4] F32, and metadata. */
    private static void result(Path file, Map<String, String> metadata) throws IOException {
        Files.createDirectories(file.getParent());
        SafetensorsFile.write(file, List.of(
                SafetensorsFile.Tensor.of("o", DType.BF16, new long[] {4, 1, 4}, new float[16]),
                SafetensorsFile.Tensor.of("final_state", DType.F32, new long[] {1, 2, 4}, new float[8])), metadata);
    }

    private static final String[] KEYS = {"format", "sequences", "file", "uri", "tokens", "bytes", "modified",
            "parts", "tensors", "metadata", "o", "final_state", "shape", "dtype", "token_offset"};

    private static String text(SplittableRandom rnd) {
        return new String[] {"", "-1", "7", "abc", "9223372036854775807", "9223372036854775800", "1e3", "NaN",
                "0.5,NaN", "../x", "/abs", "file:/a b", "90/feed,", "٣", " 4"}[rnd.nextInt(15)];
    }

    private static JsonNode value(SplittableRandom rnd) {
        switch (rnd.nextInt(10)) {
            case 0:
                return NullNode.instance;
            case 1:
                return IntNode.valueOf(-1);
            case 2:
                return LongNode.valueOf(Long.MAX_VALUE);
            case 3:
                return DoubleNode.valueOf(1e300);
            case 4:
                return BooleanNode.TRUE;
            case 5:
                return JSON.createArrayNode();
            case 6:
                return JSON.createObjectNode();
            default:
                return TextNode.valueOf(text(rnd));
        }
    }

    /** Replaces, removes or renames one value somewhere in {@code root}, or adds one; says which. */
    private static String mutate(SplittableRandom rnd, JsonNode root) {
        List<JsonNode> containers = new ArrayList<>();
        collect(root, containers);
        JsonNode c = containers.get(rnd.nextInt(containers.size()));
        if (c instanceof ArrayNode) {
            ArrayNode a = (ArrayNode) c;
            JsonNode v = value(rnd);
            if (a.size() == 0 || rnd.nextBoolean()) {
                a.add(v);
                return "append " + v;
            }
            int i = rnd.nextInt(a.size());
            a.set(i, v);
            return "[" + i + "] = " + v;
        }
        ObjectNode o = (ObjectNode) c;
        List<String> keys = new ArrayList<>();
        o.fieldNames().forEachRemaining(keys::add);
        int kind = rnd.nextInt(4);
        if (keys.isEmpty() || kind == 0) {
            String k = KEYS[rnd.nextInt(KEYS.length)];
            JsonNode v = value(rnd);
            o.set(k, v);
            return "add " + k + " = " + v;
        }
        String k = keys.get(rnd.nextInt(keys.size()));
        if (kind == 1) {
            o.remove(k);
            return "remove " + k;
        }
        if (kind == 2) {
            o.set(k + "x", o.remove(k));
            return "rename " + k;
        }
        JsonNode v = value(rnd);
        o.set(k, v);
        return k + " = " + v;
    }

    private static void collect(JsonNode n, List<JsonNode> out) {
        if (n.isContainerNode()) {
            out.add(n);
            n.forEach(ch -> collect(ch, out));
        }
    }
}
