"""whitebox.weights.formats: round trips, the restricted unpickler, checkpoint unwrapping, bad files.

None of these tests needs PyTorch except those marked by ``pytest.importorskip("torch")``, which
check that torch reads what whitebox writes and the other way round.
"""

import json
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.weights.formats import (
    UnsafeGlobalError,
    WeightsFileError,
    load_state_dict,
    read_weights,
    save_state_dict,
    unwrap_checkpoint,
)

FIXTURES = Path(__file__).parent / "data" / "weights"
SUFFIXES = (".pth", ".pt", ".pth.tar", ".safetensors", ".npz")
DTYPES = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "bool")


def every_dtype(rng) -> dict:
    state = {f"x.{name}": (rng.standard_normal((3, 2)) * 50).astype(name) for name in DTYPES}
    state["scalar"] = np.float32(1.5).reshape(())
    state["empty"] = np.zeros((0, 4), np.float32)
    state["non_contiguous"] = np.arange(24.0).reshape(4, 6)[::2, 1::2]
    state["big_endian"] = np.arange(5, dtype=">f4")
    state["nan_inf"] = np.array([np.nan, np.inf, -np.inf, -0.0], np.float32)
    return state


def assert_same(loaded: dict, state: dict):
    assert list(loaded) == list(state)
    for name, array in state.items():
        assert loaded[name].shape == array.shape, name
        assert loaded[name].dtype == array.dtype.newbyteorder("="), name
        assert loaded[name].tobytes() == np.ascontiguousarray(array, loaded[name].dtype).tobytes(), name


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_is_bit_exact_for_every_dtype(tmp_path, suffix):
    state = every_dtype(np.random.default_rng(0))
    path = save_state_dict(state, tmp_path / f"w{suffix}")
    weights = read_weights(path)
    assert_same(weights.state_dict, state)
    assert weights.format == {".safetensors": "safetensors", ".npz": "npz"}.get(suffix, "torch")
    assert (weights.unwrapped, weights.stripped, weights.skipped) == ((), None, ())


@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), dtype=st.sampled_from(DTYPES),
       suffix=st.sampled_from(SUFFIXES), seed=st.integers(0, 2**16))
def test_round_trip_property(tmp_path_factory, shape, dtype, suffix, seed):
    array = (np.random.default_rng(seed).standard_normal(shape) * 100).astype(dtype)
    path = save_state_dict({"a": array, "b.c": array[..., ::-1]}, tmp_path_factory.mktemp("rt") / f"w{suffix}")
    assert_same(load_state_dict(path), {"a": array, "b.c": array[..., ::-1]})


def test_save_refuses_unknown_suffix_and_dtypes(tmp_path):
    with pytest.raises(WeightsFileError, match=r"w\.bin2.*must end in"):
        save_state_dict({"a": np.zeros(2)}, tmp_path / "w.bin2")
    for suffix in (".pth", ".safetensors"):
        with pytest.raises(WeightsFileError, match="'a' of dtype complex128"):
            save_state_dict({"a": np.zeros(2, complex)}, tmp_path / f"w{suffix}")


# ---------------------------------------------------------------------------------- unwrapping


def test_unwraps_a_training_checkpoint_and_strips_module():
    weight = np.ones((2, 2), np.float32)
    obj = {"epoch": 3, "arch": "CRATE_tiny", "state_dict": OrderedDict([("module.a.weight", weight)]),
           "best_acc1": np.array(33.3), "optimizer": {"state": {0: {"exp_avg": weight}}, "param_groups": []},
           "scheduler": {"last_epoch": 3}}
    state, unwrapped, stripped, skipped = unwrap_checkpoint(obj)
    assert list(state) == ["a.weight"] and state["a.weight"] is weight
    assert unwrapped == ("state_dict",) and stripped == "module."
    assert skipped == ("epoch", "arch", "best_acc1", "optimizer", "scheduler")


def test_unwraps_nested_wrappers_in_order_of_preference():
    inner = {"w": np.zeros(1)}
    assert unwrap_checkpoint({"model": {"module": inner}})[:2] == (inner, ("model", "module"))
    assert unwrap_checkpoint({"model": {"w": np.ones(1)}, "state_dict": inner})[1] == ("state_dict",)
    assert unwrap_checkpoint(inner)[1:] == ((), None, ())


