#!/usr/bin/env bash
# Fetch the wheels a bare GPU machine lacks for benchmarks/gpu_flux.py into .whl/ (git-ignored; about 11 MB).
# The GPU image already has torch, transformers, accelerate and safetensors; these three are what it misses.
# Run here, then hand .whl to the GPU machine with the repo and start benchmarks/gpu_run.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "${GPU_PYTHON:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl diffusers==0.42.1 peft==0.21.2 torchao==0.18.0
ls -la .whl
