#!/usr/bin/env python3
"""Generates ditrt's reference fixtures (tests/fixtures) with diffusers/transformers.

Usage, from the repo root, in the venv made by scripts/make-venv.sh:
    .venv-ref/bin/python scripts/make_fixtures.py [--out tests/fixtures] [NAME ...]

Each NAME is a module in scripts/fixtures/ exposing generate(outdir) -> bool; with no
names, every module in FIXTURES runs. Everything is deterministic (fixed seeds, f32,
one thread): running it twice gives byte-identical files.
"""
import argparse
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# Order matters only for reading the log; each module seeds its own generators.
FIXTURES = ["pixart", "t5", "noise_sched", "vae", "pipeline", "latte", "latte_pipe", "fastattn", "solvers", "solver_pipe", "usf_v3"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "tests", "fixtures"))
    ap.add_argument("names", nargs="*", help=f"fixture modules to run (default: {' '.join(FIXTURES)})")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(HERE, "fixtures"))
    import torch
    torch.set_num_threads(1)
    try:
        from diffusers.utils import logging as dlogging
        dlogging.set_verbosity_error()  # silence the "accelerate not found" notice
    except ImportError:
        pass
    ok = True
    for name in args.names or FIXTURES:
        mod = importlib.import_module(name)
        print(f"== {name}")
        ok &= bool(mod.generate(os.path.normpath(args.out)))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
