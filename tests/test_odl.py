"""The ODL block (CRATE-alpha eqs. 7-12): backward, its two reductions, and the descent property."""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from whitebox.gradcheck import vjp_errors
from whitebox.layers.ista import ista_backward, ista_forward
from whitebox.layers.odl import odl_backward, odl_forward

TOL = 1e-6
seeds = st.integers(0, 2**32 - 1)
DECODERS = ["decoupled", "tied", "codes"]


def reference_codes(x, D, steps, step, lambd, start=None):
    """Eq. 9 as written, in the paper's layout (tokens as columns), zero matmul included.

    Returns the codes (…, m) after each step and every pre-activation (for the kink margin).
    """
    Z = np.swapaxes(x, -1, -2)  # (..., d, N)
    A = np.zeros(D.shape[1:] + Z.shape[-1:]) if start is None else np.swapaxes(start, -1, -2)  # (..., m, N)
    codes, pres = [], []
    for _ in range(steps):
        pre = A - step * D.T @ (D @ A - Z) - step * lambd
        A = np.maximum(pre, 0)
        pres.append(pre)
        codes.append(np.swapaxes(A, -1, -2))
    return codes, pres


def lasso(x, D, a, lambd):
    """The non-negative LASSO objective per token: ½‖z − D a‖² + λ‖a‖₁, for codes a ≥ 0 (…, m)."""
    return 0.5 * ((x - a @ D.T) ** 2).sum(-1) + lambd * np.abs(a).sum(-1)


def make_inputs(rng, batch, n, d, C, decoder, start):
    inputs = {"x": rng.standard_normal((batch, n, d)), "D": rng.standard_normal((d, C * d)) / np.sqrt(d)}
    if decoder == "decoupled":
        inputs["D_hat"] = rng.standard_normal((d, C * d)) / np.sqrt(d)
    if start == "given":
        inputs["start"] = np.abs(rng.standard_normal((batch, n, C * d)))
    return inputs


def call(decoder, steps, step, lambd):
    """``f(**inputs)``: the block with the decoder written as the inputs name it."""

    def f(x, D, D_hat=None, start=None):
        dec = {"decoupled": D_hat, "tied": D, "codes": None}[decoder]
        return odl_forward(x, D, dec, steps=steps, step=step, lambd=lambd, start=start)

    return f


@given(seed=seeds, batch=st.integers(1, 2), n=st.integers(1, 4), d=st.integers(1, 5), C=st.integers(1, 3),
       steps=st.integers(1, 3), decoder=st.sampled_from(DECODERS), start=st.sampled_from(["zero", "given"]),
       step=st.floats(0.05, 0.5), lambd=st.floats(0, 0.3))
def test_backward_matches_finite_differences(seed, batch, n, d, C, steps, decoder, start, step, lambd):
    rng = np.random.default_rng(seed)
    inputs = make_inputs(rng, batch, n, d, C, decoder, start)
    codes, pres = reference_codes(inputs["x"], inputs["D"], steps, step, lambd, inputs.get("start"))
    assume(min(np.abs(p).min() for p in pres) > 1e-4)  # away from the ReLU kinks
    f = call(decoder, steps, step, lambd)
    out, cache = f(**inputs)
    decoder_matrix = {"decoupled": inputs.get("D_hat"), "tied": inputs["D"], "codes": None}[decoder]
    expected = codes[-1] if decoder_matrix is None else codes[-1] @ decoder_matrix.T
    np.testing.assert_allclose(out, expected, atol=1e-12)
    dout = rng.standard_normal(out.shape)
    dx, dD, dD_hat, dstart = odl_backward(dout, cache)
    assert (dD_hat is None) == (decoder == "codes") and (dstart is None) == (start == "zero")
    grads = {"x": dx, "D": dD + dD_hat if decoder == "tied" else dD, "D_hat": dD_hat, "start": dstart}
    errors = vjp_errors(lambda **k: f(**k)[0], inputs, dout, {k: grads[k] for k in inputs})
    assert max(errors.values()) < TOL, errors


@given(seed=seeds, batch=st.integers(1, 2), n=st.integers(1, 5), d=st.integers(1, 6), C=st.integers(1, 4),
       steps=st.integers(1, 4))
def test_tied_decoder_without_residual_is_overcomplete_ista(seed, batch, n, d, C, steps):
    """ODL(Z | D, D) = D · ISTA-OC(Z | D) (eq. 10): the loop of eq. 9 from A₀ = 0, then decode with D."""
    rng = np.random.default_rng(seed)
    x, D = rng.standard_normal((batch, n, d)), rng.standard_normal((d, C * d)) / np.sqrt(d)
    out, cache = odl_forward(x, D, D, steps=steps, step=0.1, lambd=0.1)
    for b in range(batch):
        Z, A = x[b].T, np.zeros((C * d, n))  # tokens as columns
        for _ in range(steps):
            A = np.maximum(A - 0.1 * D.T @ (D @ A - Z) - 0.1 * 0.1, 0)
        np.testing.assert_allclose(out[b], (D @ A).T, atol=1e-12)
        np.testing.assert_allclose(cache.codes[-1][b], A.T, atol=1e-12)
    assert len(cache.codes) == steps + 1 and cache.codes[0] is None


