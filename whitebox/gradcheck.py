"""Finite-difference checks of hand-written derivatives, for whitebox's tests and for users.

Two checks, both in float64 and both returning the relative errors they found:

* :func:`grad_errors`: a scalar function ``f(**inputs)`` and claimed gradients ``grads``. Along a
  random direction ``t`` of one input, the central difference
  ``(f(x + h t) − f(x − h t)) / 2h`` must equal ``⟨∇f(x), t⟩``.
* :func:`vjp_errors`: an array-valued ``f(**inputs)``, an upstream gradient ``dout`` and the
  claimed vector-Jacobian products ``Jᵀ dout`` for each input. This is the first check applied to
  the scalar ``⟨dout, f⟩``, whose directional derivative is ``⟨dout, J t⟩``.

:func:`entry_errors` compares single entries of a gradient (directions that are coordinate
vectors), which catches errors that random directions average away.

The relative error of a directional derivative is
``|numeric − analytic| / max(|numeric|, |analytic|, ‖g‖ ‖t‖ / √n, atol)``: the third term, the
typical size of ``⟨g, t⟩`` for a random direction in ``n`` dimensions, keeps a direction that
happens to be nearly orthogonal to the gradient from turning rounding noise into a large
"relative" error.

Non-finite values fail: a NaN or an infinity in a claimed gradient, in a numeric derivative or in
the function's values makes that input's error ``inf``, so every ``error < tol`` assertion fails
(``max(worst, nan)`` would have kept the old value). A check that would check nothing
(``directions`` or ``entries`` below 1) raises ``ValueError``.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Callable, Mapping

import numpy as np

from .backend import array_module, to_host


def relative_error(a: float, b: float, atol: float = 1e-12) -> float:
    """``|a − b| / max(|a|, |b|, atol)``; ``inf`` when ``a`` or ``b`` is NaN or infinite."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), atol)


def _central_difference(fun, inputs, name, direction, step) -> float:
    """``(f(x + h t) − f(x − h t)) / 2h`` with ``h = step · max(1, rms(x))``.

    Scaling the step with the input keeps the rounding of ``x ± h t`` (about ``ε_mach |x|``)
    small against ``h``.
    """
    x = inputs[name]
    xp = array_module(x)
    step = step * max(1.0, float(xp.sqrt(xp.mean(x * x)))) if x.size else step
    plus = float(fun(**{**inputs, name: x + step * direction}))
    minus = float(fun(**{**inputs, name: x - step * direction}))
    return (plus - minus) / (2 * step)


def _check_float64(inputs: Mapping) -> None:
    for name, x in inputs.items():
        if getattr(x, "dtype", None) != np.float64:
            raise TypeError(f"gradient checks need float64 inputs; {name} has dtype {getattr(x, 'dtype', type(x))}")


def _check_count(name: str, value) -> int:
    """A number of checks: an integer >= 1 (0 would check nothing and report error 0)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1 (a check of nothing cannot fail), got {value!r}")
    return int(value)


def _check_options(count_name: str, count, step, inputs: Mapping, grads: Mapping) -> int:
    """Validate a check's options and that ``grads`` names inputs; return the count."""
    _check_float64(inputs)
    if not (isinstance(step, (int, float)) and 0 < step < math.inf):
        raise ValueError(f"step must be a finite number > 0, got {step!r}")
    unknown = sorted(set(grads) - set(inputs))
    if unknown:
        raise ValueError(f"grads names {unknown}, which are not in inputs {sorted(inputs)}")
    return _check_count(count_name, count)


def _all_finite(g) -> bool:
    return bool(array_module(g).isfinite(g).all())


