package dev.lightning.attention.job.output;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.lightning.attention.engine.EngineBuild;
import dev.lightning.attention.stream.FormatVersion;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;

import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;

/**
 * What {@code run.json} in a staging directory says: the run's fingerprint, whether it made {@code _temporary}, and
 * the {@link Staging#FORMAT} it staged in.
 */
public final class RunInfo {
    public final JsonNode fingerprint;
    final boolean createdParent;
    public final String started;
    /** The staging format of the build that wrote it; null where that build recorded none (an earlier one). */
    final String format;
    /** The {@link EngineBuild#digest} of the build that wrote it; null where it recorded none. */
    final String engine;

    private RunInfo(JsonNode fingerprint, boolean createdParent, String started, String format, String engine) {
        this.fingerprint = fingerprint;
        this.createdParent = createdParent;
        this.started = started;
        this.format = format;
        this.engine = engine;
    }

    /** The run.json of {@code stagingDir}; one of a later {@link FormatVersion} is refused ({@link FormatVersion.TooNew}). */
    public static RunInfo read(FileSystem fs, Path stagingDir) throws IOException {
        try (InputStream in = fs.open(new Path(stagingDir, Staging.RUN_FILE))) {
            JsonNode n = new ObjectMapper().readTree(in);
            FormatVersion.check(new Path(stagingDir, Staging.RUN_FILE).toString(), n);
            return new RunInfo(n.path("fingerprint"), n.path("createdParent").asBoolean(false),
                    n.path("started").asText("?"), n.path("format").isTextual() ? n.path("format").asText() : null,
                    n.path("engine").isTextual() ? n.path("engine").asText() : null);
        } catch (IOException e) { // missing or unreadable: a run killed as it started
            return new RunInfo(null, false, "?", null, null);
        }
    }

    /**
     * This build's run.json: always in this build's {@link Staging#FORMAT} and {@link FormatVersion}, with its
     * {@link EngineBuild#digest}.
     */
    public static byte[] encode(JsonNode fingerprint, boolean createdParent, String started) throws IOException {
        ObjectNode n = new ObjectMapper().createObjectNode();
        n.put("format", Staging.FORMAT);
        FormatVersion.put(n);
        n.put("engine", EngineBuild.digest());
        n.set("fingerprint", fingerprint);
        n.put("createdParent", createdParent);
        n.put("started", started);
        return new ObjectMapper().writeValueAsBytes(n);
    }

    /** Whether a table run staged it: its fingerprint records the input's format (TableRun); it keeps no work to resume. */
    public boolean tableRun() {
        return fingerprint != null && fingerprint.path("format").isTextual();
    }

    /**
     * Why this build keeps none of the work staged by the run this describes, or null where it may: another
     * build staged it in another {@link Staging#FORMAT} (or, before formats were recorded, none), or with other
     * engine code ({@link EngineBuild#digest}: the plan, the kernels, the formats, whose numbers the staged
     * states and outputs are; a build that changed only wording or options keeps the digest). Its fingerprint is
     * not compared then: it differs in whatever keys the other build recorded, which the user cannot give again.
     */
    public String otherFormat() {
        if (!Staging.FORMAT.equals(format)) {
            return "was staged by another build of lightning (staging format "
                    + (format == null ? "not recorded: a build from before formats were recorded" : format)
                    + "; this build stages " + Staging.FORMAT + "), whose finished work this build does not keep: "
                    + "its files may be laid out otherwise, and they hold the other build's numbers";
        }
        String mine = EngineBuild.digest();
        if (mine != null && mine.equals(engine)) {
            return null;
        }
        return "was staged by another build of lightning, whose engine code differs from this one's (engine "
                + (engine == null ? "not recorded" : engine) + "; this build's "
                + (mine == null ? "cannot be read from its class path" : mine) + "), whose finished work this "
                + "build does not keep: it holds the other build's numbers";
    }

    /** The keys in which two fingerprints differ, for the refusal of a --resume. */
    public static List<String> differences(JsonNode a, JsonNode b) {
        List<String> diff = new ArrayList<>();
        if (a == null || b == null) {
            diff.add("run.json unreadable");
            return diff;
        }
        a.fieldNames().forEachRemaining(k -> {
            if (!a.path(k).equals(b.path(k))) {
                List<String> keys = new ArrayList<>();
                if ("settings".equals(k)) { // name the options that differ: the user must repeat them
                    a.path(k).fieldNames().forEachRemaining(o -> {
                        if (!a.path(k).path(o).equals(b.path(k).path(o))) {
                            keys.add(o + " " + a.path(k).path(o).asText() + " (now " + (b.path(k).has(o)
                                    ? b.path(k).path(o).asText() : "not given") + ")");
                        }
                    });
                    b.path(k).fieldNames().forEachRemaining(o -> {
                        if (!a.path(k).has(o)) {
                            keys.add(o + " not given (now " + b.path(k).path(o).asText() + ")");
                        }
                    });
                }
                diff.add(keys.isEmpty() ? k : k + ": " + String.join(", ", keys));
            }
        });
        b.fieldNames().forEachRemaining(k -> {
            if (!a.has(k)) {
                diff.add(k);
            }
        });
        return diff;
    }
}
