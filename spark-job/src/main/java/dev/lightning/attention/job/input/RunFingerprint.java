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
import org.apache.hadoop.fs.Path;

import java.io.FileNotFoundException;
import java.io.IOException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The fingerprint of a files run, which its staging records and {@code --resume} compares
 * (output.Commit.RunInfo.differences): the settings that affect the bytes, and the identity of
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
        List<String> changed = new ArrayList<>();
        for (InputFile f : statuses) {
            String c = change(conf, f.path(), f.status.getLen(), f.status.getModificationTime());
            if (c != null) {
                changed.add(f.name + ": " + c);
            }
        }
        if (stored != null) {
            for (Map.Entry<String, StoredStates.State> e : new TreeMap<>(stored).entrySet()) {
                StoredStates.State st = e.getValue();
                String c = change(conf, new Path(java.net.URI.create(st.file)), st.fileBytes, st.fileModified);
                if (c != null) {
                    changed.add("the stored state of " + e.getKey() + ": " + c);
                }
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

    /** {@link #change} of the file at {@code p}, looked up now ({@link #gone} when it is not there). */
    private static String change(Configuration conf, Path p, long bytes, long modified) throws IOException {
        FileStatus now;
        try {
            now = HadoopPaths.fileSystem(p, conf).getFileStatus(p);
        } catch (FileNotFoundException e) {
            return gone(p);
        }
        return change(p, bytes, modified, now.getLen(), now.getModificationTime());
    }
}
