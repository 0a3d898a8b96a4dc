#!/bin/sh
# Builds the dev-time reference venv (.venv-ref) used only to generate fixtures and
# run peer benchmarks. Never needed by make, make test or make demo.
# Debian's python3-torch 1.13.1 avoids PyPI's multi-GB CUDA wheels; diffusers 0.30.3 is
# the last release that runs on torch 1.x.
set -e
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
for p in python3-torch python3-venv python3-numpy; do
    dpkg -s "$p" >/dev/null 2>&1 || need="$need $p"
done
if [ -n "$need" ]; then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
fi
[ -x .venv-ref/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv-ref
.venv-ref/bin/pip install -q \
    diffusers==0.30.3 transformers==4.44.2 safetensors==0.4.5 sentencepiece==0.2.0 \
    huggingface_hub==0.25.2 tokenizers==0.19.1
.venv-ref/bin/python -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
