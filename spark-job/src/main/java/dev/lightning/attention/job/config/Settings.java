package dev.lightning.attention.job.config;

import java.util.List;

/** Every option of the job, in the order {@code --help} and the README list them. */
public final class Settings {
    private Settings() {
    }

    public static final Setting<String> INPUT = Setting.path("--input", "spark.lightning.input",
            "The `*.safetensors` sequence files: a directory, one file, a comma-separated list or a glob "
                    + "(`'dir/*.safetensors'`); any Hadoop file system URI. A path that exists is taken as it is, "
                    + "even if it holds a comma or a glob character. Required unless --synthetic is given (not both). With --input-format parquet: a table of "
                    + "blocks (a directory of `.parquet` files, a file, a glob such as `'blocks/day=*'` naming either, or a comma-separated list of these).")
            .commandLineOnly("pass the blocks as a dataset");
    public static final Setting<String> INPUT_FORMAT = Setting.choice("--input-format", "spark.lightning.inputFormat", "auto",
            "`safetensors` (one sequence per file) or `parquet` (sequences as table rows: see \"Sequences as table "
                    + "rows\" in the README); `auto`: parquet when --input is a `.parquet` file or a directory holding "
                    + "`.parquet` files (also in partition directories, `key=value/`) and no `.safetensors` ones (each "
                    + "element of a list, and what a glob matches, counted together), else safetensors.", "auto",
            "safetensors", "parquet")
            .commandLineOnly("pass the blocks as a dataset, read from any source");
    public static final Setting<String> SEQUENCES = Setting.optionalPath("--sequences", "spark.lightning.sequences",
            "With parquet input: the optional per-sequence table (`sequence`, `slope`, `initial_state`, "
                    + "`initial_normalizer`), a directory of `.parquet` files, a file, a glob or a comma-separated list, as --input.")
            .commandLineOnly("pass the sequences table as a dataset (the sequences argument)");
    public static final Setting<String> OUTPUT_FORMAT = Setting.choice("--output-format", "spark.lightning.outputFormat",
            "input", "`input` (the input's format), `safetensors` or `parquet` (tables `o/` and `final_states/` in "
                    + "--output, and `states/` with --state-every). Safetensors input with `parquet`: each file is one "
                    + "sequence of the tables, named as its result file would be, read and computed by a table run "
                    + "(converts and computes in one run). Parquet input with `safetensors` is refused: a table run's o "
                    + "is rows spread over its tasks, which the files run's writers cannot place.", "input",
            "safetensors", "parquet")
            .commandLineOnly("write the returned datasets in the format you want");
    public static final Setting<String> SYNTHETIC = Setting.text("--synthetic", "spark.lightning.synthetic", "(none)",
            "Lightning only. Instead of --input, sequences generated inside the tasks, with no input files: `T,H,Dk,Dv,dtype,seed` "
                    + "(e.g. `10000000,2,64,64,bf16,1`; several separated by `;`). q, k, v are those of a "
                    + "safetensors file that exists only as a function: each value is a hash of (seed, tensor, "
                    + "element), uniform in (-1, 1) (q in (-1, 1)/sqrt(Dk)) and rounded to the dtype, so a run "
                    + "equals one on the written-out file, however it is split. Slopes from --default-slopes; the "
                    + "result is named `synthetic-T-H-Dk-Dv-dtype-seed.safetensors`.")
            .commandLineOnly("pass the blocks as a dataset");
    public static final Setting<String> OUTPUT = Setting.path("--output", "spark.lightning.output",
            "Directory for the results, one file per input file with the same name (its path below --input "
                    + "with `--recursive`). Published in one commit at the end of the run; files the run does not "
                    + "produce are never touched.")
            .commandLineOnly("write the returned datasets, e.g. r.o().write().parquet(dir)");
    public static final Setting<String> INITIAL_STATES = Setting.optionalPath("--initial-states",
            "spark.lightning.initialStates",
            "Lightning only. Continue sequences from the final states stored in DIR, the committed --output of an "
                    + "earlier run (its `_SUCCESS` must be there; DIR must not overlap --output). A sequence whose name "
                    + "has a stored state starts from it (S, and z with --normalize), so its outputs equal one run over "
                    + "the old and new tokens; one without starts from zero, or from its own `initial_state`. An input "
                    + "holding `initial_state`/`initial_normalizer` AND a stored state is refused (two starting "
                    + "states: remove one), as is a stored state whose shape (H, Dk, Dv, z present or not) or feature "
                    + "map does not fit. A safetensors run also publishes `_states.json`, the complete state set: "
                    + "every sequence of this run by its file here, every stored one it did not touch by where its "
                    + "state still lies (keep DIR), each with the tokens its state has absorbed. A continued output "
                    + "records `token_offset` (the tokens its stored state had absorbed); --state-every counts from "
                    + "this run's first token, so `states[c]` sits at token token_offset + (c+1)N - 1 of the whole "
                    + "sequence. Refused before compute too: a state file `_states.json` names that changed since "
                    + "it was recorded, an input its stored state's chain already absorbed (each output records its "
                    + "input's size and sample, a continued one also those of the segments before), and an input whose own `token_offset` is not its stored state's token "
                    + "count; inputs that continue nothing are named in a warning. A table run (parquet) reads DIR's `final_states/` table (a sequences-table "
                    + "`initial_state` for a sequence with a stored row is refused the same way; a continued sequence "
                    + "keeps the stored row's `slope`, and another given `slope` is refused; sequences that continue "
                    + "nothing are named in a warning), and its own "
                    + "`final_states/` is the complete set: the stored rows of sequences it did not compute are "
                    + "carried over into it unchanged, and `state_tokens` counts the tokens each state has absorbed; "
                    + "it refuses an input file of the size and content sample DIR's run, or a run before it in "
                    + "DIR's chain, recorded in its report (a segment appended twice, also from a copy).")
            .commandLineOnly("pass the stored final states as a dataset (the storedStates argument)");
    public static final Setting<Boolean> RECURSIVE = Setting.flagSwitch("--recursive", "spark.lightning.recursive",
            "With a directory as --input, also take the files of its subdirectories (names starting with `.` "
                    + "or `_` are skipped).")
            .commandLineOnly("pass the blocks as a dataset");
    public static final Setting<Long> PARTITION_TOKENS = Setting.count("--partition-tokens",
            "spark.lightning.partitionTokens", 65536, 1, Integer.MAX_VALUE,
            "Tokens per partition (rounded down to a multiple of the chunk size, and at least one chunk). Shorter sequences share a "
                    + "partition; longer ones are split into pieces of this size. At most 2^31 - 1 (a piece counts its "
                    + "tokens in an int; a longer sequence is split into pieces of at most that).");
    static final Setting<Long> CHUNK_SIZE = Setting.count("--chunk-size", "spark.lightning.chunkSize", 64, 1, 1024,
            "Block size of the CPU kernels (the GPU kernels always use 64); pieces start at multiples of it.");
    static final Setting<String> ATTENTION = Setting.choice("--attention", "spark.lightning.attention", "lightning",
            "What to compute: `lightning` (causal linear attention with decay) or `softmax` (causal softmax "
                    + "attention, o_t = sum_{j<=t} softmax_j(scale q_t.k_j) v_j, with grouped query heads; see "
                    + "\"Softmax attention\" in the README).", "lightning", "softmax");
    public static final Setting<Double> SCALE = Setting.float32Real("--scale", "spark.lightning.scale", 1.0,
            -Double.MAX_VALUE, "Lightning: output scale, o_t = scale * phi(q_t) S_t (divided by the normalizer term with --normalize). "
                    + "Softmax: score scale, softmax_j(scale q_t.k_j); by default 1/sqrt(Dk) of each file.")
            .withDefaultFor("softmax", null, "1/sqrt(Dk)");
    public static final Setting<Long> WINDOW = Setting.count("--window", "spark.lightning.window", 0, 0, Long.MAX_VALUE / 4,
            "Softmax only: a sliding window of N tokens, token t sees keys (t-N, t]; 0: every earlier key.");
    public static final Setting<Boolean> WRITE_LSE = Setting.flagSwitch("--write-lse", "spark.lightning.writeLse",
            "Softmax only: also write `lse` [T,Hq] F32, the natural log of sum_j exp(scale q_t.k_j) over the keys "
                    + "token t sees.");
    static final Setting<String> FEATURE_MAP = Setting.choice("--feature-map", "spark.lightning.featureMap", "identity",
            "Lightning only. Feature map phi applied to q and k before anything else: `identity` (phi(x) = x), `elu1` "
                    + "(elu(x) + 1) or `relu` (max(x, 0)).", "identity", "elu1", "relu");
    public static final Setting<Boolean> NORMALIZE = Setting.flagSwitch("--normalize", "spark.lightning.normalize",
            "Lightning only. Normalized linear attention: o_t = scale (phi(q_t) S_t) / (phi(q_t) . z_t + eps) with the normalizer "
                    + "z_t = lambda z_{t-1} + phi(k_t); reads `initial_normalizer` [H,Dk] F32 when a file has one and "
                    + "writes `final_normalizer` (and `normalizers` with --state-every).");
    static final Setting<Double> NORMALIZE_EPS = Setting.float32Real("--normalize-eps", "spark.lightning.normalizeEps",
            1e-5, 0, "Lightning only. The eps added to the denominator with --normalize; refused without it.");
    public static final Setting<Long> STATE_EVERY = Setting.count("--state-every", "spark.lightning.stateEvery", 0, 0,
            Integer.MAX_VALUE, "Lightning only. Record the state every N tokens (a multiple of --chunk-size; 0: never): each output "
                    + "then holds `states` [C,H,Dk,Dv] F32, C = floor(T/N), `states[c]` the state after token "
                    + "(c+1)N-1 of the file (and `normalizers` [C,H,Dk] with --normalize); a table run writes them as "
                    + "the table `states/`, one row per state. Unless --backend is cpu, N and --chunk-size must be "
                    + "multiples of 64, the GPU kernels' chunk.");
    public static final Setting<String> BACKEND = Setting.choice("--backend", "spark.lightning.backend", "auto",
            "Where pieces are computed: `gpu` on the GPU Spark assigned to the task (device 0 without an "
                    + "assignment), failing where none is usable; `cpu` on the CPU (float32); `auto` on the GPU "
                    + "when one is usable, else the CPU. The choice is logged.", "auto", "cpu", "gpu");
    public static final Setting<String> GPU_RESOURCE = Setting.word("--gpu-resource", "spark.lightning.gpu.resourceName",
            "gpu", "Name of the Spark resource whose address is the task's CUDA device.");
    public static final Setting<Long> GPU_MEMORY = Setting.size("--gpu-memory", "spark.lightning.gpu.memory", 8L << 30,
            64L << 20, "Device memory one task's GPU backend may hold (and in table runs its batch step, states included), "
            + "enforced by their allocators: larger windows are computed in slices, and a limit too small for the "
            + "states and one chunk is an error that says so.");
    public static final Setting<String> MASTER = Setting.text("--master", "spark.master", "local[*]",
            "Spark master URL. Under spark-submit, spark-submit's own `--master` is used unless this is given.")
            .commandLineOnly("the master is the caller's SparkSession's");
    public static final Setting<String> DEFAULT_SLOPES = Setting.choice("--default-slopes", "spark.lightning.defaultSlopes",
            "minimax", "Lightning only. Decay rates for files without a `slope` tensor: `minimax` (MiniMax-01/ALiBi) or "
                    + "`transnormer` (fla's `chunk_lightning_attn`).", "minimax", "transnormer");
    static final Setting<Integer> LAYER = Setting.optionalInt("--layer", "spark.lightning.layer", 0,
            "Lightning only. Layer index for the default slopes' layer factor; needs `--layers`. Without it, minimax slopes "
                    + "have no layer factor and transnormer ones are those of layer 0.");
    static final Setting<Integer> LAYERS = Setting.optionalInt("--layers", "spark.lightning.layers", 1,
            "Lightning only. Number of layers of the model, for `--layer`.");
    public static final Setting<Long> WINDOW_BYTES = Setting.size("--window-bytes", "spark.lightning.windowBytes",
            64L << 20, 1 << 10,
            "Bytes of q, k, v and o a task holds at once on the CPU backend; a piece is streamed through windows "
                    + "of this size. Softmax: half holds a query block (on every backend unless `--backend gpu`), "
                    + "half a key block.");
    public static final Setting<Long> GPU_WINDOW_BYTES = Setting.size("--gpu-window-bytes",
            "spark.lightning.gpu.windowBytes", 1L << 30, 1 << 10,
            "The same for the GPU backend, whose launches want more tokens at once. Softmax runs with `--backend gpu` "
                    + "also size their query blocks from it (half each for queries and keys).");
    public static final Setting<String> READ_AHEAD = Setting.choice("--read-ahead", "spark.lightning.readAhead", "on",
            "Lightning only. `on`: a task reads (and scans) a piece's next window while the current one computes and "
                    + "writes; the two windows share --window-bytes / --gpu-window-bytes, half each, so a task holds "
                    + "the same memory. `off`: one window after the other, each of the whole budget. The window length "
                    + "moves the last bits of o and the states (as --gpu-window-bytes does): `on` writes the bytes of "
                    + "`off` at half the budget.",
            "on", "off");
    static final Setting<String> GPU_OOM = Setting.choice("--gpu-oom", "spark.lightning.gpu.oom", "shrink",
            "When the GPU runs out of memory: `shrink` halves the work per launch down to one chunk and then fails "
                    + "the task; `cpu` shrinks the same way, then computes the piece on the CPU with a warning. "
                    + "Softmax: its GPU tasks compute in slices within --gpu-memory and fail when the device runs out "
                    + "anyway; `cpu` is refused there (with --backend cpu it is taken and unused). A table run sends "
                    + "the window, or the batch of short sequences, to the CPU.",
            "shrink", "cpu");
    static final Setting<String> OUTPUT_DTYPE = Setting.choice("--output-dtype", "spark.lightning.outputDtype",
            "input", "Dtype of `o`: that of the input, or `f32`, `bf16`, `f16`. An `o` value that does not fit "
                    + "(inf in F16) fails the job, naming the file and position.", "input", "f32", "bf16", "f16");
    public static final Setting<String> OUTPUT_FORM = Setting.choice("--output-form", "spark.lightning.outputForm", "auto",
            "How the outputs of a sequence split into pieces (and of any sequence with --state-every) are written "
                    + "without one task copying them: `in-place` (each task writes its byte ranges into the one "
                    + "output file; `file:` paths, i.e. local and shared POSIX file systems), `concat` (parts joined "
                    + "by the file system's concat, no data copied; HDFS), `parts` (`NAME.index.json` and "
                    + "`NAME.parts/*.safetensors`; any file system); `auto`: the first of these the output's file "
                    + "system allows. --resume must be given the same.", "auto", "in-place", "concat", "parts")
            .commandLineOnly("write the returned datasets with a writer of your choice");
    public static final Setting<String> OUTPUT_MODE = Setting.choice("--output-mode", "spark.lightning.outputMode", "files",
            "Lightning only. `files`: each result holds `o`. `checksums`: pass 2 computes `o` as usual but keeps, instead of "
                    + "writing it, the CRC32C of the bytes `o` would hold, its sum and largest magnitude, and the "
                    + "rows of about 16 to 32 sampled tokens, each checked against a float64 value computed from the "
                    + "input; the result file holds `o_sampled` and the states, with the checksum in its metadata, "
                    + "and the run fails when a sampled row is off by more than the output dtype's tolerance. "
                    + "That file is one small file whatever --output-form says.",
            "files", "checksums");
    public static final Setting<Double> SPOT_CHECK_TOLERANCE = Setting.optionalPositive("--spot-check-tolerance",
            "spark.lightning.spotCheckTolerance", "(by dtype)",
            "Lightning only. With --output-mode checksums: the largest relative error of a sampled o row against float64 "
                    + "(max |o - ref| / max |ref| per head) before the run fails. By default 1e-2 for BF16 o, 1.2e-3 "
                    + "for F16, 1e-4 for F32. Refused without --output-mode checksums (files runs make no spot checks).");
    public static final Setting<Boolean> OVERWRITE = Setting.flagSwitch("--overwrite", "spark.lightning.overwrite",
            "Let this run replace the files it produces (and the run report) where the output directory already "
                    + "holds them, and where a run writing files meets an earlier table run's tables there (o/, "
                    + "final_states/, states/, each holding only a table write's files), those too; they are replaced "
                    + "at the commit, after all compute. Other files are never touched.")
            .commandLineOnly("choose the writer's mode, e.g. r.o().write().mode(\"overwrite\")");
    public static final Setting<Boolean> RESUME = Setting.flagSwitch("--resume", "spark.lightning.resume",
            "Continue an interrupted or failed run into the same --output with the same input and settings: "
                    + "work it finished and that still verifies (size and CRC32C) is kept, the rest is computed; "
                    + "the result is byte-identical to an uninterrupted run. Without it, a new run discards the "
                    + "staging of earlier runs. Not for table runs, which keep no finished work: rerun them.")
            .commandLineOnly("nothing is kept between calls: call compute again");
    public static final Setting<Double> LOCK_STALE_SECONDS = Setting.real("--lock-stale-seconds",
            "spark.lightning.lockStaleSeconds", 120.0, true,
            "A run holds `<output>/_lightning.lock` and refreshes it every few seconds. On the holder's host a "
                    + "lock is stale once its process is gone (a live process keeps it, even stopped); from another "
                    + "host, once it was not refreshed for this long (or the holder's own setting, if longer), by "
                    + "this host's clock against the time the holder's host set: hosts sharing an output need clocks "
                    + "that agree to well within it. The next run takes a stale lock over.")
            .commandLineOnly("no output directory is locked");
    public static final Setting<Boolean> SKIP_NONFINITE = Setting.flagSwitch("--skip-nonfinite",
            "spark.lightning.skipNonFinite", "Skip sequences whose inputs hold NaN or Inf, or whose outputs overflow "
                    + "to NaN or Inf, and list them in the run report, instead of failing the job.");
    public static final Setting<Boolean> SKIP_INVALID = Setting.flagSwitch("--skip-invalid", "spark.lightning.skipInvalid",
            "Process the valid files of the input and list the rejected ones in the run report, instead of failing "
                    + "before any output is written.");
    public static final Setting<Double> PROGRESS_SECONDS = Setting.real("--progress-seconds",
            "spark.lightning.progressSeconds", 5.0, true, "Seconds between progress lines.")
            .commandLineOnly("it prints no progress lines; the Spark UI shows its jobs");

