#!/usr/bin/env bash
# GPU check (`make gpu-check`): for a machine with a CUDA GPU and no network.
#
# Uses the Python that is already there (python3 with CuPy, PyTorch, numba, NumPy, pytest),
# the source tree on PYTHONPATH, and installs nothing. Runs, each under a timeout:
#   1. python3 -m minattn info                      what was found
#   2. pytest -m gpu on every test module that imports here (the CUDA halves of the device
#      tests, the CuPy kernel tests in tests/kernels/, the attention tests on cuda)
#   3. the GPU benchmark: B=4, H=16, L=S=4096, E=64, forward and forward+backward, against
#      torch's scaled_dot_product_attention on the same GPU
#   4. smaller shapes (B=4, H=8, L=S in 256, 1024), flash-cupy against fused: where
#      impl=None should switch between them on the GPU
# Fail-soft: a failing step does not stop the others; the script exits nonzero if any failed.
# Logs (and the benchmarks' JSON) go to $OUT when it is set, else to benchmarks/out/.
# Budget: at most 7.8 minutes in all (the timeouts below add up to 470 s); usually 3-4 (the
# first session's GPU tests took 81 s).

set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python3}"
LOGS="${OUT:-benchmarks/out}"
mkdir -p "$LOGS"
SUMMARY="$LOGS/summary.txt"
: > "$SUMMARY"
failed=0
start_all=$(date +%s)

step() {  # step NAME SECONDS COMMAND...: run with a timeout, log, record pass/fail
    local name=$1 limit=$2
    shift 2
    local log="$LOGS/$name.log" start rc
    start=$(date +%s)
    echo "=== $name (timeout ${limit}s): $*" | tee -a "$SUMMARY"
    timeout --kill-after=10 "$limit" "$@" > "$log" 2>&1
    rc=$?
    tail -n 40 "$log"
    if [ $rc -eq 0 ]; then
        echo "--- $name: ok ($(( $(date +%s) - start ))s)" | tee -a "$SUMMARY"
    else
        [ $rc -eq 124 ] && echo "--- $name: TIMED OUT after ${limit}s" | tee -a "$SUMMARY"
        echo "--- $name: FAILED (exit $rc, $(( $(date +%s) - start ))s; log $log)" \
            | tee -a "$SUMMARY"
        failed=1
    fi
}

# Test modules that cannot import here (a dev-only package missing, e.g. hypothesis or
# matplotlib) are left out and listed, instead of failing the whole collection.
modules=()
for f in tests/test_*.py tests/kernels/test_*.py tests/tools/test_*.py; do
    module="${f%.py}"
    # (tests/kernels/ imports its shared oracles as kernel_oracles, from its own folder)
    if timeout 30 "$PY" -c "import importlib, sys; sys.path.insert(0, '$(dirname "$f")')
importlib.import_module('${module//\//.}')" > /dev/null 2>&1; then
        modules+=("$f")
    else
        echo "(not collected here: $f does not import; missing dev package?)" | tee -a "$SUMMARY"
    fi
done

step info 30 "$PY" -m minattn info
step cuda-available 30 "$PY" -c "from minattn import backend
ok, why = backend.cuda_status()
print(why)
raise SystemExit(0 if ok else 1)"
step gpu-tests 200 "$PY" -m pytest -q -m gpu -p no:cacheprovider -o addopts="" -rs \
    "${modules[@]}"
step gpu-bench 150 "$PY" -m minattn bench --device cuda --batch 4 --shapes 16x4096 \
    --impl flash-cupy,torch-sdpa,torch-math,fused,flash-ref,flash-ref-1024 --repeat 3 --no-long \
    --max-memory 24 --out "$LOGS/bench_cuda.json"
step gpu-bench-small 60 "$PY" -m minattn bench --device cuda --batch 4 --shapes 8x256,8x1024 \
    --impl flash-cupy,fused,torch-sdpa --repeat 5 --no-long --out "$LOGS/bench_cuda_small.json"

echo "=== total $(( $(date +%s) - start_all ))s" | tee -a "$SUMMARY"
if [ $failed -ne 0 ]; then
    echo "GPU CHECK FAILED (see $SUMMARY)" | tee -a "$SUMMARY"
    exit 1
fi
echo "GPU CHECK PASSED" | tee -a "$SUMMARY"
