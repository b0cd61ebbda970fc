"""Where the lectures' figures go, and how they are shown.

Run as a script or under pytest, a lecture draws with the non-interactive Agg backend and writes each figure to the
folder named by ``WHITEBOX_LECTURE_OUT`` (default: a new temporary folder). Opened as a notebook (IPython), it
keeps the notebook's inline backend: ``show`` writes the file *and* displays the figure in the cell's output.
"""

import os
import sys
import tempfile
from pathlib import Path

import matplotlib


def under_ipython() -> bool:
    """True inside IPython or a Jupyter kernel."""
    shell = sys.modules.get("IPython")
    return shell is not None and shell.get_ipython() is not None


if not under_ipython():
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

_DEFAULT_OUT = []  # the temporary folder made on first use when WHITEBOX_LECTURE_OUT is unset


def output_dir() -> Path:
    """The folder figures go to: ``WHITEBOX_LECTURE_OUT`` as it is now (read at each call), else one temporary folder."""
    named = os.environ.get("WHITEBOX_LECTURE_OUT")
    if named:
        out = Path(named)
    else:
        if not _DEFAULT_OUT:
            _DEFAULT_OUT.append(Path(tempfile.mkdtemp(prefix="whitebox-lectures-")))
        out = _DEFAULT_OUT[0]
    out.mkdir(parents=True, exist_ok=True)
    return out


def show(fig, name: str, figures: list) -> Path:
    """Save ``fig`` as ``output_dir() / name``, record the path in ``figures``, display it under IPython, then close it."""
    if not name.endswith(".png"):
        raise ValueError(f"name must be a .png file name, got {name!r}")
    path = output_dir() / name
    fig.savefig(path, dpi=90, bbox_inches="tight")
    figures.append(path)
    if under_ipython():
        from IPython.display import display

        display(fig)
    plt.close(fig)  # closed only after it was written and displayed, so that a notebook shows it once
    return path
