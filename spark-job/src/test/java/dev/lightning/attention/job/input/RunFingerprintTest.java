package dev.lightning.attention.job.input;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.lightning.attention.job.config.JobConfig;
import dev.lightning.attention.job.config.OptionParser;
import dev.lightning.attention.job.output.RunInfo;
import dev.lightning.attention.stream.SequenceFile;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.SafetensorsFile;
import org.apache.hadoop.conf.Configuration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * What --resume compares of a files run (the integration side: PublicationTest, AppendJobTest):
 * the same inputs and result-affecting settings give the same fingerprint; a file replaced by one of
 * the same size and modification time, a result-affecting option or a stored state does not.
 */
class RunFingerprintTest {
    @TempDir
    java.nio.file.Path tmp;

    @Test
    void theSameRunHasTheSameFingerprintAndEachChangeIsNamed() throws Exception {
        java.nio.file.Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        write(in.resolve("b.safetensors"), 0.5f);
        JsonNode base = fingerprint(in, null, "--input", in.toString(), "--output", tmp.resolve("out").toString());
        // recomputed: equal; an option that does not change the bytes (the master) leaves it equal too
        assertEquals(List.of(), RunInfo.differences(base,
                fingerprint(in, null, "--input", in.toString(), "--output", tmp.resolve("out").toString())));
        assertEquals(List.of(), RunInfo.differences(base, fingerprint(in, null, "--input", in.toString(),
                "--output", tmp.resolve("out").toString(), "--master", "local[1]")));

        // a result-affecting option: named with both values, as the refusal tells the user
        List<String> scale = RunInfo.differences(base, fingerprint(in, null, "--input", in.toString(),
                "--output", tmp.resolve("out").toString(), "--scale", "0.5"));
        assertEquals(1, scale.size(), scale.toString());
        assertTrue(scale.get(0).startsWith("settings: ") && scale.get(0).contains("(now 0.5)"), scale.toString());

        // b replaced by a file of the same size whose modification time was kept (cp -p): the sample differs
        java.nio.file.Path b = in.resolve("b.safetensors");
        FileTime time = Files.getLastModifiedTime(b);
        long size = Files.size(b);
        write(b, 0.75f);
        Files.setLastModifiedTime(b, time);
        assertEquals(size, Files.size(b));
        assertEquals(List.of("inputs"), RunInfo.differences(base,
                fingerprint(in, null, "--input", in.toString(), "--output", tmp.resolve("out").toString())));

        // stored states: each one's file, size and time, in name order whatever the map's order
        Map<String, StoredStates.State> stored = new TreeMap<>(java.util.Comparator.reverseOrder());
        stored.put("a.safetensors", state("file:/states/a.safetensors", 10, 20));
        stored.put("b.safetensors", state("file:/states/b.safetensors", 11, 21));
        JsonNode withStates = fingerprint(in, stored, "--input", in.toString(), "--output",
                tmp.resolve("out").toString());
        assertEquals("a.safetensors", withStates.path("initialStates").path(0).path("name").asText());
        assertEquals(11, withStates.path("initialStates").path(1).path("bytes").asLong());
        assertTrue(RunInfo.differences(withStates, fingerprint(in, null, "--input", in.toString(), "--output",
                tmp.resolve("out").toString())).contains("initialStates"));
    }

    /**
     * What the driver compares before its commit (RunFingerprint.refuseChanged; the run itself:
     * InputChangedTest): the inputs and the stored states' files as the run listed them. Nothing
     * changed passes; a stored state's file written again (an --overwrite run into the earlier
     * directory while this append ran) is named with what was listed and what is there now.
     */
    @Test
    void aStoredStateRewrittenDuringTheRunIsNamed() throws Exception {
        java.nio.file.Path in = Files.createDirectories(tmp.resolve("in"));
        write(in.resolve("a.safetensors"), 0.25f);
        java.nio.file.Path stateFile = tmp.resolve("a-state.safetensors");
        write(stateFile, 0.5f);
        Configuration conf = new Configuration();
        List<InputFile> statuses = InputListing.list(conf, in.toString(), false);
        String uri = stateFile.toUri().toString();
        long modified = Files.getLastModifiedTime(stateFile).toMillis();
        Map<String, StoredStates.State> stored = Map.of("a.safetensors", state(uri, Files.size(stateFile), modified));
        RunFingerprint.refuseChanged(conf, statuses, stored);

        Files.setLastModifiedTime(stateFile, FileTime.fromMillis(modified + 5000));
        InputChangedException e = org.junit.jupiter.api.Assertions.assertThrows(InputChangedException.class,
                () -> RunFingerprint.refuseChanged(conf, statuses, stored));
        assertTrue(e.getMessage().startsWith("1 input file(s) changed while the run read them: the stored state of "
                + "a.safetensors: ") && e.getMessage().contains(java.time.Instant.ofEpochMilli(modified).toString()),
                e.getMessage());
    }

    /** A stored state that only names its file (the fingerprint reads nothing else). */
    private static StoredStates.State state(String file, long bytes, long modified) {
        return new StoredStates.State(2, 4, 4, false, null, null, -1, file, file, bytes, modified, -1, null, List.of()) {
            @Override
            public dev.lightning.attention.engine.LightningState read(Configuration conf,
                    dev.lightning.attention.engine.AttentionSpec spec, String name, int sequence) {
                throw new UnsupportedOperationException("not read here");
            }
        };
    }

    /** The fingerprint of a run over every file of {@code in}, through JSON and back as the driver compares it. */
    private static JsonNode fingerprint(java.nio.file.Path in, Map<String, StoredStates.State> stored, String... args)
            throws Exception {
        JobConfig cfg = OptionParser.parse(List.of(args), null, false);
        Configuration conf = new Configuration();
        List<InputFile> statuses = InputListing.list(conf, in.toString(), false);
        // as the files run reads them: headers, and each file's content sample
        List<SequenceFile> files = SequenceFiles.inspectAll(cfg, conf, statuses, new ArrayList<>(), new TreeMap<>(), true);
        ObjectMapper json = new ObjectMapper();
        return json.readTree(json.writeValueAsBytes(RunFingerprint.of(cfg, files, statuses, stored)));
    }

    /** A 64-token sequence, H = 2, Dk = Dv = 4, F32, its values from {@code seed}: the same size for every seed. */
    private static void write(java.nio.file.Path file, float seed) throws Exception {
        int n = 64 * 2 * 4;
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {
            x[i] = (float) Math.sin(seed * 1000 + i);
        }
        long[] shape = {64, 2, 4};
        SafetensorsFile.write(file, List.of(SafetensorsFile.Tensor.of("q", DType.F32, shape, x),
                SafetensorsFile.Tensor.of("k", DType.F32, shape, x), SafetensorsFile.Tensor.of("v", DType.F32, shape, x)));
    }
}
