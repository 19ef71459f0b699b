package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Setting;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.job.failure.Examples;
import dev.lightning.attention.job.hadoop.HadoopPaths;
import dev.lightning.attention.stream.SequenceFile;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The fingerprint of a files run, which its staging records and {@code --resume} compares
 * (output.RunInfo.differences): the settings that affect the bytes, and the identity of
 * every input and stored state. A table run builds its own (tables.TableRun).
 */
public final class RunFingerprint {
    private RunFingerprint() {
    }

    /**
     * What a resumed run must share with the run it continues: every input and setting that
     * affects the bytes. Each input is named by its path, size, modification time and a sample of
     * its content ({@link SequenceFile#sample}), so that a file replaced by another of the same size whose
     * time was kept (cp -p, rsync -t, an archive extracted again) is not taken for the one the
     * interrupted run read. With {@code stored} (the stored states of --initial-states, null
     * without): each one's file, size and modification time, for the sequences this run continues
     * and for those whose location goes into its {@code _states.json}.
     */
    public static JsonNode of(JobConfig cfg, List<SequenceFile> files, List<InputFile> statuses,
                              Map<String, StoredStates.State> stored) {
        Map<String, Long> modified = new HashMap<>();
        for (InputFile s : statuses) {
            modified.put(s.path().toUri().toString(), s.status.getModificationTime()); // the key of SequenceFile.path
        }
        ObjectNode n = new ObjectMapper().createObjectNode();
        ObjectNode settings = n.putObject("settings");
        Map<String, String> all = cfg.describe();
        for (Setting<?> setting : Settings.RESULT_AFFECTING) {
            settings.put(setting.key, all.get(setting.key));
        }
        ArrayNode inputs = n.putArray("inputs");
        for (SequenceFile f : files) {
            ObjectNode in = inputs.addObject().put("name", f.name).put("path", f.path).put("bytes", f.fileSize)
                    .put("modified", modified.get(f.path));
            if (modified.containsKey(f.path)) { // a file read from storage (not a synthetic sequence)
                in.put("sample", f.sample);
            }
        }
        if (stored != null) {
            ArrayNode states = n.putArray("initialStates");
            for (Map.Entry<String, StoredStates.State> e : new TreeMap<>(stored).entrySet()) {
                StoredStates.State st = e.getValue();
                states.addObject().put("name", e.getKey()).put("path", st.file).put("bytes", st.fileBytes)
                        .put("modified", st.fileModified);
            }
        }
        return n;
    }

    /**
     * Refuses to publish results whose inputs changed while the run read them: every input file
     * ({@code statuses}) and every stored state's file ({@code stored}, null without
     * --initial-states) must still have the size and modification time the run was planned with.
     * Tasks read their token ranges at the offsets the planning header gave, each when it runs, and
     * pass 2 continues from pass 1's states: a file rewritten in between gave an output that is
     * neither the old file's nor the new one's, published with exit status 0. Called by the driver
     * once every task has read what it reads, before the commit; a change after that point does not
     * touch the results.
     *
     * @throws InputChangedException naming each changed file (the first few), what the run was
     *                               planned with and what is there now
     */
    public static void refuseChanged(Configuration conf, List<InputFile> statuses,
                                     Map<String, StoredStates.State> stored) throws IOException {
        Map<String, StoredStates.State> states = stored == null ? Map.of() : new TreeMap<>(stored);
        List<Path> paths = new ArrayList<>();
        statuses.forEach(f -> paths.add(f.path()));
        states.values().forEach(st -> paths.add(new Path(java.net.URI.create(st.file))));
        Map<Path, FileStatus> now = lookUp(conf, paths);
        List<String> changed = new ArrayList<>();
        for (InputFile f : statuses) {
            String c = change(f.path(), f.status.getLen(), f.status.getModificationTime(), now.get(f.path()));
            if (c != null) {
                changed.add(f.name + ": " + c);
            }
        }
        for (Map.Entry<String, StoredStates.State> e : states.entrySet()) {
            StoredStates.State st = e.getValue();
            Path p = new Path(java.net.URI.create(st.file));
            String c = change(p, st.fileBytes, st.fileModified, now.get(p));
            if (c != null) {
                changed.add("the stored state of " + e.getKey() + ": " + c);
            }
        }
        if (!changed.isEmpty()) {
            throw changedInputs(changed, true);
        }
    }

