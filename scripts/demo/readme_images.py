"""Draws the README's demo images with ./ditrt from assets/demo-pixart (issue 8).

    .venv-ref/bin/python scripts/demo/readme_images.py [OUT_DIR=assets/readme]

demo.png: the `make demo` prompt and seed, upscaled 4x (nearest) from 32x32.
grid.png: 16 prompts in a 4x4 grid, each 32x32 upscaled 4x, 20 DPM-Solver++ steps, cfg 4.5.
demo-video.png: the 8 frames of `make demo`'s out/demo.mp4 (assets/demo-latte) side by side, 4x.
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


def gen(prompt, seed, path):
    subprocess.run(["./ditrt", "txt2img", "-m", os.environ.get("DEMO_MODEL", "assets/demo-pixart"), "-p", prompt, "--steps", "20", "--cfg", "4.5",
                    "--seed", str(seed), "--quiet", "-o", path], check=True)
    return np.array(Image.open(path).convert("RGB"))


def video_strip(out, tmp):
    """The make-demo clip as PNG frames (the MP4 is lossy), concatenated left to right."""
    d = os.path.join(tmp, "clip")
    os.makedirs(d)
    subprocess.run(["./ditrt", "txt2vid", "-m", "assets/demo-latte", "-p", DEMO_VIDEO_PROMPT, "--steps", "20", "--cfg",
                    "4.5", "--seed", "0", "--threads", "1", "--quiet", "-o", d + "/"], check=True)
    frames = sorted(f for f in os.listdir(d) if f.endswith(".png"))
    strip = np.concatenate([np.array(Image.open(os.path.join(d, f)).convert("RGB")) for f in frames], 1)
    Image.fromarray(strip).resize((strip.shape[1] * 4, strip.shape[0] * 4), Image.NEAREST).save(
        os.path.join(out, "demo-video.png"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("assets", "readme")
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp()
    demo = gen(DEMO_PROMPT, 0, os.path.join(tmp, "demo.png"))
    Image.fromarray(demo).resize((128, 128), Image.NEAREST).save(os.path.join(out, "demo.png"))
    tiles = [gen(p, 100 + i, os.path.join(tmp, f"{i}.png")) for i, p in enumerate(GRID)]
    grid = np.concatenate([np.concatenate(tiles[r * 4:r * 4 + 4], 1) for r in range(4)], 0)
    Image.fromarray(grid).resize((512, 512), Image.NEAREST).save(os.path.join(out, "grid.png"))
    with open(os.path.join(out, "grid.txt"), "w") as f:
        f.write("grid.png, row by row (seed 100 + index; 20 DPM-Solver++ steps, cfg 4.5):\n")
        f.writelines(f"{i:2d} {p}\n" for i, p in enumerate(GRID))
    video_strip(out, tmp)
    print(f"wrote {out}/demo.png, {out}/grid.png, {out}/demo-video.png")


if __name__ == "__main__":
    main()
