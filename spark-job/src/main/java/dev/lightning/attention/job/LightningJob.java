package dev.lightning.attention.job;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.plan.Piece;
import dev.lightning.attention.plan.PiecePlanner;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.fs.BlockLocation;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.LocatedFileStatus;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.fs.RemoteIterator;
import org.apache.spark.SparkContext;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.util.LongAccumulator;

import java.io.IOException;
import java.io.PrintStream;
import java.io.Serializable;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * The driver side of a run: find the sequence files, plan pieces and partitions, run pass 1, the
 * scan, pass 2 and the assembly as Spark jobs, then write the run report. The driver holds file
 * headers and the plan (a few numbers per piece), never a state or a tensor: states travel
 * between tasks through the run's staging directory.
 */
final class LightningJob {
    /** The run report's name in the output directory. */
    static final String REPORT = "_lightning_report.json";
    static final String SUFFIX = ".safetensors";

    private final JobConfig cfg;
    private final SparkContext sc;
    private final PrintStream out;
    /** Files refused at inspection (with --skip-invalid): name to reason. */
    private final Map<String, String> rejected = new java.util.TreeMap<>();
    /** Sequences dropped for NaN/Inf (with --skip-nonfinite): index to "count, first position". */
    private final Map<Integer, String> skipped = new java.util.TreeMap<>();

    LightningJob(JobConfig cfg, SparkContext sc, PrintStream out) {
        this.cfg = cfg;
        this.sc = sc;
        this.out = out;
    }

