package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.InvalidInputException;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;

/**
 * The driver's view of the output directory before any compute: create it, refuse what a run
 * must not do there (replace results without --overwrite, write where it cannot, fill the disk),
 * and choose the staging directory (a new one, or with --resume the interrupted run's). All of
 * it runs while the run holds the {@link OutputLock}, before Spark starts.
 */
public final class OutputDirectory {
    private final JobConfig cfg;
    private final FileSystem fs;
    /** Qualified. */
    private final Path output;
    private final PrintStream out;

    public OutputDirectory(JobConfig cfg, FileSystem fs, Path output, PrintStream out) {
        this.cfg = cfg;
        this.fs = fs;
        this.output = output;
        this.out = out;
    }

    /** Creates the output directory if it is missing; returns whether it did. */
    private boolean create() throws IOException {
        try {
            if (fs.exists(output)) {
                if (!fs.getFileStatus(output).isDirectory()) {
                    throw new InvalidInputException("--output " + output + " is a file, expected a directory (the run writes its "
                            + "results into it); give the directory's path, or a new one for the run to make");
                }
                return false;
            }
            if (!fs.mkdirs(output)) {
                throw new InvalidInputException("--output " + output + ": cannot create the directory; check that its "
                        + "parent exists and is writable, or choose another output directory");
            }
            return true;
        } catch (java.nio.file.ReadOnlyFileSystemException e) {
            throw cannotWrite(output, e);
        } catch (IOException e) {
            if (refusedWrite(e)) {
                throw cannotWrite(output, e);
            }
            if (e instanceof org.apache.hadoop.fs.ParentNotDirectoryException
                    || e instanceof org.apache.hadoop.fs.FileAlreadyExistsException
                    || e instanceof java.nio.file.FileSystemException) {
                throw new InvalidInputException("--output " + output + ": cannot create the directory (" + e.getMessage()
                        + "): a part of the path is a file, not a directory; choose another output directory", e);
            }
            throw e;
        }
    }

