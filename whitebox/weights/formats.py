"""Reading and writing state dicts (name -> NumPy array) in the formats users hold, without PyTorch.

Three formats, told apart by their content (not their extension, since checkpoints come as
``.pth``, ``.pt``, ``.pth.tar``, ``.t7``, ``.bin`` ...):

* **PyTorch's zip format** (``torch.save`` since 1.6, docs/reference.md §10): ``<archive>/data.pkl`` is a
  pickle whose tensors are ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
  with each storage a *persistent id* ``('storage', torch.FloatStorage, key, location, numel)``
  naming the raw little-endian bytes in ``<archive>/data/<key>``. It is read by a restricted
  unpickler (the idea of ``torch.load(weights_only=True)``): the only globals it resolves are the
  rebuild functions, the storage types, dtypes, ``torch.Size`` and ``collections.OrderedDict``;
  any other global is refused before anything is called, so a malicious pickle executes nothing.
  A tensor is a view ``as_strided`` on its storage (offset and strides in elements), bounds-checked.
* **safetensors**: an 8-byte little-endian header length, a JSON header
  ``{name: {"dtype", "shape", "data_offsets": [begin, end]}}``, then the raw little-endian data.
* **.npz**: ``numpy.load(..., allow_pickle=False)``, always.

bfloat16 (which NumPy lacks) is read as float32, exactly (a bfloat16 is the top half of a float32).

Checkpoints wrap their weights: PyTorch CRATE's ``main.py`` saves ``{'epoch', 'arch',
'state_dict', 'best_acc1', 'optimizer', 'scheduler'}`` with DataParallel's ``module.`` prefix on
every key, the emergence notebooks ``{'model': state_dict}``. :func:`read_weights` descends through
``state_dict`` / ``model`` / ``module`` entries, skips what lies beside them (optimizer and scheduler
state, counters) and strips a leading ``module.``; the returned :class:`Weights` says what it did.

Public surface::

    weights = read_weights("crate.pth.tar")     # Weights(state_dict, format, unwrapped, stripped, skipped)
    print(weights.describe())                   # "... unwrapped 'state_dict', stripped 'module.' ..."
    sd = load_state_dict("crate.pth")           # the same, just the dict (the description is logged)
    save_state_dict(sd, "out.safetensors")      # format from the suffix: .pth/.pt/.pth.tar, .safetensors, .npz
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model", "module")  # the entries checkpoints keep their weights under
MODULE_PREFIX = "module."  # added to every key by DataParallel / DistributedDataParallel
TORCH_SUFFIXES = (".pth", ".pt", ".pth.tar", ".tar", ".t7", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
NPZ_SUFFIX = ".npz"
_MAX_HEADER = 100 * 2**20  # safetensors' own limit on the JSON header


class WeightsFileError(ValueError):
    """A file that is not a readable weights file; the message names the file and the reason."""


class UnsafeGlobalError(WeightsFileError):
    """A pickle asked for a global that a tensor checkpoint does not need (nothing was called)."""


class Weights(NamedTuple):
    """A state dict read from a file, with what was done to get it out of its wrapper."""

    state_dict: dict  # name -> NumPy array
    format: str  # "torch", "safetensors" or "npz"
    unwrapped: tuple  # the wrapper keys descended through, outermost first, e.g. ("state_dict",)
    stripped: str | None  # "module." when that prefix was removed from keys, else None
    skipped: tuple  # entries beside the weights that were left out ("epoch", "optimizer", ...)

    def describe(self) -> str:
        parts = [f"{len(self.state_dict)} arrays from a {self.format} file"]
        if self.unwrapped:
            parts.append("unwrapped " + " -> ".join(repr(k) for k in self.unwrapped))
        if self.stripped:
            parts.append(f"stripped {self.stripped!r} from the keys")
        if self.skipped:
            parts.append("skipped " + ", ".join(repr(k) for k in self.skipped))
        return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# dtypes: PyTorch storage names and safetensors codes -> NumPy (little-endian); "bf16" is special

_TORCH_STORAGES = {
    "DoubleStorage": "f8", "FloatStorage": "f4", "HalfStorage": "f2", "BFloat16Storage": "bf16",
    "LongStorage": "i8", "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "b1", "UntypedStorage": "u1",
}
_TORCH_DTYPES = ("float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")
_SAFETENSORS_DTYPES = {
    "F64": "f8", "F32": "f4", "F16": "f2", "BF16": "bf16", "I64": "i8", "I32": "i4", "I16": "i2",
    "I8": "i1", "U8": "u1", "BOOL": "b1",
}


def _numpy_dtype(code: str, byteorder: str = "<") -> np.dtype:
    """A storage code as a NumPy dtype; bfloat16 is read as its 16 raw bits (see :func:`_bf16_to_f32`)."""
    return np.dtype(byteorder + ("u2" if code == "bf16" else code))


def _bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits -> float32, exactly: a bfloat16 is the upper 16 bits of a float32."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _code_of(array: np.ndarray, codes: dict, key: str, path) -> str:
    """The format's name (a key of ``codes``) for an array's dtype; ``WeightsFileError`` if it has none."""
    by_numpy = {np.dtype(c).str[1:]: name for name, c in codes.items() if c != "bf16"}
    code = by_numpy.get(array.dtype.str[1:])
    if code is None:
        raise WeightsFileError(f"{path}: cannot store {key!r} of dtype {array.dtype}; "
                               f"supported: {sorted(set(np.dtype(c).name for c in codes.values() if c != 'bf16'))}")
    return code


# --------------------------------------------------------------------------------------------------
# PyTorch zip format: reading


class _StorageType(NamedTuple):
    code: str  # a value of _TORCH_STORAGES


class _Storage(NamedTuple):
    data: np.ndarray  # 1-D, the storage's elements (bfloat16 as uint16 bits)
    code: str


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    """``torch._utils._rebuild_tensor_v2``: the view ``as_strided(storage, size, stride, offset)``."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor's storage is not a persistent storage reference")
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    data = storage.data
    if len(size) != len(stride) or min(stride, default=0) < 0 or offset < 0:
        raise pickle.UnpicklingError(f"bad tensor view: size {size}, stride {stride}, offset {offset}")
    if math.prod(size) > 0:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= data.size:
            raise pickle.UnpicklingError(f"tensor view (size {size}, stride {stride}, offset {offset}) "
                                         f"reaches past its storage of {data.size} elements")
    view = np.lib.stride_tricks.as_strided(data[offset:], size, [s * data.itemsize for s in stride], writeable=False)
    array = np.array(view)  # own copy, C-contiguous
    return _bf16_to_f32(array) if storage.code == "bf16" else array


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    """``torch._utils._rebuild_parameter``: a Parameter is its data."""
    return data


