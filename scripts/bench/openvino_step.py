#!/usr/bin/env python3
"""Peer benchmark (developer tool, issue 24's target "faster than OpenVINO"): one CFG step of the
PixArt-XL-2 transformer at RES² (batch 2, 120 caption tokens, random weights), ditrt vs OpenVINO vs
diffusers, rounds alternated in one run on one machine.

    /work/venv-cur/bin/pip install openvino          # dev only: never needed by make/test/demo
    /work/venv-cur/bin/python scripts/bench/openvino_step.py [--res 512] [--layers 28] [--dtype f32]
        [--threads 2] [--rounds 3]

The diffusers PixArtTransformer2DModel is built with PixArt-XL-2's config (diffusers' default
initialization, --layers of its 28 blocks) and run under torch.no_grad(); OpenVINO gets the same
module through `openvino.convert_model(model, example_input=...)`, compiled for the CPU with
INFERENCE_PRECISION_HINT = the dtype and INFERENCE_NUM_THREADS = --threads; ditrt runs as
`ditrt bench transformer --arch pixart-xl-2 --layers L --rounds-stdin` (its own random weights, same
shapes), which times one step per line we send and reports a GEMM floor measured right after it.
Inside a round the order rotates (diffusers, OpenVINO, ditrt; then OpenVINO, ditrt, diffusers; ...).
Reported: every round with the load average before it, then min and median per side and the ratios.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import diffusers
from diffusers import PixArtTransformer2DModel
from diffusers.utils import logging as dlogging

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT + "/scripts")
from bench_diffusers import xl2_config  # noqa: E402
sys.path.insert(0, ROOT + "/scripts/bench")
from unet_diffusers import Ditrt  # noqa: E402


class DitrtXL(Ditrt):
    def __init__(self, binary, res, layers, dtype, threads):  # noqa: D107 (the same protocol, another model)
        cmd = [binary, "bench", "transformer", "--arch", "pixart-xl-2", "--res", str(res), "--layers", str(layers),
               "--dtype", dtype, "--threads", str(threads), "--rounds-stdin"]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.round_line()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--layers", type=int, default=28, help="blocks built (of 28)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--ditrt", default=os.path.join(ROOT, "ditrt"))
    args = ap.parse_args()

    import openvino as ov
    dlogging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tdt = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    lat = args.res // 8
    cfg = xl2_config(args.res, args.layers)
    model = PixArtTransformer2DModel(**cfg).eval().to(tdt)
    g = torch.Generator().manual_seed(0)
    hs = torch.randn(2, 4, lat, lat, generator=g).to(tdt)
    ehs = torch.randn(2, 120, 4096, generator=g).to(tdt)
    ts = torch.full((2,), 999, dtype=torch.int64)
    mask = torch.ones(2, 120, dtype=torch.int64)

    class Wrap(torch.nn.Module):  # positional inputs for the converter; added_cond_kwargs fixed (alpha, 512)
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, hidden_states, encoder_hidden_states, timestep, encoder_attention_mask):
            return self.m(hidden_states, encoder_hidden_states=encoder_hidden_states, timestep=timestep,
                          encoder_attention_mask=encoder_attention_mask,
                          added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]

    wrap = Wrap(model).eval()
    example = (hs, ehs, ts, mask)
    t0 = time.perf_counter()
    with torch.no_grad():
        ovm = ov.convert_model(wrap, example_input=example)
    core = ov.Core()
    compiled = core.compile_model(ovm, "CPU", {"INFERENCE_PRECISION_HINT": "bf16" if args.dtype == "bf16" else "f32",
                                               "INFERENCE_NUM_THREADS": args.threads})
    conv_s = time.perf_counter() - t0
    req = compiled.create_infer_request()
    ov_in = [x.float().numpy() if x.dtype == torch.bfloat16 else x.numpy() for x in example]
    print(f"torch {torch.__version__} diffusers {diffusers.__version__} openvino {ov.__version__} | pixart-xl-2 "
          f"{args.layers} of 28 blocks, res {args.res} (latent {lat}x{lat}, batch 2, 120 text tokens) | dtype {args.dtype} "
          f"threads {args.threads} | OpenVINO convert+compile {conv_s:.1f} s", flush=True)

    def torch_step():
        t = time.perf_counter()
        with torch.no_grad():
            wrap(*example)
        return time.perf_counter() - t

    def ov_step():
        t = time.perf_counter()
        req.infer(ov_in)
        return time.perf_counter() - t

    # same answer? (a sanity check of the conversion, f32 only)
    with torch.no_grad():
        ref = wrap(*example).float().numpy()
    ov_step()
    out = req.get_output_tensor(0).data
    rel = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-12))
    print(f"warm-up done; OpenVINO vs diffusers output: max abs diff / max abs {rel:.2e}", flush=True)
    d = DitrtXL(args.ditrt, args.res, args.layers, args.dtype, args.threads)
    sides = {"diffusers": lambda: torch_step(), "openvino": lambda: ov_step(), "ditrt": lambda: d.go()[0]}
    order = list(sides)
    rows = []
    for r in range(args.rounds):
        load = os.getloadavg()[0]
        k = r % 3
        got = {name: sides[name]() for name in order[k:] + order[:k]}
        rows.append((load, got))
        print(f"round {r + 1}: load {load:.2f}  " + "  ".join(f"{n} {got[n]:.3f} s" for n in order), flush=True)
    tail = d.close()

    print(f"\nRESULT pixart-xl-2 step, {args.layers} of 28 blocks, res={args.res} dtype={args.dtype} threads={args.threads} "
          f"rounds={args.rounds} (alternated)")
    v = {n: [x[1][n] for x in rows] for n in order}
    for n in order:
        print(f"  {n:9}: min {min(v[n]):.3f} median {statistics.median(v[n]):.3f} s")
    for n in ("diffusers", "openvino"):
        print(f"  {n}/ditrt: min-to-min {min(v[n]) / min(v['ditrt']):.2f}x, median-to-median "
              f"{statistics.median(v[n]) / statistics.median(v['ditrt']):.2f}x")
    print("  load averages before the rounds: " + ", ".join(f"{x[0]:.2f}" for x in rows))
    print("ditrt's own report:\n" + tail.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
