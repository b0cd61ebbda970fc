"""Seeing inside: compression, coding rate, sparse rate reduction and sparsity, layer by layer.

A CRATE layer is meant to be one step of alternating minimisation of the sparse rate reduction
(CRATE JMLR eq. 2, CRATE-alpha eq. 1)

.. math::

    L_srr(Z) = Rc(Z | U_[K]) − R(Z) + λ ‖Z‖₁

so on real images one can ask, layer by layer: does the compression step (MSSA) lower ``Rc``
against the layer's own subspaces ``U^ℓ``, does the sparse-coding step (ISTA / ODL) produce
sparse codes, and how do these numbers differ between a freshly initialised and a trained model?
:func:`measure_layerwise` answers with a :class:`LayerwiseMeasurement`;
:func:`whitebox.figures.plot_layerwise` draws it against depth.

Stages
------
A model of depth ``L`` is measured at ``2L + 1`` stages, in order of depth ``t``::

    Z^0  Z^½  Z^1  Z^{1½}  …  Z^{L−1}  Z^{L−½}  Z^L
    (embedded tokens, the input of layer 0; the midpoint Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ));
     Z^{ℓ+1}, the output of layer ℓ; Z^L, the last layer's output)

Stage ``t`` is measured against the subspaces (and LayerNorm) of layer ``ℓ(t) = min(⌊t⌋, L−1)``:
``Z^ℓ`` against the layer that is about to compress it, ``Z^{ℓ+½}`` against the layer that has just
compressed it, ``Z^L`` against the last layer. So ``Rc(Z^ℓ) → Rc(Z^{ℓ+½})`` is the effect of one
compression step with ``U`` held fixed, the claim of the derivation; the step ``Z^{ℓ+½} → Z^{ℓ+1}``
also changes ``U`` (to the next layer's), so it mixes the sparse step with a change of yardstick.
The subspaces are ``U^ℓ = layers.mssa.subspaces(W_qkv^ℓ, heads)``, read off the layer's ``qkv``
weight, which is NOT orthonormal after training (nor at initialisation).

Sparsity is that of the layer's sparse codes: the ISTA output ``Z^{ℓ+1}`` of CRATE, the codes
``A_T`` (``C d`` wide) of CRATE-alpha's ODL block, the GELU activations of a transformer block's
MLP; the fraction of inactive units (:func:`code_sparsity`) over all tokens (cls included) and
features, per image. It is attached to the stage ``Z^{ℓ+1}`` and is NaN at
``Z^0`` and at the midpoints.

The transformer block (ViT, GPT: ``block="transformer"``)
--------------------------------------------------------
Its attention has three free maps ``W_q, W_k, W_v`` and no subspaces ``U`` against which its
step descends ``Rc``; any one of them taken as ``U`` would be a choice of this library, not of the
model, and the numbers would change with that choice. So ``rc`` and ``srr`` are NaN for it
(:func:`whitebox.models.checks.is_transformer`), in both conventions. What is defined for both
blocks and compares them on the same footing: the coding rate ``R`` of the LayerNorm'ed tokens
(``X = LN_attn^ℓ(Z)``, the input of the layer's attention either way), ``‖X‖₁``, the sparsity of
the codes (the GELU activations ``(B, N, r d)``: see :func:`code_sparsity`) and the attention maps.

The two measurement conventions
-------------------------------
``convention="whitebox"`` (the default):
    the features are what the layer's subspaces see, ``X = LN_attn^ℓ(Z)``: the layer's own
    pre-attention LayerNorm with its learned affine (``features="raw"`` measures ``X = Z``
    instead). Per image (``N`` tokens), with ε = ``eps`` (default 0.5; ε itself, not ε²) and
    λ = ``lambd`` (default: the model's ``ista_lambd``, 0.1):

    * ``rc``  = ``Rc(X | U^ℓ) = Σ_k ½ logdet(I_p + p/(Nε²) (X U_k)ᵀ(X U_k))`` (:func:`rate.compression_rate`)
    * ``r``   = ``R(X) = ½ logdet(I_d + d/(Nε²) XᵀX)``          (:func:`rate.coding_rate`)
    * ``l1``  = ``‖X‖₁``, and ``srr = rc − r + λ l1``            (:func:`rate.sparse_rate_reduction`)

    Why LayerNorm'ed: ``U^ℓ`` only ever acts on ``LN_attn^ℓ(·)``, so ``Rc(· | U^ℓ)`` of anything
    else has no meaning for the model; and the LayerNorm fixes each token's scale, so a fixed ε
    means the same precision at every depth. The raw ``Z^ℓ`` of a residual stream grows in norm
    with depth, and with a fixed ε a growing norm alone raises every rate (``logdet`` grows like
    ``log ‖Z‖²``), which would be mistaken for "less compression".

``convention="published"`` (the measurement code published with PyTorch CRATE, docs/reference.md §5,
``vis_utils/coding_rate.py``):
    per head, the ``qkv`` features of the LayerNorm'ed input, ``P_k = LN_attn^ℓ(Z) U_k`` (N, p),
    each token (row) scaled to unit norm, ``P̂_k``; ``rc = Σ_k ½ logdet(I_N + p/(N·0.01) P̂_k P̂_kᵀ)``.
    The published class is ``CodingRate(eps=0.01)`` and computes ``scalar = p / (m * eps)``: its
    ``eps`` is ε², so in this library's convention ε = 0.1 (:data:`PUBLISHED_EPS`), and
    ``rc = Σ_k coding_rate(P̂_k, 0.1)``. It measures only that number and the sparsity; ``r``,
    ``l1`` and ``srr`` are NaN. (The published script reports layer inputs only, i.e. the
    stages ``Z^0 … Z^{L−1}``, plotted at layer index ``ℓ + 1``; here every stage is measured.)

How they differ: (1) normalisation: whitebox keeps each token's length (as set by the
LayerNorm's affine and by ``U``), published rescales every projected token to unit length, so
only directions count: with ``Σ_i σ_i(P̂_k)² = N`` its ``rc`` is at most
``K · ½ s log(1 + p/(s ε²))``, ``s = min(N, p)``, whatever the scale of the weights;
(2) precision: ε = 0.5 vs ε = 0.1 (and the published code's name ``eps`` is ε²); (3) scope:
whitebox also reports ``R`` and the whole objective, published only the compression term. A
trained model can change ``‖U_k‖`` freely, which moves the whitebox ``rc`` and leaves the published
one unchanged (the published one still moves with the directions of the projected tokens):
compare trends, not values.

Values are per image, then averaged over the images (``values``), with their standard deviation
(``stds``); rates are computed in float64 whatever the model's dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import ModuleType
from typing import NamedTuple

import numpy as np

from ..backend import array_module, resolve_device, to_host
from ..data import dataset_info, load_dataset, normalize
from ..layers.layernorm import LAYERNORM_EPS, layernorm_forward
from ..models.checks import is_transformer
from ..models.registry import model_of
from ..rate import coding_rate, compression_rate, sparse_rate_reduction
from ..train import LoadedRun, load_run
from ..train.config import TEXT_TASKS

CONVENTIONS = ("whitebox", "published")
FEATURES = ("ln", "raw")
DEFAULT_EPS = 0.5
PUBLISHED_EPS = 0.1  # ε of the published CodingRate(eps=0.01), whose eps is ε²
QUANTITIES = ("rc", "r", "l1", "srr", "sparsity")
LABELS = {
    "rc": "compression Rc(Z | U^ℓ)",
    "r": "coding rate R(Z)",
    "l1": "‖Z‖₁",
    "srr": "L_srr = Rc − R + λ‖Z‖₁",
    "sparsity": "sparsity of the codes (fraction of zeros)",
}


class Stage(NamedTuple):
    name: str  # "Z^0", "Z^0.5", …
    depth: float  # t
    layer: int  # ℓ(t) = min(⌊t⌋, L − 1): whose LayerNorm and subspaces measure the stage


def stages(depth: int) -> list[Stage]:
    """The ``2L + 1`` stages ``Z^0, Z^½, …, Z^L`` of a model with ``L = depth`` layers."""
    out = []
    for i in range(2 * depth + 1):
        t = i / 2
        out.append(Stage(f"Z^{t:g}", t, min(int(t), depth - 1)))
    return out


def attention_norm_eps(cfg) -> float:
    """The eps of the model's pre-attention LayerNorms (CRATE 1e-5, CRATE-alpha ``norm_eps``)."""
    return getattr(cfg, "norm_eps", LAYERNORM_EPS)


