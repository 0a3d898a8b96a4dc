"""Score demo-model images against their prompts by exact pixel analysis (issue 8).

    .venv-ref/bin/python scripts/demo/quality.py [-m assets/demo-pixart] [--steps 20] [--cfg 4.5]
        [--dtype f32|bf16] [--sampler ditrt|diffusers] [--keep DIR] [--self-test] [--extra "ARGS"]

For a fixed prompt set (every color x shape pair of scripts/demo/dataset.py 4 times, with
positions and backgrounds rotated through, fixed seeds) it generates one 32x32 image per
prompt with `./ditrt txt2img` (or the diffusers pipeline) and reads back from the pixels:
  background  majority of the border pixels, snapped to the nearest background palette color;
  color       majority over foreground pixels (nearest palette entry is a shape color and not
              the background) of their nearest shape color;
  shape       from the largest 4-connected foreground component: fill ratio of its bounding
              box (circle pi/4 ~ 0.785, square ~1, upright triangle ~0.5), with the apex test
              (top quarter of the box much narrower than the bottom quarter) for triangles;
  position    bounding-box center offset from the image center (> 3.5 px on an axis names that side).
It prints per-attribute accuracy and the main score, color AND shape correct.
--self-test scores the dataset's own renders (must be 100%) to check the analysis itself.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402

POS_NAMES = list(dataset.POSITIONS)
BG_NAMES = list(dataset.BACKGROUNDS)


def prompt_set():
    """[(caption, attrs dict, seed)]: 60 prompts, deterministic."""
    out, i = [], 0
    for ci, color in enumerate(dataset.COLORS):
        for si, shape in enumerate(dataset.SHAPES):
            for rep in range(4):
                pos = POS_NAMES[(ci + 2 * si + 3 * rep) % len(POS_NAMES)]
                bg = BG_NAMES[(ci + si + rep) % len(BG_NAMES)]
                out.append((dataset.caption(color, shape, pos, bg),
                            dict(color=color, shape=shape, pos=pos, bg=bg), 1000 + i))
                i += 1
    return out


def _nearest(px, palette):
    cols = np.asarray(list(palette.values()), np.float32)
    d = ((px[..., None, :].astype(np.float32) - cols) ** 2).sum(-1)
    return d.argmin(-1)


def _components(mask):
    """The 4-connected components of mask, each an array of (y, x), largest first."""
    seen = np.zeros_like(mask)
    comps = []
    h, w = mask.shape
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        comp, stack = [], [(y0, x0)]
        seen[y0, x0] = True
        while stack:
            y, x = stack.pop()
            comp.append((y, x))
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        comps.append(np.array(comp).reshape(-1, 2))
    return sorted(comps, key=len, reverse=True)


def _background_and_color(img):
    """(bg name, the image's own background RGB, shape color name or None, coverage alpha [H, W]):
    alpha is each pixel's position on the background -> shape-color line, so soft edges
    (anti-aliasing, VAE blur) count fractionally and the geometry is nearly free of pixel rounding."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    blab = _nearest(border, dataset.BACKGROUNDS)
    bi = np.bincount(blab, minlength=len(BG_NAMES)).argmax()
    bgc = np.median(border[blab == bi], axis=0)  # the image's own background, not the palette's
    pal = dict(dataset.COLORS)
    pal["_bg"] = tuple(bgc)
    lab = _nearest(img, pal)
    fg = lab < len(dataset.COLORS)
    if fg.sum() < 8:
        return BG_NAMES[bi], bgc, None, None
    ci = np.bincount(lab[fg], minlength=len(dataset.COLORS)).argmax()
    d = np.median(img[lab == ci], axis=0) - bgc
    alpha = np.clip(((img - bgc) @ d) / max(float(d @ d), 1.0), 0.0, 1.0)
    return BG_NAMES[bi], bgc, list(dataset.COLORS)[ci], alpha


def classify(alpha, comp, small=False):
    """Shape of one component (its pixels where alpha > 0.5) from the soft alpha around it: fill
    ratio of its bounding box (circle pi/4 ~ 0.785, square ~1, upright triangle ~0.5), the apex
    test for triangles, the corner test for squares. Returns a dict with shape, fill, taper,
    corner, center (x, y) of the box and extent (the larger soft side, px). small: for shapes of
    7..10 px (the scenes model's small and counted ones), the apex test compares at least 2 rows
    at each end (one half-covered edge row would look like an apex) and cuts at 0.475, between the
    classes on 1500 random renders of half-size 3.4..5 (triangles <= 0.43, circles >= 0.52)."""
    ys, xs = comp[:, 0], comp[:, 1]
    y0, y1 = max(ys.min() - 2, 0), ys.max() + 3
    x0, x1 = max(xs.min() - 2, 0), xs.max() + 3
    a = alpha[y0:y1, x0:x1]
    w, h = a.max(axis=0).sum(), a.max(axis=1).sum()  # soft extents
    fill = float(a.sum() / max(w * h, 1e-6))
    # Apex test: a triangle's top quarter is much narrower than its bottom quarter.
    widths = a.sum(axis=1)
    cov = np.nonzero(a.max(axis=1) > 0.5)[0]
    q = max(2 if small else 1, len(cov) // 4)
    taper = float(widths[cov[0]:cov[0] + q].mean() / max(widths[cov[-1] - q + 1:cov[-1] + 1].mean(), 1e-6))
    # Corner test: a square fills the corners of its box (the 0.5-contour box), a circle does not.
    by0, by1, bx0, bx1 = ys.min(), ys.max(), xs.min(), xs.max()
    corner = float(np.mean([alpha[by0, bx0], alpha[by0, bx1], alpha[by1, bx0], alpha[by1, bx1]]))
    if fill < 0.66 or taper < (0.475 if small else 0.55):
        shape = "triangle"
    elif fill >= 0.88 or (fill >= 0.8 and corner > 0.3):
        shape = "square"
    else:
        shape = "circle"
    cy = (ys.min() + ys.max() + 1) / 2.0  # box center: a triangle's centroid sits low
    cx = (xs.min() + xs.max() + 1) / 2.0
    return dict(shape=shape, fill=round(fill, 3), taper=round(taper, 2), corner=round(corner, 2),
                center=(float(cx), float(cy)), extent=round(float(max(w, h)), 2))


def position_of(center):
    dx, dy = center[0] - dataset.SIZE / 2, center[1] - dataset.SIZE / 2
    if max(abs(dx), abs(dy)) <= 3.5:
        return ""
    if abs(dx) >= abs(dy):
        return "on the left" if dx < 0 else "on the right"
    return "at the top" if dy < 0 else "at the bottom"


def analyze(img):
    """img: HxWx3 uint8 -> dict(color, shape, pos, bg, fill, center (x, y) px of the shape's box);
    None where nothing is found."""
    img = np.asarray(img)[..., :3].astype(np.float32)
    bg, _, color, alpha = _background_and_color(img)
    res = dict(bg=bg, color=color, shape=None, pos=None, fill=None, taper=None, corner=None, center=None)
    if color is None:
        return res
    comps = _components(alpha > 0.5)
    if not comps or len(comps[0]) < 4:
        return res
    g = classify(alpha, comps[0])
    res.update(shape=g["shape"], pos=position_of(g["center"]), fill=g["fill"], taper=g["taper"],
               corner=g["corner"], center=g["center"])
    return res


def gen_ditrt(a, prompt, seed, path):
    cmd = [a.ditrt, "txt2img", "-m", a.model, "-p", prompt, "--steps", str(a.steps), "--cfg", str(a.cfg),
           "--seed", str(seed), "--dtype", a.dtype, "--threads", str(a.threads), "--quiet", "-o", path]
    cmd += a.extra.split() if a.extra else []
    subprocess.run(cmd, check=True)
    return np.array(Image.open(path).convert("RGB"))


class DiffusersGen:
    def __init__(self, a):
        import json
        import torch
        import diffusers
        torch.set_num_threads(a.threads)
        self.torch = torch
        # the folder's own pipeline class (PixArtSigmaPipeline, or StableDiffusionPipeline for demo-sd)
        cls = json.load(open(os.path.join(a.model, "model_index.json")))["_class_name"]
        self.pipe = getattr(diffusers, cls).from_pretrained(a.model, torch_dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.kwargs = dict(use_resolution_binning=False, clean_caption=False) if cls.startswith("PixArt") else {}
        self.a = a

    def __call__(self, prompt, seed, path):
        with self.torch.no_grad():
            im = self.pipe(prompt, num_inference_steps=self.a.steps, guidance_scale=self.a.cfg,
                           generator=self.torch.Generator().manual_seed(seed), **self.kwargs).images[0]
        im.save(path)
        return np.array(im.convert("RGB"))


def compare(ditrt, x, y):
    """(PSNR dB, SSIM) of two images from `ditrt compare` (inf PSNR for identical images)."""
    out = subprocess.run([ditrt, "compare", x, y], check=True, capture_output=True, text=True).stdout
    vals = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return float(vals["PSNR"].split()[0]), float(vals["SSIM"])


def report_vs_ref(a, keep, n):
    res = [compare(a.ditrt, os.path.join(keep, f"{i:02d}.png"), os.path.join(a.ref, f"{i:02d}.png")) for i in range(n)]
    ps, ss = [r[0] for r in res], [r[1] for r in res]
    fin = [p for p in ps if p != float("inf")]
    mean = sum(fin) / len(fin) if fin else float("inf")
    worst = min(range(n), key=lambda i: ps[i])
    print(f"vs {a.ref}: PSNR mean {mean:.1f} dB (over {len(fin)} non-identical), worst {ps[worst]:.1f} dB (#{worst:02d}), "
          f"below 30 dB: {sum(p < 30 for p in ps)}; SSIM mean {sum(ss) / n:.4f}, worst {min(ss):.4f}")


def score(results):
    n = len(results)
    acc = {k: sum(r[0][k] == r[1][k] for r in results) / n for k in ("color", "shape", "pos", "bg")}
    acc["color+shape"] = sum(r[0]["color"] == r[1]["color"] and r[0]["shape"] == r[1]["shape"] for r in results) / n
    acc["all"] = sum(all(r[0][k] == r[1][k] for k in ("color", "shape", "pos", "bg")) for r in results) / n
    return acc


def common_args(model, keep_help, extra_help, seed_base=None):
    """The options every quality script takes: model folder (under assets/), sampler, steps, cfg,
    dtype, threads, --keep, --self-test, -v, --extra and, with a held-set seed_base, --seed-base."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser()
    ap.add_argument("-m", "--model", default=os.path.join(root, "assets", model))
    ap.add_argument("--ditrt", default=os.path.join(root, "ditrt"))
    ap.add_argument("--sampler", default="ditrt", choices=("ditrt", "diffusers"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cfg", type=float, default=4.5)
    ap.add_argument("--dtype", default="f32", choices=("f32", "bf16"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep", help=keep_help)
    ap.add_argument("--self-test", action="store_true", help="score the dataset's own renders instead")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--extra", help=extra_help)
    if seed_base is not None:
        ap.add_argument("--seed-base", type=int, default=seed_base, help=f"seeds SEED_BASE.. ({seed_base}: the held "
                        "set; another base gives a second set, e.g. to pick a checkpoint without tuning on the held one)")
    return ap


def main():
    ap = common_args("demo-pixart", "directory to keep the generated PNGs in",
                     "more ditrt txt2img arguments, e.g. \"--quant DIR\" or \"--solver unipc\"")
    ap.add_argument("--ref", help="a --keep directory of an earlier run: also report PSNR/SSIM of each image against "
                    "the same-numbered image there (ditrt compare)")
    a = ap.parse_args()
    keep = a.keep or tempfile.mkdtemp(prefix="ditrt-quality-")
    os.makedirs(keep, exist_ok=True)
    gen = DiffusersGen(a) if a.sampler == "diffusers" and not a.self_test else None
    results = []
    for i, (prompt, want, seed) in enumerate(prompt_set()):
        path = os.path.join(keep, f"{i:02d}.png")
        if a.self_test:
            img = dataset.render(want["color"], want["shape"], want["pos"], want["bg"], np.random.default_rng(seed))
        elif gen:
            img = gen(prompt, seed, path)
        else:
            img = gen_ditrt(a, prompt, seed, path)
        got = analyze(img)
        results.append((got, want))
        if a.verbose or any(got[k] != want[k] for k in ("color", "shape")):
            print(f"  {i:02d} {'ok ' if got['color'] == want['color'] and got['shape'] == want['shape'] else 'BAD'} "
                  f"'{prompt}' -> {got}")
    acc = score(results)
    what = "dataset renders" if a.self_test else f"{a.sampler} {a.dtype} steps={a.steps} cfg={a.cfg}"
    print(f"quality ({what}, {len(results)} prompts): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in acc.items()))
    print(f"images in {keep}")
    if a.ref:
        report_vs_ref(a, keep, len(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
