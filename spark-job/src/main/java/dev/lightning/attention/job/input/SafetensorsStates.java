package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.engine.AttentionSpec;
import dev.lightning.attention.engine.LightningState;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.job.output.Commit;
import dev.lightning.attention.job.output.OutputHeader;
import dev.lightning.attention.stream.FormatVersion;
import dev.lightning.attention.stream.OutputParts;
import dev.lightning.attention.tensor.InvalidInputException;
import dev.lightning.attention.tensor.SafetensorsHeader;
import dev.lightning.attention.tensor.TensorEntry;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Stored states in safetensors outputs. A result {@code NAME} (one file, or the parts form's
 * {@code NAME.index.json} with the part that holds the final state) stores {@code final_state}
 * [H, Dk, Dv] F32 and, from a normalizing run, {@code final_normalizer} [H, Dk] F32. The set of a
 * directory is its manifest {@link #MANIFEST} where it has one (written by a run with
 * --initial-states: every sequence and where its current state lies), else every result in it
 * (files in subdirectories too; names starting with {@code _} or {@code .} are skipped, and files
 * that are not safetensors outputs holding a {@code final_state} are not states).
 */
public final class SafetensorsStates implements StoredStates {
    /** The manifest of a complete state set, in the output directory of a run with --initial-states. */
    public static final String MANIFEST = "_states.json";
    static final String FORMAT = "lightning-states-1";

    private final Map<String, State> states;
    /** Files of a listed directory that are not readable states, by name: why. */
    private final Map<String, String> unreadable;

    private SafetensorsStates(Map<String, State> states, Map<String, String> unreadable) {
        this.states = states;
        this.unreadable = unreadable;
    }

    @Override
    public Map<String, State> states() {
        return states;
    }

    @Override
    public Map<String, String> unreadable() {
        return unreadable;
    }

    /** A state at a byte offset of a safetensors file (S, and z at its own offset or -1). */
    static final class FileState extends State {
        private static final long serialVersionUID = 1L;
        private final long kvOffset;
        private final long zOffset;
        /** The tokens the result itself says its state absorbed (its token_offset + T, or T), or -1. */
        final long ownTokens;

        FileState(int heads, int dk, int dv, long zOffset, String featureMap, double[] slopes, long tokens,
                  long ownTokens, String location, FileStatus file, long kvOffset, long sourceBytes,
                  String sourceSample, List<String> earlierInputs) {
            super(heads, dk, dv, zOffset >= 0, featureMap, slopes, tokens, location, file.getPath().toUri().toString(),
                    file.getLen(), file.getModificationTime(), sourceBytes, sourceSample, earlierInputs);
            this.kvOffset = kvOffset;
            this.zOffset = zOffset;
            this.ownTokens = ownTokens;
        }

        @Override
        public LightningState read(Configuration conf, AttentionSpec spec, String name, int sequence)
                throws IOException {
            float[] kv = floats(conf, file, kvOffset, spec.stateSize(), "final_state", name, sequence);
            if (!spec.normalized()) {
                return LightningState.own(heads, dk, dv, kv);
            }
            float[] z = floats(conf, file, zOffset, spec.normalizerSize(), "final_normalizer", name, sequence);
            return LightningState.own(heads, dk, dv, kv, z);
        }
    }

