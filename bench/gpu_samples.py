"""nvidia-smi's samples of the GPU while DeviceBench times, and the GPU's state in a timing's interval.

bench/device-env.sh's smi_start (bin/gpu-check's smi.log) samples `nvidia-smi --query-gpu=timestamp,clocks.sm,
POWER,temperature.gpu,power.limit --format=csv,noheader,nounits -lms 25` (POWER: power.draw.instant where the
driver has it, else power.draw); DeviceBench's timed lines end in "wall_ms=FROM-TO" (epoch ms, and
"plain_wall_ms=..." for the plain run a variant is compared with). Both clocks are the same
machine's, so nvidia-smi's local timestamps are read as local time.
"""
import datetime
import re
import statistics

MIN_SAMPLES = 5


def read(text):
    """[(epoch ms, SM clock MHz, power W, temperature C)] of an smi log; rows that are not samples are skipped."""
    samples = []
    for row in text.splitlines():
        f = [x.strip() for x in row.split(",")]
        try:
            t = datetime.datetime.strptime(f[0], "%Y/%m/%d %H:%M:%S.%f").timestamp() * 1e3
            samples.append((t, float(f[1]), float(f[2]), float(f[3])))
        except (ValueError, IndexError):
            continue  # "[N/A]", an error line
    return samples


def interval(line, key="wall_ms"):
    """(from, to) epoch ms of a RESULT line's key, or None."""
    w = re.search(r"(?:^| )" + key + r"=(\d+)-(\d+)", line)
    return (int(w[1]), int(w[2])) if w else None


def state(samples, line, key="wall_ms"):
    """(median clock MHz, power W, temperature C, samples) in the line's interval, or None with fewer than
    MIN_SAMPLES samples in it."""
    span = interval(line, key)
    inside = [s for s in samples if span and span[0] <= s[0] <= span[1]]
    if len(inside) < MIN_SAMPLES:
        return None
    return tuple(statistics.median(s[i] for s in inside) for i in (1, 2, 3)) + (len(inside),)


def describe(st):
    return f"{st[0]:.0f} MHz, {st[1]:.0f} W, {st[2]:.0f} C, {st[3]} samples" if st else None


def strip(line):
    """The line without its intervals."""
    return re.sub(r" (plain_)?wall_ms=\d+-\d+", "", line)
