"""Shared test settings: hypothesis profiles and the GPU marker.

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