    /** Reads the set of {@code root} (qualified, committed): headers and JSON only, 16 at a time. */
    static SafetensorsStates read(FileSystem fs, Path root) throws IOException {
        Path table = HadoopPaths.child(root, StoredStates.STATES_TABLE);
        if (fs.exists(table) && fs.getFileStatus(table).isDirectory()) {
            // a table run's output: its states are rows of final_states/, which a run that writes
            // safetensors does not read; listed as files, none would match an input, and every
            // sequence would start from zero without a word
            throw new InvalidInputException("--initial-states " + root + " is the output of a run over tables (it "
                    + "holds " + StoredStates.STATES_TABLE + "/): its states are continued by a run that writes tables "
                    + "(--output-format parquet); give the --output directory of an earlier run that wrote safetensors "
                    + "files, or write tables");
        }
        Map<String, String> locations = new TreeMap<>(); // name -> result path (qualified URI)
        Map<String, Long> tokens = new TreeMap<>();     // name -> chain tokens, from a manifest
        Map<String, JsonNode> entries = new TreeMap<>(); // name -> its manifest entry
        Path manifest = new Path(root, MANIFEST);
        boolean listed = !fs.exists(manifest);
        if (!listed) {
            checkCurrent(fs, root);
            JsonNode m;
            try (FSDataInputStream in = fs.open(manifest)) {
                m = MANIFEST_JSON.readTree((java.io.InputStream) in);
            } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
                throw new InvalidInputException(manifest + ": not a lightning state manifest (not JSON: "
                        + e.getOriginalMessage() + "); give the --output directory of a lightning run", e);
            }
            if (m == null) {
                throw new InvalidInputException(manifest + ": not a lightning state manifest (empty); give the "
                        + "--output directory of a lightning run");
            }
            FormatVersion.check(manifest.toString(), m); // a later build's may name states otherwise
            if (!FORMAT.equals(m.path("format").asText())) {
                throw new InvalidInputException(manifest + ": not a lightning state manifest (format '"
                        + m.path("format").asText() + "', expected " + FORMAT + ")");
            }
            if (!m.path("sequences").isObject()) {
                throw new InvalidInputException(manifest + ": not a lightning state manifest ('sequences' must be an "
                        + "object of entries by sequence name, found " + describeJson(m.path("sequences")) + ")"
                        + REWRITE_MANIFEST + root);
            }
            for (var it = m.path("sequences").fields(); it.hasNext(); ) {
                var e = it.next();
                JsonNode entry = e.getValue();
                locations.put(e.getKey(), uriOf(entryLocation(manifest, root, e.getKey(), entry)));
                tokens.put(e.getKey(), entry.has("tokens") ? entry.path("tokens").asLong() : -1);
                entries.put(e.getKey(), entry);
            }
        } else {
            list(fs, root, "", locations);
        }
        ExecutorService pool = Executors.newFixedThreadPool(Math.max(1, Math.min(16, locations.size())));
        try {
            Map<String, Future<State>> futures = new TreeMap<>();
            for (Map.Entry<String, String> e : locations.entrySet()) {
                futures.put(e.getKey(), pool.submit(() -> describe(fs, e.getValue(), tokens.get(e.getKey()), !listed)));
            }
            Map<String, State> states = new TreeMap<>();
            Map<String, String> unreadable = new TreeMap<>();
            for (Map.Entry<String, Future<State>> e : futures.entrySet()) {
                try {
                    states.put(e.getKey(), e.getValue().get());
                } catch (java.util.concurrent.ExecutionException x) {
                    Throwable c = x.getCause();
                    // a later build's result is no broken one: left out, it would drop from the state set unseen
                    if (listed && c instanceof InvalidInputException && !(c instanceof FormatVersion.TooNew)) {
                        unreadable.put(e.getKey(), c.getMessage()); // another file, or a broken result: see unreadable()
                        continue;
                    }
                    if (c instanceof RuntimeException) {
                        throw (RuntimeException) c;
                    }
                    throw c instanceof IOException ? (IOException) c : new IOException(c);
                } catch (InterruptedException x) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while reading stored states", x);
                }
            }
            if (!listed) {
                checkRecorded(root, entries, states);
            }
            return new SafetensorsStates(states, unreadable);
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * Manifests are read with duplicate names refused: of two entries for one sequence, JSON
     * readers keep either, so which state a sequence continues from would be a reader's choice.
     */
    private static final ObjectMapper MANIFEST_JSON = new ObjectMapper(com.fasterxml.jackson.core.JsonFactory.builder()
            .enable(com.fasterxml.jackson.core.StreamReadFeature.STRICT_DUPLICATE_DETECTION).build());

    /** What to do about a manifest whose entries {@link #entryLocation} refuses; the directory follows. */
    private static final String REWRITE_MANIFEST = "; the manifest was edited or damaged: restore it as the run that "
            + "wrote it left it, or rerun the append that wrote ";

