#!/usr/bin/env bash
# One-shot GPU check: run from anywhere; writes gpu_check.json and gpu_check.log into $OUT
# (default: the current folder). See tools/gpu_check.py.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$PWD}"
python="${PYTHON:-$root/.venv/bin/python}"
cd "$root"
"$python" -m tools.gpu_check --out "$out/gpu_check.json" "$@" 2>&1 | tee "$out/gpu_check.log"
