#!/usr/bin/env python3
"""Peer benchmark: one classifier-free-guidance denoising step of the diffusers
PixArtTransformer2DModel with the PixArt-XL-2 architecture and random weights.

Usage (from the repo root):
    .venv-ref/bin/python scripts/bench_diffusers.py --res 512 --dtype bf16 --threads 2 --blocks 4 --iters 1

One "step" = one transformer forward on batch 2 (cond + uncond), latent
[2, 4, res/8, res/8], 120 caption tokens of dim 4096 with an all-ones
attention mask, timestep 999, under torch.no_grad().

--blocks K builds only K of the 28 transformer blocks (to keep slow runs
short).  Extrapolation to 28 blocks is done like this:
    T_K     = measured time of the full forward with K blocks
    T_0     = measured time of the same model with its block list emptied
              (patch embed + pos-embed add, adaLN-single / timestep MLP,
              caption projection, final norm/modulation/proj_out/unpatchify)
    per_blk = (T_K - T_0) / K
    T_28    = T_0 + 28 * per_blk              <- "extrapolated" (reported)
    T_28'   = T_K * 28 / K                    <- naive scaling (also reported;
                                                 slight overestimate)
Blocks are identical in shape, so per-block time is constant.
Times are the mean over --iters timed runs after one warm-up run.

Caveat (Debian torch 1.13 in .venv-ref): it is built with BLAS_INFO=generic and
links the netlib reference libblas, so f32 GEMMs run single-threaded at a few
GFLOP/s, whereas bf16 matmuls go through oneDNN (~200 GFLOP/s on 2 AVX512-BF16
cores).  The f32 CPU number is therefore not a fair peer; the script prints a
warning when it detects this.
"""
import argparse
import os
import resource
import sys
import time

import torch
import diffusers
from diffusers import PixArtTransformer2DModel
from diffusers.utils import logging as dlogging

FULL_BLOCKS = 28


def xl2_config(res, blocks):
    assert res % 8 == 0
    return dict(
        num_layers=blocks,
        num_attention_heads=16,
        attention_head_dim=72,
        in_channels=4,
        out_channels=8,
        patch_size=2,
        sample_size=res // 8,
        caption_channels=4096,
        cross_attention_dim=1152,
        attention_bias=True,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        use_additional_conditions=False,
    )


def flops(res, batch, text_tokens, blocks):
    """Approximate multiply-add FLOPs (x2) of one forward."""
    D, L, T, B = 1152, (res // 16) ** 2, text_tokens, batch
    N, Nt = B * L, B * T
    per_block = (
        2 * N * D * D * 4            # self-attn q,k,v,out
        + 2 * 2 * B * L * L * D      # self-attn QK^T and PV
        + 2 * N * D * D * 2          # cross-attn q,out
        + 2 * Nt * D * D * 2         # cross-attn k,v
        + 2 * 2 * B * L * T * D      # cross-attn QK^T and PV
        + 2 * N * D * 4 * D * 2      # feed-forward
    )
    other = 2 * Nt * (4096 * D + D * D) + 2 * N * (16 * D + D * 32) + 2 * B * (256 * D + D * D + D * 6 * D)
    return per_block, other


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_forward(model, inputs, iters, dev):
    with torch.no_grad():
        sync(dev)
        t0 = time.perf_counter()
        model(**inputs)  # warm-up
        sync(dev)
        warm = time.perf_counter() - t0
        ts = []
        for _ in range(iters):
            t0 = time.perf_counter()
            model(**inputs)
            sync(dev)
            ts.append(time.perf_counter() - t0)
    return warm, ts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=512, help="image resolution (latent = res/8)")
    ap.add_argument("--dtype", choices=["bf16", "f32", "f16"], default="bf16")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--blocks", type=int, default=FULL_BLOCKS, help="build only K blocks, extrapolate to 28")
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=120, help="caption tokens")
    ap.add_argument("--batch", type=int, default=2, help="2 = one CFG step")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-base", action="store_true", help="skip the separate non-block measurement")
    args = ap.parse_args()

    dlogging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}[args.dtype]
    K = args.blocks
    lat = args.res // 8

    t0 = time.perf_counter()
    model = PixArtTransformer2DModel(**xl2_config(args.res, K)).eval().to(device=dev, dtype=dtype)
    build_s = time.perf_counter() - t0
    nparam = sum(p.numel() for p in model.parameters())
    proc = type(model.transformer_blocks[0].attn1.processor).__name__ if K else "-"

    g = torch.Generator().manual_seed(0)
    inputs = dict(
        hidden_states=torch.randn(args.batch, 4, lat, lat, generator=g).to(dev, dtype),
        encoder_hidden_states=torch.randn(args.batch, args.tokens, 4096, generator=g).to(dev, dtype),
        timestep=torch.full((args.batch,), 999.0, device=dev),
        added_cond_kwargs={"resolution": None, "aspect_ratio": None},
        encoder_attention_mask=torch.ones(args.batch, args.tokens, device=dev),
        return_dict=False,
    )

    print(f"torch {torch.__version__} diffusers {diffusers.__version__} | device {dev} dtype {args.dtype} "
          f"threads {torch.get_num_threads()} | res {args.res} (latent {lat}x{lat}, {(lat // 2) ** 2} tokens) "
          f"batch {args.batch} text {args.tokens} | blocks {K}/{FULL_BLOCKS} params {nparam / 1e6:.1f}M "
          f"attn processor {proc} | build {build_s:.1f}s")

    if dev.type == "cpu" and dtype == torch.float32 and "BLAS_INFO=generic" in torch.__config__.show():
        print("WARNING: this torch uses generic (likely netlib reference) BLAS for f32 GEMM; "
              "f32 timings are not representative of an optimised PyTorch build")
    warm, ts = time_forward(model, inputs, args.iters, dev)
    tK = sum(ts) / len(ts)
    print(f"measured  {K:2d} blocks: {tK:.3f} s/step (runs: {', '.join(f'{t:.3f}' for t in ts)}; warm-up {warm:.3f})")

    fb, fo = flops(args.res, args.batch, args.tokens, 1)
    if K != FULL_BLOCKS and K > 0:
        if args.no_base:
            t0b = 0.0
        else:
            blocks = model.transformer_blocks
            model.transformer_blocks = torch.nn.ModuleList()
            _, ts0 = time_forward(model, inputs, args.iters, dev)
            model.transformer_blocks = blocks
            t0b = sum(ts0) / len(ts0)
            print(f"measured   0 blocks: {t0b:.3f} s/step (non-block parts)")
        per_blk = (tK - t0b) / K
        t28 = t0b + FULL_BLOCKS * per_blk
        print(f"per block: {per_blk:.3f} s  ->  extrapolated 28 blocks: {t28:.3f} s/step "
              f"(T0 + 28*(TK-T0)/K); naive TK*28/K = {tK * FULL_BLOCKS / K:.3f} s/step")
    else:
        t28 = tK
    gf = (fb * FULL_BLOCKS + fo) / 1e9
    print(f"~{gf:.0f} GFLOP/step for 28 blocks -> {gf / t28:.1f} GFLOP/s effective")
    print(f"RESULT res={args.res} dtype={args.dtype} threads={torch.get_num_threads()} blocks={K} "
          f"measured_s={tK:.3f} extrapolated28_s={t28:.3f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
