"""A strict stand-in for CuPy over NumPy: device code tested on a machine without a GPU.

``strict`` is a module-like namespace shaped like ``cupy``; its :class:`ndarray` wraps a NumPy
array and behaves as a CuPy array does where NumPy code would silently go wrong on a GPU:

- **No implicit host conversion.** ``np.asarray(a)``, ``np.array(a)``, ``np.ascontiguousarray(a)``
  raise ``TypeError`` (CuPy's ``__array__`` does). The explicit ways are CuPy's: ``a.get()``,
  ``strict.asnumpy(a)``, ``a.item()``, ``a.tolist()``, and, as in CuPy (``__float__`` is
  ``float(self.get())``), ``float(a)``, ``int(a)``, ``complex(a)``, ``bool(a)`` on a one-element
  array, ``repr``/``str``/``format`` of an array, pickling. Each of these is one device→host
  synchronisation, counted and logged with the whitebox line that caused it.
- **No host/device mixing.** An operation with a NumPy array operand raises ``TypeError``
  (CuPy: "Unsupported type <class 'numpy.ndarray'>"), whichever side it is on; Python and NumPy
  scalars are fine. ``np.f(a)`` dispatches to ``strict.f`` where CuPy has ``f`` (CuPy's
  ``__array_function__`` / ``__array_ufunc__``), else ``TypeError``.
- **Only CuPy's names.** The namespace holds the NumPy functions CuPy also has (a list below),
  ``strict.random.default_rng(seed)`` whose ``Generator`` has CuPy's methods (``random``,
  ``integers``, ``uniform``, ``standard_normal``, ...; not NumPy's ``normal``, ``permutation``,
  ``choice`` or ``shuffle``, which CuPy's ``Generator`` lacks), ``strict.cuda`` with
  ``get_current_stream().synchronize()``, ``Device``, ``runtime.getDeviceCount()``. Anything
  else is an ``AttributeError`` naming the stand-in. Its streams differ from NumPy's (Philox, not
  PCG64), as CuPy's do, so a test cannot rely on device random numbers equalling the host's.
- **Data-dependent shapes synchronise**, as in CuPy: boolean-mask indexing, ``nonzero``,
  ``argwhere``, ``flatnonzero``, ``unique``, one-argument ``where``, ``bincount``.
- **Indexing** takes CuPy's index kinds (slices, ints, CuPy arrays, and host lists/arrays, which
  CuPy uploads); assigning a NumPy array through basic indexing is refused (CuPy fills from a
  scalar or copies from a CuPy array there), through an advanced index it is uploaded.

Counting
--------
``with strict.counting() as c: ...`` then ``c.launches`` (kernel launches, roughly as CuPy makes
them: one per elementwise operation, reduction, matmul/einsum, copy, creation with a fill, random
draw, linear-algebra call; views, shape changes without a copy and ``empty`` launch nothing),
``c.syncs`` (device→host synchronisations), ``c.sync_sites`` (for each sync, ``"path.py:line"``
of the first frame inside ``whitebox/``, else of the first frame outside this file) and
``c.uploads`` (host→device copies). Counters nest: every open one counts.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import types

import numpy as np

import whitebox

_THIS_FILE = os.path.abspath(__file__)
_WHITEBOX_DIR = os.path.dirname(os.path.abspath(whitebox.__file__)) + os.sep
_ROOT = os.path.dirname(_WHITEBOX_DIR.rstrip(os.sep))


# ----------------------------------------------------------------------------------------------
# counting


class Counts:
    """What happened on the stand-in device inside one ``counting()`` block."""

    def __init__(self):
        self.launches = 0
        self.syncs = 0
        self.uploads = 0
        self.sync_sites: list[str] = []

    def sites(self) -> collections.Counter:
        """``{"whitebox/...py:line": number of syncs there}``."""
        return collections.Counter(self.sync_sites)

    def __repr__(self):
        return f"Counts(launches={self.launches}, syncs={self.syncs}, uploads={self.uploads}, sites={dict(self.sites())})"


_open: list[Counts] = []


@contextlib.contextmanager
def counting():
    """Count launches, syncs (with their sites) and uploads made inside the block."""
    c = Counts()
    _open.append(c)
    try:
        yield c
    finally:
        _open.remove(c)


def _launch(n: int = 1) -> None:
    for c in _open:
        c.launches += n


def _upload() -> None:
    for c in _open:
        c.uploads += 1


def _sync_site() -> str:
    frame, fallback = sys._getframe(2), None
    while frame is not None:
        name = os.path.abspath(frame.f_code.co_filename)
        if name.startswith(_WHITEBOX_DIR):
            return f"{os.path.relpath(name, _ROOT)}:{frame.f_lineno}"
        if fallback is None and name != _THIS_FILE:
            fallback = f"{os.path.relpath(name, _ROOT)}:{frame.f_lineno}"
        frame = frame.f_back
    return fallback or "?"


def _sync() -> None:
    if _open:
        site = _sync_site()
        for c in _open:
            c.syncs += 1
            c.sync_sites.append(site)


# ----------------------------------------------------------------------------------------------
# moving between the wrapped and the plain world


def _mixing_error(value) -> TypeError:
    return TypeError(f"Unsupported type {type(value)} (strict CuPy stand-in): a NumPy array cannot be mixed with "
                     "device arrays; move it with xp.asarray(...) first")


def _unwrap(value):
    """The NumPy payload of device arrays in ``value`` (recursing into lists and tuples); NumPy arrays refused."""
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray):
        raise _mixing_error(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v) for v in value)
    return value


def _wrap(value):
    """Device arrays for the NumPy arrays (and NumPy scalars: CuPy returns 0-d arrays) in ``value``."""
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _kernel(fn, launches: int = 1, sync: bool = False):
    """``fn`` over device arrays: arguments unwrapped (NumPy arrays refused), results wrapped, launches counted."""

    def call(*args, **kwargs):
        out = fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        _launch(launches)
        if sync:
            _sync()
        return _wrap(out)

    call.__name__ = call.__qualname__ = getattr(fn, "__name__", "kernel")
    return call


def _view(fn):
    """A function that returns views (no launch), or copies when NumPy had to (then one launch)."""

    def call(a, *args, **kwargs):
        source = _unwrap(a)
        out = fn(source, *_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        if any(isinstance(o, np.ndarray) and not np.may_share_memory(o, s)
               for o in (out if isinstance(out, (tuple, list)) else (out,))
               for s in (source if isinstance(source, (tuple, list)) else (source,))
               if isinstance(s, np.ndarray)):
            _launch()
        return _wrap(out)

    call.__name__ = call.__qualname__ = fn.__name__
    return call


# ----------------------------------------------------------------------------------------------
# the array


def _index(key):
    """``(numpy key, has an advanced index, has a boolean mask)``; host index arrays are uploaded as CuPy does."""
    parts = key if isinstance(key, tuple) else (key,)
    out, advanced, mask = [], False, False
    for k in parts:
        if isinstance(k, ndarray):
            k = k._a
        elif isinstance(k, (np.ndarray, list)):
            _upload()
            k = np.asarray(k)
        if isinstance(k, np.ndarray):
            advanced = True
            mask = mask or k.dtype == bool
        elif isinstance(k, (bool, np.bool_)):
            advanced = mask = True
        out.append(k)
    return (tuple(out) if isinstance(key, tuple) else out[0]), advanced, mask


class ndarray:
    """A device array of the stand-in: a NumPy array that never leaves the "device" implicitly."""

    __slots__ = ("_a",)
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, payload: np.ndarray):
        if not isinstance(payload, np.ndarray):
            raise TypeError("strict ndarray wraps a NumPy array; create device arrays with strict.asarray/zeros/...")
        self._a = payload

    # attributes --------------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    real = property(lambda self: ndarray(self._a.real))
    imag = property(lambda self: ndarray(self._a.imag))
    device = property(lambda self: cuda.Device(0))

    # the explicit ways to the host (one sync each) ---------------------------------------------
    def get(self, stream=None, order="C", out=None):
        _sync()
        host = np.array(self._a, order=order)
        if out is not None:
            out[...] = host
            return out
        return host

    def item(self):
        _sync()
        return self._a.item()

    def tolist(self):
        _sync()
        return self._a.tolist()

    def tobytes(self, order="C"):
        _sync()
        return self._a.tobytes(order)

    def __float__(self):
        _sync()
        return float(self._a)

    def __int__(self):
        _sync()
        return int(self._a)

    def __complex__(self):
        _sync()
        return complex(self._a)

    def __bool__(self):
        if self._a.size == 1:
            _sync()
        return bool(self._a)

    def __repr__(self):
        _sync()
        return repr(self._a)

    def __str__(self):
        _sync()
        return str(self._a)

    def __format__(self, spec):
        _sync()
        return format(self._a, spec)

    def __reduce__(self):
        return _from_host, (self.get(),)

    # what CuPy refuses ---------------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (strict CuPy stand-in). "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        own = getattr(_namespace, ufunc.__name__, None)
        if own is None or method not in ("__call__", "at", "reduce", "outer"):
            return NotImplemented
        for x in inputs + tuple(kwargs.get("out", ())):
            if isinstance(x, np.ndarray):
                raise _mixing_error(x)
        if "out" in kwargs:
            kwargs["out"] = kwargs["out"][0]
        return own(*inputs, **kwargs) if method == "__call__" else getattr(own, method)(*inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        module = _namespace
        for part in func.__module__.split(".")[1:]:
            module = getattr(module, part, None)
        own = getattr(module, func.__name__, None)
        if own is None or any(t not in (ndarray, np.ndarray) for t in types_):
            return NotImplemented
        return own(*args, **kwargs)

    # containers ------------------------------------------------------------------------------
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self._a.shape[0]))

    def __getitem__(self, key):
        key, advanced, mask = _index(key)
        out = self._a[key]
        if advanced:
            _launch(2 if mask else 1)
        if mask:
            _sync()
        if not isinstance(out, np.ndarray):  # a scalar: CuPy gives a 0-d view, as NumPy does with a trailing ...
            out = self._a[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]
        return ndarray(out)

    def __setitem__(self, key, value):
        key, advanced, mask = _index(key)
        if isinstance(value, ndarray):
            value = value._a
        elif isinstance(value, np.ndarray) and value.ndim > 0:
            if not advanced:
                raise TypeError("a NumPy array cannot be assigned to a device array through basic indexing "
                                "(strict CuPy stand-in): move it with xp.asarray(...) first")
            _upload()
        self._a[key] = value
        _launch(2 if mask else 1)
        if mask:
            _sync()

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    # methods -----------------------------------------------------------------------------------
    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and np.dtype(dtype) == self._a.dtype:
            return self
        _launch()
        return ndarray(self._a.astype(dtype, order=order))

    def copy(self, order="C"):
        _launch()
        return ndarray(self._a.copy(order=order))

    def fill(self, value):
        if isinstance(value, np.ndarray) and value.ndim > 0:
            raise _mixing_error(value)
        self._a.fill(_unwrap(value))
        _launch()

    def sort(self, axis=-1):
        self._a.sort(axis=axis)
        _launch()

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        _upload()
        self._a[...] = arr

    def nonzero(self):
        return _namespace.nonzero(self)

    def view(self, dtype=None):
        return ndarray(self._a.view() if dtype is None else self._a.view(dtype))


def _from_host(host):
    _upload()
    return ndarray(np.array(host))



def _operator(name, fn, inplace=False):
    def op(self, other):
        if isinstance(other, np.ndarray):
            raise _mixing_error(other)
        if isinstance(other, ndarray):
            other = other._a
        elif not isinstance(other, (int, float, complex, bool, np.generic)):
            return NotImplemented
        if inplace:
            fn(self._a, other, out=self._a)
            _launch()
            return self
        out = fn(self._a, other)
        _launch()
        return _wrap(out)

    op.__name__ = name
    return op


def _reflected(name, fn):
    def op(self, other):
        if isinstance(other, np.ndarray):
            raise _mixing_error(other)
        if not isinstance(other, (int, float, complex, bool, np.generic)):
            return NotImplemented
        _launch()
        return _wrap(fn(other, self._a))

    op.__name__ = name
    return op


_BINARY = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
           "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
           "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
           "lshift": np.left_shift, "rshift": np.right_shift}
for _name, _fn in _BINARY.items():
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__", _fn))
    setattr(ndarray, f"__r{_name}__", _reflected(f"__r{_name}__", _fn))
    if _name != "matmul":
        setattr(ndarray, f"__i{_name}__", _operator(f"__i{_name}__", _fn, inplace=True))
for _name, _fn in {"lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
                   "eq": np.equal, "ne": np.not_equal}.items():
    setattr(ndarray, f"__{_name}__", _operator(f"__{_name}__", _fn))
for _name, _fn in {"neg": np.negative, "abs": np.absolute, "invert": np.invert}.items():
    setattr(ndarray, f"__{_name}__", _kernel(_fn))
ndarray.__pos__ = lambda self: self

# methods that launch one kernel (reductions, elementwise, copies), as CuPy's ndarray has them
for _name in ("sum", "mean", "prod", "max", "min", "argmax", "argmin", "all", "any", "std", "var",
              "cumsum", "cumprod", "trace", "clip", "round", "conj", "conjugate", "flatten", "repeat", "take",
              "argsort", "dot", "searchsorted"):
    setattr(ndarray, _name, _kernel(getattr(np.ndarray, _name)))
# methods that return views (a launch only when NumPy had to copy)
for _name in ("reshape", "transpose", "swapaxes", "squeeze", "ravel", "diagonal"):
    setattr(ndarray, _name, _view(getattr(np.ndarray, _name)))


# ----------------------------------------------------------------------------------------------
# the namespace


class _Ufunc:
    """A CuPy ufunc: a call launches one kernel; ``at``, ``reduce`` and ``outer`` as CuPy 13 has them."""

    def __init__(self, fn):
        self._fn, self._call = fn, _kernel(fn)
        self.__name__ = fn.__name__
        self.reduce = _kernel(fn.reduce)
        self.outer = _kernel(fn.outer)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise _mixing_error(a) if isinstance(a, np.ndarray) else TypeError("ufunc.at needs a device array")
        indices, _, _ = _index(indices)
        args = () if b is None else (_unwrap(b),)
        self._fn.at(a._a, indices, *args)
        _launch()


def _holds_device_arrays(obj) -> bool:
    return isinstance(obj, (list, tuple)) and any(isinstance(v, ndarray) or _holds_device_arrays(v) for v in obj)


def asarray(a, dtype=None, order=None, *, blocking=False):
    """A device array of ``a``: itself when it already is one (cast if ``dtype`` asks), one launch for a
    list of device arrays (CuPy stacks them on the device), else an upload."""
    if isinstance(a, ndarray):
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return array(a, dtype=dtype, order=order if order in ("C", "F") else "K")


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    """A new device array (a copy of a device array or of a list of them, an upload of host data)."""
    if isinstance(obj, ndarray) or _holds_device_arrays(obj):
        _launch()
        return ndarray(np.array(_unwrap(obj), dtype=dtype, copy=True, order=order, ndmin=ndmin))
    _upload()
    return ndarray(np.array(obj, dtype=dtype, order=order, ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None):
    """A NumPy copy of a device array (one sync); a host value is returned as a NumPy array."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def get_array_module(*args):
    """``strict`` when any argument is a device array of the stand-in, else ``numpy``."""
    return _namespace if any(isinstance(a, ndarray) for a in args) else np


