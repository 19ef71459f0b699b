#!/usr/bin/env python3
"""Instruction counts of kernels in cubins, by opcode, side by side (needs cuobjdump on the PATH).

    bench/sass_ops.py FUNCTION NAME=FILE.cubin [NAME=FILE.cubin ...] [--listing DIR]

One row per opcode (with its modifiers, e.g. HGMMA.64x64x16.F32.BF16) that any of the cubins' FUNCTION
holds, the count in each, then the totals. These are static counts over the whole kernel (every
template instance the entry point branches to), not counts per executed chunk: compare builds of
the same source against each other. --listing DIR writes each FUNCTION's SASS (code lines only) to
DIR/NAME-FUNCTION.sass.
"""
import collections
import re
import subprocess
import sys

LINE = re.compile(r"^\s+/\*[0-9a-f]{4,}\*/\s+(@!?U?P[0-9T]+\s+)?([A-Z][A-Z0-9_.]*)")


def sass(cubin, function):
    return subprocess.run(["cuobjdump", "-sass", "-fun", function, cubin], check=True, capture_output=True,
                          text=True).stdout


def main(argv):
    listing = None
    if "--listing" in argv:
        i = argv.index("--listing")
        listing = argv[i + 1]
        del argv[i:i + 2]
    function, specs = argv[0], [a.split("=", 1) for a in argv[1:]]
    counts = []
    for name, path in specs:
        text = sass(path, function)
        code = [l for l in text.splitlines() if LINE.match(l)]
        if listing:
            with open(f"{listing}/{name}-{function}.sass", "w") as f:
                f.write("\n".join(re.sub(r"\s*/\* 0x[0-9a-f]+ \*/", "", l) for l in code) + "\n")
        counts.append(collections.Counter(LINE.match(l).group(2) for l in code))
    ops = sorted(set().union(*counts), key=lambda op: (-max(c[op] for c in counts), op))
    print(f"{function}: instructions by opcode")
    print(f"{'opcode':40s}" + "".join(f"{n:>12s}" for n, _ in specs))
    for op in ops:
        print(f"{op:40s}" + "".join(f"{c[op]:12d}" for c in counts))
    print(f"{'total':40s}" + "".join(f"{sum(c.values()):12d}" for c in counts))


if __name__ == "__main__":
    main(sys.argv[1:])
