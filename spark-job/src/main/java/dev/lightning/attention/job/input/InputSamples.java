package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * What a table run computed from, so that a later append can tell that it is given the same input
 * again: every data file of its input, by size and content sample ({@link SequenceFiles#sample}, the
 * sample a files run records in each output's metadata). The run report records the list
 * ({@link #REPORT_KEY}), and a run with {@code --initial-states} also the files every run before it in
 * the chain computed from ({@link #EARLIER_KEY}: its stored directory's two lists, each file once). A run
 * whose {@code --initial-states} directory's report lists a file of the same size and sample as one of
 * its own inputs, in either list, is refused before compute ({@link #repeated}): that file's tokens are
 * already in the stored states, and appending them again would absorb them twice without a word (a
 * blocks table's {@code start} counts from the segment's own token 0, so the rows themselves cannot
 * say it). A copy elsewhere is the same input; a file rewritten with other values is not.
 */
public final class InputSamples {
    /** The run report's key of the list: {@code [{"path", "bytes", "sample"}]}. */
    public static final String REPORT_KEY = "inputFiles";

    /**
     * The run report's key of the files the states a run continued had absorbed before it: {@code [{"path", "bytes",
     * "sample", "output"}]}, output the directory whose run computed from the file. Written by a run with
     * --initial-states whose stored directory's report records its inputs.
     */
    public static final String EARLIER_KEY = "earlierInputFiles";

    /** One data file of an input. */
    public record Entry(String path, long bytes, String sample) {
        String content() {
            return dev.lightning.attention.job.output.OutputHeader.inputKey(bytes, sample);
        }
    }

    /**
     * A file whose tokens a stored directory's states absorbed: {@code output} is the directory whose run read it
     * (qualified), {@code own} whether that is the stored directory itself.
     */
    public record Absorbed(Entry entry, String output, boolean own) {
    }

    private InputSamples() {
    }

    /**
     * The data files at or below {@code paths}, in path order: a file given by its path counts whatever its name;
     * below a directory, names starting with {@code _} or {@code .} are skipped as Spark's readers skip them
     * ({@code _SUCCESS}, checksums, a writer's {@code _temporary/}). Empty files are listed (a run's fingerprint
     * takes them); {@link #of} leaves them out.
     */
    public static List<LocatedFileStatus> list(Configuration conf, List<String> paths) throws IOException {
        List<LocatedFileStatus> files = new ArrayList<>();
        for (String p : paths) {
            Path given = HadoopPaths.parse(p);
            FileSystem fs = HadoopPaths.fileSystem(given, conf);
            Path root = fs.makeQualified(given);
            int depth = root.depth();
            for (RemoteIterator<LocatedFileStatus> it = fs.listFiles(root, true); it.hasNext(); ) {
                LocatedFileStatus st = it.next();
                if (!hidden(st.getPath(), depth)) {
                    files.add(st);
                }
            }
        }
        files.sort(Comparator.comparing(st -> st.getPath().toString()));
        return files;
    }

    /**
     * Each of {@code listed} ({@link #list}) with its size and sample, in their order; empty files are left out
     * (their sample says nothing). Samples are read on up to 16 threads: on an object store each is a few round
     * trips.
     */
    public static List<Entry> of(Configuration conf, List<LocatedFileStatus> listed) throws IOException {
        List<LocatedFileStatus> files = listed.stream().filter(st -> st.getLen() > 0).toList();
        if (files.isEmpty()) {
            return List.of();
        }
        ExecutorService pool = Executors.newFixedThreadPool(Math.min(16, files.size()));
        try {
            List<Future<Entry>> futures = new ArrayList<>();
            for (LocatedFileStatus st : files) {
                futures.add(pool.submit(() -> {
                    FileSystem fs = HadoopPaths.fileSystem(st.getPath(), conf);
                    try (FSDataInputStream in = fs.open(st.getPath())) {
                        return new Entry(st.getPath().toString(), st.getLen(), SequenceFiles.sample(in::readFully, st.getLen()));
                    }
                }));
            }
            List<Entry> out = new ArrayList<>(futures.size());
            for (Future<Entry> f : futures) {
                out.add(f.get());
            }
            return out;
        } catch (ExecutionException e) {
            throw e.getCause() instanceof IOException io ? io : new IOException(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while sampling the input files", e);
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * The entries of safetensors inputs whose samples were read with their headers (SequenceFiles.inspectAll), in path
     * order. A SequenceFile holds its path as a URI string (what an executor opens; {@code file:///a/b}); the entries
     * take the path's own form ({@code file:/a/b}), as {@link #of(Configuration, List)} and the report's other paths do.
     */
    public static List<Entry> of(List<dev.lightning.attention.stream.SequenceFile> files) {
        List<Entry> out = new ArrayList<>(files.size());
        for (dev.lightning.attention.stream.SequenceFile f : files) {
            out.add(new Entry(new Path(java.net.URI.create(f.path)).toString(), f.fileSize,
                    java.util.Objects.requireNonNull(f.sample, "a sampled input")));
        }
        out.sort(Comparator.comparing(Entry::path));
        return out;
    }

    /** Whether a path component below the input's root (at depth {@code rootDepth}) is one a listing skips. */
    private static boolean hidden(Path p, int rootDepth) {
        for (Path q = p; q != null && q.depth() > rootDepth; q = q.getParent()) {
            if (InputListing.hidden(q.getName())) {
                return true;
            }
        }
        return false;
    }

    /** {@code entries} into a report's array. */
    public static void record(ArrayNode into, List<Entry> entries) {
        for (Entry e : entries) {
            into.addObject().put("path", e.path).put("bytes", e.bytes).put("sample", e.sample);
        }
    }

    /**
     * The files whose tokens the states in {@code storesRoot} (an --initial-states directory, qualified) absorbed, from
     * its run's {@code report}: the run's own inputs ({@link #REPORT_KEY}, output {@code storesRoot}), then those of
     * the runs before it ({@link #EARLIER_KEY}), each content once. Null where the report records no inputs (no
     * report, or one written before they were recorded): what the states absorbed is unknown.
     */
    public static List<Absorbed> absorbed(String storesRoot, JsonNode report) {
        JsonNode own = report == null ? null : report.get(REPORT_KEY);
        if (own == null || !own.isArray()) {
            return null;
        }
        Map<String, Absorbed> byContent = new java.util.LinkedHashMap<>();
        for (JsonNode r : own) {
            add(byContent, r, storesRoot, true);
        }
        for (JsonNode r : report.path(EARLIER_KEY)) {
            add(byContent, r, r.path("output").asText(null), false);
        }
        return new ArrayList<>(byContent.values());
    }

    private static void add(Map<String, Absorbed> byContent, JsonNode r, String output, boolean own) {
        if (r.hasNonNull("bytes") && r.hasNonNull("sample")) {
            Entry e = new Entry(r.path("path").asText(), r.get("bytes").asLong(), r.get("sample").asText());
            byContent.putIfAbsent(e.content(), new Absorbed(e, output, own));
        }
    }

    /** {@code absorbed} into a report's {@link #EARLIER_KEY} array. */
    public static void recordEarlier(ArrayNode into, List<Absorbed> absorbed) {
        for (Absorbed a : absorbed) {
            into.addObject().put("path", a.entry.path).put("bytes", a.entry.bytes).put("sample", a.entry.sample)
                    .put("output", a.output);
        }
    }

    /**
     * Refuses {@code current}, this run's input files, where {@code absorbed} (what the states in {@code storesDir},
     * the --initial-states directory, absorbed: {@link #absorbed}; null where unknown: nothing compared) holds a
     * file of the same size and sample: that input is already in the states this run would continue.
     */
    public static void refuseRepeated(String storesDir, List<Absorbed> absorbed, List<Entry> current) {
        List<String> problems = repeated(absorbed, current);
        if (!problems.isEmpty()) {
            throw new InvalidInputException("--initial-states " + storesDir + ": its states were computed from "
                    + problems.size() + " of this run's input file(s), the same size and content sample as its run "
                    + "(or a run before it, whose states it continued) recorded: " + Examples.of(problems, 5, "; ")
                    + ". Their tokens are already in those states, and continuing them with the same tokens again "
                    + "would absorb them twice. Give the tokens that follow (or leave out the files repeated); to "
                    + "compute this segment again, continue from what the run that read it continued (the "
                    + "--initial-states of that output's report settings; none there: run without --initial-states)");
        }
    }

    /** The messages of {@link #refuseRepeated}, one per repeated file (empty: none). */
    static List<String> repeated(List<Absorbed> absorbed, List<Entry> current) {
        List<String> problems = new ArrayList<>();
        if (absorbed == null) {
            return problems;
        }
        Map<String, Absorbed> byContent = new HashMap<>();
        for (Absorbed a : absorbed) {
            byContent.putIfAbsent(a.entry.content(), a);
        }
        for (Entry e : current) {
            Absorbed was = byContent.get(e.content());
            if (was != null) {
                problems.add("'" + e.path + "' (" + e.bytes + " bytes)" + (was.entry.path.equals(e.path) ? ""
                        : ", as '" + was.entry.path + "'") + (was.own ? ""
                        : ", read by the earlier run that wrote " + (was.output == null ? "(not recorded)"
                        : "'" + was.output + "'")));
            }
        }
        return problems;
    }
}