_TORCH_GLOBALS = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **{("torch", name): _StorageType(code) for name, code in _TORCH_STORAGES.items()},
    **{("torch", name): name for name in _TORCH_DTYPES},  # a dtype in metadata: kept as its name
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`_TORCH_GLOBALS`; storages come from the archive by persistent id."""

    def __init__(self, file, path, read_record, byteorder):
        super().__init__(file)
        self._path, self._read_record, self._byteorder = path, read_record, byteorder
        self._storages = {}

    def find_class(self, module, name):
        try:
            return _TORCH_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeGlobalError(
                f"{self._path}: the pickle asks for the global {module}.{name}, which a tensor checkpoint "
                "does not need; refused (nothing was executed)"
            ) from None

    def persistent_load(self, pid):
        # pid = ('storage', storage type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, storage_type, key, _, numel = pid
        if key not in self._storages:
            dtype = _numpy_dtype(storage_type.code, self._byteorder)
            raw = self._read_record(str(key))
            if len(raw) != numel * dtype.itemsize:
                raise pickle.UnpicklingError(f"storage {key!r} holds {len(raw)} bytes, "
                                             f"expected {numel} × {dtype.itemsize}")
            self._storages[key] = _Storage(np.frombuffer(raw, dtype=dtype), storage_type.code)
        return self._storages[key]


def _read_torch_zip(path: Path, archive: zipfile.ZipFile):
    pickles = [n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise WeightsFileError(f"{path}: a zip file, but not a PyTorch checkpoint (no <archive>/data.pkl)")
    prefix = pickles[0][: -len("data.pkl")]
    names = set(archive.namelist())
    byteorder = archive.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
    if byteorder not in ("little", "big"):
        raise WeightsFileError(f"{path}: unknown byteorder record {byteorder!r}")

    def read_record(key):
        name = f"{prefix}data/{key}"
        if name not in names:
            raise pickle.UnpicklingError(f"missing storage record {name!r}")
        return archive.read(name)

    unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), path, read_record,
                                     "<" if byteorder == "little" else ">")
    return unpickler.load()


# --------------------------------------------------------------------------------------------------
# PyTorch zip format: writing. The pickle is written opcode by opcode (protocol 2, as torch.save),
# because the pickle module would need to import torch to name torch's globals.


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"  # GLOBAL


def _op_str(s: str) -> bytes:
    data = s.encode("utf-8")
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _op_int(n: int) -> bytes:
    if -(2**31) <= n < 2**31:
        return b"J" + struct.pack("<i", n)  # BININT
    data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def _op_tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"  # MARK ... TUPLE


_OP_ORDERED_DICT = _op_global("collections", "OrderedDict") + b")R"  # OrderedDict() : EMPTY_TUPLE REDUCE
_TORCH_WRITTEN = {name: code for name, code in _TORCH_STORAGES.items() if name != "UntypedStorage"}


def _torch_pickle(state: dict, storage_types: list) -> bytes:
    """``OrderedDict(name -> _rebuild_tensor_v2(storage i, 0, shape, C strides, False, OrderedDict()))``."""
    out = [b"\x80\x02", _OP_ORDERED_DICT, b"("]  # PROTO 2, the dict, MARK for SETITEMS
    for i, (name, array) in enumerate(state.items()):
        strides, step = [], 1
        for n in reversed(array.shape):
            strides.insert(0, step)
            step *= n
        storage = _op_tuple([_op_str("storage"), _op_global("torch", storage_types[i]),
                             _op_str(str(i)), _op_str("cpu"), _op_int(array.size)]) + b"Q"  # BINPERSID
        args = _op_tuple([storage, _op_int(0), _op_tuple(map(_op_int, array.shape)),
                          _op_tuple(map(_op_int, strides)), b"\x89", _OP_ORDERED_DICT])  # NEWFALSE
        out += [_op_str(name), _op_global("torch._utils", "_rebuild_tensor_v2"), args, b"R"]  # REDUCE
    out.append(b"u.")  # SETITEMS, STOP
    return b"".join(out)


def _write_torch(state: dict, path: Path) -> None:
    storage_types = [_code_of(array, _TORCH_WRITTEN, name, path) for name, array in state.items()]
    archive = path.name.split(".")[0] or "archive"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", _torch_pickle(state, storage_types))
        zf.writestr(f"{archive}/byteorder", "little")
        for i, array in enumerate(state.values()):
            zf.writestr(f"{archive}/data/{i}", array.tobytes())
        zf.writestr(f"{archive}/version", "3\n")


# --------------------------------------------------------------------------------------------------
# safetensors


def _read_safetensors(path: Path, raw: bytes) -> dict:
    (length,) = struct.unpack("<Q", raw[:8])
    if not 2 <= length <= min(_MAX_HEADER, len(raw) - 8):
        raise WeightsFileError(f"{path}: safetensors header length {length} does not fit the file of {len(raw)} bytes")
    try:
        header = json.loads(raw[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WeightsFileError(f"{path}: the safetensors header is not JSON ({error})") from None
    data = memoryview(raw)[8 + length :]
    state = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            code = _SAFETENSORS_DTYPES[entry["dtype"]]
            shape = tuple(int(n) for n in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise WeightsFileError(f"{path}: bad safetensors entry {name!r}: {entry!r}") from None
        dtype = _numpy_dtype(code)
        if not (0 <= begin <= end <= len(data)) or end - begin != math.prod(shape) * dtype.itemsize:
            raise WeightsFileError(f"{path}: safetensors entry {name!r} ({entry}) does not fit the data")
        array = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape).copy()
        state[name] = _bf16_to_f32(array) if code == "bf16" else array
    return state


def _write_safetensors(state: dict, path: Path) -> None:
    header, offset = {}, 0
    for name, array in state.items():
        nbytes = array.size * array.itemsize
        header[name] = {"dtype": _code_of(array, _SAFETENSORS_DTYPES, name, path), "shape": list(array.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for array in state.values():
            f.write(array.tobytes())


# --------------------------------------------------------------------------------------------------
# .npz


def _read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except ValueError as error:  # object arrays need pickle: refused
        raise WeightsFileError(f"{path}: cannot read the .npz without pickle ({error})") from None


def _write_npz(state: dict, path: Path) -> None:
    for name, array in state.items():
        if array.dtype == object:
            raise WeightsFileError(f"{path}: cannot store {name!r}: object arrays need pickle")
    with open(path, "wb") as f:  # an open file, so NumPy does not append ".npz" to the name
        np.savez(f, **state)


# --------------------------------------------------------------------------------------------------
# unwrapping a checkpoint


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(k, str) and isinstance(v, np.ndarray)
                                                       for k, v in obj.items())


def unwrap_checkpoint(obj, path="<checkpoint>") -> tuple:
    """``(state_dict, unwrapped, stripped, skipped)`` from a loaded checkpoint object.

    Descends through ``state_dict`` / ``model`` / ``module`` entries (in that order of preference)
    until every value is an array, leaving out the entries beside them, then removes a leading
    ``module.`` from the keys.
    """
    unwrapped, skipped = [], []
    while not _is_state_dict(obj):
        if not isinstance(obj, dict):
            raise WeightsFileError(f"{path}: not a checkpoint: holds a {type(obj).__name__}, not a dict of arrays")
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if key is None:
            raise WeightsFileError(f"{path}: no state dict found: the entries {sorted(map(str, obj))[:8]} are not "
                                   f"all arrays and none of {WRAPPER_KEYS} holds a dict")
        unwrapped.append(key)
        skipped += [str(k) for k in obj if k != key]
        obj = obj[key]
    stripped = MODULE_PREFIX if any(k.startswith(MODULE_PREFIX) for k in obj) else None
    state = {k.removeprefix(MODULE_PREFIX): v for k, v in obj.items()}
    if len(state) != len(obj):
        raise WeightsFileError(f"{path}: keys collide once {MODULE_PREFIX!r} is stripped")
    return state, tuple(unwrapped), stripped, tuple(skipped)


# --------------------------------------------------------------------------------------------------
# public entry points


def _sniff(path: Path, head: bytes) -> str:
    """The format from the first bytes: a zip (torch or npz), safetensors, or a legacy torch pickle."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        raise WeightsFileError(f"{path}: a legacy (before PyTorch 1.6) torch.save file, which is not supported; "
                               "re-save it with a newer PyTorch: torch.save(torch.load(old), new)")
    raise WeightsFileError(f"{path}: not a weights file (neither a PyTorch zip, safetensors nor .npz)")