    static final List<Setting<?>> ALL = List.of(INPUT, INPUT_FORMAT, SEQUENCES, SYNTHETIC, OUTPUT, OUTPUT_FORMAT,
            INITIAL_STATES, RECURSIVE, ATTENTION, PARTITION_TOKENS,
            CHUNK_SIZE, SCALE, WINDOW, WRITE_LSE, FEATURE_MAP, NORMALIZE, NORMALIZE_EPS, STATE_EVERY, BACKEND, MASTER, DEFAULT_SLOPES, LAYER, LAYERS, OUTPUT_DTYPE, OUTPUT_FORM, OUTPUT_MODE, SPOT_CHECK_TOLERANCE, WINDOW_BYTES, GPU_WINDOW_BYTES, READ_AHEAD, GPU_RESOURCE,
            GPU_MEMORY, GPU_OOM, OVERWRITE, RESUME, LOCK_STALE_SECONDS, SKIP_INVALID, SKIP_NONFINITE, PROGRESS_SECONDS);

    /**
     * The options that change the bytes a run writes: a --resume must share them with the run it
     * continues. (The others choose where and how visibly it runs.)
     */
    public static final List<Setting<?>> RESULT_AFFECTING = List.of(INPUT_FORMAT, SEQUENCES, OUTPUT_FORMAT, INITIAL_STATES,
            RECURSIVE, ATTENTION, PARTITION_TOKENS, CHUNK_SIZE,
            SCALE, WINDOW, WRITE_LSE, FEATURE_MAP, NORMALIZE, NORMALIZE_EPS, STATE_EVERY, BACKEND,
            DEFAULT_SLOPES, LAYER, LAYERS, OUTPUT_DTYPE, OUTPUT_FORM, OUTPUT_MODE, SPOT_CHECK_TOLERANCE, WINDOW_BYTES, GPU_WINDOW_BYTES, READ_AHEAD, GPU_MEMORY, GPU_OOM,
            SKIP_INVALID, SKIP_NONFINITE);

