"""Cross-entropy with label smoothing, averaged over the batch.

With ``C`` classes and smoothing ``s``, the target is ``q = (1 − s) onehot(y) + s / C`` and the
loss is ``−(1/B) Σ_b Σ_c q_bc log softmax(logits_b)_c``; its gradient is ``(softmax − q) / B``
(PyTorch ``F.cross_entropy(..., label_smoothing=s)``).
"""

from __future__ import annotations

from ..backend import array_module


def log_softmax(logits):
    """``logits − logsumexp(logits)`` along the last axis, computed stably."""
    xp = array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def cross_entropy(logits, labels, smoothing: float = 0.0):
    """Returns ``(loss, dlogits)``: logits (B, C), labels (B,) integer class indices."""
    xp = array_module(logits)
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    B, C = logits.shape
    logp = log_softmax(logits)  # (B, C)
    rows = xp.arange(B)
    nll = -logp[rows, labels]  # (B,)
    loss = (1.0 - smoothing) * nll.mean() - smoothing * logp.mean(axis=-1).mean()
    dlogits = xp.exp(logp)  # softmax
    dlogits -= smoothing / C
    dlogits[rows, labels] -= 1.0 - smoothing
    dlogits /= B
    return loss, dlogits
