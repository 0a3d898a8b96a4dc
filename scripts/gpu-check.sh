#!/bin/sh
# Everything in ditrt that needs a GPU, in one command that writes one report file (< 8 min on
# one H100): the backends and devices found, `make test-gpu` (the CUDA ops against the CPU
# backend, two threads, the goldens through --device cuda), `bench transformer --device cuda`
# for PixArt-XL-2 at 1024² and 2048² in bf16 (each against the cuBLASLt GEMM peak measured in
# the same run; attention through cuDNN's fused SDPA graph, DITRT_VERBOSE=1 so any fallback to
# the two GEMMs is named in the report, and once more at 1024² with DITRT_ATTN=gemm for the
# fused-vs-GEMM attention comparison), with a DiTFastAttn plan at 1024², W8A8 at 1024² (cuBLASLt int8 GEMMs,
# kernels/cuda/cuda_qlinear.cu; compare its step time with the bf16 one), and one txt2img and one
# txt2vid end to end on the demo models.
#
#   sh scripts/gpu-check.sh [REPORT]           run from a build (repo root or a bundle)
#   sh scripts/gpu-check.sh --bundle DIR       make DIR: a build that runs on a bare GPU machine
#
# What travels: ditrt and the GPU test (CUDA runtime linked in statically), assets/ and configs/
# they read, this script, and cuda-libs/: the shared libraries dlopen-ed at run time
# (libcublasLt.so.13 and libcudnn*.so.9, ~1 GB, copied from the CUDA prefix of this build; the
# GPU machine needs only its NVIDIA driver, libcuda.so.1). Copy DIR over (tar/rsync) and run
# `sh scripts/gpu-check.sh` inside it; the script points DITRT_CUDA_LIBS and LD_LIBRARY_PATH at
# cuda-libs/ when it is there. oneDNN and the other CPU libraries ditrt links must be present
# on the GPU machine too (`ldd ditrt` lists them; scripts/install-deps.sh installs them on
# Debian, or copy them into cuda-libs/ as well).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

if [ "${1:-}" = "--bundle" ]; then
    out=${2:?usage: gpu-check.sh --bundle DIR}
    cudalib=${CUDA_LIBDIR:-$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/lib64}
    [ -x ditrt ] && [ -x build/tests-gpu/test_gpu_ops ] || { echo "gpu-check: build first: make -j2 ditrt build/tests-gpu/test_gpu_ops" >&2; exit 1; }
    mkdir -p "$out/scripts" "$out/build/tests-gpu" "$out/cuda-libs" || exit 1
    cp ditrt "$out/" && cp build/tests-gpu/test_gpu_ops "$out/build/tests-gpu/" && cp scripts/gpu-check.sh "$out/scripts/" &&
        cp -r assets configs "$out/" || exit 1
    for l in libcublasLt.so.13 libcudnn.so.9 libcudnn_graph.so.9 libcudnn_ops.so.9 libcudnn_cnn.so.9 libcudnn_adv.so.9 \
             libcudnn_heuristic.so.9 libcudnn_engines_precompiled.so.9 libcudnn_engines_runtime_compiled.so.9; do
        cp -L "$cudalib/$l" "$out/cuda-libs/" || { echo "gpu-check: $cudalib/$l missing" >&2; exit 1; }
    done
    echo "gpu-check: bundle in $out ($(du -sh "$out" | cut -f1)); on the GPU machine: cd $out && sh scripts/gpu-check.sh"
    exit 0
fi

report=${1:-gpu-check-report.txt}
if [ -d cuda-libs ]; then
    export DITRT_CUDA_LIBS="$here/cuda-libs"
    export LD_LIBRARY_PATH="$here/cuda-libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export OMP_WAIT_POLICY=passive
start=$(date +%s)
fails=0
: > "$report"
say() { printf '%s\n' "$*" | tee -a "$report"; }
# step NAME SECONDS CMD...: runs CMD with a time limit, its output into the report
step() {
    name=$1; limit=$2; shift 2
    t0=$(date +%s)
    say "== $name"
    timeout "$limit" "$@" >> "$report" 2>&1
    rc=$?
    [ $rc -ne 0 ] && fails=$((fails + 1))
    say "-- $name: exit $rc in $(( $(date +%s) - t0 )) s"
}

say "ditrt gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
say "git: $(git rev-parse --short HEAD 2>/dev/null || echo '(bundle)')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$report" 2>&1
step "ditrt info" 20 ./ditrt info
if ! ./ditrt info | grep -qx "backend cuda (built in)"; then
    say "gpu-check: no usable CUDA device here (see ditrt info above): nothing else to run"
    exit 1
fi
# the time limits add up to 480 s: the whole check stays under 8 minutes
step "make test-gpu (build/tests-gpu/test_gpu_ops)" 125 ./build/tests-gpu/test_gpu_ops
# cuDNN SDPA against the two-GEMM path (test_attention_cudnn's lines), gathered for the summary
grep "cuDNN SDPA" "$report" | sed 's/^ */sdpa-vs-f32: /' > "$report.sdpa" 2>/dev/null
step "bench transformer 1024 bf16 (attention: cuDNN SDPA)" 60 env DITRT_VERBOSE=1 ./ditrt bench transformer --device cuda --arch pixart-xl-2 --res 1024 --dtype bf16 --iters 3
step "bench transformer 1024 bf16 (attention: two GEMMs, DITRT_ATTN=gemm)" 35 env DITRT_ATTN=gemm ./ditrt bench transformer --device cuda --arch pixart-xl-2 --res 1024 --dtype bf16 --iters 2
step "bench transformer 2048 bf16" 90 ./ditrt bench transformer --device cuda --arch pixart-xl-2 --res 2048 --dtype bf16 --iters 2
step "bench transformer 1024 bf16 + DiTFastAttn plan" 50 ./ditrt bench transformer --device cuda --arch pixart-xl-2 --res 1024 --dtype bf16 --iters 2 --attn-plan configs/attn/xl2-1024-wars.json
step "bench transformer 1024 W8A8" 40 ./ditrt bench transformer --device cuda --arch pixart-xl-2 --res 1024 --quant w8a8 --iters 2
mkdir -p gpu-check-out
step "txt2img demo (cuda, bf16)" 30 ./ditrt txt2img --device cuda -m assets/demo-pixart -p "a red circle on the left on a black background" --steps 20 --seed 0 -o gpu-check-out/demo.png
step "txt2vid demo (cuda, bf16)" 30 ./ditrt txt2vid --device cuda -m assets/demo-latte -p "a blue triangle moving up on a white background" --steps 20 --seed 0 -o gpu-check-out/demo.mp4
if [ -s "$report.sdpa" ]; then
    say "== summary: cuDNN fused attention vs the f32 reference (make test-gpu)"
    cat "$report.sdpa" | tee -a "$report"
fi
rm -f "$report.sdpa"
say "gpu-check: $fails step(s) failed, $(( $(date +%s) - start )) s; report: $report"