    /** Options of lightning attention only: a softmax run refuses them when set to anything but their default. */
    static final List<Setting<?>> LIGHTNING_ONLY = List.of(FEATURE_MAP, NORMALIZE, NORMALIZE_EPS, STATE_EVERY,
            DEFAULT_SLOPES, LAYER, LAYERS, READ_AHEAD);

    /** Inputs and outputs built for lightning attention only (the generator's slopes, PieceWork's sink): softmax refuses them. */
    static final List<Setting<?>> LIGHTNING_ONLY_IO = List.of(SYNTHETIC, OUTPUT_MODE, SPOT_CHECK_TOLERANCE,
            INITIAL_STATES);

    /** Options of softmax attention only: a lightning run refuses them when set to anything but their default. */
    static final List<Setting<?>> SOFTMAX_ONLY = List.of(WINDOW, WRITE_LSE);

    static Setting<?> byFlag(String flag) {
        for (Setting<?> s : ALL) {
            if (s.flag.equals(flag)) {
                return s;
            }
        }
        return null;
    }

    /** The option of Spark configuration key {@code key} (spark.master: --master), or null. */
    static Setting<?> byKey(String key) {
        for (Setting<?> s : ALL) {
            if (s.key.equals(key)) {
                return s;
            }
        }
        return null;
    }

