#!/usr/bin/env python3
"""Converts an Open-Sora v1.0 STDiT checkpoint (.pth/.pt, as hpcai-tech/Open-Sora publishes
OpenSora-v1-16x256x256.pth, OpenSora-v1-HQ-16x256x256.pth and OpenSora-v1-HQ-16x512x512.pth)
into the transformer folder ditrt loads (runtime/models/stdit.c):

    OUT/transformer/config.json                           "_class_name": "STDiT" + the
                                                          STDiT constructor's arguments
    OUT/transformer/diffusion_pytorch_model.safetensors   the state dict, names unchanged

    python3 scripts/convert_opensora.py CKPT.pth OUT [--size 256|512] [--frames 16]
        [--space-scale S] [--time-scale S] [--dtype keep|float32|float16|bfloat16]

Dev-only (needs torch and safetensors; nothing in make uses it). What it does to the state
dict, as the repository's own loader (opensora/utils/ckpt_utils.py find_model) does:
- unwraps {"ema": ...}, {"state_dict": ...} or {"model": ...} and a "module." prefix;
- drops the pos_embed / pos_embed_temporal buffers (ditrt computes them for each input size);
- a 4-D x_embedder.proj.weight (a PixArt-style conv) gets the frame axis: [C, in, 1, p, p].
It keeps y_embedder.y_embedding (the null caption the repository's CFG uses as the negative).
Every tensor an STDiT-XL/2-shaped model needs is checked to be there before writing.
Defaults follow the repository's v1.0 inference configs: 256x256 -> space_scale 0.5,
512x512 -> 1.0; time_scale 1.0; 16 frames; STDiT-XL/2 (depth 28, hidden 1152, 16 heads,
patch 1x2x2, caption 4096 channels, 120 tokens). Depth, hidden size and caption channels are
read from the weights.
"""
import argparse
import json
import os
import re
import sys

import torch
from safetensors.torch import save_file

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def unwrap(sd):
    for key in ("ema", "state_dict", "model"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if not all(torch.is_tensor(v) for v in sd.values()):
        sys.exit("checkpoint: not a state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


def block_names(i):
    p = f"blocks.{i}."
    lin = ["attn.qkv", "attn.proj", "attn_temp.qkv", "attn_temp.proj", "cross_attn.q_linear",
           "cross_attn.kv_linear", "cross_attn.proj", "mlp.fc1", "mlp.fc2"]
    return [p + "scale_shift_table"] + [p + n + s for n in lin for s in (".weight", ".bias")]


def required(depth):
    names = ["x_embedder.proj.weight", "x_embedder.proj.bias", "t_block.1.weight", "t_block.1.bias",
             "final_layer.scale_shift_table", "final_layer.linear.weight", "final_layer.linear.bias"]
    names += [f"t_embedder.mlp.{k}.{s}" for k in (0, 2) for s in ("weight", "bias")]
    names += [f"y_embedder.y_proj.fc{k}.{s}" for k in (1, 2) for s in ("weight", "bias")]
    for i in range(depth):
        names += block_names(i)
    return names


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ckpt")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=512, help="video height = width in pixels (256 or 512)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--space-scale", type=float, default=None)
    ap.add_argument("--time-scale", type=float, default=1.0)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--dtype", choices=["keep", *DTYPES], default="keep")
    a = ap.parse_args()

    sd = unwrap(torch.load(a.ckpt, map_location="cpu", weights_only=True))
    for k in ("pos_embed", "pos_embed_temporal"):
        sd.pop(k, None)
    w = sd.get("x_embedder.proj.weight")
    if w is None:
        sys.exit(f"{a.ckpt}: no x_embedder.proj.weight: not an STDiT checkpoint")
    if w.dim() == 4:
        sd["x_embedder.proj.weight"] = w = w.unsqueeze(2)
    hidden, cin, pt, ph, pw = w.shape
    depth = 1 + max(int(m.group(1)) for k in sd for m in [re.match(r"blocks\.(\d+)\.", k)] if m)
    missing = [n for n in required(depth) if n not in sd]
    if missing:
        sys.exit(f"{a.ckpt}: missing {len(missing)} tensors, e.g. {missing[:3]}")
    if (pt, ph) != (1, pw):
        sys.exit(f"{a.ckpt}: patch {pt}x{ph}x{pw}: ditrt runs 1 x p x p patches only")
    out_ch = sd["final_layer.linear.weight"].shape[0] // (ph * pw)
    caption = sd["y_embedder.y_proj.fc1.weight"].shape[1]
    tokens = sd["y_embedder.y_embedding"].shape[0] if "y_embedder.y_embedding" in sd else 120
    latent = a.size // 8
    cfg = {
        "_class_name": "STDiT",
        "input_size": [a.frames, latent, latent],
        "in_channels": cin,
        "patch_size": [pt, ph, pw],
        "hidden_size": hidden,
        "depth": depth,
        "num_heads": a.heads,
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / hidden,
        "pred_sigma": out_ch == 2 * cin,
        "caption_channels": caption,
        "model_max_length": tokens,
        "space_scale": a.space_scale if a.space_scale is not None else (0.5 if a.size <= 256 else 1.0),
        "time_scale": a.time_scale,
    }
    if a.dtype != "keep":
        sd = {k: v.to(DTYPES[a.dtype]) for k, v in sd.items()}
    tdir = os.path.join(a.out, "transformer")
    os.makedirs(tdir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(tdir, "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(tdir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    print(f"{tdir}: STDiT depth {depth}, hidden {hidden}, {len(sd)} tensors")


if __name__ == "__main__":
    main()
