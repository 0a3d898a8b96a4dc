"""(a) of scripts/bench/stacked.sh: diffusers' default txt2img (20 steps DPM-Solver++, the folder's
scheduler) on the same random pipeline folder; prints the seconds of the pipe call (T5 encode,
sampling, VAE decode; loading excluded). Dev only (/work/venv-cur); never needed by make/test/demo.

    /work/venv-cur/bin/python scripts/bench/stacked_diffusers.py DIR PROMPT RES [bf16|f32] [--text-first]

The dtype defaults to bf16 where the CPU has native bf16 (avx512_bf16 / amx), else f32, as ditrt.
--text-first: the low-memory way diffusers' PixArt docs give (for T5-XXL beside the transformer
on a small machine): a pipeline with the text encoder alone encodes the prompt and is freed, then
one without it samples and decodes from the embeddings. The seconds printed are the same parts
(encode_prompt + the sampling/decoding call), loading still excluded.
"""
import gc
import os
import sys
import time

import torch
from diffusers import PixArtAlphaPipeline
from transformers import T5Tokenizer


def native_bf16():
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def main():
    args = [x for x in sys.argv[1:] if x != "--text-first"]
    text_first = len(args) < len(sys.argv) - 1
    d, prompt, res = args[0], args[1], int(args[2])
    dt = args[3] if len(args) > 3 else ("bf16" if native_bf16() else "f32")
    # transformers 5 cannot load this tokenizer folder by from_pretrained (it falls back to tiktoken);
    # built from its spiece.model directly. Its ids may differ from ditrt's: timing only.
    tok = T5Tokenizer(vocab_file=os.path.join(d, "tokenizer", "spiece.model"), extra_ids=0)
    tdt = torch.bfloat16 if dt == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    call = dict(height=res, width=res, num_inference_steps=20, guidance_scale=4.5, generator=g,
                use_resolution_binning=False, output_type="np")
    if not text_first:
        pipe = PixArtAlphaPipeline.from_pretrained(d, tokenizer=tok, torch_dtype=tdt)
        t0 = time.perf_counter()
        with torch.inference_mode():
            pipe(prompt, max_sequence_length=120, **call)
        print(f"{time.perf_counter() - t0:.3f}")
        return
    pipe = PixArtAlphaPipeline.from_pretrained(d, tokenizer=tok, transformer=None, vae=None, torch_dtype=tdt)
    t0 = time.perf_counter()
    with torch.inference_mode():
        pe, pm, ne, nm = pipe.encode_prompt(prompt, do_classifier_free_guidance=True, max_sequence_length=120)
    text_s = time.perf_counter() - t0
    del pipe
    gc.collect()
    pipe = PixArtAlphaPipeline.from_pretrained(d, tokenizer=tok, text_encoder=None, torch_dtype=tdt)
    t0 = time.perf_counter()
    with torch.inference_mode():
        pipe(prompt_embeds=pe, prompt_attention_mask=pm, negative_prompt_embeds=ne, negative_prompt_attention_mask=nm,
             negative_prompt=None, **call)
    print(f"{text_s + time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