    /**
     * Where a manifest entry says its sequence's state lies, once the entry is one {@link #writeManifest} writes:
     * an object with either {@code file}, a name relative to the directory, or {@code uri}, an absolute URI; with
     * {@code tokens} a token count where present; and {@link #BYTES} and {@link #MODIFIED}, both or neither, as
     * whole numbers. Anything else would be read as some other state or none (a missing name as the directory
     * itself, a size that is not a number as 0), so it is refused, naming the sequence and what was found.
     */
    private static Path entryLocation(Path manifest, Path root, String name, JsonNode entry) {
        String where = manifest + ": the entry of '" + name + "' ";
        if (!entry.isObject()) {
            throw new InvalidInputException(where + "must be an object with \"file\" or \"uri\" and \"tokens\", "
                    + "found " + describeJson(entry) + REWRITE_MANIFEST + root);
        }
        JsonNode tokens = entry.get("tokens");
        if (tokens != null && !(tokens.canConvertToExactIntegral() && tokens.canConvertToLong() && tokens.asLong() >= 0)) {
            throw new InvalidInputException(where + "has \"tokens\" " + describeJson(tokens) + ", expected a token "
                    + "count (a whole number >= 0)" + REWRITE_MANIFEST + root);
        }
        if (entry.has(BYTES) != entry.has(MODIFIED)) {
            throw new InvalidInputException(where + "has \"" + (entry.has(BYTES) ? BYTES : MODIFIED) + "\" without \""
                    + (entry.has(BYTES) ? MODIFIED : BYTES) + "\": the size and the modification time of the state's "
                    + "file are recorded together" + REWRITE_MANIFEST + root);
        }
        for (String key : new String[] {BYTES, MODIFIED}) {
            JsonNode n = entry.get(key);
            if (n != null && !(n.canConvertToExactIntegral() && n.canConvertToLong())) {
                throw new InvalidInputException(where + "has \"" + key + "\" " + describeJson(n) + ", expected a whole "
                        + "number" + REWRITE_MANIFEST + root);
            }
        }
        JsonNode file = entry.get("file");
        JsonNode uri = entry.get("uri");
        if ((file == null) == (uri == null) || !(file != null ? file : uri).isTextual()) {
            throw new InvalidInputException(where + "must name its state by one string, \"file\" (in this "
                    + "directory) or \"uri\" (elsewhere); found " + (file == null && uri == null ? "neither"
                    : file != null && uri != null ? "both" : "\"" + (file != null ? "file" : "uri") + "\" "
                    + describeJson(file != null ? file : uri)) + REWRITE_MANIFEST + root);
        }
        try {
            if (file != null) {
                return HadoopPaths.child(root, file.textValue());
            }
            java.net.URI u = new java.net.URI(uri.textValue());
            if (!u.isAbsolute() || u.getPath() == null || u.getPath().isEmpty() || u.getPath().endsWith("/")) {
                throw new java.net.URISyntaxException(uri.textValue(), "expected an absolute URI of a file, such as "
                        + "file:/data/states-1/a.safetensors");
            }
            return new Path(u);
        } catch (IllegalArgumentException | java.net.URISyntaxException e) {
            throw new InvalidInputException(where + "names " + (file != null ? "file '" + file.textValue()
                    : "uri '" + uri.textValue()) + "', which is not a state's place: " + e.getMessage()
                    + REWRITE_MANIFEST + root, e);
        }
    }

    /** A JSON value as a refusal shows it: short, on one line. */
    private static String describeJson(JsonNode n) {
        if (n == null || n.isMissingNode()) {
            return "nothing";
        }
        String text = n.toString();
        return text.length() > 80 ? text.substring(0, 77) + "..." : text;
    }