def ascontiguousarray(a, dtype=None):
    if not isinstance(a, ndarray):
        raise _mixing_error(a) if isinstance(a, np.ndarray) else TypeError("ascontiguousarray needs a device array")
    if a._a.flags.c_contiguous and (dtype is None or np.dtype(dtype) == a.dtype):
        return a
    _launch()
    return ndarray(np.ascontiguousarray(a._a, dtype=dtype))


def where(condition, *xy):
    if not xy:
        return _namespace.nonzero(condition)
    return _kernel(np.where)(condition, *xy)


def _creation(fn, launches=1):
    def call(*args, **kwargs):
        _launch(launches)
        return ndarray(fn(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()}))

    call.__name__ = call.__qualname__ = fn.__name__
    return call


_UFUNCS = ("add subtract multiply divide true_divide floor_divide power float_power negative positive absolute "
           "fabs sign sqrt cbrt square reciprocal exp exp2 expm1 log log2 log10 log1p sin cos tan arcsin arccos "
           "arctan arctan2 sinh cosh tanh arcsinh arccosh arctanh hypot maximum minimum fmax fmin logaddexp "
           "logaddexp2 ldexp frexp remainder mod fmod floor ceil trunc rint copysign heaviside equal not_equal "
           "less less_equal greater greater_equal logical_and logical_or logical_xor logical_not isfinite isinf "
           "isnan signbit bitwise_and bitwise_or bitwise_xor invert left_shift right_shift matmul").split()
