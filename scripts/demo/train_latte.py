"""Train the demo text-to-video model (issue 8): a small LatteTransformer3DModel plus its text encoder.

    .venv-ref/bin/python scripts/demo/train_latte.py WORK_DIR [--minutes M] [--init assets/demo-pixart]

Starts from a trained image model so that training only has to teach motion (the shipped one
from assets/demo-pixart-scenes, whose 2x VAE keeps a moving square's corners; see train_all.sh):
  * tokenizer: a new SentencePiece model trained on the image AND video captions (the shipped
    one has no "moving", "up", "down"), 52 pieces, every word one piece;
  * text encoder: the image model's T5 with its embedding rows carried over by piece string (new
    words get fresh rows), so an image caption gives exactly the image model's text features;
  * transformer: spatial blocks, patch embedding, timestep/caption embeddings and output head
    copied from the image PixArt transformer (the same BasicTransformerBlock structure); temporal
    blocks new, with their attention and feed-forward output projections zero, so they start as
    identities. (Not quite a per-frame image model: Latte adds a sin-cos frame embedding to the
    residual stream after the first spatial block, which training has to absorb.) out_channels
    is 8 as LattePipeline expects (it drops the second half unless the scheduler learns sigma);
    only the first 4 are trained, the rest stay zero.
Then the text encoder and transformer train jointly on VAE latents of clips from dataset.py
(DDPM epsilon loss, linear betas 1e-4..0.02, 1000 steps, stratified timesteps, EMA, 10% empty
captions). Text features are used as LattePipeline uses them: the prompt truncated to its own
tokens, the empty prompt padded to the same length with its pad positions NOT masked.
One CPU thread per process (--procs N: N data-parallel processes, dataparallel.py), fixed seeds,
time-budgeted; EMA weights saved to WORK_DIR/ckpt-latte/ every few minutes.
--resume continues from such a checkpoint (a second phase); with the checkpoint's tokenizer in
it, the caption words may change (the embedding rows are re-indexed, --word-init seeds new words
from old ones). --focus draws part of each batch from the mid-to-high noise levels, where a
clip's layout (and so its motion) is decided: with plain uniform timesteps the model first
learned coherent but still clips (see scripts/demo/README.md). --still sets the share of still
clips in each batch (they come first, so the --focus part is all moving clips).
--x0-weight K adds K x the x0-space error to the epsilon loss (per clip: eps MSE x (1 + K min(1/SNR(t),
--x0-cap)); uncapped, K = 1 is the v-prediction loss), so the high noise levels, where the epsilon loss
weights the x0 error by SNR ~ 0, teach the clip's layout; the model still predicts epsilon. The cap
is needed because x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) magnifies the eps error
158x at t = 999: uncapped, the loss rose from the first steps. --pair-reverse makes
half of each batch's moving clips the other half played backwards with the opposite direction
word (same posterior sample, noise and timestep): the word and the frame order are then the only
difference between the two, so the loss can only drop by reading the word.
--spatial-from IMAGE_DIR --freeze-spatial puts the image model's weights back into everything but
the temporal blocks and trains only those (and the text encoder): a diagnosis of where the video
model's per-frame drawing goes soft (scripts/demo/README.md, session 6).
"""
import argparse
import copy
import os
import sys
import time

import numpy as np
import torch
import transformers
from diffusers import AutoencoderKL, LatteTransformer3DModel, PixArtTransformer2DModel
from transformers import T5EncoderModel, T5Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataparallel  # noqa: E402
import dataset  # noqa: E402
from train_dit import (DROP_CAPTION, TEXT_LEN, Keeper, cosine_lr, eps_loss, make_tokenizer,  # noqa: E402
                       text_encoder_from)

VOCAB = 52  # every caption word one piece (54 with the v2 attempt's "rightward|leftward|upward|downward")
TEMPORAL = "temporal_transformer_blocks."
FOCUS_LO, FOCUS_HI = 200, 700  # --focus timesteps: alpha_bar 0.66 .. 0.01 on the linear schedule


