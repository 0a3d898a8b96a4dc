"""(a) of scripts/bench/stacked.sh: diffusers' default txt2img (20 steps DPM-Solver++, the folder's
scheduler) on the same random pipeline folder; prints the seconds of the pipe call (T5 encode,
sampling, VAE decode; loading excluded). Dev only (/work/venv-cur); never needed by make/test/demo.

    /work/venv-cur/bin/python scripts/bench/stacked_diffusers.py DIR PROMPT RES [bf16|f32]

The dtype defaults to bf16 where the CPU has native bf16 (avx512_bf16 / amx), else f32, as ditrt.
"""
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
    d, prompt, res = sys.argv[1], sys.argv[2], int(sys.argv[3])
    dt = sys.argv[4] if len(sys.argv) > 4 else ("bf16" if native_bf16() else "f32")
    # transformers 5 cannot load this tokenizer folder by from_pretrained (it falls back to tiktoken);
    # built from its spiece.model directly. Its ids may differ from ditrt's: timing only.
    tok = T5Tokenizer(vocab_file=os.path.join(d, "tokenizer", "spiece.model"), extra_ids=0)
    pipe = PixArtAlphaPipeline.from_pretrained(d, tokenizer=tok,
                                               torch_dtype=torch.bfloat16 if dt == "bf16" else torch.float32)
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    with torch.inference_mode():
        pipe(prompt, height=res, width=res, num_inference_steps=20, guidance_scale=4.5, generator=g,
             max_sequence_length=120, use_resolution_binning=False, output_type="np")
    print(f"{time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
