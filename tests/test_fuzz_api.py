"""Fuzzing the lower half of the public API with bad inputs (issue 14).

Each test draws bad inputs with hypothesis -- shapes, dtypes, non-finite values, out-of-range
scalars -- and asserts one clear error: the expected exception type, with the argument named in
its message. Each also checks that a good input next to the bad ones still passes, so a check
that refuses everything would fail here too. Covered: the rate functions, ``cross_entropy``, the
optimisers, the gradient checks, the dataset readers, the backend and the dtype checks.
"""

import pickle
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox import backend
from whitebox.data import read_cifar_batch
from whitebox.data.cifar import parse_cifar_batch
from whitebox.data.idx import parse_idx
from whitebox.gradcheck import entry_errors, grad_errors, vjp_errors
from whitebox.init import cast_params
from whitebox.layers.loss import cross_entropy
from whitebox.optim import SGD, AdamW, Lion
from whitebox.rate import (
    coding_rate,
    coding_rate_grad,
    compression_rate,
    compression_rate_grad,
    sparse_rate_reduction,
    sparse_rate_reduction_grad,
)
from whitebox.validate import check_array, check_class_labels, check_float_dtype

NON_FINITE = st.sampled_from([np.nan, np.inf, -np.inf])
NON_FLOAT_DTYPES = st.sampled_from([np.int8, np.int32, np.int64, np.uint8, np.bool_, np.complex128, object])


def raises_naming(exc, name):
    """``pytest.raises(exc)`` whose message must contain ``name`` (as a word)."""
    return pytest.raises(exc, match=rf"(?<![A-Za-z_]){re.escape(name)}(?![A-Za-z_])")


