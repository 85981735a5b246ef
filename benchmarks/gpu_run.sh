#!/usr/bin/env bash
# The GPU side of benchmarks/gpu_flux.py, as one command: install carried wheels (benchmarks/gpu_wheels.sh)
# into a scratch site folder, then run the benchmark. Results stream to stdout and to $OUT (or /tmp):
# gpu_flux.json (rewritten after every measurement) and gpu_flux.log. Extra arguments go to gpu_flux.py.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-/tmp}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/bookbug-site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/bookbug-site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 benchmarks/gpu_flux.py --json "$out/gpu_flux.json" "$@" 2>&1 | tee "$out/gpu_flux.log"