_KERNELS = ("abs around round clip nan_to_num sum prod mean std var max min amax amin argmax argmin all any "
            "cumsum cumprod diff ptp median average count_nonzero nansum nanmean nanmax nanmin dot vdot inner "
            "outer tensordot einsum kron cross trace concatenate stack vstack hstack dstack column_stack pad tile "
            "repeat roll take take_along_axis sort argsort lexsort searchsorted tril triu diag diagflat copy "
            "isclose allclose array_equal interp histogram convolve cov corrcoef meshgrid rot90").split()
_VIEWS = ("reshape transpose swapaxes moveaxis rollaxis expand_dims squeeze broadcast_to broadcast_arrays "
          "atleast_1d atleast_2d atleast_3d split array_split hsplit vsplit ravel diagonal flip fliplr flipud").split()
_CREATIONS = ("zeros ones full zeros_like ones_like full_like arange linspace logspace eye identity tri "
              "indices").split()
_SYNCING = "nonzero argwhere flatnonzero unique bincount".split()
_CONSTANTS = ("pi e inf nan newaxis euler_gamma float16 float32 float64 complex64 complex128 int8 int16 int32 int64 "
              "uint8 uint16 uint32 uint64 bool_ intp uintp integer floating complexfloating number signedinteger "
              "unsignedinteger generic dtype finfo iinfo issubdtype can_cast promote_types isscalar "
              "common_type").split()


