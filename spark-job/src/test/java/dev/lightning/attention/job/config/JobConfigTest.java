package dev.lightning.attention.job.config;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JobConfigTest {
    private static final Map<String, String> PATHS = Map.of("--input", "in", "--output", "out");

    @Test
    void flagBeatsConfBeatsSparkBeatsDefault() {
        Map<String, String> spark = Map.of("spark.lightning.partitionTokens", "300", "spark.lightning.chunkSize", "32",
                "spark.lightning.scale", "0.5");
        Map<String, String> conf = Map.of("spark.lightning.partitionTokens", "200", "spark.lightning.chunkSize", "16");
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--partition-tokens", "100");
        JobConfig c = JobConfig.resolve(flags, conf, spark::get);
        assertEquals(100L, c.get(Settings.PARTITION_TOKENS));
        assertEquals(16, c.chunkSize());
        assertEquals(0.5, c.get(Settings.SCALE));
        assertEquals(64L << 20, c.get(Settings.WINDOW_BYTES));
        assertEquals("auto", c.get(Settings.BACKEND));
        assertEquals("(none)", c.describe().get(Settings.LAYER.key), "an optional option without a value");
        assertEquals(Settings.ALL.size(), c.describe().size(), "describe lists every option");
    }

    /** One of --layer and --layers without the other: the message said "layers null". */
    @Test
    void layerWithoutLayersSaysWhatIsMissing() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--layer", "3");
        String m = assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                () -> JobConfig.resolve(flags, Map.of(), k -> null)).getMessage();
        assertTrue(m.contains("--layer 3 needs --layers L") && !m.contains("null"), m);
        Map<String, String> other = new java.util.HashMap<>(PATHS);
        other.put("--layers", "8");
        m = assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                () -> JobConfig.resolve(other, Map.of(), k -> null)).getMessage();
        assertTrue(m.contains("--layers 8 needs --layer N") && m.contains("0..7") && !m.contains("null"), m);
    }

    @Test
    void aChoiceIsDeclaredWithDistinctValuesThatIncludeItsDefault() {
        assertThrows(IllegalArgumentException.class,
                () -> Setting.choice("--x", "spark.lightning.x", "on", "doc", "on", "on", "off"), "a value listed twice");
        assertThrows(IllegalArgumentException.class,
                () -> Setting.choice("--x", "spark.lightning.x", "auto", "doc", "on", "off"), "a default not among them");
        assertEquals("on|off", Setting.choice("--x", "spark.lightning.x", "on", "doc", "on", "off").type);
    }

    @Test
    void sparkSettingsPassThroughAndUnknownOwnKeysAreRefused() {
        JobConfig c = JobConfig.resolve(PATHS, Map.of("spark.executor.memory", "8g"), k -> null);
        assertEquals("8g", c.sparkSettings.get("spark.executor.memory"));
        InvalidInputException e = assertThrows(InvalidInputException.class,
                () -> JobConfig.resolve(PATHS, Map.of("spark.lightning.partitonTokens", "1"), k -> null));
        assertTrue(e.getMessage().contains("unknown option"), e.getMessage());
    }

    @Test
    void badValuesNameTheSourceAndTheExpectation() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--window-bytes", "lots");
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null));
        assertTrue(e.getMessage().startsWith("--window-bytes: expected size"), e.getMessage());
        InvalidInputException f = assertThrows(InvalidInputException.class,
                () -> JobConfig.resolve(PATHS, Map.of(), Map.of("spark.lightning.backend", "tpu")::get));
        assertTrue(f.getMessage().contains("Spark configuration spark.lightning.backend")
                && f.getMessage().contains("auto|cpu|gpu"), f.getMessage());
        assertEquals(3L << 20, Setting.parseSize("3m"));
        assertEquals(5L << 30, Setting.parseSize("5G"));
        assertEquals(4096, Setting.parseSize("4k"));
    }

    @Test
    void slopesFollowTheChosenFormulaAndLayer() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        assertArrayEquals(Slopes.minimax(6), JobConfig.resolve(flags, Map.of(), k -> null).defaultSlopes(6));
        flags.put("--default-slopes", "transnormer");
        flags.put("--layer", "2");
        flags.put("--layers", "8");
        assertArrayEquals(Slopes.transnormer(6, 2, 8), JobConfig.resolve(flags, Map.of(), k -> null).defaultSlopes(6));
        flags.remove("--layers");
        assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null));
    }

    @Test
    void theScaleDefaultsPerAttention() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        assertEquals(1.0, JobConfig.resolve(flags, Map.of(), k -> null).get(Settings.SCALE), "lightning: 1.0");
        flags.put("--attention", "softmax");
        JobConfig softmax = JobConfig.resolve(flags, Map.of(), k -> null);
        assertEquals(null, softmax.get(Settings.SCALE), "softmax: none in the configuration, 1/sqrt(Dk) per file");
        assertEquals("1/sqrt(Dk)", softmax.describe().get(Settings.SCALE.key));
        // by key from the Spark configuration too, as for every option
        assertEquals(0.25, JobConfig.resolve(flags, Map.of(), Map.of("spark.lightning.scale", "0.25")::get)
                .get(Settings.SCALE));
        flags.put("--scale", "0.5");
        assertEquals(0.5, JobConfig.resolve(flags, Map.of(), k -> null).get(Settings.SCALE));
        assertTrue(Settings.SCALE.defaultText.contains("softmax: 1/sqrt(Dk)"), Settings.SCALE.defaultText);
    }

    /**
     * The Dataset API (LightningTables) took these and did nothing with them: nothing was written to
     * --output, a missing --input passed, and Spark settings never reached the caller's session.
     */
    @Test
    void theDatasetApiRefusesWhatOnlyTheCommandLineUses() {
        String[][] given = {{"--output", "/x"}, {"--input", "/nonexistent"}, {"--resume"}, {"--overwrite"},
                {"--master", "local[1]"}, {"--output-format", "parquet"}, {"--sequences", "/s"}, {"--recursive"},
                {"--output-form", "parts"}, {"--lock-stale-seconds", "5"}, {"--progress-seconds", "1"},
                {"--synthetic", "100,1,4,4,f32,1"}, {"--input-format", "parquet"},
                {"--conf", "spark.lightning.output=/x"}};
        for (String[] args : given) {
            java.util.List<String> options = new java.util.ArrayList<>(java.util.List.of("--backend", "cpu"));
            options.addAll(java.util.List.of(args));
            String m = assertThrows(InvalidInputException.class, () -> OptionParser.parse(options, null, true),
                    String.join(" ", args)).getMessage();
            String flag = args[0].equals("--conf") ? "--output" : args[0];
            assertTrue(m.startsWith(flag) && m.contains("LightningTables.compute") && m.contains("remove it"), m);
        }
        String m = assertThrows(InvalidInputException.class,
                () -> OptionParser.parse(java.util.List.of("--output", "/x"), null, true)).getMessage();
        assertTrue(m.contains("writes the returned datasets itself"), m);
        for (String pair : new String[] {"spark.sql.shuffle.partitions=3", "spark.executor.memory=1g",
                "spark.master=local[1]"}) {
            m = assertThrows(InvalidInputException.class,
                    () -> OptionParser.parse(java.util.List.of("--conf", pair), null, true), pair).getMessage();
            assertTrue(m.startsWith("--conf " + pair) && m.contains("caller's SparkSession") && m.contains("remove it"), m);
        }
        // what the Dataset API does use still passes, and the command line still takes them all
        assertEquals(128L, OptionParser.parse(java.util.List.of("--partition-tokens", "128", "--skip-invalid",
                "--conf", "spark.lightning.scale=0.5"), null, true).get(Settings.PARTITION_TOKENS));
        JobConfig cli = OptionParser.parse(java.util.List.of("--input", "in", "--output", "out", "--overwrite",
                "--conf", "spark.executor.memory=1g"), null, false);
        assertEquals("1g", cli.sparkSettings.get("spark.executor.memory"));
        // the declarations say which: each command-line-only option is marked in the options table
        for (Setting<?> s : Settings.ALL) {
            assertEquals(s.commandLineOnly != null, Settings.markdownTable().lines()
                    .filter(l -> l.startsWith("| `" + s.flag)).findFirst().orElseThrow()
                    .contains("Command line only"), s.flag);
        }
    }
}
