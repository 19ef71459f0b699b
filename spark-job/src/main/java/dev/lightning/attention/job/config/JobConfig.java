package dev.lightning.attention.job.config;

import dev.lightning.attention.engine.FeatureMap;
import dev.lightning.attention.engine.Slopes;
import dev.lightning.attention.stream.Variant;
import dev.lightning.attention.tensor.DType;
import dev.lightning.attention.tensor.InvalidInputException;

import java.io.Serializable;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Function;

/**
 * The job's options after resolution, read by entry: {@code cfg.get(Settings.SCALE)}. Each comes
 * from, in order of precedence: its command-line flag, {@code --conf key=value}, the Spark
 * configuration (spark-submit's {@code --conf}, spark-defaults.conf under spark-submit), its
 * default. The {@link Setting} entries in {@link Settings} are the only declaration of an option:
 * nothing copies a value into a field of its own. Immutable, and serializable into tasks.
 */
public final class JobConfig implements Serializable {
    private static final long serialVersionUID = 2L;

    /**
     * Spark settings that only the start of the driver's JVM reads, too late as the job's own
     * {@code --conf} (after spark-submit's application jar, or under bin/lightning).
     */
    static final java.util.Set<String> DRIVER_JVM_SETTINGS = java.util.Set.of("spark.driver.memory",
            "spark.driver.extraJavaOptions", "spark.driver.defaultJavaOptions", "spark.driver.extraClassPath",
            "spark.driver.extraLibraryPath");

    /** Resolved values by key: String, Long, Double, Boolean or Integer (absent: no value and no default). */
    private final Map<String, Object> values;
    /** Spark settings from {@code --conf} that are not ours, applied to the SparkConf. */
    public final Map<String, String> sparkSettings;
    /**
     * Where the Spark configuration's values come from, as messages that send the user there name them: what
     * spark-submit reads (its --conf before the application jar, spark-defaults.conf), the JVM's spark.* system
     * properties, and for a run over datasets ({@code LightningTables}) the caller's session.
     */
    static final String SPARK_CONFIGURATION_SOURCES = "spark-submit's --conf, spark-defaults.conf, a -D system property "
            + "or the session's settings";

    /** Keys whose value came from the Spark configuration ({@link #SPARK_CONFIGURATION_SOURCES}), not this command line. */
    private final java.util.Set<String> fromSparkConfiguration;

    private JobConfig(Map<String, Object> values, Map<String, String> sparkSettings,
                      java.util.Set<String> fromSparkConfiguration, boolean datasets) {
        this.values = Collections.unmodifiableMap(values);
        this.sparkSettings = Collections.unmodifiableMap(new LinkedHashMap<>(sparkSettings));
        this.fromSparkConfiguration = Collections.unmodifiableSet(new java.util.HashSet<>(fromSparkConfiguration));
        if (!datasets) {
            checkPaths();
        }
        checkOptions();
    }

    /** A run reads --input (or --synthetic) and writes --output; a run over datasets ({@code LightningTables}) has neither. */
    private void checkPaths() {
        if (get(Settings.INPUT) == null && get(Settings.SYNTHETIC) == null) {
            throw new InvalidInputException("--input PATHS is required (or the key " + Settings.INPUT.key
                    + "), or --synthetic T,H,Dk,Dv,dtype,seed for generated sequences");
        }
        if (get(Settings.INPUT) != null && get(Settings.SYNTHETIC) != null) {
            throw new InvalidInputException("--input and --synthetic exclude each other: a run reads files or "
                    + "generates sequences; got --input " + get(Settings.INPUT) + " and --synthetic "
                    + get(Settings.SYNTHETIC));
        }
        synthetic(); // refuses a malformed --synthetic before anything starts
        if (get(Settings.SYNTHETIC) != null) {
            // options of reading --input: taken and ignored beside generated sequences, they would tell the
            // user something happened that did not
            for (Setting<?> s : java.util.List.<Setting<?>>of(Settings.INPUT_FORMAT, Settings.SEQUENCES,
                    Settings.RECURSIVE, Settings.SKIP_INVALID)) {
                if (!java.util.Objects.equals(get(s), s.defaultValue)) {
                    throw new InvalidInputException(given(s) + " is about reading "
                            + "--input, and --synthetic generates its sequences instead; leave it out, or give --input");
                }
            }
        }
        if (get(Settings.OUTPUT) == null) {
            throw new InvalidInputException("--output DIR is required (or the key " + Settings.OUTPUT.key + ")");
        }
    }

