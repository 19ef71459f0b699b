#!/usr/bin/env python3
"""The plots of BENCHMARKS.md, drawn with matplotlib from the committed logs and CSVs of bench/results.
Run it through bench/plots.sh, which provides matplotlib.

    plots.py RESULTS_DIR PLOTS_DIR        writes the PNGs (each names its source file in its footer)
    plots.py --sweep-table SWEEP_LOG      prints the sweep's table for BENCHMARKS.md (fla at its best over the
                                          sweep logs of that day: fla tunes anew in every process)

Sources (the newest file of each pattern, by the date its name starts with):
  *-h200-sweep.log     the sequence-length sweep: DeviceBench (ours), bench/sweep.py (fla, vLLM); where
                       there is none yet, the newest *-h200-*.log with both ours' and fla's timings (bin/gpu-check
                       with FLA_PATH), and vLLM's figures from *-h200-vllm-minimax.csv (another run)
  *-h200-gpu-job.log   bench/gpu-job.sh: disk, pinned copies, kernels, forward() on host tensors, jobs
  *-h200-bigjob-r2-results.log, *-h200-dirjob-results.log   bench/job-device.sh's summaries at the issue's
                       head count (H = 64): each cold job beside the disk, pinned-link and kernel bounds of its run
  *-cpu-vs-peer.csv    the CPU job against the numpy peer, step by step (bench/cpu-vs-peer.sh)
  *-scale-*.log        bench/scale-100m.sh: spot-check errors of long CPU-backend runs (all of them)
  *pieces*.csv         time per token against piece count (issue 16; all rows of all such files)
A figure whose source is missing is left out with a note; nothing is drawn from numbers written here.
"""
import csv
import glob
import os
import re
import sys
import textwrap

# Lines DeviceBench, bench/fla_bench.py and bench/sweep.py print (bench/table.py and clock_share.py read TIMING,
# GROUPED and a line's further fields, field(), from here too).
TIMING = re.compile(r"RESULT (ours-two-pass|ours|fla|vllm) T=(\d+) H=(\d+) D=(\d+) ms=([\d.]+) tokens_per_s=([\d.e+-]+)")
# fla in calls of fewer heads, where one call of the whole shape gives a wrong output (bench/fla_bench.py's grouped)
GROUPED = re.compile(r"RESULT (fla-grouped) T=(\d+) H=(\d+) D=(\d+) groups=\S+ ms=([\d.]+) tokens_per_s=([\d.e+-]+)")
COPY = re.compile(r"RESULT copy ([\d.]+) TB/s")
# our check, plain attention only (a spec with a feature map or normalization prints more fields)
CHECK = re.compile(r"RESULT check T=(\d+) AttentionSpec\[H=(\d+), Dk=(\d+), Dv=(\d+), scale=[^,\]]+, chunk=\d+\] "
                   r"bf16 output relative error ([\d.e+-]+)")
FLACHECK = re.compile(r"RESULT flacheck T=(\d+) H=(\d+) D=(\d+) bf16 output relative error ([\d.e+-]+), "
                      r"final state ([\d.e+-]+)")
ERROR = re.compile(r"RESULT error (fla|vllm) T=(\d+) H=(\d+) D=(\d+) output_rel=([\d.e+-]+) state_rel=([\d.e+-]+)")
SKIP = re.compile(r"RESULT skip (\w+) T=(\d+) H=(\d+) D=(\d+): (.*)")
# the check of fla's timed calls themselves (bench/fla_bench.py's big_check: heads 0 and H - 1); bench/table.py reads
# it and WRONG from here
BIGCHECK = re.compile(r"RESULT bigcheck (fla) T=(\d+) H=(\d+) D=(\d+) heads=\S+ output_rel=([\d.e+-]+) "
                      r"state_rel=([\d.e+-]+)")
# a timed call whose output is further from float64 than this is wrong, not slow or fast (bf16 outputs: 2e-3 to 3e-3)
WRONG = 1e-2