    /**
     * A manifest is the state set only if the directory's last run wrote it: a later run without
     * --initial-states into the same directory (with --overwrite) replaces results the manifest
     * names by file, with other token counts, and leaves the manifest. The run report says
     * whether its run published one ({@link #REPORT_KEY}).
     */
    private static void checkCurrent(FileSystem fs, Path root) throws IOException {
        JsonNode report = Commit.readReport(fs, root, "--initial-states " + root);
        if (report == null || !report.path(REPORT_KEY).asBoolean(false)) {
            throw new InvalidInputException("--initial-states " + root + ": its " + MANIFEST + " was not written by "
                    + "the directory's last run (" + Commit.REPORT + " does not list it: a run without "
                    + "--initial-states wrote there since), so it may name states that were replaced; rerun the "
                    + "append that wrote it, or remove " + MANIFEST + " to use the directory's own results as the "
                    + "state set");
        }
    }

    /**
     * Refuses a manifest whose states are not the ones it recorded: an entry by URI (a state in an
     * earlier directory) whose file no longer has the size and modification time recorded for it
     * (that directory was written again, or the file copied over: the chain would continue from
     * another state), and any entry whose token count the stored result's own contradicts (its
     * token_offset + T, or T). Manifests written before sizes and times were recorded have none:
     * only their token counts are compared.
     */
    private static void checkRecorded(Path root, Map<String, JsonNode> entries, Map<String, State> states) {
        List<String> replaced = new java.util.ArrayList<>();
        List<String> counts = new java.util.ArrayList<>();
        for (Map.Entry<String, JsonNode> e : entries.entrySet()) {
            JsonNode entry = e.getValue();
            FileState st = (FileState) states.get(e.getKey());
            if (entry.has(BYTES) && entry.has(MODIFIED)) {
                long bytes = entry.path(BYTES).asLong();
                long modified = entry.path(MODIFIED).asLong();
                if (bytes != st.fileBytes || modified != st.fileModified) {
                    replaced.add(e.getKey() + ": " + st.file + " was recorded with " + bytes + " bytes, modified "
                            + java.time.Instant.ofEpochMilli(modified) + ", and now has " + st.fileBytes
                            + " bytes, modified " + java.time.Instant.ofEpochMilli(st.fileModified));
                    continue;
                }
            }
            long recorded = entry.path("tokens").asLong(-1);
            if (recorded >= 0 && st.ownTokens >= 0 && recorded != st.ownTokens) {
                counts.add(e.getKey() + ": the manifest records " + recorded + " tokens, its stored result "
                        + st.location + " says " + st.ownTokens + " (its token_offset + T, or T without token_offset)");
            }
        }
        if (!replaced.isEmpty()) {
            throw new InvalidInputException("--initial-states " + root + ": " + MANIFEST + " names " + replaced.size()
                    + " state(s) whose file was replaced since it was written: " + Examples.of(replaced, 5, "; ") + ". The chain "
                    + "of such a sequence would continue from another state than the one it reached, and its results "
                    + "would be wrong without a sign. Restore the recorded file; or, if the sequence should continue "
                    + "from the file there now, rerun the append that wrote " + root + " (its manifest then records "
                    + "that file); or start the sequence's chain again from its first segment");
        }
        if (!counts.isEmpty()) {
            throw new InvalidInputException("--initial-states " + root + ": " + MANIFEST + " and the stored results it "
                    + "names disagree on how many tokens " + counts.size() + " state(s) have absorbed: "
                    + Examples.of(counts, 5, "; ") + ". The result is not the one the manifest recorded (replaced since, or the "
                    + "manifest edited), and the chain would continue from another state or at the wrong position. "
                    + "Restore the result the manifest names, or rerun the append that wrote " + root);
        }
    }

    /** A manifest entry's keys for the size and modification time of the file that holds its state (entries by URI). */
    static final String BYTES = "bytes", MODIFIED = "modified";

    /** The run report's key saying that the run published {@link #MANIFEST}. */
    public static final String REPORT_KEY = "statesManifest";

