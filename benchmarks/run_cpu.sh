#!/usr/bin/env bash
# The CPU benchmark behind benchmarks/RESULTS.md: every implementation, B=1, E=64,
# H in {1, 8}, L=S in {512, ..., 4096}, float32, plus the long-sequence memory check.
# Writes benchmarks/out/bench_cpu.json and .md; extra arguments go to `minattn bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p benchmarks/out
"$PY" -m minattn bench --out benchmarks/out/bench_cpu.json \
    --markdown benchmarks/out/bench_cpu.md "$@"
