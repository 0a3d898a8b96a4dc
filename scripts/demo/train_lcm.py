"""Distil the demo SD pipeline into a 1-4 step Latent Consistency Model (issue 22 item 5).

    /work/venv-cur/bin/python scripts/demo/train_lcm.py WORK_DIR [--teacher assets/demo-sd] [--minutes M] [--cfg 4.5]
    /work/venv-cur/bin/python scripts/demo/train_lcm.py WORK_DIR --assemble OUT   (e.g. assets/demo-sd-lcm)

Consistency distillation as in Luo et al. 2023 (LCM) and diffusers'
examples/consistency_distillation/train_lcm_distill_sd_wds.py, without the guidance-scale
embedding (LCM-LoRA style: one fixed guidance scale is baked in, sampled with guidance_scale 1):
  - a pool of VAE latents of dataset images (train_unet.encode_pool, another seed);
  - the skipping grid of 50 DDIM timesteps 19, 39, ..., 999 (LCMScheduler's
    original_inference_steps 50); for a start timestep s on it and t = s - 20 (>= 0):
    x_s = noised latent; the frozen teacher (U-Net and text encoder of --teacher) with CFG at
    --cfg gives x0 and eps at s, and one DDIM step to x_t;
  - the student f(x, t) = c_skip(t) x + c_out(t) x0_pred(x, t), with LCMScheduler's boundary
    scalings (sigma_data 0.5, timestep_scaling 10), starts as the teacher's U-Net; the loss is the
    pseudo-Huber distance (c = 0.001) between f_student(x_s, s) and f_target(x_t, t), the target
    network an EMA (0.95) of the student, no gradient through it;
  - 10% of the steps use the empty caption with guidance off so the unconditional branch stays.
The student's EMA (0.999) is saved to WORK/ckpt-lcm/unet. --assemble writes a
StableDiffusionPipeline folder with LCMScheduler whose tokenizer/, text_encoder/ and vae/ are
relative symlinks to the teacher's. One CPU thread, fixed seeds, wall-clock budget.
"""
import argparse
import copy
import os
import sys
import time

import torch
import transformers
from diffusers import AutoencoderKL, LCMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_unet as tu  # noqa: E402

ORIGINAL_STEPS = 50
HUBER_C = 0.001


def scalings(t, sigma_data=0.5, timestep_scaling=10.0):
    """LCMScheduler.get_scalings_for_boundary_condition_discrete."""
    t = t.float() * timestep_scaling
    c_skip = sigma_data ** 2 / (t ** 2 + sigma_data ** 2)
    c_out = t / (t ** 2 + sigma_data ** 2) ** 0.5
    return c_skip.view(-1, 1, 1, 1), c_out.view(-1, 1, 1, 1)


def x0_from_eps(x, eps, a):
    return (x - (1 - a).sqrt() * eps) / a.sqrt()


