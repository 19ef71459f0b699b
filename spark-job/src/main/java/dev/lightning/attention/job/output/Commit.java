package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.job.exec.FaultPoints;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.failure.ExplainedFailure;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.stream.FormatVersion;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;

/**
 * The one step that publishes a run: every staged output file appears in the output directory,
 * or none of them does (Hadoop's output committers and a database's redo log are the models).
 *
 * <p>The protocol, run by the driver while it holds the {@link OutputLock}:
 * <ol>
 *   <li>every staged file and the run report are complete in the staging directory, every name
 *       can be published (its parent directories are real directories inside the output:
 *       {@link OutputPaths#problem}), and the staged files are forced to disk;
 *   <li>{@code commit.json} is written there (atomically, then forced to disk): the list of files
 *       to publish, the other forms of those outputs to move aside, and whether old files of those
 *       names may be replaced. This is the commit point (a record that is not whole is none). Before it,
 *       a failed or killed run has changed nothing in the output directory; after it, the run
 *       counts as committed and whoever holds the lock next finishes the steps below;
 *   <li>the old {@code _SUCCESS} is removed, so no reader takes a half-published directory for a
 *       finished one;
 *   <li>each file is published: an old file of the same name (only with --overwrite) is moved
 *       into the staging directory, then the staged file is renamed into its place. Each step
 *       can be repeated: a file no longer in staging was published already;
 *   <li>the run report, then {@code _SUCCESS}, are written last, once the published names are on disk;
 *   <li>the staging directory (with the replaced old files) is removed, and {@code _temporary}
 *       when the run created it and it is empty.
 * </ol>
 * Nothing outside the published names, the report and {@code _SUCCESS} is ever touched.
 */
public final class Commit {
    static final String RECORD = "commit.json";
    public static final String SUCCESS = "_SUCCESS";
    /** The run report's name in the output directory (the driver stages it, the commit publishes it). */
    public static final String REPORT = "_lightning_report.json";
    /** In the staging: an empty marker per directory (a table) whose move into the output has begun. */
    private static final String PUBLISHING = "publishing";

    private Commit() {
    }

    /**
     * The run report published in {@code dir}, or null where it has none. {@code role} names the directory
     * in the refusal of a report that is not JSON (an empty one included), e.g. "--initial-states DIR", or of a
     * later {@link FormatVersion} ({@link FormatVersion.TooNew}).
     */
    public static ObjectNode readReport(FileSystem fs, Path dir, String role) throws IOException {
        Path report = new Path(dir, REPORT);
        if (!fs.exists(report)) {
            return null;
        }
        String why;
        try (InputStream in = fs.open(report)) {
            JsonNode n = new ObjectMapper().readTree(in);
            if (n != null && n.isObject()) {
                // a later build's report may record the inputs, the manifest or the tables otherwise
                FormatVersion.check(role + ": its run report " + report, n);
                return (ObjectNode) n;
            }
            why = n == null || n.isMissingNode() ? "empty" : "not a JSON object";
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            why = "not JSON: " + e.getOriginalMessage();
        }
        throw new dev.lightning.attention.tensor.InvalidInputException(role + ": its run report " + report + " is "
                + why + "; the run that wrote the directory records there what it computed from, which later runs "
                + "compare with their own: restore the report as that run wrote it");
    }

