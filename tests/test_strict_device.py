"""The strict CuPy stand-in (tests/strict_device.py) catches the usual NumPy-to-CuPy bugs and lets
CuPy's legal idioms through, and whitebox.backend selects it through ``use_device_module``."""

import pickle

import numpy as np
import pytest
from strict_device import strict as xp

from whitebox import backend


@pytest.fixture
def a():
    return xp.asarray(np.arange(12.0).reshape(3, 4))


# ----------------------------------------------------------------------------------------------
# typical bugs, each caught


@pytest.mark.parametrize("convert", [np.asarray, np.array, np.ascontiguousarray, lambda d: np.float64(d) + np.zeros(4)])
def test_implicit_host_conversion_is_refused(a, convert):
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        convert(a)


@pytest.mark.parametrize("mix", [
    lambda d, h: d + h,
    lambda d, h: h + d,
    lambda d, h: h * d,
    lambda d, h: d @ h.T,
    lambda d, h: xp.concatenate([d, h]),
    lambda d, h: xp.where(h > 0, d, d),
    lambda d, h: xp.einsum("ij,ij->i", d, h),
    lambda d, h: xp.maximum(d, h),
    lambda d, h: np.maximum(h, d),
])
def test_mixing_host_and_device_arrays_is_refused(a, mix):
    with pytest.raises(TypeError, match="numpy.ndarray"):
        mix(a, np.ones((3, 4)))


def test_host_random_numbers_on_a_device_shape_are_refused(a):
    with pytest.raises(TypeError, match="numpy.ndarray"):
        a + np.random.default_rng(0).standard_normal(a.shape)


def test_assigning_a_host_array_through_basic_indexing_is_refused(a):
    with pytest.raises(TypeError, match="basic indexing"):
        a[0] = np.zeros(4)


def test_a_float_per_iteration_is_one_sync_each_and_logged_where_it_happens(a):
    with xp.counting() as c:
        total = 0.0
        for row in a:  # iteration yields device rows (no sync) ...
            total += float(row.sum())  # ... float() on each is one
    assert total == 66.0 and c.syncs == 3
    assert set(c.sites()) == {f"tests/test_strict_device.py:{test_a_float_per_iteration_is_one_sync_each_and_logged_where_it_happens.__code__.co_firstlineno + 4}"}


def test_a_sync_inside_whitebox_is_logged_at_the_whitebox_line(a):
    with backend.use_device_module(xp), xp.counting() as c:
        backend.to_host(a)
    assert c.syncs == 1 and c.sync_sites[0].startswith("whitebox/backend.py:")


@pytest.mark.parametrize("host_wait", [
    lambda d: bool((d > 3).any()),
    lambda d: d.item() if d.size == 1 else d[0, 0].item(),
    lambda d: d.tolist(),
    lambda d: int(d.argmax()),
    lambda d: f"{d.sum():.3f}",
    lambda d: repr(d),
    lambda d: d[d > 3],  # a data-dependent shape
    lambda d: xp.nonzero(d),
    lambda d: xp.where(d > 3),
    lambda d: xp.unique(d),
    lambda d: xp.asnumpy(d),
    lambda d: pickle.dumps(d),
    lambda d: xp.cuda.get_current_stream().synchronize(),
])
def test_every_host_wait_is_counted_once(a, host_wait):
    with xp.counting() as c:
        host_wait(a)
    assert c.syncs == 1


@pytest.mark.parametrize("name", ["errstate", "seterr", "geterr", "nditer"])
def test_names_cupy_lacks_are_missing(name):
    with pytest.raises(AttributeError, match="strict stand-in"):
        getattr(xp, name)


@pytest.mark.parametrize("method", ["normal", "permutation", "choice", "shuffle", "spawn"])
def test_generator_methods_cupy_lacks_are_missing(method):
    with pytest.raises(AttributeError, match="CuPy's Generator has no method"):
        getattr(xp.random.default_rng(0), method)


def test_python_scalar_conversions_of_multi_element_arrays_fail_as_in_numpy(a):
    with pytest.raises(ValueError, match="ambiguous"):
        bool(a > 0)
    with pytest.raises(TypeError):
        float(a)
    with pytest.raises(TypeError, match="0-d"):
        iter(a.sum())


def test_reductions_stay_on_the_device(a):
    with xp.counting() as c:
        s, m, k = a.sum(), xp.max(a), np.sum(a)  # np.sum dispatches to the device, as in CuPy
    assert all(isinstance(v, xp.ndarray) and v.shape == () for v in (s, m, k))
    assert c.syncs == 0 and c.launches == 3


# ----------------------------------------------------------------------------------------------
# legal CuPy idioms pass, without syncs, and agree with NumPy


