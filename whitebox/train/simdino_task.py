"""SimDINO as a training task (``whitebox train --task simdino``): self-distillation regularised by the coding rate.

SimDINO (Wu et al. 2025, "Simplifying DINO via coding rate regularization", §3) drops DINO's
prototypes, centring and sharpening: the head ends at the ℓ2-normalised projection ``z``
(:mod:`whitebox.blocks.dino_head` with ``prototypes=0``) and, for the teacher's ``z_t`` on the
``G = 2`` global views and the student's ``z_s`` on all ``V`` views::

    L = (1/|pairs|) Σ_{t ∈ global, s ≠ t} (1/B) Σ_b ½ ‖z_s(s)_b − z_t(t)_b‖²  −  γ (1/G) Σ_{g} R_ε(Z_s(g))

with ``R_ε(Z) = ½ logdet(I + k/(B ε²) ZᵀZ)`` the coding rate of the batch of the student's
global-view projections (:func:`whitebox.rate.coding_rate`, its gradient
:func:`whitebox.rate.coding_rate_grad`). The distance alone is minimised by mapping every image to
the same point (then ``R = 0``); the rate term rewards spreading the batch over many directions,
the role ``R`` plays in the sparse rate reduction. ``gamma`` and ``rate_eps`` are data options.
"""

from __future__ import annotations

from ..backend import array_module
from ..rate import coding_rate, coding_rate_grad
from .self_distillation import SelfDistillationTask


class SimDINOTask(SelfDistillationTask):
    """:class:`whitebox.train.task.Task` of SimDINO; the parameters as :class:`SelfDistillationTask`'s.

    ``options``: those of :class:`SelfDistillationTask` and ``gamma`` (γ ≥ 0) and ``rate_eps`` (ε > 0).
    """

    prototypes = 0
    positive = ("knn_temperature", "rate_eps")

    def __init__(self, cfg, train, test, info, **kwargs):
        super().__init__(cfg, train, test, info, **kwargs)
        gamma = self.options["gamma"]
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
            raise ValueError(f"data option gamma must be a number >= 0, got {gamma!r}")

    def objective(self, out_s, out_t, update: int):
        """``(loss, dz_s, metrics, None)`` for the student's projections (V·B, k) and the teacher's (G·B, k)."""
        xp = array_module(out_s)
        G, V = self.views.global_views, self.views.views
        gamma, eps = self.options["gamma"], self.options["rate_eps"]
        students, teachers = xp.split(out_s, V), xp.split(out_t, G)  # V × (B, k), G × (B, k)
        B = students[0].shape[0]
        pairs = [(t, s) for t in range(G) for s in range(V) if s != t]
        distance, dstudents = 0.0, [xp.zeros_like(z) for z in students]
        for t, s in pairs:
            diff = students[s] - teachers[t]  # (B, k)
            distance = distance + 0.5 * (diff * diff).sum() / (B * len(pairs))
            dstudents[s] += diff / (B * len(pairs))
        rate = 0.0
        for g in range(G):
            rate = rate + coding_rate(students[g], eps) / G
            dstudents[g] -= (gamma / G) * coding_rate_grad(students[g], eps)
        loss = distance - gamma * rate
        return loss, xp.concatenate(dstudents), {"distance": distance, "rate": rate}, None