def layer_subspaces(params: dict, layer: int, cfg):
    """``U^ℓ`` (K, d, p), read off layer ``ℓ``'s ``qkv`` weight ``[U_1 … U_K]ᵀ`` by the model itself."""
    return model_of(cfg).layer_subspaces(params, layer, cfg)


def attention_input(Z, params: dict, layer: int, cfg):
    """``LN_attn^ℓ(Z)``: the tokens as layer ``ℓ``'s MSSA sees them (same LayerNorm, same eps)."""
    pre = f"layers.{layer}.attn_norm."
    y, _ = layernorm_forward(Z, params[pre + "weight"], params[pre + "bias"], attention_norm_eps(cfg))
    return y


def forward_stages(params: dict, images, cfg, model: ModuleType | None = None):
    """One forward pass; returns ``(Z, codes)``: the ``2L + 1`` stage tokens (each (B, N, d), in
    :func:`stages` order) and the ``L`` layers' sparse codes (B, N, d) or (B, N, C d)."""
    model = model or model_of(cfg)
    _, cache = model.forward(params, images, cfg, keep_features=True)
    feats = model.layer_features(cache)
    Z = [feats["inputs"][0]]
    for mid, out in zip(feats["midpoints"], feats["outputs"]):  # Z^{ℓ+1} is layer ℓ's output
        Z += [mid, out]
    return Z, feats["codes"]