    private void checkOptions() {
        Integer layer = get(Settings.LAYER);
        Integer layers = get(Settings.LAYERS);
        if ((layer == null) != (layers == null)) {
            throw new InvalidInputException(layer != null
                    ? "--layer " + layer + " needs --layers L, the model's number of layers (the layer factor is "
                            + "1 - layer/(L-1)); add it, or leave --layer out"
                    : "--layers " + layers + " needs --layer N, the index of this layer (0.." + (layers - 1) + "); add "
                            + "it, or leave --layers out");
        }
        if (layer != null && layer >= layers) {
            throw new InvalidInputException("--layer must be below --layers: got layer " + layer + " of " + layers
                    + " (layers count from 0, so the last of " + layers + " is " + (layers - 1) + "); give the layer's "
                    + "index from 0, or the model's number of layers as --layers");
        }
        long every = get(Settings.STATE_EVERY);
        if (every % chunkSize() != 0) {
            long below = every - every % chunkSize();
            throw new InvalidInputException("--state-every must be a multiple of --chunk-size " + chunkSize()
                    + " (states are recorded between chunks), got " + every + "; use "
                    + (below > 0 ? below + " or " : "") + (below + chunkSize()));
        }
        int gpuChunk = dev.lightning.attention.engine.Backends.GPU_CHUNK;
        if (every > 0 && !cpuOnly()
                && !dev.lightning.attention.engine.Backends.gpuCheckpointsFit(every, chunkSize())) {
            throw new InvalidInputException("--state-every " + every + " with --chunk-size " + chunkSize() + " and --backend "
                    + get(Settings.BACKEND) + ": the GPU kernels record states between their " + gpuChunk + "-token "
                    + "chunks, so both must be multiples of " + gpuChunk + "; change them, or use --backend cpu");
        }
        checkAttentionOptions(this);
        // the eps of --normalize's denominator: without --normalize it was taken and changed nothing,
        // and a run the user meant to normalize ran plain (as --spot-check-tolerance without checksums)
        Double eps = get(Settings.NORMALIZE_EPS);
        if (!get(Settings.NORMALIZE) && !eps.equals(Settings.NORMALIZE_EPS.defaultValue)) {
            throw new InvalidInputException(given(Settings.NORMALIZE_EPS) + " is "
                    + "the eps of --normalize's denominator, and this run does not normalize; add --normalize, or "
                    + "leave --normalize-eps out");
        }
    }

    /**
     * Refuses options of the other attention set to anything but their default (wherever they
     * came from): a softmax run has no feature map, normalization, recorded states, slopes or read-ahead, and a
     * lightning run no window or lse.
     */
    private static void checkAttentionOptions(JobConfig cfg) {
        boolean softmax = cfg.softmax();
        for (Setting<?> s : softmax ? Settings.LIGHTNING_ONLY : Settings.SOFTMAX_ONLY) {
            Object v = cfg.get(s);
            if (!java.util.Objects.equals(v, s.defaultValue)) {
                throw new InvalidInputException(cfg.given(s) + " applies to "
                        + (softmax ? "lightning attention only; softmax attention has no feature map, normalization, "
                        + "recorded states, slopes or window read-ahead: remove it, or run --attention lightning"
                        : "softmax attention only: add --attention softmax, or remove it"));
            }
        }
        // (with --backend cpu no GPU runs out of memory: taken and unused, as a lightning run takes it)
        if (softmax && cfg.gpuOomToCpu() && !cfg.cpuOnly()) {
            throw new InvalidInputException("--gpu-oom cpu with --attention softmax: softmax's GPU tasks compute in "
                    + "slices within --gpu-memory and fail when the device runs out of memory anyway, with no CPU "
                    + "fallback; leave --gpu-oom out (or lower --gpu-memory), or use --backend cpu");
        }
        Double scale = cfg.get(Settings.SCALE);
        if (softmax && scale != null && !(scale > 0 && !scale.isInfinite())) {
            throw new InvalidInputException("--scale " + scale + ": softmax attention's score scale must be finite and "
                    + "greater than 0 (the default is 1/sqrt(Dk) of each file); give a positive scale or leave it out");
        }
        for (Setting<?> s : softmax ? Settings.LIGHTNING_ONLY_IO : java.util.List.<Setting<?>>of()) {
            Object v = cfg.get(s);
            if (!java.util.Objects.equals(v, s.defaultValue)) {
                throw new InvalidInputException(cfg.given(s) + " is not available with "
                        + "--attention softmax: the synthetic source, the checksum sink and stored states serve "
                        + "lightning attention only; give softmax --input files and --output-mode files without "
                        + "--initial-states, or run --attention lightning");
            }
        }
    }

