"""Score the scenes model's images (sizes and counts) against their prompts (issue 8).

    .venv-ref/bin/python scripts/demo/quality_scenes.py [-m assets/demo-pixart-scenes] [--steps 20]
        [--cfg 4.5] [--dtype f32|bf16] [--sampler ditrt|diffusers] [--keep DIR] [--self-test]
        [--seed-base 3000] [--extra "ARGS"] [--vae VAE_DIR]

The prompt set (60, deterministic): every color x shape x size of scripts/demo/dataset.py once
("a small red circle on the left on a black background", positions and backgrounds rotated
through) and every color x shape x count once ("two green squares on a white background").
Seeds SEED_BASE.. (3000: the held set). From the pixels (quality.py's analysis):
  background, color  as quality.analyze;
  components         the 4-connected regions of coverage > 0.5 with at least MIN_PIXELS pixels;
  count              how many ("a" = 1);
  shape              quality.classify on every component; all must be the prompt's shape;
  size               the largest component's soft extent: < SMALL_BELOW px small, > LARGE_ABOVE
                     px large, else unsized (the plain shapes' 10..13 px);
  position           of the largest component's box (sized prompts; counted ones name neither
                     a position nor a size, so neither is checked there).
Headline: color AND shape AND count AND size correct (position and background reported apart).
--self-test scores the dataset's own renders (must be 100%); --vae VAE_DIR scores them after a
round trip through that VAE, the ceiling for any transformer on it.
"""
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
from quality import (DiffusersGen, _background_and_color, _components, classify, common_args, gen_ditrt,  # noqa: E402
                     position_of)

MIN_PIXELS = 6       # smaller regions are specks, not shapes (a small shape covers ~45 px)
SMALL_BELOW = 9.5    # px: small shapes are 8..9 wide, plain ones 10..13
LARGE_ABOVE = 13.25  # px: large shapes are 14.5..16.5 wide (a triangle's soft extent ~1 px less)
KEYS = ("color", "shape", "count", "size", "pos", "bg")
HEADLINE = ("color", "shape", "count", "size")


def prompt_set(seed_base=3000):
    """[(caption, attrs dict, seed)]: 30 sized and 30 counted prompts."""
    out, i = [], 0
    pos_names, bgs = list(dataset.POSITIONS), list(dataset.BACKGROUNDS)
    for ci, color in enumerate(dataset.COLORS):
        for si, shape in enumerate(dataset.SHAPES):
            for zi, size in enumerate(dataset.SIZES):
                pos = pos_names[(ci + 2 * si + 3 * zi) % len(pos_names)]
                bg = bgs[(ci + si + zi) % len(bgs)]
                out.append((dataset.sized_caption(size, color, shape, pos, bg),
                            dict(kind="sized", color=color, shape=shape, count=1, size=size, pos=pos, bg=bg),
                            seed_base + i))
                i += 1
    for ci, color in enumerate(dataset.COLORS):
        for si, shape in enumerate(dataset.SHAPES):
            for ki, count in enumerate(dataset.COUNTS):
                bg = bgs[(ci + 2 * si + ki) % len(bgs)]
                out.append((dataset.count_caption(count, color, shape, bg),
                            dict(kind="count", color=color, shape=shape, count=dataset.COUNTS[count], size=None,
                                 pos=None, bg=bg), seed_base + i))
                i += 1
    return out