    /**
     * The option that {@code name} means, written another way: its key without (or with part of) the
     * {@code spark.} prefix, its flag without the dashes, or either in another case or with other
     * separators (spark.lightning.partition-tokens, lightning.partitionTokens, partition_tokens); null if none.
     */
    static Setting<?> byLooseName(String name) {
        String n = loose(name);
        for (Setting<?> s : ALL) {
            String key = s.key.replaceFirst("^spark\\.", "");
            for (String form : List.of(s.key, key, key.replaceFirst("^lightning\\.", ""), s.flag,
                    "spark.lightning." + s.flag)) {
                if (loose(form).equals(n)) {
                    return s;
                }
            }
        }
        return null;
    }

    /**
     * The option a misspelt flag {@code flag} nearly is: written another way ({@link #byLooseName}), or at most two
     * edits from one flag, nearer than to any other (--partiton-tokens, --skip-nonfinit); null if none.
     */
    static Setting<?> nearFlag(String flag) {
        Setting<?> loose = byLooseName(flag);
        if (loose != null) {
            return loose;
        }
        Setting<?> best = null;
        int bestDistance = 3;
        boolean tie = false;
        for (Setting<?> s : ALL) {
            int d = dev.lightning.attention.tensor.ErrorText.editDistance(loose(flag), loose(s.flag));
            if (d < bestDistance) {
                best = s;
                bestDistance = d;
                tie = false;
            } else if (d == bestDistance) {
                tie = true;
            }
        }
        return tie ? null : best;
    }

