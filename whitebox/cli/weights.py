"""``whitebox convert``, and the model options of a weights file that was not trained here (:mod:`whitebox.weights`).

    whitebox convert crate_tiny.pth crate_tiny.safetensors --model crate --preset tiny
    whitebox convert crate_alpha_B32.npz crate_alpha_B32.pth --model crate-alpha --preset base --set patch_size=32
    whitebox eval --weights crate.pth --model crate --preset mnist-demo          (see whitebox eval --help)

No PyTorch is needed: ``.pth`` files are read by a restricted unpickler that runs nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..models import crate, crate_alpha
from ..models.registry import available_models
from ..train import PRESETS, ConfigError, preset_model_config, resolve_config
from ..train.config import DATASET_FIELDS
from ..weights import convert as convert_weights
from .common import CommandError, UsageError, command, key_value

TRAINING_PRESETS = tuple(name for name, p in PRESETS.items() if p.task == "classification")
FORMATS = """\
Weights files, told apart by their content: PyTorch's .pth / .pt / .pth.tar (plain state dicts, training
checkpoints with optimizer state and DataParallel's 'module.' prefix, {'model': ...} wrappers; float32,
float16, bfloat16), .safetensors, .npz, and for crate-alpha the JAX big_vision .npz of its release.
No PyTorch is needed: a .pth is read by a restricted unpickler that refuses anything but tensors."""
PRESET_RULE = f"""\
The model is --model and --preset, then --set KEY=VALUE for any field of its Config. --preset is a
model preset, the published sizes at 224 x 224 with 1000 classes (crate: {', '.join(crate.PRESETS)};
crate-alpha: {', '.join(crate_alpha.PRESETS)}), or a training preset ({', '.join(TRAINING_PRESETS)}: its
model at its dataset's image size). A position embedding made for another image size (same patch
size) is interpolated bicubically, the cls token kept."""


def add_model_arguments(p: argparse.ArgumentParser, required: bool) -> None:
    """``--model``, ``--preset`` and ``--set``: the model a weights file holds."""
    p.add_argument("--model", choices=available_models(), required=required,
                   help="the model the weights are of" + ("" if required else " (with --weights)"))
    p.add_argument("--preset", metavar="PRESET", required=required,
                   help=f"a model preset ({', '.join(crate_alpha.PRESETS)}) or a training preset "
                        f"({', '.join(TRAINING_PRESETS)}); see the description")
    p.add_argument("--set", dest="model_set", type=key_value, action="append", metavar="KEY=VALUE",
                   help="change a field of the model's config, e.g. --set num_classes=10 (repeatable)")


def model_config(args: argparse.Namespace):
    """The model Config of ``--model``, ``--preset`` and ``--set`` (for ``convert``)."""
    try:
        return preset_model_config(args.model, args.preset, dict(args.model_set or []))
    except ConfigError as e:
        raise UsageError(str(e)) from None


def eval_config(args: argparse.Namespace):
    """The classification :class:`whitebox.train.RunConfig` of ``eval --weights``: the preset's model, the
    dataset's image size, channels and classes (as ``train``), plain cross-entropy."""
    try:
        shape = {k: v for k, v in dataclasses.asdict(preset_model_config(args.model, args.preset)).items()
                 if k not in DATASET_FIELDS}
        return resolve_config(args.model, args.preset if args.preset in PRESETS else None, dataset=args.dataset,
                              model_overrides={**shape, **dict(args.model_set or [])}, label_smoothing=0.0,
                              eval_batch_size=args.batch_size, test_limit=args.test_limit)
    except ConfigError as e:
        raise UsageError(str(e)) from None


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="the weights file to read (any format below)")
    p.add_argument("output", metavar="OUT",
                   help="the file to write; its suffix gives the format: .pth / .pt / .pth.tar, .safetensors or .npz")
    add_model_arguments(p, required=True)


@command("convert", "convert a weights file (.pth, safetensors, .npz, big_vision .npz) to another format",
         "Write the weights of IN to OUT under the official PyTorch names, checked against the model (the\n"
         "position embedding resized to the model's image size); dtypes are kept.\n\n" + PRESET_RULE + "\n\n" + FORMATS
         + "\n\nexamples:\n  whitebox convert crate_tiny.pth crate_tiny.safetensors --model crate --preset tiny\n"
           "  whitebox convert crate_alpha_B32.npz crate_alpha_B32.pth --model crate-alpha --preset base "
           "--set patch_size=32", add_convert_arguments)
def convert(args: argparse.Namespace) -> int:
    cfg = model_config(args)
    try:
        path = convert_weights(args.input, args.output, cfg)
    except ValueError as e:  # WeightsFileError (it names the file), or weights that do not fit the model
        named = str(e).startswith((str(Path(args.input)), str(Path(args.output))))
        raise CommandError(str(e) if named else f"{args.input}: {e}") from None
    print(f"wrote {path}: {args.model} ({args.preset}) weights from {args.input}, under the official PyTorch names")
    return 0