def measured_features(Z, params: dict, layer: int, cfg, features: str = "ln"):
    """The features a stage is measured on, in float64: ``LN_attn^ℓ(Z)`` (``"ln"``) or ``Z`` (``"raw"``)."""
    X = attention_input(Z, params, layer, cfg) if features == "ln" else Z
    return X.astype(array_module(X).float64)


def published_compression(X, W_qkv, heads: int, eps: float = PUBLISHED_EPS):
    """The published measurement: ``Σ_k R(P̂_k)`` with ``P̂_k`` the unit-normalised rows of ``X U_k``.

    X (B, N, d) (already LayerNorm'ed), W_qkv (K p, d) → (B,). ``eps`` is ε (0.1 reproduces the
    published ``CodingRate(eps=0.01)``, whose ``eps`` is ε²).
    """
    xp = array_module(X)
    B, N, _ = X.shape
    P = (X @ W_qkv.T.astype(X.dtype)).reshape(B, N, heads, -1).transpose(0, 2, 1, 3)  # (B, K, N, p)
    P = P / xp.linalg.norm(P, axis=-1, keepdims=True)
    return coding_rate(P, eps).sum(axis=-1)  # (B,)


def code_sparsity(codes):
    """Fraction of inactive units per image, ``codes ≤ 0``: codes (B, N, m) → (B,).

    For CRATE's ReLU codes (never negative) these are exactly the zeros; for the GELU activations of
    a transformer block, which are never exactly zero, they are the units with a negative
    pre-activation (``GELU(x) ≤ 0`` exactly when ``x ≤ 0``), where ReLU would have given a zero.
    """
    return (codes <= 0).mean(axis=(-2, -1))


@dataclass(frozen=True)
class LayerwiseMeasurement:
    """Per-stage averages over images (``values``) and standard deviations (``stds``).

    ``values[q][i]`` is quantity ``q`` (one of :data:`QUANTITIES`) at stage ``i``, NaN where the
    convention does not define it.
    """

    convention: str
    features: str
    eps: float
    lambd: float
    stages: tuple  # names
    depth: tuple  # t per stage
    layer: tuple  # ℓ(t) per stage
    values: dict
    stds: dict
    n_images: int
    label: str = ""
    meta: dict = field(default_factory=dict)

    def at(self, quantity: str, name: str) -> float:
        """The value of ``quantity`` at the stage called ``name`` (e.g. ``"Z^1.5"``)."""
        return self.values[quantity][self.stages.index(name)]

    def inputs(self, quantity: str) -> list[float]:
        """``quantity`` at the integer stages ``Z^0 … Z^L``."""
        return [v for v, t in zip(self.values[quantity], self.depth) if t == int(t)]

    def to_dict(self) -> dict:
        def clean(values):
            return [None if v is None or math.isnan(v) else v for v in values]

        return {"convention": self.convention, "features": self.features, "eps": self.eps, "lambd": self.lambd,
                "label": self.label, "n_images": self.n_images, "meta": self.meta,
                "stages": [{"name": s, "depth": t, "layer": ell}
                           for s, t, ell in zip(self.stages, self.depth, self.layer)],
                "values": {q: clean(v) for q, v in self.values.items()},
                "stds": {q: clean(v) for q, v in self.stds.items()}}

    @classmethod
    def from_dict(cls, data: dict) -> "LayerwiseMeasurement":
        def nan(values):
            return [math.nan if v is None else v for v in values]

        st = data["stages"]
        return cls(data["convention"], data["features"], data["eps"], data["lambd"],
                   tuple(s["name"] for s in st), tuple(s["depth"] for s in st), tuple(s["layer"] for s in st),
                   {q: nan(v) for q, v in data["values"].items()}, {q: nan(v) for q, v in data["stds"].items()},
                   data["n_images"], data.get("label", ""), data.get("meta", {}))

    def to_markdown(self) -> str:
        """A table: one row per stage, one column per quantity (mean ± std over images)."""
        quantities = [q for q in QUANTITIES if any(not math.isnan(v) for v in self.values[q])]
        head = f"{self.label + ': ' if self.label else ''}convention {self.convention}, features {self.features}, " \
               f"ε = {self.eps:g}, λ = {self.lambd:g}, {self.n_images} images\n\n"
        lines = ["| stage | U of layer | " + " | ".join(quantities) + " |",
                 "|---|---|" + "---|" * len(quantities)]
        for i, (name, ell) in enumerate(zip(self.stages, self.layer)):
            cells = [_cell(self.values[q][i], self.stds[q][i], q) for q in quantities]
            lines.append(f"| {name} | {ell} | " + " | ".join(cells) + " |")
        return head + "\n".join(lines) + "\n"