def latte_config(image_cfg):
    keep = ("num_attention_heads", "attention_head_dim", "in_channels", "num_layers", "cross_attention_dim",
            "attention_bias", "sample_size", "patch_size", "activation_fn", "num_embeds_ada_norm", "norm_type",
            "norm_elementwise_affine", "norm_eps", "caption_channels", "dropout")
    c = {k: image_cfg[k] for k in keep}
    c.update(out_channels=2 * image_cfg["in_channels"], video_length=dataset.FRAMES)
    return c


def grow(dit, n):
    """dit with n more spatial + temporal block pairs appended, each starting as the identity (its
    attention and feed-forward output projections zero, so the residual stream passes through):
    the same function as before, with more capacity to train."""
    if n <= 0:
        return dit
    cfg = dict(dit.config)
    cfg["num_layers"] = dit.config.num_layers + n
    big = LatteTransformer3DModel(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    missing, unexpected = big.load_state_dict(dit.state_dict(), strict=False)
    assert not unexpected, unexpected
    new = {f"{kind}.{i}." for kind in ("transformer_blocks", "temporal_transformer_blocks")
           for i in range(dit.config.num_layers, cfg["num_layers"])}
    assert all(any(k.startswith(p) for p in new) for k in missing), missing
    with torch.no_grad():
        for i in range(dit.config.num_layers, cfg["num_layers"]):
            for blk in (big.transformer_blocks[i], big.temporal_transformer_blocks[i]):
                outs = [blk.attn1.to_out[0], blk.ff.net[2]] + ([blk.attn2.to_out[0]] if blk.attn2 is not None else [])
                for lin in outs:
                    lin.weight.zero_()
                    lin.bias.zero_()
    return big


def transformer_from(image_dir):
    img = PixArtTransformer2DModel.from_pretrained(os.path.join(image_dir, "transformer"))
    dit = LatteTransformer3DModel(**latte_config(img.config))
    sd = img.state_dict()
    p, c_in = img.config.patch_size, img.config.out_channels
    c_out = dit.config.out_channels
    # proj_out rows are ordered (p, p, channels): spread the image head's rows into the first half
    w = torch.zeros(p * p * c_out, sd["proj_out.weight"].shape[1])
    b = torch.zeros(p * p * c_out)
    for k in range(p * p):
        w[k * c_out:k * c_out + c_in] = sd["proj_out.weight"][k * c_in:(k + 1) * c_in]
        b[k * c_out:k * c_out + c_in] = sd["proj_out.bias"][k * c_in:(k + 1) * c_in]
    sd["proj_out.weight"], sd["proj_out.bias"] = w, b
    missing, unexpected = dit.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(k.startswith("temporal_transformer_blocks.") for k in missing), missing
    with torch.no_grad():
        for blk in dit.temporal_transformer_blocks:
            for lin in (blk.attn1.to_out[0], blk.ff.net[2]):
                lin.weight.zero_()
                lin.bias.zero_()
    return dit


def scratch_transformer(image_dir, heads):
    cfg = latte_config(PixArtTransformer2DModel.load_config(os.path.join(image_dir, "transformer")))
    cfg["num_attention_heads"] = heads
    cfg["cross_attention_dim"] = heads * cfg["attention_head_dim"]  # captions are projected to the width
    return LatteTransformer3DModel(**cfg)


def encode_pool(vae, n, seed):
    """n clips -> posterior mean/std [n, C, F, h, w] and captions."""
    rng = np.random.default_rng(seed)
    means, stds, caps = [], [], []
    with torch.no_grad():
        for i in range(0, n, 32):
            x, c = dataset.clip_batch(rng, min(32, n - i))
            b, f = x.shape[:2]
            post = vae.encode(torch.from_numpy(x.reshape(b * f, *x.shape[2:]))).latent_dist
            for t, out in ((post.mean, means), (post.std, stds)):
                out.append(t.reshape(b, f, *t.shape[1:]).transpose(1, 2).contiguous())
            caps += c
    return torch.cat(means), torch.cat(stds), caps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--minutes", type=float, default=42.0)
    ap.add_argument("--init", default="assets/demo-pixart", help="the trained image pipeline to start from")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--pool", type=int, default=5000, help="clips encoded once with the frozen VAE")
    ap.add_argument("--save-every", type=float, default=150.0, help="seconds between checkpoints")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--resume", help="start from DIR/{text_encoder,transformer} (an earlier run's checkpoint) "
                    "instead of the image model; with DIR/tokenizer (that run's tokenizer) the embedding rows "
                    "are carried over by piece string, so the caption words may have changed")
    ap.add_argument("--word-init", default="", help="NEW=OLD,...: new words whose embedding rows start from an "
                    "old word's row (with --resume DIR/tokenizer); other new words get fresh rows")
    ap.add_argument("--still", type=float, default=-1.0, help="fraction of each batch drawn from the pool's "
                    "still clips (image captions), the rest from the moving ones; default: uniform over the pool")
    ap.add_argument("--focus", type=float, default=0.0,
                    help="fraction of each batch whose timesteps are drawn from [FOCUS_LO, FOCUS_HI) only: the "
                    "noise levels (SNR ~1.9 .. 0.01) where the layout, and so the motion, is decided")
    ap.add_argument("--x0-weight", type=float, default=0.0, help="K: loss = eps MSE x (1 + K / SNR(t)), i.e. "
                    "plus K x the x0 MSE (K = 1: the v-prediction loss); 0: the plain epsilon loss")
    ap.add_argument("--x0-cap", type=float, default=200.0, help="the --x0-weight factor 1/SNR is capped here "
                    "(200: SNR 0.005, t ~ 725 on the linear schedule; above it the x0 weight falls with SNR)")
    ap.add_argument("--drop", type=float, default=DROP_CAPTION, help="share of captions replaced by \"\" "
                    "(trains the unconditional half of CFG)")
    ap.add_argument("--upweight", default="", help="WORD=K: moving clips whose caption has WORD are drawn K times "
                    "as often (hard-example weighting; with --still)")
    ap.add_argument("--grow", type=int, default=0, help="append N spatial + temporal block pairs that start as the "
                    "identity (zero output projections) to the resumed transformer")
    ap.add_argument("--scratch-heads", type=int, default=0, help="a transformer of this many heads (x the image "
                    "model's head dim), randomly initialized instead of copied from the image model; the text "
                    "encoder is still the image model's")
    ap.add_argument("--pair-reverse", action="store_true", help="the second half of each batch's moving clips "
                    "are the first half reversed in time with the opposite direction word (needs --still)")
    ap.add_argument("--spatial-from", help="IMAGE_DIR: after --resume, put that image pipeline's transformer weights "
                    "back into everything but the temporal blocks (spatial blocks, embeddings, head), as at the "
                    "start of video training")
    ap.add_argument("--freeze-spatial", action="store_true", help="train only the temporal blocks (and the text "
                    "encoder): the per-frame drawing stays the starting weights'")
    ap.add_argument("--procs", type=int, default=1, help="data-parallel processes (dataparallel.py: gloo, one "
                    "thread each, --batch split among them, gradients averaged)")
    a = ap.parse_args()
    assert not a.pair_reverse or a.still >= 0, "--pair-reverse needs --still"
    if a.batch % a.procs:
        sys.exit(f"train_latte.py: --batch {a.batch} is not a multiple of --procs {a.procs}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    t_start = time.time()

    tok = make_tokenizer(a.work, dataset.all_captions() + dataset.all_video_captions(), VOCAB, "tokenizer-latte")
    image_tok = T5Tokenizer.from_pretrained(os.path.join(a.init, "tokenizer"))
    words = sorted({w for c in dataset.all_captions() + dataset.all_video_captions() for w in c.split()})
    assert all(len(tok.tokenize(w)) == 1 for w in words), "a caption word is not one piece"
    te, carried = text_encoder_from(os.path.join(a.init, "text_encoder"), image_tok, tok)
    new_words = [w for w in words if "\u2581" + w not in carried]
    if a.resume and os.path.exists(os.path.join(a.resume, "tokenizer")):
        alias = dict(kv.split("=") for kv in a.word_init.split(",") if kv)
        te, carried = text_encoder_from(os.path.join(a.resume, "text_encoder"),
                                        T5Tokenizer.from_pretrained(os.path.join(a.resume, "tokenizer")), tok, alias)
        new_words = [w for w in words if "\u2581" + w not in carried]
        print(f"resumed text encoder: rows of {sorted(alias.items())} from the old words", flush=True)
    elif a.resume:
        te = T5EncoderModel.from_pretrained(os.path.join(a.resume, "text_encoder"))
    print(f"tokenizer: {tok.sp_model.get_piece_size()} pieces, {len(carried)} carried from the image model, "
          f"new words {new_words}", flush=True)
    dit = LatteTransformer3DModel.from_pretrained(os.path.join(a.resume, "transformer")) if a.resume \
        else scratch_transformer(a.init, a.scratch_heads) if a.scratch_heads else transformer_from(a.init)
    if a.spatial_from:
        image_sd = transformer_from(a.spatial_from).state_dict()
        dit.load_state_dict({k: v for k, v in image_sd.items() if not k.startswith(TEMPORAL)}, strict=False)
    dit = grow(dit, a.grow)
    if a.freeze_spatial:
        for name, p in dit.named_parameters():
            p.requires_grad_(name.startswith(TEMPORAL))
    vae = AutoencoderKL.from_pretrained(os.path.join(a.init, "vae")).eval()
    sf = vae.config.scaling_factor
    cache = os.path.join(a.work, f"pool-latte-{a.pool}.pt")  # the VAE encoding is minutes; phases share it
    if os.path.exists(cache):
        means, stds, caps = torch.load(cache)
        assert set(caps) <= set(dataset.all_captions() + dataset.all_video_captions()), f"{cache}: other captions"
    else:
        means, stds, caps = encode_pool(vae, a.pool, seed=2026)
        torch.save((means, stds, caps), cache)
    del vae
    print(f"pool: {len(caps)} clips {tuple(means.shape[1:])} in {time.time() - t_start:.0f}s", flush=True)
    uniq = sorted(set(caps) | {dataset.reversed_caption(c) for c in caps})
    enc = tok(uniq, max_length=TEXT_LEN, padding="max_length", truncation=True, return_tensors="pt")
    empty = tok([""], max_length=TEXT_LEN, padding="max_length", return_tensors="pt")
    cap_index = {c: i for i, c in enumerate(uniq)}
    cap_ids = torch.tensor([cap_index[c] for c in caps])
    lengths = enc.attention_mask.sum(1)
    moving = torch.tensor([" moving " in c for c in caps])
    still_idx, moving_idx = torch.nonzero(~moving)[:, 0], torch.nonzero(moving)[:, 0]
    rev_ids = torch.tensor([cap_index[dataset.reversed_caption(c)] for c in uniq])
    moving_w = torch.ones(len(moving_idx))
    if a.upweight:
        word, k = a.upweight.split("=")
        hit = torch.tensor([word in caps[int(i)].split() for i in moving_idx])
        moving_w[hit] = float(k)
        print(f"upweight: {int(hit.sum())} moving clips with '{word}' drawn x{k}", flush=True)

    data = dict(te=te, dit=dit, means=means, stds=stds, sf=sf, cap_ids=cap_ids, ids=enc.input_ids,
                mask=enc.attention_mask, empty_ids=empty.input_ids, empty_mask=empty.attention_mask,
                lengths=lengths, still_idx=still_idx, moving_idx=moving_idx, rev_ids=rev_ids, moving_w=moving_w,
                t_start=t_start)
    dataparallel.run(train, a.procs, a, data)


def train(rank, a, d):
    """The training loop of process `rank` of a.procs (see dataparallel.py): each draws a.batch /
    a.procs clips a step (with its share of still clips and reversed twins); rank 0 keeps the EMA,
    logs and saves."""
    procs = a.procs
    dataparallel.init(rank, procs)
    transformers.logging.set_verbosity_error()
    te, dit = copy.deepcopy(d["te"]), copy.deepcopy(d["dit"])  # not the storage shared with the others
    means, stds, sf, cap_ids, lengths = d["means"], d["stds"], d["sf"], d["cap_ids"], d["lengths"]
    still_idx, moving_idx, rev_ids, moving_w = d["still_idx"], d["moving_idx"], d["rev_ids"], d["moving_w"]
    batch = a.batch // procs
    n_still = int(round(a.still * batch))
    n_pair = (batch - n_still) // 2 if a.pair_reverse else 0  # moving clips that get a reversed twin
    gen = torch.Generator().manual_seed(9 + 1000 * rank)
    te.train(), dit.train()
    keeper = Keeper(a.work, "latte", te, dit, a.save_every) if rank == 0 else None
    if rank == 0:
        if a.still >= 0:
            print(f"batch: {n_still} of {batch} per process from the {len(still_idx)} still clips, the rest from "
                  f"the {len(moving_idx)} moving ones", flush=True)
        print(f"t5 params {sum(p.numel() for p in te.parameters()) / 1e6:.3f} M, "
              f"latte params {sum(p.numel() for p in dit.parameters()) / 1e6:.3f} M, {procs} process(es)", flush=True)
    params = list(te.parameters()) + [p for p in dit.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ac = torch.cumprod(1 - betas, 0).float()
    C, Fr = means.shape[1], means.shape[2]
    pos = torch.arange(TEXT_LEN)

    for step, frac in dataparallel.budget_steps(d["t_start"], a.minutes, a.max_steps, procs):
        for pg in opt.param_groups:
            pg["lr"] = cosine_lr(a.lr, step, frac)
        nb = batch - n_pair  # clips drawn; the last n_pair moving ones are then repeated reversed
        if a.still < 0:
            idx = torch.randint(len(cap_ids), (nb,), generator=gen)
        else:
            idx = torch.cat([still_idx[torch.randint(len(still_idx), (n_still,), generator=gen)],
                             moving_idx[torch.multinomial(moving_w, nb - n_still, replacement=True, generator=gen)
                                        if a.upweight else
                                        torch.randint(len(moving_idx), (nb - n_still,), generator=gen)]])
        x0 = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * sf
        ci = cap_ids[idx]
        twin = torch.arange(nb - n_pair, nb)
        x0 = torch.cat([x0, x0[twin].flip(2)])  # dim 2 is the frame axis
        ci = torch.cat([ci, rev_ids[ci[twin]]])
        drop = torch.rand(batch, generator=gen) < a.drop
        ids = torch.where(drop[:, None], d["empty_ids"], d["ids"][ci])
        t5_mask = torch.where(drop[:, None], d["empty_mask"], d["mask"][ci])
        # cross-attention sees the caption's own tokens; a dropped caption is "" padded to that
        # length, pads included (LattePipeline truncates both rows to the prompt's length)
        keep = (pos[None] < lengths[ci][:, None]).float()
        bias = ((1 - keep) * -10000.0).repeat_interleave(Fr, 0)[:, None, :]
        # stratified timesteps (lower variance for a small batch); the last n_f over the focus range only
        n_f = int(round(a.focus * nb))
        u = (torch.arange(nb - n_f) + torch.rand(nb - n_f, generator=gen)) / (nb - n_f) * 1000
        u_f = FOCUS_LO + (FOCUS_HI - FOCUS_LO) * (torch.arange(n_f) + torch.rand(n_f, generator=gen)) / max(n_f, 1)
        t = torch.cat([u, u_f]).long().clamp(max=999)
        eps = torch.randn((nb,) + x0.shape[1:], generator=gen)
        t, eps = torch.cat([t, t[twin]]), torch.cat([eps, eps[twin]])  # a twin shares its noise and timestep
        at = ac[t].view(-1, 1, 1, 1, 1)
        xt = at.sqrt() * x0 + (1 - at).sqrt() * eps
        txt = te(input_ids=ids, attention_mask=t5_mask).last_hidden_state
        pred = dit(xt, encoder_hidden_states=txt, encoder_attention_mask=bias, timestep=t, return_dict=False)[0]
        loss = eps_loss(pred[:, :C], eps, ac[t], a.x0_weight, a.x0_cap)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dataparallel.optimizer_step(opt, params, procs, step + 1)
        if rank == 0:
            keeper.update(step + 1, float(loss), opt.param_groups[0]["lr"], te, dit)
    if rank == 0:
        keeper.finish()
    dataparallel.finish(procs)


if __name__ == "__main__":
    main()