def grad_errors(
    fun: Callable[..., float],
    inputs: Mapping[str, object],
    grads: Mapping[str, object],
    *,
    directions: int = 3,
    step: float = 1e-6,
    seed: int = 0,
    atol: float = 1e-12,
) -> dict[str, float]:
    """Largest relative error of ``⟨grads[name], t⟩`` against central differences, per input.

    Parameters
    ----------
    fun : callable
        ``fun(**inputs)`` returns a scalar.
    inputs : dict of float64 arrays
        The point at which to check.
    grads : dict of arrays
        The claimed gradient for each input to check (a subset of ``inputs``' keys).
    directions : int
        Random unit directions tried per input.
    step : float
        The finite-difference step along a unit-norm direction, relative to ``max(1, rms(x))``.

    Returns
    -------
    dict
        ``name -> max relative error`` over the directions; ``inf`` where a gradient, a numeric
        derivative or a value of ``fun`` is not finite.

    Raises
    ------
    ValueError
        ``directions < 1``, ``step`` not finite and > 0, shapes that differ, or ``grads`` naming
        something that is not an input.
    """
    directions = _check_options("directions", directions, step, inputs, grads)
    errors = {}
    for offset, name in enumerate(sorted(grads)):
        x, g = inputs[name], grads[name]
        if tuple(g.shape) != tuple(x.shape):
            raise ValueError(f"gradient for {name} has shape {tuple(g.shape)}, input has {tuple(x.shape)}")
        if not _all_finite(g):
            errors[name] = math.inf
            continue
        xp = array_module(x)
        rng = np.random.default_rng([seed, offset])
        worst = 0.0
        for _ in range(directions):
            t = rng.standard_normal(x.shape)
            t /= max(np.linalg.norm(t), 1e-300)
            t = xp.asarray(t)
            numeric = _central_difference(fun, inputs, name, t, step)
            analytic = float(xp.vdot(g, t))
            typical = float(xp.linalg.norm(g)) / np.sqrt(max(x.size, 1))
            worst = max(worst, relative_error(numeric, analytic, max(atol, typical)))
        errors[name] = worst
    return errors


def entry_errors(
    fun: Callable[..., float],
    inputs: Mapping[str, object],
    grads: Mapping[str, object],
    *,
    entries: int = 3,
    step: float = 1e-6,
    seed: int = 0,
    atol: float = 1e-12,
) -> dict[str, float]:
    """Like :func:`grad_errors` along coordinate directions: random single entries of each input.

    The error of an entry is relative to ``max(|numeric|, |analytic|, ‖g‖/√n)``, so a near-zero
    entry of a large gradient is judged against the gradient's typical entry. The whole gradient,
    not only the sampled entries, must be finite (else the error is ``inf``); ``entries < 1``
    raises ``ValueError``.
    """
    entries = _check_options("entries", entries, step, inputs, grads)
    errors = {}
    for offset, name in enumerate(sorted(grads)):
        x, g = inputs[name], grads[name]
        if tuple(g.shape) != tuple(x.shape):
            raise ValueError(f"gradient for {name} has shape {tuple(g.shape)}, input has {tuple(x.shape)}")
        if not _all_finite(g):
            errors[name] = math.inf
            continue
        xp = array_module(x)
        g_host = to_host(g)
        typical = float(np.linalg.norm(g_host)) / np.sqrt(max(x.size, 1))  # the size of a typical entry
        rng = np.random.default_rng([seed, offset, 1])
        worst = 0.0
        for flat in rng.choice(x.size, size=min(entries, x.size), replace=False):
            index = np.unravel_index(flat, x.shape)
            t = np.zeros(x.shape)
            t[index] = 1.0
            numeric = _central_difference(fun, inputs, name, xp.asarray(t), step)
            worst = max(worst, relative_error(numeric, float(g_host[index]), max(atol, typical)))
        errors[name] = worst
    return errors


def vjp_errors(
    fun: Callable[..., object],
    inputs: Mapping[str, object],
    dout,
    vjps: Mapping[str, object],
    **options,
) -> dict[str, float]:
    """Check vector-Jacobian products ``Jᵀ dout`` of an array-valued ``fun`` (``⟨dout, J t⟩`` test).

    ``options`` are passed to :func:`grad_errors`.
    """
    xp = array_module(dout)

    def scalar(**kwargs):
        return xp.vdot(dout, fun(**kwargs))

    return grad_errors(scalar, inputs, vjps, **options)