    /** The results below {@code dir}: files (names relative to the root) and parts indexes (without the suffix). */
    private static void list(FileSystem fs, Path dir, String prefix, Map<String, String> found) throws IOException {
        for (FileStatus s : fs.listStatus(dir)) {
            String n = s.getPath().getName();
            if (InputListing.hidden(n)) {
                continue;
            }
            if (s.isDirectory()) {
                if (!n.endsWith(OutputParts.PARTS_SUFFIX)) {
                    list(fs, s.getPath(), prefix + n + "/", found);
                }
            } else if (n.endsWith(OutputParts.INDEX_SUFFIX)) {
                String name = n.substring(0, n.length() - OutputParts.INDEX_SUFFIX.length());
                found.put(prefix + name, uriOf(HadoopPaths.child(dir, name)));
            } else {
                found.put(prefix + n, uriOf(s.getPath()));
            }
        }
    }

    /**
     * A location in one form however it was listed or recorded ({@code file:/a/b}; a listing can give
     * {@code file:///a/b}), as a URI string: what a manifest records and messages name.
     */
    static String uriOf(Path p) {
        java.net.URI u = p.toUri();
        try {
            return new java.net.URI(u.getScheme(), u.getAuthority(), u.getPath(), null, null).toString();
        } catch (java.net.URISyntaxException e) {
            throw new IllegalArgumentException(p + ": " + e.getMessage(), e);
        }
    }

    /**
     * The state of the result at {@code location}: {@code NAME}, or its parts index {@code NAME.index.json}, named
     * so or found beside a {@code NAME} that does not exist. A state found in the parts form takes the index as its
     * location (the file that is there; the state lies in its last part), so that a manifest names it by a file that
     * exists. Throws InvalidInputException where it holds none; a manifest's entries say so in the message.
     */
    private static State describe(FileSystem fs, String location, Long chainTokens, boolean required)
            throws IOException {
        Path named = new Path(java.net.URI.create(location));
        boolean isIndex = named.getName().endsWith(OutputParts.INDEX_SUFFIX);
        Path result = named;
        Path index = isIndex ? named : HadoopPaths.child(named.getParent(), OutputParts.indexName(named.getName()));
        try {
            if (!isIndex && fs.exists(result)) {
                FileStatus st = fs.getFileStatus(result);
                SafetensorsHeader h = header(fs, st);
                return of(h, h, st, location, h.tensor("o") != null ? h.tensor("o").dim(0)
                        : tokensOf(h.metadata().get("o_shape")), chainTokens);
            }
            if (fs.exists(index)) {
                OutputParts.Index parts;
                try (FSDataInputStream in = fs.open(index)) {
                    parts = OutputParts.readIndex(uriOf(index), in.readAllBytes());
                }
                for (OutputParts.IndexedPart part : parts.parts) {
                    if (part.rows.containsKey("final_state")) {
                        Path file = HadoopPaths.child(index.getParent(), part.file);
                        FileStatus st;
                        try {
                            st = fs.getFileStatus(file);
                        } catch (java.io.FileNotFoundException e) {
                            throw new InvalidInputException(uriOf(index) + ": names the part " + part.file
                                    + ", which holds the final state and is missing; the output is incomplete: rerun "
                                    + "the job that wrote it", e);
                        }
                        SafetensorsHeader h = header(fs, st);
                        long[] o = parts.shapes.get("o");
                        String at = uriOf(index);
                        return of(h, SafetensorsHeader.layout(at, List.of(), parts.metadata), st, at,
                                o != null && o.length > 0 ? o[0] : -1, chainTokens);
                    }
                }
            }
        } catch (InvalidInputException e) {
            // the message already names the file it read, by its URI (the location, or the index or
            // part it led to): the option is all a manifest's refusal adds
            throw required ? new InvalidInputException("--initial-states: " + e.getMessage(), e) : e;
        }
        throw new InvalidInputException(required ? "--initial-states: the manifest names " + location + ", which is "
                + "missing or holds no final_state; the stored state set is incomplete"
                : location + ": neither it nor its parts index holds a final_state");
    }

