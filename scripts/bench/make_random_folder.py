"""Writes model folders of real shapes with random weights, for `ditrt bench load` (issue 24, item 4).

    /work/venv-cur/bin/python scripts/bench/make_random_folder.py pixart OUT [--dtype bf16|f32] [--layers L]
    /work/venv-cur/bin/python scripts/bench/make_random_folder.py t5 OUT [--dtype bf16|f32] [--layers L]
    /work/venv-cur/bin/python scripts/bench/make_random_folder.py pipeline OUT [--layers L] [--t5-layers L]

pixart: a PixArt-XL-2 transformer folder (PixArtTransformer2DModel, 28 blocks of 1152, 0.6 B params:
1.2 GB bf16). t5: a T5-XXL encoder folder (d_model 4096, d_ff 10240, 64 heads; 24 layers is 4.7 B
params, 9.4 GB bf16, so --layers picks fewer). pipeline: a PixArt-alpha pipeline folder (120 text
tokens) of both plus the SD VAE's shapes (AutoencoderKL, 8x, 4 latent channels), with the demo
model's tokenizer and scheduler (the stacked end-to-end benchmark, scripts/bench/stacked.sh). The model is built on torch's meta device (no
memory) for its names, shapes and config.json; each tensor's bytes are then written one at a time
(normal * 0.02, seeded), so writing needs about one tensor of memory. Dev only; never needed by
make/test/demo.
"""
import argparse
import json
import os
import struct

import numpy as np
import torch


def meta_pixart(layers):
    from diffusers import PixArtTransformer2DModel
    with torch.device("meta"):
        m = PixArtTransformer2DModel(sample_size=128, num_layers=layers, attention_head_dim=72, num_attention_heads=16,
                                     in_channels=4, out_channels=8, patch_size=2, cross_attention_dim=1152,
                                     caption_channels=4096, norm_type="ada_norm_single", norm_elementwise_affine=False,
                                     norm_eps=1e-6, use_additional_conditions=False, interpolation_scale=1)
    return m, "diffusion_pytorch_model.safetensors"


def meta_t5(layers):
    from transformers import T5Config, T5EncoderModel
    cfg = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=layers, num_heads=64,
                   feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False,
                   tie_word_embeddings=False)
    with torch.device("meta"):
        m = T5EncoderModel(cfg)
    return m, "model.safetensors"


def meta_vae(layers):
    from diffusers import AutoencoderKL
    with torch.device("meta"):
        m = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                          block_out_channels=(128, 256, 512, 512), norm_num_groups=32, sample_size=512,
                          down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                          scaling_factor=0.18215)
    return m, "diffusion_pytorch_model.safetensors"


def write_pipeline(out, a):
    import shutil
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    demo = os.path.join(root, "assets", "demo-pixart")
    os.makedirs(out, exist_ok=True)
    for part in ("tokenizer", "scheduler"):
        if not os.path.exists(os.path.join(out, part)):
            shutil.copytree(os.path.join(demo, part), os.path.join(out, part))
    with open(os.path.join(demo, "model_index.json")) as f:  # alpha: 120 tokens, as the benchmarks use
        index = f.read().replace("PixArtSigmaPipeline", "PixArtAlphaPipeline")
    with open(os.path.join(out, "model_index.json"), "w") as f:
        f.write(index)
    m, fname = meta_pixart(a.layers or 28)
    write(os.path.join(out, "transformer"), m, fname, a.dtype, a.seed)
    m, fname = meta_t5(a.t5_layers or 24)
    write(os.path.join(out, "text_encoder"), m, fname, a.dtype, a.seed + 1)
    m, fname = meta_vae(0)
    write(os.path.join(out, "vae"), m, fname, a.dtype, a.seed + 2)


def write(out, model, fname, dtype, seed):
    os.makedirs(out, exist_ok=True)
    model.config.save_pretrained(out) if hasattr(model.config, "save_pretrained") else model.save_config(out)
    sd = model.state_dict()
    names = [n for n in sd if n != "encoder.embed_tokens.weight" or "shared.weight" not in sd]
    esize = 2 if dtype == "bf16" else 4
    header, off = {}, 0
    for n in names:
        nb = int(np.prod(sd[n].shape)) * esize
        header[n] = {"dtype": dtype.upper(), "shape": list(sd[n].shape), "data_offsets": [off, off + nb]}
        off += nb
    js = json.dumps(header, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 8)
    rng = np.random.default_rng(seed)
    with open(os.path.join(out, fname), "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for n in names:
            shape = tuple(sd[n].shape)
            a = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            if n.endswith("norm.weight") or "layer_norm" in n:
                a += np.float32(1.0)
            if dtype == "bf16":
                a = (a.view(np.uint32) >> 16).astype(np.uint16)  # truncation: any bits will do
            f.write(a.tobytes())
            del a
    print(f"wrote {out}: {len(names)} tensors, {off / 1e9:.2f} GB of {dtype} weights")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["pixart", "t5", "vae", "pipeline"])
    p.add_argument("out")
    p.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    p.add_argument("--layers", type=int, default=0, help="blocks (default: all; pixart 28, t5 24)")
    p.add_argument("--t5-layers", type=int, default=0, help="pipeline: T5 layers (default 24)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.kind == "pipeline":
        return write_pipeline(a.out, a)
    if a.kind == "pixart":
        m, fname = meta_pixart(a.layers or 28)
    elif a.kind == "vae":
        m, fname = meta_vae(0)
    else:
        m, fname = meta_t5(a.layers or 24)
    write(a.out, m, fname, a.dtype, a.seed)


if __name__ == "__main__":
    main()