def field(line, key):
    """The value of a RESULT line's KEY=VALUE field (copy_share, segments, kernels, plan, groups...), or None."""
    m = re.search(r"(?:^| )" + re.escape(key) + r"=(\S+)", line)
    return m[1] if m else None

LABELS = {"ours": "ours (as the backend runs it)", "ours-two-pass": "ours, two-pass path forced",
          "fla": "fla chunk_simple_gla (BF16)", "vllm": "vLLM MiniMax lightning_attention (float32 in and out)",
          "fla-grouped": "fla in calls of fewer heads, each within 2^31 elements (right output)"}
COLORS = {"ours": "#1f77b4", "ours-two-pass": "#6baed6", "fla": "#d62728", "vllm": "#2ca02c", "ceiling": "#555555",
          "fla-grouped": "#ff9896"}


def newest(results, pattern):
    files = sorted(glob.glob(os.path.join(results, pattern)))
    return files[-1] if files else None


def same_day_sweeps(path):
    """The other sweep logs of path's day (bench/results/DATE-h200-sweep*.log): fla's timings are taken at their best
    over all of them, since fla tunes anew in every process and a few tunings do not always find its best."""
    day = os.path.basename(path)[:10]
    return [p for p in sorted(glob.glob(os.path.join(os.path.dirname(path), day + "-h200-sweep*.log"))) if p != path]


def with_fla_best(timings, others):
    """timings with each fla and fla-grouped shape at its fastest over the other logs too (v[2]: timings counted)."""
    for other in others:
        for key, v in parse_sweep(other)[0].items():
            if key[0] in ("fla", "fla-grouped") and key in timings:
                mine = timings[key]
                best = v if v[0] < mine[0] else mine
                timings[key] = (best[0], best[1], mine[2] + v[2])
    return timings


def wrong_outputs(path):
    """(impl, H, D, T) -> output error, for the timed calls bench/sweep.py found wrong (above WRONG)."""
    wrong = {}
    for line in open(path):
        if (m := BIGCHECK.match(line)) and float(m[5]) > WRONG:
            wrong[(m[1], int(m[3]), int(m[4]), int(m[2]))] = float(m[5])
    return wrong


def parse_sweep(path):
    timings, checks, errors, skips, copy = {}, {}, {}, [], None
    for line in open(path):
        if m := TIMING.match(line) or GROUPED.match(line):
            # a shape timed in several processes (bench/sweep.sh's FLA_TUNINGS: fla tunes anew in each): the
            # fastest, and how many there were (v[2])
            key, ms = (m[1], int(m[3]), int(m[4]), int(m[2])), float(m[5])
            seen = timings.get(key)
            n = seen[2] + 1 if seen else 1
            timings[key] = (ms, float(m[6]), n) if not seen or ms < seen[0] else (seen[0], seen[1], n)
        elif m := COPY.match(line):
            copy = float(m[1]) * 1e12
        elif m := CHECK.match(line):
            checks[(int(m[2]), int(m[3]), int(m[4]), int(m[1]))] = float(m[5])
        elif m := ERROR.match(line):
            errors[(m[1], int(m[3]), int(m[4]), int(m[2]))] = (float(m[5]), float(m[6]))
        elif m := FLACHECK.match(line):
            errors[("fla", int(m[2]), int(m[3]), int(m[1]))] = (float(m[4]), float(m[5]))
        elif m := SKIP.match(line):
            skips.append((m[1], int(m[2]), int(m[3]), int(m[4]), m[5].strip()))
    return timings, checks, errors, skips, copy


def footer(fig, *sources):
    text = "data in bench/results: " + ", ".join(os.path.basename(s) for s in sources)
    fig.text(0.01, 0.005, textwrap.fill(text, int(fig.get_figwidth() * 16)), fontsize=7, color="#666666", ha="left",
             va="bottom")


