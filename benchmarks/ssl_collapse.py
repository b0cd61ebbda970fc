#!/usr/bin/env python
"""SimDINO with and without its coding-rate term: the collapse the rate prevents, measured on MNIST.

Trains SimDINO (``whitebox train --task simdino``, through ``whitebox.train.start_run``) twice from
the same seed and budget, with ``gamma = 0`` (the student–teacher distance alone) and with
``gamma = --gamma``, then measures on the first ``--test-limit`` test images, for the frozen
backbone features ``h`` (what k-NN and a linear probe read) and the head's projections ``z`` (what
the loss sees):

* the coding rate ``R_ε`` (ε = 0.5) of the ℓ2-normalised vectors, against its value when every image
  maps to one point, ``½ log(1 + d/ε²)`` (one direction's worth: ``ZᵀZ = N c cᵀ``);
* the number of directions: singular values of the ℓ2-normalised vectors above 1% of the largest
  (1 at the collapse);
* the weighted k-NN accuracy (k = 20, T = 0.07) against the first ``--bank`` training images
  (chance: 10%).

Results go to stdout as Markdown (``--format json`` for JSON); progress to stderr. With the
defaults (a 2-layer width-48 CRATE, 2 global + 2 local views, 4 epochs of 2,048 images): about
4 minutes per run on one free core.

Example::

    python benchmarks/ssl_collapse.py --threads 2
"""

from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import early_threads  # noqa: E402

THREADS = early_threads(sys.argv[1:])

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whitebox.blocks import dino_head  # noqa: E402
from whitebox.data import dataset_info, load_dataset  # noqa: E402
from whitebox.layers.l2norm import l2_normalize_forward  # noqa: E402
from whitebox.rate import coding_rate  # noqa: E402
from whitebox.train import load_run, resolve_config, start_run  # noqa: E402
from whitebox.train.self_distillation import image_features, knn_predict  # noqa: E402


EPS = 0.5


def directions(Z, rtol: float = 1e-2) -> int:
    """Singular values of the unit rows ``Z`` above ``rtol`` times the largest."""
    s = np.linalg.svd(Z, compute_uv=False)
    return int((s > rtol * s[0]).sum())


def measure(run, train, test, bank: int) -> dict:
    info = dataset_info(run.config.dataset)
    dtype = run.params["head_norm.weight"].dtype
    h_bank = image_features(run.params, train[0][:bank], run.cfg, info, dtype, 500)
    h = image_features(run.params, test[0], run.cfg, info, dtype, 500)
    z, _ = dino_head.forward(h, run.params)
    accuracy = float((knn_predict(h_bank, train[1][:bank], h, 10) == test[1]).mean())
    out = {"knn_accuracy": accuracy}
    for name, X in (("features", h), ("projections", z)):
        Z = l2_normalize_forward(np.asarray(X, dtype=np.float64))[0]
        out[f"{name}_rate"] = float(coding_rate(Z, EPS))
        out[f"{name}_one_point_rate"] = 0.5 * math.log1p(Z.shape[1] / EPS**2)
        out[f"{name}_rank"] = directions(Z)
    out["width"] = {"features": h.shape[1], "projections": z.shape[1]}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (read before NumPy starts)")
    p.add_argument("--gamma", type=float, default=1.0, help="γ of the regularised run (default 1)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--train-limit", type=int, default=2048)
    p.add_argument("--test-limit", type=int, default=1000)
    p.add_argument("--bank", type=int, default=2048, help="k-NN bank: the first N training images")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", dest="model", action="append", default=[], metavar="KEY=VALUE",
                   help="model or data option, as whitebox train --set (repeatable)")
    p.add_argument("--format", choices=("markdown", "json"), default="markdown")
    args = p.parse_args(argv)
    model = dict(patch_size=7, dim=48, depth=2, heads=4, dim_head=12)
    data = dict(local_views=2, knn_bank=min(args.bank, 512))
    for item in args.model:
        key, value = item.split("=", 1)
        value = json.loads(value) if value[:1].isdigit() or value[:1] in "-[{" else value
        (data if key in data or key in ("hidden", "bottleneck", "rate_eps", "momentum") else model)[key] = value
    train, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    test = tuple(a[:args.test_limit] for a in test)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for gamma in (0.0, args.gamma):
            config = resolve_config(task="simdino", model_overrides=model, data_overrides={**data, "gamma": gamma},
                                    epochs=args.epochs, train_limit=args.train_limit, test_limit=256, lr=args.lr,
                                    seed=args.seed)
            began = time.perf_counter()
            print(f"training SimDINO with gamma = {gamma:g} ...", file=sys.stderr, flush=True)
            start_run(config, os.path.join(tmp, f"gamma{gamma:g}"), quiet=True)
            seconds = time.perf_counter() - began
            rows[gamma] = {**measure(load_run(os.path.join(tmp, f"gamma{gamma:g}")), train, test, args.bank),
                           "seconds": seconds}
    summary = {"config": {"model": model, "data": data, "epochs": args.epochs, "train_limit": args.train_limit,
                          "test_limit": args.test_limit, "bank": args.bank, "lr": args.lr, "seed": args.seed,
                          "threads": THREADS}, "runs": {f"gamma={g:g}": r for g, r in rows.items()}}
    if args.format == "json":
        print(json.dumps(summary, indent=2))
        return 0
    one = next(iter(rows.values()))
    print(f"| SimDINO | k-NN accuracy | R(h) (one point: {one['features_one_point_rate']:.3f}) | directions of h | "
          f"R(z) (one point: {one['projections_one_point_rate']:.3f}) | directions of z | training time |")
    print("|---|---|---|---|---|---|---|")
    for g, r in rows.items():
        print(f"| γ = {g:g} | {r['knn_accuracy']:.1%} | {r['features_rate']:.3f} | {r['features_rank']} / "
              f"{r['width']['features']} | {r['projections_rate']:.3f} | {r['projections_rank']} / "
              f"{r['width']['projections']} | {r['seconds']:.0f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
