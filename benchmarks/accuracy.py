"""The accuracy targets: train the ``mnist`` and ``fashion-mnist`` presets and report the result.

    python benchmarks/accuracy.py --dataset mnist --out runs/accuracy     # target >= 99.0%
    python benchmarks/accuracy.py --dataset fashion-mnist --out runs/accuracy  # target >= 90%

Each run is ``whitebox train --preset <dataset> --dataset <dataset>`` (any extra options are
passed on); at the end a markdown row with the command, wall time, parameter count and final test
accuracy is printed, read back from the run's ``metrics.jsonl`` and ``config.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from datetime import date
from pathlib import Path

TARGETS = {"mnist": 0.990, "fashion-mnist": 0.90}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(TARGETS), required=True)
    parser.add_argument("--out", default="runs/accuracy", help="parent folder of the run (default runs/accuracy)")
    args, extra = parser.parse_known_args(argv)

    from whitebox.cli import main as whitebox_main

    run_dir = Path(args.out) / args.dataset
    train_args = ["train", "--preset", args.dataset, "--dataset", args.dataset, "--out", str(run_dir), "--overwrite",
                  "--quiet", *extra]
    began = time.perf_counter()
    code = whitebox_main(train_args)
    wall = time.perf_counter() - began
    if code:
        return code
    last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    config = json.loads((run_dir / "config.json").read_text())
    accuracy = last["test_accuracy"]
    params = f"{config['derived']['num_params']:,}"
    verdict = "reached" if accuracy >= TARGETS[args.dataset] else "NOT reached"
    print(f"| {date.today()} | {platform.processor() or platform.machine()} | `whitebox {shlex.join(train_args)}` | "
          f"{params} | {wall / 60:.1f} min | {accuracy:.2%} | target {TARGETS[args.dataset]:.1%} {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
