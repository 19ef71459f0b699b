#!/usr/bin/env python3
"""Runs a command and records, for each line it prints, when the line came and how much CPU time
the command's processes had used by then; bench/cpu-vs-peer.sh turns these into a per-step table.

    python3 bench/cpu_clock.py --log FILE --clock FILE.json -- COMMAND [ARGS...]

The command's stdout and stderr go (merged) to --log. The JSON holds the launch and exit times
(epoch seconds), the total CPU time of the command and all its descendants (user + system, from the
kernel's accounting of waited-for children, and each of the two apart), and per line: the time it came and the CPU time used
so far by the command's process tree as /proc shows it (utime + stime of every live descendant,
10 ms ticks). A JVM prints with autoflush, so a line comes when it is written.

Why CPU time: on a shared machine the wall clock counts the time other tenants held the cores;
the CPU time of our own processes does not (it still includes what sharing costs in caches).
"""
import json, os, resource, subprocess, sys, time

TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root):
    """utime + stime (seconds) of root and its live descendants, plus what their waited-for children used."""
    kids = {}
    stats = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()  # after "pid (comm) "
        ppid = int(fields[1])
        kids.setdefault(ppid, []).append(int(pid))
        stats[int(pid)] = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    total, todo = 0, [root]
    while todo:
        p = todo.pop()
        total += stats.get(p, 0)
        todo.extend(kids.get(p, []))
    return total / TICK


def main():
    a = sys.argv[1:]
    if "--" not in a:
        sys.exit("cpu_clock: expected --log FILE --clock FILE -- COMMAND ...")
    opts, cmd = a[:a.index("--")], a[a.index("--") + 1:]
    opt = dict(zip(opts[::2], opts[1::2]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    launch = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines = []
    with open(opt["--log"], "w") as log:
        for line in p.stdout:
            lines.append({"wall": time.time(), "cpu": tree_cpu(p.pid), "line": line.rstrip("\n")})
            log.write(line)
            log.flush()
    rc = p.wait()
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    with open(opt["--clock"], "w") as f:
        json.dump({"launch": launch, "exit": end, "cpu": user + system, "user": user, "system": system, "rc": rc,
                   "lines": lines}, f)
    sys.exit(rc)


if __name__ == "__main__":
    main()
