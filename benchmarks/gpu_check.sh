#!/usr/bin/env bash
# The device check for a lent CUDA machine (see README, Performance): the test suite with CUDA
# as the auto device, then bench_gpu.py. Wheels for what the machine lacks (POT, GeomLoss) are
# carried in .whl/; the project runs from src/ without installing.
set -u
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/src" PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/otcli-gpu}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, ot; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'POT', ot.__version__)"
timeout "${TEST_S:-300}" python3 -m pytest -q -p no:cacheprovider -m "not slow" --maxfail=40 \
  -o addopts="" tests 2>&1 | tee "$OUT/pytest.log" | tail -n 80
timeout "${BENCH_S:-200}" python3 benchmarks/bench_gpu.py ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
