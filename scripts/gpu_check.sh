#!/usr/bin/env bash
# One command on a CUDA machine (under 5 minutes): the CUDA equivalence tests, then the
# accelerator benchmark (fla kernels, the pure-PyTorch chunk fallback and causal SDPA).
#   bash scripts/gpu_check.sh [OUT_DIR]      (PY=path/to/python to pick the interpreter)
# Needs a CUDA build of torch; fla (flash-linear-attention) with triton for the fla rows:
#   pip install --no-deps fla-core einops   (triton comes with CUDA builds of torch)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
OUT=${1:-bench_results}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible')"
"$PY" -c "from neural_attention_memory.functional import _fla; print('fla kernels:', 'yes' if _fla.fla_kernels() else 'no (pure-PyTorch chunk form only)')"
timeout 180 "$PY" -m pytest -q -m "cuda or not slow" tests/gpu tests/functional/test_fla.py
timeout 120 "$PY" -m neural_attention_memory.bench.attention_device --device cuda --out "$OUT/attention_device.json"
