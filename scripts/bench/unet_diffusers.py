#!/usr/bin/env python3
"""Peer benchmark (developer tool): one classifier-free-guidance step of an SD1.5-shaped
UNet2DConditionModel (or, with --part vae, one SD VAE decode), diffusers vs ditrt, rounds
alternated in one run on one machine.

Usage (from the repo root, after `make`):
    /work/venv-cur/bin/python scripts/bench/unet_diffusers.py --res 512 --threads 2 --rounds 3
    /work/venv-cur/bin/python scripts/bench/unet_diffusers.py --part vae --res 512 --rounds 2

--part vae: AutoencoderKL with the SD VAE config (block_out_channels 128/256/512/512, 2 layers
per block, 4 latent channels; SD 1.5, 2.x and SDXL share it), vae.decode of a [1, 4, res/8,
res/8] latent, vs `ditrt bench vae --rounds-stdin` (its floor: the decoder's conv/GEMM FLOPs
at the GEMM rate).

One "step" = one U-Net forward on batch 2 (cond + uncond): latent [2, 4, res/8, res/8],
77 text tokens of width 768 (CLIP ViT-L), timestep 999, random weights (diffusers' default
initialization here; ditrt's `bench transformer --arch sd15-unet` draws its own), under
torch.no_grad() (torch.inference_mode would not change the kernels). The SD1.5 UNet config is
written out below (block_out_channels 320/640/1280/1280, 2 layers per block, 8 heads,
cross_attention_dim 768, conv projections).

ditrt runs as a subprocess with both models loaded: `ditrt bench transformer --arch sd15-unet
--rounds-stdin` takes one timed step per line we send and prints the step time and a GEMM
floor measured right after it (so each round is compared to the floor of its moment). The
order inside a round alternates (diffusers first in even rounds, ditrt first in odd ones).
Reported: every round, then min and median of each side, diffusers/ditrt and ditrt/floor,
with the load average before each round (the machine may be shared).

--ditrt-base PATH adds a second ditrt binary (say, the build before a change) to the same
rounds, run right after the first ditrt each round: before/after/diffusers from one run.
--no-warmup skips diffusers' untimed warm-up call (for sizes where one call takes minutes;
ditrt still takes its own warm-up round).

Threads: torch.set_num_threads(N) and ditrt --threads N. Each side keeps its own default
OpenMP wait policy (ditrt re-execs itself with OMP_WAIT_POLICY=passive; torch spins).
--dtype bf16 runs diffusers in bf16 and ditrt with --dtype bf16 (ditrt refuses bf16 where the
CPU has no native bf16, e.g. AVX2-only machines: then use f32).
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
import diffusers
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.utils import logging as dlogging

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def sd15_config(res):
    return dict(
        sample_size=res // 8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        attention_head_dim=8,
        cross_attention_dim=768,
        norm_num_groups=32,
        norm_eps=1e-5,
        act_fn="silu",
        downsample_padding=1,
        flip_sin_to_cos=True,
        freq_shift=0,
        center_input_sample=False,
        use_linear_projection=False,
    )


def sd_vae_config():
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        act_fn="silu",
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )


class Ditrt:
    """ditrt's bench in --rounds-stdin mode: one timed step per go()."""

    def __init__(self, binary, part, res, dtype, threads):
        what = ["transformer", "--arch", "sd15-unet"] if part == "unet" else ["vae"]
        cmd = [binary, "bench", *what, "--res", str(res), "--dtype", dtype, "--threads", str(threads), "--rounds-stdin"]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.round_line()  # round 0 is its warm-up: the model is loaded and ready

    def round_line(self):
        for line in self.p.stdout:
            if line.startswith("round "):
                return line.strip()
        raise SystemExit(f"ditrt ended early (exit {self.p.wait()})")

    def go(self):
        """(step seconds, floor seconds) of one timed round."""
        self.p.stdin.write("go\n")
        self.p.stdin.flush()
        line = self.round_line()
        step = float(line.split("step ")[1].split(" s")[0])
        floor = float(line.split("floor ")[1].split(" s")[0])
        return step, floor

    def close(self):
        self.p.stdin.close()
        tail = self.p.stdout.read()
        self.p.wait()
        return tail


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["unet", "vae"], default="unet")
    ap.add_argument("--res", type=int, default=512, help="image size (latent res/8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--ditrt", default=os.path.join(ROOT, "ditrt"), help="the ditrt binary ('' : diffusers only)")
    ap.add_argument("--ditrt-base", default="", help="a second ditrt binary timed in the same rounds (before/after)")
    ap.add_argument("--no-warmup", action="store_true", help="no untimed diffusers call before the rounds")
    args = ap.parse_args()

    dlogging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tdt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    lat = args.res // 8
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    if args.part == "unet":
        model = UNet2DConditionModel(**sd15_config(args.res)).eval().to(tdt)
        inputs = dict(sample=torch.randn(2, 4, lat, lat, generator=g).to(tdt),
                      timestep=torch.full((2,), 999.0),
                      encoder_hidden_states=torch.randn(2, 77, 768, generator=g).to(tdt), return_dict=False)
        proc = type(model.down_blocks[0].attentions[0].transformer_blocks[0].attn1.processor).__name__
        run = lambda: model(**inputs)  # noqa: E731
        shape = f"latent {lat}x{lat}) batch 2 text 77"
    else:
        model = AutoencoderKL(**sd_vae_config()).eval().to(tdt)
        latent = torch.randn(1, 4, lat, lat, generator=g).to(tdt)
        proc = type(model.decoder.mid_block.attentions[0].processor).__name__
        run = lambda: model.decode(latent, return_dict=False)  # noqa: E731
        shape = f"latent {lat}x{lat}) batch 1, decode"
    build = time.perf_counter() - t0
    nparam = sum(p.numel() for p in model.parameters())
    print(f"torch {torch.__version__} diffusers {diffusers.__version__} | {args.part} dtype {args.dtype} threads "
          f"{torch.get_num_threads()} | res {args.res} ({shape} | params {nparam / 1e6:.0f}M | attn {proc} | build {build:.1f}s",
          flush=True)

    def torch_step():
        t = time.perf_counter()
        with torch.no_grad():
            run()
        return time.perf_counter() - t

    if not args.no_warmup:
        warm = torch_step()
        print(f"diffusers warm-up {warm:.3f} s", flush=True)
    d = Ditrt(args.ditrt, args.part, args.res, args.dtype, args.threads) if args.ditrt else None
    base = Ditrt(args.ditrt_base, args.part, args.res, args.dtype, args.threads) if args.ditrt and args.ditrt_base else None
    base_rows = []
    rows = []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        if d is None:
            rows.append((load, torch_step(), None, None))
        elif r % 2 == 0:
            tt = torch_step()
            ds, fl = d.go()
            rows.append((load, tt, ds, fl))
        else:
            ds, fl = d.go()
            tt = torch_step()
            rows.append((load, tt, ds, fl))
        if base:
            base_rows.append(base.go())
        load, tt, ds, fl = rows[-1]
        extra = f"  ditrt {ds:.3f} s  floor {fl:.3f} s  ditrt/floor {ds / fl:.2f}x  diffusers/ditrt {tt / ds:.2f}x" if d else ""
        if base:
            extra += f"  ditrt-base {base_rows[-1][0]:.3f} s (floor {base_rows[-1][1]:.3f} s)"
        print(f"round {r + 1}: load {load:.2f}  diffusers {tt:.3f} s{extra}", flush=True)
    tail = d.close() if d else ""
    if base:
        base.close()

    def mm(v):
        return f"min {min(v):.3f} median {statistics.median(v):.3f}"

    tt = [x[1] for x in rows]
    what = "sd15-unet step" if args.part == "unet" else "sd-vae decode"
    print(f"\nRESULT {what} res={args.res} dtype={args.dtype} threads={args.threads} rounds={args.rounds}")
    print(f"  diffusers: {mm(tt)} s")
    if d:
        ds, fl = [x[2] for x in rows], [x[3] for x in rows]
        print(f"  ditrt:     {mm(ds)} s")
        print(f"  floor:     {mm(fl)} s (GEMM peak of each round)")
        print(f"  diffusers/ditrt: min-to-min {min(tt) / min(ds):.2f}x, median-to-median "
              f"{statistics.median(tt) / statistics.median(ds):.2f}x")
        print(f"  ditrt/floor per round: min {min(a / b for a, b in zip(ds, fl)):.2f}x "
              f"median {statistics.median(a / b for a, b in zip(ds, fl)):.2f}x")
        if base:
            bs = [x[0] for x in base_rows]
            print(f"  ditrt-base: {mm(bs)} s ({args.ditrt_base}); base/ditrt: min-to-min {min(bs) / min(ds):.2f}x, "
                  f"median-to-median {statistics.median(bs) / statistics.median(ds):.2f}x; "
                  f"diffusers/ditrt-base: min-to-min {min(tt) / min(bs):.2f}x")
        print("  load averages before the rounds: " + ", ".join(f"{x[0]:.2f}" for x in rows))
        print("ditrt's own report:\n" + tail.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
