"""Train the demo Stable Diffusion pipeline (issue 22 item 5): a CLIP tokenizer with its own small BPE
vocabulary, a tiny CLIPTextModel and a small UNet2DConditionModel, the text encoder and U-Net
trained jointly on the frozen demo VAE's latents of the one-shape images (dataset.sample).

    /work/venv-cur/bin/python scripts/demo/train_unet.py WORK_DIR [--minutes M] [--vae assets/demo-pixart/vae]
    /work/venv-cur/bin/python scripts/demo/train_unet.py WORK_DIR --assemble OUT   (e.g. assets/demo-sd)

This script
  1. learns a byte-level BPE in CLIP's format (</w> word ends, CLIP's 256-byte alphabet) on the
     caption words until every word is one token, and writes WORK/tokenizer (vocab.json,
     merges.txt, tokenizer_config.json, special_tokens_map.json: SD 1.5's layout, pad
     <|endoftext|>, 77 tokens),
  2. encodes a fixed pool of dataset images with the frozen VAE (posterior mean and std),
  3. trains the CLIPTextModel and the U-Net together with the DDPM epsilon objective on SD's
     schedule (scaled_linear betas 0.00085..0.012, 1000 steps), every caption padded to 77 with
     <|endoftext|> and no attention mask, as StableDiffusionPipeline encodes prompts; 10% of
     captions replaced by "" so classifier-free guidance against the empty prompt works.
It keeps an EMA of both models and saves the EMA weights to WORK/ckpt-sd/ every few minutes.
--assemble writes a StableDiffusionPipeline folder (save_pretrained; f32 safetensors) whose vae/
is a relative symlink to the VAE's folder, and whose scheduler is SD's DPMSolverMultistepScheduler
(ditrt has no PNDM). One CPU thread, fixed seeds; the budget is wall-clock minutes.
"""
import argparse
import copy
import json
import os
import sys
import time
from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
from tokenizers import Regex, normalizers, pre_tokenizers
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
import dataset  # noqa: E402
from clip import bytes_to_unicode, write_tokenizer  # noqa: E402  (scripts/fixtures/clip.py)

TEXT_LEN = 77
DROP_CAPTION = 0.1
CLIP_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   max_position_embeddings=TEXT_LEN, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                   projection_dim=64)
UNET_CONFIG = dict(in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
                   down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                   cross_attention_dim=CLIP_CONFIG["hidden_size"], attention_head_dim=(2, 4), norm_num_groups=8)
SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def learn_bpe(words):
    """CLIP-format merges learned on `words` (each counted once, pre-tokenized by CLIP's pipeline as
    in scripts/fixtures/clip.py): most frequent pair first, ties by the pair's strings, until
    every word is one symbol. Returns (vocab, merges)."""
    norm = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed",
                             invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    counts = Counter(w for line in words for w, _ in pre.pre_tokenize_str(norm.normalize_str(line)))
    state = [[list(w[:-1]) + [w[-1] + "</w>"], n] for w, n in sorted(counts.items())]
    merges = []
    while True:
        pairs = Counter()
        for syms, n in state:
            for a, b in zip(syms, syms[1:]):
                pairs[a, b] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w in state:
            syms, out, i = w[0], [], 0
            while i < len(syms):
                if i + 1 < len(syms) and (syms[i], syms[i + 1]) == best:
                    out.append(syms[i] + syms[i + 1])
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            w[0] = out
    alphabet = bytes_to_unicode()
    vocab = {}
    for t in alphabet + [c + "</w>" for c in alphabet]:
        vocab[t] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def make_tokenizer(work):
    d = os.path.join(work, "tokenizer")
    if not os.path.exists(os.path.join(d, "vocab.json")):
        words = sorted({w for c in dataset.all_captions() for w in c.split()})
        vocab, merges = learn_bpe(words)
        write_tokenizer(d, vocab, merges, "<|endoftext|>")
    tok = CLIPTokenizer.from_pretrained(d)
    for w in sorted({w for c in dataset.all_captions() for w in c.split()}):
        assert len(tok.tokenize(w)) == 1, f"caption word {w!r} is not one token"
    return tok


