"""The progress bar of an epoch (tqdm), shown only to a person watching a terminal.

It is off with ``quiet=True`` and whenever standard error is not a terminal (a log file, a CI
job, a test), where a bar would only write carriage returns; the per-epoch summary lines of the
loop are what such runs keep.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def show_bar(quiet: bool) -> bool:
    """True when a bar is worth drawing: not quiet and standard error is a terminal."""
    return not quiet and sys.stderr.isatty()


def epoch_bar(epoch: int, epochs: int, total: int, initial: int, quiet: bool):
    """A tqdm bar over the batches of one epoch, starting at batch ``initial`` (after a resume)."""
    return tqdm(total=total, initial=initial, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                disable=not show_bar(quiet), leave=False, dynamic_ncols=True, file=sys.stderr)


def bar_postfix(averages: dict, samples_per_s: float) -> dict:
    """The figures shown next to the bar: running loss and accuracy, examples per second."""
    shown = {key: f"{value:.4f}" if key == "loss" else f"{value:.2%}" if key == "accuracy" else f"{value:.3g}"
             for key, value in averages.items()}
    shown["samples/s"] = f"{samples_per_s:.0f}"
    return shown
