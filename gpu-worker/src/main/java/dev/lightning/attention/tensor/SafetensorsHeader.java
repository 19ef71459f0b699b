package dev.lightning.attention.tensor;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The header of a safetensors file: an 8-byte little-endian length N, then N bytes of JSON naming
 * each tensor's dtype, shape and byte range relative to the data that follows. Parsing is strict:
 * every range must lie inside the file, match its shape and dtype, and no two may overlap.
 */
public final class SafetensorsHeader {
    /** The safetensors format's own limit on the header size. */
    public static final long MAX_HEADER_BYTES = 100L * 1024 * 1024;

    private static final String METADATA = "__metadata__";

    /**
     * What to do about any header this class refuses, said once here: every refusal is a file that
     * breaks the format (cut short, damaged, or written by hand), which only writing it again mends.
     */
    static final String REWRITE = "; the file is damaged or not in the safetensors format: write it again (with "
            + "safetensors' save_file for PyTorch or NumPy, or by the run that made it)";
    private static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder()
            .streamReadConstraints(StreamReadConstraints.builder()
                    .maxNestingDepth(16)
                    .maxNumberLength(32)
                    .maxStringLength(1 << 20)
                    .build())
            .enable(com.fasterxml.jackson.core.StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .build());

    private final String file;
    private final long dataStart;
    private final Map<String, TensorEntry> tensors;
    private final Map<String, String> metadata;
    private final byte[] json;

    private SafetensorsHeader(String file, byte[] json, Map<String, TensorEntry> tensors,
                              Map<String, String> metadata) {
        this.file = file;
        this.json = json;
        this.dataStart = 8L + json.length;
        this.tensors = Collections.unmodifiableMap(tensors);
        this.metadata = Collections.unmodifiableMap(metadata);
    }