def _cell(value: float, std: float, quantity: str) -> str:
    if math.isnan(value):
        return "–"
    if quantity == "sparsity":
        return f"{value:.3f} ± {std:.3f}"
    return f"{value:.4g} ± {std:.2g}"


def measure_layerwise(params: dict, images, cfg, *, model: ModuleType | None = None, convention: str = "whitebox",
                      eps: float | None = None, lambd: float | None = None, features: str = "ln",
                      chunk: int = 256, label: str = "") -> LayerwiseMeasurement:
    """Measure every stage of the model on ``images`` (B, C, H, W), normalised as in training.

    Parameters
    ----------
    params, cfg : a CRATE or CRATE-alpha model (``model`` defaults to the Config's module).
    convention : ``"whitebox"`` or ``"published"`` (module docstring).
    eps : ε; default 0.5 (whitebox) or 0.1 (published, = its ``eps=0.01`` read as ε²).
    lambd : λ of ``srr``; default the model's ``ista_lambd``.
    features : ``"ln"`` (``LN_attn^ℓ(Z)``, the default) or ``"raw"`` (``Z``); whitebox convention only.
    chunk : images per forward pass.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}, got {features!r}")
    if convention == "published" and features != "ln":
        raise ValueError("the published convention measures the LayerNorm'ed qkv features (features='ln')")
    eps = float(eps if eps is not None else (DEFAULT_EPS if convention == "whitebox" else PUBLISHED_EPS))
    lambd = float(lambd if lambd is not None else cfg.ista_lambd)
    model = model or model_of(cfg)
    plan = stages(cfg.depth)
    per_image = {q: [[] for _ in plan] for q in QUANTITIES}
    for lo in range(0, len(images), chunk):
        Z, codes = forward_stages(params, images[lo:lo + chunk], cfg, model)
        for i, stage in enumerate(plan):
            values = _measure_stage(Z[i], params, stage, cfg, convention, eps, lambd, features)
            if stage.depth >= 1 and stage.depth == int(stage.depth):
                values["sparsity"] = to_host(code_sparsity(codes[int(stage.depth) - 1]))
            for q in QUANTITIES:
                per_image[q][i].append(values.get(q, np.full(len(Z[i]), np.nan)))
    means, stds = {}, {}
    for q in QUANTITIES:
        columns = [np.concatenate(v) for v in per_image[q]]
        means[q] = [float(c.mean()) for c in columns]
        stds[q] = [float(c.std()) for c in columns]
    return LayerwiseMeasurement(convention, features, eps, lambd, tuple(s.name for s in plan),
                                tuple(s.depth for s in plan), tuple(s.layer for s in plan), means, stds,
                                len(images), label)


def _measure_stage(Z, params, stage: Stage, cfg, convention, eps, lambd, features) -> dict:
    """Per-image values (host arrays (B,)) of one stage."""
    X = measured_features(Z, params, stage.layer, cfg, features)  # (B, N, d), float64
    xp = array_module(X)
    if is_transformer(cfg):  # no subspaces U: Rc and the objective are not defined (module docstring)
        return {} if convention == "published" else {"r": to_host(coding_rate(X, eps)),
                                                      "l1": to_host(xp.abs(X).sum(axis=(-2, -1)))}
    if convention == "published":
        W_qkv = params[f"layers.{stage.layer}.attn.qkv"]
        return {"rc": to_host(published_compression(X, W_qkv, cfg.heads, eps))}
    U = layer_subspaces(params, stage.layer, cfg).astype(X.dtype)  # (K, d, p)
    return {
        "rc": to_host(compression_rate(X, U, eps)),
        "r": to_host(coding_rate(X, eps)),
        "l1": to_host(xp.abs(X).sum(axis=(-2, -1))),
        "srr": to_host(sparse_rate_reduction(X, U, eps, lambd)),
    }


# -- from a checkpoint ------------------------------------------------------------------------

def load_trained(path, *, device: str | None = None, tokens: bool = False) -> LoadedRun:
    """A classifier trained by ``whitebox train`` (:func:`whitebox.train.load_run`), on ``device``
    (default ``$WHITEBOX_DEVICE`` or the CPU, not the device the run trained on: measuring is cheap);
    with ``tokens``, a token model's run (lm, mlm, genre) too."""
    run = load_run(path, device=resolve_device(device))
    if run.config.task != "classification" and not (tokens and run.config.task in TEXT_TASKS):
        raise ValueError(f"{run.path} is a {run.config.task!r} run; this needs a classifier (crate, crate-alpha)")
    return run