@given(seed=seeds, batch=st.integers(1, 3), n=st.integers(1, 5), d=st.integers(1, 8),
       step=st.floats(0.01, 0.5), lambd=st.floats(0, 0.5))
def test_one_square_step_from_the_input_is_crate_ista(seed, batch, n, d, step, lambd):
    """C = 1, T = 1, A₀ = Z, codes as output: CRATE's ISTA (eq. 6), to rounding, and its gradients."""
    rng = np.random.default_rng(seed)
    x, D = rng.standard_normal((batch, n, d)), rng.standard_normal((d, d)) / np.sqrt(d)
    out, cache = odl_forward(x, D, None, steps=1, step=step, lambd=lambd, start=x)
    expected, ista_cache = ista_forward(x, D, step, lambd)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)  # same function, rounding may differ
    dout = rng.standard_normal(out.shape)
    dx, dD, dD_hat, dstart = odl_backward(dout, cache)
    ista_dx, ista_dD = ista_backward(dout, ista_cache)
    assert dD_hat is None
    np.testing.assert_allclose(dx + dstart, ista_dx, rtol=1e-12, atol=1e-12)  # A₀ = Z: both paths reach x
    np.testing.assert_allclose(dD, ista_dD, rtol=1e-12, atol=1e-12)


def scaled_dictionary(rng, d, m, step, fraction):
    """A random (d, m) dictionary with ``η ‖D‖₂² = fraction`` (≤ 1: the descent condition)."""
    D = rng.standard_normal((d, m))
    return D * np.sqrt(fraction / step) / np.linalg.norm(D, 2)


@given(seed=seeds, n=st.integers(1, 6), d=st.integers(1, 6), C=st.integers(1, 4), steps=st.integers(1, 6),
       step=st.floats(0.01, 1.0), lambd=st.floats(0, 1.0), fraction=st.floats(0.05, 1.0),
       start=st.sampled_from(["zero", "given"]))
def test_each_odl_step_does_not_increase_the_lasso_objective(seed, n, d, C, steps, step, lambd, fraction, start):
    """For η ≤ 1/‖D‖₂², F(A_{t+1}) ≤ F(A_t) for F(A) = ½‖Z − DA‖² + λ‖A‖₁ over A ≥ 0, token by token."""
    rng = np.random.default_rng(seed)
    x = 3 * rng.standard_normal((n, d))
    D = scaled_dictionary(rng, d, C * d, step, fraction)
    A0 = np.zeros((n, C * d)) if start == "zero" else np.abs(rng.standard_normal((n, C * d)))
    _, cache = odl_forward(x, D, None, steps=steps, step=step, lambd=lambd, start=None if start == "zero" else A0)
    objective = [lasso(x, D, A0, lambd)] + [lasso(x, D, a, lambd) for a in cache.codes[1:]]
    for before, after in zip(objective, objective[1:]):
        assert np.all(after <= before + 1e-12 * (1 + before)), (before, after)


@given(seed=seeds, n=st.integers(1, 6), d=st.integers(1, 8), step=st.floats(0.01, 1.0), lambd=st.floats(0, 1.0),
       fraction=st.floats(0.05, 1.0))
def test_crate_ista_step_from_the_input_does_not_increase_the_lasso_objective(seed, n, d, step, lambd, fraction):
    """CRATE's ISTA is one step from A = Z: with η ≤ 1/‖D‖₂² it cannot increase F.

    The bound needs a feasible start (Z ≥ 0, F(Z) finite), so the tokens here are non-negative,
    as are the codes of a previous ISTA layer.
    """
    rng = np.random.default_rng(seed)
    x = np.abs(3 * rng.standard_normal((n, d)))
    D = scaled_dictionary(rng, d, d, step, fraction)
    out, _ = ista_forward(x, D, step, lambd)
    before, after = lasso(x, D, x, lambd), lasso(x, D, out, lambd)
    assert np.all(after <= before + 1e-12 * (1 + before)), (before, after)


def test_a_step_above_two_over_the_lipschitz_constant_can_increase_the_objective():
    """The step-size condition matters: with η ‖D‖₂² = 4 the first step overshoots."""
    D = np.array([[1.0]])
    x = np.array([[1.0]])
    _, cache = odl_forward(x, D, None, steps=1, step=4.0, lambd=0.0)
    assert lasso(x, D, cache.codes[1], 0.0) > lasso(x, D, np.zeros((1, 1)), 0.0)


def test_bad_arguments_raise_clear_errors():
    x, D = np.zeros((2, 3, 4)), np.zeros((4, 8))
    with pytest.raises(ValueError, match="steps"):
        odl_forward(x, D, D, steps=0)
    with pytest.raises(ValueError, match="D must"):
        odl_forward(x, np.zeros((5, 8)), None)
    with pytest.raises(ValueError, match="D_hat"):
        odl_forward(x, D, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="start"):
        odl_forward(x, D, D, start=x)