@pytest.mark.parametrize("obj, message", [
    ([np.zeros(1)], "holds a list"),
    ({"epoch": 1, "optimizer": {"lr": 0.1}}, "no state dict found"),
    ({"module.a": np.zeros(1), "a": np.zeros(1)}, "collide"),
    ({}, "no state dict found"),
])
def test_unwrap_rejects_what_is_not_a_state_dict(obj, message):
    with pytest.raises(WeightsFileError, match=message):
        unwrap_checkpoint(obj, "ckpt.pth")


# ------------------------------------------------------------------- the restricted unpickler


def torch_zip(path: Path, data_pkl: bytes, records: dict | None = None) -> Path:
    """A file laid out as torch.save's zip: archive/data.pkl, archive/data/<key>, archive/version."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", data_pkl)
        for key, raw in (records or {}).items():
            zf.writestr(f"archive/data/{key}", raw)
        zf.writestr("archive/version", "3\n")
    return path


class CallsSystem:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class OpensFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("make, refused", [
    (lambda marker: CallsSystem(f"touch {marker}"), "system"),
    (lambda marker: OpensFile(str(marker)), r"\.open"),
    (lambda marker: {"state_dict": {"w": CallsSystem(f"touch {marker}")}}, "system"),
])
def test_malicious_pickle_runs_nothing(tmp_path, make, refused, protocol):
    marker = tmp_path / "pwned"
    path = torch_zip(tmp_path / "evil.pth", pickle.dumps(make(marker), protocol=protocol))
    with pytest.raises(UnsafeGlobalError, match=rf"evil\.pth.*global \S*{refused}.*nothing was executed"):
        read_weights(path)
    assert not marker.exists()


def test_a_pickled_module_is_refused_by_name(tmp_path):
    data = b"\x80\x02ctorch.nn.modules.linear\nLinear\n)\x81."  # NEWOBJ of a whole nn.Linear
    with pytest.raises(UnsafeGlobalError, match="torch.nn.modules.linear.Linear"):
        read_weights(torch_zip(tmp_path / "model.pth", data))


def rebuild_pickle(size, stride, offset, numel, storage="FloatStorage") -> bytes:
    """The pickle torch writes for ``{'w': tensor}``: ``_rebuild_tensor_v2(persistent storage, ...)``."""
    def ints(values):
        return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"

    def text(s):
        return b"X" + struct.pack("<I", len(s)) + s.encode()

    storage_id = b"(" + text("storage") + f"ctorch\n{storage}\n".encode() + text("0") + text("cpu") + \
        b"J" + struct.pack("<i", numel) + b"tQ"
    args = b"(" + storage_id + b"J" + struct.pack("<i", offset) + ints(size) + ints(stride) + b"\x89" + \
        b"ccollections\nOrderedDict\n)Rt"
    return b"\x80\x02}(" + text("w") + b"ctorch._utils\n_rebuild_tensor_v2\n" + args + b"Ru."


def test_views_read_as_strided_on_their_storage(tmp_path):
    storage = np.arange(12, dtype="<f4")
    path = torch_zip(tmp_path / "v.pth", rebuild_pickle((2, 3), (1, 4), 1, 12), {"0": storage.tobytes()})
    expected = np.lib.stride_tricks.as_strided(storage[1:], (2, 3), (4, 16))
    np.testing.assert_array_equal(load_state_dict(path)["w"], expected)


@pytest.mark.parametrize("size, stride, offset, numel, nbytes, message", [
    ((3, 4), (4, 1), 1, 12, 48, "reaches past its storage"),
    ((2,), (-1,), 1, 12, 48, "bad tensor view"),
    ((2,), (1,), 0, 12, 40, "holds 40 bytes"),
])
def test_bad_views_and_storages_are_refused(tmp_path, size, stride, offset, numel, nbytes, message):
    path = torch_zip(tmp_path / "v.pth", rebuild_pickle(size, stride, offset, numel), {"0": bytes(nbytes)})
    with pytest.raises(WeightsFileError, match=rf"v\.pth.*{message}"):
        read_weights(path)


def test_bfloat16_storage_reads_as_float32_exactly(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 2.0**100, np.inf], np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")  # these values are exact in bfloat16
    path = torch_zip(tmp_path / "b.pth", rebuild_pickle((5,), (1,), 0, 5, "BFloat16Storage"), {"0": bits.tobytes()})
    loaded = load_state_dict(path)["w"]
    assert loaded.dtype == np.float32 and loaded.tobytes() == values.tobytes()


# --------------------------------------------------------------------------------- bad files


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, content, message", [
    ("truncated.pth", lambda: (FIXTURES / "crate_state_dict.pth").read_bytes()[:5000], "damaged or truncated"),
    ("empty.pth", lambda: b"", "not a weights file"),
    ("text.pth", lambda: b"hello, this is not a checkpoint\n", "not a weights file"),
    ("legacy.pth", lambda: pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2), "legacy"),
    ("bad_header.safetensors", lambda: struct.pack("<Q", 10**6) + b'{"a": 1}', "header length"),
    ("not_json.safetensors", lambda: struct.pack("<Q", 4) + b"{abc", "not JSON"),
    ("outside.safetensors",
     lambda: (lambda h: struct.pack("<Q", len(h)) + h + bytes(8))(
         json.dumps({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()),
     "does not fit the data"),
    ("dtype.safetensors",
     lambda: (lambda h: struct.pack("<Q", len(h)) + h + bytes(8))(
         json.dumps({"a": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}).encode()),
     "bad safetensors entry"),
])
def test_bad_files_give_one_clear_error(tmp_path, name, content, message):
    with pytest.raises(WeightsFileError, match=rf"{name}.*{message}"):
        read_weights(write(tmp_path / name, content()))


def test_zip_without_data_pkl_and_npz_with_objects_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.pth", "w") as zf:
        zf.writestr("readme.txt", "hi")
    with pytest.raises(WeightsFileError, match="not a PyTorch checkpoint"):
        read_weights(tmp_path / "other.pth")
    np.savez(tmp_path / "objects.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(WeightsFileError, match="objects.npz.*without pickle"):
        read_weights(tmp_path / "objects.npz")
    with pytest.raises(WeightsFileError, match="missing.pth.*cannot read"):
        read_weights(tmp_path / "missing.pth")


def test_errors_are_value_errors():
    assert issubclass(WeightsFileError, ValueError) and issubclass(UnsafeGlobalError, WeightsFileError)


# ------------------------------------------------------------------------ interop with torch


def test_torch_reads_what_whitebox_writes(tmp_path):
    torch = pytest.importorskip("torch")
    state = every_dtype(np.random.default_rng(1))
    path = save_state_dict(state, tmp_path / "w.pth")
    loaded = torch.load(path, weights_only=True)
    assert list(loaded) == list(state)
    for name, array in state.items():
        assert loaded[name].numpy().tobytes() == np.ascontiguousarray(array, array.dtype.newbyteorder("=")).tobytes()


def test_whitebox_reads_what_torch_writes(tmp_path):
    torch = pytest.importorskip("torch")
    base = torch.randn(5, 7, dtype=torch.float64)
    tensors = {"view": base[1:4, 2::2], "t": base.t(), "bf16": base.bfloat16(), "half": base.half()[0],
               "param": torch.nn.Parameter(base[0].float()), "long": torch.arange(-5, 5)}
    torch.save({"model": tensors, "epoch": 2}, tmp_path / "w.pt")
    loaded = read_weights(tmp_path / "w.pt")
    assert loaded.unwrapped == ("model",) and loaded.skipped == ("epoch",)
    for name, tensor in tensors.items():
        expected = tensor.detach().float() if tensor.dtype == torch.bfloat16 else tensor.detach()
        assert loaded.state_dict[name].tobytes() == expected.contiguous().numpy().tobytes(), name


def test_legacy_torch_format_is_refused_clearly(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2)}, tmp_path / "old.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsFileError, match="old.pth.*legacy"):
        read_weights(tmp_path / "old.pth")


def test_safetensors_package_reads_what_whitebox_writes(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    state = every_dtype(np.random.default_rng(2))
    save_state_dict(state, tmp_path / "w.safetensors")
    assert_same(safetensors_numpy.load_file(str(tmp_path / "w.safetensors")), state)


def test_the_format_is_read_from_the_content_not_the_suffix(tmp_path):
    save_state_dict({"a": np.arange(3.0)}, tmp_path / "w.safetensors")
    write(tmp_path / "w.pth", (tmp_path / "w.safetensors").read_bytes())
    assert read_weights(tmp_path / "w.pth").format == "safetensors"
