#!/usr/bin/env python
"""Steps per second and scaling efficiency of data-parallel training on CPU ranks (``--distributed mpi``).

For each number of ranks N (``--ranks 1 2``) the script trains the same run with the same global
batch (strong scaling): ``python -m whitebox train`` for N = 1, ``mpiexec -n N python -m whitebox
train --distributed mpi`` otherwise, every rank with one BLAS thread (``OPENBLAS_NUM_THREADS=1``
and friends), so that N ranks use N cores and the comparison is fair. The time is rank 0's
``epoch_time`` of the last epoch in ``metrics.jsonl`` (training steps only, the all-reduce
included; the first epoch is a warm-up), best of ``--repeats``. Scaling efficiency is
``(steps/s with N ranks) / (N × steps/s with 1)``.

Run it with the machine's OpenBLAS tuning variables unset, e.g.::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_distributed.py --ranks 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def train_once(ranks: int, args, out: Path) -> dict:
    """Train once on ``ranks`` ranks; the last epoch's line of metrics.jsonl and the wall time."""
    train = [sys.executable, "-m", "whitebox", "train", "--preset", args.preset, "--batch-size", str(args.batch_size),
             "--epochs", str(args.epochs), "--train-limit", str(args.train_limit), "--test-limit", "256",
             "--dtype", args.dtype, "--out", str(out), "--overwrite", "--quiet"]
    command = train if ranks == 1 else ["mpiexec", "-n", str(ranks), *train, "--distributed", "mpi"]
    subprocess.run(command, cwd=ROOT, env={**os.environ, **ONE_THREAD}, check=True, capture_output=True, text=True)
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    steps = args.train_limit // args.batch_size
    return {"ranks": ranks, "steps": steps, "epoch_time": last["epoch_time"], "steps_per_s": steps / last["epoch_time"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="numbers of ranks (default 1 2)")
    p.add_argument("--preset", default="mnist-demo", help="the model and recipe (default mnist-demo)")
    p.add_argument("--batch-size", type=int, default=128, help="the global batch (default 128)")
    p.add_argument("--train-limit", type=int, default=4096, help="training images per epoch (default 4096)")
    p.add_argument("--epochs", type=int, default=2, help="epochs; the last one is timed (default 2)")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--repeats", type=int, default=2, help="runs per number of ranks, best kept (default 2)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = p.parse_args(argv)
    if any(n > 1 for n in args.ranks) and shutil.which("mpiexec") is None:
        p.error("no mpiexec: pip install 'whitebox[mpi]'")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for ranks in args.ranks:
            runs = [train_once(ranks, args, Path(tmp) / f"n{ranks}-{i}") for i in range(args.repeats)]
            rows.append(max(runs, key=lambda r: r["steps_per_s"]))
    base = next((r["steps_per_s"] for r in rows if r["ranks"] == 1), None)
    print(f"{args.preset}, global batch {args.batch_size}, {args.dtype}, {rows[0]['steps']} timed steps, "
          f"1 BLAS thread per rank, best of {args.repeats}")
    print("| ranks | steps/s | images/s | speed-up | scaling efficiency |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        speedup = r["steps_per_s"] / base if base else float("nan")
        r.update(speedup=speedup, efficiency=speedup / r["ranks"])
        print(f"| {r['ranks']} | {r['steps_per_s']:.2f} | {r['steps_per_s'] * args.batch_size:.0f} | "
              f"{speedup:.2f} | {r['efficiency']:.0%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
