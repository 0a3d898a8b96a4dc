#!/bin/sh
# Builds the dev-time venv of current releases (.venv-cur: PyTorch 2.x, diffusers 0.4x,
# transformers 5.x) for new reference fixtures (CLIP, U-Nets) and peer benchmarks.
# Never needed by make, make test or make demo. The older fixtures were made by
# scripts/make-venv.sh (.venv-ref) and stay as they are. VENV=path overrides the location.
set -e
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-cur}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch 'diffusers>=0.40,<0.50' 'transformers>=5,<6' safetensors sentencepiece \
    tokenizers accelerate numpy
"$VENV/bin/python" -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
