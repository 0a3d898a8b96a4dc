"""Train the demo text encoder + PixArt transformer (issue 8), jointly, on VAE latents.

    .venv-ref/bin/python scripts/demo/train_dit.py WORK_DIR [--minutes M] [--variant main|small]

WORK_DIR must hold vae/ from train_vae.py. This script
  1. trains a SentencePiece unigram model on the caption vocabulary (T5 ids: pad=0 eos=1
     unk=2) and saves it through T5Tokenizer.save_pretrained to WORK_DIR/tokenizer,
  2. encodes a fixed pool of dataset images with the frozen VAE (posterior mean and std),
  3. trains a small T5EncoderModel and a PixArtTransformer2DModel (ada_norm_single,
     no micro-conditions, out_channels = in_channels: epsilon only, no learned sigma)
     together with the DDPM epsilon objective on PixArt's schedule (linear betas
     1e-4..0.02, 1000 steps). 10% of captions are replaced by "" so classifier-free
     guidance against the empty prompt works.
It keeps an EMA of both models' weights and saves the EMA weights to WORK_DIR/ckpt-<variant>/
{text_encoder,transformer} every few minutes, so whatever exists when time runs out is usable.
One CPU thread per process (--procs N: N data-parallel processes), fixed seeds.
"""
import argparse
import copy
import io
import os
import random
import sys
import time

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F
import transformers
from diffusers import AutoencoderKL, PixArtTransformer2DModel
from transformers import T5Config, T5EncoderModel, T5Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataparallel  # noqa: E402
import dataset  # noqa: E402

TEXT_LEN = 16  # longest caption is 12 tokens + </s>; padding beyond is masked, so 300 at inference is equivalent
DROP_CAPTION = 0.1
T5_CONFIG = dict(d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, relative_attention_num_buckets=32,
                 relative_attention_max_distance=128, feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6,
                 dropout_rate=0.0, is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False)
SCENES_VOCAB = 56  # the scene captions' 27 words, every one a piece, plus sub-pieces
DIT_CONFIGS = {
    "main": dict(num_layers=4, num_attention_heads=3, attention_head_dim=32),
    "small": dict(num_layers=2, num_attention_heads=2, attention_head_dim=32),
    "wide": dict(num_layers=4, num_attention_heads=4, attention_head_dim=32),
}


def dit_config(variant, latent_size, patch=2):
    c = dict(sample_size=latent_size, patch_size=patch, in_channels=4, out_channels=4,
             caption_channels=T5_CONFIG["d_model"], norm_type="ada_norm_single", use_additional_conditions=False,
             activation_fn="gelu-approximate", attention_bias=True, norm_elementwise_affine=False, norm_eps=1e-6,
             num_embeds_ada_norm=1000, interpolation_scale=1, dropout=0.0, upcast_attention=False)
    c.update(DIT_CONFIGS[variant])
    c["cross_attention_dim"] = c["num_attention_heads"] * c["attention_head_dim"]
    return c


def make_tokenizer(work, captions=None, vocab_size=48, name="tokenizer"):
    """WORK/NAME, trained on `captions` (default: the image captions) unless it exists."""
    d = os.path.join(work, name)
    if os.path.exists(os.path.join(d, "spiece.model")):
        return T5Tokenizer.from_pretrained(d)
    os.makedirs(d, exist_ok=True)
    spm.set_random_generator_seed(0)
    buf = io.BytesIO()
    # The 225 captions alone seed too few pieces for whole words; random word strings add them.
    caps = captions or dataset.all_captions()
    words = sorted({w for c in caps for w in c.split()})
    r = random.Random(0)
    caps = caps * 4 + [" ".join(r.choice(words) for _ in range(r.randint(1, 8))) for _ in range(3000)]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(caps), model_writer=buf, model_type="unigram", vocab_size=vocab_size,
        hard_vocab_limit=True, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>",
        unk_piece="<unk>", normalization_rule_name="nmt_nfkc", character_coverage=1.0, num_threads=1,
        byte_fallback=False, minloglevel=2)
    tmp = os.path.join(work, "spiece.tmp.model")
    with open(tmp, "wb") as f:
        f.write(buf.getvalue())
    T5Tokenizer(vocab_file=tmp, legacy=True).save_pretrained(d)
    os.remove(tmp)
    return T5Tokenizer.from_pretrained(d)