    /** Runs the job; returns the report it wrote. */
    ObjectNode run() throws IOException {
        long t0 = System.nanoTime();
        Path inputDir = new Path(cfg.input);
        Path outputDir = new Path(cfg.output);
        FileSystem inFs = inputDir.getFileSystem(sc.hadoopConfiguration());
        FileSystem outFs = Staging.outputFileSystem(outputDir, sc.hadoopConfiguration());

        List<LocatedFileStatus> statuses = listInputs(inFs, inputDir);
        List<SequenceFile> files = inspectAll(inFs, statuses);
        for (Map.Entry<String, String> r : rejected.entrySet()) {
            out.println("lightning: rejected " + r.getKey() + ": " + r.getValue());
        }
        prepareOutput(inFs, inputDir, outFs, outputDir);

        PiecePlanner planner = new PiecePlanner(cfg.partitionTokens, cfg.chunkSize);
        long[] lengths = new long[files.size()];
        for (int i = 0; i < lengths.length; i++) {
            lengths[i] = files.get(i).tokens;
        }
        List<List<Piece>> plan = planner.plan(lengths);
        Map<Integer, List<Piece>> splits = new java.util.TreeMap<>();
        long totalTokens = 0;
        int pieceCount = 0;
        for (List<Piece> partition : plan) {
            for (Piece p : partition) {
                pieceCount++;
                totalTokens += p.tokens();
                if (p.isSplit()) {
                    splits.computeIfAbsent(p.sequence(), s -> new ArrayList<>()).add(p);
                }
            }
        }
        out.printf("lightning: %d sequences, %,d tokens -> %d pieces in %d partitions (%,d tokens each, chunk %d); "
                        + "%d sequences split%n", files.size(), totalTokens, pieceCount, plan.size(),
                planner.partitionTokens(), cfg.chunkSize, splits.size());

        String runId = sc.applicationId().replaceAll("[^A-Za-z0-9_-]", "_");
        Staging staging = new Staging(cfg.output, runId);
        HadoopConf hadoop = new HadoopConf(sc.hadoopConfiguration());
        List<TaskReport> reports = new ArrayList<>();
        Map<String, Double> passSeconds = new java.util.LinkedHashMap<>();
        try {
            // Pass 1: pieces with a successor. The planner gives each its own partition.
            List<List<Tasks.PieceItem>> pass1 = new ArrayList<>();
            List<List<String>> pass1Hosts = new ArrayList<>();
            List<List<Tasks.PieceItem>> pass2 = new ArrayList<>();
            List<List<String>> pass2Hosts = new ArrayList<>();
            long pass1Tokens = 0;
            for (List<Piece> partition : plan) {
                List<Tasks.PieceItem> items = new ArrayList<>();
                List<Tasks.PieceItem> firstPass = new ArrayList<>();
                for (Piece p : partition) {
                    Tasks.PieceItem item = new Tasks.PieceItem(files.get(p.sequence()), p);
                    items.add(item);
                    if (p.isSplit() && !p.isLast()) {
                        firstPass.add(item);
                        pass1Tokens += p.tokens();
                    }
                }
                List<String> hosts = hosts(statuses, partition, files);
                pass2.add(items);
                pass2Hosts.add(hosts);
                if (!firstPass.isEmpty()) {
                    pass1.add(firstPass);
                    pass1Hosts.add(hosts);
                }
            }
            List<List<Tasks.SplitItem>> splitWork = new ArrayList<>();
            for (Map.Entry<Integer, List<Piece>> e : splits.entrySet()) {
                long[] tokens = new long[e.getValue().size()];
                for (Piece p : e.getValue()) {
                    tokens[p.index()] = p.tokens();
                }
                splitWork.add(List.of(new Tasks.SplitItem(files.get(e.getKey()), e.getKey(), tokens)));
            }

            if (!pass1.isEmpty()) {
                reports.addAll(runPass("pass 1/2: local states", pass1, pass1Hosts, pass1Tokens, passSeconds,
                        (pieces, tokens) -> new Tasks(hadoop, staging, cfg, pieces, tokens).pass1()));
                reports.addAll(runPass("scan: incoming states", splitWork, null, 0, passSeconds,
                        (pieces, tokens) -> new Tasks(hadoop, staging, cfg, pieces, tokens).scan()));
            }
            List<TaskReport> outputs = runPass("pass 2/2: outputs", pass2, pass2Hosts, totalTokens, passSeconds,
                    (pieces, tokens) -> new Tasks(hadoop, staging, cfg, pieces, tokens).pass2());
            reports.addAll(outputs);
            collectSkipped(outputs, files);
            splitWork.removeIf(w -> skipped.containsKey(w.get(0).sequence));
            if (!splitWork.isEmpty()) {
                reports.addAll(runPass("assemble: split sequences", splitWork, null, 0, passSeconds,
                        (pieces, tokens) -> new Tasks(hadoop, staging, cfg, pieces, tokens).assemble()));
            }
        } finally {
            removeLeftovers(outFs, outputDir);
            Path stagingPath = new Path(staging.root);
            FileSystem sfs = stagingPath.getFileSystem(sc.hadoopConfiguration());
            sfs.delete(stagingPath, true);
            Path parent = stagingPath.getParent();
            FileStatus[] left = sfs.exists(parent) ? sfs.listStatus(parent) : null;
            if (left != null && left.length == 0) {
                sfs.delete(parent, false);
            }
        }

        double seconds = (System.nanoTime() - t0) / 1e9;
        ObjectNode report = report(files, plan.size(), pieceCount, totalTokens, reports, passSeconds, seconds);
        writeReport(outFs, new Path(outputDir, REPORT), report);
        Set<String> used = new LinkedHashSet<>();
        for (TaskReport r : reports) {
            if (!"-".equals(r.backend)) {
                used.add(r.backend + "@" + r.device);
            }
        }
        out.printf("lightning: done: %d files, %,d tokens in %.1f s (%s tokens/s) on %s; results in %s%s%n",
                files.size() - skipped.size(), totalTokens, seconds, rate(totalTokens, seconds), String.join(", ", used),
                cfg.output, rejected.isEmpty() && skipped.isEmpty() ? ""
                        : " (" + rejected.size() + " rejected, " + skipped.size() + " skipped: see " + REPORT + ")");
        return report;
    }