def save(fig, out, name):
    path = os.path.join(out, name)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    print("wrote", path)


def short(t):
    return f"{t / 1024:g}K" if t < 1 << 20 else f"{t / (1 << 20):g}M"


def length_axis(ax, ts):
    ax.set_xscale("log", base=2)
    ax.set_xticks(ts)
    ax.set_xticklabels([short(t) for t in ts])
    ax.minorticks_off()
    ax.set_xlabel("sequence length T (tokens)")


def gpu_log(results):
    """The sweep log, or else the newest H200 log with ours' and fla's timings."""
    sweep = newest(results, "*-h200-sweep.log")
    if sweep:
        return sweep, True
    for path in sorted(glob.glob(os.path.join(results, "*-h200-*.log")), reverse=True):
        text = open(path).read()
        if "RESULT fla " in text and "RESULT ours " in text:
            return path, False
    return None, False


def throughput(plt, path, out, vllm_csv=None, others=()):
    timings, _, _, skips, copy = parse_sweep(path)
    timings = with_fla_best(timings, others)
    sources = [path, *others]
    other_run = set()
    if vllm_csv and not any(k[0] == "vllm" for k in timings):
        # vLLM's figures from another run: a CSV of an earlier tool, or an earlier sweep's log
        sources.append(vllm_csv)
        if vllm_csv.endswith(".csv"):
            for r in rows(vllm_csv):
                t = int(r["T"])
                ms = float(r["vllm_ms"])
                timings[("vllm", int(r["H"]), int(r["D"]), t)] = (ms, t / (ms / 1e3), 1)
        else:
            timings.update({k: v for k, v in parse_sweep(vllm_csv)[0].items() if k[0] == "vllm"})
        other_run |= {("vllm", k[1]) for k in timings if k[0] == "vllm"}
    heads = sorted({h for (_, h, _, _) in timings}, reverse=True)
    if not heads:
        print("no timings in", path)
        return
    wrong = wrong_outputs(path)
    d_of = {hh: dd for (_, hh, dd, _) in timings}
    fig, axes = plt.subplots(1, len(heads), figsize=(6 * len(heads), 4.8), squeeze=False)
    for ax, h in zip(axes[0], heads):
        ts_all = set()
        for impl in ("ours", "ours-two-pass", "fla", "fla-grouped", "vllm"):
            pts = sorted((t, v[1]) for (i, hh, d, t), v in timings.items() if i == impl and hh == h)
            if not pts:
                continue
            ts_all |= {t for t, _ in pts}
            runs = max(v[2] for (i, hh, _, _), v in timings.items() if i == impl and hh == h)
            other = " [another run: " + os.path.basename(vllm_csv) + "]" if (impl, h) in other_run else ""
            label = LABELS[impl] + other + (f", best of {runs} timings (tunings) that day" if runs > 1 else "")
            ax.plot([t for t, _ in pts], [r for _, r in pts], marker="D" if impl == "fla-grouped" else "o",
                    color=COLORS[impl], linestyle="none" if impl == "fla-grouped" else "--" if impl == "ours-two-pass"
                    else "-", label=label)
            for t, r in pts:  # a call whose output was wrong: crossed out, its error beside it
                if (err := wrong.get((impl, h, d_of[h], t))) is not None:
                    ax.plot([t], [r], marker="x", markersize=12, color="black", zorder=4)
                    ax.annotate(f"wrong output\n(error {err:.2f})", (t, r), textcoords="offset points",
                                xytext=(-22, -24), ha="center", fontsize=7)
        d = d_of[h]
        if copy:
            # q, k, v read and o written once, BF16: the least traffic a forward can have
            ax.axhline(copy / (4 * h * d * 2), color=COLORS["ceiling"], linestyle=":",
                       label=f"copy bandwidth ({copy / 1e12:.2f} TB/s) over the bytes of q, k, v and o (BF16)")
        notes = [f"{impl} not run at T = {short(t)}: {why.split(',')[0]}" for impl, t, hh, dd, why in skips if hh == h]
        if notes:
            ax.annotate("\n".join(notes), xy=(0.02, 0.55), xycoords="axes fraction", fontsize=7)
        ours = {t: v[0] for (i, hh, _, t), v in timings.items() if i == "ours" and hh == h}
        fla = {t: v[0] for (i, hh, _, t), v in timings.items() if i == "fla" and hh == h}
        grouped = {t: v[0] for (i, hh, _, t), v in timings.items() if i == "fla-grouped" and hh == h}
        for t in sorted(set(ours) & set(fla)):
            # against fla's call, or where its output was wrong, against fla's calls of fewer heads (if timed)
            ref = grouped.get(t) if ("fla", h, d, t) in wrong else fla[t]
            if ref is not None:
                ax.annotate(f"{ref / ours[t]:.1f}x", (t, timings[("ours", h, d, t)][1]), textcoords="offset points",
                            xytext=(0, 7), ha="center", fontsize=7, color=COLORS["ours"])
        length_axis(ax, sorted(ts_all))
        ax.set_yscale("log")
        ax.set_ylabel("tokens per second")
        ax.set_title(f"H = {h}, Dk = Dv = {d}, one sequence on one H200 (labels: ours against fla)", fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
    handles = {}
    for ax in axes[0]:
        for hd, lb in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lb if "copy bandwidth" not in lb else "copy", (hd, lb))
    fig.legend([v[0] for v in handles.values()], [v[1] for v in handles.values()], loc="lower center", ncol=2,
               fontsize=8, bbox_to_anchor=(0.5, 0.03))
    fig.suptitle("Forward throughput against sequence length, data on the device", fontsize=11)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    footer(fig, *sources)
    save(fig, out, "throughput-vs-length.png")
    plt.close(fig)


