"""DINO as a training task (``whitebox train --task dino``): self-distillation with centring and sharpening.

The objective (Caron et al. 2021, eq. 1 and §3.1), for the teacher's logits ``g_t`` on the ``G = 2``
global views and the student's ``g_s`` on all ``V`` views::

    P_t(v) = softmax((g_t(v) − c) / τ_t)                   centred, and sharpened by τ_t < τ_s
    L = (1/|pairs|) Σ_{t ∈ global, s ≠ t} H(P_t(t), softmax(g_s(s) / τ_s))
    c ← μ c + (1 − μ) mean over the teacher's batch of g_t         (after the update, μ = 0.9)

Centring alone drives the teacher towards the uniform distribution, sharpening alone towards one
prototype for every image; together they keep it between the two collapses (lecture 9). The
metrics ``teacher_entropy`` (mean entropy of ``P_t``: log K at the uniform collapse) and
``teacher_marginal_entropy`` (entropy of the batch's mean ``P_t``: 0 at the one-prototype collapse)
show which way a run fails. The
teacher's temperature rises linearly from ``warmup_teacher_temp`` (0.04) to ``teacher_temp``
(0.07) over the first ``warmup_teacher_epochs`` epochs (per update here, per epoch in DINO); the
student's is ``student_temp`` (0.1). The shared machinery (EMA teacher, views, head, evaluation) is
:mod:`whitebox.train.self_distillation`.
"""

from __future__ import annotations

from ..backend import array_module
from ..layers.activations import softmax_forward
from ..layers.loss import soft_cross_entropy
from .self_distillation import SelfDistillationTask


def teacher_temperature(update: int, warmup_steps: int, start: float, end: float) -> float:
    """τ_t at update ``update``: linear from ``start`` to ``end`` over ``warmup_steps`` updates, then ``end``."""
    if update >= warmup_steps:
        return end
    return start + (end - start) * update / warmup_steps


class DINOTask(SelfDistillationTask):
    """:class:`whitebox.train.task.Task` of DINO; the parameters as :class:`SelfDistillationTask`'s.

    ``options``: those of :class:`SelfDistillationTask` and ``prototypes`` (K), ``student_temp``,
    ``teacher_temp``, ``warmup_teacher_temp``, ``warmup_teacher_epochs``, ``center_momentum``.
    """

    positive = ("knn_temperature", "student_temp", "teacher_temp", "warmup_teacher_temp")
    unit = ("momentum", "center_momentum")

    def __init__(self, cfg, train, test, info, **kwargs):
        self.prototypes = kwargs["options"]["prototypes"]
        super().__init__(cfg, train, test, info, **kwargs)
        if not self.options["warmup_teacher_epochs"] >= 0:
            raise ValueError(f"data option warmup_teacher_epochs must be >= 0, got {self.options['warmup_teacher_epochs']!r}")
        self.warmup_steps = round(self.options["warmup_teacher_epochs"] * self.steps_per_epoch)
        self.center = None

    def objective(self, out_s, out_t, update: int):
        """``(loss, dout_s, metrics, new centre)`` for the student's logits (V·B, K) and the teacher's (G·B, K)."""
        xp = array_module(out_s)
        o = self.options
        if self.center is None:
            self.center = xp.zeros(out_t.shape[1], dtype=out_t.dtype)  # (K,), DINO's zeros
        tau_t = teacher_temperature(update, self.warmup_steps, o["warmup_teacher_temp"], o["teacher_temp"])
        G, V = self.views.global_views, self.views.views
        targets = xp.split(softmax_forward((out_t - self.center) / tau_t), G)  # G × (B, K)
        students = xp.split(out_s, V)  # V × (B, K)
        pairs = [(t, s) for t in range(G) for s in range(V) if s != t]
        loss, dstudents = 0.0, [xp.zeros_like(g) for g in students]
        for t, s in pairs:
            pair_loss, dlogits = soft_cross_entropy(students[s], targets[t], o["student_temp"])
            loss = loss + pair_loss / len(pairs)
            dstudents[s] += dlogits / len(pairs)
        mu = o["center_momentum"]
        center = mu * self.center + (1.0 - mu) * out_t.mean(axis=0)  # (K,)
        p = xp.concatenate(targets)  # (G·B, K)
        entropy = -(p * xp.log(p + 1e-30)).sum(axis=1).mean()  # per image: log K when spread evenly
        mean = p.mean(axis=0)  # (K,)
        marginal = -(mean * xp.log(mean + 1e-30)).sum()  # over the batch: 0 when every image has one prototype
        return loss, xp.concatenate(dstudents), {"teacher_entropy": entropy, "teacher_marginal_entropy": marginal}, center

    def commit(self, center) -> None:
        self.center = center

    def state(self) -> dict:
        """:meth:`SelfDistillationTask.state` and the centre."""
        return {**super().state(), **({"center": self.center} if self.center is not None else {})}

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        if "center" in state:
            self.center = self.xp.asarray(state["center"], dtype=self.dtype)
