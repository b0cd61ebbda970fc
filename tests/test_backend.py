"""Tests of whitebox.backend: device resolution, missing GPU errors, array-module dispatch."""

import types

import numpy as np
import pytest

from whitebox import backend
from whitebox.backend import DeviceUnavailableError


def fake_cupy(device_count):
    """A stand-in for the cupy module whose CUDA runtime reports ``device_count`` devices."""
    module = types.ModuleType("cupy")
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=device_count))
    return module


class FakeDeviceArray:  # whitebox.backend recognises CuPy arrays by their module name
    pass


FakeDeviceArray.__module__ = "cupy._core.core"


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setattr(backend, "_import_cupy", lambda: None)


def test_default_device_is_cpu(monkeypatch):
    monkeypatch.delenv(backend.DEVICE_ENV, raising=False)
    assert backend.resolve_device() == "cpu"
    assert backend.get_xp() is np


@pytest.mark.parametrize(
    "value, device", [("cpu", "cpu"), ("CPU", "cpu"), ("gpu", "gpu"), ("GPU", "gpu"), ("", "cpu")]
)
def test_device_from_environment(monkeypatch, value, device):
    monkeypatch.setenv(backend.DEVICE_ENV, value)
    assert backend.resolve_device() == device


def test_argument_overrides_environment(monkeypatch):
    monkeypatch.setenv(backend.DEVICE_ENV, "gpu")
    assert backend.resolve_device("cpu") == "cpu"
    assert backend.get_xp("cpu") is np


@pytest.mark.parametrize("value", ["tpu", "cuda:0", "bogus"])
def test_unknown_device_in_environment_names_the_variable_and_the_choices(monkeypatch, value):
    monkeypatch.setenv(backend.DEVICE_ENV, value)
    for call in (backend.resolve_device, backend.get_xp):
        with pytest.raises(ValueError, match=rf"\$WHITEBOX_DEVICE='{value}'.*'cpu' or 'gpu'"):
            call()


def test_bogus_environment_value(monkeypatch):
    monkeypatch.setenv(backend.DEVICE_ENV, "bogus")
    with pytest.raises(ValueError, match="WHITEBOX_DEVICE.*'bogus'"):
        backend.resolve_device()
    with pytest.raises(ValueError, match="bogus"):
        backend.get_xp()


@pytest.mark.parametrize("device", ["cuda", "tpu", 0, ["cpu"]])
def test_bogus_device_argument(device):
    with pytest.raises(ValueError, match="device must be one of"):
        backend.get_xp(device)


def test_gpu_without_cupy(no_cupy, monkeypatch):
    assert not backend.gpu_available()
    with pytest.raises(DeviceUnavailableError, match="CuPy is not installed"):
        backend.get_xp("gpu")
    monkeypatch.setenv(backend.DEVICE_ENV, "gpu")
    with pytest.raises(DeviceUnavailableError, match="CuPy is not installed"):
        backend.get_xp()


def test_gpu_without_cuda_device(monkeypatch):
    monkeypatch.setattr(backend, "_import_cupy", lambda: fake_cupy(lambda: 0))
    assert not backend.gpu_available()
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        backend.get_xp("gpu")


def test_gpu_with_failing_cuda_runtime(monkeypatch):
    def broken():
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(backend, "_import_cupy", lambda: fake_cupy(broken))
    assert not backend.gpu_available()
    with pytest.raises(DeviceUnavailableError):
        backend.get_xp("gpu")


def test_unavailable_device_is_a_runtime_error():
    assert issubclass(DeviceUnavailableError, RuntimeError)


@pytest.mark.parametrize(
    "arrays", [(np.ones(3),), (np.ones(2), np.zeros((2, 2))), (1.5,), ([1, 2],), (), (None,)]
)
def test_array_module_of_host_values_is_numpy(arrays):
    assert backend.array_module(*arrays) is np


def test_array_module_rejects_mixed_backends(monkeypatch):
    module = types.ModuleType("cupy")
    monkeypatch.setattr(backend, "_import_cupy", lambda: module)
    assert backend.array_module(FakeDeviceArray()) is module
    assert backend.is_device_array(FakeDeviceArray()) and not backend.is_device_array(np.ones(1))
    with pytest.raises(TypeError, match="different backends"):
        backend.array_module(np.ones(2), FakeDeviceArray())


def test_host_transfers_on_numpy():
    a = np.arange(6.0).reshape(2, 3)
    assert backend.to_host(a) is a
    assert backend.to_device(a, np) is a
    np.testing.assert_array_equal(backend.to_host([1.0, 2.0]), [1.0, 2.0])
    tree = backend.tree_to_device(backend.tree_to_host({"w": a, "b": [0.5]}), np)
    assert tree["w"] is a and isinstance(tree["b"], np.ndarray)


def test_default_rng_is_seeded():
    first = backend.default_rng(7).standard_normal(4)
    np.testing.assert_array_equal(first, backend.default_rng(7).standard_normal(4))
    assert not np.array_equal(first, backend.default_rng(8).standard_normal(4))


def test_synchronize_is_a_no_op_on_numpy():
    assert backend.synchronize(np) is None


def test_dtype_policy():
    assert backend.TRAIN_DTYPE == np.float32 and backend.CHECK_DTYPE == np.float64


@pytest.mark.gpu
def test_gpu_round_trip():
    cupy = backend.get_xp("gpu")
    a = np.arange(6.0).reshape(2, 3)
    on_device = backend.to_device(a, cupy)
    assert backend.is_device_array(on_device) and backend.array_module(on_device) is cupy
    backend.synchronize(cupy)
    np.testing.assert_array_equal(backend.to_host(on_device), a)
    with pytest.raises(TypeError):
        backend.array_module(a, on_device)
