#!/usr/bin/env bash
# Build Turnout's sdist and wheel with `python -m build` and write SHA256SUMS beside them.
#
#   scripts/build-dist.sh [OUTDIR]        (default dist/, git-ignored)
#
# The sdist carries the web console's browser libraries (setup.py copies them from
# node_modules, running `npm ci` when needed), and the wheel is built from that sdist, so
# installing either needs no Node.js. A normal build compiles the data plane with mypyc
# (minutes on 2 cores); TURNOUT_COMPILE=0 builds a pure-Python wheel instead. PYTHON
# selects the interpreter that runs `build` (default .venv/bin/python, else python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$(realpath -m "${1:-$root/dist}")"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
if ! "$python" -m build --version >/dev/null 2>&1; then
  echo "build-dist: '$python -m build' is missing; install it: $python -m pip install build" >&2
  exit 2
fi
mkdir -p "$out"
rm -f "$out"/turnout-*.whl "$out"/turnout-*.tar.gz "$out"/SHA256SUMS
"$python" -m build --outdir "$out" "$root"
cd "$out"
sha256sum turnout-*.tar.gz turnout-*.whl > SHA256SUMS
cat SHA256SUMS