def read_weights(path) -> Weights:
    """The state dict in ``path`` (any supported format), unwrapped; ``WeightsFileError`` otherwise."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            kind = _sniff(path, f.read(16))
        if kind == "safetensors":
            raw = path.read_bytes()
    except OSError as error:
        raise WeightsFileError(f"{path}: cannot read ({error.strerror})") from None
    if kind == "safetensors":
        fmt, obj = "safetensors", _read_safetensors(path, raw)
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                if any(n.endswith(".npy") for n in archive.namelist()):
                    fmt, obj = "npz", _read_npz(path)
                else:
                    fmt, obj = "torch", _read_torch_zip(path, archive)
        except WeightsFileError:
            raise
        except (zipfile.BadZipFile, EOFError, OSError) as error:
            raise WeightsFileError(f"{path}: a damaged or truncated zip file ({error})") from None
        except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
            raise WeightsFileError(f"{path}: not a readable PyTorch checkpoint "
                                   f"({type(error).__name__}: {error})") from None
    state, unwrapped, stripped, skipped = unwrap_checkpoint(obj, path)
    return Weights(state, fmt, unwrapped, stripped, skipped)


def load_state_dict(path) -> dict:
    """``{name: NumPy array}`` from ``path``; what was unwrapped is logged at INFO level."""
    weights = read_weights(path)
    log.info("%s: %s", path, weights.describe())
    return weights.state_dict


def _little_endian(value) -> np.ndarray:
    """C-ordered and little-endian, as every format stores its elements."""
    array = np.asarray(value)
    return np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")  # keeps 0-d arrays 0-d


def save_state_dict(state: dict, path) -> Path:
    """Writes ``state`` (name -> array) in the format of ``path``'s suffix; returns the path."""
    path = Path(path)
    name = path.name.lower()
    state = {str(k): _little_endian(v) for k, v in state.items()}
    if name.endswith(SAFETENSORS_SUFFIX):
        _write_safetensors(state, path)
    elif name.endswith(NPZ_SUFFIX):
        _write_npz(state, path)
    elif name.endswith(TORCH_SUFFIXES):
        _write_torch(state, path)
    else:
        raise WeightsFileError(f"{path}: unknown weights format; the name must end in one of "
                               f"{TORCH_SUFFIXES + (SAFETENSORS_SUFFIX, NPZ_SUFFIX)}")
    return path
