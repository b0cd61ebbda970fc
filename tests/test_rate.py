"""Tests of whitebox.rate: values against slogdet, identities, invariances, gradients, bad input."""

import types

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from whitebox import backend
from whitebox.gradcheck import entry_errors, grad_errors
from whitebox.rate import (
    coding_rate,
    coding_rate_grad,
    compression_rate,
    compression_rate_grad,
    half_logdet_identity_plus,
    sparse_rate_reduction,
    sparse_rate_reduction_grad,
)

GRAD_TOL = 1e-6
BATCHES = [(), (2,), (2, 3)]


@st.composite
def problems(draw):
    """A random ``(Z, U, eps)``: Z ``(*batch, N, d)``, U ``(K, d, p)``; ε and Z's scale log-uniform."""
    d = draw(st.integers(1, 12))
    N = draw(st.integers(1, 12))
    K = draw(st.integers(1, 4))
    p = draw(st.integers(1, d))
    batch = draw(st.sampled_from(BATCHES))
    scale = 10.0 ** draw(st.floats(-1, 1))
    eps = 10.0 ** draw(st.floats(-1, 1))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    Z = scale * rng.standard_normal(batch + (N, d))  # (*batch, N, d)
    U = rng.standard_normal((K, d, p)) / np.sqrt(d)  # (K, d, p)
    return Z, U, eps


def random_Z(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def alpha(N, d, eps):
    return d / (N * eps**2)


def slogdet_rate(Z, eps):
    """``½ logdet(I_d + α ZᵀZ)`` straight from ``numpy.linalg.slogdet`` (one unbatched Z)."""
    N, d = Z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + alpha(N, d, eps) * Z.T @ Z)[1]


FD_STEP = 1e-5  # times max(1, rms(x)); the rates are smooth, so rounding noise (∝ 1/h) dominates


def rms(x):
    return float(np.sqrt(np.mean(x**2))) + 1e-300


def assert_gradients_match(fun, inputs, grads, scales=None):
    """Random-direction and single-entry finite differences agree with ``grads`` to GRAD_TOL.

    Each relative error's denominator is floored at ``scales[name]`` (default: the gradient's RMS
    entry, as ``grad_errors`` does for directions), so an entry or a direction where the
    gradient happens to be nearly 0 is judged on the gradient's own scale.
    """
    scales = scales or {name: rms(grad) for name, grad in grads.items()}
    for name, grad in grads.items():
        check = {name: grad}
        errors = {
            name: grad_errors(fun, inputs, check, step=FD_STEP, atol=scales[name])[name],
            f"{name} entries": entry_errors(fun, inputs, check, step=FD_STEP, atol=scales[name])[name],
        }
        assert max(errors.values()) < GRAD_TOL, errors


# Values


@pytest.mark.parametrize("N, d", [(1, 1), (1, 5), (3, 7), (7, 3), (6, 6)])
def test_coding_rate_matches_slogdet(N, d):
    Z = random_Z((N, d))
    assert np.isclose(coding_rate(Z, 0.5), slogdet_rate(Z, 0.5), rtol=1e-12)


@pytest.mark.parametrize("N, d, p", [(1, 4, 2), (3, 6, 4), (8, 5, 2), (5, 5, 5)])
def test_compression_rate_matches_slogdet(N, d, p):
    rng = np.random.default_rng(1)
    Z, U, eps = rng.standard_normal((N, d)), rng.standard_normal((3, d, p)), 0.8
    beta = p / (N * eps**2)
    projected = [Uk.T @ Z.T for Uk in U]  # U_kᵀ Z_math, (p, N)
    expected = sum(0.5 * np.linalg.slogdet(np.eye(p) + beta * Pk @ Pk.T)[1] for Pk in projected)
    assert np.isclose(compression_rate(Z, U, eps), expected, rtol=1e-12)


def test_sparse_rate_reduction_is_its_three_terms():
    rng = np.random.default_rng(2)
    Z, U = rng.standard_normal((2, 5, 6)), rng.standard_normal((2, 6, 3))
    expected = compression_rate(Z, U, 0.5) - coding_rate(Z, 0.5) + 0.3 * np.abs(Z).sum(axis=(1, 2))
    np.testing.assert_allclose(sparse_rate_reduction(Z, U, 0.5, 0.3), expected, rtol=1e-13)