def text_encoder_from(te_dir, old_tok, tok, alias=None):
    """The T5 in te_dir (trained with old_tok) with the embedding table re-indexed for tok by piece
    string; alias {new word: old word} starts a word old_tok lacks from an old word's row; other
    new words get fresh rows. Returns (model, the pieces carried over)."""
    old = T5EncoderModel.from_pretrained(te_dir)
    alias = {"\u2581" + k: "\u2581" + v for k, v in (alias or {}).items()}
    te = T5EncoderModel(T5Config(vocab_size=len(tok), **T5_CONFIG))
    sd = {k: v for k, v in old.state_dict().items() if "embed_tokens" not in k and k != "shared.weight"}
    te.load_state_dict(sd, strict=False)
    emb = te.get_input_embeddings().weight
    old_emb = old.get_input_embeddings().weight
    carried = []
    with torch.no_grad():
        for i in range(tok.sp_model.get_piece_size()):
            piece = tok.sp_model.id_to_piece(i)
            known = old_tok.sp_model.id_to_piece(old_tok.sp_model.piece_to_id(piece)) == piece
            src = piece if known else alias.get(piece, piece)
            j = old_tok.sp_model.piece_to_id(src)
            if old_tok.sp_model.id_to_piece(j) == src:
                emb[i] = old_emb[j]
                carried.append(piece)
    return te, carried


def encode_pool(vae, n, seed, draw=None):
    rng = np.random.default_rng(seed)
    means, stds, caps = [], [], []
    with torch.no_grad():
        for i in range(0, n, 256):
            x, c = (draw or dataset.batch)(rng, min(256, n - i))
            post = vae.encode(torch.from_numpy(x)).latent_dist
            means.append(post.mean)
            stds.append(post.std)
            caps += c
    return torch.cat(means), torch.cat(stds), caps


def eps_loss(pred, eps, alpha_bar_t, x0_weight=0.0, x0_cap=200.0):
    """Epsilon MSE; with x0_weight K each sample's MSE is scaled by 1 + K min(1/SNR(t), x0_cap),
    adding K x its x0-space error (x0 error = eps error / SNR), so the high noise levels, where
    the layout is decided and plain epsilon MSE weights x0 error by SNR ~ 0, teach it too.
    Uncapped, K = 1 is the v-prediction loss; the cap keeps t near 999 (1/SNR ~ 2e4) from
    swamping the rest."""
    if not x0_weight:
        return F.mse_loss(pred, eps)
    per_sample = ((pred - eps) ** 2).flatten(1).mean(1)
    return (per_sample * (1 + x0_weight * ((1 - alpha_bar_t) / alpha_bar_t).clamp(max=x0_cap))).mean()


def ema_update(ema, model, decay):
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.mul_(decay).add_(p, alpha=1 - decay)


def save(work, name, te, dit):
    d = os.path.join(work, f"ckpt-{name}")
    te.save_pretrained(os.path.join(d, "text_encoder"), safe_serialization=True)
    dit.save_pretrained(os.path.join(d, "transformer"), safe_serialization=True)


def cosine_lr(base, step, frac):
    """The transformers' learning rate: linear warm-up over 200 steps, then a cosine from base down
    to base/10 over the time budget (frac: the elapsed share of it)."""
    return base * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * frac)))


