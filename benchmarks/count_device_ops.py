#!/usr/bin/env python
"""Count the kernel launches and device→host synchronisations of one training step, on the strict stand-in.

The stand-in for CuPy (``tests/strict_device.py``) counts, per block, the kernels a CuPy run would
launch and every device→host synchronisation, with the whitebox line that caused it. This script
trains the real configs of the three tasks on it through the public API (``start_run`` with
``device="gpu"`` while the stand-in is the device), once for ``--short`` and once for ``--long``
steps in the same first epoch, so that the difference divided by ``long - short`` is the cost of
one step (the set-up, the final save and the like cancel)::

    classification   mnist-demo (CRATE, batch 128, AdamW, augmentation), MNIST
    mae              mnist-mae (CRATE-MAE, batch 128), MNIST
    lm               shakespeare-char (causal CRATE, batch 64, context 128), tiny Shakespeare

It imports only the public API that every whitebox version with the stand-in's hook has, so it
measures an older checkout too (run it from that checkout's root; ``benchmarks/RESULTS.md`` has
before/after numbers). Prints one line per task, and with ``--json`` writes them.

    python benchmarks/count_device_ops.py                      # about a minute on 2 CPU cores
    python benchmarks/count_device_ops.py --tasks lm --sites   # where the syncs come from
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from strict_device import strict  # noqa: E402

from whitebox.backend import use_device_module  # noqa: E402
from whitebox.train import resolve_config, start_run  # noqa: E402

PRESETS = {"classification": "mnist-demo", "mae": "mnist-mae", "lm": "shakespeare-char"}
LIMITS = {"classification": dict(train_limit=4096, test_limit=128), "mae": dict(train_limit=4096, test_limit=128),
          "lm": {}}


def run_counts(task: str, steps: int, out: Path) -> strict.Counts:
    """The counts of a fresh run of ``task``'s preset stopped after ``steps`` updates (within epoch 1)."""
    config = resolve_config(preset=PRESETS[task], task=task, **LIMITS[task])
    with use_device_module(strict), strict.counting() as counts:
        start_run(config, out, device="gpu", overwrite=True, max_steps=steps, quiet=True)
    return counts


def per_step(task: str, short: int, long: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        a = run_counts(task, short, Path(tmp) / "a")
        b = run_counts(task, long, Path(tmp) / "b")
    sites = b.sites()
    sites.subtract(a.sites())
    steps = long - short
    return {"task": task, "preset": PRESETS[task], "steps": steps,
            "launches_per_step": (b.launches - a.launches) / steps, "syncs_per_step": (b.syncs - a.syncs) / steps,
            "uploads_per_step": (b.uploads - a.uploads) / steps,
            "sync_sites_per_step": {k: v / steps for k, v in sorted(sites.items()) if v}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", choices=tuple(PRESETS), default=list(PRESETS))
    parser.add_argument("--short", type=int, default=2, help="steps of the first run (default 2)")
    parser.add_argument("--long", type=int, default=6, help="steps of the second run (default 6)")
    parser.add_argument("--sites", action="store_true", help="also print where the syncs come from")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    args = parser.parse_args(argv)
    if not 0 < args.short < args.long:
        parser.error("need 0 < --short < --long")
    results = []
    for task in args.tasks:
        r = per_step(task, args.short, args.long)
        results.append(r)
        print(f"{task:<15} {r['preset']:<17} {r['launches_per_step']:8.1f} launches/step  "
              f"{r['syncs_per_step']:6.2f} syncs/step  {r['uploads_per_step']:6.2f} uploads/step", flush=True)
        if args.sites:
            for site, n in r["sync_sites_per_step"].items():
                print(f"    {n:6.2f}  {site}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
