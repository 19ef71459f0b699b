package dev.lightning.attention.job.config;

import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.tensor.InvalidInputException;
import org.junit.jupiter.api.Test;

import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JobConfigTest {
    private static final Map<String, String> PATHS = Map.of("--input", "in", "--output", "out");

    /** A piece counts its tokens in an int: --partition-tokens above 2^31 - 1 is refused, not an overflow in the plan. */
    @Test
    void partitionTokensFitAPiecesCount() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--partition-tokens", "2147483647");
        assertEquals(2147483647L, JobConfig.resolve(flags, Map.of(), k -> null).get(Settings.PARTITION_TOKENS));
        flags.put("--partition-tokens", "2147483648");
        String m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null))
                .getMessage();
        assertTrue(m.contains("--partition-tokens") && m.contains("1..2147483647"), m);
    }

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

    /** --layer of the model's layer count (counted from 1): the message said only "got layer 8 of 8". */
    @Test
    void aLayerPastTheLastSaysLayersCountFromZero() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--layer", "8");
        flags.put("--layers", "8");
        String m = assertThrows(dev.lightning.attention.tensor.InvalidInputException.class,
                () -> JobConfig.resolve(flags, Map.of(), k -> null)).getMessage();
        assertTrue(m.contains("got layer 8 of 8") && m.contains("the last of 8 is 7") && m.contains("from 0"), m);
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

    /**
     * A --conf key that is neither an option's nor Spark's (an option's key without its prefix) was
     * passed on to Spark, which ignores such keys: the run went on with the option's default.
     */
    @Test
    void confKeysOutsideSparkAreRefusedNamingTheOptionMeant() {
        for (String key : new String[] {"lightning.partitionTokens", "partition-tokens", "partitionTokens"}) {
            String m = assertThrows(InvalidInputException.class,
                    () -> JobConfig.resolve(PATHS, Map.of(key, "4096"), k -> null), key).getMessage();
            assertTrue(m.startsWith("--conf " + key + "=4096: expected the key of an option")
                    && m.contains("did you mean spark.lightning.partitionTokens?"), m);
        }
        String m = assertThrows(InvalidInputException.class,
                () -> JobConfig.resolve(PATHS, Map.of("normalise", "true"), k -> null)).getMessage();
        assertTrue(m.contains("got neither") && !m.contains("did you mean"), m);
        m = assertThrows(InvalidInputException.class,
                () -> JobConfig.resolve(PATHS, Map.of("spark.lightning.gpu.window-bytes", "1g"), k -> null)).getMessage();
        assertTrue(m.contains("unknown option (did you mean spark.lightning.gpu.windowBytes?)"), m);
        assertEquals("spark.master", Settings.byLooseName("master").key);
        assertEquals("spark.lightning.windowBytes", Settings.byLooseName("window_bytes").key);
    }

    /**
     * `bin/lightning run --conf spark.driver.memory=8g` ran with the JVM's default heap (the run
     * report's heapMaxBytes said 6.3 GB): the driver's JVM is running when the job reads its --conf.
     */
    @Test
    void driverJvmSettingsThatComeTooLateAreRefused() {
        for (String key : JobConfig.DRIVER_JVM_SETTINGS) {
            String m = assertThrows(InvalidInputException.class,
                    () -> JobConfig.resolve(PATHS, Map.of(key, "8g"), k -> null), key).getMessage();
            assertTrue(m.startsWith("--conf " + key + "=8g: a setting of the driver's JVM, which is already running")
                    && m.contains("LIGHTNING_DRIVER_MEMORY") && m.contains("--driver-memory"), m);
        }
        // the executors' JVMs start after the job: theirs pass through
        assertEquals("8g", JobConfig.resolve(PATHS, Map.of("spark.executor.memory", "8g"), k -> null)
                .sparkSettings.get("spark.executor.memory"));
    }

    /**
     * A misspelt spark.lightning.* key in the Spark configuration (spark-submit's --conf before the
     * jar, spark-defaults.conf, -D) was read by nothing: the run used the default, while the same
     * key given to the job's own --conf was refused.
     */
    @Test
    void unknownOwnKeysOfTheSparkConfigurationAreRefused() {
        System.setProperty("spark.lightning.partiton.tokens", "5");
        try {
            String m = assertThrows(InvalidInputException.class, () -> OptionParser.parse(
                    java.util.List.of("--input", "in", "--output", "out"), null, false)).getMessage();
            assertTrue(m.startsWith("Spark configuration spark.lightning.partiton.tokens (spark-submit's --conf, "
                    + "spark-defaults.conf, a -D system property or the session's settings): unknown option"), m);
        } finally {
            System.clearProperty("spark.lightning.partiton.tokens");
        }
        System.setProperty("spark.lightning.partitionTokens", "4096");
        try {
            assertEquals(4096L, OptionParser.parse(java.util.List.of("--input", "in", "--output", "out"), null, false)
                    .get(Settings.PARTITION_TOKENS));
        } finally {
            System.clearProperty("spark.lightning.partitionTokens");
        }
    }

    @Test
    void badValuesNameTheSourceAndTheExpectation() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--window-bytes", "lots");
        InvalidInputException e = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null));
        assertTrue(e.getMessage().startsWith("--window-bytes: expected size"), e.getMessage());
        // the form a size takes, not Long's 'For input string: "1.5"'
        flags.put("--window-bytes", "1.5g");
        e = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null));
        assertEquals("--window-bytes: expected size, got '1.5g' (a whole number of bytes, or of KiB, MiB or GiB with "
                + "k, m or g: 65536, 64m, 1g)", e.getMessage());
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
     * The template's advice, a cluster's spark-defaults.conf holding spark.lightning.featureMap: a
     * softmax run was refused with "--feature-map elu1 ... remove it", a flag the user never gave,
     * in a file that may not be theirs. The refusal now says where the value came from and which
     * flag overrides it, and that flag does.
     */
    @Test
    void anOptionRefusedFromTheSparkConfigurationSaysSoAndHowToOverrideIt() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--attention", "softmax");
        Map<String, String> spark = Map.of("spark.lightning.featureMap", "elu1");
        String m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), spark::get))
                .getMessage();
        assertTrue(m.startsWith("--feature-map elu1 (spark.lightning.featureMap=elu1 in the Spark configuration: "
                + "spark-submit's --conf, spark-defaults.conf, a -D system property or the session's settings; "
                + "--feature-map identity on the command line overrides it) applies to lightning attention only"), m);
        m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(),
                Map.of("spark.lightning.normalize", "true")::get)).getMessage();
        assertTrue(m.contains("--normalize=false on the command line overrides it"), m);
        flags.put("--feature-map", "identity");
        assertEquals("identity", JobConfig.resolve(flags, Map.of(), spark::get).get(Settings.FEATURE_MAP));
        // given on this command line, it is named as given
        flags.remove("--feature-map");
        m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of("spark.lightning.featureMap",
                "relu"), k -> null)).getMessage();
        assertTrue(m.startsWith("--feature-map relu (key spark.lightning.featureMap) applies"), m);
    }

    /**
     * Softmax's GPU backend has no CPU fallback (nor halving): a device out of memory fails its task. --gpu-oom cpu
     * was taken and ignored, so a run that asked for the fallback failed on the first out-of-memory.
     */
    @Test
    void softmaxRefusesTheCpuFallbackItDoesNotHave() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--attention", "softmax");
        flags.put("--gpu-oom", "cpu");
        String m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null))
                .getMessage();
        assertTrue(m.startsWith("--gpu-oom cpu") && m.contains("softmax") && m.contains("no CPU fallback")
                && m.contains("--backend cpu"), m);
        flags.put("--backend", "cpu");  // no GPU to run out of memory: taken, as the advice says
        assertTrue(JobConfig.resolve(flags, Map.of(), k -> null).gpuOomToCpu(), "with --backend cpu");
        flags.remove("--backend");
        flags.put("--gpu-oom", "shrink");
        assertEquals("shrink", JobConfig.resolve(flags, Map.of(), k -> null).get(Settings.GPU_OOM), "the default passes");
        flags.remove("--attention");
        flags.put("--gpu-oom", "cpu");
        assertTrue(JobConfig.resolve(flags, Map.of(), k -> null).gpuOomToCpu(), "lightning keeps its fallback");
    }

    /** Only --backend auto (the default) sends a piece no GPU kernel fits to the CPU (CpuFallback). */
    @Test
    void aGpuIsOptionalUnderAutoAlone() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        assertTrue(JobConfig.resolve(flags, Map.of(), k -> null).gpuOptional(), "auto, the default");
        flags.put("--backend", "gpu");
        assertFalse(JobConfig.resolve(flags, Map.of(), k -> null).gpuOptional());
        flags.put("--backend", "cpu");
        assertFalse(JobConfig.resolve(flags, Map.of(), k -> null).gpuOptional(), "no GPU to be optional");
    }

    /**
     * --synthetic generates its sequences, so the options of reading --input were taken and ignored
     * beside it (the run's result right, its command line misleading): refused, by flag and by key.
     */
    @Test
    void syntheticRefusesTheOptionsOfReadingInput() {
        String[][] given = {{"--recursive"}, {"--skip-invalid"}, {"--input-format", "safetensors"},
                {"--sequences", "/s"}, {"--conf", "spark.lightning.recursive=true"}};
        for (String[] args : given) {
            java.util.List<String> options = new java.util.ArrayList<>(java.util.List.of("--synthetic",
                    "100,1,4,4,f32,1", "--output", "/x"));
            options.addAll(java.util.List.of(args));
            String m = assertThrows(InvalidInputException.class, () -> OptionParser.parse(options, null, false),
                    String.join(" ", args)).getMessage();
            assertTrue(m.contains("--synthetic generates its sequences instead"), m);
        }
        assertEquals("100,1,4,4,f32,1", OptionParser.parse(java.util.List.of("--synthetic", "100,1,4,4,f32,1",
                "--output", "/x"), null, false).get(Settings.SYNTHETIC));
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

    /**
     * The README's options table is the one the declarations generate (`lightning options` prints it), so an option
     * added, renamed or re-documented in Settings cannot leave the README behind; and `--help` lists every option
     * with its placeholder, type, default and key.
     */
    @Test
    void readmeHoldsTheGeneratedOptionsTable() throws java.io.IOException {
        String readme = java.nio.file.Files.readString(java.nio.file.Path.of(
                System.getProperty("maven.multiModuleProjectDirectory", ".."), "README.md"));
        String table = Settings.markdownTable();
        assertTrue(readme.contains(table), "README's options table differs from Settings.markdownTable() "
                + "(bin/lightning options prints it):\n" + table);
        String help = Settings.helpText();
        for (Setting<?> s : Settings.ALL) {
            assertTrue(help.contains("default " + s.defaultText + "; key " + s.key + "]"), s.flag);
        }
        // the placeholders name what an option takes
        assertTrue(table.contains("| `--input PATHS` |") && table.contains("| `--output DIR` |")
                && table.contains("| `--partition-tokens N` |") && table.contains("| `--scale X` |")
                && table.contains("| `--master URL` |") && table.contains("| `--synthetic T,H,Dk,Dv,dtype,seed` |")
                && table.contains("| `--skip-invalid` |"), table);
        assertTrue(help.contains("  --window-bytes BYTES"), help);
    }

    /** Each kind of setting's check at its edges: the bound accepted, one past it refused with the range said. */
    @Test
    void settingKindsCheckTheirEdges() {
        Setting<Long> count = Setting.count("--n", "k.n", 5, 1, 10, "doc");
        assertEquals(1L, count.parse("1", "--n"));
        assertEquals(10L, count.parse(" 10 ", "--n"));
        assertEquals("--n: must be in 1..10, got '0'", assertThrows(InvalidInputException.class,
                () -> count.parse("0", "--n")).getMessage());
        assertThrows(InvalidInputException.class, () -> count.parse("11", "--n"));
        assertEquals("--n: expected integer, got 'x' (a whole number in 1..10, in digits without a unit)",
                assertThrows(InvalidInputException.class, () -> count.parse("x", "--n")).getMessage());
        Setting<Integer> least = Setting.optionalInt("--m", "k.m", 2, "doc");
        assertEquals(2, least.parse("2", "--m"));
        assertTrue(assertThrows(InvalidInputException.class, () -> least.parse("1", "--m")).getMessage()
                .contains("must be >= 2"));
        Setting<Double> positive = Setting.real("--x", "k.x", 1.0, true, "doc");
        assertEquals(1e-300, positive.parse("1e-300", "--x"));
        assertTrue(assertThrows(InvalidInputException.class, () -> positive.parse("0", "--x")).getMessage()
                .contains("must be > 0"));
        Setting<Double> any = Setting.real("--y", "k.y", 1.0, false, "doc");
        assertEquals(-2.0, any.parse("-2", "--y"));
        for (String bad : new String[] {"NaN", "Infinity", "-Infinity"}) {
            assertTrue(assertThrows(InvalidInputException.class, () -> any.parse(bad, "--y")).getMessage()
                    .contains("must be finite"), bad);
        }
        Setting<Double> atLeast = Setting.realAtLeast("--z", "k.z", 1.0, 0.5, "doc");
        assertEquals(0.5, atLeast.parse("0.5", "--z"));
        assertThrows(InvalidInputException.class, () -> atLeast.parse("0.49", "--z"));
        Setting<Double> optional = Setting.optionalPositive("--w", "k.w", "(derived)", "doc");
        assertThrows(InvalidInputException.class, () -> optional.parse("0", "--w"));
        assertThrows(InvalidInputException.class, () -> optional.parse("NaN", "--w"));
        Setting<Long> size = Setting.size("--b", "k.b", 3L << 20, 1024, "doc");
        assertEquals("3m", size.defaultText);
        assertEquals(1024L, size.parse("1k", "--b"));
        assertEquals(5L << 30, size.parse("5G", "--b"));
        assertTrue(assertThrows(InvalidInputException.class, () -> size.parse("1023", "--b")).getMessage()
                .contains("must be at least 1024 bytes"));
        Setting<Boolean> flag = Setting.flagSwitch("--f", "k.f", "doc");
        assertEquals(true, flag.parse("TRUE", "--f"));
        assertEquals(false, flag.parse("false", "--f"));
        assertThrows(InvalidInputException.class, () -> flag.parse("yes", "--f"));
    }

    /**
     * An argument that is no option says what was expected: a misspelt flag names the option it nearly is, a value
     * after a switch that a switch takes none, a stray word that values go right after their options. Each said
     * "unknown option 'ARG' (see --help)", naming no option and calling a stray value an option.
     */
    @Test
    void anArgumentThatIsNoOptionSaysWhatWasExpected() {
        String[][] cases = {
                {"--partiton-tokens", "unknown option '--partiton-tokens': did you mean --partition-tokens? (--help and "
                        + "`lightning options` list the options)"},
                {"--skip-nonfinit", "did you mean --skip-nonfinite?"},
                {"--partitionTokens=4096", "did you mean --partition-tokens?"},
                {"--frobnicate", "unknown option '--frobnicate': expected one of the options that --help and "
                        + "`lightning options` list"},
                {"--normalize true", "unexpected 'true' after --normalize, a switch that takes no value: give "
                        + "--normalize alone to turn it on (--normalize=false turns it off)"},
                {"out2", "unexpected argument 'out2': expected options only, each value right after its option "
                        + "(--output DIR or --output=DIR); see --help"}};
        for (String[] c : cases) {
            java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("--input", "in", "--output", "out"));
            args.addAll(java.util.List.of(c[0].split(" ")));
            String m = assertThrows(InvalidInputException.class, () -> OptionParser.parse(args, null, false)).getMessage();
            assertTrue(m.contains(c[1]), c[0] + ": " + m);
        }
    }

    /**
     * A value that is no number is refused with the form and range the option takes, not Java's own words: the
     * message said '(For input string: "64k")' for --partition-tokens 64k, the same for a count too large for a
     * long, 'empty String' for --scale '', and Integer's overflow text for an int option's value beyond an int.
     */
    @Test
    void aValueThatIsNoNumberIsRefusedWithTheFormItTakesNotJavasWords() {
        Setting<Long> count = Setting.count("--n", "k.n", 5, 1, 10, "doc");
        Setting<Integer> least = Setting.optionalInt("--m", "k.m", 2, "doc");
        Setting<Double> real = Setting.real("--x", "k.x", 1.0, true, "doc");
        for (String bad : new String[] {"64k", "99999999999999999999", "", "1.5"}) {
            String m = assertThrows(InvalidInputException.class, () -> count.parse(bad, "--n")).getMessage();
            assertEquals("--n: expected integer, got '" + bad + "' (a whole number in 1..10, in digits without a unit)", m);
        }
        assertEquals("--m: expected integer, got '3000000000' (a whole number in 2..2147483647, in digits without a "
                + "unit)", assertThrows(InvalidInputException.class, () -> least.parse("3000000000", "--m")).getMessage());
        for (String bad : new String[] {"abc", "", "1,5"}) {
            String m = assertThrows(InvalidInputException.class, () -> real.parse(bad, "--x")).getMessage();
            assertEquals("--x: expected number, got '" + bad + "' (a decimal number such as 2, 0.5 or 1e-5)", m);
        }
    }

    /**
     * --scale and --normalize-eps are applied in float32 by every kernel: a magnitude below float32's normal range
     * became 0 or a subnormal there, and the run wrote o = 0 with scale 1.0E-50 in its metadata (o is 1e-12 at
     * q = 1e18, k = v = 1e10), or o of a few bits (--scale 1e-40: 5e-6 off); one above 3.4e38 became Inf. Both are
     * refused; 0 stays allowed (an explicit zero), and so does anything float32 holds as a normal number.
     */
    @Test
    void scaleAndEpsOutsideFloat32AreRefused() {
        for (String bad : new String[] {"1e-50", "-1e-40", "1e-39", "1e39", "-3.5e38"}) {
            Map<String, String> flags = new java.util.HashMap<>(PATHS);
            flags.put("--scale", bad);
            String m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null))
                    .getMessage();
            assertTrue(m.contains("--scale") && m.contains("float32") && m.contains(bad), m);
        }
        for (String good : new String[] {"0", "-0.5", "1.2e-38", "3.4e38", "1e-30"}) {
            Map<String, String> flags = new java.util.HashMap<>(PATHS);
            flags.put("--scale", good);
            assertEquals(Double.parseDouble(good), JobConfig.resolve(flags, Map.of(), k -> null).get(Settings.SCALE));
        }
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--normalize", "true");
        flags.put("--normalize-eps", "1e-45");
        String m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null))
                .getMessage();
        assertTrue(m.contains("--normalize-eps") && m.contains("float32"), m);
        flags.put("--normalize-eps", "-1e-3");
        assertTrue(assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null))
                .getMessage().contains("must be >= 0"));
        flags.put("--normalize-eps", "0");
        assertEquals(0.0, JobConfig.resolve(flags, Map.of(), k -> null).get(Settings.NORMALIZE_EPS));
    }

    /**
     * --normalize-eps is the eps of --normalize's denominator: given without --normalize (by flag or
     * key) it was taken and changed nothing, so a run the user meant to normalize ran plain.
     */
    @Test
    void normalizeEpsWithoutNormalizeIsRefused() {
        Map<String, String> flags = new java.util.HashMap<>(PATHS);
        flags.put("--normalize-eps", "1e-3");
        String m = assertThrows(InvalidInputException.class, () -> JobConfig.resolve(flags, Map.of(), k -> null))
                .getMessage();
        assertTrue(m.contains("--normalize-eps 0.001") && m.contains("--normalize"), m);
        assertThrows(InvalidInputException.class, () -> JobConfig.resolve(PATHS,
                Map.of("spark.lightning.normalizeEps", "1e-3"), k -> null));
        flags.put("--normalize", "true");
        assertEquals(1e-3, JobConfig.resolve(flags, Map.of(), k -> null).get(Settings.NORMALIZE_EPS));
        // the default given explicitly changes nothing either way
        Map<String, String> plain = new java.util.HashMap<>(PATHS);
        plain.put("--normalize-eps", "1e-5");
        JobConfig.resolve(plain, Map.of(), k -> null);
    }

    /**
     * An option's value comes right after it or after '=' (--output=DIR; --conf KEY=VALUE and --conf=KEY=VALUE): the
     * end of the line or another option where a value belongs is refused, while a value that only starts with "--"
     * and no letter ("--", "--5") is a value; --conf needs a key before its '='.
     */
    @Test
    void aValueComesRightAfterItsOptionOrAfterEquals() {
        JobConfig eq = OptionParser.parse(java.util.List.of("--input=in", "--output=a=b", "--conf=spark.lightning"
                + ".partitionTokens=128"), null, false);
        assertEquals("in", eq.get(Settings.INPUT));
        assertEquals("a=b", eq.get(Settings.OUTPUT), "split at the first '=' only");
        assertEquals(128L, eq.get(Settings.PARTITION_TOKENS));
        for (String dashes : new String[] {"--", "--5"}) {
            assertEquals(dashes, OptionParser.parse(java.util.List.of("--input", "in", "--output", dashes), null, false)
                    .get(Settings.OUTPUT));
        }
        assertEquals("--output: expected a value after it, got the end of the command line",
                assertThrows(InvalidInputException.class, () -> OptionParser.parse(java.util.List.of("--input", "in",
                        "--output"), null, false)).getMessage());
        assertEquals("--output: expected a value after it, got the option --normalize; give the value (or write "
                + "--output=--normalize if that is really the value)", assertThrows(InvalidInputException.class,
                () -> OptionParser.parse(java.util.List.of("--input", "in", "--output", "--normalize"), null, false))
                .getMessage());
        assertEquals("--conf expects KEY=VALUE, got '=128'", assertThrows(InvalidInputException.class,
                () -> OptionParser.parse(java.util.List.of("--input", "in", "--output", "out", "--conf", "=128"), null,
                        false)).getMessage());
    }

    /**
     * An option given twice with two values is refused, naming both (--input's message says how to give several
     * inputs); the same value twice is taken. --dir is an option only where the caller takes it (the demo).
     */
    @Test
    void anOptionIsGivenOnceAndDirOnlyWhereTheDemoTakesIt() {
        assertEquals("--input is given twice ('a' and 'b'); give it once (several inputs: a comma-separated list, or a "
                + "glob)", assertThrows(InvalidInputException.class, () -> OptionParser.parse(java.util.List.of(
                "--input", "a", "--output", "out", "--input", "b"), null, false)).getMessage());
        assertEquals("--output is given twice ('x' and 'y'); give it once", assertThrows(InvalidInputException.class,
                () -> OptionParser.parse(java.util.List.of("--input", "a", "--output", "x", "--output=y"), null, false))
                .getMessage());
        assertEquals("x", OptionParser.parse(java.util.List.of("--input", "a", "--output", "x", "--output", "x"), null,
                false).get(Settings.OUTPUT));
        for (java.util.List<String> dir : java.util.List.of(java.util.List.of("--dir", "D"), java.util.List.of("--dir=D"))) {
            java.util.List<String> args = new java.util.ArrayList<>(java.util.List.of("--input", "in", "--output", "out"));
            args.addAll(dir);
            String[] demoDir = new String[1];
            OptionParser.parse(args, demoDir, false);
            assertEquals("D", demoDir[0], dir.toString());
            assertTrue(assertThrows(InvalidInputException.class, () -> OptionParser.parse(args, null, false))
                    .getMessage().startsWith("unknown option '--dir"), dir.toString());
        }
        // a stray word first of all has no option before it
        assertTrue(assertThrows(InvalidInputException.class, () -> OptionParser.parse(java.util.List.of("out2",
                "--input", "in", "--output", "out"), null, false)).getMessage().startsWith("unexpected argument 'out2'"));
    }

    /**
     * The edges of the kinds not held above: an int option takes Integer.MAX_VALUE and refuses what lies beyond an
     * int either way with the range it takes (Integer.MIN_VALUE itself is an int, refused by the minimum); a
     * float32 number takes float32's smallest normal and largest magnitude, and says what it would become beyond
     * them; a size takes a trailing b (64mb, 100b); a word, a text and a path refuse an empty value; a number with no
     * default takes one above 0; a default by --attention is stated after the plain one and survives commandLineOnly.
     */
    @Test
    void settingKindsTakeTheirOwnEdgesAndNoMore() {
        Setting<Integer> least = Setting.optionalInt("--m", "k.m", 2, "doc");
        assertEquals(Integer.MAX_VALUE, least.parse("2147483647", "--m"));
        assertEquals("--m: must be >= 2, got '-2147483648'", assertThrows(InvalidInputException.class,
                () -> least.parse("-2147483648", "--m")).getMessage());
        assertEquals("--m: expected integer, got '-2147483649' (a whole number in 2..2147483647, in digits without a "
                + "unit)", assertThrows(InvalidInputException.class, () -> least.parse("-2147483649", "--m")).getMessage());

        Setting<Double> f32 = Setting.float32Real("--s", "k.s", 1.0, -Double.MAX_VALUE, "doc");
        for (double edge : new double[] {Float.MIN_NORMAL, -Float.MIN_NORMAL, Float.MAX_VALUE, -Float.MAX_VALUE}) {
            assertEquals(edge, f32.parse(Double.toString(edge), "--s"));
        }
        assertTrue(assertThrows(InvalidInputException.class, () -> f32.parse("-1e39", "--s")).getMessage()
                .contains("where it would be Inf)"));
        assertTrue(assertThrows(InvalidInputException.class, () -> f32.parse("1e-39", "--s")).getMessage()
                .contains("where it would be 0 or lose its bits)"));

        assertEquals(64L << 20, Setting.parseSize("64mb"));
        assertEquals(100L, Setting.parseSize("100B"));

        Setting<String> word = Setting.word("--g", "k.g", "gpu", "doc");
        assertEquals("amd.com/gpu", word.parse("amd.com/gpu", "--g"));
        assertEquals("--g: a value is required, got ''", assertThrows(InvalidInputException.class,
                () -> word.parse("", "--g")).getMessage());
        for (Setting<String> path : java.util.List.of(Setting.path("--p", "k.p", "doc"),
                Setting.optionalPath("--q", "k.q", "doc"))) {
            assertEquals("d/x", path.parse("d/x", path.flag));
            assertEquals(path.flag + ": a path is required, got ' '", assertThrows(InvalidInputException.class,
                    () -> path.parse(" ", path.flag)).getMessage());
        }
        assertEquals(0.5, Setting.optionalPositive("--w", "k.w", "(derived)", "doc").parse("0.5", "--w"));
        assertEquals("--t: a value is required, got ''", assertThrows(InvalidInputException.class,
                () -> Setting.text("--t", "k.t", "(none)", "doc").parse("", "--t")).getMessage());
        // a default by attention is stated after the plain one, and marking an option command-line only keeps it
        Setting<Double> scale = Setting.real("--r", "k.r", 1.0, true, "doc").withDefaultFor("softmax", null,
                "1/sqrt(Dk)").commandLineOnly("give it in code");
        assertEquals("1.0; softmax: 1/sqrt(Dk)", scale.defaultText);
        assertEquals(null, scale.defaultFor("softmax"));
        assertEquals(1.0, scale.defaultFor("lightning"));
        assertEquals("1/sqrt(Dk)", scale.defaultTextFor("softmax"));
        assertEquals(null, scale.defaultTextFor("lightning"));
        assertEquals("give it in code", scale.commandLineOnly);
    }
}