    /**
     * Commits the run staged in {@code staging}: checks that every name can be published, forces
     * the staged files to disk, writes the commit record, then publishes.
     *
     * @param names     output names (relative to {@code output}) of the staged files to publish
     * @param inPlace   those of {@code names} that task attempts wrote into in place
     *                  ({@link SplitOutputs}): each is published under a lock, so that an attempt that
     *                  outlived its stage never writes into a published file
     * @param replaces  other names that hold an earlier result of the same outputs (the other form
     *                  of a sequence's output: {@code NAME} against {@code NAME.index.json} and
     *                  {@code NAME.parts}); with --overwrite those that exist are moved aside with
     *                  the replaced files, so that no earlier result stays beside the new one
     * @param overwrite whether existing files of those names may be replaced
     */
    public static void commit(FileSystem fs, Path output, Staging staging, List<String> names,
                              java.util.Collection<String> inPlace, List<String> replaces, boolean overwrite,
                              OutputLock lock, java.io.PrintStream out) throws IOException {
        // forcing many staged files to disk takes a while (400,000 part files: about 2 minutes on the 2-core VM,
        // session 31), and a stop request waits for it (OutputLock): say so, rather than go quiet
        out.println("lightning: committing " + names.size() + " output(s): forcing them to disk, then publishing "
                + "them in one step (a stop request now waits for the commit to finish)");
        synchronized (lock.publishing) {
            lock.committing = true;
            try {
                commitHeld(fs, output, staging, names, inPlace, replaces, overwrite, lock, out);
            } finally {
                lock.committing = false;
            }
        }
    }

    /** How to run again once what stood in the way of the commit is moved: a table run keeps no work to resume. */
    private static String rerun(FileSystem fs, Staging staging) {
        try {
            if (RunInfo.read(fs, staging.path()).tableRun()) {
                return "run again (a table run keeps no work to resume)";
            }
        } catch (IOException | RuntimeException e) {
            // the advice for a files run; the problem itself is what the message is about
        }
        return "rerun with --resume";
    }

    /** {@link #commit}'s work, with the lock's publishing monitor held. */
    private static void commitHeld(FileSystem fs, Path output, Staging staging, List<String> names,
                                   java.util.Collection<String> inPlace, List<String> replaces, boolean overwrite,
                                   OutputLock lock, java.io.PrintStream out) throws IOException {
        lock.check();
        List<String> all = new ArrayList<>(names);
        all.addAll(replaces);
        List<String> problems = problems(fs, output, staging.path(), names, replaces, overwrite);
        if (!problems.isEmpty()) {
            // the refusals of a commit are ExplainedFailures: each says what stands where and what to do, and the
            // command line prints such a failure as that one line (as an IllegalStateException or IOException it
            // printed the class name and a stack trace after it)
            throw new ExplainedFailure(Examples.of(problems, 1, "; ") + "; nothing was published. Move it out of "
                    + "the way and " + rerun(fs, staging), null);
        }
        for (String name : names) {
            Path staged = staging.stagedOutput(name);
            if (!fs.exists(staged)) {
                // a task wrote it (its pass succeeded): where the driver looks, the executors did not write
                throw UnsharedOutputException.onDriver(staged);
            }
        }
        for (String name : all) {
            if (!overwrite && OutputPaths.exists(fs, HadoopPaths.child(output, name))) {
                throw new ExplainedFailure(HadoopPaths.child(output, name) + " appeared in the output "
                        + "directory during the run; nothing was published and it was not replaced. Move it out of "
                        + "the way and " + rerun(fs, staging) + ", or add --overwrite to replace it", null);
            }
        }
        // on disk before the record says they are the run's results
        List<Path> staged = new ArrayList<>();
        for (String name : names) {
            staged.add(staging.stagedOutput(name));
        }
        staged.add(new Path(staging.path(), Commit.REPORT));
        OutputPaths.forceAll(fs, staged);
        // and their names: a file's fsync need not make its directory's entry durable (POSIX leaves it to
        // the file system), so the directories below the staging that hold them are forced too
        java.util.Set<Path> parents = new java.util.LinkedHashSet<>();
        String root = staging.path().toUri().getPath();
        for (Path p : staged) {
            for (Path d = p.getParent(); d != null && d.toUri().getPath().startsWith(root + "/"); d = d.getParent()) {
                parents.add(d);
            }
        }
        for (Path d : parents) {
            OutputPaths.forceDirectory(fs, d);
        }
        ObjectMapper json = new ObjectMapper();
        ObjectNode record = json.createObjectNode();
        record.put("overwrite", overwrite);
        ArrayNode list = record.putArray("files");
        names.forEach(list::add);
        ArrayNode others = record.putArray("replaces");
        replaces.forEach(others::add);
        ArrayNode fenced = record.putArray("inPlace"); // absent in the records of older runs: none fenced
        names.stream().filter(inPlace::contains).forEach(fenced::add);
        FormatVersion.put(record); // the next run finishes the commit from it
        record.put("complete", true);
        Path recordPath = new Path(staging.path(), RECORD);
        Staging.writeAtomically(fs, recordPath, "driver", json.writeValueAsBytes(record));
        OutputPaths.force(fs, recordPath);
        OutputPaths.forceDirectory(fs, staging.path()); // the commit point, on disk
        publish(fs, output, staging.path(), record, false, out);
    }