@st.composite
def tokens(draw, min_N=1):
    """A good ``(Z, U)``: Z ``(N, d)`` or ``(B, N, d)``, U ``(K, d, p)``, float64."""
    N, d, K = draw(st.integers(min_N, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    p = draw(st.integers(1, d))
    batch = draw(st.sampled_from([(), (2,)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.standard_normal(batch + (N, d)), rng.standard_normal((K, d, p))


def poke(x, value, where):
    """A copy of ``x`` with one entry (chosen by the fraction ``where``) set to ``value``."""
    y = x.copy()
    y.flat[int(where * (y.size - 1))] = value
    return y


# ---------------------------------------------------------------- rates


RATES = {
    "coding_rate": lambda Z, U, eps: coding_rate(Z, eps),
    "coding_rate_grad": lambda Z, U, eps: coding_rate_grad(Z, eps),
    "compression_rate": compression_rate,
    "compression_rate_grad": compression_rate_grad,
    "sparse_rate_reduction": lambda Z, U, eps: sparse_rate_reduction(Z, U, eps, 0.1),
    "sparse_rate_reduction_grad": lambda Z, U, eps: sparse_rate_reduction_grad(Z, U, eps, 0.1),
}


@pytest.mark.parametrize("rate", RATES.values(), ids=RATES.keys())
@given(problem=tokens(), bad=NON_FINITE, where=st.floats(0, 1), eps=st.floats(1e-300, 1e300))
def test_rates_refuse_non_finite_Z_and_are_finite_otherwise(rate, problem, bad, where, eps):
    Z, U = problem
    out = rate(Z, U, eps)
    assert all(np.isfinite(o).all() for o in (out if isinstance(out, tuple) else (out,)))
    with raises_naming(ValueError, "Z"):
        rate(poke(Z, bad, where), U, eps)
    with raises_naming(ValueError, "U"):
        compression_rate(Z, poke(U, bad, where), eps)


@pytest.mark.parametrize("rate", RATES.values(), ids=RATES.keys())
@given(problem=tokens(), dtype=NON_FLOAT_DTYPES)
def test_rates_refuse_non_float_Z(rate, problem, dtype):
    Z, U = problem
    with raises_naming(TypeError, "Z"):
        rate(Z.astype(dtype), U, 0.5)
    with raises_naming(TypeError, "Z"):
        rate(Z.tolist(), U, 0.5)


@pytest.mark.parametrize("rate", RATES.values(), ids=RATES.keys())
@given(problem=tokens(), eps=st.sampled_from([0.0, -1.0, -1e-300, np.nan, np.inf, -np.inf, "0.5", None, [0.5]]))
def test_rates_refuse_bad_eps(rate, problem, eps):
    Z, U = problem
    with raises_naming((TypeError, ValueError), "eps"):
        rate(Z, U, eps)


@given(problem=tokens(), change=st.sampled_from(["d", "ndim", "p"]))
def test_compression_rate_refuses_bases_that_do_not_fit(problem, change):
    Z, U = problem
    K, d, p = U.shape
    bad = {"d": np.ones((K, d + 1, p)), "ndim": np.ones((d, p)), "p": np.ones((K, d, 0))}[change]
    with raises_naming(ValueError, "U"):
        compression_rate(Z, bad, 0.5)
    with raises_naming(ValueError, "U"):
        compression_rate_grad(Z, bad, 0.5)


@given(shape=st.sampled_from([(), (3,), (0, 4), (4, 0), (2, 0, 3)]))
def test_rates_refuse_too_few_dimensions_tokens_or_features(shape):
    with raises_naming(ValueError, "Z"):
        coding_rate(np.ones(shape), 0.5)


# ---------------------------------------------------------------- cross_entropy


@st.composite
def logits_and_labels(draw):
    B, C = draw(st.integers(1, 6)), draw(st.integers(2, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.standard_normal((B, C)), rng.integers(0, C, B)


@given(problem=logits_and_labels(), offset=st.integers(1, 5), where=st.floats(0, 1), low=st.booleans())
def test_cross_entropy_refuses_labels_out_of_range(problem, offset, where, low):
    logits, labels = problem
    C = logits.shape[1]
    assert np.isfinite(cross_entropy(logits, labels)[0])
    bad = poke(labels, -offset if low else C - 1 + offset, where)
    with raises_naming(ValueError, "labels"):
        cross_entropy(logits, bad)


@given(problem=logits_and_labels(), extra=st.integers(1, 3), shorter=st.booleans())
def test_cross_entropy_refuses_labels_of_another_length(problem, extra, shorter):
    logits, labels = problem
    B = len(labels)
    if shorter and B == 1:
        bad = labels[:0]
    else:
        bad = labels[: max(B - extra, 1)] if shorter and B > 1 else np.concatenate([labels, labels[:1].repeat(extra)])
    if len(bad) == B:  # shortening a batch of 1 can only give an empty one, handled above
        bad = labels[:0]
    with raises_naming(ValueError, "labels"):
        cross_entropy(logits, bad)
    with raises_naming(ValueError, "labels"):
        cross_entropy(logits, labels[:, None])


@given(problem=logits_and_labels(), kind=st.sampled_from(["float", "bool", "list", "object"]))
def test_cross_entropy_refuses_non_integer_labels(problem, kind):
    logits, labels = problem
    bad = {"float": labels.astype(float), "bool": labels.astype(bool), "list": labels.tolist(),
           "object": labels.astype(object)}[kind]
    with raises_naming(TypeError, "labels"):
        cross_entropy(logits, bad)


@given(problem=logits_and_labels(), kind=st.sampled_from(["int", "1-D", "3-D"]),
       smoothing=st.sampled_from([-0.1, 1.0, 2.0, np.nan, "0.1"]))
def test_cross_entropy_refuses_bad_logits_and_smoothing(problem, kind, smoothing):
    logits, labels = problem
    bad = {"int": logits.astype(np.int64), "1-D": logits[0], "3-D": logits[None]}[kind]
    with raises_naming((TypeError, ValueError), "logits"):
        cross_entropy(bad, labels)
    with raises_naming(ValueError, "smoothing"):
        cross_entropy(logits, labels, smoothing)


# ---------------------------------------------------------------- optimisers

OPTIMISERS = {"sgd": lambda: SGD(lr=0.1, weight_decay=0.1), "adamw": lambda: AdamW(lr=0.1), "lion": lambda: Lion(lr=0.1)}


@st.composite
def params_and_grads(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shapes = {"w": (draw(st.integers(1, 4)), draw(st.integers(1, 4))), "b": (draw(st.integers(1, 4)),)}
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    return params, {k: rng.standard_normal(s) for k, s in shapes.items()}


@pytest.mark.parametrize("make", OPTIMISERS.values(), ids=OPTIMISERS.keys())
@given(problem=params_and_grads(), bad=NON_FINITE, where=st.floats(0, 1), name=st.sampled_from(["w", "b"]))
def test_optimisers_refuse_non_finite_gradients_and_change_nothing(make, problem, bad, where, name):
    params, grads = problem
    opt = make()
    state = opt.init(params)
    opt.step(params, grads, state)
    assert all(np.isfinite(p).all() for p in params.values())
    before, saved = {k: v.copy() for k, v in params.items()}, opt.state_dict(state)
    with raises_naming(FloatingPointError, repr(name)):
        opt.step(params, {**grads, name: poke(grads[name], bad, where)}, state)
    assert all(np.array_equal(params[k], before[k]) for k in params)
    assert all(np.array_equal(v, saved[k]) for k, v in opt.state_dict(state).items())


@pytest.mark.parametrize("make", OPTIMISERS.values(), ids=OPTIMISERS.keys())
@given(problem=params_and_grads(), lr=st.sampled_from([-1.0, np.nan, np.inf, "fast", None]))
def test_optimisers_refuse_bad_learning_rates(make, problem, lr):
    params, grads = problem
    opt = make()
    state = opt.init(params)
    if lr is not None:
        with raises_naming((TypeError, ValueError), "lr"):
            opt.step(params, grads, state, lr=lr)
        with raises_naming((TypeError, ValueError), "lr"):
            type(opt)(lr=lr)
    with raises_naming(ValueError, "grads"):
        opt.step(params, {"w": grads["w"]}, state)
    with raises_naming(ValueError, "grads['w']"):
        opt.step(params, {**grads, "w": grads["w"].T.copy() if grads["w"].shape[0] != grads["w"].shape[1]
                          else grads["w"][:, :0]}, state)


@pytest.mark.parametrize("make", OPTIMISERS.values(), ids=OPTIMISERS.keys())
@given(problem=params_and_grads(), bad=NON_FINITE, dtype=NON_FLOAT_DTYPES)
def test_optimisers_refuse_non_finite_or_non_float_parameters(make, problem, bad, dtype):
    params, _ = problem
    with raises_naming(ValueError, "params['w']"):
        make().init({**params, "w": poke(params["w"], bad, 0.5)})
    with raises_naming(TypeError, "params['b']"):
        make().init({**params, "b": params["b"].astype(dtype)})


# ---------------------------------------------------------------- gradient checks


def square_sum(x):
    return float((x**2).sum())


@given(n=st.integers(1, 6), bad=NON_FINITE, where=st.floats(0, 1), seed=st.integers(0, 2**16))
def test_gradient_checks_fail_on_any_non_finite_entry(n, bad, where, seed):
    x = np.random.default_rng(seed).standard_normal(n)
    assert grad_errors(square_sum, {"x": x}, {"x": 2 * x})["x"] < 1e-6
    assert entry_errors(square_sum, {"x": x}, {"x": 2 * x})["x"] < 1e-6
    wrong = poke(2 * x, bad, where)
    assert not grad_errors(square_sum, {"x": x}, {"x": wrong})["x"] < 1e-6
    assert not entry_errors(square_sum, {"x": x}, {"x": wrong}, entries=1)["x"] < 1e-6
    assert not vjp_errors(lambda x: x**2, {"x": x}, np.ones(n), {"x": wrong})["x"] < 1e-6


@given(count=st.integers(-10, 0))
def test_gradient_checks_refuse_to_check_nothing(count):
    x = np.ones(3)
    with raises_naming(ValueError, "directions"):
        grad_errors(square_sum, {"x": x}, {"x": 2 * x}, directions=count)
    with raises_naming(ValueError, "entries"):
        entry_errors(square_sum, {"x": x}, {"x": 2 * x}, entries=count)


# ---------------------------------------------------------------- data readers


def idx_bytes(images):
    header = bytes([0, 0, 0x08, images.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape)
    return header + images.tobytes()


@given(n=st.integers(0, 3), cut=st.floats(0, 1), junk=st.binary(max_size=64))
def test_idx_reader_names_the_file_for_cut_off_or_junk_bytes(n, cut, junk):
    good = idx_bytes(np.zeros((n, 4, 4), np.uint8))
    assert parse_idx(good, "sample.idx").shape == (n, 4, 4)
    for bad in (good[: int(cut * (len(good) - 1))], good + b"\x00", junk):
        try:
            parse_idx(bad, "sample.idx")
        except ValueError as e:
            assert "sample.idx" in str(e)
        else:
            assert bad == junk  # random bytes may happen to be a valid IDX file


@given(n=st.integers(0, 3), cut=st.floats(0, 0.99), label=st.integers(10, 300))
def test_cifar_reader_names_the_file_for_cut_off_batches_and_bad_labels(n, cut, label):
    data = np.zeros((n, 3072), np.uint8)
    good = pickle.dumps({b"data": data, b"labels": list(range(n))}, protocol=2)
    images, labels = parse_cifar_batch(good, "batch")
    assert images.shape == (n, 3, 32, 32) and labels.shape == (n,)
    with raises_naming(ValueError, "batch"):
        parse_cifar_batch(good[: int(cut * len(good))], "batch")
    if n:
        with raises_naming(ValueError, "batch"):
            parse_cifar_batch(pickle.dumps({b"data": data, b"labels": [label] * n}), "batch")


def test_cifar_reader_refuses_pickles_that_run_code(tmp_path):
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [print]}))
    with raises_naming(ValueError, str(path)):
        read_cifar_batch(path)


# ---------------------------------------------------------------- backend and dtypes


@given(value=st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=8)
       .filter(lambda s: s.strip().lower() not in ("cpu", "gpu", "")))
def test_unknown_devices_are_refused_naming_the_variable(value):
    with raises_naming(ValueError, "device"):
        backend.resolve_device(value)
    with pytest.MonkeyPatch.context() as m:
        m.setenv(backend.DEVICE_ENV, value)
        with raises_naming(ValueError, "$WHITEBOX_DEVICE"):
            backend.resolve_device()


@given(dtype=st.sampled_from([np.int8, np.int32, "int8", "uint8", bool, np.bool_, object, np.complex64, "S4"]))
def test_non_float_dtypes_are_refused(dtype):
    with raises_naming(TypeError, "dtype"):
        check_float_dtype("dtype", dtype)
    with raises_naming(TypeError, "dtype"):
        cast_params({"w": np.ones((2, 2))}, dtype, np)
    assert cast_params({"w": np.ones((2, 2))}, "float32", np)["w"].dtype == np.float32


@given(dtype=NON_FLOAT_DTYPES, bad=NON_FINITE)
def test_check_array_refuses_non_float_and_non_finite_arrays(dtype, bad):
    with raises_naming(TypeError, "x"):
        check_array("x", np.ones(3).astype(dtype))
    with raises_naming(ValueError, "x"):
        check_array("x", np.array([1.0, bad]))
    with raises_naming(TypeError, "x"):
        check_array("x", [1.0, 2.0])
    assert check_array("x", np.array([1.0, bad]), finite=False).shape == (2,)


@given(count=st.integers(0, 5), classes=st.integers(1, 5))
def test_check_class_labels_accepts_exactly_the_valid_range(count, classes):
    labels = np.arange(count) % classes
    assert check_class_labels("labels", labels, count, classes) is labels
    with raises_naming(ValueError, "labels"):
        check_class_labels("labels", labels, count + 1, classes)