def test_images(dataset: str, n: int, cfg, *, xp: ModuleType = np, dtype=np.float32, data_dir=None):
    """The first ``n`` test images of ``dataset``: ``(normalised (n, C, H, W) on xp, uint8 on the host, labels)``.

    The dataset's image shape must be the model's.
    """
    info = dataset_info(dataset)
    if (info.channels, info.image_size) != (cfg.channels, cfg.image_size):
        raise ValueError(f"{dataset} images are {info.channels}x{info.image_size}x{info.image_size}, the model "
                         f"expects {cfg.channels}x{cfg.image_size}x{cfg.image_size}")
    images, labels = load_dataset(dataset, "test", data_dir)
    raw, labels = images[:n], labels[:n]
    x = normalize(xp.asarray(raw) if xp is not np else raw, info.mean, info.std, dtype=dtype)
    return x, raw, labels


# -- findings ------------------------------------------------------------

def findings(m: LayerwiseMeasurement) -> dict:
    """The claims, counted: does each compression step lower ``rc`` (``Z^ℓ → Z^{ℓ+½}``, same ``U``),
    does ``rc`` fall from one layer input to the next, does sparsity rise from layer to layer?"""
    index = {name: i for i, name in enumerate(m.stages)}
    L = max(m.layer) + 1
    rc, r = m.values["rc"], m.values["r"]
    steps = [rc[index[f"Z^{ell + 0.5:g}"]] < rc[index[f"Z^{ell:g}"]] for ell in range(L)]
    inputs = [rc[index[f"Z^{ell:g}"]] for ell in range(L + 1)]
    sparsity = [m.values["sparsity"][index[f"Z^{ell:g}"]] for ell in range(1, L + 1)]
    return {
        "compression_steps_lowering_rc": sum(steps), "layers": L,
        "rc_falls_between_stages": sum(b < a for a, b in zip(inputs, inputs[1:])),
        "rc_first_last": (inputs[0], inputs[-1]),
        "r_first_last": (r[index["Z^0"]], r[index[f"Z^{L:g}"]]),
        "sparsity_rises": sum(b > a for a, b in zip(sparsity, sparsity[1:])),
        "sparsity_first_last": (sparsity[0], sparsity[-1]),
    }


def describe(results: dict) -> str:
    """A few lines for the terminal: the counts of :func:`findings` at initialisation and trained."""
    lines = []
    for convention, pair in results.items():
        m = pair["trained"]
        lines.append(f"{convention} convention (ε = {m.eps:g}, {m.n_images} test images, mean per image):")
        for which, meas in pair.items():
            f = findings(meas)
            L = f["layers"]
            sparsity = (f"sparsity {f['sparsity_first_last'][0]:.3f} -> {f['sparsity_first_last'][1]:.3f} "
                        f"(rose at {f['sparsity_rises']}/{L - 1} transitions)")
            if all(math.isnan(v) for v in meas.values["rc"]):  # the transformer block: no subspaces U
                r = f"R(Z^0) {f['r_first_last'][0]:.4g} -> R(Z^{L}) {f['r_first_last'][1]:.4g}; " \
                    if not math.isnan(f["r_first_last"][0]) else ""
                lines.append(f"  {which:<8} Rc against U: not defined for the transformer block; {r}{sparsity}")
                continue
            lines.append(
                f"  {which:<8} Rc(Z^0) {f['rc_first_last'][0]:.4g} -> Rc(Z^{L}) {f['rc_first_last'][1]:.4g}; "
                f"Rc fell at {f['rc_falls_between_stages']}/{L} layer transitions, "
                f"the compression step lowered it in {f['compression_steps_lowering_rc']}/{L} layers; "
                f"{sparsity}")
    return "\n".join(lines)


