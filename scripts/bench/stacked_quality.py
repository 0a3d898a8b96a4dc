"""Quality of the stacked headline setting (issue 24, item 5) on the demo model, next to the float
20-step reference: color+shape score (scripts/demo/quality.py's 60 held prompts and seeds) and
PSNR of each image against the f32 DPM-Solver++ 20-step image of the same prompt and seed.

    /work/venv-cur/bin/python scripts/bench/stacked_quality.py [--work DIR] [--threads 1] [--delta 0.05]
        [--rows ref,t5int8,usf8,usf8+w8a8,usf8+attn,stacked,stacked+t5int8,stacked+int8attn]
        [--nfe 8 [--schedule USF.json]]

The stacked setting is what scripts/bench/stacked.sh times at PixArt-XL-2 size as (c):
  the 8-NFE USF schedule (configs/solvers/demo-pixart-usf-nfe8.json, --steps 8; --nfe K --schedule FILE
    for another: the W8A8 plan is the same, the attention plan is calibrated at K steps),
  a W8A8 plan (`ditrt quantize --scheme w8a8`, smoothing + rotation, 15 calibration captions of
    scripts/demo/quant_eval.py, calibrated over 8 DPM-Solver++ steps: quantize has no USF option),
  a DiTFastAttn plan at K steps (`ditrt calibrate-attn --steps K --threshold DELTA --window 4`, on the
    first 4 of those captions; its search samples with the folder's DPM-Solver++, the plan is keyed
    by step index and applied to the USF steps),
  the T5 text encoder with int8 weights (--text-encoder-dtype int8: what (c) runs since session 13;
    row stacked+t5int8, and t5int8 alone at 20 steps),
  optionally int8 self-attention (the same W8A8 calibration with --int8-attn).
Plans are made once under --work and reused. Everything f32 (the CPU this was written on has no
native bf16). Dev only; never needed by make/test/demo.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(root, "scripts", "demo"))
import quality  # noqa: E402
import quant_eval  # noqa: E402

def run(cmd):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True)


def plans(a, model):
    """Makes (once) the calibration prompt files, the W8A8 plans and the attention plan."""
    calib = os.path.join(a.work, "calib15.txt")
    caps = quant_eval.calib_prompts(15)
    with open(calib, "w") as f:
        f.write("\n".join(caps) + "\n")
    calib4 = os.path.join(a.work, "calib4.txt")
    with open(calib4, "w") as f:
        f.write("\n".join(caps[:4]) + "\n")
    out = {}
    for name, flags in (("w8a8", []), ("w8a8-int8attn", ["--int8-attn"])):
        d = os.path.join(a.work, name)
        if not os.path.exists(os.path.join(d, "plan.json")):
            run([a.ditrt, "quantize", "-m", model, "--prompts", calib, "--scheme", "w8a8", "--steps", "8",
                 "--dtype", "f32", "--seed", "5000", "--threads", str(a.threads), "--out", d, "--quiet"] + flags)
        out[name] = d
    attn = os.path.join(a.work, f"attn-d{a.delta}-s{a.nfe}.json")
    if not os.path.exists(attn):
        run([a.ditrt, "calibrate-attn", "-m", model, "--prompts", calib4, "--steps", str(a.nfe), "--threshold",
             str(a.delta), "--window", "4", "--dtype", "f32", "--threads", str(a.threads), "-o", attn, "--quiet"])
    out["attn"] = attn
    return out


def generate(a, model, steps, extra, keep):
    os.makedirs(keep, exist_ok=True)
    ga = argparse.Namespace(ditrt=a.ditrt, model=model, steps=steps, cfg=4.5, dtype="f32", threads=a.threads,
                            extra=extra)
    imgs, results = [], []
    for i, (prompt, want, seed) in enumerate(quality.prompt_set()):
        img = quality.gen_ditrt(ga, prompt, seed, os.path.join(keep, f"{i:02d}.png"))
        imgs.append(img)
        results.append((quality.analyze(img), want))
    return imgs, quality.score(results)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=os.path.join(root, "assets", "demo-pixart"))
    ap.add_argument("--ditrt", default=os.path.join(root, "ditrt"))
    ap.add_argument("--work", default=os.path.join(root, "build", "stacked-quality"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--delta", type=float, default=0.05, help="DiTFastAttn threshold (README: 0.05 is the demo's best)")
    ap.add_argument("--rows", default="ref,t5int8,usf8,usf8+w8a8,usf8+attn,stacked,stacked+t5int8,stacked+int8attn",
                    help="usf8 names the --nfe schedule whatever K is")
    ap.add_argument("--nfe", type=int, default=8)
    ap.add_argument("--schedule", help="the USF schedule (default configs/solvers/demo-pixart-usf-nfeK.json)")
    a = ap.parse_args()
    sched = a.schedule or os.path.join(root, "configs", "solvers", f"demo-pixart-usf-nfe{a.nfe}.json")
    os.makedirs(a.work, exist_ok=True)
    p = plans(a, a.model)
    usf = f"--solver-schedule {sched}"
    k = a.nfe
    rows = {
        "ref": ("f32, DPM-Solver++ 20 steps (reference)", 20, ""),
        "t5int8": ("f32, DPM-Solver++ 20 steps, T5 with int8 weights", 20, "--text-encoder-dtype int8"),
        "usf8": (f"USF {k} NFE", k, usf),
        "usf8+w8a8": (f"USF {k} NFE + W8A8", k, f"{usf} --quant {p['w8a8']}"),
        "usf8+attn": (f"USF {k} NFE + DiTFastAttn δ={a.delta}", k, f"{usf} --attn-plan {p['attn']}"),
        "stacked": (f"USF {k} NFE + W8A8 + DiTFastAttn δ={a.delta} (stacked)", k,
                    f"{usf} --quant {p['w8a8']} --attn-plan {p['attn']}"),
        "stacked+t5int8": (f"USF {k} NFE + W8A8 + DiTFastAttn δ={a.delta} + T5 int8 weights (stacked, as (c) runs)", k,
                           f"{usf} --quant {p['w8a8']} --attn-plan {p['attn']} --text-encoder-dtype int8"),
        "stacked+int8attn": (f"USF {k} NFE + W8A8 + int8 attention + DiTFastAttn δ={a.delta}", k,
                             f"{usf} --quant {p['w8a8-int8attn']} --attn-plan {p['attn']}"),
    }
    want = ["ref"] + [r for r in a.rows.split(",") if r and r != "ref"]
    res = {}
    for r in want:
        label, steps, extra = rows[r]
        keep = os.path.join(a.work, r if r == "ref" or k == 8 else f"{r}-nfe{k}")
        imgs, acc = generate(a, a.model, steps, extra, keep)
        res[r] = (label, imgs, acc)
        print(f"{label}: color+shape {100 * acc['color+shape']:.1f}%", file=sys.stderr, flush=True)
    held = quality.prompt_set()
    ref = res["ref"][1]
    print("demo model (assets/demo-pixart), 60 held prompts of quality.py, cfg 4.5, f32; PSNR per image vs the "
          "f32 DPM-Solver++ 20-step image of the same prompt and seed")
    print("| setting | color+shape | PSNR vs 20 steps mean | worst (prompt) | images < 20 dB |")
    print("|---|---|---|---|---|")
    for r in want:
        label, imgs, acc = res[r]
        if r == "ref":
            print(f"| {label} | {100 * acc['color+shape']:.1f}% | - | - | - |")
            continue
        ps = [quant_eval.psnr(x, y) for x, y in zip(imgs, ref)]
        w = int(np.argmin(ps))
        print(f"| {label} | {100 * acc['color+shape']:.1f}% | {np.mean(ps):.1f} dB | {ps[w]:.1f} dB (#{w} "
              f"'{held[w][0]}') | {sum(x < 20 for x in ps)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
