#!/usr/bin/env bash
# Regenerates the plots of BENCHMARKS.md (bench/plots/*.png) from the logs and CSVs in bench/results:
#   bench/plots.sh
# matplotlib comes from a virtual environment in .venv-plots/ (git-ignored), made and filled with pip the
# first time (or when matplotlib is missing from it). bench/plots.py says which file feeds which plot.
set -euo pipefail
home="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$home/.venv-plots"
if ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  echo "plots: installing matplotlib into $venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.8,<4'
fi
"$venv/bin/python" "$home/bench/plots.py" "$home/bench/results" "$home/bench/plots"
