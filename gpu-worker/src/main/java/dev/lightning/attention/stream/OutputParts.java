package dev.lightning.attention.stream;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The "parts" form of one sequence's output: where no file system step can put a split
 * sequence's outputs into one file without copying them (object stores), each piece writes its
 * share as files of its own, and an index names them, in the spirit of sharded safetensors
 * checkpoints. The one owner of that format; {@link OutputReader} reads it.
 *
 * A part per stream of the output's {@link OutputLayout} in which a piece has rows, named after
 * the stream:
 * <pre>
 *   NAME.index.json                                  the index (NAME ends in .safetensors)
 *   NAME.parts/o-00003-of-00016.safetensors          piece 3's rows of o; lightning: the last piece's
 *                                                    part also holds final_state (and final_normalizer)
 *   NAME.parts/states-00003-of-00016.safetensors     lightning with --state-every: the states recorded in piece 3
 *   NAME.parts/normalizers-00003-of-00016.safetensors  and, normalizing, their normalizers
 *   NAME.parts/lse-00003-of-00016.safetensors        softmax with --write-lse: piece 3's rows of lse
 * </pre>
 * Every part is a valid safetensors file. The tensors of the whole output (their names, dtypes and
 * shapes: those the one-file form has) are cut along their first dimension: a part holds rows
 * [from, to) of a tensor under the tensor's own name, with shape [to - from, ...]. A piece in
 * which no state is recorded writes no states part. The index is JSON:
 * <pre>
 *   {"format": "lightning-parts-1",
 *    "metadata": {...the one-file form's __metadata__..., "total_size": "bytes of all parts"},
 *    "tensors": {"o": {"dtype": "BF16", "shape": [T, H, Dv]}, "final_state": {...}, ...},
 *    "parts": [{"file": "NAME.parts/o-00000-of-00016.safetensors", "tensors": {"o": [0, 4096]}}, ...]}
 * </pre>
 * where a part's {@code file} is relative to the index's directory and {@code tensors} gives, for
 * each tensor it holds, the rows [from, to) of the whole tensor. The parts of each tensor tile its
 * first dimension in order. o and states (or o and lse) are written by separate streams of one pass
 * over a piece, so they are separate files: a stream cannot go back to put the states after o.
 */
public final class OutputParts {
    public static final String FORMAT = "lightning-parts-1";
    public static final String INDEX_SUFFIX = ".index.json";
    public static final String PARTS_SUFFIX = ".parts";

    private OutputParts() {
    }

    /** One part file: its name relative to the index's directory, and the slices it holds in order. */
    public static final class Part {
        public final String file;
        public final List<OutputLayout.Slice> slices;
        /** Its safetensors header (the slices back to back). */
        public final SafetensorsHeader header;

        Part(String file, List<OutputLayout.Slice> slices, SafetensorsHeader header) {
            this.file = file;
            this.slices = Collections.unmodifiableList(slices);
            this.header = header;
        }

        /** Its size in bytes: header and data. */
        public long bytes() {
            return header.fileSize();
        }
    }

    /** The index's name for an output of name {@code name} (a name relative to the output directory). */
    public static String indexName(String name) {
        return name + INDEX_SUFFIX;
    }

    /**
     * The parts of one piece of a sequence whose one-file form is laid out by {@code layout}: a
     * part per stream in which the piece has rows ({@link OutputLayout#share}), in stream order,
     * named after the stream: {@code NAME.parts/STREAM-PPPPP-of-NNNNN.safetensors}.
     *
     * @param name   the output's name relative to the output directory (parts go to NAME.parts/)
     * @param piece  the piece's index, {@code pieces} their count
     * @param from   the piece's tokens [from, to)
     */
    public static List<Part> partsOf(OutputLayout layout, String name, int piece, int pieces, long from, long to) {
        List<Part> parts = new ArrayList<>();
        for (OutputLayout.Share s : layout.share(from, to)) {
            parts.add(part(layout.header(), name, s.stream, piece, pieces, s.slices));
        }
        return parts;
    }

    private static Part part(SafetensorsHeader whole, String name, String kind, int piece, int pieces,
                             List<OutputLayout.Slice> slices) {
        String base = name.substring(name.lastIndexOf('/') + 1);
        // Locale.ROOT: %d writes the default locale's digits (ar, fa, bn, mr: o-٠٠٠٠٣-of-٠٠٠١٦), names that
        // readers of the index and a later run replacing the parts (OutputPaths.PART) do not take for part files
        String file = base + PARTS_SUFFIX + "/" + String.format(java.util.Locale.ROOT, "%s-%05d-of-%05d.safetensors",
                kind, piece, pieces);
        List<SafetensorsHeader.Spec> specs = new ArrayList<>();
        for (OutputLayout.Slice s : slices) {
            TensorEntry t = whole.tensor(s.tensor);
            long[] shape = t.shape();
            shape[0] = s.to - s.from;
            specs.add(new SafetensorsHeader.Spec(s.tensor, t.dtype(), shape));
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        metadata.put("part_of", base + INDEX_SUFFIX);
        return new Part(file, slices, SafetensorsHeader.layout(file, specs, metadata));
    }

    /**
     * The index of a sequence whose one-file form is {@code whole}, written as {@code parts}
     * (every piece's, in piece order).
     */
    public static byte[] index(SafetensorsHeader whole, List<Part> parts) {
        ObjectMapper json = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
        ObjectNode root = json.createObjectNode();
        root.put("format", FORMAT);
        ObjectNode meta = root.putObject("metadata");
        new java.util.TreeMap<>(whole.metadata()).forEach(meta::put);
        long total = 0;
        for (Part p : parts) {
            total += p.bytes();
        }
        meta.put("total_size", Long.toString(total));
        ObjectNode tensors = root.putObject("tensors");
        for (TensorEntry t : whole.tensors().values()) {
            ObjectNode n = tensors.putObject(t.name());
            n.put("dtype", t.dtypeName());
            ArrayNode shape = n.putArray("shape");
            for (long d : t.shape()) {
                shape.add(d);
            }
        }
        ArrayNode list = root.putArray("parts");
        for (Part p : parts) {
            ObjectNode n = list.addObject();
            n.put("file", p.file);
            ObjectNode holds = n.putObject("tensors");
            for (OutputLayout.Slice s : p.slices) {
                holds.putArray(s.tensor).add(s.from).add(s.to);
            }
        }
        try {
            return json.writeValueAsBytes(root);
        } catch (IOException e) {
            throw new IllegalStateException("cannot encode a parts index", e);
        }
    }
}