    private static String loose(String name) {
        return name.toLowerCase(java.util.Locale.ROOT).replaceAll("[^a-z0-9]", "");
    }

    /** The options table, in Markdown, as the README holds it. */
    public static String markdownTable() {
        StringBuilder b = new StringBuilder();
        b.append("| flag | `--conf` / spark-defaults key | type | default | meaning |\n");
        b.append("|---|---|---|---|---|\n");
        for (Setting<?> s : ALL) {
            b.append("| `").append(s.flag).append(s.isSwitch() ? "" : " " + placeholder(s).replace("|", "\\|"))
                    .append("` | `")
                    .append(s.key).append("` | ").append(s.type.replace("|", "\\|")).append(" | ")
                    .append(s.defaultText).append(" | ").append(doc(s)).append(" |\n");
        }
        return b.toString();
    }

    /** The options as plain text, for {@code --help}. */
    public static String helpText() {
        StringBuilder b = new StringBuilder();
        for (Setting<?> s : ALL) {
            String head = "  " + s.flag + (s.isSwitch() ? "" : " " + placeholder(s));
            b.append(String.format("%-28s %s%n", head, doc(s).replace("`", "")));
            b.append(String.format("%-28s [%s; default %s; key %s]%n", "", s.type, s.defaultText, s.key));
        }
        return b.toString();
    }

    /** An option's documentation, with the mark of one the Dataset API refuses. */
    private static String doc(Setting<?> s) {
        return s.doc + (s.commandLineOnly == null ? "" : " Command line only (`LightningTables.compute` refuses it).");
    }

    private static String placeholder(Setting<?> s) {
        switch (s.type) {
            case "path":
                return s == INPUT || s == SEQUENCES ? "PATHS" : "DIR";
            case "integer":
                return "N";
            case "number":
                return "X";
            case "size":
                return "BYTES";
            case "string":
                return s == MASTER ? "URL" : s == SYNTHETIC ? "T,H,Dk,Dv,dtype,seed" : "NAME";
            default:
                return s.type;
        }
    }
}
