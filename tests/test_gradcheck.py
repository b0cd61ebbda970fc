"""Tests of whitebox.gradcheck: right gradients pass, wrong ones are caught."""

import numpy as np
import pytest

from whitebox.gradcheck import entry_errors, grad_errors, relative_error, vjp_errors

rng = np.random.default_rng(0)
A = rng.standard_normal((5, 5))  # not symmetric
X = rng.standard_normal(5)
W = rng.standard_normal((5, 3))


def quadratic(x):
    """``f(x) = ½ xᵀA x + Σ sin x``, so ``∇f = ½ (A + Aᵀ) x + cos x``."""
    return 0.5 * x @ A @ x + np.sin(x).sum()


def quadratic_grad(x):
    return 0.5 * (A + A.T) @ x + np.cos(x)


def product_loss(x, w):
    """``f(x, w) = ½ ‖x w‖²``, so ``∇_x f = (x w) wᵀ`` and ``∇_w f = x ⊗ (x w)``."""
    return 0.5 * ((x @ w) ** 2).sum()


def test_relative_error():
    assert relative_error(2.0, 2.0) == 0.0
    assert relative_error(1.0, 1.1) == pytest.approx(0.1 / 1.1)
    assert relative_error(0.0, 0.0) == 0.0
    assert relative_error(0.0, 1e-15, atol=1e-12) == pytest.approx(1e-3)


def test_right_gradient_passes():
    errors = grad_errors(quadratic, {"x": X}, {"x": quadratic_grad(X)})
    assert errors["x"] < 1e-7
    assert entry_errors(quadratic, {"x": X}, {"x": quadratic_grad(X)}, entries=5)["x"] < 1e-7


@pytest.mark.parametrize(
    "wrong",
    [
        lambda x: A @ x + np.cos(x),  # forgot to symmetrise A
        lambda x: 2 * quadratic_grad(x),  # factor 2
        lambda x: -quadratic_grad(x),  # sign
        lambda x: quadratic_grad(x)[::-1].copy(),  # entries permuted
    ],
    ids=["unsymmetrised", "factor 2", "sign", "permuted"],
)
def test_wrong_gradient_is_caught(wrong):
    assert grad_errors(quadratic, {"x": X}, {"x": wrong(X)})["x"] > 1e-2
    assert entry_errors(quadratic, {"x": X}, {"x": wrong(X)}, entries=5)["x"] > 1e-2


def test_single_wrong_entry_is_caught_by_entry_check():
    grad = quadratic_grad(X)
    grad[2] += 1e-3
    assert entry_errors(quadratic, {"x": X}, {"x": grad}, entries=X.size)["x"] > 1e-4


def test_errors_are_reported_per_input():
    xw = X @ W
    right = {"x": xw @ W.T, "w": np.outer(X, xw)}
    inputs = {"x": X, "w": W}
    assert max(grad_errors(product_loss, inputs, right).values()) < 1e-7
    errors = grad_errors(product_loss, inputs, {**right, "w": right["w"].T.reshape(W.shape)})
    assert errors["x"] < 1e-7 and errors["w"] > 1e-2


def test_vjp_of_array_valued_function():
    dout = rng.standard_normal(5)
    square = lambda x: x**2  # noqa: E731
    assert vjp_errors(square, {"x": X}, dout, {"x": 2 * X * dout})["x"] < 1e-7
    assert vjp_errors(square, {"x": X}, dout, {"x": X * dout})["x"] > 1e-2


def test_needs_float64():
    x32 = X.astype(np.float32)
    with pytest.raises(TypeError, match="float64.*x"):
        grad_errors(quadratic, {"x": x32}, {"x": quadratic_grad(x32)})
    with pytest.raises(TypeError, match="float64"):
        entry_errors(quadratic, {"x": x32}, {"x": quadratic_grad(x32)})


def test_gradient_shape_must_match_input():
    with pytest.raises(ValueError, match="shape"):
        grad_errors(quadratic, {"x": X}, {"x": quadratic_grad(X)[:4]})


# Non-finite values and empty checks fail (issue 14): max(worst, nan) used to keep the old value.


def nan_at(index, value=np.nan):
    grad = quadratic_grad(X)
    grad[index] = value
    return grad


@pytest.mark.parametrize(
    "grad",
    [np.full_like(X, np.nan), nan_at(2), nan_at(0, np.inf), nan_at(4, -np.inf)],
    ids=["all NaN", "one NaN", "one +inf", "one -inf"],
)
def test_non_finite_gradient_is_an_infinite_error(grad):
    assert grad_errors(quadratic, {"x": X}, {"x": grad})["x"] == np.inf
    assert entry_errors(quadratic, {"x": X}, {"x": grad}, entries=1)["x"] == np.inf  # even unsampled
    assert vjp_errors(lambda x: x, {"x": X}, np.ones(5), {"x": grad})["x"] == np.inf


@pytest.mark.parametrize("bad_value", [np.nan, np.inf], ids=["NaN", "inf"])
def test_non_finite_function_value_is_an_infinite_error(bad_value):
    def poisoned(x):
        return quadratic(x) + (bad_value if x[0] > X[0] else 0.0)  # bad only on the + side

    def poisoned_array(x):
        return np.where(x[0] > X[0], bad_value, 1.0) * x

    assert grad_errors(poisoned, {"x": X}, {"x": quadratic_grad(X)})["x"] == np.inf
    assert entry_errors(poisoned, {"x": X}, {"x": quadratic_grad(X)}, entries=5)["x"] == np.inf
    assert vjp_errors(poisoned_array, {"x": X}, np.ones(5), {"x": np.ones(5)})["x"] == np.inf


def test_relative_error_of_non_finite_values_is_inf():
    for a, b in [(np.nan, 1.0), (1.0, np.nan), (np.inf, np.inf), (-np.inf, 1.0)]:
        assert relative_error(a, b) == np.inf


@pytest.mark.parametrize("count", [0, -1, -5])
def test_empty_checks_are_refused(count):
    grad = {"x": quadratic_grad(X)}
    with pytest.raises(ValueError, match="directions"):
        grad_errors(quadratic, {"x": X}, grad, directions=count)
    with pytest.raises(ValueError, match="entries"):
        entry_errors(quadratic, {"x": X}, grad, entries=count)
    with pytest.raises(ValueError, match="directions"):
        vjp_errors(lambda x: x, {"x": X}, np.ones(5), grad, directions=count)


def test_bad_options_are_refused():
    grad = {"x": quadratic_grad(X)}
    with pytest.raises(TypeError, match="directions"):
        grad_errors(quadratic, {"x": X}, grad, directions=2.5)
    with pytest.raises(ValueError, match="step"):
        grad_errors(quadratic, {"x": X}, grad, step=0.0)
    with pytest.raises(ValueError, match="not in inputs"):
        grad_errors(quadratic, {"x": X}, {"y": X})
    with pytest.raises(ValueError, match="shape"):
        entry_errors(quadratic, {"x": X}, {"x": X[:4]})
