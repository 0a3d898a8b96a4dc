"""Assemble the demo pipeline folder (issue 8) from a training work directory.

    .venv-ref/bin/python scripts/demo/assemble.py WORK_DIR [OUT_DIR=assets/demo-pixart]
    .venv-ref/bin/python scripts/demo/assemble.py WORK_DIR assets/demo-pixart-small --small
    .venv-ref/bin/python scripts/demo/assemble.py WORK_DIR assets/demo-latte --latte [--vae=demo-pixart-scenes]
    .venv-ref/bin/python scripts/demo/assemble.py WORK_DIR assets/demo-pixart-scenes --scenes

--small assembles the second, smaller transformer (train_dit.py --variant small, trained on
the main folder's frozen text encoder) with tokenizer/, text_encoder/ and vae/ as relative
symlinks into ../demo-pixart (as tests/fixtures/pixart-pipe-tiny does): a model zoo of two
transformers over the same VAE and text encoder, nothing stored twice.
--latte assembles the text-to-video model (train_latte.py) as a LattePipeline folder: its own
tokenizer (tokenizer-latte/) and text encoder, vae/ a relative symlink into ../demo-pixart, or
into the folder --vae= names (the image model train_latte.py --init started from).
--scenes assembles the sizes-and-counts image model (train_dit.py --data scenes on a train_vae.py
--down 2 VAE): everything its own (tokenizer-scenes/, vae/, ckpt-scenes/).

WORK_DIR holds vae/ (train_vae.py), tokenizer/ and ckpt-<variant>/{text_encoder,transformer}
(train_dit.py). OUT_DIR becomes a diffusers PixArtSigmaPipeline folder: model_index.json,
scheduler/scheduler_config.json (PixArt's DPM-Solver++ config), tokenizer/, text_encoder/,
transformer/, vae/ — weights in f32 safetensors (the whole folder is a few MB).
Σ, not α: the α pipeline passes micro-conditions whenever sample_size == 128 and encodes 120
tokens; Σ encodes 300 and never passes them. The models were trained on 16 tokens with the
padding masked, so 300 (masked) tokens give the same text features.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from pipeline import SCHEDULER  # noqa: E402  (scripts/fixtures/pipeline.py: PixArt's scheduler config)

INDEX = {
    "_class_name": "PixArtSigmaPipeline",
    "_diffusers_version": "0.30.3",
    "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
    "text_encoder": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "T5Tokenizer"],
    "transformer": ["diffusers", "PixArtTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


LATTE_INDEX = dict(INDEX, _class_name="LattePipeline", transformer=["diffusers", "LatteTransformer3DModel"])


def copy_dir(src, dst):
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def main():
    args = [x for x in sys.argv[1:] if not x.startswith("--")]
    variant = "small" if "--variant=small" in sys.argv or "--small" in sys.argv else "main"
    variant = "latte" if "--latte" in sys.argv else "scenes" if "--scenes" in sys.argv else variant
    work = args[0]
    out = args[1] if len(args) > 1 else os.path.join("assets", "demo-pixart")
    vae_from = next((x.split("=", 1)[1] for x in sys.argv if x.startswith("--vae=")), "demo-pixart")
    os.makedirs(os.path.join(out, "scheduler"), exist_ok=True)
    if variant in ("small", "latte"):
        for part in ("tokenizer", "text_encoder", "vae") if variant == "small" else ("vae",):
            dst = os.path.join(out, part)
            if os.path.islink(dst) or os.path.exists(dst):
                shutil.rmtree(dst) if not os.path.islink(dst) else os.remove(dst)
            os.symlink(os.path.join("..", vae_from if part == "vae" else "demo-pixart", part), dst)
        if variant == "small":
            copy_dir(os.path.join(work, "ckpt-small", "transformer"), os.path.join(out, "transformer"))
        else:
            copy_dir(os.path.join(work, "tokenizer-latte"), os.path.join(out, "tokenizer"))
            for part in ("text_encoder", "transformer"):
                copy_dir(os.path.join(work, "ckpt-latte", part), os.path.join(out, part))
    else:
        copy_dir(os.path.join(work, "tokenizer-scenes" if variant == "scenes" else "tokenizer"),
                 os.path.join(out, "tokenizer"))
        copy_dir(os.path.join(work, "vae"), os.path.join(out, "vae"))
        for part in ("text_encoder", "transformer"):
            copy_dir(os.path.join(work, f"ckpt-{variant}", part), os.path.join(out, part))
    with open(os.path.join(out, "scheduler", "scheduler_config.json"), "w") as f:
        json.dump(SCHEDULER, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump(LATTE_INDEX if variant == "latte" else INDEX, f, indent=2, sort_keys=True)
        f.write("\n")
    total = 0
    for dp, _, fs in os.walk(out):  # symlinked folders are not followed: counts what is stored
        for fn in fs:
            total += os.path.getsize(os.path.join(dp, fn))
    print(f"{out}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