    /** Pass 2 saw every piece (and every initial state): its records say which sequences to drop. */
    private void collectSkipped(List<TaskReport> outputs, List<SequenceFile> files) {
        Map<Integer, long[]> counts = new java.util.TreeMap<>();
        Map<Integer, String> firsts = new HashMap<>();
        Map<Integer, Long> firstAt = new HashMap<>();
        for (TaskReport r : outputs) {
            for (String record : r.skipped) {
                String[] f = record.split("\t", 4);
                int sequence = Integer.parseInt(f[0]);
                long at = Long.parseLong(f[1]);
                counts.computeIfAbsent(sequence, k -> new long[1])[0] += Long.parseLong(f[2]);
                if (!firstAt.containsKey(sequence) || at < firstAt.get(sequence)) {
                    firstAt.put(sequence, at);
                    firsts.put(sequence, f[3]);
                }
            }
        }
        for (Map.Entry<Integer, long[]> e : counts.entrySet()) {
            String what = e.getValue()[0] + " NaN/Inf value(s), the first at " + firsts.get(e.getKey());
            skipped.put(e.getKey(), what);
            out.println("lightning: skipped " + files.get(e.getKey()).name + ": " + what);
        }
    }

    /**
     * Removes hidden partial files of task attempts that died before they could clean up (a lost
     * executor runs no finally block). Finished files were renamed into place and stay.
     */
    private static void removeLeftovers(FileSystem fs, Path output) throws IOException {
        if (!fs.exists(output)) {
            return;
        }
        for (FileStatus s : fs.listStatus(output)) {
            String name = s.getPath().getName();
            if (name.startsWith(".") && name.contains(".inprogress-")) {
                fs.delete(s.getPath(), false);
            }
        }
    }

    // ---------------------------------------------------------------- inputs and outputs

    private static List<LocatedFileStatus> listInputs(FileSystem fs, Path dir) throws IOException {
        if (!fs.exists(dir) || !fs.getFileStatus(dir).isDirectory()) {
            throw new InvalidInputException("--input " + dir + ": no such directory");
        }
        List<LocatedFileStatus> found = new ArrayList<>();
        for (RemoteIterator<LocatedFileStatus> it = fs.listLocatedStatus(dir); it.hasNext(); ) {
            LocatedFileStatus s = it.next();
            String name = s.getPath().getName();
            if (s.isFile() && name.endsWith(SUFFIX) && !name.startsWith(".") && !name.startsWith("_")) {
                found.add(s);
            }
        }
        if (found.isEmpty()) {
            throw new InvalidInputException("--input " + dir + ": no *" + SUFFIX + " files in it");
        }
        found.sort((a, b) -> a.getPath().getName().compareTo(b.getPath().getName()));
        return found;
    }

    /** Reads every header (in parallel: on object stores each is a round trip). */
    private List<SequenceFile> inspectAll(FileSystem fs, List<LocatedFileStatus> statuses) throws IOException {
        ExecutorService pool = Executors.newFixedThreadPool(Math.min(16, statuses.size()));
        try {
            List<Future<SequenceFile>> futures = new ArrayList<>();
            for (FileStatus s : statuses) {
                futures.add(pool.submit(() -> SequenceFile.inspect(fs, s, cfg::defaultSlopes)));
            }
            List<SequenceFile> files = new ArrayList<>();
            for (int i = 0; i < futures.size(); i++) {
                Future<SequenceFile> f = futures.get(i);
                try {
                    files.add(f.get());
                } catch (java.util.concurrent.ExecutionException e) {
                    Throwable c = e.getCause();
                    if (c instanceof InvalidInputException && cfg.skipInvalid) {
                        rejected.put(statuses.get(i).getPath().getName(), c.getMessage());
                        continue;
                    }
                    if (c instanceof RuntimeException) {
                        throw (RuntimeException) c;
                    }
                    if (c instanceof IOException) {
                        throw (IOException) c;
                    }
                    throw new IOException(c);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IOException("interrupted while reading headers", e);
                }
            }
            if (files.isEmpty()) {
                throw new InvalidInputException("--input: all " + statuses.size() + " files were rejected, e.g. "
                        + rejected.values().iterator().next());
            }
            return files;
        } finally {
            pool.shutdownNow();
        }
    }

