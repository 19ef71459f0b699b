package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.Setting;
import dev.lightning.attention.job.config.Settings;
import dev.lightning.attention.stream.SequenceFile;

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
}