    /**
     * An option as given, for a message refusing it: "--feature-map elu1 (key spark.lightning.featureMap)".
     * One that came from the Spark configuration is said to come from there, since the command line
     * does not show it, with the flag that overrides it where it has a default to go back to.
     */
    private String given(Setting<?> s) {
        Object v = get(s);
        if (!fromSparkConfiguration.contains(s.key)) {
            return s.flag + " " + v + " (key " + s.key + ")";
        }
        return s.flag + " " + v + " (" + s.key + "=" + v + " in the Spark configuration: "
                + SPARK_CONFIGURATION_SOURCES + (s.defaultValue == null ? ""
                : "; " + s.flag + (s.isSwitch() ? "=" : " ") + s.defaultValue + " on the command line overrides it")
                + ")";
    }

    /** Whether this run computes causal softmax attention ({@code --attention softmax}) instead of lightning. */
    public boolean softmax() {
        return "softmax".equals(get(Settings.ATTENTION));
    }

    /** The value of an option (its default when it was not given; null for an optional one without). */
    @SuppressWarnings("unchecked")
    public <T> T get(Setting<T> s) {
        return (T) values.get(s.key);
    }

    /**
     * @param flags        command-line flags to raw values (switches map to "true")
     * @param confPairs    {@code --conf} pairs, ours and Spark's
     * @param sparkDefault the Spark configuration's value for a key, or null
     */
    public static JobConfig resolve(Map<String, String> flags, Map<String, String> confPairs,
                                    Function<String, String> sparkDefault) {
        return resolve(flags, confPairs, sparkDefault, false);
    }

