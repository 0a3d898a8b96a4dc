"""Train the demo AutoencoderKL (issue 8) on scripts/demo/dataset.py images.

    .venv-ref/bin/python scripts/demo/train_vae.py OUT_DIR [--minutes M]

A small diffusers AutoencoderKL (3 blocks: 4x downsampling, 4 latent channels; --down 2: 2 blocks)
trained with MSE on posterior samples plus a small KL term, one CPU thread, seeded. It trains for a fixed
wall-clock budget and saves OUT_DIR/vae (diffusers layout) every minute, so an interrupted run
still leaves a usable model. At the end scaling_factor is set to 1/std of the latents, as
Stable Diffusion does, so scaled latents have unit variance.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from diffusers import AutoencoderKL

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    down_block_types=["DownEncoderBlock2D"] * 3, up_block_types=["UpDecoderBlock2D"] * 3,
    block_out_channels=[16, 32, 64], layers_per_block=1, norm_num_groups=8,
    sample_size=dataset.SIZE, act_fn="silu",
)
# --down 2: one downsampling step (16x16 latents of a 32x32 image), for the scenes model, whose
# 8-10 px shapes lose their corners in the 4x latent (see scripts/demo/README.md)
VAE_CONFIG_2X = dict(VAE_CONFIG, down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                     block_out_channels=[32, 64])
KL_WEIGHT = 1e-4  # on the per-element mean KL: keeps latents bounded without blurring


def scaling_factor(vae, rng, draw, n=1024):
    x, _ = draw(rng, n)
    with torch.no_grad():
        z = vae.encode(torch.from_numpy(x)).latent_dist.sample(torch.Generator().manual_seed(1))
    return float(1.0 / z.std()), float(z.mean())


def save(vae, out, sf=None):
    d = os.path.join(out, "vae")
    if sf is not None:
        vae.register_to_config(scaling_factor=sf)
    vae.save_pretrained(d, safe_serialization=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--resume", action="store_true", help="continue from OUT_DIR/vae (a second, shorter phase)")
    ap.add_argument("--decoder-only", action="store_true",
                    help="continue from OUT_DIR/vae training only post_quant_conv + decoder: the latents (and so a "
                         "transformer trained on them) and scaling_factor stay valid")
    ap.add_argument("--data", default="plain", choices=("plain", "scenes"),
                    help="scenes: dataset.scene_batch (plain, sized and counted shapes), for the scenes model")
    ap.add_argument("--down", type=int, default=4, choices=(2, 4), help="downsampling factor of a new VAE")
    a = ap.parse_args()
    draw = dataset.scene_batch if a.data == "scenes" else dataset.batch
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rng = np.random.default_rng(1234)
    a.resume |= a.decoder_only
    new_config = VAE_CONFIG_2X if a.down == 2 else VAE_CONFIG
    vae = AutoencoderKL.from_pretrained(os.path.join(a.out, "vae")) if a.resume else AutoencoderKL(**new_config)
    if a.resume:
        rng = np.random.default_rng(4321 if not a.decoder_only else 5678)
    if a.decoder_only:
        for mod in (vae.encoder, vae.quant_conv):
            mod.requires_grad_(False)
    print(f"vae params: {sum(p.numel() for p in vae.parameters()) / 1e6:.3f} M", flush=True)
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=a.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    t0 = time.time()
    last_save = t0
    step = 0
    ema = None
    budget = a.minutes * 60
    while time.time() - t0 < budget:
        frac = (time.time() - t0) / budget
        for pg in opt.param_groups:  # short warmup, cosine decay over the time budget
            pg["lr"] = a.lr * min(1.0, (step + 1) / 50) * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        x, _ = draw(rng, a.batch)
        x = torch.from_numpy(x)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=g)
        rec = vae.decode(z).sample
        mse = torch.nn.functional.mse_loss(rec, x)
        kl = 0.5 * (post.mean ** 2 + post.var - 1.0 - post.logvar).mean()
        loss = mse + KL_WEIGHT * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        ema = float(mse) if ema is None else 0.98 * ema + 0.02 * float(mse)
        step += 1
        if step % 20 == 0:
            print(f"step {step} t={time.time() - t0:.0f}s mse={float(mse):.5f} ema={ema:.5f} kl={float(kl):.3f}", flush=True)
        if time.time() - last_save > 60:
            save(vae, a.out)
            last_save = time.time()
    vae.eval()
    if a.decoder_only:
        save(vae, a.out)
        print(f"done: {step} decoder-only steps, {time.time() - t0:.0f}s, final mse ema {ema:.5f}", flush=True)
        return
    sf, mean = scaling_factor(vae, np.random.default_rng(99), draw)
    save(vae, a.out, sf)
    print(f"done: {step} steps, {time.time() - t0:.0f}s, final mse ema {ema:.5f}, scaling_factor {sf:.5f} (latent mean {mean:.3f})", flush=True)


if __name__ == "__main__":
    main()
