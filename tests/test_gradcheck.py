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
