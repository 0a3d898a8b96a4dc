"""Quantized demo model side by side (issue 6): PSNR against the bf16 images and quality.

    .venv-ref/bin/python scripts/demo/quant_eval.py [--work DIR] [--calib N] [--alpha A]
        [--configs w8a8:none,w8a8:smooth,...] [--extra-quantize "ARGS"] [--threads 1]

For each config `scheme:balancing[:int8attn]` (balancing none / smooth / smooth+rot / rot; int8attn
adds `--int8-attn`: the plan's self-attention with int8 QK^T) it runs
`ditrt quantize` on N calibration captions (every color x shape pair, positions and
backgrounds rotated differently from quality.py's held set, seeds 5000+), generates the 60
held prompts of quality.py with `--quant`, and reports color+shape accuracy and PSNR of each
image against the bf16 image of the same prompt and seed (mean and worst, prompt of the worst);
--dtype f32 makes f32 the float parts' dtype and the reference (CPUs without native bf16).
The f32 row shows how far plain f32 already is from bf16 (the trajectory's own sensitivity).
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
import quality  # noqa: E402

BAL = {"none": ["--no-balance", "--no-rotate"], "smooth": ["--no-rotate"], "smooth+rot": [], "rot": ["--no-balance"]}


def calib_prompts(n):
    out, pos, bgs = [], list(dataset.POSITIONS), list(dataset.BACKGROUNDS)
    i = 0
    while len(out) < n:
        for ci, color in enumerate(dataset.COLORS):
            for si, shape in enumerate(dataset.SHAPES):
                if len(out) < n:
                    out.append(dataset.caption(color, shape, pos[(ci + si + 2 * i + 1) % len(pos)],
                                               bgs[(2 * ci + si + i + 1) % len(bgs)]))
        i += 1
    return out


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 99.0 if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def generate(a, dtype, extra, keep):
    """Images and quality results of the 60 held prompts."""
    os.makedirs(keep, exist_ok=True)
    ga = argparse.Namespace(ditrt=a.ditrt, model=a.model, steps=20, cfg=4.5, dtype=dtype, threads=a.threads, extra=extra)
    imgs, results = [], []
    for i, (prompt, want, seed) in enumerate(quality.prompt_set()):
        img = quality.gen_ditrt(ga, prompt, seed, os.path.join(keep, f"{i:02d}.png"))
        imgs.append(img)
        results.append((quality.analyze(img), want))
    return imgs, quality.score(results)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=os.path.join(root, "assets", "demo-pixart"))
    ap.add_argument("--ditrt", default=os.path.join(root, "ditrt"))
    ap.add_argument("--work", default="/tmp/ditrt-quant-eval")
    ap.add_argument("--calib", type=int, default=15, help="calibration captions")
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--configs", help="comma-separated scheme:balancing (may be empty)", default="w8a8:none,w8a8:smooth,w8a8:smooth+rot,w4a8:none,w4a8:smooth,w4a8:smooth+rot")
    ap.add_argument("--extra-quantize", default="", help="more `ditrt quantize` arguments (e.g. \"--group 32\")")
    ap.add_argument("--baseline", action="store_true", help="also score f32 against bf16")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f32"], help="float parts and the reference")
    ap.add_argument("--run", action="append", default=[], metavar="NAME=ARGS",
                    help="also score a bf16 txt2img run with these arguments (e.g. a --zoo/--model-schedule of plans)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    prompts = os.path.join(a.work, "calib.txt")
    with open(prompts, "w") as f:
        f.write("\n".join(calib_prompts(a.calib)) + "\n")
    ref, acc = generate(a, a.dtype, "", os.path.join(a.work, a.dtype))
    held = quality.prompt_set()
    rows = [(a.dtype, acc, None)]
    runs = [("f32", "f32", "")] if a.baseline else []
    for cfg in filter(None, a.configs.split(",")):
        scheme, bal, *flags = cfg.split(":")
        plan = os.path.join(a.work, "plan-" + "-".join([scheme, bal] + flags))
        cmd = [a.ditrt, "quantize", "-m", a.model, "--prompts", prompts, "--scheme", scheme, "--alpha", str(a.alpha),
               "--seed", "5000", "--threads", str(a.threads), "--out", plan, "--quiet"] + BAL[bal] + a.extra_quantize.split()
        cmd += ["--int8-attn"] if "int8attn" in flags else []
        subprocess.run(cmd, check=True)
        runs.append((cfg, a.dtype, f"--quant {plan}"))
    runs += [(r.split("=", 1)[0], a.dtype, r.split("=", 1)[1]) for r in a.run]
    for name, dtype, extra in runs:
        imgs, acc = generate(a, dtype, extra, os.path.join(a.work, name.replace(":", "-")))
        p = [psnr(x, r) for x, r in zip(imgs, ref)]
        rows.append((name, acc, p))
    print(f"demo model, 60 held prompts, 20 steps cfg 4.5; calibration {a.calib} captions, alpha {a.alpha}"
          + (f", {a.extra_quantize}" if a.extra_quantize else ""))
    print(f"| setting | color+shape | PSNR vs {a.dtype} mean | worst (prompt) | images < 30 dB |")
    print("|---|---|---|---|---|")
    for name, acc, p in rows:
        if p is None:
            print(f"| {name} | {100 * acc['color+shape']:.1f}% | - | - | - |")
            continue
        w = int(np.argmin(p))
        print(f"| {name} | {100 * acc['color+shape']:.1f}% | {np.mean(p):.1f} dB | {p[w]:.1f} dB (#{w} '{held[w][0]}') "
              f"| {sum(x < 30 for x in p)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
