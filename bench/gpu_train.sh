#!/usr/bin/env bash
# Run on a machine with an NVIDIA GPU and the .venv of this checkout (CUDA torch).
# Builds nothing from the network: the model is randomly initialised from a config.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible to torch")'
exec "$PY" bench/gpu_train.py "$@"