class Keeper:
    """Rank 0's bookkeeping after each optimizer step (train_dit.py and train_latte.py): the EMA of
    the weights (what is saved), a loss line every 50 steps, and the EMA weights saved to
    WORK/ckpt-NAME/ every save_every seconds and at the end."""

    def __init__(self, work, name, te, dit, save_every):
        self.work, self.name, self.save_every = work, name, save_every
        self.te, self.dit = copy.deepcopy(te).eval(), copy.deepcopy(dit).eval()
        self.loss, self.step = None, 0
        self.t0 = self.last_save = time.time()

    def update(self, step, loss, lr, te, dit):
        self.step = step
        decay = min(0.999, (1 + step) / (10 + step))
        ema_update(self.te, te, decay)
        ema_update(self.dit, dit, decay)
        self.loss = loss if self.loss is None else 0.99 * self.loss + 0.01 * loss
        if step % 50 == 0 or step == 1:
            print(f"step {step} t={time.time() - self.t0:.0f}s loss={loss:.4f} ema={self.loss:.4f} lr={lr:.2e}",
                  flush=True)
        if time.time() - self.last_save > self.save_every:
            save(self.work, self.name, self.te, self.dit)
            self.last_save = time.time()
            print(f"saved at step {step}", flush=True)

    def finish(self):
        save(self.work, self.name, self.te, self.dit)
        print(f"done: {self.step} steps in {time.time() - self.t0:.0f}s, loss ema {self.loss:.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--minutes", type=float, default=50.0)
    ap.add_argument("--variant", default="main", choices=sorted(DIT_CONFIGS))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--save-every", type=float, default=150.0, help="seconds between checkpoints")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--text-encoder", help="use DIR (a trained T5EncoderModel) frozen instead of training one; "
                    "for a second transformer that shares the first one's text encoder")
    ap.add_argument("--patch", type=int, default=2, help="patch size; 4 on a 2x VAE's 16x16 latents gives the same "
                    "16 tokens as 2 on the 4x VAE's 8x8")
    ap.add_argument("--x0-weight", type=float, default=0.0, help="K: loss = eps MSE x (1 + K min(1/SNR(t), "
                    "--x0-cap)), see eps_loss")
    ap.add_argument("--x0-cap", type=float, default=20.0)
    ap.add_argument("--init", help="start from DIR/{text_encoder,transformer} (e.g. an earlier run's checkpoint); "
                    "with DIR/tokenizer the text encoder's rows are carried over by piece string (new words: fresh rows)")
    ap.add_argument("--data", default="plain", choices=("plain", "scenes"),
                    help="plain: one shape (dataset.sample); scenes: plain + sized + counted shapes "
                    "(dataset.sample_scene, its own tokenizer-scenes/ and ckpt-scenes/)")
    ap.add_argument("--procs", type=int, default=1, help="data-parallel processes (dataparallel.py: gloo, one "
                    "thread each, --batch split among them, gradients averaged): 2 on 2 cores trains ~1.3x the steps "
                    "per minute of one at batch 64")
    a = ap.parse_args()
    if a.batch % a.procs:
        sys.exit(f"train_dit.py: --batch {a.batch} is not a multiple of --procs {a.procs}")
    scenes = a.data == "scenes"
    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    t_start = time.time()

    tok = (make_tokenizer(a.work, dataset.all_scene_captions(), SCENES_VOCAB, "tokenizer-scenes") if scenes
           else make_tokenizer(a.work))
    if scenes:
        words = sorted({w for c in dataset.all_scene_captions() for w in c.split()})
        assert all(len(tok.tokenize(w)) == 1 for w in words), "a caption word is not one piece"
    print(f"tokenizer: {tok.sp_model.get_piece_size()} pieces, {len(tok)} ids; "
          f"'{dataset.caption('red', 'circle', 'on the left', 'gray')}' -> "
          f"{tok.convert_ids_to_tokens(tok('a red circle on the left on a gray background').input_ids)}", flush=True)
    vae = AutoencoderKL.from_pretrained(os.path.join(a.work, "vae")).eval()
    sf = vae.config.scaling_factor
    means, stds, caps = encode_pool(vae, a.pool, seed=2026 if scenes else 2024 if a.variant == "main" else 2025,
                                    draw=dataset.scene_batch if scenes else None)
    del vae
    print(f"pool: {len(caps)} latents {tuple(means.shape[1:])} in {time.time() - t_start:.0f}s, scaling_factor {sf:.4f}", flush=True)
    uniq = sorted(set(caps)) + [""]
    enc = tok(uniq, max_length=TEXT_LEN, padding="max_length", truncation=True, return_tensors="pt")
    cap_index = {c: i for i, c in enumerate(uniq)}
    data = dict(means=means, stds=stds, sf=sf, cap_ids=torch.tensor([cap_index[c] for c in caps]),
                input_ids=enc.input_ids, mask=enc.attention_mask, empty=len(uniq) - 1, words=sorted(
                    {w for c in uniq for w in c.split()}), t_start=t_start)
    dataparallel.run(train, a.procs, a, data)