    /**
     * Refuses an output directory that already holds results, unless {@code --overwrite}; then
     * removes those results (and only those) first.
     */
    private void prepareOutput(FileSystem inFs, Path input, FileSystem outFs, Path output) throws IOException {
        Path in = inFs.makeQualified(input);
        Path o = outFs.makeQualified(output);
        if (in.equals(o)) {
            throw new InvalidInputException("--output " + output + " is the input directory; choose another");
        }
        if (!outFs.exists(output)) {
            outFs.mkdirs(output);
            return;
        }
        if (!outFs.getFileStatus(output).isDirectory()) {
            throw new InvalidInputException("--output " + output + " is a file, expected a directory");
        }
        List<Path> results = new ArrayList<>();
        for (FileStatus s : outFs.listStatus(output)) {
            String name = s.getPath().getName();
            if (name.endsWith(SUFFIX) || name.equals(REPORT)) {
                results.add(s.getPath());
            }
        }
        if (!results.isEmpty() && !cfg.overwrite) {
            throw new InvalidInputException("--output " + output + " already holds " + results.size()
                    + " result file(s), e.g. " + results.get(0).getName() + "; pass --overwrite to replace them "
                    + "or choose an empty directory");
        }
        for (Path p : results) {
            outFs.delete(p, false);
        }
    }

    /** Hosts holding the first bytes of a partition's q, for locality on HDFS-like stores. */
    private static List<String> hosts(List<LocatedFileStatus> statuses, List<Piece> partition, List<SequenceFile> files)
            throws IOException {
        Piece first = partition.get(0);
        SequenceFile f = files.get(first.sequence());
        long at = f.qOffset + first.start() * f.heads * f.dk * f.dtype.bytes();
        for (BlockLocation b : statuses.get(first.sequence()).getBlockLocations()) {
            if (at >= b.getOffset() && at < b.getOffset() + b.getLength()) {
                List<String> h = new ArrayList<>(Arrays.asList(b.getHosts()));
                h.remove("localhost");
                return h;
            }
        }
        return List.of();
    }

    // ---------------------------------------------------------------- passes and progress

    interface WorkerFactory<W> {
        WorkRDD.Worker<W> create(LongAccumulator pieces, LongAccumulator tokens);
    }

