"""The exact gradient step on Rc, its Neumann approximation and the tied MSSA step."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from whitebox.compression_step import gradient_step, neumann_step, stack_subspaces, step_size_beta, tied_mssa_step
from whitebox.layers.mssa import mssa_tied_forward, subspaces
from whitebox.rate import compression_rate

seeds = st.integers(0, 2**32 - 1)


def draw(seed, batch=2, N=6, d=8, K=2, p=3):
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((batch, N, d))
    U = np.linalg.qr(rng.standard_normal((K, d, p)))[0]  # orthonormal bases, as the theory assumes
    return Z, U


@given(seed=seeds)
def test_small_exact_step_decreases_the_compression_term(seed):
    Z, U = draw(seed)
    eps = 1.0
    before = compression_rate(Z, U, eps)
    after = compression_rate(gradient_step(Z, U, kappa=0.05, eps=eps), U, eps)
    assert (after < before).all()


@given(seed=seeds, eps=st.floats(20.0, 60.0))
def test_neumann_error_shrinks_like_beta_squared(seed, eps):
    """Doubling ε divides β by 4, so the relative error of the Neumann step drops about 16-fold."""
    Z, U = draw(seed)

    def relative_error(e):
        exact = gradient_step(Z, U, 1.0, e)
        return np.linalg.norm(neumann_step(Z, U, 1.0, e) - exact) / np.linalg.norm(exact - Z)

    ratio = relative_error(eps) / relative_error(2 * eps)
    assert 14.0 < ratio < 18.0, ratio


def test_neumann_step_is_exact_to_first_order_in_the_step():
    Z, U = draw(0)
    eps = 30.0
    exact, approx = gradient_step(Z, U, 1.0, eps), neumann_step(Z, U, 1.0, eps)
    assert np.linalg.norm(approx - exact) < 1e-3 * np.linalg.norm(exact - Z)


@given(seed=seeds, scale=st.sampled_from([1.0, 3**-0.5]))
def test_tied_step_is_the_tied_mssa_layer_plus_its_input(seed, scale):
    Z, U = draw(seed)
    kappa, eps = 0.4, 2.0
    c = kappa * step_size_beta(Z, U, eps)
    W_qkv = stack_subspaces(U)
    np.testing.assert_array_equal(subspaces(W_qkv, U.shape[0]), U)
    branch, _ = mssa_tied_forward(Z, W_qkv, c, heads=U.shape[0], scale=scale)
    np.testing.assert_allclose(tied_mssa_step(Z, U, kappa, eps, scale), Z + branch, atol=1e-12)