def train(a):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    t_start = time.time()
    tok = CLIPTokenizer.from_pretrained(os.path.join(a.teacher, "tokenizer"))
    te = CLIPTextModel.from_pretrained(os.path.join(a.teacher, "text_encoder")).eval().requires_grad_(False)
    teacher = UNet2DConditionModel.from_pretrained(os.path.join(a.teacher, "unet")).eval().requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(os.path.join(a.teacher, "vae")).eval()
    sf = vae.config.scaling_factor
    means, stds, caps = tu.encode_pool(vae, a.pool, seed=2028)
    del vae
    uniq = sorted(set(caps)) + [""]
    with torch.no_grad():
        ids = tok(uniq, max_length=tu.TEXT_LEN, padding="max_length", truncation=True, return_tensors="pt").input_ids
        emb = te(input_ids=ids).last_hidden_state
    cap_ids = torch.tensor([uniq.index(c) for c in caps])
    empty = len(uniq) - 1
    print(f"pool: {len(caps)} latents in {time.time() - t_start:.0f}s", flush=True)

    student = copy.deepcopy(teacher)
    if a.init:  # continue an earlier run from its saved (EMA) student; target and EMA restart from it
        student = UNet2DConditionModel.from_pretrained(os.path.join(a.init, "unet"))
    student = student.train().requires_grad_(True)
    target = copy.deepcopy(student).eval().requires_grad_(False)
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    ac = tu.sd_alphas_cumprod()
    k = 1000 // ORIGINAL_STEPS
    grid = torch.arange(1, ORIGINAL_STEPS + 1) * k - 1
    gen = torch.Generator().manual_seed(13 + (a.init is not None))
    w = a.cfg
    t0 = last_save = time.time()
    budget = a.minutes * 60 - (t0 - t_start)
    step, loss_ema = 0, None
    while True:
        frac = (time.time() - t0) / budget
        if frac >= 1 or (a.max_steps and step >= a.max_steps):
            break
        for pg in opt.param_groups:
            pg["lr"] = a.lr * min(1.0, (step + 1) / 100)
        n = a.batch
        idx = torch.randint(len(cap_ids), (n,), generator=gen)
        x0 = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=gen)) * sf
        ci = cap_ids[idx].clone()
        uncond = torch.rand(n, generator=gen) < 0.1
        ci[uncond] = empty
        s = grid[torch.randint(ORIGINAL_STEPS, (n,), generator=gen)]
        t = (s - k).clamp(min=0)
        a_s, a_t = ac[s].view(-1, 1, 1, 1), ac[t].view(-1, 1, 1, 1)
        eps = torch.randn(x0.shape, generator=gen)
        xs = a_s.sqrt() * x0 + (1 - a_s).sqrt() * eps
        cond = emb[ci]
        cs_s, co_s = scalings(s)
        cs_t, co_t = scalings(t)
        with torch.no_grad():
            e_both = teacher(torch.cat([xs, xs]), torch.cat([s, s]),
                             encoder_hidden_states=torch.cat([cond, emb[empty].expand_as(cond)]), return_dict=False)[0]
            e_c, e_u = e_both.chunk(2)
            g = torch.where(uncond.view(-1, 1, 1, 1), torch.ones(()), torch.full((), w))
            e_g = e_u + g * (e_c - e_u)
            x0_g = x0_from_eps(xs, e_g, a_s)
            xt = a_t.sqrt() * x0_g + (1 - a_t).sqrt() * e_g  # DDIM step s -> t
            e_tgt = target(xt, t, encoder_hidden_states=cond, return_dict=False)[0]
            f_tgt = cs_t * xt + co_t * x0_from_eps(xt, e_tgt, a_t)
        e_st = student(xs, s, encoder_hidden_states=cond, return_dict=False)[0]
        f_st = cs_s * xs + co_s * x0_from_eps(xs, e_st, a_s)
        loss = (((f_st - f_tgt) ** 2 + HUBER_C ** 2).sqrt() - HUBER_C).mean()
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        step += 1
        tu.ema_update(target, student, 0.95)
        tu.ema_update(ema, student, min(0.999, (1 + step) / (10 + step)))
        lv = loss.item()
        loss_ema = lv if loss_ema is None else 0.98 * loss_ema + 0.02 * lv
        if step % 50 == 0 or step == 1:
            print(f"step {step} t={time.time() - t0:.0f}s loss={lv:.5f} ema={loss_ema:.5f}", flush=True)
        if time.time() - last_save > a.save_every:
            ema.save_pretrained(os.path.join(a.work, "ckpt-lcm", "unet"))
            last_save = time.time()
            print(f"saved at step {step}", flush=True)
    ema.save_pretrained(os.path.join(a.work, "ckpt-lcm", "unet"))
    print(f"done: {step} steps in {time.time() - t0:.0f}s, loss ema {loss_ema:.5f}", flush=True)


def lcm_scheduler():
    return LCMScheduler(**tu.SD_SCHEDULE, original_inference_steps=ORIGINAL_STEPS, steps_offset=1,
                        prediction_type="epsilon", timestep_spacing="leading", set_alpha_to_one=True,
                        clip_sample=False, timestep_scaling=10.0)


def assemble(a, out):
    transformers.logging.set_verbosity_error()
    teacher = StableDiffusionPipeline.from_pretrained(a.teacher, torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(a.ckpt or os.path.join(a.work, "ckpt-lcm"), "unet"),
                                                torch_dtype=torch.float32)
    pipe = StableDiffusionPipeline(vae=teacher.vae, text_encoder=teacher.text_encoder, tokenizer=teacher.tokenizer,
                                   unet=unet, scheduler=lcm_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(out, safe_serialization=True)
    for part in ("tokenizer", "text_encoder", "vae"):  # shared with the teacher
        d = os.path.join(out, part)
        for f in os.listdir(d):
            os.remove(os.path.join(d, f))
        os.rmdir(d)
        os.symlink(os.path.relpath(os.path.realpath(os.path.join(a.teacher, part)), os.path.abspath(out)), d)
    print(f"wrote {out}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--teacher", default=os.path.join(tu.ROOT, "assets", "demo-sd"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--cfg", type=float, default=4.5, help="the teacher's guidance scale, baked into the student")
    ap.add_argument("--pool", type=int, default=10000)
    ap.add_argument("--save-every", type=float, default=120.0)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--init", help="start the student from DIR/unet (an earlier run's checkpoint)")
    ap.add_argument("--assemble", metavar="OUT")
    ap.add_argument("--ckpt", help="with --assemble: the checkpoint folder (default WORK/ckpt-lcm)")
    a = ap.parse_args()
    if a.assemble:
        assemble(a, a.assemble)
    else:
        os.makedirs(a.work, exist_ok=True)
        train(a)


if __name__ == "__main__":
    main()