def errors(plt, sweep, scale_logs, out, vllm_from=None):
    fig, ax = plt.subplots(figsize=(8, 6.4))
    sources = []
    ts_all = set()
    if sweep:
        _, checks, errs, _, _ = parse_sweep(sweep)
        sources.append(sweep)
        other = ""
        if vllm_from and vllm_from.endswith(".log") and not any(k[0] == "vllm" for k in errs):
            # vLLM's errors from the earlier sweep its timings come from (see throughput)
            errs.update({k: v for k, v in parse_sweep(vllm_from)[2].items() if k[0] == "vllm"})
            sources.append(vllm_from)
            other = " [another run: " + os.path.basename(vllm_from) + "]"
        ours = sorted((t, e, h, dk, dv) for (h, dk, dv, t), e in checks.items())
        if ours:
            line = [(t, e) for t, e, h, dk, dv in ours if (h, dk, dv) == (8, 128, 128)]
            if line:
                ax.plot(*zip(*line), marker="o", color=COLORS["ours"],
                        label="ours, GPU, H = 8, D = 128 (worst of heads 0 and H - 1); points: other shapes")
            named = set()
            for t, e, h, dk, dv in ours:
                if (h, dk, dv) != (8, 128, 128):
                    ax.plot([t], [e], marker="D", color=COLORS["ours"], linestyle="none")
                    if (h, dk, dv) not in named:  # the shape named once, at its shortest T
                        named.add((h, dk, dv))
                        ax.annotate(f"H={h}, Dk={dk}, Dv={dv}", (t, e), textcoords="offset points", xytext=(4, -12),
                                    fontsize=7, color=COLORS["ours"])
            ts_all |= {o[0] for o in ours}
        for impl in ("fla", "vllm"):
            pts = sorted((t, e[0]) for (i, h, d, t), e in errs.items() if i == impl)
            if pts:
                shapes = sorted({(h, d) for (i, h, d, t) in errs if i == impl})
                ax.plot(*zip(*pts), marker="s", color=COLORS[impl], label=LABELS[impl].split(" (")[0] + ", GPU, "
                        + ", ".join(f"H = {h}, D = {d}" for h, d in shapes) + (other if impl == "vllm" else ""))
                ts_all |= {t for t, _ in pts}
                states = sorted((t, e[1]) for (i, h, d, t), e in errs.items() if i == impl)
                ax.plot(*zip(*states), marker="s", color=COLORS[impl], linestyle=":", alpha=0.6,
                        label=LABELS[impl].split(" (")[0] + ": final state")
    spot = []
    for path in scale_logs:
        tokens = None
        for line in open(path):
            if m := re.match(r"\| tokens \| ([\d,]+) \|", line):
                tokens = int(m[1].replace(",", ""))
            elif (m := re.match(r"\| spot checks: rows, max rel\. error \(tolerance\) \| (\d+) checked, ([\d.e+-]+)",
                                line)) and tokens:
                spot.append((tokens, float(m[2])))
        sources.append(path)
    if spot:
        ax.scatter(*zip(*sorted(spot)), marker="^", color="#9467bd", zorder=3,
                   label="CPU backend job, BF16, H = 2, D = 64 (worst of 30 sampled rows)")
        ts_all |= {t for t, _ in spot}
    if not ts_all:
        print("no errors found")
        plt.close(fig)
        return
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T (tokens)")
    ax.set_ylabel("relative error against float64")
    ax.set_title("Output error against sequence length (BF16 inputs, MiniMax slopes)", fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=1, bbox_to_anchor=(0.5, 0.06))
    fig.tight_layout(rect=(0, 0.3, 1, 1))
    footer(fig, *sources)
    save(fig, out, "error-vs-length.png")
    plt.close(fig)