    /**
     * Finishes the interrupted commits in {@code output} ({@link #recover}) and returns the report of the one that had
     * reached its commit point with {@code fingerprint} (the same input and options: tasks are deterministic, so its
     * results are this run's, now published; empty where it published no report), saying so; null where none did.
     * {@code published} names what it published ("results", "tables"), {@code shownOutput} the directory as given.
     */
    public static ObjectNode recoverSame(FileSystem fs, Path output, JsonNode fingerprint, PrintStream out,
                                         String published, String shownOutput) throws IOException {
        for (RunInfo finished : recover(fs, output, out)) {
            if (RunInfo.differences(finished.fingerprint, fingerprint).isEmpty()) {
                out.println("lightning: done: the interrupted run had reached its commit point with the same "
                        + "input and options; its " + published + " are now published in " + shownOutput);
                ObjectNode report = readReport(fs, output, "--output " + output);
                return report != null ? report : new ObjectMapper().createObjectNode();
            }
        }
        return null;
    }

    /**
     * Finishes the commits of runs that reached their commit point but were killed before they
     * had published everything. Called by every run once it holds the lock, before it looks at
     * the output directory. Returns what those runs were. A record that cannot be read whole
     * (empty or cut short: the machine stopped while it was written, before it was on disk) is not
     * a commit point: that run is left as an interrupted one, for --resume, and nothing of it is
     * published.
     */
    public static List<RunInfo> recover(FileSystem fs, Path output, PrintStream out) throws IOException {
        List<Path> runs = Staging.all(fs, output);
        // every staging's run.json and commit.json read once, all of them first: a later build's staging
        // (FormatVersion) is that build's to finish, resume or remove, refused before this run publishes, resumes or
        // removes anything of any run (every run recovers before it looks further)
        List<RunInfo> infos = new ArrayList<>();
        List<JsonNode> parsed = new ArrayList<>();
        for (Path dir : runs) {
            infos.add(RunInfo.read(fs, dir));
            parsed.add(parseRecord(fs, dir));
        }
        List<RunInfo> finished = new ArrayList<>();
        for (int i = 0; i < runs.size(); i++) {
            Path dir = runs.get(i);
            if (fs.exists(new Path(dir, RECORD))) {
                JsonNode record = whole(parsed.get(i));
                if (record == null && earlierBuilds(parsed.get(i))) {
                    // whole, but not this protocol's: such a build forced nothing to disk before its record, so its
                    // staged files need not be whole after a power loss; this build does not publish them
                    out.println("lightning: warning: interrupted run " + Staging.runIdOf(dir) + " was committed by an "
                            + "earlier build of lightning (its " + RECORD + " has no \"complete\" field, which this "
                            + "build writes last and requires), so this build does not finish that commit: the output "
                            + "directory may hold part of that run's results, published before it was interrupted, and "
                            + "no _SUCCESS. Rerun with --overwrite to replace them with this build's results, or "
                            + "finish the commit with the build that wrote it (any run of it into this directory); "
                            + "this build keeps that run's staging " + dir + " for it (remove it by hand once neither "
                            + "its results nor the earlier files it moved aside there are needed)");
                    continue;
                }
                if (record == null) {
                    out.println("lightning: warning: the commit record of interrupted run " + Staging.runIdOf(dir)
                            + " is incomplete (the machine stopped while writing it), so that run never reached its "
                            + "commit point; nothing of it is published, and it counts as an interrupted run");
                    continue;
                }
                out.println("lightning: finishing the commit of interrupted run " + Staging.runIdOf(dir)
                        + " (it had reached its commit point)");
                finished.add(infos.get(i));
                publish(fs, output, dir, record, true, out);
            }
        }
        return finished;
    }

