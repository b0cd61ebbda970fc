#!/usr/bin/env python
"""cProfile of whitebox's training step (forward, label-smoothed cross-entropy, backward).

Prints the functions with the most own time (``tottime``): a matmul written ``a @ b`` inside a
whitebox function counts as that function's own time, and NumPy's reductions and ufuncs appear
as their own built-in entries, so the table splits the step into matmuls and element-wise work.

    python benchmarks/profile_step.py --model crate --threads 2 --steps 5
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_step import THREADS, make_config, make_runners, parse_args  # sets the threads before NumPy loads

import cProfile
import pstats

import numpy as np


def main() -> None:
    argv = sys.argv[1:]
    steps, top = 5, 30
    for flag in ("--steps", "--top"):
        if flag in argv:
            i = argv.index(flag)
            value = int(argv[i + 1])
            del argv[i:i + 2]
            steps, top = (value, top) if flag == "--steps" else (steps, value)
    args = parse_args(argv)
    cfg = make_config(args)
    (runner,) = make_runners(args, cfg, np.dtype(args.dtype).type, args.batch_size, with_torch=False)
    for _ in range(args.warmup):
        runner.step()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        runner.step()
        runner.sync()
    profiler.disable()
    print(f"{args.model}, batch {args.batch_size}, {args.dtype}, {args.device}, threads {THREADS}: {steps} steps")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)


if __name__ == "__main__":
    main()
