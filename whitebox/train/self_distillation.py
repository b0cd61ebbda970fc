"""What DINO and SimDINO share: an EMA teacher, multi-crop views, a projection head, k-NN evaluation.

One step of self-distillation (Caron et al. 2021, Algorithm 1), for a batch of uint8 images::

    views = multicrop(normalize(images), rng)               # G = 2 global views, then L local ones
    h_s, _ = represent(θ_s, concat(views))                   # (V·B, d): the student sees every view
    h_t, _ = represent(θ_t, concat(views[:G]))               # (G·B, d): the teacher the global ones
    out_s, out_t = head(θ_s, h_s), head(θ_t, h_t)           # DINO: logits (·, K); SimDINO: z (·, k)
    loss, dout_s = objective(out_s, out_t)                  # the task's: dino_task / simdino_task
    grads = backward of head and represent (student only: the teacher gets no gradient)
    θ_s ← optimizer step;  θ_t ← m θ_t + (1 − m) θ_s       # after_update, m: cosine 0.996 → 1

The teacher (and DINO's centre) is task state: :meth:`SelfDistillationTask.state` gives its
arrays for the checkpoint and :meth:`load_state` restores them, so a resumed run continues exactly.
What the objective computes from the teacher (DINO's new centre) is committed only in
:meth:`after_update`, after the loop has accepted the step, so a step refused for a non-finite loss
leaves the state as it was. The parameters of a run are the backbone (the classifier model without
its ``head.weight/bias``, :func:`whitebox.models.common.backbone_shapes`) and ``dino_head.*``.

Evaluation, each epoch, on the test split: the objective on fixed views (seeded by the run's
seed), the weighted k-NN accuracy of the student's backbone features against a bank of the first
``knn_bank`` training images (:func:`knn_predict`), and the coding rate of the test features
(ℓ2-normalised), which falls to ½ log(1 + d/ε²), one direction's worth, when the features
collapse to one point.
Data parallelism is not supported (the centre and the k-NN bank would need all-reduces).
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from ..backend import array_module, default_rng, to_device
from ..blocks import dino_head
from ..blocks.dino_head import DinoHeadSpec
from ..distributed import DistributedError
from ..data import DatasetInfo, epoch_order, normalize, num_batches
from ..data.multicrop import MultiCrop, multicrop
from ..layers.l2norm import l2_normalize_forward
from ..models.common import backbone_shapes, represent, represent_backward
from ..rate import coding_rate
from .task import means

EVAL_STREAM = 3  # the evaluation views' generator, apart from the training streams of the seed
RATE_EPS = 0.5  # ε of the evaluation's feature rate


def cosine_momentum(step: int, total: int, base: float) -> float:
    """The teacher's momentum after update ``step`` (0-based) of ``total``: ``1 − (1 − m₀)(cos(π t/T) + 1)/2``
    (DINO's schedule, from ``base`` = m₀ up to 1 at the end)."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * step / max(total, 1)) + 1.0) / 2.0


def knn_predict(bank, bank_labels, queries, num_classes: int, k: int = 20, temperature: float = 0.07,
                chunk: int = 1024):
    """Weighted k-NN classes of ``queries`` (M, d) against ``bank`` (N, d) with labels (N,) (Wu et al. 2018, as DINO).

    Features are compared by cosine similarity ``s``; each of the ``k`` nearest bank entries votes for
    its class with weight ``exp(s / temperature)``; the class with the largest total wins. Queries go
    ``chunk`` at a time (a (chunk, N) similarity matrix). Returns (M,) integer classes on the queries'
    backend.
    """
    xp = array_module(queries)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if bank.shape[0] == 0:
        raise ValueError("bank holds no features (an empty training split?)")
    k = min(k, bank.shape[0])
    bank, _ = l2_normalize_forward(bank)  # (N, d)
    queries, _ = l2_normalize_forward(queries)  # (M, d)
    classes = xp.arange(num_classes)
    out = []
    for lo in range(0, queries.shape[0], chunk):
        similarity = queries[lo:lo + chunk] @ bank.T  # (m, N)
        nearest = xp.argsort(-similarity, axis=1)[:, :k]  # (m, k)
        weights = xp.exp(xp.take_along_axis(similarity, nearest, axis=1) / temperature)  # (m, k)
        onehot = bank_labels[nearest][..., None] == classes  # (m, k, classes)
        votes = xp.einsum("mk,mkc->mc", weights, onehot.astype(weights.dtype))  # (m, classes)
        out.append(votes.argmax(axis=1))
    return xp.concatenate(out) if out else xp.zeros(0, dtype=xp.int64)


def image_features(params: dict, images, cfg, info: DatasetInfo, dtype, batch_size: int):
    """Backbone features (N, d) of uint8 host images (N, C, H, W), normalised as in training, on the params' backend."""
    xp = array_module(*params.values())
    out = [represent(params, normalize(to_device(images[lo:lo + batch_size], xp), info.mean, info.std, dtype=dtype),
                     cfg)[0] for lo in range(0, len(images), batch_size)]
    return xp.concatenate(out, axis=0) if out else xp.zeros((0, cfg.dim), dtype=dtype)


def head_spec(cfg, options: dict, prototypes: int) -> DinoHeadSpec:
    return DinoHeadSpec(cfg.dim, options["hidden"], options["bottleneck"], prototypes)


def ssl_shapes(cfg, spec: DinoHeadSpec) -> dict:
    """name -> shape of a self-distillation run's parameters: the backbone and the head."""
    return {**backbone_shapes(cfg), **{name: p.shape for name, p in dino_head.shapes(spec).items()}}


def check_options(options: dict, positive: tuple, unit: tuple) -> None:
    """``ValueError`` naming the data option that is not a number > 0 (``positive``) or in [0, 1) (``unit``)."""
    for name in positive:
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"data option {name} must be a number > 0, got {value!r}")
    for name in unit:
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"data option {name} must be a number in [0, 1), got {value!r}")
    for name in ("hidden", "bottleneck", "knn_bank", "knn_k", *(("prototypes",) if "prototypes" in options else ())):
        if isinstance(options[name], bool) or not isinstance(options[name], int) or options[name] < 1:
            raise ValueError(f"data option {name} must be an integer >= 1, got {options[name]!r}")
    if isinstance(options["local_views"], bool) or not isinstance(options["local_views"], int) \
            or options["local_views"] < 0:
        raise ValueError(f"data option local_views must be an integer >= 0, got {options['local_views']!r}")


