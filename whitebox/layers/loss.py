"""Cross-entropy with label smoothing, averaged over the batch.

With ``C`` classes and smoothing ``s``, the target is ``q = (1 − s) onehot(y) + s / C`` and the
loss is ``−(1/B) Σ_b Σ_c q_bc log softmax(logits_b)_c``; its gradient is ``(softmax − q) / B``
(PyTorch ``F.cross_entropy(..., label_smoothing=s)``). :func:`soft_cross_entropy` takes any target
distribution instead of a class, with a temperature: the loss of DINO's student against its teacher.
"""

from __future__ import annotations

from numbers import Real

from ..backend import array_module
from ..validate import check_array, check_class_labels


def log_softmax(logits):
    """``logits − logsumexp(logits)`` along the last axis, computed stably."""
    xp = array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits, labels, smoothing: float = 0.0):
    """Returns ``(loss, dlogits)``: logits (B, C), labels (B,) integer class indices in ``[0, C)``.

    Raises ``TypeError``/``ValueError`` naming ``logits``, ``labels`` or ``smoothing`` for a
    non-float or non-2-D ``logits``, labels that are not ``B`` integers in ``[0, C)`` (``-1`` would
    score the last class, a length-1 array would broadcast), or ``smoothing`` outside ``[0, 1)``.
    """
    xp = array_module(logits)
    check_array("logits", logits, ndim=2, finite=False)  # NaN logits give a NaN loss, for the caller to see
    if isinstance(smoothing, bool) or not isinstance(smoothing, Real) or not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")
    B, C = logits.shape
    check_class_labels("labels", labels, B, C)
    logp = log_softmax(logits)  # (B, C)
    rows = xp.arange(B)
    nll = -logp[rows, labels]  # (B,)
    loss = (1.0 - smoothing) * nll.mean() - smoothing * logp.mean(axis=-1).mean()
    dlogits = xp.exp(logp)  # softmax
    dlogits -= smoothing / C
    dlogits[rows, labels] -= 1.0 - smoothing
    dlogits /= B
    return loss, dlogits


def soft_cross_entropy(logits, target, temperature: float = 1.0):
    """Returns ``(loss, dlogits)`` of ``H(q, softmax(logits / τ))`` averaged over the batch (DINO eq. 1).

    .. math::

        L = −(1/B) Σ_b Σ_c q_bc log softmax(s_b / τ)_c,     ∂L/∂s = (softmax(s / τ) − q) / (B τ)

    logits (B, C) are the student's, ``target`` (B, C) the teacher's probabilities (rows summing to
    1, the gradient formula needs it); the target is a constant: no gradient flows to it, as DINO's
    stop-gradient on the teacher. Raises ``ValueError`` naming ``target`` or ``temperature`` for a
    target of another shape or a temperature that is not a number > 0.
    """
    xp = array_module(logits)
    check_array("logits", logits, ndim=2, finite=False)
    if tuple(target.shape) != tuple(logits.shape):
        raise ValueError(f"target must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}")
    if isinstance(temperature, bool) or not isinstance(temperature, Real) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
    B = logits.shape[0]
    logp = log_softmax(logits / temperature)  # (B, C)
    loss = -(target * logp).sum() / B
    dlogits = xp.exp(logp)  # softmax(s / τ)
    dlogits -= target
    dlogits /= B * temperature
    return loss, dlogits