def make_models(a, latent_size, words):
    """(text encoder, transformer): new ones, or --init's, or with --text-encoder a frozen one."""
    tok = T5Tokenizer.from_pretrained(os.path.join(a.work, "tokenizer-scenes" if a.data == "scenes" else "tokenizer"))
    te = T5EncoderModel(T5Config(vocab_size=len(tok), **T5_CONFIG))
    dit = PixArtTransformer2DModel(**dit_config(a.variant, latent_size, a.patch))
    if a.init:
        dit = PixArtTransformer2DModel.from_pretrained(os.path.join(a.init, "transformer"))
        if not os.path.exists(os.path.join(a.init, "tokenizer")):
            te = T5EncoderModel.from_pretrained(os.path.join(a.init, "text_encoder"))
        else:
            te, carried = text_encoder_from(os.path.join(a.init, "text_encoder"),
                                            T5Tokenizer.from_pretrained(os.path.join(a.init, "tokenizer")), tok)
            print(f"text encoder rows carried for {len(carried)} pieces; new words "
                  f"{[w for w in words if chr(0x2581) + w not in carried]}", flush=True)
    if a.text_encoder:
        te = T5EncoderModel.from_pretrained(a.text_encoder).requires_grad_(False)
    return te, dit


def train(rank, a, data):
    """The training loop of process `rank` of a.procs; rank 0 keeps the EMA, logs and saves, and its
    clock decides the learning rate and when to stop, so all processes step alike."""
    procs = a.procs
    dataparallel.init(rank, procs)
    transformers.logging.set_verbosity_error()
    name = "scenes" if a.data == "scenes" else a.variant
    means, stds, cap_ids, empty = data["means"], data["stds"], data["cap_ids"], data["empty"]
    torch.manual_seed(0)  # the same initial weights in every process
    gen = torch.Generator().manual_seed((7 if a.variant == "main" else 8) + 1000 * rank)
    te, dit = make_models(a, means.shape[-1], data["words"])
    te.train(), dit.train()
    keeper = Keeper(a.work, name, te, dit, a.save_every) if rank == 0 else None
    if rank == 0:
        print(f"t5 params {sum(p.numel() for p in te.parameters()) / 1e6:.3f} M, "
              f"dit params {sum(p.numel() for p in dit.parameters()) / 1e6:.3f} M, {procs} process(es)", flush=True)
    params = [p for p in list(te.parameters()) + list(dit.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0).float()
    local = a.batch // procs

    for step, frac in dataparallel.budget_steps(data["t_start"], a.minutes, a.max_steps, procs):
        for pg in opt.param_groups:
            pg["lr"] = cosine_lr(a.lr, step, frac)
        idx = torch.randint(len(cap_ids), (local,), generator=gen)
        x0 = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * data["sf"]
        ci = cap_ids[idx].clone()
        ci[torch.rand(local, generator=gen) < DROP_CAPTION] = empty
        ids, mask = data["input_ids"][ci], data["mask"][ci]
        # stratified timesteps over the whole batch (this process takes every procs-th stratum):
        # lower variance of the loss estimate for a small batch
        strata = torch.arange(rank, a.batch, procs)
        t = ((strata + torch.rand(local, generator=gen)) * (1000 / a.batch)).long().clamp(max=999)
        eps = torch.randn(x0.shape, generator=gen)
        at = ac[t].view(-1, 1, 1, 1)
        xt = at.sqrt() * x0 + (1 - at).sqrt() * eps
        txt = te(input_ids=ids, attention_mask=mask).last_hidden_state
        pred = dit(xt, encoder_hidden_states=txt, encoder_attention_mask=mask, timestep=t,
                   added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]
        loss = eps_loss(pred, eps, ac[t], a.x0_weight, a.x0_cap)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        dataparallel.optimizer_step(opt, params, procs, step + 1)
        if rank == 0:
            keeper.update(step + 1, float(loss), opt.param_groups[0]["lr"], te, dit)
    if rank == 0:
        keeper.finish()
    dataparallel.finish(procs)


if __name__ == "__main__":
    main()