class SelfDistillationTask:
    """The part of :class:`whitebox.train.task.Task` that DINO and SimDINO share (module doc).

    A subclass sets ``prototypes`` (K, or 0) and defines ``objective(out_s, out_t, update)`` →
    ``(loss, dout_s, metrics, pending)``, where ``pending`` is what :meth:`commit` applies after
    the update (None for nothing), and may extend :meth:`state` / :meth:`load_state`.

    Parameters
    ----------
    cfg : the backbone model's Config (crate, crate-alpha, ...), with the dataset's image shape.
    train, test : (images uint8 (N, C, H, W), labels (N,)) on the host; labels are used by k-NN only.
    info : the dataset's :class:`whitebox.data.DatasetInfo`; ``flip`` whether views may be mirrored.
    options : the task's data options (:data:`whitebox.train.config.DATA_OPTIONS`).
    batch_size, seed, epochs : batches of epoch k follow ``epoch_order(N, seed, k)``; the momentum
        schedule spans the run's ``epochs`` (not a ``--max-steps`` cut, so that a run's steps do not
        depend on where it stops).
    """

    prototypes = 0
    positive = ("knn_temperature",)  # the data options that must be > 0 (a subclass adds its own)
    unit = ("momentum",)  # ... and in [0, 1)

    def __init__(self, cfg, train: tuple, test: tuple, info: DatasetInfo, *, flip: bool, options: dict,
                 batch_size: int, seed: int, epochs: int, dtype, xp: ModuleType = np,
                 eval_batch_size: int = 500):
        self.cfg, self.info, self.options = cfg, info, dict(options)
        check_options(self.options, self.positive, self.unit)
        self.train_images, self.train_labels = train
        self.test_images, self.test_labels = test
        self.views = MultiCrop(local_views=self.options["local_views"], flip=flip)
        self.spec = head_spec(cfg, self.options, self.prototypes)
        self.batch_size, self.seed = batch_size, seed
        self.dtype, self.xp, self.eval_batch_size = dtype, xp, eval_batch_size
        self.steps_per_epoch = num_batches(len(self.train_labels), batch_size)
        self.total_steps = epochs * self.steps_per_epoch
        self.teacher, self.updates, self.pending = None, 0, None

    def batches(self, epoch: int, start: int = 0):
        """Host batches of uint8 images of epoch ``epoch`` from batch ``start`` on."""
        order = epoch_order(len(self.train_images), seed=self.seed, epoch=epoch)
        for b in range(start, self.steps_per_epoch):
            yield self.train_images[order[b * self.batch_size:(b + 1) * self.batch_size]]

    def _forward(self, params: dict, teacher: dict, images, rng):
        """The student's and the teacher's head outputs on the views of ``images`` (uint8 on the device)."""
        x = normalize(images, self.info.mean, self.info.std, dtype=self.dtype)  # B,C,H,W
        views = multicrop(x, self.views, rng)
        xp = array_module(x)
        h_s, backbone = represent(params, xp.concatenate(views, axis=0), self.cfg)  # (V·B, d)
        out_s, head = dino_head.forward(h_s, params)
        h_t, _ = represent(teacher, xp.concatenate(views[:self.views.global_views], axis=0), self.cfg)  # (G·B, d)
        out_t, _ = dino_head.forward(h_t, teacher)
        return out_s, out_t, (backbone, head)

    def loss_and_grads(self, params: dict, batch, step_rng, part: tuple = (0, 1)):
        if part[1] != 1:
            raise DistributedError("self-distillation trains on one rank (its centre and k-NN bank are not all-reduced); "
                                   "run it without --distributed")
        if self.teacher is None:  # a fresh run: the teacher starts as the student (DINO)
            self.teacher = {name: value.copy() for name, value in params.items()}
        images = to_device(batch, self.xp)
        out_s, out_t, (backbone, head) = self._forward(params, self.teacher, images, step_rng)
        loss, dout_s, metrics, self.pending = self.objective(out_s, out_t, self.updates)
        dh, grads = dino_head.backward(dout_s, head)
        grads.update(represent_backward(dh, backbone))
        return loss, grads, {**metrics, "loss": loss, "n": len(images)}

    def after_update(self, params: dict, step: int) -> None:
        """After the loop's update ``step`` (updates taken): the teacher's EMA and the objective's pending state."""
        m = cosine_momentum(step - 1, self.total_steps, self.options["momentum"])
        for name, value in self.teacher.items():  # θ_t ← m θ_t + (1 − m) θ_s
            value *= m
            value += (1.0 - m) * params[name]
        self.commit(self.pending)
        self.pending, self.updates = None, step

    def commit(self, pending) -> None:
        """Apply what the objective computed for after the update (nothing here)."""

    def state(self) -> dict:
        """The arrays the checkpoint keeps: ``teacher/<name>`` and ``updates``."""
        if self.teacher is None:
            return {}
        return {**{f"teacher/{name}": value for name, value in self.teacher.items()},
                "updates": np.asarray(self.updates)}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state`'s arrays (an empty dict: a run saved before its first step)."""
        if not state:
            return
        self.teacher = {name[len("teacher/"):]: self.xp.asarray(value, dtype=self.dtype)
                        for name, value in state.items() if name.startswith("teacher/")}
        self.updates = int(state["updates"])

    def evaluate(self, params: dict, part: tuple = (0, 1)) -> dict:
        """The objective on fixed views, k-NN accuracy and the features' coding rate on the test split."""
        xp = array_module(*params.values())
        teacher = self.teacher if self.teacher is not None else params
        total, n, features = 0.0, 0, []
        for lo in range(0, len(self.test_images), self.eval_batch_size):
            images = to_device(self.test_images[lo:lo + self.eval_batch_size], xp)
            (entropy,) = np.random.SeedSequence([self.seed, EVAL_STREAM, lo]).generate_state(1, np.uint64)
            out_s, out_t, _ = self._forward(params, teacher, images, default_rng(int(entropy) >> 1, xp))
            loss, _, _, _ = self.objective(out_s, out_t, self.updates)
            total += float(loss) * len(images)
            n += len(images)
            features.append(represent(params, normalize(images, self.info.mean, self.info.std, dtype=self.dtype),
                                      self.cfg)[0])
        if not n:
            return means({"loss": 0.0, "knn_accuracy": 0.0, "feature_rate": 0.0}, 0)
        features = xp.concatenate(features, axis=0)  # (N, d)
        bank = self.train_images[:self.options["knn_bank"]]
        predicted = knn_predict(image_features(params, bank, self.cfg, self.info, self.dtype, self.eval_batch_size),
                                to_device(self.train_labels[:len(bank)], xp), features, self.cfg.num_classes,
                                self.options["knn_k"], self.options["knn_temperature"])
        correct = int((predicted == to_device(self.test_labels, xp)).sum())
        rate = float(coding_rate(l2_normalize_forward(features)[0], RATE_EPS))
        return means({"loss": total, "knn_accuracy": correct, "feature_rate": rate * n}, n)