def analyze_scene(img):
    img = np.asarray(img)[..., :3].astype(np.float32)
    bg, _, color, alpha = _background_and_color(img)
    res = dict(bg=bg, color=color, shape=None, count=0, size=None, pos=None, shapes=None, extent=None)
    if color is None:
        return res
    comps = [c for c in _components(alpha > 0.5) if len(c) >= MIN_PIXELS]
    if not comps:
        return res
    # each pixel's coverage goes to the nearest component, so a close neighbour's edge does not
    # enter a shape's box (counted shapes stand 2..4 px apart)
    yx = np.stack(np.mgrid[0:alpha.shape[0], 0:alpha.shape[1]], -1).reshape(-1, 1, 2)
    near = np.stack([((yx - c[None]) ** 2).sum(-1).min(-1) for c in comps]).argmin(0).reshape(alpha.shape)
    geo = [classify(np.where(near == k, alpha, 0.0), c, small=True) for k, c in enumerate(comps)]
    shapes = [g["shape"] for g in geo]
    ext = geo[0]["extent"]
    res.update(count=len(comps), shapes=shapes, extent=ext, pos=position_of(geo[0]["center"]),
               shape=shapes[0] if len(set(shapes)) == 1 else "mixed",
               size="small" if ext < SMALL_BELOW else "large" if ext > LARGE_ABOVE else "")
    return res


def render(want, seed):
    rng = np.random.default_rng(seed)
    if want["kind"] == "sized":
        return dataset.render_sized(want["size"], want["color"], want["shape"], want["pos"], want["bg"], rng)
    count = next(k for k, v in dataset.COUNTS.items() if v == want["count"])
    return dataset.render_count(count, want["color"], want["shape"], want["bg"], rng)


class VaeRoundTrip:
    """A render through a VAE (posterior mean, decoded): the best any transformer on it can do."""

    def __init__(self, vae_dir):
        import torch
        from diffusers import AutoencoderKL
        self.torch = torch
        self.vae = AutoencoderKL.from_pretrained(vae_dir).eval()

    def __call__(self, img):
        x = self.torch.from_numpy(img.astype(np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        with self.torch.no_grad():
            y = self.vae.decode(self.vae.encode(x).latent_dist.mean).sample[0]
        return ((y.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)


def matches(got, want, k):
    return want[k] is None or got[k] == want[k]  # counted prompts name no position or size


def score(results):
    n = len(results)
    acc = {k: sum(matches(g, w, k) for g, w in results) / n for k in KEYS}
    for kind in ("sized", "count"):
        sub = [(g, w) for g, w in results if w["kind"] == kind]
        acc[f"{kind} prompts"] = sum(all(matches(g, w, k) for k in HEADLINE) for g, w in sub) / max(len(sub), 1)
    acc["+".join(HEADLINE)] = sum(all(matches(g, w, k) for k in HEADLINE) for g, w in results) / n
    return acc


def main():
    ap = common_args("demo-pixart-scenes", "directory to keep the generated PNGs in", "more ditrt txt2img arguments",
                     seed_base=3000)
    ap.add_argument("--vae", help="score the renders after a round trip through this VAE folder (the ceiling for "
                    "any model on it) instead of generating")
    a = ap.parse_args()
    a.self_test |= bool(a.vae)
    trip = VaeRoundTrip(a.vae) if a.vae else (lambda img: img)
    keep = a.keep or tempfile.mkdtemp(prefix="ditrt-quality-scenes-")
    os.makedirs(keep, exist_ok=True)
    gen = DiffusersGen(a) if a.sampler == "diffusers" and not a.self_test else None
    results = []
    for i, (prompt, want, seed) in enumerate(prompt_set(a.seed_base)):
        path = os.path.join(keep, f"{i:02d}.png")
        img = trip(render(want, seed)) if a.self_test else gen(prompt, seed, path) if gen else gen_ditrt(a, prompt, seed, path)
        got = analyze_scene(img)
        results.append((got, want))
        ok = all(matches(got, want, k) for k in HEADLINE)
        if a.verbose or not ok:
            print(f"  {i:02d} {'ok ' if ok else 'BAD'} '{prompt}' -> {got}")
    acc = score(results)
    what = f"renders through {a.vae}" if a.vae else "dataset renders" if a.self_test else f"{a.sampler} {a.dtype} steps={a.steps} cfg={a.cfg}"
    print(f"scenes quality ({what}, {len(results)} prompts): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in acc.items()))
    print(f"images in {keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