    /**
     * What a run says when it failed after its commit point (the files run and the table run): the
     * output may hold part of its results, and the next run finishes the commit from {@code stagingRoot}.
     */
    public static String failedAfterCommitPoint(Object stagingRoot) {
        return "lightning: the run failed after its commit point, while publishing: the output directory may hold part "
                + "of its results and no _SUCCESS. The next run into it (any run) finishes the commit from "
                + stagingRoot + " once the cause above is removed";
    }

    /** Whether the run staged in {@code stagingDir} has reached its commit point: its record is whole. */
    public static boolean committed(FileSystem fs, Path stagingDir) {
        try {
            return readRecord(fs, stagingDir) != null;
        } catch (IOException e) {
            return false;
        }
    }

    /**
     * The commit record of {@code stagingDir}, or null when it is missing or not whole: unparsable,
     * not an object, without its list of files, or (records that have it) without its last field.
     */
    private static JsonNode readRecord(FileSystem fs, Path stagingDir) throws IOException {
        return whole(parseRecord(fs, stagingDir));
    }

    /** {@link #readRecord} of a record already parsed ({@link #parseRecord}'s answer). */
    private static JsonNode whole(JsonNode record) {
        if (record == null || !record.path("complete").asBoolean(false)) {
            return null; // its last field missing: cut short, or not written by this protocol
        }
        return record;
    }

    /**
     * Whether the commit record of {@code stagingDir} is whole but has no {@code "complete"} field at all: one an
     * earlier build wrote (or a hand-made one). A record cut short does not parse: its closing brace is its last byte.
     */
    static boolean earlierBuildsRecord(FileSystem fs, Path stagingDir) throws IOException {
        return earlierBuilds(parseRecord(fs, stagingDir));
    }

    /** {@link #earlierBuildsRecord} of a record already parsed ({@link #parseRecord}'s answer). */
    private static boolean earlierBuilds(JsonNode record) {
        return record != null && !record.has("complete");
    }

    /** The commit record of {@code stagingDir} as far as it is a record at all: an object listing its files; else null. */
    private static JsonNode parseRecord(FileSystem fs, Path stagingDir) throws IOException {
        JsonNode record;
        try (InputStream in = fs.open(new Path(stagingDir, RECORD))) {
            record = new ObjectMapper().readTree(in);
        } catch (FileNotFoundException e) {
            return null;
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            return null; // cut short
        }
        FormatVersion.check(new Path(stagingDir, RECORD).toString(), record); // a later build's may list otherwise
        if (record == null || !record.isObject() || !record.path("files").isArray()) {
            return null; // empty, or not ours
        }
        for (JsonNode f : record.path("files")) {
            if (!f.isTextual()) {
                return null;
            }
        }
        return record;
    }

