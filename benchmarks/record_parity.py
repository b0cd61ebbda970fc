#!/usr/bin/env python
"""Record the published models' outputs, so that parity with them is tested without PyTorch.

For each case of :data:`CASES` (PyTorch CRATE with cls and with mean pooling, the CRATE-alpha
port in each of the paper's four ablation variants), in float64:

1. whitebox initialises the parameters (:func:`perturbed_params`: LayerNorm affines moved off
   their ones and zeros, so that their gradients are exercised too);
2. ``to_torch_state_dict`` loads them into the official model of ``benchmarks/torch_crate.py``
   with ``load_state_dict(strict=True)``;
3. the model runs fixed random images, and the fixed loss ``sum(logits * dlogits)`` (``dlogits``
   a fixed random matrix, so it is also the loss's gradient with respect to the logits) is
   back-propagated by PyTorch.

Each record, ``tests/data/parity_<case>.npz``, holds only official names and plain arrays:
``meta`` (JSON: the model module, the config's size fields, the ablation variant, the versions),
``images``, ``dlogits``, ``logits``, ``state/<official name>`` for every parameter and
``grad/<official name>`` for its gradient. ``tests/test_published_parity.py`` reads them without
PyTorch. Run where PyTorch is installed, from the repository root::

    python benchmarks/record_parity.py            # writes every record
    python benchmarks/record_parity.py --check    # recomputes them and compares, writes nothing

Importing this module needs only NumPy and whitebox: PyTorch is imported inside the functions that
use it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if __name__ == "__main__":
    sys.path.insert(0, ROOT)  # this checkout's whitebox, also in a fresh clone (imported by a test, it is already)

import numpy as np

from whitebox.models import crate, crate_alpha

DATA = os.path.join(ROOT, "tests", "data")
SIZE = dict(image_size=8, patch_size=4, channels=3, num_classes=3, dim=8, depth=2, heads=2, dim_head=4)
BATCH = 2
PARAM_SEED, INPUT_SEED = 3, 7
MODULES = {"crate": crate, "crate_alpha": crate_alpha}
CASES = {
    "crate_cls": ("crate", {**SIZE, "pool": "cls"}, None),
    "crate_mean": ("crate", {**SIZE, "pool": "mean"}, None),
    "crate_alpha_crate": ("crate_alpha", SIZE, "crate"),
    "crate_alpha_O": ("crate_alpha", SIZE, "+O"),
    "crate_alpha_O_D": ("crate_alpha", SIZE, "+O+D"),
    "crate_alpha_O_D_R": ("crate_alpha", SIZE, "+O+D+R"),
}  # case -> (model module, Config fields, ablation variant of crate_alpha.ablation_configs or None)


def record_path(case: str) -> str:
    return os.path.join(DATA, f"parity_{case}.npz")


def case_config(model: str, fields: dict, variant: str | None):
    """``(module, cfg)`` of a case: ``module.Config(**fields)``, then its ablation variant if any."""
    module = MODULES[model]
    cfg = module.Config(**fields)
    return module, (cfg if variant is None else module.ablation_configs(cfg)[variant])


def perturbed_params(module, cfg, seed: int = PARAM_SEED) -> dict:
    """float64 whitebox parameters with random LayerNorm affines (``+ 0.3 N(0, 1)``)."""
    rng = np.random.default_rng(seed + 100)
    params = module.init(cfg, seed=seed, dtype=np.float64)
    return {k: v + 0.3 * rng.standard_normal(v.shape) if "norm" in k else v for k, v in params.items()}


def relative_error(ours, theirs) -> float:
    """``‖ours − theirs‖ / ‖theirs‖``; infinite when ``ours`` has a NaN or an infinity."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    if ours.shape != theirs.shape:
        raise ValueError(f"shapes differ: {ours.shape} vs {theirs.shape}")
    if not np.all(np.isfinite(ours)):
        return float("inf")
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def whitebox_outputs(module, cfg, state_dict: dict, images, dlogits):
    """whitebox's logits and gradients of ``sum(logits * dlogits)``, the gradients under official names.

    ``to_torch_state_dict`` only renames, so applied to the gradients it keys them as the state dict.
    """
    params = module.from_torch_state_dict(state_dict, cfg)
    logits, cache = module.forward(params, images, cfg)
    grads = module.backward(dlogits, cache)
    return logits, module.to_torch_state_dict(grads, cfg)