@given(problems())
def test_batched_rates_are_per_element_rates(problem):
    Z, U, eps = problem
    flat = Z.reshape((-1,) + Z.shape[-2:])
    np.testing.assert_allclose(coding_rate(Z, eps).ravel(), [coding_rate(z, eps) for z in flat], rtol=1e-12)
    np.testing.assert_allclose(
        compression_rate(Z, U, eps).ravel(), [compression_rate(z, U, eps) for z in flat], rtol=1e-12
    )
    grad_U = sum(compression_rate_grad(z, U, eps)[1] for z in flat)
    np.testing.assert_allclose(compression_rate_grad(Z, U, eps)[1], grad_U, rtol=1e-10, atol=1e-13)


# Identities and invariances


@given(problems())
def test_sylvester_both_grams_agree_with_slogdet(problem):
    Z, _, eps = problem
    N, d = Z.shape[-2:]
    a = alpha(N, d, eps)
    Zt = np.swapaxes(Z, -1, -2)
    small_d = half_logdet_identity_plus(Zt @ Z, a)  # from the (d, d) Gram
    small_N = half_logdet_identity_plus(Z @ Zt, a)  # from the (N, N) Gram
    reference = 0.5 * np.linalg.slogdet(np.eye(N) + a * Z @ Zt)[1]
    np.testing.assert_allclose(small_d, small_N, rtol=1e-10)
    np.testing.assert_allclose(coding_rate(Z, eps), reference, rtol=1e-10)


@given(problems())
def test_push_through_both_gradient_forms_agree(problem):
    Z, _, eps = problem
    N, d = Z.shape[-2:]
    a = alpha(N, d, eps)
    Zt = np.swapaxes(Z, -1, -2)
    d_side = a * np.swapaxes(np.linalg.solve(np.eye(d) + a * Zt @ Z, Zt), -1, -2)  # α Z (I + α ZᵀZ)⁻¹
    N_side = a * np.linalg.solve(np.eye(N) + a * Z @ Zt, Z)  # α (I_N + α Z Zᵀ)⁻¹ Z
    atol = 1e-10 * np.abs(d_side).max()  # two solves of systems with condition up to 1 + α‖Z‖²
    np.testing.assert_allclose(d_side, N_side, rtol=1e-8, atol=atol)
    np.testing.assert_allclose(coding_rate_grad(Z, eps), N_side, rtol=1e-8, atol=atol)