    private <W extends Serializable> List<TaskReport> runPass(String title, List<List<W>> work, List<List<String>> hosts,
                                                            long totalTokens, Map<String, Double> passSeconds,
                                                            WorkerFactory<W> factory) {
        int totalItems = 0;
        for (List<W> w : work) {
            totalItems += w.size();
        }
        LongAccumulator pieces = sc.longAccumulator("lightning " + title + ": pieces");
        LongAccumulator tokens = sc.longAccumulator("lightning " + title + ": tokens");
        WorkRDD<W> rdd = new WorkRDD<>(sc, work, hosts, factory.create(pieces, tokens));
        rdd.setName("lightning " + title);
        sc.setJobDescription("lightning " + title + " (" + totalItems + " items in " + work.size() + " partitions)");
        long start = System.nanoTime();
        int items = totalItems;
        Supplier<String> line = () -> {
            double s = (System.nanoTime() - start) / 1e9;
            String base = String.format("lightning: %s: %d/%d done", title,
                    totalTokens > 0 ? pieces.value() : 0, items);
            return totalTokens > 0
                    ? base + String.format(", %,d/%,d tokens, %s tokens/s, %.1f s", tokens.value(), totalTokens,
                    rate(tokens.value(), s), s)
                    : base + String.format(", %.1f s", s);
        };
        ScheduledExecutorService ticker = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "lightning-progress");
            t.setDaemon(true);
            return t;
        });
        long period = Math.max(100, (long) (cfg.progressSeconds * 1000));
        ticker.scheduleAtFixedRate(() -> out.println(line.get()), period, period, TimeUnit.MILLISECONDS);
        List<TaskReport> result;
        try {
            result = JavaRDD.fromRDD(rdd, rdd.elementClassTag()).collect();
        } finally {
            ticker.shutdownNow();
            sc.setJobDescription(null);
        }
        passSeconds.put(title, (System.nanoTime() - start) / 1e9);
        String done = line.get();
        if (totalTokens == 0) {
            done = String.format("lightning: %s: %d/%d done, %.1f s", title, items, items,
                    (System.nanoTime() - start) / 1e9);
        }
        out.println(done);
        return result;
    }

    static String rate(long tokens, double seconds) {
        double r = seconds > 0 ? tokens / seconds : 0;
        if (r >= 1e6) {
            return String.format("%.2f M", r / 1e6);
        }
        if (r >= 1e3) {
            return String.format("%.1f K", r / 1e3);
        }
        return String.format("%.0f", r);
    }

    // ---------------------------------------------------------------- report

    private ObjectNode report(List<SequenceFile> files, int partitions, int pieces, long tokens,
                              List<TaskReport> tasks, Map<String, Double> passSeconds, double seconds) {
        ObjectMapper json = new ObjectMapper();
        ObjectNode root = json.createObjectNode();
        root.put("application", sc.applicationId());
        root.put("master", sc.master());
        ObjectNode settings = root.putObject("settings");
        cfg.describe().forEach(settings::put);
        root.put("sequences", files.size());
        root.put("tokens", tokens);
        root.put("pieces", pieces);
        root.put("partitions", partitions);
        root.put("seconds", seconds);
        root.put("tokensPerSecond", seconds > 0 ? tokens / seconds : 0);
        ObjectNode passes = root.putObject("passes");
        passSeconds.forEach(passes::put);
        ArrayNode seqs = root.putArray("files");
        for (SequenceFile f : files) {
            ObjectNode n = seqs.addObject();
            n.put("name", f.name);
            n.put("tokens", f.tokens);
            n.put("heads", f.heads);
            n.put("dk", f.dk);
            n.put("dv", f.dv);
            n.put("dtype", f.dtype.name());
            n.put("slopes", f.slopesFromFile ? "file" : cfg.defaultSlopes);
            n.put("initialState", f.initialStateOffset >= 0);
        }
        ArrayNode rej = root.putArray("rejected");
        rejected.forEach((name, why) -> rej.addObject().put("file", name).put("reason", why));
        ArrayNode skip = root.putArray("skipped");
        skipped.forEach((seq, why) -> skip.addObject().put("file", files.get(seq).name).put("reason", why));
        ArrayNode ts = root.putArray("tasks");
        for (TaskReport r : tasks) {
            ObjectNode n = ts.addObject();
            n.put("pass", r.pass);
            n.put("partition", r.partition);
            n.put("pieces", r.pieces);
            n.put("tokens", r.tokens);
            n.put("backend", r.backend);
            n.put("device", r.device);
            n.put("host", r.host);
            n.put("executor", r.executor);
            n.put("gpuAddress", r.gpuAddress);
            n.put("millis", r.nanos / 1e6);
        }
        return root;
    }

    private static void writeReport(FileSystem fs, Path path, ObjectNode report) throws IOException {
        byte[] bytes = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(report)
                .getBytes(StandardCharsets.UTF_8);
        Staging.writeAtomically(fs, path, "driver", o -> o.write(bytes));
    }
}