def test_legal_idioms_agree_with_numpy_and_never_wait_on_the_host():
    host = np.random.default_rng(0).standard_normal((4, 3, 5))
    with xp.counting() as c:
        d = xp.asarray(host)
        idx = xp.asarray([2, 0, 1])
        out = xp.einsum("bij,bkj->bik", d, d)  # matmul-like
        out = out + 2.0 * out.swapaxes(1, 2) - np.float32(1.5)
        out[:, idx] += 1.0  # fancy index, in place
        out[..., [0, 2]] = xp.where(out[..., [0, 2]] > 0, out[..., [0, 2]], 0.0)
        xp.add.at(out, (slice(None), 0, 0), 3.0)
        out /= xp.sqrt(xp.sum(out**2, axis=(1, 2), keepdims=True))
        out = xp.concatenate([out, np.exp(out)], axis=0)[::2]  # np.exp dispatches to the device
        flat = out.reshape(-1)
        top = xp.argsort(flat)[-3:]
        picked = flat[top]
        mask = xp.zeros(flat.shape, dtype=bool)
        mask[top] = True
        kept = xp.where(mask, flat, -flat)
    ref = np.einsum("bij,bkj->bik", host, host)
    ref = ref + 2.0 * ref.swapaxes(1, 2) - np.float32(1.5)
    ref[:, [2, 0, 1]] += 1.0
    ref[..., [0, 2]] = np.where(ref[..., [0, 2]] > 0, ref[..., [0, 2]], 0.0)
    np.add.at(ref, (slice(None), 0, 0), 3.0)
    ref /= np.sqrt(np.sum(ref**2, axis=(1, 2), keepdims=True))
    ref = np.concatenate([ref, np.exp(ref)], axis=0)[::2].reshape(-1)
    ref_top = np.argsort(ref)[-3:]
    ref_kept = np.where(np.isin(np.arange(ref.size), ref_top), ref, -ref)
    assert c.syncs == 0
    np.testing.assert_allclose(picked.get(), ref[ref_top], rtol=1e-12)
    np.testing.assert_allclose(xp.asnumpy(kept), ref_kept, rtol=1e-12)


def test_generator_draws_are_device_arrays_of_the_asked_dtype_and_reproducible():
    with xp.counting() as c:
        r = xp.random.default_rng(7)
        draws = [r.random((2, 3)), r.random(4, dtype=np.float32), r.integers(0, 5, size=6),
                 r.integers(3, size=2), r.uniform(-1, 1, size=(3,)), r.standard_normal((2, 2), dtype=np.float32),
                 r.random()]
    assert c.syncs == 0 and all(isinstance(d, xp.ndarray) for d in draws)
    assert [d.dtype for d in draws] == [np.float64, np.float32, np.int64, np.int64, np.float64, np.float32, np.float64]
    assert draws[-1].shape == ()  # CuPy: a 0-d array, not a Python float
    ints = draws[2].get()
    assert ((0 <= ints) & (ints < 5)).all()
    again = xp.random.default_rng(7).random((2, 3))
    assert np.array_equal(again.get(), draws[0].get())
    assert not np.array_equal(draws[0].get(), np.random.default_rng(7).random((2, 3)))  # not NumPy's stream


def test_launches_are_counted_per_kernel_and_views_are_free(a):
    with xp.counting() as outer:
        with xp.counting() as c:
            a + a
        assert c.launches == 1
        with xp.counting() as c:
            a.reshape(4, 3), a.T, a[1:, ::2], xp.broadcast_to(a, (2, 3, 4)), xp.empty((5,))
        assert c.launches == 0
        with xp.counting() as c:
            a.T.reshape(-1), xp.zeros(3), a.astype(np.float32), a.astype(a.dtype, copy=False)
        assert c.launches == 3
    assert outer.launches == 4 and outer.syncs == 0


def test_a_list_of_device_scalars_becomes_one_device_array_without_a_sync(a):
    with xp.counting() as c:
        stacked = xp.asarray([a.sum(), a.max(), 2.0])
    assert isinstance(stacked, xp.ndarray) and c.syncs == 0 and c.uploads == 0
    np.testing.assert_array_equal(stacked.get(), [66.0, 11.0, 2.0])
    with pytest.raises(TypeError, match="numpy.ndarray"):
        xp.asarray([a, np.ones((3, 4))])


def test_host_index_arrays_and_uploads_are_counted_as_uploads(a):
    with xp.counting() as c:
        a[[0, 2]], a[np.array([1])], xp.asarray(np.ones(2))
    assert c.uploads == 3 and c.syncs == 0


def test_pickling_round_trips_through_the_host(a):
    back = pickle.loads(pickle.dumps(a))
    assert isinstance(back, xp.ndarray) and np.array_equal(back.get(), a.get())


# ----------------------------------------------------------------------------------------------
# selection by whitebox.backend


def test_the_backend_hook_makes_the_stand_in_the_device_inside_its_block_only(a, monkeypatch):
    monkeypatch.setattr(backend, "_device_module", None)
    host = np.ones(3)
    with backend.use_device_module(xp):
        assert backend.gpu_available()
        assert backend.get_xp("gpu") is xp
        assert backend.array_module(a) is xp and backend.array_module(host) is np
        assert backend.is_device_array(a) and not backend.is_device_array(host)
        moved = backend.to_device(host, xp)
        assert isinstance(moved, xp.ndarray) and isinstance(backend.to_host(moved), np.ndarray)
        assert isinstance(backend.default_rng(0, xp).random(2), xp.ndarray)
        with xp.counting() as c:
            backend.synchronize(xp)
        assert c.syncs == 1
        with pytest.raises(TypeError, match="different backends"):
            backend.array_module(a, host)
    assert not backend.is_device_array(a)
    assert backend.array_module(host) is np


def test_the_backend_hook_is_restored_after_an_error(monkeypatch):
    monkeypatch.setattr(backend, "_device_module", None)
    with pytest.raises(RuntimeError, match="boom"):
        with backend.use_device_module(xp):
            raise RuntimeError("boom")
    assert backend._device_module is None


def test_the_backend_hook_refuses_a_module_without_an_array_type():
    with pytest.raises(TypeError, match="CuPy-shaped"):
        with backend.use_device_module(np.linalg):
            pass
