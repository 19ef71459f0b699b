#!/usr/bin/env python3
"""Start-up and stop cost of bin/lightning under several settings, measured A/B in one session.

    python3 bench/startup-ab.py [--rounds 4] [--tokens 4096] VARIANT...

A VARIANT is NAME=ENV;ARGS: environment assignments and extra job options, e.g.
    'no-cds=LIGHTNING_CDS=off;'  'cds=;'  'cds+host=;--conf spark.driver.host=127.0.0.1'
Each round runs every variant once, in turn (so drifting load hits all alike), on one small F32
input (generated once under /tmp/startup-ab), and takes from each run: the process's CPU time
(user + system, every thread, from the kernel's rusage of the child), the wall clock, the time
from launch to the job's own clock (JVM start), the job's Spark start and the time from the job's
end to the process exit (Spark stop, JVM exit). Prints the median of each per variant, with the
machine's load average: on a shared machine read the CPU-time column, the wall clocks are the
other tenants' as much as ours. BENCHMARKS.md, "CPU: the whole job against a numpy peer".
"""
import datetime, json, os, re, resource, shutil, statistics, subprocess, sys, time

home = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
args = sys.argv[1:]
rounds, tokens = 4, 4096
variants = []
while args:
    a = args.pop(0)
    if a == "--rounds":
        rounds = int(args.pop(0))
    elif a == "--tokens":
        tokens = int(args.pop(0))
    elif "=" in a and ";" in a:
        name, rest = a.split("=", 1)
        env, opts = rest.split(";", 1)
        variants.append((name, dict(e.split("=", 1) for e in env.split() if e), opts.split()))
    else:
        sys.exit(f"startup-ab: expected --rounds N, --tokens N or NAME=ENV;ARGS, got '{a}'")
if not variants:
    sys.exit("startup-ab: no variants given (see the docstring)")

lightning = os.path.join(home, "bin", "lightning")
work = "/tmp/startup-ab"
inp = f"{work}/in-{tokens}"
if not os.path.exists(f"{inp}/seq-00000.safetensors"):
    subprocess.run([lightning, "generate", "--output", inp, "--tokens", str(tokens), "--heads", "2",
                    "--dk", "64", "--dv", "64", "--dtype", "f32"], check=True, stdout=subprocess.DEVNULL)


def epoch(iso):
    return datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*Z$", r"\1+00:00", iso)).timestamp()


def once(env, opts):
    out = f"{work}/out"
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    p = subprocess.run([lightning, "run", "--input", inp, "--output", out, "--backend", "cpu"] + opts,
                       env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t1 = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"startup-ab: the job failed:\n{p.stdout[-3000:]}")
    r = json.load(open(f"{out}/_lightning_report.json"))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": cpu, "wall": t1 - t0, "jvm start": epoch(r["started"]) - t0,
            "spark start": r["sparkStartSeconds"], "stop, exit": t1 - epoch(r["ended"])}


results = {name: [] for name, _, _ in variants}
for name, env, opts in variants:  # one unmeasured run each: an archive made on first use, caches
    once(env, opts)
for _ in range(rounds):
    for name, env, opts in variants:
        results[name].append(once(env, opts))
        print(f"startup-ab: {name}: {results[name][-1]}", file=sys.stderr)

print(f"startup-ab: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cpus, load average "
      f"{os.getloadavg()[0]:.1f}, T = {tokens} (F32, H = 2, D = 64), median of {rounds} rounds")
keys = ["cpu", "wall", "jvm start", "spark start", "stop, exit"]
print("| variant | CPU s (all threads) | wall s | JVM start s | Spark start s | Spark stop, JVM exit s |")
print("|---|---|---|---|---|---|")
for name, _, _ in variants:
    print(f"| {name} | " + " | ".join(f"{statistics.median(r[k] for r in results[name]):.2f}" for k in keys) + " |")
