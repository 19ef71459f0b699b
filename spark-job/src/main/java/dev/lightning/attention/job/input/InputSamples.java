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
 * ({@link #REPORT_KEY}); a run whose {@code --initial-states} directory's report lists a file of the
 * same size and sample as one of its own inputs is refused before compute ({@link #repeated}): that
 * file's tokens are already in the stored states, and appending them again would absorb them twice
 * without a word (a blocks table's {@code start} counts from the segment's own token 0, so the rows
 * themselves cannot say it). A copy elsewhere is the same input; a file rewritten with other values
 * is not.
 */
public final class InputSamples {
    /** The run report's key of the list: {@code [{"path", "bytes", "sample"}]}. */
    public static final String REPORT_KEY = "inputFiles";

    /** One data file of an input. */
    public record Entry(String path, long bytes, String sample) {
    }

    private InputSamples() {
    }

    /**
     * The data files at or below {@code paths} (a file given by its path counts whatever its name; below a
     * directory, names starting with {@code _} or {@code .} are skipped as Spark's readers skip them:
     * {@code _SUCCESS}, checksums, a writer's {@code _temporary/}), each with its size and sample, in path
     * order; empty files are left out (their sample says nothing). Samples are read on up to 16 threads: on an
     * object store each is a few round trips.
     */
    public static List<Entry> of(Configuration conf, List<String> paths) throws IOException {
        List<LocatedFileStatus> files = new ArrayList<>();
        for (String p : paths) {
            Path given = HadoopPaths.parse(p);
            FileSystem fs = HadoopPaths.fileSystem(given, conf);
            Path root = fs.makeQualified(given);
            int depth = root.depth();
            for (RemoteIterator<LocatedFileStatus> it = fs.listFiles(root, true); it.hasNext(); ) {
                LocatedFileStatus st = it.next();
                if (st.getLen() > 0 && !hidden(st.getPath(), depth)) {
                    files.add(st);
                }
            }
        }
        files.sort(Comparator.comparing(st -> st.getPath().toString()));
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

    /** The entries of safetensors inputs whose samples were read with their headers (SequenceFiles.inspectAll), in path order. */
    public static List<Entry> of(List<dev.lightning.attention.stream.SequenceFile> files) {
        List<Entry> out = new ArrayList<>(files.size());
        for (dev.lightning.attention.stream.SequenceFile f : files) {
            out.add(new Entry(f.path, f.fileSize, java.util.Objects.requireNonNull(f.sample, "a sampled input")));
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
     * Refuses {@code current}, this run's input files, where {@code recorded} (the {@link #REPORT_KEY} array of
     * the report in {@code storesDir}, the --initial-states directory; null or missing in a report written
     * before it was recorded: nothing compared) lists a file of the same size and sample: that input was
     * already absorbed into the states this run would continue.
     */
    public static void refuseRepeated(String storesDir, JsonNode recorded, List<Entry> current) {
        List<String> problems = repeated(recorded, current);
        if (!problems.isEmpty()) {
            throw new InvalidInputException("--initial-states " + storesDir + ": its states were computed from "
                    + problems.size() + " of this run's input file(s), the same size and content sample as its run "
                    + "recorded: " + Examples.of(problems, 5, "; ") + ". Their tokens are already in those states, "
                    + "and continuing them with the same tokens again would absorb them twice. Give the tokens that "
                    + "follow (or leave out the files repeated); to compute this segment again, continue from what "
                    + "that run continued (the --initial-states of its report's settings; none there: run without "
                    + "--initial-states)");
        }
    }

    /** The messages of {@link #refuseRepeated}, one per repeated file (empty: none). */
    static List<String> repeated(JsonNode recorded, List<Entry> current) {
        List<String> problems = new ArrayList<>();
        if (recorded == null || !recorded.isArray()) {
            return problems;
        }
        Map<String, String> byContent = new HashMap<>();
        for (JsonNode r : recorded) {
            if (r.hasNonNull("bytes") && r.hasNonNull("sample")) {
                byContent.putIfAbsent(r.get("bytes").asLong() + "/" + r.get("sample").asText(), r.path("path").asText());
            }
        }
        for (Entry e : current) {
            String was = byContent.get(e.bytes + "/" + e.sample);
            if (was != null) {
                problems.add("'" + e.path + "' (" + e.bytes + " bytes)" + (was.equals(e.path) ? ""
                        : ", as '" + was + "' there"));
            }
        }
        return problems;
    }
}