    /**
     * What stands in the way of publishing {@code names} from {@code stagingDir} and, with
     * {@code overwrite}, moving {@code replaces} aside ({@link OutputPaths#problems}). Like replaces
     * like: a name staged as a file may replace only a file; one staged as a directory (a table
     * run's {@code o/}), or no longer staged (published before an interruption: ours), only has its
     * parents checked; and when no name is staged as a file (a table run), the names it replaces
     * are tables, directories too. The same for the commit and for finishing it.
     *
     * <p>An earlier table still standing where a staged table or a replaced one goes must hold only what a table
     * write leaves ({@link OutputPaths#tableProblem}), as the table run checks before compute: it is moved aside
     * whole and deleted with the staging. Checked here again because a later run finishing an interrupted commit
     * meets the tables as they are then, and a user may have put a file into one since. A table this run has
     * published, or begun to move in ({@code publishing/NAME}), is its own and not checked.
     */
    private static List<String> problems(FileSystem fs, Path output, Path stagingDir, List<String> names,
                                         List<String> replaces, boolean overwrite) throws IOException {
        List<String> files = new ArrayList<>();
        List<String> whole = new ArrayList<>();
        List<String> earlierTables = new ArrayList<>(replaces);
        for (String name : names) {
            Path src = HadoopPaths.child(new Path(stagingDir, "files"), name);
            boolean staged = fs.exists(src);
            (staged && fs.getFileStatus(src).isFile() ? files : whole).add(name);
            if (staged && !fs.exists(HadoopPaths.child(new Path(stagingDir, PUBLISHING), name))) {
                earlierTables.add(name);
            }
        }
        if (files.isEmpty()) {
            whole.addAll(replaces);
        }
        List<String> found = OutputPaths.problems(fs, output, files, whole, overwrite ? replaces : List.of());
        for (String name : earlierTables) {
            if (OutputPaths.TABLES.contains(name) && whole.contains(name)) {
                String problem = OutputPaths.tableProblem(fs, HadoopPaths.child(output, name));
                if (problem != null) {
                    found.add(problem);
                }
            }
        }
        found.addAll(markerProblems(fs, output));
        return found;
    }

    /**
     * What stands in the way of the run report and {@code _SUCCESS}, which every commit writes last, replacing
     * those of an earlier run: a directory of either name (a user's) is refused, one line each. Its removal failed
     * after the commit point ("Directory ... is not empty"), so the run failed while publishing, and every later run
     * into the directory failed the same way finishing that commit. Runs check this before compute too.
     */
    public static List<String> markerProblems(FileSystem fs, Path output) throws IOException {
        return OutputPaths.problems(fs, output, List.of(REPORT, SUCCESS), List.of());
    }