def torch_outputs(model, state_dict: dict, images, dlogits):
    """The PyTorch model's logits and parameter gradients of ``sum(logits * dlogits)``, float64."""
    import torch

    torch_crate = torch_crate_module()
    model = model.double()
    model.load_state_dict(torch_crate.to_torch(state_dict), strict=True)
    logits = model(torch.from_numpy(images))
    (logits * torch.from_numpy(dlogits)).sum().backward()
    return logits.detach().numpy(), torch_crate.grads_by_name(model)


def torch_crate_module():
    """``benchmarks/torch_crate.py`` (it needs PyTorch), loaded once by path."""
    name = "benchmarks_torch_crate"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "torch_crate.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def official_model(module, cfg):
    """The model of ``benchmarks/torch_crate.py`` that ``cfg`` describes."""
    torch_crate = torch_crate_module()
    return (torch_crate.crate_from_config if module is crate else torch_crate.crate_alpha_from_config)(cfg)


def record(case: str) -> dict:
    """The arrays of ``tests/data/parity_<case>.npz``, computed by the official model."""
    import torch

    model_name, fields, variant = CASES[case]
    module, cfg = case_config(model_name, fields, variant)
    rng = np.random.default_rng(INPUT_SEED)
    images = rng.standard_normal((BATCH, cfg.channels, cfg.image_size, cfg.image_size))
    dlogits = rng.standard_normal((BATCH, cfg.num_classes))
    torch.manual_seed(0)  # the official constructors draw their own init, which the load replaces
    model = official_model(module, cfg)
    state = module.to_torch_state_dict(perturbed_params(module, cfg), cfg)
    logits, grads = torch_outputs(model, state, images, dlogits)
    if set(grads) != set(state):
        raise RuntimeError(f"{case}: parameters without a gradient: {sorted(set(state) - set(grads))}")
    for name, g in grads.items():
        if not (np.all(np.isfinite(g)) and np.any(g != 0)):
            raise RuntimeError(f"{case}: the gradient of {name} is zero or not finite; the record could not fail")
    meta = dict(case=case, model=model_name, config=fields, variant=variant, loss="sum(logits * dlogits)",
                torch=torch.__version__, numpy=np.__version__)
    return {
        "meta": np.array(json.dumps(meta, sort_keys=True)),
        "images": images,
        "dlogits": dlogits,
        "logits": logits,
        **{f"state/{k}": v for k, v in state.items()},
        **{f"grad/{k}": v for k, v in grads.items()},
    }


def load_record(case: str) -> dict:
    """A record as ``{"meta": dict, "images", "dlogits", "logits", "state": {...}, "grad": {...}}``."""
    path = record_path(case)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"parity record {os.path.relpath(path, ROOT)} is missing: run `python benchmarks/record_parity.py` "
            "where PyTorch is installed and commit tests/data/"
        )
    with np.load(path, allow_pickle=False) as f:
        out = {"meta": json.loads(str(f["meta"])), "state": {}, "grad": {}}
        for key in f.files:
            group, _, name = key.partition("/")
            if name:
                out[group][name] = f[key]
            elif key != "meta":
                out[key] = f[key]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="recompute every record and compare; write nothing")
    args = parser.parse_args(argv)
    worst = 0.0
    for case in CASES:
        new = record(case)
        if args.check:
            old = load_record(case)
            errors = [relative_error(new["logits"], old["logits"])]
            errors += [relative_error(new[f"grad/{k}"], v) for k, v in old["grad"].items()]
            worst = max(worst, *errors)
            print(f"{case}: largest relative difference to the stored record {max(errors):.2e}")
        else:
            os.makedirs(DATA, exist_ok=True)
            np.savez(record_path(case), **new)
            print(f"{os.path.relpath(record_path(case), ROOT)}: {os.path.getsize(record_path(case))} bytes")
    return int(worst > 1e-12)


if __name__ == "__main__":
    sys.exit(main())
