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

The relative error of two numbers is ``|a − b| / max(|a|, |b|, atol)``.
"""

from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

from .backend import array_module, to_host


def relative_error(a: float, b: float, atol: float = 1e-12) -> float:
    """``|a − b| / max(|a|, |b|, atol)``."""
    return abs(a - b) / max(abs(a), abs(b), atol)


def _central_difference(fun, inputs, name, direction, step) -> float:
    x = inputs[name]
    plus = float(fun(**{**inputs, name: x + step * direction}))
    minus = float(fun(**{**inputs, name: x - step * direction}))
    return (plus - minus) / (2 * step)


def _check_float64(inputs: Mapping) -> None:
    for name, x in inputs.items():
        if getattr(x, "dtype", None) != np.float64:
            raise TypeError(f"gradient checks need float64 inputs; {name} has dtype {getattr(x, 'dtype', type(x))}")


def grad_errors(
    fun: Callable[..., float],
    inputs: Mapping[str, object],
    grads: Mapping[str, object],
    *,
    directions: int = 3,
    step: float = 1e-5,
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
        The finite-difference step ``h`` along a unit-norm direction.

    Returns
    -------
    dict
        ``name -> max relative error`` over the directions.
    """
    _check_float64(inputs)
    errors = {}
    for offset, name in enumerate(sorted(grads)):
        x, g = inputs[name], grads[name]
        if tuple(g.shape) != tuple(x.shape):
            raise ValueError(f"gradient for {name} has shape {tuple(g.shape)}, input has {tuple(x.shape)}")
        xp = array_module(x)
        rng = np.random.default_rng([seed, offset])
        worst = 0.0
        for _ in range(directions):
            t = rng.standard_normal(x.shape)
            t /= max(np.linalg.norm(t), 1e-300)
            t = xp.asarray(t)
            numeric = _central_difference(fun, inputs, name, t, step)
            analytic = float(xp.vdot(g, t))
            worst = max(worst, relative_error(numeric, analytic, atol))
        errors[name] = worst
    return errors


def entry_errors(
    fun: Callable[..., float],
    inputs: Mapping[str, object],
    grads: Mapping[str, object],
    *,
    entries: int = 3,
    step: float = 1e-5,
    seed: int = 0,
    atol: float = 1e-12,
) -> dict[str, float]:
    """Like :func:`grad_errors` along coordinate directions: random single entries of each input."""
    _check_float64(inputs)
    errors = {}
    for offset, name in enumerate(sorted(grads)):
        x, g = inputs[name], grads[name]
        xp = array_module(x)
        g_host = to_host(g)
        rng = np.random.default_rng([seed, offset, 1])
        worst = 0.0
        for flat in rng.choice(x.size, size=min(entries, x.size), replace=False):
            index = np.unravel_index(flat, x.shape)
            t = np.zeros(x.shape)
            t[index] = 1.0
            numeric = _central_difference(fun, inputs, name, xp.asarray(t), step)
            worst = max(worst, relative_error(numeric, float(g_host[index]), atol))
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
