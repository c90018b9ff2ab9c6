#!/usr/bin/env bash
# The GPU check: on a machine with CUDA, in under 5 minutes, runs a training step with autocast and channels-last,
# feature extraction, a GAN step, a 1-process DDP step (nccl on CUDA, gloo on the CPU) and the tiny pipeline, and
# prints what ran on which device and how fast. The test command runs it with `--device cpu` so that it cannot rot.
# Usage: bash tests/gpu/check.sh [--device cuda|cuda:N|cpu] [--skip-pipeline]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -x .venv/bin/python ] && PY=.venv/bin/python || PY=${PYTHON:-python3}
exec env MPLBACKEND=Agg "$PY" tests/gpu/check.py "$@"