    /**
     * Steps 3 to 6; repeatable, so an interrupted publication is finished by running it again
     * ({@code finishing}: a later run does, after the commit point). An object store's rename (S3A,
     * GCS) is no single step but a copy of each file followed by the delete of its source, so an
     * interruption can leave a published file at both places, or a directory's files split between
     * them: finishing then takes what stands at the destination for this run's own where it is (a
     * file holding the staged file's bytes; a directory whose move had begun, recorded below
     * {@code publishing/} in the staging first) and completes the move ({@link #finishMove}), rather
     * than refuse it as an existing result for good, or with --overwrite move the published part
     * aside and publish only the rest.
     */
    private static void publish(FileSystem fs, Path output, Path stagingDir, JsonNode record, boolean finishing,
                                PrintStream out) throws IOException {
        boolean overwrite = record.path("overwrite").asBoolean(false);
        List<String> names = new ArrayList<>();
        record.path("files").forEach(f -> names.add(f.asText()));
        List<String> replaces = new ArrayList<>();
        record.path("replaces").forEach(f -> replaces.add(f.asText()));
        java.util.Set<String> inPlace = new java.util.HashSet<>();
        record.path("inPlace").forEach(f -> inPlace.add(f.asText()));
        List<String> problems = problems(fs, output, stagingDir, names, replaces, overwrite);
        if (!problems.isEmpty()) {
            throw new ExplainedFailure("cannot finish the commit of " + stagingDir + ": " + problems.get(0) + "; move it "
                    + "out of the way and run again: the next run into this output directory finishes the commit", null);
        }
        fs.delete(new Path(output, SUCCESS), false);
        OutputPaths.forceDirectory(fs, output);
        Path files = new Path(stagingDir, "files");
        Path replaced = new Path(stagingDir, "replaced");
        if (overwrite) { // earlier results of these outputs in their other form go aside first
            java.util.Map<String, List<String>> below = new java.util.HashMap<>(); // a directory's names (parts)
            for (String name : names) {
                int slash = name.lastIndexOf('/');
                if (slash > 0) {
                    below.computeIfAbsent(name.substring(0, slash), d -> new ArrayList<>()).add(name);
                }
            }
            for (String name : replaces) {
                Path dst = HadoopPaths.child(output, name);
                Path aside = HadoopPaths.child(replaced, name);
                // once moved, what stands at dst (new parts under NAME.parts/) is this run's own; so is it
                // once a name below it was published, also where there was no earlier one to move (nothing in
                // replaced/) or replaced/ is gone (killed while removing the staging): moving it aside then
                // would take published parts away, and the commit could never be finished
                if (fs.exists(dst) && !fs.exists(aside)
                        && !anyPublished(fs, files, below.getOrDefault(name, List.of()))) {
                    fs.mkdirs(aside.getParent());
                    HadoopPaths.rename(fs, dst, aside);
                } else if (finishing && fs.exists(dst) && fs.exists(aside)) {
                    // a move aside that an object store's copy-then-delete left part way: the rest of the
                    // earlier result follows what went first (else its files stayed beside the new ones);
                    // this run's own parts, published or copied there already, stay
                    leftoversAside(fs, files, name, below.getOrDefault(name, List.of()), dst, aside);
                }
            }
        }
        java.util.Set<Path> touched = new java.util.LinkedHashSet<>();
        int n = 0;
        Path publishing = new Path(stagingDir, PUBLISHING);
        for (String name : names) {
            Path src = HadoopPaths.child(files, name);
            Path dst = HadoopPaths.child(output, name);
            org.apache.hadoop.fs.FileStatus staged;
            try {
                staged = fs.getFileStatus(src);
            } catch (FileNotFoundException e) {
                if (!fs.exists(dst)) {
                    throw new IOException("cannot finish the commit of " + stagingDir + ": " + name
                            + " is neither staged nor published", e);
                }
                dropChecksumSideFile(fs, dst);
                continue; // published before an interruption
            }
            Path begun = HadoopPaths.child(publishing, name);
            // a link that leads nowhere is there too: moved aside with --overwrite, never replaced unasked
            if (OutputPaths.exists(fs, dst) && !(finishing && (staged.isDirectory() ? fs.exists(begun)
                    : sameBytes(fs, staged, dst)))) {
                if (!overwrite) {
                    throw new ExplainedFailure("cannot publish " + name + ": " + dst + " exists and the run was not "
                            + "started with --overwrite; the staged file stays in " + src, null);
                }
                Path aside = HadoopPaths.child(replaced, name);
                fs.mkdirs(aside.getParent());
                if (finishing) {
                    finishMove(fs, dst, aside); // replaced/ is the staging's: whatever is there was moved by this run
                } else {
                    HadoopPaths.rename(fs, dst, aside);
                }
            }
            fs.mkdirs(dst.getParent());
            if (staged.isDirectory()) {
                fs.mkdirs(begun); // what stands at dst from here on is this run's (a table's files, being moved)
            }
            if (inPlace.contains(name)) {
                renameFenced(fs, src, dst, out);
            } else if (finishing) {
                finishMove(fs, src, dst);
            } else {
                HadoopPaths.rename(fs, src, dst); // written aside and renamed into the staging: no attempt holds it open
            }
            dropChecksumSideFile(fs, dst);
            touched.add(dst.getParent());
            if (n++ == 0) {
                FaultPoints.reach("commit");
            }
        }
        FaultPoints.reach("published");
        Path report = new Path(stagingDir, Commit.REPORT);
        if (fs.exists(report)) { // staged complete; gone from staging once published
            Path dst = new Path(output, Commit.REPORT);
            fs.delete(dst, false);
            HadoopPaths.rename(fs, report, dst);
            dropChecksumSideFile(fs, dst);
        }
        // the published names on disk before _SUCCESS says they are all there
        for (Path dir : touched) {
            OutputPaths.forceDirectory(fs, dir);
        }
        OutputPaths.forceDirectory(fs, output);
        Staging.writeAtomically(fs, new Path(output, SUCCESS), "driver", new byte[0]);
        OutputPaths.forceDirectory(fs, output);
        removeStaging(fs, output, stagingDir);
    }