    private static State of(SafetensorsHeader tensors, SafetensorsHeader meta, FileStatus st, String location,
                            long tokens, Long chainTokens) {
        FormatVersion.check(location, meta.metadata()); // before any key of it is read by this build's layout
        TensorEntry s = tensors.tensor("final_state");
        if (s == null) {
            throw new InvalidInputException(location + " holds no final_state");
        }
        if (!"F32".equals(s.dtypeName()) || s.rank() != 3) {
            throw new InvalidInputException(location + ": final_state must be F32 [H, Dk, Dv], found " + s.dtypeName()
                    + " " + Arrays.toString(s.shape()));
        }
        TensorEntry z = tensors.tensor("final_normalizer");
        if (z != null && (!"F32".equals(z.dtypeName()) || !Arrays.equals(z.shape(), new long[] {s.dim(0), s.dim(1)}))) {
            throw new InvalidInputException(location + ": final_normalizer must be F32 [" + s.dim(0) + ", " + s.dim(1)
                    + "], found " + z.dtypeName() + " " + Arrays.toString(z.shape()));
        }
        String featureMap = meta.metadata().getOrDefault("feature_map", "identity");
        long sourceBytes = -1;
        String sourceSample = meta.metadata().get(OutputHeader.INPUT_SAMPLE);
        if (sourceSample != null) { // results written before the input was recorded have none: not compared
            // a value no input's size or sample can equal would turn the "same segment twice" check off unseen
            try {
                sourceBytes = Long.parseLong(meta.metadata().getOrDefault(OutputHeader.INPUT_BYTES, ""));
            } catch (NumberFormatException e) {
                sourceBytes = -1;
            }
            if (sourceBytes < 0) {
                throw new InvalidInputException(location + ": metadata " + OutputHeader.INPUT_BYTES + " '"
                        + meta.metadata().get(OutputHeader.INPUT_BYTES) + "' is not a size in bytes (a whole number "
                        + ">= 0); the result was edited or damaged: rerun the run that wrote it");
            }
            if (!OutputHeader.isSample(sourceSample)) {
                throw new InvalidInputException(location + ": metadata " + OutputHeader.INPUT_SAMPLE + " '"
                        + sourceSample + "' is not a content sample (a CRC32C in lower-case hex, at most 8 digits); "
                        + "the result was edited or damaged: rerun the run that wrote it");
            }
        }
        List<String> earlier = List.of();
        String earlierText = meta.metadata().get(OutputHeader.EARLIER_INPUTS);
        if (earlierText != null) {
            try {
                earlier = OutputHeader.parseInputKeys(earlierText);
            } catch (IllegalArgumentException e) {
                throw new InvalidInputException(location + ": metadata " + OutputHeader.EARLIER_INPUTS + " '"
                        + earlierText + "' is not a list of bytes/sample entries (" + e.getMessage() + ")", e);
            }
        }
        // tokens absorbed: the manifest's, else the result's own T after its token_offset (a continued sequence's)
        long absorbed = tokens;
        String offset = meta.metadata().get(OutputHeader.TOKEN_OFFSET);
        if (offset != null && tokens >= 0) {
            long declared;
            try {
                declared = Long.parseLong(offset);
            } catch (NumberFormatException e) {
                declared = -1;
            }
            // a negative offset, or one past what a count of tokens holds with T added, would be recorded as the
            // continued output's token_offset (or wrap to a negative one) and carry on down the chain
            if (declared < 0 || declared > Long.MAX_VALUE - tokens) {
                throw new InvalidInputException(location + ": metadata " + OutputHeader.TOKEN_OFFSET + " '" + offset
                        + "' is not a token count (a whole number >= 0 that, with the result's " + tokens + " tokens, "
                        + "is at most " + Long.MAX_VALUE + "); the result was edited or damaged: rerun the run that "
                        + "wrote it");
            }
            absorbed = declared + tokens;
        }
        double[] slopes = null;
        String recorded = meta.metadata().get(OutputHeader.SLOPES);
        if (recorded != null) { // results written before the slopes were recorded have none: not compared
            try {
                slopes = OutputHeader.parseSlopes(recorded);
            } catch (NumberFormatException e) {
                throw new InvalidInputException(location + ": metadata " + OutputHeader.SLOPES + " '" + recorded
                        + "' is not a list of decay rates", e);
            }
        }
        return new FileState((int) s.dim(0), (int) s.dim(1), (int) s.dim(2), z == null ? -1 : z.begin(), featureMap,
                slopes, chainTokens != null && chainTokens >= 0 ? chainTokens : absorbed, absorbed, location, st,
                s.begin(), sourceBytes, sourceSample, earlier);
    }

