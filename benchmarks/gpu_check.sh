#!/usr/bin/env bash
# The GPU check of issue 15 in one command (within 8 minutes on a machine with a CUDA GPU):
# installs CuPy if missing, runs the GPU tests, every CLI command on --device gpu, the step
# benchmark against PyTorch CUDA, a short real training run, and writes
# benchmarks/results/gpu_check-<date>.md. --dry-run checks the plan without a GPU.
# See benchmarks/gpu_check.py and benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
