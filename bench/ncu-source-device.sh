#!/usr/bin/env bash
# ncu source counters of the Hopper forward (plain, normalized identity; T = 262,144, H = 64, D = 128, bf16,
# 2 segments) through norm_cost's warm-up round; per-SASS-instruction CSVs tarred to $OUT/source.tar.xz. Carried:
# .device/prof/{norm_cost, base.cubin} (norm_cost.cu's build lines; the cubin with -lineinfo). bench/ncu_lines.py reads the CSVs.
set -uo pipefail
here="${PROF_DIR:-$(pwd)/.device/prof}"
out="${OUT:?}"
cd "$here"
chmod +x norm_cost
w=$(mktemp -d)
timeout 200 ncu --clock-control none -k 'regex:lightning_forward_wg_bf16' --launch-skip 4 --launch-count 2 \
  --section SourceCounters --section WarpStateStats --section SpeedOfLight --import-source yes -o "$w/prof" \
  ./norm_cost --rounds 0 --t 262144 base=base.cubin > "$out/ncu-run.log" 2>&1
echo "ncu rc=$?"; tail -3 "$out/ncu-run.log"
for i in 0 1; do
  ncu -i "$w/prof.ncu-rep" --page source --csv --print-source cuda,sass --launch-skip $i --launch-count 1 > "$w/source-$i.csv" 2>"$w/source-$i.err"
  ncu -i "$w/prof.ncu-rep" --page source --csv --print-source sass --launch-skip $i --launch-count 1 > "$w/sass-$i.csv" 2>>"$w/source-$i.err"
done
ls -la "$w"
tar -C "$w" -cJf "$out/source.tar.xz" $(cd "$w" && ls *.csv *.err)
ls -la "$out"
