#!/usr/bin/env python3
"""Generate tiny PixArt transformer reference fixtures for ditrt tests.

Usage (from the repo root):
    .venv-ref/bin/python scripts/make_fixtures.py [--out tests/fixtures]

Produces, for each of pixart-alpha-tiny and pixart-sigma-tiny:
    <model>/model_index.json
    <model>/transformer/config.json
    <model>/transformer/diffusion_pytorch_model.safetensors
    <model>/case_<name>.in.safetensors   (hidden_states, encoder_hidden_states,
                                          timestep, encoder_attention_mask
                                          [+ resolution, aspect_ratio for alpha])
    <model>/case_<name>.out.safetensors  (sample)

Everything is deterministic: fixed torch seed, float32, single thread.
Every parameter is re-initialised with randn * 0.2 so no path is zero
(diffusers zero-inits some layers, which would hide bugs).
"""
import argparse
import json
import os
import sys

import torch
import diffusers
from diffusers import PixArtTransformer2DModel
from diffusers.utils import logging as dlogging
from safetensors.torch import save_file

SEED = 1234
INIT_STD = 0.2

COMMON = dict(
    patch_size=2,
    in_channels=4,
    out_channels=8,
    num_attention_heads=2,
    attention_head_dim=24,
    cross_attention_dim=48,
    caption_channels=32,
    norm_type="ada_norm_single",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    attention_bias=True,
    activation_fn="gelu-approximate",
    num_embeds_ada_norm=1000,
)

MODELS = {
    "pixart-alpha-tiny": dict(
        pipeline="PixArtAlphaPipeline",
        config=dict(COMMON, sample_size=8, num_layers=2, use_additional_conditions=True,
                    interpolation_scale=None),
        # name -> (B, H, W, T, timesteps, masks, resolution, aspect_ratio)
        cases={
            "square": dict(B=1, H=8, W=8, T=8, t=[999.0],
                           mask=[[1] * 8],
                           res=[[512.0, 512.0]], ar=[[1.0]]),
            "nonsquare": dict(B=2, H=10, W=6, T=7, t=[999.0, 321.5],
                              mask=[[1] * 7, [1, 1, 1, 1, 0, 0, 0]],
                              res=[[1024.0, 768.0], [512.0, 512.0]], ar=[[0.75], [1.0]]),
            "odd": dict(B=2, H=14, W=10, T=5, t=[1.0, 654.25],
                        mask=[[1, 1, 1, 0, 0], [1] * 5],
                        res=[[768.0, 1024.0], [1024.0, 1024.0]], ar=[[1.3333334], [1.0]]),
        },
    ),
    "pixart-sigma-tiny": dict(
        pipeline="PixArtSigmaPipeline",
        config=dict(COMMON, sample_size=16, num_layers=3, use_additional_conditions=False,
                    interpolation_scale=2),
        cases={
            "square": dict(B=1, H=16, W=16, T=8, t=[999.0],
                           mask=[[1] * 8]),
            "nonsquare": dict(B=2, H=12, W=20, T=7, t=[999.0, 321.5],
                              mask=[[1] * 7, [1, 1, 1, 1, 0, 0, 0]]),
            "odd": dict(B=2, H=14, W=18, T=5, t=[1.0, 654.25],
                        mask=[[1, 1, 1, 0, 0], [1] * 5]),
        },
    ),
}


def run_model(model, inp, dtype=torch.float32):
    """Run the transformer exactly as the fixtures define it.

    For non-f32 dtypes the float tensors are cast, except `timestep`, which is
    kept f32 (bf16 cannot represent e.g. 321.5; pipelines pass f32/long
    timesteps and diffusers upcasts it to f32 in get_timestep_embedding).
    """
    def c(x):
        return None if x is None else x.to(dtype)

    added = {"resolution": c(inp.get("resolution")), "aspect_ratio": c(inp.get("aspect_ratio"))}
    with torch.no_grad():
        out = model(
            c(inp["hidden_states"]),
            encoder_hidden_states=c(inp["encoder_hidden_states"]),
            timestep=inp["timestep"],
            added_cond_kwargs=added,
            encoder_attention_mask=c(inp["encoder_attention_mask"]),
            return_dict=False,
        )[0]
    return out.float()