def host_path(plt, path, out):
    """Everything in tokens/s at the job's shape (H = 8, D = 128, BF16): the ceilings turned into tokens/s
    by the bytes each must carry per token."""
    text = open(path).read()

    def one(pattern):
        m = re.search(pattern, text)
        return float(m[1]) if m else None

    disk = one(r"RESULT disk_read GB/s=([\d.]+)")
    h2d, d2h = one(r"RESULT pinned_h2d GB/s=([\d.]+)"), one(r"RESULT pinned_d2h GB/s=([\d.]+)")
    host = re.search(r"RESULT host T=\d+ H=(\d+) D=(\d+) .*pipelined_GB_per_s=([\d.]+)", text)
    kernel = re.search(r"RESULT ours T=(\d+) H=(\d+) D=(\d+) ms=[\d.]+ tokens_per_s=([\d.e+-]+)", text)
    jobs = re.findall(r"RESULT job (\S+) status=0 .*?tokens_per_s=([\d.e+-]+) backends=gpu", text)
    h, d = (int(host[1]), int(host[2])) if host else (8, 128)
    token = h * d * 2  # bytes of one token's q (or k, v, o) in BF16
    bars = []  # (label, tokens/s, kind)
    if kernel:
        bars.append((f"kernels alone, data on the device (T = {int(kernel[1]):,})", float(kernel[4]), "measured"))
    if h2d and d2h:
        link = min(h2d, d2h) * 1e9
        bars.append((f"pinned copy ceiling: {min(h2d, d2h):.1f} GB/s over q, k, v in and o out", link / (4 * token),
                     "ceiling"))
    if host:
        bars.append((f"forward() on host tensors: {float(host[3]):.2f} GB/s (copies in the timing)",
                     float(host[3]) * 1e9 / (4 * token), "measured"))
    if disk:
        bars.append((f"disk ceiling: {disk:.2f} GB/s over a split sequence's reads (k, v, then q, k, v)",
                     disk * 1e9 / (5 * token), "ceiling"))
    names = {"long-local": "job: 1M tokens in 8 pieces, local[*]", "dir-local": "job: 16 sequences of 64K, local[*]",
             "long-standalone": "job: 1M tokens, standalone, one worker",
             "long-shared": "job: 1M tokens, standalone, two workers on GPU 0"}
    for name, rate in jobs:
        bars.append((names.get(name, "job: " + name), float(rate), "job"))
    if not bars:
        print("nothing to draw from", path)
        return
    colors = {"measured": COLORS["ours"], "ceiling": "#bbbbbb", "job": "#ff7f0e"}
    fig, ax = plt.subplots(figsize=(11, 0.45 * len(bars) + 1.8))
    ys = range(len(bars))[::-1]
    ax.barh(list(ys), [b[1] for b in bars], color=[colors[b[2]] for b in bars])
    for y, (label, rate, _) in zip(ys, bars):
        ax.text(rate * 1.08, y, f"{rate / 1e6:.3g} M" if rate >= 1e6 else f"{rate / 1e3:.3g} K", va="center",
                fontsize=8)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([b[0] for b in bars], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(b[1] for b in bars) * 8)
    ax.set_xlabel(f"tokens per second (H = {h}, D = {d}, BF16); a ceiling's GB/s over the bytes it carries per token")
    ax.set_title("Host path and job on the H200 against the copy and disk ceilings (grey)", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    footer(fig, path)
    save(fig, out, "host-path-and-job.png")
    plt.close(fig)


def rows(path):
    return list(csv.DictReader(line for line in open(path) if not line.startswith("#")))


def cpu_peer(plt, path, out):
    table = rows(path)
    runs = [c for c in table[0] if c != "step"]
    fig, ax = plt.subplots(figsize=(9, 3.4))
    left = [0.0] * len(runs)
    cmap = plt.get_cmap("tab10")
    for i, r in enumerate(table):
        widths = [float(r[c]) if r[c] else 0.0 for c in runs]
        ax.barh(range(len(runs)), widths, left=left, color=cmap(i % 10), label=r["step"], edgecolor="white")
        left = [a + b for a, b in zip(left, widths)]
    for y, total in enumerate(left):
        ax.text(total + 0.1, y, f"{total:.2f} s", va="center", fontsize=8)
    ax.set_yticks(range(len(runs)))
    ax.set_yticklabels([c.replace("_", " ") for c in runs])
    ax.invert_yaxis()
    ax.set_xlim(0, max(left) * 1.15)
    # the CSVs of bench/cpu-vs-peer.sh hold CPU seconds (their first line says so), older ones wall seconds
    with open(path) as f:
        unit = "CPU seconds" if "CPU seconds" in f.readline() else "seconds"
    ax.set_xlabel(f"{unit}, whole process (T = 524,288, H = 8, Dk = Dv = 64, F32, 2-core VM)")
    ax.set_title("CPU backend: the whole job against a numpy peer, step by step", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=3)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    footer(fig, path)
    save(fig, out, "cpu-vs-numpy-peer.png")
    plt.close(fig)


JOB_ROW = re.compile(r"^\| (\S+) \| (\d+)x(\d+)x(\d+) \| (\d+) \| ([\d.e+-]+) \| ([\d.e+-]+) \| [\d.]+ \| ([^|]+) \| "
                     r"([^|]+) \| ([\d.]+) \(([\d.]+)\) \|$")


def job_bounds(plt, paths, out):
    """The cold jobs of bench/job-device.sh's summary tables (tokens/s, Spark start included) beside the three
    bounds measured in the same run, one row a job, tokens/s on a log scale."""
    jobs = []  # (label, job tokens/s, {bound: tokens/s}, share of the slowest)
    for path in paths:
        for line in open(path):
            m = JOB_ROW.match(line.strip())
            if not m or "cold" not in m[1]:
                continue
            t, h, d, pieces = int(m[2]), int(m[3]), int(m[4]), int(m[5])
            bounds = {}
            for part in m[8].split(";"):
                name, _, value = part.strip().rpartition(" ")
                if name != "disk (both passes)":
                    bounds[name] = float(value)
            what = f"T = {t:,} in {pieces} pieces" if pieces > 1 else f"T = {t:,} a sequence, a piece each"
            jobs.append((f"{m[1]}: {what}\nH = {h}, D = {d}; {os.path.basename(path)}", float(m[6]), bounds,
                         float(m[10])))
    if not jobs:
        print("no job summary rows: job-vs-bounds plot left out")
        return
    colors = {"disk (read once)": "#8c564b", "pinned": "#9467bd", "kernels": "#555555"}
    fig, ax = plt.subplots(figsize=(11, 1.4 + 1.0 * len(jobs)))
    for i, (label, rate, bounds, share) in enumerate(jobs):
        y = len(jobs) - 1 - i
        ax.barh(y, rate, height=0.5, color="#1f77b4", label="the job, cold page cache" if i == 0 else None)
        ax.annotate(f"{rate / 1e3:.1f} K tokens/s, {share:.2f} of the slowest bound", (rate, y),
                    textcoords="offset points", xytext=(4, -3), fontsize=7)
        for name, v in bounds.items():
            ax.plot([v], [y], marker="|", markersize=22, mew=2.5, color=colors.get(name, "#000000"),
                    label=name if i == 0 else None)
    ax.set_yticks(range(len(jobs)))
    ax.set_yticklabels([j[0] for j in reversed(jobs)], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlim(1e4, 1e9)  # room on the right for the legend
    ax.set_xlabel("tokens per second (log scale); each bound as measured in the job's own run", fontsize=8)
    ax.set_title("The job on one H200 from its local disk, beside its bounds", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout(rect=(0.015, 0.05, 1, 1))
    footer(fig, *paths)
    save(fig, out, "job-vs-bounds.png")
    plt.close(fig)


def pieces(plt, paths, out):
    series = {}
    for path in paths:
        for r in rows(path):
            series.setdefault(r["label"], []).append((int(r["pieces"]), float(r["seconds"]) / int(r["tokens"]) * 1e6))
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for label, pts in series.items():
        pts.sort()
        line, = ax.plot(*zip(*pts), marker="o", label=label)
        for p, v in pts:
            ax.annotate(f"{v:.2f}", (p, v), textcoords="offset points", xytext=(6, 6), fontsize=7,
                        color=line.get_color())
    ax.set_xscale("log")
    ax.set_ylim(bottom=0, top=max(v for pts in series.values() for _, v in pts) * 1.2)
    ax.set_xlabel("pieces the sequence is split into (log scale)")
    ax.set_ylabel("job seconds per million tokens")
    ax.set_title("Time per token against piece count (CPU backend, 2-core VM)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    footer(fig, *paths)
    save(fig, out, "time-per-token-vs-pieces.png")
    plt.close(fig)


def sweep_table(path, others=()):
    timings, checks, errs, skips, copy = parse_sweep(path)
    timings = with_fla_best(timings, others)
    keys = sorted({(h, d, t) for (_, h, d, t) in timings}, key=lambda k: (-k[0], k[2]))
    wrong = wrong_outputs(path)
    print("| T | H | D | ours ms | two-pass ms | fla ms | vLLM ms | ours tokens/s | fla / ours | vLLM / ours "
          "| q, k, v, o bytes over copy bandwidth (ours) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for h, d, t in keys:
        ours, two, fla, vllm = (timings.get((impl, h, d, t)) for impl in ("ours", "ours-two-pass", "fla", "vllm"))
        cells = [f"{t:,}", str(h), str(d)] + [(f"{v[0]:.3f}" + (f" (best of {v[2]})" if v[2] > 1 else "")) if v else "-"
                                              for v in (ours, two, fla, vllm)]
        cells.append(f"{ours[1]:.3g}" if ours else "-")
        if ("fla", h, d, t) in wrong:
            cells[5] += f" (output wrong: error {wrong[('fla', h, d, t)]:.2f})"
            g = timings.get(("fla-grouped", h, d, t))
            if g and ours:
                cells[5] += f"; in calls of fewer heads {g[0]:.3f}"
            cells.append(f"{g[0] / ours[0]:.2f}x (fla in calls of fewer heads)" if g and ours else "- (fla wrong)")
        else:
            cells.append(f"{fla[0] / ours[0]:.2f}x" if ours and fla else "-")
        cells.append(f"{vllm[0] / ours[0]:.1f}x" if ours and vllm else "-")
        cells.append(f"{4 * t * h * d * 2 / (ours[0] / 1e3) / copy:.2f}" if ours and copy else "-")
        print("| " + " | ".join(cells) + " |")
    print()
    print("| T | ours (H = 8, heads 0 and 7) | fla output | fla state | vLLM output | vLLM state |")
    print("|---|---|---|---|---|---|")
    for t in sorted({t for (_, _, _, t) in errs} | {t for (h, dk, dv, t) in checks if h == 8 and dk == dv == 128}):
        o = checks.get((8, 128, 128, t))
        f, v = errs.get(("fla", 8, 128, t)), errs.get(("vllm", 8, 128, t))
        e = lambda x: f"{x:.2e}" if x is not None else "-"  # noqa: E731
        print(f"| {t:,} | {e(o)} | {e(f and f[0])} | {e(f and f[1])} | {e(v and v[0])} | {e(v and v[1])} |")
    for line in open(path):
        if line.startswith("RESULT bigcheck fla-grouped "):
            print("\n" + line.strip()[len("RESULT "):])
    big = [m for line in open(path) if (m := BIGCHECK.match(line))]
    if big:
        print()
        print("| T | H | fla's timed call, output error (heads 0, H - 1) | its final state |")
        print("|---|---|---|---|")
        for m in sorted(big, key=lambda m: (-int(m[3]), int(m[2]))):
            flag = " (wrong)" if float(m[5]) > WRONG else ""
            print(f"| {int(m[2]):,} | {m[3]} | {float(m[5]):.2e}{flag} | {float(m[6]):.2e} |")
    checked = sorted((k, e) for k, e in checks.items() if k[:3] != (8, 128, 128))
    for (h, dk, dv, t), e in checked:
        print(f"\nours at T = {t:,}, H = {h}, Dk = {dk}, Dv = {dv}: output error {e:.2e} (heads 0 and H - 1)")
    for impl, t, h, d, why in skips:
        print(f"\n{impl} not run at T = {t:,}, H = {h}, D = {d}: {why}")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--sweep-table":
        sweep_table(sys.argv[2], same_day_sweeps(sys.argv[2]))
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    results, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    log, is_sweep = gpu_log(results)
    vllm_from = None
    if log:
        vllm_from = newest(results, "*-h200-vllm-minimax.csv")
        if is_sweep:  # an earlier sweep that timed vLLM, where the newest did not
            vllm_from = next((p for p in sorted(glob.glob(os.path.join(results, "*-h200-sweep*.log")), reverse=True)
                              if "RESULT vllm " in open(p).read()), None)
        throughput(plt, log, out, vllm_from, same_day_sweeps(log) if is_sweep else ())
    else:
        print("no H200 log with ours' and fla's timings: throughput plot left out")
    errors(plt, log, sorted(glob.glob(os.path.join(results, "*-scale-*.log"))), out, vllm_from)
    job = newest(results, "*-h200-gpu-job.log")
    if job:
        host_path(plt, job, out)
    job_logs = [p for p in (newest(results, "*-h200-bigjob-r2-results.log"), newest(results, "*-h200-dirjob-results.log")) if p]
    if job_logs:
        job_bounds(plt, job_logs, out)
    peer = newest(results, "*-cpu-vs-peer.csv")
    if peer:
        cpu_peer(plt, peer, out)
    piece_files = sorted(glob.glob(os.path.join(results, "*pieces*.csv")))
    if piece_files:
        pieces(plt, piece_files, out)


if __name__ == "__main__":
    main()
