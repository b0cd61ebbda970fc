#!/usr/bin/env python
"""Time one optimiser step on the CPU: the fused flat-buffer step against the former per-parameter one.

Both sides do what the training loop does around the update, on the parameters of a preset's model
(default ``mnist-demo``, float32) with random gradients:

* **per-parameter** (whitebox up to 45d495c, rewritten here): a finite check per gradient (one
  ``isfinite(g).all()`` each), the global norm as one ``vdot`` per gradient summed on the host,
  clipping per gradient, then the rule parameter by parameter with a scratch array each;
* **fused** (now): the gradients copied into the flat buffer (``flat_assign``), ``clip_grads`` on it,
  the device-side finite flag, and ``Optimizer.update`` over one buffer.

Each repeat times ``--steps`` steps of each side, alternating which goes first; the script prints the
median (min, max) milliseconds per step over ``--repeats`` and the ratio fused / per-parameter
(below 1: the fused step is faster)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_optim.py --threads 1
"""

from __future__ import annotations

import os
import sys

if "--threads" in sys.argv:
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from whitebox.flat import flat_assign, flat_copy, flat_zeros  # noqa: E402
from whitebox.optim import SGD, AdamW, Lion, clip_grads  # noqa: E402
from whitebox.train import resolve_config  # noqa: E402

OPTIMISERS = {"adamw": lambda: AdamW(1e-3, weight_decay=0.05), "lion": lambda: Lion(1e-4, weight_decay=0.5),
              "sgd": lambda: SGD(1e-2, momentum=0.9, nesterov=True, weight_decay=0.05)}


def per_parameter_step(kind, opt, params, grads, slots, decay, lr, t, clip):
    """The former loop body: checks, norm and clipping per gradient, then the rule per parameter."""
    if [name for name, g in grads.items() if not bool(np.isfinite(g).all())]:
        raise FloatingPointError("non-finite gradient")
    norm = math.sqrt(float(sum(np.vdot(g.ravel(), g.ravel()) for g in grads.values())))
    coef = clip / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    wd = opt.weight_decay
    for name, p in params.items():
        g, s, decayed = grads[name], np.empty_like(p), name in decay
        if kind == "adamw":
            (b1, b2), (m, v) = opt.betas, slots[name]
            if decayed:
                p *= 1.0 - lr * wd
            m *= b1
            np.multiply(g, 1.0 - b1, out=s)
            m += s
            v *= b2
            np.multiply(g, g, out=s)
            s *= 1.0 - b2
            v += s
            np.sqrt(v, out=s)
            s /= (1.0 - b2**t) ** 0.5
            s += opt.eps
            np.divide(m, s, out=s)
            s *= lr / (1.0 - b1**t)
            p -= s
        elif kind == "lion":
            (b1, b2), (m,) = opt.betas, slots[name]
            if decayed:
                p *= 1.0 - lr * wd
            np.multiply(m, b1, out=s)
            s += (1.0 - b1) * g
            np.sign(s, out=s)
            s *= lr
            p -= s
            m *= b2
            np.multiply(g, 1.0 - b2, out=s)
            m += s
        else:
            (b,) = slots[name]
            if decayed:
                np.multiply(p, wd, out=s)
                s += g
            else:
                s[...] = g
            b *= opt.momentum
            b += s
            s += opt.momentum * b
            s *= lr
            p -= s


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="mnist-demo")
    parser.add_argument("--optimizer", choices=tuple(OPTIMISERS), nargs="+", default=list(OPTIMISERS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, help="BLAS/OpenMP threads (set before NumPy loads)")
    args = parser.parse_args(argv)
    config = resolve_config(preset=args.preset)
    params = config.model_module().init(config.model_cfg(), seed=0, dtype=np.float32)
    rng = np.random.default_rng(0)
    grads = {k: (rng.standard_normal(v.shape) * 1e-2).astype(np.float32) for k, v in params.items()}
    print(f"{args.preset}: {len(params)} parameters, {sum(v.size for v in params.values()):,} values (float32); "
          f"{args.steps} steps x {args.repeats} repeats", flush=True)
    for kind in args.optimizer:
        opt = OPTIMISERS[kind]()
        n_slots = len(opt.slots)
        old_p = {k: v.copy() for k, v in params.items()}
        old_slots = {k: [np.zeros_like(v) for _ in range(n_slots)] for k, v in params.items()}
        decay = opt.init(params)["decay"]
        new_p = flat_copy(params)
        state, buffer = opt.init(new_p), flat_zeros(new_p.layout, np)
        ok, t = np.asarray(True), [0]

        def old():
            for _ in range(args.steps):
                t[0] += 1
                per_parameter_step(kind, opt, old_p, {k: g.copy() for k, g in grads.items()}, old_slots, decay,
                                   1e-3, t[0], 1.0)

        def new():
            for _ in range(args.steps):
                g = {k: g.copy() for k, g in grads.items()}  # what a backward hands over
                flat_assign(buffer, g)
                norm = clip_grads(buffer, 1.0)
                opt.update(new_p, buffer, state, 1e-3, ok=ok & np.isfinite(norm))

        times = {"per-parameter": [], "fused": []}
        for r in range(args.repeats + 1):  # the first repeat warms up
            order = [("per-parameter", old), ("fused", new)][:: 1 if r % 2 else -1]
            for name, fn in order:
                began = time.perf_counter()
                fn()
                if r:
                    times[name].append((time.perf_counter() - began) / args.steps * 1e3)
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, v in times.items():
            print(f"  {kind:<6} {name:<14} {med[name]:7.3f} ms/step  (min {min(v):.3f}, max {max(v):.3f})")
        print(f"  {kind:<6} fused / per-parameter = {med['fused'] / med['per-parameter']:.2f}", flush=True)


if __name__ == "__main__":
    main()