    /**
     * The failure of a run whose input files changed while it read them ({@code changed}: each
     * file's {@link #change} or {@link #gone}); {@code resumable}: the run is one --resume could
     * continue, which it must not be asked to here (the work kept read the old content). The one
     * statement of it, for the files run and the table run.
     */
    public static InputChangedException changedInputs(List<String> changed, boolean resumable) {
        return new InputChangedException(changed.size() + " input file(s) changed while the run read them: "
                + Examples.of(changed, 3, "; ") + "; its tasks may have read the old content and the new, so "
                + "nothing was published. Run again " + (resumable ? "without --resume " : "") + "once the input no "
                + "longer changes (write a new version under another name, or beside the input and then move it "
                + "into place, between runs)");
    }

    /** A file the run listed and that is no longer there. */
    public static String gone(Object path) {
        return path + " is gone (deleted or moved since the run listed it)";
    }

    /**
     * What changed in the file at {@code path} since it had {@code bytes} and {@code modified}, now
     * {@code nowBytes} and {@code nowModified}, or null when nothing did.
     */
    public static String change(Object path, long bytes, long modified, long nowBytes, long nowModified) {
        if (nowBytes == bytes && nowModified == modified) {
            return null;
        }
        return path + " had " + bytes + " bytes, modified " + Instant.ofEpochMilli(modified) + ", when the run listed "
                + "it, and has " + nowBytes + " bytes, modified " + Instant.ofEpochMilli(nowModified) + ", now";
    }

    /** {@link #change} of the file at {@code p} against its status now ({@link #gone} where that is null). */
    private static String change(Path p, long bytes, long modified, FileStatus now) {
        return now == null ? gone(p) : change(p, bytes, modified, now.getLen(), now.getModificationTime());
    }

    /**
     * Where a directory holds this many of the files looked up, and is not on the local file
     * system, {@link #lookUp} lists it instead of asking for each file.
     */
    public static final int LIST_FROM = 16;

    /**
     * The status now of each file at {@code paths} (qualified), absent from the map where there is
     * none. On an object store each status call is a request (a HEAD on S3, tens of milliseconds):
     * asked file by file, 100,000 inputs take 100,000 requests before the commit. So the files of a directory
     * holding {@link #LIST_FROM} or more of them come from one listing of it (a request per thousand
     * entries), which tells each file's size and modification time as its status call would. On the
     * local file system each file is asked for (a stat, microseconds), whatever else its directory
     * holds. Used by the files run ({@link #refuseChanged}) and the table run's check.
     */
    public static Map<Path, FileStatus> lookUp(Configuration conf, Collection<Path> paths)
            throws IOException {
        Map<Path, List<Path>> byDirectory = new LinkedHashMap<>();
        for (Path p : paths) {
            byDirectory.computeIfAbsent(p.getParent(), d -> new ArrayList<>()).add(p);
        }
        Map<Path, FileStatus> now = new HashMap<>();
        for (Map.Entry<Path, List<Path>> e : byDirectory.entrySet()) {
            Path dir = e.getKey();
            FileSystem fs = HadoopPaths.fileSystem(e.getValue().get(0), conf);
            if (dir != null && e.getValue().size() >= LIST_FROM && !HadoopPaths.isLocal(fs)) {
                Map<String, FileStatus> listed = new HashMap<>();
                try {
                    for (FileStatus st : fs.listStatus(dir)) {
                        listed.put(st.getPath().getName(), st);
                    }
                } catch (FileNotFoundException gone) {
                    continue; // the directory is gone, and with it each file
                }
                for (Path p : e.getValue()) {
                    FileStatus st = listed.get(p.getName());
                    if (st != null && st.isFile()) {
                        now.put(p, st);
                    }
                }
            } else {
                for (Path p : e.getValue()) {
                    try {
                        now.put(p, fs.getFileStatus(p));
                    } catch (FileNotFoundException gone) {
                        // absent from the map
                    }
                }
            }
        }
        return now;
    }
}