def rel_l2(a, b):
    return (torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b)).item()


def build(name, spec, outdir, seed):
    # A private generator: model construction / from_pretrained also draw from
    # the global RNG, so using it for weights+inputs would be order-fragile.
    gen = torch.Generator().manual_seed(seed)
    mdir = os.path.join(outdir, name)
    tdir = os.path.join(mdir, "transformer")
    os.makedirs(tdir, exist_ok=True)

    model = PixArtTransformer2DModel(**spec["config"]).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, dtype=p.dtype, generator=gen) * INIT_STD)
    model.save_pretrained(tdir, safe_serialization=True)
    with open(os.path.join(mdir, "model_index.json"), "w") as f:
        json.dump({
            "_class_name": spec["pipeline"],
            "_diffusers_version": diffusers.__version__,
            "transformer": ["diffusers", "PixArtTransformer2DModel"],
        }, f, indent=2)
        f.write("\n")

    # Reload from disk so the outputs provably correspond to the saved files.
    model = PixArtTransformer2DModel.from_pretrained(tdir).eval().float()
    model_bf = PixArtTransformer2DModel.from_pretrained(tdir).eval().to(torch.bfloat16)
    nparam = sum(p.numel() for p in model.parameters())
    print(f"== {name}: {nparam} params, interpolation_scale="
          f"{model.pos_embed.interpolation_scale}, base_size={model.pos_embed.base_size}, "
          f"use_additional_conditions={model.use_additional_conditions}")

    ok = True
    for cname, cs in spec["cases"].items():
        B, H, W, T = cs["B"], cs["H"], cs["W"], cs["T"]
        inp = {
            "hidden_states": torch.randn(B, 4, H, W, generator=gen),
            "encoder_hidden_states": torch.randn(B, T, spec["config"]["caption_channels"], generator=gen),
            "timestep": torch.tensor(cs["t"], dtype=torch.float32),
            "encoder_attention_mask": torch.tensor(cs["mask"], dtype=torch.float32),
        }
        assert inp["timestep"].shape == (B,) and inp["encoder_attention_mask"].shape == (B, T)
        if model.use_additional_conditions:
            inp["resolution"] = torch.tensor(cs["res"], dtype=torch.float32)
            inp["aspect_ratio"] = torch.tensor(cs["ar"], dtype=torch.float32)

        out = run_model(model, inp)
        assert out.shape == (B, 8, H, W), out.shape
        std = out.std().item()
        finite = bool(torch.isfinite(out).all())
        sane = finite and 0.1 <= std <= 10.0
        ok &= sane
        try:
            bf = f"{rel_l2(run_model(model_bf, inp, torch.bfloat16), out):.4f}"
        except Exception as e:  # informational only
            bf = f"n/a ({type(e).__name__}: {e})"
        print(f"  case_{cname}: in {tuple(inp['hidden_states'].shape)} -> out {tuple(out.shape)}, "
              f"tokens={(H // 2) * (W // 2)}, out std={std:.4f}, max|.|={out.abs().max().item():.3f}"
              f"{'' if sane else '  <-- OUT OF RANGE'}; bf16 rel-L2 vs f32 = {bf}")

        save_file({k: v.contiguous() for k, v in inp.items()},
                  os.path.join(mdir, f"case_{cname}.in.safetensors"))
        save_file({"sample": out.contiguous()},
                  os.path.join(mdir, f"case_{cname}.out.safetensors"))
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                  "..", "tests", "fixtures"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    dlogging.set_verbosity_error()  # silence the "accelerate not found" notice
    torch.manual_seed(SEED)
    print(f"torch {torch.__version__}, diffusers {diffusers.__version__}")
    ok = True
    for i, (name, spec) in enumerate(MODELS.items()):
        ok &= build(name, spec, os.path.normpath(args.out), SEED + i)
    if not ok:
        print("ERROR: some output std outside [0.1, 10]", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