    /** T of an "o_shape" metadata value "[T, H, Dv]" (--output-mode checksums), or -1. */
    private static long tokensOf(String shape) {
        if (shape == null) {
            return -1;
        }
        try {
            return Math.max(-1, Long.parseLong(shape.replaceAll("[\\[\\]\\s]", "").split(",")[0]));
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** The header of {@code st}; a refusal names the file by its URI, as every message of {@link #describe} does. */
    private static SafetensorsHeader header(FileSystem fs, FileStatus st) throws IOException {
        String name = uriOf(st.getPath());
        try (FSDataInputStream in = fs.open(st.getPath())) {
            byte[] prefix = new byte[8];
            in.readFully(0, prefix);
            long n = SafetensorsHeader.headerLength(name, prefix, st.getLen());
            byte[] text = new byte[Math.toIntExact(n)];
            in.readFully(8, text);
            return SafetensorsHeader.parse(name, text, st.getLen());
        } catch (java.io.EOFException e) {
            throw new InvalidInputException(name + ": not a safetensors file (too short)", e);
        } catch (RuntimeException e) { // a header that does not parse: not a safetensors file
            throw e instanceof InvalidInputException ? e : new InvalidInputException(name + ": " + e.getMessage(), e);
        }
    }

    /**
     * The manifest of the complete state set a run with --initial-states publishes: for each
     * sequence this run wrote, {@code "file"}: its result in this directory (by name), and the
     * chain's tokens; for each stored sequence it did not touch, {@code "uri"}: where its state
     * still lies (the stored location), its tokens, and the size and modification time of the file
     * that holds it ({@link #BYTES}, {@link #MODIFIED}), which the next run compares. Keys sorted,
     * so two runs write the same bytes.
     */
    static byte[] manifest(Map<String, Long> written, Map<String, State> untouched) throws IOException {
        java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
        writeManifest(written, untouched, bytes);
        return bytes.toByteArray();
    }

    /** {@link #manifest}, streamed (indented JSON): nothing per sequence held but the maps given. */
    public static void writeManifest(Map<String, Long> written, Map<String, State> untouched, java.io.OutputStream out)
            throws IOException {
        TreeMap<String, Boolean> names = new TreeMap<>();
        written.keySet().forEach(n -> names.put(n, true));
        untouched.keySet().forEach(n -> names.putIfAbsent(n, false));
        try (com.fasterxml.jackson.core.JsonGenerator g = new ObjectMapper().getFactory().createGenerator(
                new java.io.FilterOutputStream(out) {
                    @Override
                    public void close() throws IOException {
                        flush(); // the caller closes its stream
                    }
                })) {
            g.useDefaultPrettyPrinter();
            g.writeStartObject();
            g.writeStringField("format", FORMAT);
            g.writeNumberField(FormatVersion.KEY, FormatVersion.CURRENT);
            g.writeFieldName("sequences");
            g.writeStartObject();
            for (Map.Entry<String, Boolean> e : names.entrySet()) {
                g.writeFieldName(e.getKey());
                g.writeStartObject();
                if (e.getValue()) {
                    g.writeStringField("file", e.getKey());
                    g.writeNumberField("tokens", written.get(e.getKey()));
                } else {
                    State st = untouched.get(e.getKey());
                    g.writeStringField("uri", st.location);
                    g.writeNumberField("tokens", st.tokens);
                    g.writeNumberField(BYTES, st.fileBytes);
                    g.writeNumberField(MODIFIED, st.fileModified);
                }
                g.writeEndObject();
            }
            g.writeEndObject();
            g.writeEndObject();
        }
    }
}
