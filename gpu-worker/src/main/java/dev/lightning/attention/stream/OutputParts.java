package dev.lightning.attention.stream;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;
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
 *    "metadata": {...the one-file form's __metadata__..., "total_size": "bytes of all part files, headers included"},
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

    /**
     * A parts index as read back ({@link #readIndex}): the output's metadata, each tensor's dtype and shape, and
     * each part's file (relative to the index's directory) with the rows [from, to) of each tensor it holds.
     */
    public static final class Index {
        public final Map<String, String> metadata;
        /** The whole output's tensors in index order: name to [dtype, shape]. */
        public final Map<String, DType> dtypes;
        public final Map<String, long[]> shapes;
        public final List<IndexedPart> parts;

        Index(Map<String, String> metadata, Map<String, DType> dtypes, Map<String, long[]> shapes,
              List<IndexedPart> parts) {
            this.metadata = Collections.unmodifiableMap(metadata);
            this.dtypes = Collections.unmodifiableMap(dtypes);
            this.shapes = Collections.unmodifiableMap(shapes);
            this.parts = Collections.unmodifiableList(parts);
        }
    }

    /** One part as an index names it: its file, and for each tensor it holds the rows {from, to} of the whole. */
    public static final class IndexedPart {
        public final String file;
        public final Map<String, long[]> rows;

        IndexedPart(String file, Map<String, long[]> rows) {
            this.file = file;
            this.rows = Collections.unmodifiableMap(rows);
        }
    }

    /** Index JSON as {@link #readIndex} takes it: one entry per name (of two, readers keep either). */
    private static final ObjectMapper INDEX_JSON = new ObjectMapper(com.fasterxml.jackson.core.JsonFactory.builder()
            .enable(com.fasterxml.jackson.core.StreamReadFeature.STRICT_DUPLICATE_DETECTION).build());

    /**
     * Reads an index ({@code where} names it in messages) as {@link #index} writes it, and refuses anything else
     * with an {@link InvalidInputException}: its format, its metadata's {@link FormatVersion} (a later one as
     * {@link FormatVersion.TooNew}), metadata of strings, each tensor's dtype (F32, F16, BF16)
     * and shape (whole numbers >= 0; the first dimension is the rows cut), and each part's file (a relative name
     * below the index's directory) and row ranges (0 <= from <= to <= the tensor's rows, of a tensor the index
     * names). Readers of the form (OutputReader, the job's stored states) read indexes through this, so that an
     * edited or damaged index is refused in one line, not read as other rows or files, or failing on a missing
     * field. Whether the parts tile each tensor, and hold what the index says, needs their headers: the readers
     * check that.
     */
    public static Index readIndex(String where, byte[] json) {
        com.fasterxml.jackson.databind.JsonNode root;
        try {
            root = INDEX_JSON.readTree(json);
        } catch (IOException e) {
            throw new InvalidInputException(where + ": not a lightning parts index (not JSON: "
                    + (e instanceof com.fasterxml.jackson.core.JsonProcessingException
                    ? ((com.fasterxml.jackson.core.JsonProcessingException) e).getOriginalMessage() : e.getMessage())
                    + ")" + REWRITE_INDEX, e);
        }
        // the output's format first (its metadata's, as a one-file output's __metadata__ has it): a later build's
        // index may name its parts and rows otherwise. A value that is no string is refused with the metadata below
        com.fasterxml.jackson.databind.JsonNode version = root == null ? null
                : root.path("metadata").get(FormatVersion.KEY);
        if (version == null || version.isTextual()) {
            FormatVersion.check(where, version == null ? null : version.textValue());
        }
        String format = root == null ? "" : root.path("format").asText();
        if (root != null && root.isObject() && format.startsWith("lightning-parts-") && !FORMAT.equals(format)) {
            // another build's layout: read under this one, "parts" and "tensors" could name other files or rows
            throw new InvalidInputException(where + ": a parts index of format '" + format + "', expected " + FORMAT
                    + ": written by another build of lightning; read it with the build that wrote it, or rerun the job "
                    + "that wrote it with this build");
        }
        if (root == null || !root.isObject() || !FORMAT.equals(format)) {
            throw new InvalidInputException(where + ": not a lightning parts index (format '" + format + "', expected "
                    + FORMAT + ")" + REWRITE_INDEX);
        }
        Map<String, String> metadata = new LinkedHashMap<>();
        com.fasterxml.jackson.databind.JsonNode meta = root.path("metadata");
        if (!meta.isObject()) {
            throw bad(where, "'metadata' must be an object of strings", meta);
        }
        for (var it = meta.fields(); it.hasNext(); ) {
            var e = it.next();
            if (!e.getValue().isTextual()) {
                throw bad(where, "metadata '" + e.getKey() + "' must be a string", e.getValue());
            }
            metadata.put(e.getKey(), e.getValue().textValue());
        }
        com.fasterxml.jackson.databind.JsonNode tensors = root.path("tensors");
        if (!tensors.isObject()) {
            throw bad(where, "'tensors' must be an object of {\"dtype\", \"shape\"} by name", tensors);
        }
        Map<String, DType> dtypes = new LinkedHashMap<>();
        Map<String, long[]> shapes = new LinkedHashMap<>();
        for (var it = tensors.fields(); it.hasNext(); ) {
            var e = it.next();
            com.fasterxml.jackson.databind.JsonNode dtype = e.getValue().path("dtype");
            try {
                dtypes.put(e.getKey(), DType.fromSafetensors(dtype.isTextual() ? dtype.textValue() : null));
            } catch (IllegalArgumentException x) {
                throw bad(where, "tensor '" + e.getKey() + "' must have dtype F32, F16 or BF16", dtype);
            }
            com.fasterxml.jackson.databind.JsonNode shape = e.getValue().path("shape");
            if (!shape.isArray()) {
                throw bad(where, "tensor '" + e.getKey() + "' must have a shape, an array of dimensions", shape);
            }
            long[] dims = new long[shape.size()];
            long bytes = dtypes.get(e.getKey()).bytes();
            for (int i = 0; i < dims.length; i++) {
                dims[i] = count(where, "tensor '" + e.getKey() + "' shape[" + i + "]", shape.get(i));
                try {
                    bytes = Math.multiplyExact(bytes, dims[i]);
                } catch (ArithmeticException x) {
                    throw bad(where, "tensor '" + e.getKey() + "' must have a shape whose bytes a file can hold", shape);
                }
            }
            shapes.put(e.getKey(), dims);
        }
        com.fasterxml.jackson.databind.JsonNode parts = root.path("parts");
        if (!parts.isArray()) {
            throw bad(where, "'parts' must be an array of {\"file\", \"tensors\"}", parts);
        }
        List<IndexedPart> read = new ArrayList<>();
        for (int p = 0; p < parts.size(); p++) {
            com.fasterxml.jackson.databind.JsonNode part = parts.get(p);
            com.fasterxml.jackson.databind.JsonNode file = part.path("file");
            String what = "part " + p;
            if (!file.isTextual() || !relativeName(file.textValue())) {
                throw bad(where, what + " must name its file relative to the index's directory (no empty, '.' or "
                        + "'..' parts, not absolute)", file);
            }
            what = "part " + p + " (" + file.textValue() + ")";
            com.fasterxml.jackson.databind.JsonNode holds = part.path("tensors");
            if (!holds.isObject()) {
                throw bad(where, what + ": 'tensors' must be an object of [from, to] rows by name", holds);
            }
            Map<String, long[]> rows = new LinkedHashMap<>();
            for (var it = holds.fields(); it.hasNext(); ) {
                var e = it.next();
                long[] shape = shapes.get(e.getKey());
                if (shape == null) {
                    throw bad(where, what + " holds '" + e.getKey() + "', a tensor the index does not name (it names "
                            + shapes.keySet() + ")", e.getValue());
                }
                com.fasterxml.jackson.databind.JsonNode r = e.getValue();
                if (!r.isArray() || r.size() != 2) {
                    throw bad(where, what + ": the rows of '" + e.getKey() + "' must be [from, to]", r);
                }
                long from = count(where, what + ": the first row of '" + e.getKey() + "'", r.get(0));
                long to = count(where, what + ": the end row of '" + e.getKey() + "'", r.get(1));
                long all = shape.length == 0 ? 1 : shape[0]; // a scalar is one row
                if (from > to || to > all) {
                    throw bad(where, what + ": the rows of '" + e.getKey() + "' must lie in [0, " + all
                            + "] with from <= to", r);
                }
                rows.put(e.getKey(), new long[] {from, to});
            }
            read.add(new IndexedPart(file.textValue(), rows));
        }
        return new Index(metadata, dtypes, shapes, read);
    }

    /** What to do about an index {@link #readIndex} refuses. */
    private static final String REWRITE_INDEX = "; the index was edited or damaged: rerun the job that wrote it";

    private static InvalidInputException bad(String where, String expected, com.fasterxml.jackson.databind.JsonNode found) {
        return new InvalidInputException(where + ": " + expected + ", found " + describe(found) + REWRITE_INDEX);
    }

    private static long count(String where, String what, com.fasterxml.jackson.databind.JsonNode n) {
        if (!n.canConvertToExactIntegral() || !n.canConvertToLong() || n.asLong() < 0) {
            throw bad(where, what + " must be a whole number >= 0", n);
        }
        return n.asLong();
    }

    /** A part's name as an index may give it: relative, with no empty, "." or ".." segments (nor backslashes). */
    private static boolean relativeName(String name) {
        if (name.isEmpty() || name.startsWith("/") || name.indexOf('\\') >= 0 || name.indexOf('\0') >= 0) {
            return false;
        }
        for (String segment : name.split("/", -1)) {
            if (segment.isEmpty() || segment.equals(".") || segment.equals("..")) {
                return false;
            }
        }
        return true;
    }

    /** A JSON value as a refusal shows it: short, on one line. */
    private static String describe(com.fasterxml.jackson.databind.JsonNode n) {
        if (n == null || n.isMissingNode()) {
            return "nothing";
        }
        String text = n.toString();
        return text.length() > 80 ? text.substring(0, 77) + "..." : text;
    }
}