    /**
     * Whether {@code e} is the file system refusing a write (a read-only mount, an immutable
     * directory, missing permission) rather than a failure of the run: the user's to fix, told in
     * one line with exit status 2, not a stack trace.
     */
    static boolean refusedWrite(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            String m = String.valueOf(t.getMessage());
            if (t instanceof java.nio.file.AccessDeniedException || t instanceof java.nio.file.ReadOnlyFileSystemException
                    || t instanceof org.apache.hadoop.security.AccessControlException
                    || m.contains("Read-only file system") || m.contains("Operation not permitted")
                    || m.contains("Permission denied")) {
                return true;
            }
        }
        return false;
    }

    /**
     * Takes the output's lock for run {@code runId} ({@link OutputLock}); a directory the run may
     * not write into is refused with the same advice as {@link #create}.
     */
    private OutputLock lock(String runId) throws IOException {
        try {
            return OutputLock.acquire(fs, output, runId, cfg.get(Settings.LOCK_STALE_SECONDS), out);
        } catch (IOException e) {
            if (refusedWrite(e)) {
                throw cannotWrite(output, e);
            }
            throw e;
        }
    }

    /**
     * Refuses, before anything reads or writes staging, an {@code <output>/_temporary} that is not a real
     * directory. A symbolic link there led the run's staging, and its removal of earlier runs' staging
     * directories ({@code lightning-*}), into the link's target outside the output directory; a file there
     * failed the run with a stack trace when it first staged.
     */
    private void checkStagingParent() throws IOException {
        Path parent = new Path(output, Staging.PARENT);
        boolean file;
        java.nio.file.Path p = HadoopPaths.localFile(fs, parent);
        if (p != null) {
            if (java.nio.file.Files.isSymbolicLink(p)) {
                throw new InvalidInputException("--output " + output + ": " + parent + " is a symbolic link (to "
                        + java.nio.file.Files.readSymbolicLink(p) + "); the run stages its work in " + Staging.PARENT
                        + " and removes earlier runs' staging from it, which through the link would write and delete "
                        + "outside the output directory: remove the link, or choose another output directory");
            }
            file = java.nio.file.Files.exists(p, java.nio.file.LinkOption.NOFOLLOW_LINKS)
                    && !java.nio.file.Files.isDirectory(p, java.nio.file.LinkOption.NOFOLLOW_LINKS);
        } else {
            file = fs.exists(parent) && !fs.getFileStatus(parent).isDirectory();
        }
        if (file) {
            throw new InvalidInputException("--output " + output + ": " + parent + " is a file, where the run needs "
                    + "the directory it stages its work in; move it out of the way, or choose another output directory");
        }
    }

    /**
     * The output directory, created if missing, and its lock for run {@code runId}: what a run
     * holds from its first write into the output to its end. Closing it gives the lock back and
     * removes the directory again if this run created it and left it empty, also when taking the
     * lock failed (a full disk, or a run that took the new directory first: a directory holding
     * that run's lock is not empty and stays) or the staging directory's place holds a link or a
     * file ({@link #checkStagingParent}).
     */
    public Claim claim(String runId) throws IOException {
        boolean created = create();
        Claim claim;
        try {
            claim = new Claim(lock(runId), created);
        } catch (IOException | RuntimeException e) {
            if (created) {
                removeIfEmpty();
            }
            throw e;
        }
        try {
            checkStagingParent(); // under the lock, before anything reads or writes staging
        } catch (IOException | RuntimeException e) {
            claim.close();
            throw e;
        }
        return claim;
    }

    /** The output directory held by one run: see {@link #claim}. */
    public final class Claim implements AutoCloseable {
        public final OutputLock lock;
        private final boolean created;

        private Claim(OutputLock lock, boolean created) {
            this.lock = lock;
            this.created = created;
        }

        @Override
        public void close() {
            lock.close();
            if (created) {
                removeIfEmpty();
            }
        }
    }

    private void removeIfEmpty() {
        try {
            if (fs.exists(output) && fs.listStatus(output).length == 0) {
                fs.delete(output, false);
            }
        } catch (IOException e) {
            // an empty directory left behind is harmless
        }
    }

    static InvalidInputException cannotWrite(Path output, Exception e) {
        return new InvalidInputException("--output " + output + ": cannot write there (" + e.getMessage()
                + "); check its permissions or choose another output directory", e);
    }

    /**
     * The staging directory of this run. Earlier runs' staging directories are removed, except,
     * with --resume, the newest one staged in this build's {@link Staging#FORMAT} whose inputs and
     * settings match this run: its finished work is kept. The probe of the output directory's permissions is the first write into it.
     */
    public Staging chooseStaging(JsonNode fingerprint, String runId, java.time.Instant started) throws IOException {
        List<Path> earlier = new ArrayList<>();
        for (Path dir : Staging.all(fs, output)) {
            // committed by an earlier build, which this one does not finish (Commit.recover says so): its staging is
            // all that is left of the files that commit moved aside and of its results not yet published, and the
            // build that wrote it finishes it from there; neither resumed nor removed
            if (!Commit.earlierBuildsRecord(fs, dir)) {
                earlier.add(dir);
            }
        }
        Path resumeFrom = null;
        if (cfg.get(Settings.RESUME)) {
            String mismatch = null; // why the newest interrupted run with a fingerprint cannot be resumed
            for (int i = earlier.size() - 1; i >= 0 && resumeFrom == null; i--) {
                RunInfo info = RunInfo.read(fs, earlier.get(i));
                if (info.fingerprint == null) {
                    continue; // killed before it had written anything but its directory: nothing to keep
                }
                // another build's staging first: its fingerprint would differ in keys the user cannot give again
                String otherFormat = info.otherFormat();
                List<String> diff = otherFormat != null ? List.of() : RunInfo.differences(info.fingerprint,
                        fingerprint);
                if (otherFormat == null && diff.isEmpty()) {
                    resumeFrom = earlier.get(i);
                } else if (mismatch == null) {
                    mismatch = "--resume: the interrupted run in " + earlier.get(i) + " " + (otherFormat != null
                            ? otherFormat + "; rerun without --resume to start over (its staging is then removed), or "
                            + "resume it with the build that staged it"
                            : "had other " + String.join(", ", diff) + " than this one; rerun with the same input and "
                            + "options to resume it, or without --resume to start over (its staging is then removed)");
                }
            }
            if (resumeFrom == null && mismatch != null) {
                throw new InvalidInputException(mismatch);
            }
            if (resumeFrom == null) {
                out.println("lightning: --resume: no interrupted run in " + output + "; starting a new run");
            }
        }
        for (Path dir : Staging.notRuns(fs, output)) {
            java.nio.file.Path p = HadoopPaths.localFile(fs, dir);
            out.println("lightning: warning: leaving " + dir + " alone: no run of lightning staged it (" + (p != null
                    && java.nio.file.Files.isSymbolicLink(p) ? "it is a symbolic link, and a run stages only in a real "
                    + "directory" : "it holds no run.json, which a run writes there first and removes last")
                    + "), so it is neither resumed nor removed; remove it yourself if it is not needed");
        }
        for (Path dir : earlier) {
            if (!dir.equals(resumeFrom)) {
                RunInfo info = RunInfo.read(fs, dir);
                out.println("lightning: removing the staging of earlier run " + Staging.runIdOf(dir)
                        + (cfg.get(Settings.RESUME) || info.otherFormat() != null || info.tableRun() ? ""
                        : " (--resume would have continued it)"));
                Commit.removeStaging(fs, output, dir);
            }
        }
        if (resumeFrom != null) {
            out.println("lightning: resuming run " + Staging.runIdOf(resumeFrom) + " (started "
                    + RunInfo.read(fs, resumeFrom).started + ")");
            return new Staging(output, Staging.runIdOf(resumeFrom), true);
        }
        Staging staging = new Staging(output, runId, false);
        boolean createdParent = !fs.exists(new Path(output, Staging.PARENT));
        try {
            Staging.writeAtomically(fs, staging.runFile(), "driver",
                    RunInfo.encode(fingerprint, createdParent, started.toString()));
        } catch (IOException e) {
            if (refusedWrite(e)) {
                throw cannotWrite(output, e);
            }
            throw e;
        }
        return staging;
    }

    /**
     * Refuses, before any compute, an output directory that already holds a file this run would
     * produce, unless --overwrite: the old file is then replaced at the commit, never before.
     * {@code manifest}: the name of the state set's {@code _states.json} when the run also
     * publishes it, else null.
     */
    public void checkExisting(List<SequenceFile> files, SplitOutputs.Form form, String manifest) throws IOException {
        List<String> outputs = new ArrayList<>();
        List<String> replaces = new ArrayList<>();
        for (SequenceFile f : files) {
            String as = form == SplitOutputs.Form.PARTS ? dev.lightning.attention.stream.OutputParts.indexName(f.name)
                    : f.name;
            outputs.add(as);
            if (form == SplitOutputs.Form.PARTS) {
                // its parts go below NAME.parts/: a symbolic link or a file there was found only by the commit,
                // after all compute (exit 1, a stack trace); a part's name stands for them all here
                outputs.add(f.name + dev.lightning.attention.stream.OutputParts.PARTS_SUFFIX + "/o-00000-of-00001"
                        + ".safetensors");
            }
            replaces.addAll(otherForms(f.name, List.of(as)));
        }
        replaces.addAll(OutputPaths.earlierTables(fs, output));
        if (manifest != null) {
            outputs.add(manifest);
        }
        List<String> problems = OutputPaths.problems(fs, output, outputs,
                cfg.get(Settings.OVERWRITE) ? replaces : List.of());
        problems.addAll(Commit.markerProblems(fs, output));
        if (!problems.isEmpty()) {
            throw new InvalidInputException("--output " + output + ": " + Examples.of(problems, 1, "; ")
                    + "; move it out of the way or choose another "
                    + "output directory");
        }
        if (cfg.get(Settings.OVERWRITE)) {
            return;
        }
        List<String> present = new ArrayList<>();
        List<String> names = new ArrayList<>();
        // a sequence's result is NAME, or NAME.index.json with its parts in NAME.parts/, whatever this run's form
        for (SequenceFile f : files) {
            names.add(f.name);
            names.add(dev.lightning.attention.stream.OutputParts.indexName(f.name));
            names.add(f.name + dev.lightning.attention.stream.OutputParts.PARTS_SUFFIX);
        }
        names.add(Commit.REPORT);
        if (manifest != null) {
            names.add(manifest);
        }
        names.add(Commit.SUCCESS);
        for (String name : names) {
            if (OutputPaths.exists(fs, HadoopPaths.child(output, name))) { // a link that leads nowhere is there too
                present.add(name);
            }
        }
        if (!present.isEmpty()) {
            throw new InvalidInputException("--output " + output + " already holds " + present.size() + " file(s) this "
                    + "run would write, e.g. " + present.get(0) + "; pass --overwrite to replace them (only those, "
                    + "and only once the run has succeeded) or choose another output directory");
        }
    }

    /**
     * The names of a sequence's output in the form this run does not publish: {@code NAME} when
     * it publishes the parts form ({@code NAME.index.json} and {@code NAME.parts/}), else the
     * index and the parts directory. An earlier run's result in that form would otherwise stay
     * beside the new one (and a reader of the directory could take the old one).
     */
    public static List<String> otherForms(String name, List<String> publishedAs) {
        List<String> forms = new ArrayList<>(List.of(name, dev.lightning.attention.stream.OutputParts.indexName(name),
                name + dev.lightning.attention.stream.OutputParts.PARTS_SUFFIX));
        forms.removeAll(publishedAs); // the parts form keeps NAME.parts/ here: the old one goes, the new parts fill it afresh
        return forms;
    }

    /**
     * Refuses, before any compute, a run that cannot fit: {@code need}, the bytes it will stage
     * (lightning's passes or softmax's, each estimated by its own package: LightningPasses and
     * SoftmaxJob {@code bytesToStage}), against the free space the file system reports.
     */
    public void checkSpace(Staging staging, long need) throws IOException {
        long free;
        try {
            free = fs.getStatus(output).getRemaining();
        } catch (IOException | UnsupportedOperationException e) {
            return; // not reported by this file system
        }
        if (free <= 0) {
            return;
        }
        long have = 0;
        try {
            have = fs.getContentSummary(staging.path()).getLength();
        } catch (IOException e) {
            // a new run has staged nothing
        }
        if (need - have > free) {
            throw new InvalidInputException(String.format("--output %s: the run needs about %s for its outputs and "
                            + "staging, the file system has %s free; free some space or choose another output directory",
                    output, bytes(need - have), bytes(free)));
        }
    }

    /**
     * The free space of the output's file system now, for the message of a run that ran out of it: what tells a
     * full output from a full local directory of Spark's.
     */
    public String freeSpace() {
        try {
            long free = fs.getStatus(output).getRemaining();
            return free > 0 ? "its file system has " + bytes(free) + " free now" : "its file system has no space free now";
        } catch (IOException | RuntimeException e) {
            return "its file system does not report its free space";
        }
    }

    private static String bytes(long n) {
        if (n >= 1L << 30) {
            return String.format("%.1f GiB", n / (double) (1L << 30));
        }
        if (n >= 1L << 20) {
            return String.format("%.1f MiB", n / (double) (1L << 20));
        }
        return String.format("%.1f KiB", n / 1024.0); // a full disk's last blocks
    }
}