    /**
     * Reads the header length from a file's first 8 bytes and checks it against the file size.
     *
     * @param file     the file's name, for messages
     * @param prefix   at least the first 8 bytes of the file
     * @param fileSize the file's length in bytes
     */
    public static long headerLength(String file, byte[] prefix, long fileSize) {
        if (fileSize < 8 || prefix.length < 8) {
            throw new InvalidInputException(file + ": not a safetensors file: " + fileSize
                    + " bytes, expected at least an 8-byte header length" + REWRITE);
        }
        long n = ByteBuffer.wrap(prefix, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        if (n < 2 || n > MAX_HEADER_BYTES || n > fileSize - 8) {
            throw new InvalidInputException(file + ": header length " + Long.toUnsignedString(n)
                    + " is impossible for a file of " + fileSize + " bytes (expected 2.." + Math.min(MAX_HEADER_BYTES, fileSize - 8)
                    + ")" + REWRITE);
        }
        return n;
    }

    /**
     * Parses the JSON header, as strictly as the format's own reader: UTF-8 text starting with
     * <code>{</code> (so no byte order mark or leading space), shapes and offsets written as
     * integers (not {@code 8.0}), no duplicate names.
     *
     * @param file     the file's name, for messages
     * @param json     the N header bytes after the length prefix
     * @param fileSize the file's length, to check every tensor's range
     * @throws InvalidInputException saying what is wrong, and {@link #REWRITE}
     */
    public static SafetensorsHeader parse(String file, byte[] json, long fileSize) {
        try {
            return parseChecked(file, json, fileSize);
        } catch (InvalidInputException e) {
            throw new InvalidInputException(e.getMessage() + REWRITE, e.getCause());
        }
    }

    private static SafetensorsHeader parseChecked(String file, byte[] json, long fileSize) {
        long dataStart = 8L + json.length;
        long dataSize = fileSize - dataStart;
        if (dataSize < 0) {
            throw new InvalidInputException(file + ": header of " + json.length + " bytes runs past the end of the "
                    + fileSize + "-byte file; the file is truncated");
        }
        if (json.length == 0 || json[0] != '{') {
            throw new InvalidInputException(file + ": header must start with '{', found " + (json.length == 0 ? "nothing"
                    : json.length >= 3 && (json[0] & 0xff) == 0xef && (json[1] & 0xff) == 0xbb && (json[2] & 0xff) == 0xbf
                    ? "a UTF-8 byte order mark" : String.format("byte 0x%02x", json[0] & 0xff)));
        }
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().decode(ByteBuffer.wrap(json)).toString();
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new InvalidInputException(file + ": header is not valid UTF-8 text", e);
        }
        JsonNode root;
        try (JsonParser p = JSON.createParser(text)) {
            root = JSON.readTree(p);
            if (p.nextToken() != null) {
                throw new InvalidInputException(file + ": header JSON has trailing content after the top-level object");
            }
        } catch (IOException | RuntimeException e) {
            if (e instanceof InvalidInputException) {
                throw (InvalidInputException) e;
            }
            throw new InvalidInputException(file + ": header is not valid JSON: " + ErrorText.firstLine(e.getMessage()), e);
        }
        // valid JSON that starts with '{' is one object: root is an ObjectNode
        Map<String, TensorEntry> tensors = new LinkedHashMap<>();
        Map<String, String> metadata = new LinkedHashMap<>();
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            Map.Entry<String, JsonNode> e = it.next();
            String name = e.getKey();
            JsonNode node = e.getValue();
            if (METADATA.equals(name)) {
                if (!node.isObject()) {
                    throw new InvalidInputException(file + ": __metadata__ must be an object of strings");
                }
                for (Iterator<Map.Entry<String, JsonNode>> m = node.fields(); m.hasNext(); ) {
                    Map.Entry<String, JsonNode> kv = m.next();
                    if (!kv.getValue().isTextual()) {
                        throw new InvalidInputException(file + ": __metadata__." + kv.getKey() + " must be a string");
                    }
                    metadata.put(kv.getKey(), kv.getValue().textValue());
                }
                continue;
            }
            tensors.put(name, entry(file, name, node, dataStart, dataSize));
        }
        List<TensorEntry> byOffset = new ArrayList<>(tensors.values());
        byOffset.sort(Comparator.comparingLong(TensorEntry::begin).thenComparingLong(TensorEntry::end));
        for (int i = 1; i < byOffset.size(); i++) {
            TensorEntry a = byOffset.get(i - 1);
            TensorEntry b = byOffset.get(i);
            if (b.begin() < a.end()) {
                throw new InvalidInputException(file + ": tensors '" + a.name() + "' and '" + b.name()
                        + "' overlap (data offsets " + (a.begin() - dataStart) + ".." + (a.end() - dataStart)
                        + " and " + (b.begin() - dataStart) + ".." + (b.end() - dataStart) + ")");
            }
        }
        return new SafetensorsHeader(file, json.clone(), tensors, metadata);
    }

    private static TensorEntry entry(String file, String name, JsonNode node, long dataStart, long dataSize) {
        String where = file + ": tensor '" + name + "'";
        if (!node.isObject()) {
            throw new InvalidInputException(where + " must be an object with dtype, shape, data_offsets");
        }
        JsonNode dtype = node.get("dtype");
        JsonNode shape = node.get("shape");
        JsonNode offsets = node.get("data_offsets");
        if (dtype == null || !dtype.isTextual()) {
            throw new InvalidInputException(where + ": missing or non-string 'dtype'");
        }
        if (shape == null || !shape.isArray()) {
            throw new InvalidInputException(where + ": missing or non-array 'shape'");
        }
        if (offsets == null || !offsets.isArray() || offsets.size() != 2) {
            throw new InvalidInputException(where + ": 'data_offsets' must be [begin, end]");
        }
        if (shape.size() > 8) {
            throw new InvalidInputException(where + ": rank " + shape.size() + " is more than 8");
        }
        long[] dims = new long[shape.size()];
        long elements = 1;
        for (int i = 0; i < dims.length; i++) {
            JsonNode d = shape.get(i);
            if (!d.isIntegralNumber() || !d.canConvertToLong() || d.asLong() < 0) {
                throw new InvalidInputException(where + ": shape[" + i + "] = " + d + " is not a non-negative integer");
            }
            dims[i] = d.asLong();
            elements = multiplyOrFail(where, elements, dims[i]);
        }
        long[] range = new long[2];
        for (int i = 0; i < 2; i++) {
            JsonNode o = offsets.get(i);
            if (!o.isIntegralNumber() || !o.canConvertToLong() || o.asLong() < 0) {
                throw new InvalidInputException(where + ": data_offsets[" + i + "] = " + o + " is not a non-negative integer");
            }
            range[i] = o.asLong();
        }
        if (range[1] < range[0] || range[1] > dataSize) {
            throw new InvalidInputException(where + ": data_offsets [" + range[0] + ", " + range[1]
                    + "] fall outside the " + dataSize + " data bytes of the file");
        }
        String dtypeName = dtype.textValue();
        Integer elementBytes = knownElementBytes(dtypeName);
        if (elementBytes != null) {
            long expect = multiplyOrFail(where, elements, elementBytes);
            if (range[1] - range[0] != expect) {
                throw new InvalidInputException(where + ": shape " + dims.length + "-d " + java.util.Arrays.toString(dims)
                        + " of " + dtypeName + " needs " + expect + " bytes, data_offsets give " + (range[1] - range[0]));
            }
        }
        // a known dtype by its one spelling, so that every check of a name ("F32" for slope and the states) agrees
        // with DType.fromSafetensors, which takes any case: 'f32' q was taken and an 'f32' slope refused
        String known = elementBytes != null ? dtypeName.toUpperCase(java.util.Locale.ROOT) : dtypeName;
        return new TensorEntry(name, known, dims, dataStart + range[0], dataStart + range[1]);
    }

    /**
     * Sizes of the dtypes the safetensors format defines, so foreign tensors are checked too. In
     * any case: {@link DType#fromSafetensors} takes 'f32' as F32, so a lower-case dtype must not
     * skip the size check (a q of half its bytes was read on into k's data).
     */
    private static Integer knownElementBytes(String dtype) {
        switch (dtype.toUpperCase(java.util.Locale.ROOT)) {
            case "F64": case "I64": case "U64":
                return 8;
            case "F32": case "I32": case "U32":
                return 4;
            case "F16": case "BF16": case "I16": case "U16":
                return 2;
            case "I8": case "U8": case "BOOL": case "F8_E4M3": case "F8_E5M2":
                return 1;
            default:
                return null;
        }
    }

    private static long multiplyOrFail(String where, long a, long b) {
        try {
            return Math.multiplyExact(a, b);
        } catch (ArithmeticException e) {
            throw new InvalidInputException(where + ": shape is too large (element count overflows)");
        }
    }

    /** The file this header was read from or is meant for. */
    public String file() {
        return file;
    }

    /** Absolute offset of the first data byte: 8 + header length. */
    public long dataStart() {
        return dataStart;
    }

    /** Tensors in header order. */
    public Map<String, TensorEntry> tensors() {
        return tensors;
    }

    public TensorEntry tensor(String name) {
        return tensors.get(name);
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    /** Total file size the header describes: the end of its last tensor. */
    public long fileSize() {
        long end = dataStart;
        for (TensorEntry t : tensors.values()) {
            end = Math.max(end, t.end());
        }
        return end;
    }

    // ---------------------------------------------------------------- writing

    /** A tensor to lay out in a new file: name, dtype, shape. */
    public static final class Spec {
        final String name;
        final DType dtype;
        final long[] shape;

        public Spec(String name, DType dtype, long... shape) {
            this.name = name;
            this.dtype = dtype;
            this.shape = shape.clone();
        }

        long bytes() {
            long n = dtype.bytes();
            for (long d : shape) {
                n = Math.multiplyExact(n, d);
            }
            return n;
        }
    }

    /**
     * Lays out a new file holding {@code specs} back to back, in order. The header is padded with
     * spaces so that every tensor starts at a multiple of its element size (which keeps a float32
     * tensor after an odd number of 16-bit values aligned), preferring an 8-aligned data start.
     */
    public static SafetensorsHeader layout(String file, List<Spec> specs, Map<String, String> metadata) {
        ObjectNode root = JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            // sorted, so the same metadata always gives the same bytes
            ObjectNode m = root.putObject(METADATA);
            new java.util.TreeMap<>(metadata).forEach(m::put);
        }
        long offset = 0;
        long[] begins = new long[specs.size()];
        for (int i = 0; i < specs.size(); i++) {
            Spec s = specs.get(i);
            ObjectNode t = root.putObject(s.name);
            t.put("dtype", s.dtype.safetensorsName());
            ArrayNode shape = t.putArray("shape");
            for (long d : s.shape) {
                shape.add(d);
            }
            begins[i] = offset;
            offset = Math.addExact(offset, s.bytes());  // as bytes() multiplies: exact, or an error
            t.putArray("data_offsets").add(begins[i]).add(offset);
        }
        byte[] json;
        try {
            json = JSON.writeValueAsBytes(root);
        } catch (IOException e) {
            throw new IllegalStateException("cannot encode a safetensors header", e);
        }
        int minimal = json.length;
        int chosen = -1;
        // Data start 8 + n: try the 8-aligned lengths first, then any that aligns every tensor.
        for (int pass = 0; pass < 2 && chosen < 0; pass++) {
            for (int n = minimal; n < minimal + 16; n++) {
                long start = 8L + n;
                if (pass == 0 && start % 8 != 0) {
                    continue;
                }
                boolean aligned = true;
                for (int i = 0; i < specs.size(); i++) {
                    aligned &= (start + begins[i]) % specs.get(i).dtype.bytes() == 0;
                }
                if (aligned) {
                    chosen = n;
                    break;
                }
            }
        }
        if (chosen < 0) {
            chosen = minimal + (int) ((8 - (8 + minimal) % 8) % 8);
        }
        byte[] padded = new byte[chosen];
        System.arraycopy(json, 0, padded, 0, json.length);
        java.util.Arrays.fill(padded, json.length, chosen, (byte) ' ');
        return parse(file, padded, 8L + chosen + offset);
    }

    /** The bytes that start the file: the 8-byte length and the JSON header, as read or laid out. */
    public byte[] encode() {
        ByteBuffer out = ByteBuffer.allocate(8 + json.length).order(ByteOrder.LITTLE_ENDIAN);
        return out.putLong(json.length).put(json).array();
    }
}
