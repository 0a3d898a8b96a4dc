"""Writes a PixArt-XL-2-sized pipeline folder with random weights (issue 5's plan benchmark).

    .venv-ref/bin/python scripts/bench/make_xl_proxy.py build/xl-proxy

Real PixArt weights cannot be downloaded here, so DiTFastAttn plans for the XL-2 shape are
calibrated on this proxy: a PixArtTransformer2DModel with PixArt-Σ-XL-2's block shapes (28 layers,
1152 wide, 16 heads, caption_channels 4096) and diffusers' default initialization, behind a
one-layer random T5 with d_model 4096 and the demo model's tokenizer (PixArt-α pipeline class), VAE (4x, 4 latent channels)
and scheduler. Plans found on it exercise the plan machinery at the XL shape; they say nothing
about which attention a trained model can skip. Weights are bf16 (1.2 GB). Needs the reference venv
(scripts/make-venv.sh); never needed by make/test/demo.
"""
import os
import shutil
import sys

import torch
from diffusers import PixArtTransformer2DModel
from transformers import T5Config, T5EncoderModel

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
demo = os.path.join(root, "assets", "demo-pixart")


def main(out):
    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    for part in ("tokenizer", "vae", "scheduler"):
        dst = os.path.join(out, part)
        if not os.path.exists(dst):
            shutil.copytree(os.path.join(demo, part), dst)
    # PixArt-α's pipeline (120 text tokens, as `ditrt bench` uses) rather than Σ's 300: at the
    # small calibration resolution the cross-attention K/V of 300 tokens would cost more than the rest
    with open(os.path.join(demo, "model_index.json")) as f:
        index = f.read().replace("PixArtSigmaPipeline", "PixArtAlphaPipeline")
    with open(os.path.join(out, "model_index.json"), "w") as f:
        f.write(index)
    vocab = T5Config.from_pretrained(os.path.join(demo, "text_encoder")).vocab_size
    te = T5EncoderModel(T5Config(vocab_size=vocab, d_model=4096, d_kv=64, d_ff=256, num_layers=1, num_heads=4,
                                 feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False))
    te.save_pretrained(os.path.join(out, "text_encoder"), safe_serialization=True)
    tr = PixArtTransformer2DModel(sample_size=128, num_layers=28, attention_head_dim=72, num_attention_heads=16,
                                  in_channels=4, out_channels=8, patch_size=2, cross_attention_dim=1152,
                                  caption_channels=4096, norm_type="ada_norm_single", norm_elementwise_affine=False,
                                  norm_eps=1e-6, use_additional_conditions=False, interpolation_scale=2)
    tr.to(torch.bfloat16).save_pretrained(os.path.join(out, "transformer"), safe_serialization=True,
                                          max_shard_size="10GB")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "xl-proxy"))
