#!/usr/bin/env python3
"""Converts DPM-Solver-v3 / USF statistics (a statistics_dir with l.npz ["l"] and sb.npz
["s", "b"], as published by thu-ml/DPM-Solver-v3 and read by thu-nics/USF) into the single
safetensors file `ditrt txt2img --solver-schedule S.json --solver-statistics FILE` reads
(schedulers/usf_v3.h): l, s, b as f32 [N+1, ...] and t_range = (t_start, t_end), the time
range their half-logSNR grid spans (USF's default 1 and 1e-3).

    python3 scripts/usf_stats_convert.py STATISTICS_DIR OUT.safetensors [--t-start 1] [--t-end 1e-3]

Needs numpy and the safetensors package only. The per-row shape must match the sampled
latents ([C, H, W] of one image) or be a single value per row.
"""
import argparse
import os
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stats_dir")
    ap.add_argument("out")
    ap.add_argument("--t-start", type=float, default=1.0)
    ap.add_argument("--t-end", type=float, default=1e-3)
    a = ap.parse_args()
    from safetensors.numpy import save_file
    l = np.load(os.path.join(a.stats_dir, "l.npz"))["l"]
    sb = np.load(os.path.join(a.stats_dir, "sb.npz"))
    s, b = sb["s"], sb["b"]
    if not (l.shape == s.shape == b.shape) or l.ndim < 1 or l.shape[0] < 2:
        sys.exit(f"{a.stats_dir}: l {l.shape}, s {s.shape}, b {b.shape}: expected one shape [N+1, ...]")
    if not 0 < a.t_end < a.t_start <= 1:
        sys.exit("--t-start/--t-end: need 0 < t_end < t_start <= 1")
    save_file({"l": np.ascontiguousarray(l, np.float32), "s": np.ascontiguousarray(s, np.float32),
               "b": np.ascontiguousarray(b, np.float32),
               "t_range": np.array([a.t_start, a.t_end], np.float32)}, a.out)
    print(f"{a.out}: N = {l.shape[0] - 1} grid intervals, rows of shape {l.shape[1:]}, t in [{a.t_end}, {a.t_start}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
