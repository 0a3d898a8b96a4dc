"""Score demo-model videos against their prompts by exact pixel analysis (issue 8).

    .venv-ref/bin/python scripts/demo/quality_video.py [-m assets/demo-latte] [--steps 20] [--cfg 4.5]
        [--dtype f32|bf16] [--sampler ditrt|diffusers] [--keep DIR] [--self-test] [--extra "ARGS"]

For a fixed prompt set (every color x shape x direction of scripts/demo/dataset.py once,
backgrounds rotated through, seeds 2000..2059) it generates one 8-frame 32x32 clip per prompt
with `./ditrt txt2vid` (PNG frames) or diffusers' LattePipeline, and reads back:
  color, shape, background  quality.analyze on every frame, then the majority over the frames
                            (a frame where no shape is found counts as wrong);
  direction                 from the track of the shape's box center over the frames where one is
                            found (at least half of them): the least-squares slope of x and of y
                            against the frame index, times the clip length, is the displacement;
                            its larger axis names the direction if it is at least MIN_TRAVEL px
                            and twice the other axis, otherwise the clip is "still".
                            The dataset's clips travel dataset.TRAVEL = 12 px.
It prints per-attribute accuracy and the main score: color AND shape AND direction correct.
--self-test scores the dataset's own clips (must be 100%) to check the analysis itself.
"""
import os
import subprocess
import sys
import tempfile
from collections import Counter

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402
from quality import analyze, common_args  # noqa: E402

MIN_TRAVEL = 4.0  # px; a third of the training clips' travel
DIRS = list(dataset.DIRECTIONS)
DIR_OF_UNIT = {v: k for k, v in dataset.DIRECTIONS.items()}  # (1, 0) -> "rightward", ...
KEYS = ("color", "shape", "bg", "direction")


def prompt_set(seed_base=2000):
    """[(caption, attrs dict, seed)]: 60 prompts, deterministic."""
    out, i = [], 0
    bgs = list(dataset.BACKGROUNDS)
    for ci, color in enumerate(dataset.COLORS):
        for si, shape in enumerate(dataset.SHAPES):
            for di, direction in enumerate(DIRS):
                bg = bgs[(ci + si + di) % len(bgs)]
                out.append((dataset.video_caption(color, shape, direction, bg),
                            dict(color=color, shape=shape, direction=direction, bg=bg), seed_base + i))
                i += 1
    return out


def direction_of(centers):
    """[(x, y) or None per frame] -> (direction name or "still" or None, (dx, dy))."""
    pts = [(f, c) for f, c in enumerate(centers) if c is not None]
    if len(pts) < max(2, len(centers) // 2):
        return None, None
    f = np.array([p[0] for p in pts], np.float64)
    xy = np.array([p[1] for p in pts], np.float64)
    slope = np.polyfit(f, xy, 1)[0]  # (dx/frame, dy/frame)
    dx, dy = slope * (len(centers) - 1)
    big, small = max(abs(dx), abs(dy)), min(abs(dx), abs(dy))
    if big < MIN_TRAVEL or big < 2 * small:
        return "still", (dx, dy)
    unit = (int(np.sign(dx)), 0) if abs(dx) >= abs(dy) else (0, int(np.sign(dy)))
    return DIR_OF_UNIT[unit], (dx, dy)


def analyze_clip(frames):
    """frames: [F, H, W, 3] uint8 -> dict(color, shape, bg, direction, travel)."""
    per = [analyze(fr) for fr in frames]
    res = {}
    for k in ("color", "shape", "bg"):
        v, n = Counter(p[k] for p in per).most_common(1)[0]
        res[k] = v if n * 2 > len(per) else None
    res["direction"], travel = direction_of([p["center"] for p in per])
    res["travel"] = None if travel is None else (round(float(travel[0]), 1), round(float(travel[1]), 1))
    return res


def read_frames(d, n):
    return np.stack([np.array(Image.open(os.path.join(d, f"frame_{i:03d}.png")).convert("RGB")) for i in range(n)])


def gen_ditrt(a, prompt, seed, path):
    cmd = [a.ditrt, "txt2vid", "-m", a.model, "-p", prompt, "--steps", str(a.steps), "--cfg", str(a.cfg),
           "--seed", str(seed), "--dtype", a.dtype, "--threads", str(a.threads), "--quiet", "-o", path + "/"]
    cmd += a.extra.split() if a.extra else []
    os.makedirs(path, exist_ok=True)
    subprocess.run(cmd, check=True)
    return read_frames(path, dataset.FRAMES)


class DiffusersGen:
    def __init__(self, a):
        import torch
        from diffusers import LattePipeline
        torch.set_num_threads(a.threads)
        self.torch = torch
        self.pipe = LattePipeline.from_pretrained(a.model, torch_dtype=torch.float32)
        self.pipe.set_progress_bar_config(disable=True)
        self.a = a

    def __call__(self, prompt, seed, path):
        with self.torch.no_grad():
            v = self.pipe(prompt, num_inference_steps=self.a.steps, guidance_scale=self.a.cfg, height=dataset.SIZE,
                          width=dataset.SIZE, video_length=dataset.FRAMES, clean_caption=False, output_type="pil",
                          generator=self.torch.Generator().manual_seed(seed)).frames[0]
        os.makedirs(path, exist_ok=True)
        for i, im in enumerate(v):
            im.save(os.path.join(path, f"frame_{i:03d}.png"))
        return np.stack([np.array(im.convert("RGB")) for im in v])


def score(results):
    n = len(results)
    acc = {k: sum(r[0][k] == r[1][k] for r in results) / n for k in KEYS}
    acc["color+shape+direction"] = sum(all(r[0][k] == r[1][k] for k in ("color", "shape", "direction"))
                                       for r in results) / n
    acc["all"] = sum(all(r[0][k] == r[1][k] for k in KEYS) for r in results) / n
    return acc


def main():
    ap = common_args("demo-latte", "directory to keep the generated frames in (one folder per clip)",
                     "more ditrt txt2vid arguments", seed_base=2000)
    a = ap.parse_args()
    keep = a.keep or tempfile.mkdtemp(prefix="ditrt-quality-video-")
    os.makedirs(keep, exist_ok=True)
    gen = DiffusersGen(a) if a.sampler == "diffusers" and not a.self_test else None
    results = []
    for i, (prompt, want, seed) in enumerate(prompt_set(a.seed_base)):
        path = os.path.join(keep, f"{i:02d}")
        if a.self_test:
            frames = dataset.render_clip(want["color"], want["shape"], want["direction"], want["bg"],
                                         np.random.default_rng(seed))
        elif gen:
            frames = gen(prompt, seed, path)
        else:
            frames = gen_ditrt(a, prompt, seed, path)
        got = analyze_clip(frames)
        results.append((got, want))
        ok = all(got[k] == want[k] for k in ("color", "shape", "direction"))
        if a.verbose or not ok:
            print(f"  {i:02d} {'ok ' if ok else 'BAD'} '{prompt}' -> {got}")
    acc = score(results)
    what = "dataset clips" if a.self_test else f"{a.sampler} {a.dtype} steps={a.steps} cfg={a.cfg}"
    print(f"video quality ({what}, {len(results)} prompts): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in acc.items()))
    print(f"frames in {keep}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