def result_type(*arrays_and_dtypes):
    return np.result_type(*(a.dtype if isinstance(a, ndarray) else a for a in arrays_and_dtypes))


def diag_indices(n, ndim=2):
    _launch()
    return (ndarray(np.arange(n)),) * ndim


def ix_(*args):
    return tuple(ndarray(a) for a in np.ix_(*_unwrap(args)))


class _Generator:
    """CuPy's ``Generator``: the methods it has, each one launch; streams from Philox, not NumPy's PCG64."""

    def __init__(self, seed):
        self._rng = np.random.Generator(np.random.Philox(seed))

    def _draw(self, method, *args, **kwargs):
        _launch()
        return ndarray(np.asarray(getattr(self._rng, method)(*_unwrap(args), **kwargs)))

    def random(self, size=None, dtype=np.float64, out=None):
        return self._fill(out, self._draw("random", size, dtype=dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        low, high = int(low), (None if high is None else int(high))  # CuPy: int(low), int(high) on the host
        return self._draw("integers", low, high, size, dtype=dtype, endpoint=endpoint)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        return self._draw("uniform", low, high, size).astype(dtype, copy=False)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return self._fill(out, self._draw("standard_normal", size, dtype=dtype))

    def standard_exponential(self, size=None, dtype=np.float64, method="inv", out=None):
        return self._fill(out, self._draw("standard_exponential", size, dtype=dtype))

    def exponential(self, scale=1.0, size=None):
        return self._draw("exponential", scale, size)

    def gamma(self, shape, scale=1.0, size=None):
        return self._draw("gamma", shape, scale, size)

    def standard_gamma(self, shape, size=None, dtype=np.float64, out=None):
        return self._fill(out, self._draw("standard_gamma", shape, size, dtype=dtype))

    def beta(self, a, b, size=None, dtype=np.float64):
        return self._draw("beta", a, b, size).astype(dtype, copy=False)

    def binomial(self, n, p, size=None):
        return self._draw("binomial", n, p, size)

    def poisson(self, lam=1.0, size=None):
        return self._draw("poisson", lam, size)

    def __getattr__(self, name):
        raise AttributeError(f"CuPy's Generator has no method {name!r} (strict stand-in); it has random, integers, "
                             "uniform, standard_normal, ...")

    @staticmethod
    def _fill(out, y):
        if out is None:
            return y
        out[...] = y
        return out


def default_rng(seed=None):
    """A seeded device ``Generator`` (CuPy's ``cupy.random.default_rng``)."""
    return _Generator(seed)


class _Stream:
    def synchronize(self):
        _sync()


class _Device:
    def __init__(self, device=0):
        self.id = int(device)

    def synchronize(self):
        _sync()

    def use(self):
        return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _device_count():
    return 1


class _Namespace(types.ModuleType):
    """A module whose missing attributes name the stand-in (CuPy has no such name either)."""

    def __getattr__(self, name):
        raise AttributeError(f"module 'cupy' (strict stand-in) has no attribute {name!r}: CuPy has no such name, "
                             f"or the stand-in does not provide it")


def _module(name, **attrs):
    m = _Namespace(name)
    m.__dict__.update(attrs)
    return m


cuda = _module("cupy.cuda", get_current_stream=_Stream, Device=_Device,
               runtime=_module("cupy.cuda.runtime", getDeviceCount=_device_count))
random = _module("cupy.random", default_rng=default_rng, Generator=_Generator)
linalg = _module("cupy.linalg", **{n: _kernel(getattr(np.linalg, n))
                                   for n in "cholesky qr svd eigh eigvalsh solve inv pinv det slogdet norm".split()})

_namespace = _module(
    "cupy",
    __doc__=__doc__,
    ndarray=ndarray, asarray=asarray, array=array, asnumpy=asnumpy, get_array_module=get_array_module,
    ascontiguousarray=ascontiguousarray, where=where, result_type=result_type, diag_indices=diag_indices, ix_=ix_,
    empty=_creation(np.empty, 0), empty_like=_creation(np.empty_like, 0),
    cuda=cuda, random=random, linalg=linalg, counting=counting, Counts=Counts,
    **{n: _Ufunc(getattr(np, n)) for n in _UFUNCS},
    **{n: _kernel(getattr(np, n)) for n in _KERNELS},
    **{n: _view(getattr(np, n)) for n in _VIEWS},
    **{n: _creation(getattr(np, n)) for n in _CREATIONS},
    **{n: _kernel(getattr(np, n), sync=True) for n in _SYNCING},
    **{n: getattr(np, n) for n in _CONSTANTS},
)
_namespace.__file__ = __file__

strict = _namespace
"""The stand-in namespace: use it where code would use ``cupy``."""
