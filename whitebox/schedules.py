"""Learning-rate schedules: functions from the step index to a learning rate.

Step indexing, for every schedule here: ``step`` is the number of updates already taken, so the
first update uses ``schedule(0)`` and the last of ``total_steps`` updates uses
``schedule(total_steps - 1)``. Pass the value to the optimiser::

    for step in range(total_steps):
        opt.step(params, grads, state, lr=warmup_cosine(step, base_lr=1e-3,
                                                        total_steps=total_steps, warmup_steps=500))

The warmup is linear and starts at ``base_lr / warmup_steps`` rather than 0, so that no update
is wasted (Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
section 2.2).
"""

from __future__ import annotations

import math
import operator

from .validate import check_positive


def warmup_cosine(step: int, *, base_lr: float, total_steps: int, warmup_steps: int,
                  min_lr: float = 0.0) -> float:
    r"""Linear warmup to ``base_lr``, then a half cosine down to ``min_lr`` at ``total_steps``.

    With :math:`W` = ``warmup_steps``, :math:`T` = ``total_steps``, :math:`s` = ``step``:

    .. math::

        \eta(s) = \begin{cases}
            \eta_{\max}\, \dfrac{s + 1}{W} & 0 \le s < W \\[1ex]
            \eta_{\min} + \tfrac12 (\eta_{\max} - \eta_{\min})
                \Big(1 + \cos\big(\pi\, \tfrac{s - W}{T - W}\big)\Big) & W \le s \le T \\[1ex]
            \eta_{\min} & s > T
        \end{cases}

    So :math:`\eta(0) = \eta_{\max}/W`, :math:`\eta(W-1) = \eta(W) = \eta_{\max}`, the middle of
    the cosine :math:`s = (W + T)/2` gives :math:`(\eta_{\max} + \eta_{\min})/2`, and
    :math:`\eta(T) = \eta_{\min}`. The cosine is the one-cycle form of SGDR (Loshchilov & Hutter
    2017, "SGDR: Stochastic Gradient Descent with Warm Restarts", eq. 5).

    Parameters
    ----------
    step : int
        Updates already taken, >= 0.
    base_lr : float
        :math:`\eta_{\max} > 0`.
    total_steps : int
        :math:`T > 0`.
    warmup_steps : int
        :math:`0 \le W \le T`; 0 starts the cosine at once.
    min_lr : float
        :math:`0 \le \eta_{\min} \le \eta_{\max}`.

    Returns
    -------
    float
    """
    step = _check_int("step", step, minimum=0)
    base_lr = check_positive("base_lr", base_lr)
    total_steps = _check_int("total_steps", total_steps, minimum=1)
    warmup_steps = _check_int("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps > total_steps:
        raise ValueError(f"warmup_steps ({warmup_steps}) must be <= total_steps ({total_steps})")
    min_lr = float(min_lr)
    if not 0.0 <= min_lr <= base_lr:
        raise ValueError(f"min_lr must be in [0, base_lr={base_lr}], got {min_lr!r}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)  # in [0, 1)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def constant(step: int, *, base_lr: float, warmup_steps: int = 0) -> float:
    r"""``base_lr`` at every step, after an optional linear warmup.

    .. math::

        \eta(s) = \eta_{\max} \min\Big(1, \frac{s + 1}{W}\Big) \quad (W > 0), \qquad
        \eta(s) = \eta_{\max} \quad (W = 0).

    Parameters
    ----------
    step : int
        Updates already taken, >= 0.
    base_lr : float
        :math:`\eta_{\max} > 0`.
    warmup_steps : int
        :math:`W \ge 0`.

    Returns
    -------
    float
    """
    step = _check_int("step", step, minimum=0)
    base_lr = check_positive("base_lr", base_lr)
    warmup_steps = _check_int("warmup_steps", warmup_steps, minimum=0)
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return base_lr


def _check_int(name: str, value, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v
