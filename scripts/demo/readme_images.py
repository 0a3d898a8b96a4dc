"""Draws the README's demo images with ./ditrt from assets/demo-pixart (issue 8).

    .venv-ref/bin/python scripts/demo/readme_images.py [OUT_DIR=assets/readme]

demo.png: the `make demo` prompt and seed, upscaled 4x (nearest) from 32x32.
grid.png: 16 prompts in a 4x4 grid, each 32x32 upscaled 4x, 20 DPM-Solver++ steps, cfg 4.5.
scenes.png: 8 counts-and-sizes prompts from assets/demo-pixart-scenes in a 4x2 grid, 4x (scenes.txt).
demo-video.png: the 8 frames of `make demo`'s out/demo.mp4 (assets/demo-latte) side by side, 4x.
videos.png: 4 more clips from assets/demo-latte, one row of 8 frames each, 4x (videos.txt).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

DEMO_PROMPT = "a red circle on the left on a black background"
DEMO_VIDEO_PROMPT = "a blue triangle moving up on a white background"  # the Makefile's DEMO_VIDEO_PROMPT
GRID = [
    "a red circle on the left on a black background", "a green square on a white background",
    "a blue triangle at the top on a gray background", "a yellow circle at the bottom on a black background",
    "a purple square on the right on a white background", "a red triangle on a gray background",
    "a green circle at the top on a black background", "a blue square at the bottom on a white background",
    "a yellow triangle on the left on a gray background", "a purple circle on a black background",
    "a red square at the top on a white background", "a green triangle on the right on a black background",
    "a blue circle on the left on a white background", "a yellow square on a gray background",
    "a purple triangle at the bottom on a white background", "a green square on the left on a gray background",
]

SCENES = [
    "two green squares on a black background", "three red circles on a white background",
    "a small blue triangle on a gray background", "a large yellow square on a black background",
    "two purple triangles on a white background", "three yellow squares on a gray background",
    "a small red circle at the top on a black background", "a large green circle on a white background",
]

VIDEOS = [
    "a red square moving right on a black background", "a green circle moving left on a white background",
    "a purple triangle moving down on a gray background", "a yellow square moving up on a white background",
]


def gen(prompt, seed, path, model=None):
    model = model or os.environ.get("DEMO_MODEL", "assets/demo-pixart")
    subprocess.run(["./ditrt", "txt2img", "-m", model, "-p", prompt, "--steps", "20", "--cfg", "4.5",
                    "--seed", str(seed), "--quiet", "-o", path], check=True)
    return np.array(Image.open(path).convert("RGB"))


def grid_png(tiles, cols, path):
    rows = [np.concatenate(tiles[r * cols:(r + 1) * cols], 1) for r in range(len(tiles) // cols)]
    grid = np.concatenate(rows, 0)
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(path)


def write_list(path, what, prompts):
    with open(path, "w") as f:
        f.write(f"{what}, row by row (seed 100 + index; 20 DPM-Solver++ steps, cfg 4.5):\n")
        f.writelines(f"{i:2d} {p}\n" for i, p in enumerate(prompts))


def clip_strip(prompt, seed, d):
    """One clip as PNG frames (the MP4 is lossy) in folder d, concatenated left to right."""
    os.makedirs(d)
    subprocess.run(["./ditrt", "txt2vid", "-m", "assets/demo-latte", "-p", prompt, "--steps", "20", "--cfg",
                    "4.5", "--seed", str(seed), "--threads", "1", "--quiet", "-o", d + "/"], check=True)
    frames = sorted(f for f in os.listdir(d) if f.endswith(".png"))
    return np.concatenate([np.array(Image.open(os.path.join(d, f)).convert("RGB")) for f in frames], 1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("assets", "readme")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    demo = gen(DEMO_PROMPT, 0, os.path.join(tmp, "demo.png"))
    Image.fromarray(demo).resize((128, 128), Image.NEAREST).save(os.path.join(out, "demo.png"))
    grid_png([gen(p, 100 + i, os.path.join(tmp, f"{i}.png")) for i, p in enumerate(GRID)], 4,
             os.path.join(out, "grid.png"))
    write_list(os.path.join(out, "grid.txt"), "grid.png", GRID)
    grid_png([gen(p, 100 + i, os.path.join(tmp, f"s{i}.png"), "assets/demo-pixart-scenes") for i, p in enumerate(SCENES)],
             4, os.path.join(out, "scenes.png"))
    write_list(os.path.join(out, "scenes.txt"), "scenes.png (assets/demo-pixart-scenes)", SCENES)
    grid_png([clip_strip(DEMO_VIDEO_PROMPT, 0, os.path.join(tmp, "clip"))], 1, os.path.join(out, "demo-video.png"))
    grid_png([clip_strip(p, 100 + i, os.path.join(tmp, f"clip{i}")) for i, p in enumerate(VIDEOS)], 1,
             os.path.join(out, "videos.png"))
    write_list(os.path.join(out, "videos.txt"), "videos.png (assets/demo-latte, 8 frames a row)", VIDEOS)
    print(f"wrote {out}/demo.png, {out}/grid.png, {out}/scenes.png, {out}/demo-video.png, {out}/videos.png")


if __name__ == "__main__":
    main()