    /**
     * Removes the checksum side file {@code .NAME.crc} that Hadoop's {@code LocalFileSystem} keeps beside a file,
     * where one stands beside a file this run published. The job writes through the raw local file system and makes
     * no side files ({@link HadoopPaths#fileSystem}), but whatever wrote an earlier file of the name through
     * {@code LocalFileSystem} (hadoop fs -put or -cp, a Spark job) left one, and it describes the bytes replaced:
     * {@code LocalFileSystem}, through which Spark and hadoop fs read {@code file:} paths, then refused the
     * published file with a ChecksumException. Hadoop's own rename removes it the same way when the file moved in
     * comes without one. A directory of that name is not a side file and stays.
     */
    private static void dropChecksumSideFile(FileSystem fs, Path file) throws IOException {
        java.nio.file.Path published = HadoopPaths.localFile(fs, file);
        if (published != null) {
            java.nio.file.Path side = published.resolveSibling("." + published.getFileName() + ".crc");
            if (java.nio.file.Files.isRegularFile(published, java.nio.file.LinkOption.NOFOLLOW_LINKS)
                    && java.nio.file.Files.isRegularFile(side, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
                java.nio.file.Files.delete(side);
            }
        }
    }

    /**
     * Moves {@code from} to {@code to}, where a move begun earlier may have been cut short part way
     * (see {@link #publish}): with nothing at {@code to}, a rename; a file whose copy at {@code to}
     * holds its bytes already, only the delete of the source; a directory, each of its entries the
     * same way, then the directory. A file at {@code to} with other bytes is left as it is, and
     * the move refused.
     */
    private static void finishMove(FileSystem fs, Path from, Path to) throws IOException {
        org.apache.hadoop.fs.FileStatus source = fs.getFileStatus(from);
        if (!OutputPaths.exists(fs, to)) {
            HadoopPaths.rename(fs, from, to);
        } else if (source.isFile()) {
            if (!sameBytes(fs, source, to)) {
                throw new ExplainedFailure("cannot move " + from + " to " + to + ": a file with other bytes stands "
                        + "there; move it out of the way and run again: the next run into this output directory "
                        + "finishes the commit", null);
            }
            fs.delete(from, false);
        } else {
            for (org.apache.hadoop.fs.FileStatus entry : fs.listStatus(from)) {
                finishMove(fs, entry.getPath(), HadoopPaths.child(to, entry.getPath().getName()));
            }
            fs.delete(from, true);
        }
    }

    /**
     * Moves what is left of an earlier result at {@code dst} (the other form {@code name} of an
     * output, partly moved to {@code aside} already) after the rest: a file whole; of a directory
     * every entry but this run's {@code own} names below it that are published (no longer staged)
     * or copied there with their staged bytes.
     */
    private static void leftoversAside(FileSystem fs, Path files, String name, List<String> own, Path dst, Path aside)
            throws IOException {
        if (fs.getFileStatus(dst).isFile()) {
            finishMove(fs, dst, aside);
            return;
        }
        for (org.apache.hadoop.fs.FileStatus entry : fs.listStatus(dst)) {
            String below = name + "/" + entry.getPath().getName();
            if (own.contains(below)) {
                Path staged = HadoopPaths.child(files, below);
                if (!fs.exists(staged) || sameBytes(fs, fs.getFileStatus(staged), entry.getPath())) {
                    continue;
                }
            }
            finishMove(fs, entry.getPath(), HadoopPaths.child(aside, entry.getPath().getName()));
        }
    }

    /** Whether file {@code to} holds the bytes of {@code from} (length, then CRC32C): a copy a move made. */
    private static boolean sameBytes(FileSystem fs, org.apache.hadoop.fs.FileStatus from, Path to) throws IOException {
        org.apache.hadoop.fs.FileStatus there = fs.getFileStatus(to);
        return there.isFile() && from.isFile() && there.getLen() == from.getLen()
                && Staging.crc(fs, from.getPath()) == Staging.crc(fs, to);
    }

    /** How long the commit waits for a task attempt still writing a staged file before it gives up (and a later run finishes it). */
    static long fenceWaitMillis = 10 * 60_000L;

    /**
     * Renames staged file {@code src} to {@code dst}, on the local file system under an exclusive lock
     * on the file: the pieces that write an in-place output hold shared locks on their byte ranges
     * while they write, and check after taking them that the staged name still is their file
     * ({@link SplitOutputs}). So a task attempt that outlived its stage (an executor the driver lost,
     * still running) finishes before the file is published or fails: a published file never changes.
     * Waits for such an attempt, saying so after a few seconds. Only the outputs written in place
     * (one open and lock each: on a shared mount a round trip or two). Other file systems and a file
     * system without locks: a plain rename.
     */
    private static void renameFenced(FileSystem fs, Path src, Path dst, PrintStream out) throws IOException {
        java.nio.file.Path file = HadoopPaths.localFile(fs, src);
        if (file == null || !java.nio.file.Files.isRegularFile(file, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
            HadoopPaths.rename(fs, src, dst);
            return;
        }
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file,
                java.nio.file.StandardOpenOption.READ, java.nio.file.StandardOpenOption.WRITE)) {
            long start = System.nanoTime();
            boolean said = false;
            java.nio.channels.FileLock held = null;
            while (held == null) {
                try {
                    held = ch.tryLock();
                } catch (java.nio.channels.OverlappingFileLockException e) {
                    // held by a thread of this JVM (a task attempt in local mode): wait as for another process
                } catch (IOException e) {
                    break; // no locks here: the writers' check alone
                }
                if (held != null) {
                    break;
                }
                long waited = (System.nanoTime() - start) / 1_000_000;
                if (waited > fenceWaitMillis) {
                    throw new ExplainedFailure("cannot publish " + src + ": a task attempt still writes it after "
                            + waited / 1000 + " s (an executor the driver lost, still running?); the run is committed: "
                            + "the next run into this output directory finishes the commit", null);
                }
                if (!said && waited > 5_000) {
                    out.println("lightning: waiting for a task attempt that still writes "
                            + src.getName() + " (an executor the driver lost, still running?) before publishing it");
                    said = true;
                }
                try {
                    Thread.sleep(50);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("interrupted while waiting to publish " + src);
                }
            }
            HadoopPaths.rename(fs, src, dst); // the lock goes with the channel's close
        }
    }

    /**
     * Whether one of {@code names} (a parts form's {@code NAME.parts/o-...}) was published already:
     * it is no longer staged in {@code files}.
     */
    private static boolean anyPublished(FileSystem fs, Path files, List<String> names) throws IOException {
        for (String name : names) {
            if (!fs.exists(HadoopPaths.child(files, name))) {
                return true;
            }
        }
        return false;
    }

    /** Removes a run's staging directory, and {@code _temporary} when that run created it and it is now empty. */
    public static void removeStaging(FileSystem fs, Path output, Path stagingDir) throws IOException {
        boolean createdParent = RunInfo.read(fs, stagingDir).createdParent;
        Staging.removeTree(fs, stagingDir);
        Path parent = new Path(output, Staging.PARENT);
        if (createdParent) {
            try {
                if (fs.listStatus(parent).length == 0) {
                    fs.delete(parent, false);
                }
            } catch (FileNotFoundException e) {
                // already gone
            }
        }
    }
}