def text_config(tok):
    return CLIPTextConfig(vocab_size=len(tok.get_vocab()), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id, **CLIP_CONFIG)


def encode_pool(vae, n, seed):
    rng = np.random.default_rng(seed)
    means, stds, caps = [], [], []
    with torch.no_grad():
        for i in range(0, n, 256):
            x, c = dataset.batch(rng, min(256, n - i))
            post = vae.encode(torch.from_numpy(x)).latent_dist
            means.append(post.mean)
            stds.append(post.std)
            caps += c
    return torch.cat(means), torch.cat(stds), caps


def ema_update(ema, model, decay):
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(decay).add_(p, alpha=1 - decay)


def save(work, te, unet, name="ckpt-sd"):
    d = os.path.join(work, name)
    te.save_pretrained(os.path.join(d, "text_encoder"))
    unet.save_pretrained(os.path.join(d, "unet"))


def cosine_lr(base, step, frac):
    """Linear warm-up over 200 steps, then a cosine from base to base/10 over the time budget."""
    return base * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))


def sd_alphas_cumprod():
    betas = torch.linspace(SD_SCHEDULE["beta_start"] ** 0.5, SD_SCHEDULE["beta_end"] ** 0.5, 1000,
                           dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def train(a):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    t_start = time.time()
    tok = make_tokenizer(a.work)
    cap = "a red circle on the left on a gray background"
    print(f"tokenizer: {len(tok.get_vocab())} ids; '{cap}' -> {tok.tokenize(cap)}", flush=True)
    vae = AutoencoderKL.from_pretrained(a.vae).eval()
    sf = vae.config.scaling_factor
    means, stds, caps = encode_pool(vae, a.pool, seed=2027)
    del vae
    print(f"pool: {len(caps)} latents {tuple(means.shape[1:])} in {time.time() - t_start:.0f}s, "
          f"scaling_factor {sf:.4f}", flush=True)
    uniq = sorted(set(caps)) + [""]
    input_ids = tok(uniq, max_length=TEXT_LEN, padding="max_length", truncation=True, return_tensors="pt").input_ids
    cap_ids = torch.tensor([uniq.index(c) for c in caps])
    empty = len(uniq) - 1

    torch.manual_seed(0)
    te = CLIPTextModel(text_config(tok))
    unet = UNet2DConditionModel(sample_size=means.shape[-1], **UNET_CONFIG)
    if a.init:
        te = CLIPTextModel.from_pretrained(os.path.join(a.init, "text_encoder"))
        unet = UNet2DConditionModel.from_pretrained(os.path.join(a.init, "unet"))
    te.train(), unet.train()
    ema_te, ema_unet = copy.deepcopy(te).eval(), copy.deepcopy(unet).eval()
    print(f"clip params {sum(p.numel() for p in te.parameters()) / 1e6:.3f} M, "
          f"unet params {sum(p.numel() for p in unet.parameters()) / 1e6:.3f} M", flush=True)
    params = list(te.parameters()) + list(unet.parameters())
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    ac = sd_alphas_cumprod()
    gen = torch.Generator().manual_seed(11)
    t0 = last_save = time.time()
    budget = a.minutes * 60 - (t0 - t_start)
    step, loss_ema = 0, None
    while True:
        frac = (time.time() - t0) / budget
        if frac >= 1 or (a.max_steps and step >= a.max_steps):
            break
        for pg in opt.param_groups:
            pg["lr"] = cosine_lr(a.lr, step, frac)
        idx = torch.randint(len(cap_ids), (a.batch,), generator=gen)
        x0 = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * sf
        ci = cap_ids[idx].clone()
        ci[torch.rand(a.batch, generator=gen) < DROP_CAPTION] = empty
        # stratified timesteps: lower variance of the loss estimate for a small batch
        t = ((torch.arange(a.batch) + torch.rand(a.batch, generator=gen)) * (1000 / a.batch)).long().clamp(max=999)
        eps = torch.randn(x0.shape, generator=gen)
        at = ac[t].view(-1, 1, 1, 1)
        xt = at.sqrt() * x0 + (1 - at).sqrt() * eps
        txt = te(input_ids=input_ids[ci]).last_hidden_state
        pred = unet(xt, t, encoder_hidden_states=txt, return_dict=False)[0]
        loss = F.mse_loss(pred, eps)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(ema_te, te, decay)
        ema_update(ema_unet, unet, decay)
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.99 * loss_ema + 0.01 * lv
        if step % 100 == 0 or step == 1:
            print(f"step {step} t={time.time() - t0:.0f}s loss={lv:.4f} ema={loss_ema:.4f} "
                  f"lr={opt.param_groups[0]['lr']:.2e}", flush=True)
        if time.time() - last_save > a.save_every:
            save(a.work, ema_te, ema_unet)
            last_save = time.time()
            print(f"saved at step {step}", flush=True)
    save(a.work, ema_te, ema_unet)
    print(f"done: {step} steps in {time.time() - t0:.0f}s, loss ema {loss_ema:.4f}", flush=True)


def sd_scheduler():
    """SD 1.x's scheduler settings (scaled_linear, steps_offset 1, epsilon) on DPM-Solver++ 2M, as
    `DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)` makes it from SD's PNDM."""
    return DPMSolverMultistepScheduler(**SD_SCHEDULE, steps_offset=1, prediction_type="epsilon",
                                       algorithm_type="dpmsolver++", solver_order=2)


def assemble(a, out):
    transformers.logging.set_verbosity_error()
    tok = CLIPTokenizer.from_pretrained(os.path.join(a.work, "tokenizer"))
    ck = a.ckpt or os.path.join(a.work, "ckpt-sd")
    te = CLIPTextModel.from_pretrained(os.path.join(ck, "text_encoder"), torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(ck, "unet"), torch_dtype=torch.float32)
    vae = AutoencoderKL.from_pretrained(a.vae)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=a.scheduler_fn(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    # the tokenizer files as SD 1.5 ships them (transformers 5 writes tokenizer.json instead)
    for f in os.listdir(os.path.join(out, "tokenizer")):
        os.remove(os.path.join(out, "tokenizer", f))
    write_tokenizer(os.path.join(out, "tokenizer"), json.load(open(os.path.join(a.work, "tokenizer", "vocab.json"))),
                    [tuple(l.split()) for l in open(os.path.join(a.work, "tokenizer", "merges.txt"), encoding="utf-8")
                     .read().splitlines()[1:]], "<|endoftext|>")
    vae_out = os.path.join(out, "vae")
    for f in os.listdir(vae_out):
        os.remove(os.path.join(vae_out, f))
    os.rmdir(vae_out)
    os.symlink(os.path.relpath(os.path.abspath(a.vae), os.path.abspath(out)), vae_out)
    print(f"wrote {out}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--minutes", type=float, default=32.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--save-every", type=float, default=300.0, help="seconds between checkpoints")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--vae", default=os.path.join(ROOT, "assets", "demo-pixart", "vae"))
    ap.add_argument("--init", help="start from DIR/{text_encoder,unet} (an earlier checkpoint)")
    ap.add_argument("--assemble", metavar="OUT", help="write the pipeline folder OUT from WORK's tokenizer and "
                    "checkpoint instead of training")
    ap.add_argument("--ckpt", help="with --assemble: the checkpoint folder (default WORK/ckpt-sd)")
    a = ap.parse_args()
    a.scheduler_fn = sd_scheduler
    if a.assemble:
        assemble(a, a.assemble)
    else:
        os.makedirs(a.work, exist_ok=True)
        train(a)


if __name__ == "__main__":
    main()
