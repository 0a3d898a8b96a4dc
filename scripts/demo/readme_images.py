"""Draws the README's demo images with ./ditrt from assets/demo-pixart (issue 8).

    .venv-ref/bin/python scripts/demo/readme_images.py [OUT_DIR=assets/readme]

demo.png: the `make demo` prompt and seed, upscaled 4x (nearest) from 32x32.
grid.png: 16 prompts in a 4x4 grid, each 32x32 upscaled 4x, 20 DPM-Solver++ steps, cfg 4.5.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

DEMO_PROMPT = "a red circle on the left on a black background"
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
    print(f"wrote {out}/demo.png, {out}/grid.png")


if __name__ == "__main__":
    main()