@given(problems(), st.integers(0, 2**32 - 1))
def test_rates_invariant_under_rotations_and_token_permutations(problem, seed):
    Z, U, eps = problem
    rng = np.random.default_rng(seed)
    N, d = Z.shape[-2:]
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]  # (d, d) orthogonal
    perm = rng.permutation(N)
    R, Rc = coding_rate(Z, eps), compression_rate(Z, U, eps)
    np.testing.assert_allclose(coding_rate(Z @ Q, eps), R, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(coding_rate(Z[..., perm, :], eps), R, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(compression_rate(Z @ Q, Q.T @ U, eps), Rc, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(compression_rate(Z[..., perm, :], U, eps), Rc, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("batch", BATCHES)
def test_coding_rate_decreases_with_eps(batch):
    Z = random_Z(batch + (5, 4))
    rates = np.stack([coding_rate(Z, eps) for eps in np.geomspace(1e-3, 1e3, 25)])
    assert (rates > 0).all()
    assert (np.diff(rates, axis=0) < 0).all()


def test_single_token():
    z = random_Z((1, 6))  # N = 1
    eps = 0.5
    a = 6 / eps**2
    norm2 = float((z**2).sum())
    assert np.isclose(coding_rate(z, eps), 0.5 * np.log1p(a * norm2), rtol=1e-13)
    np.testing.assert_allclose(coding_rate_grad(z, eps), a * z / (1 + a * norm2), rtol=1e-13)
    U = random_Z((2, 6, 3), seed=1)
    grad_Z, grad_U = sparse_rate_reduction_grad(z, U, eps, 0.1)
    assert np.isfinite(grad_Z).all() and np.isfinite(grad_U).all()


# Extreme ε and nearly rank-deficient Z


def svd_rate(Z, eps):
    """``½ Σ_i log1p(α σ_i²)`` from the singular values of one Z: accurate for every ε and rank."""
    N, d = Z.shape
    return 0.5 * np.log1p(alpha(N, d, eps) * np.linalg.svd(Z, compute_uv=False) ** 2).sum()


def svd_rate_grad(Z, eps):
    """``∇_Z R = U diag(α σ / (1 + α σ²)) Vᵀ`` for ``Z = U diag(σ) Vᵀ``."""
    N, d = Z.shape
    a = alpha(N, d, eps)
    left, s, right = np.linalg.svd(Z, full_matrices=False)
    return (left * (a * s / (1 + a * s**2))) @ right


def nearly_rank_deficient(N, d, rank=2, seed=3):
    rng = np.random.default_rng(seed)
    low_rank = rng.standard_normal((N, rank)) @ rng.standard_normal((rank, d))  # (N, d), rank `rank`
    return low_rank + 1e-9 * rng.standard_normal((N, d))


WELL_CONDITIONED = [lambda: random_Z((8, 6)), lambda: random_Z((4, 9)), lambda: random_Z((6, 6))]
NEARLY_RANK_DEFICIENT = [lambda: nearly_rank_deficient(8, 6), lambda: nearly_rank_deficient(4, 9)]
NEARLY_RANK_DEFICIENT += [lambda: nearly_rank_deficient(6, 6)]


def assert_matches_svd_reference(Z, eps, rtol):
    grad, reference = coding_rate_grad(Z, eps), svd_rate_grad(Z, eps)
    assert np.isclose(coding_rate(Z, eps), svd_rate(Z, eps), rtol=rtol)
    np.testing.assert_allclose(grad, reference, rtol=0, atol=rtol * np.abs(reference).max())


@pytest.mark.parametrize("make_Z", WELL_CONDITIONED + NEARLY_RANK_DEFICIENT)
@pytest.mark.parametrize("eps", [1e6, 1.0])
def test_huge_and_moderate_eps_are_accurate(make_Z, eps):
    assert_matches_svd_reference(make_Z(), eps, rtol=1e-12)


@pytest.mark.parametrize("make_Z", WELL_CONDITIONED + NEARLY_RANK_DEFICIENT)
def test_huge_eps_keeps_relative_accuracy(make_Z):
    Z, eps = make_Z(), 1e6
    N, d = Z.shape
    a = alpha(N, d, eps)
    G = Z.T @ Z
    series = 0.5 * a * np.trace(G) - 0.25 * a**2 * np.trace(G @ G)  # ½ logdet(I + αG) to O(α³)
    assert np.isclose(coding_rate(Z, eps), series, rtol=1e-12)  # 2 Σ log L_ii would give ~1e-5


@pytest.mark.parametrize("make_Z", WELL_CONDITIONED)
def test_tiny_eps_is_accurate_for_well_conditioned_Z(make_Z):
    assert_matches_svd_reference(make_Z(), 1e-6, rtol=1e-12)


@pytest.mark.parametrize("make_Z", NEARLY_RANK_DEFICIENT)
def test_tiny_eps_with_nearly_rank_deficient_Z_stays_finite_within_documented_bound(make_Z):
    Z, eps = make_Z(), 1e-6
    U = random_Z((3, Z.shape[1], 2), seed=4)
    grad_Z, grad_U = sparse_rate_reduction_grad(Z, U, eps, 0.1)
    for out in (coding_rate(Z, eps), sparse_rate_reduction(Z, U, eps, 0.1), grad_Z, grad_U):
        assert np.isfinite(out).all()
    assert_matches_svd_reference(Z, eps, rtol=1e-2)  # the Gram loses σ ≈ 1e-9 (module docstring)


def test_float32_in_float32_out():
    Z, U = random_Z((2, 5, 4)).astype(np.float32), random_Z((2, 4, 3), seed=1).astype(np.float32)
    assert coding_rate(Z, 0.5).dtype == np.float32
    assert all(g.dtype == np.float32 for g in sparse_rate_reduction_grad(Z, U, 0.5, 0.1))


# Gradients against finite differences


@given(problems())
def test_coding_rate_grad(problem):
    Z, _, eps = problem
    assert_gradients_match(lambda Z: coding_rate(Z, eps).sum(), {"Z": Z}, {"Z": coding_rate_grad(Z, eps)})


@given(problems())
def test_compression_rate_grad(problem):
    Z, U, eps = problem
    grad_Z, grad_U = compression_rate_grad(Z, U, eps)
    assert_gradients_match(
        lambda Z, U: compression_rate(Z, U, eps).sum(), {"Z": Z, "U": U}, {"Z": grad_Z, "U": grad_U}
    )


@given(problems(), st.floats(0, 1))
def test_sparse_rate_reduction_grad(problem, lambd):
    Z, U, eps = problem
    margin = 100 * FD_STEP * max(1.0, np.sqrt(np.mean(Z**2)))
    assume(np.abs(Z).min() > margin)  # finite differences must not cross the kink of |z| at 0
    grad_Z, grad_U = sparse_rate_reduction_grad(Z, U, eps, lambd)
    # ∇Rc − ∇R can cancel (e.g. d = p = 1: Rc − R ≈ log|u|), leaving a gradient far below the
    # finite-difference noise of either term; judge it on the scale of its three parts
    parts = np.abs(compression_rate_grad(Z, U, eps)[0]) + np.abs(coding_rate_grad(Z, eps)) + lambd
    objective = lambda Z, U: sparse_rate_reduction(Z, U, eps, lambd).sum()  # noqa: E731
    scales = {"Z": rms(parts), "U": rms(grad_U)}
    assert_gradients_match(objective, {"Z": Z, "U": U}, {"Z": grad_Z, "U": grad_U}, scales)


def test_l1_subgradient_is_zero_at_zero():
    Z = np.zeros((3, 4))
    U = random_Z((2, 4, 2))
    grad_Z, grad_U = sparse_rate_reduction_grad(Z, U, 0.5, 0.7)
    np.testing.assert_array_equal(grad_Z, 0.0)  # ∇Rc = ∇R = 0 at Z = 0, and sign(0) = 0
    np.testing.assert_array_equal(grad_U, 0.0)


# Bad input

Z_OK = random_Z((4, 3))
U_OK = random_Z((2, 3, 2))

CALLS = {
    "coding_rate": lambda Z, U, eps, lambd: coding_rate(Z, eps),
    "coding_rate_grad": lambda Z, U, eps, lambd: coding_rate_grad(Z, eps),
    "compression_rate": lambda Z, U, eps, lambd: compression_rate(Z, U, eps),
    "compression_rate_grad": lambda Z, U, eps, lambd: compression_rate_grad(Z, U, eps),
    "sparse_rate_reduction": sparse_rate_reduction,
    "sparse_rate_reduction_grad": sparse_rate_reduction_grad,
}
WITH_U = [name for name in CALLS if not name.startswith("coding")]
WITH_LAMBD = [name for name in CALLS if name.startswith("sparse")]


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize(
    "Z, error",
    [
        (Z_OK.tolist(), TypeError),
        (np.ones((4, 3), dtype=np.int64), TypeError),
        (np.ones(3), ValueError),
        (np.ones((0, 3)), ValueError),
        (np.where(np.eye(4, 3) > 0, np.nan, Z_OK), ValueError),
        (np.where(np.eye(4, 3) > 0, np.inf, Z_OK), ValueError),
    ],
    ids=["list", "int", "1-D", "no tokens", "nan", "inf"],
)
def test_bad_Z(call, Z, error):
    with pytest.raises(error, match="Z"):
        CALLS[call](Z, U_OK, 0.5, 0.1)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("eps", [0.0, -1.0, np.nan, np.inf, -np.inf])
def test_bad_eps(call, eps):
    with pytest.raises(ValueError, match="eps"):
        CALLS[call](Z_OK, U_OK, eps, 0.1)


@pytest.mark.parametrize("call", CALLS)
def test_eps_not_a_number(call):
    with pytest.raises(TypeError, match="eps"):
        CALLS[call](Z_OK, U_OK, "0.5 squared", 0.1)


@pytest.mark.parametrize("call", WITH_U)
@pytest.mark.parametrize("U", [np.ones((3, 2)), np.ones((1, 2, 3, 2)), np.ones((2, 4, 2))], ids=["2-D", "4-D", "d4"])
def test_bad_U_shape_names_expected_shape(call, U):
    with pytest.raises(ValueError, match=r"U must have shape \(K, d, p\) = \(K, 3, p\)"):
        CALLS[call](Z_OK, U, 0.5, 0.1)


@pytest.mark.parametrize("call", WITH_U)
@pytest.mark.parametrize(
    "U, error",
    [
        (np.ones((2, 3, 2), dtype=np.int32), TypeError),
        (np.full((2, 3, 2), np.nan), ValueError),
        ("U", TypeError),
    ],
    ids=["int", "nan", "str"],
)
def test_bad_U(call, U, error):
    with pytest.raises(error, match="U"):
        CALLS[call](Z_OK, U, 0.5, 0.1)


@pytest.mark.parametrize("call", WITH_LAMBD)
@pytest.mark.parametrize(
    "lambd, error", [(-0.1, ValueError), (np.nan, ValueError), (np.inf, ValueError), (None, TypeError)]
)
def test_bad_lambd(call, lambd, error):
    with pytest.raises(error, match="lambd"):
        CALLS[call](Z_OK, U_OK, 0.5, lambd)


@pytest.mark.parametrize("call", WITH_U)
def test_Z_and_U_on_different_backends(call, monkeypatch):
    class FakeDeviceArray:  # looks like a CuPy array to whitebox.backend
        pass

    FakeDeviceArray.__module__ = "cupy._core.core"
    monkeypatch.setattr(backend, "_import_cupy", lambda: types.ModuleType("cupy"))
    with pytest.raises(TypeError, match="Z, U"):
        CALLS[call](Z_OK, FakeDeviceArray(), 0.5, 0.1)


# GPU


@pytest.mark.gpu
@pytest.mark.parametrize("call", CALLS)
def test_cupy_matches_numpy(call):
    cupy = backend.get_xp("gpu")
    Z, U = random_Z((2, 5, 3)), U_OK
    on_host = CALLS[call](Z, U, 0.5, 0.1)
    on_device = CALLS[call](cupy.asarray(Z), cupy.asarray(U), 0.5, 0.1)
    for host, device in zip(as_tuple(on_host), as_tuple(on_device)):
        assert backend.is_device_array(device)
        np.testing.assert_allclose(backend.to_host(device), host, rtol=1e-10, atol=1e-12)


def as_tuple(out):
    """Rates come back as one array, gradients as a tuple."""
    return out if isinstance(out, tuple) else (out,)


# Every eps > 0 and every finite Z give finite rates and gradients (issue 14): eps = 1e-160 gave
# NaN, eps = 1e-300 a ZeroDivisionError, a huge Z NaN, an exactly rank-deficient Z at a small eps a
# LinAlgError.


def log_svd_rate(Z, eps):
    """``½ Σ_i log(1 + α σ_i²)`` in logs, from the SVD of ``Z / 2^k``: finite for every ε and scale."""
    N, d = Z.shape
    k = np.frexp(np.abs(Z).max())[1]
    s = np.linalg.svd(np.ldexp(Z, -k), compute_uv=False)
    log_a_s2 = np.log(d / N) + 2 * (np.log(s) + k * np.log(2) - np.log(eps))
    return 0.5 * np.logaddexp(0.0, log_a_s2).sum()


def log_svd_rate_grad(Z, eps):
    """``U diag(α σ / (1 + α σ²)) Vᵀ`` without overflow, in ``r = σ / ε``: ``(r / ε) / (r² + N/d)``."""
    N, d = Z.shape
    k = np.frexp(np.abs(Z).max())[1]
    left, s, right = np.linalg.svd(np.ldexp(Z, -k), full_matrices=False)
    eps_scaled = eps * 2.0**-k
    with np.errstate(all="ignore"):  # r may be inf; each branch fails only where the other is taken
        r = s / eps_scaled
        weight = np.where(r >= 1, 1 / (s + (N / d) * eps_scaled / r), (r / eps_scaled) / (r**2 + N / d))
    return np.ldexp((left * weight) @ right, -k)


EXTREME = [(1.0, 1e-160), (1.0, 1e-300), (1.0, 5e-324), (1e300, 1.0), (1e300, 1e-300), (1e-300, 1.0)]


@pytest.mark.parametrize("make_Z", WELL_CONDITIONED)
@pytest.mark.parametrize("scale, eps", EXTREME)
def test_extreme_eps_and_scale_match_the_svd_in_logs(make_Z, scale, eps):
    Z = scale * make_Z()
    assert np.isclose(coding_rate(Z, eps), log_svd_rate(Z, eps), rtol=1e-12)
    grad, reference = coding_rate_grad(Z, eps), log_svd_rate_grad(Z, eps)
    np.testing.assert_allclose(grad, reference, rtol=0, atol=1e-10 * np.abs(reference).max())


@pytest.mark.parametrize("scale, eps", EXTREME + [(1.0, 1e-10)])
@pytest.mark.parametrize("kind", ["repeated rows", "zeros", "well conditioned"])
def test_extreme_inputs_stay_finite_for_every_rate_and_gradient(scale, eps, kind):
    rng = np.random.default_rng(1)
    Z = {"repeated rows": np.repeat(rng.standard_normal((1, 5)), 7, axis=0), "zeros": np.zeros((7, 5)),
         "well conditioned": rng.standard_normal((2, 7, 5))}[kind] * scale
    U = rng.standard_normal((3, 5, 2))
    outputs = (coding_rate(Z, eps), coding_rate_grad(Z, eps), compression_rate(Z, U, eps),
               sparse_rate_reduction(Z, U, eps, 0.1), *compression_rate_grad(Z, U, eps),
               *sparse_rate_reduction_grad(Z, U, eps, 0.1))
    for out in outputs:
        assert np.isfinite(out).all()


@pytest.mark.parametrize("eps", [1e-10, 1e-100, 1e-300])
def test_rank_one_Z_at_tiny_eps_is_half_log_one_plus_alpha_sigma_squared(eps):
    z = np.random.default_rng(2).standard_normal((1, 4))
    Z = np.repeat(z, 8, axis=0)  # rank 1, σ² = 8 ‖z‖²
    log_a_s2 = np.log(4 / 8) + np.log(8 * (z**2).sum()) - 2 * np.log(eps)
    assert np.isclose(coding_rate(Z, eps), 0.5 * np.logaddexp(0.0, log_a_s2), rtol=1e-12)


@given(problems(), st.integers(-900, 900))
def test_rates_are_invariant_under_scaling_Z_and_eps_together(problem, j):
    """``R(tZ | tε) = R(Z | ε)`` and ``∇R(tZ | tε) = ∇R(Z | ε) / t`` for ``t = 2^j``, however extreme."""
    Z, U, eps = problem
    Zt, eps_t = np.ldexp(Z, j), eps * 2.0**j
    assume(np.isfinite(Zt).all() and np.abs(Zt).min() > 1e-290 and eps_t > 1e-300)
    assert np.allclose(coding_rate(Zt, eps_t), coding_rate(Z, eps), rtol=1e-10)
    assert np.allclose(compression_rate(Zt, U, eps_t), compression_rate(Z, U, eps), rtol=1e-10)
    (gZ_t, gU_t), (gZ, gU) = compression_rate_grad(Zt, U, eps_t), compression_rate_grad(Z, U, eps)
    gR_t, gR = coding_rate_grad(Zt, eps_t), coding_rate_grad(Z, eps)
    for scaled, plain in [(np.ldexp(gZ_t, j), gZ), (gU_t, gU), (np.ldexp(gR_t, j), gR)]:
        assert np.allclose(scaled, plain, rtol=1e-8, atol=1e-12 * np.abs(plain).max())