    /**
     * @param datasets true for a run over datasets given in code ({@code LightningTables}), which
     *                 needs no --input or --output
     */
    static JobConfig resolve(Map<String, String> flags, Map<String, String> confPairs,
                             Function<String, String> sparkDefault, boolean datasets) {
        if (datasets) {
            refuseCommandLineOnly(flags, confPairs);
        }
        Map<String, String> spark = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : confPairs.entrySet()) {
            Setting<?> option = Settings.byKey(e.getKey());
            if (option == null || option == Settings.MASTER) {
                if (e.getKey().startsWith("spark.lightning.")) {
                    throw new InvalidInputException("--conf " + e.getKey() + ": unknown option" + didYouMean(e.getKey())
                            + "; known keys are listed by `lightning options`");
                }
                if (!e.getKey().startsWith("spark.")) {
                    // Spark takes no other keys (spark-submit drops them with a warning): such a pair,
                    // often an option's key without its prefix, was passed on and silently did nothing
                    throw new InvalidInputException("--conf " + e.getKey() + "=" + e.getValue() + ": expected the key "
                            + "of an option (spark.lightning.*, listed by `lightning options`) or a Spark setting "
                            + "(spark.*), got neither" + didYouMean(e.getKey()) + "; Spark would ignore it");
                }
                if (DRIVER_JVM_SETTINGS.contains(e.getKey())) {
                    // read by whatever starts the driver's JVM (spark-submit's launcher, YARN's AM), and
                    // that JVM is running by now: bin/lightning's heap stayed the JVM's default
                    throw new InvalidInputException("--conf " + e.getKey() + "=" + e.getValue() + ": a setting of the "
                            + "driver's JVM, which is already running when the job reads its options, so it would "
                            + "change nothing; give it where that JVM starts: for bin/lightning, "
                            + "LIGHTNING_DRIVER_MEMORY=8g (its heap) or LIGHTNING_EXTRA_CLASSPATH (jars); for "
                            + "spark-submit, its own --driver-memory, --driver-java-options or --driver-class-path "
                            + "(or --conf before the application jar, or spark-defaults.conf)");
                }
                spark.put(e.getKey(), e.getValue());
            }
        }
        Map<String, Object> values = new LinkedHashMap<>();
        java.util.Set<String> fromSpark = new java.util.HashSet<>();
        for (Setting<?> s : Settings.ALL) {
            if (!flags.containsKey(s.flag) && !confPairs.containsKey(s.key) && sparkDefault.apply(s.key) != null) {
                fromSpark.add(s.key);
            }
        }
        // first the attention, which chooses some defaults (--scale)
        String attention = resolve(Settings.ATTENTION, flags, confPairs, sparkDefault, Settings.ATTENTION.defaultValue);
        for (Setting<?> s : Settings.ALL) {
            Object v = resolveUnder(attention, s, flags, confPairs, sparkDefault);
            if (v != null) {
                values.put(s.key, v);
            }
        }
        return new JobConfig(values, spark, fromSpark, datasets);
    }

    /**
     * Refuses a {@code spark.lightning.*} key of the Spark configuration ({@link #SPARK_CONFIGURATION_SOURCES})
     * that names no option: a misspelt key there was read by nothing, and the run went on with the default (the
     * same key as the job's own {@code --conf} is refused already).
     */
    public static void refuseUnknownSparkKeys(Iterable<String> keys) {
        for (String key : keys) {
            if (key.startsWith("spark.lightning.") && Settings.byKey(key) == null) {
                throw new InvalidInputException("Spark configuration " + key + " (" + SPARK_CONFIGURATION_SOURCES
                        + "): unknown option" + didYouMean(key)
                        + "; known keys are listed by `lightning options`: correct or remove it there");
            }
        }
    }

    /** "; did you mean KEY" where {@code given} is an option's key or flag spelt another way, else "". */
    private static String didYouMean(String given) {
        Setting<?> s = Settings.byLooseName(given);
        return s == null ? "" : " (did you mean " + s.key + "?)";
    }

    /**
     * A run over datasets ({@code LightningTables}) refuses, as given in its options, what only the
     * command line uses (the options whose declaration says so: files, the output directory, the
     * Spark start) and every Spark setting: the caller reads the inputs and writes the returned
     * datasets itself, in its own SparkSession. Accepted, they would silently do nothing.
     */
    private static void refuseCommandLineOnly(Map<String, String> flags, Map<String, String> confPairs) {
        for (Setting<?> s : Settings.ALL) {
            boolean flag = flags.containsKey(s.flag);
            if (s.commandLineOnly != null && (flag || confPairs.containsKey(s.key) && s != Settings.MASTER)) {
                String given = flag ? s.flag + (s.isSwitch() ? "" : " " + flags.get(s.flag))
                        : "--conf " + s.key + "=" + confPairs.get(s.key);
                throw new InvalidInputException((flag ? given + " (key " + s.key + ")" : s.flag + " (" + given + ")")
                        + ": expected only options that LightningTables.compute uses; it has no use for this one, since "
                        + "it reads the datasets it is given and the caller writes the returned datasets itself, in its "
                        + "own SparkSession (" + s.commandLineOnly + "); remove it");
            }
        }
        for (Map.Entry<String, String> e : confPairs.entrySet()) {
            if (!e.getKey().startsWith("spark.lightning.")) {
                throw new InvalidInputException("--conf " + e.getKey() + "=" + e.getValue() + ": a Spark setting, "
                        + "and LightningTables.compute runs in the caller's SparkSession, whose settings are the "
                        + "caller's: set it when building the session (SparkSession.builder().config(...)) or, for "
                        + "runtime SQL settings, with spark.conf().set(...); remove it here");
            }
        }
    }

    /** An option's value, its default being the one under {@code attention}. */
    private static <T> T resolveUnder(String attention, Setting<T> s, Map<String, String> flags,
                                      Map<String, String> conf, Function<String, String> spark) {
        return resolve(s, flags, conf, spark, s.defaultFor(attention));
    }

    private static <T> T resolve(Setting<T> s, Map<String, String> flags, Map<String, String> conf,
                                 Function<String, String> spark, T defaultValue) {
        if (flags.containsKey(s.flag)) {
            return s.parse(flags.get(s.flag), s.flag);
        }
        if (conf.containsKey(s.key)) {
            return s.parse(conf.get(s.key), "--conf " + s.key);
        }
        String fromSpark = spark.apply(s.key);
        if (fromSpark != null) {
            return s.parse(fromSpark, "Spark configuration " + s.key);
        }
        return defaultValue;
    }

    // ---------------------------------------------------------------- values derived from options

    public int chunkSize() {
        return Math.toIntExact(get(Settings.CHUNK_SIZE));
    }

    /** Feature map, normalization and checkpoint interval of this run. */
    public Variant variant() {
        return new Variant(FeatureMap.of(get(Settings.FEATURE_MAP)), get(Settings.NORMALIZE),
                get(Settings.NORMALIZE_EPS), Math.toIntExact(get(Settings.STATE_EVERY)));
    }

    /** The sequences --synthetic names, in order (empty without it); the same spec twice is refused. */
    public java.util.List<dev.lightning.attention.stream.SyntheticSequence> synthetic() {
        String spec = get(Settings.SYNTHETIC);
        java.util.List<dev.lightning.attention.stream.SyntheticSequence> all = new java.util.ArrayList<>();
        if (spec == null) {
            return all;
        }
        for (String one : spec.split(";")) {
            if (one.isBlank()) {
                continue;
            }
            dev.lightning.attention.stream.SyntheticSequence s = dev.lightning.attention.stream.SyntheticSequence.parse(one);
            if (all.contains(s)) {
                throw new InvalidInputException("--synthetic names " + s.spec() + " twice; each sequence gets one "
                        + "result file, " + s.name());
            }
            all.add(s);
        }
        if (all.isEmpty()) {
            throw new InvalidInputException("--synthetic '" + spec + "' names no sequence; expected T,H,Dk,Dv,dtype,seed");
        }
        return all;
    }

    /** Whether o goes to a checksum sink instead of the result files (--output-mode checksums). */
    public boolean checksums() {
        return "checksums".equals(get(Settings.OUTPUT_MODE));
    }

    /** The spot checks' tolerance for o of dtype {@code o}: --spot-check-tolerance, or the dtype's. */
    public double spotCheckTolerance(DType o) {
        Double given = get(Settings.SPOT_CHECK_TOLERANCE);
        return given != null ? given : dev.lightning.attention.stream.SpotCheck.tolerance(o);
    }

    public boolean gpuOomToCpu() {
        return "cpu".equals(get(Settings.GPU_OOM));
    }

    /** Whether a GPU is optional (--backend auto): what it cannot compute goes to the CPU. */
    public boolean gpuOptional() {
        return "auto".equals(get(Settings.BACKEND));
    }

    /** Whether the run computes on the CPU alone (--backend cpu): no GPU's limits or failures apply to it. */
    public boolean cpuOnly() {
        return "cpu".equals(get(Settings.BACKEND));
    }

    /** The dtype of {@code o} for input of dtype {@code in}. */
    public DType outputDtype(DType in) {
        String o = get(Settings.OUTPUT_DTYPE);
        return "input".equals(o) ? in : DType.fromSafetensors(o);
    }

    /** Default slopes for files without a {@code slope} tensor. */
    public double[] defaultSlopes(int heads) {
        Integer layer = get(Settings.LAYER);
        Integer layers = get(Settings.LAYERS);
        if ("transnormer".equals(get(Settings.DEFAULT_SLOPES))) {
            return layer == null ? Slopes.transnormer(heads, 0, 1) : Slopes.transnormer(heads, layer, layers);
        }
        return layer == null ? Slopes.minimax(heads) : Slopes.minimax(heads, layer, layers);
    }

    /** Every option with its value (as text; "(none)" where an optional one is not set), for the run report. */
    public Map<String, String> describe() {
        Map<String, String> m = new LinkedHashMap<>();
        for (Setting<?> s : Settings.ALL) {
            Object v = values.get(s.key);
            String derived = s.defaultTextFor(get(Settings.ATTENTION)); // a default the job derives per file
            m.put(s.key, v != null ? v.toString() : derived != null ? derived : "(none)");
        }
        return m;
    }
}
