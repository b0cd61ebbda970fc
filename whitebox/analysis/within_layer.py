"""Within-layer compression: does each layer's compression step lower ``Rc`` against its own subspaces?

The derivation (docs/reference.md §3; CRATE JMLR eqs. 11-14) makes layer ``ℓ``'s MSSA step an
approximate gradient step on ``Rc(· | U^ℓ)`` with the layer's own subspaces held fixed. The sound test
of that claim on a trained model compares the tokens just before and just after the step, against
the same yardstick ``U^ℓ`` and at the same scale:

.. math::

    Δ^ℓ = Rc(LN₀(Z^{ℓ+½}) | U^ℓ) − Rc(LN₀(Z^ℓ) | U^ℓ)        (negative: the step compressed)

Three choices, stated:

* ``LN₀`` is a LayerNorm without affine parameters (every token centred and scaled to unit
  variance): ``Rc`` is not scale-invariant (``Rc(sZ) → 0`` as ``s → 0``), and the residual update
  changes the tokens' energy, so both sides are compared at one per-token scale;
* ``U^ℓ`` is the model's ``layer_subspaces``, read off the ``qkv`` weight. Learned bases are not
  orthonormal, so the change is reported with the raw ``U^ℓ`` and with each ``U^ℓ_k`` replaced by an
  orthonormal basis of the same subspace (QR), for which ``Rc`` depends only on the subspaces;
* ε = 0.5 (ε itself, not ε²), per image, averaged over the images, in float64.

Alongside, the coding rate of the same tokens, ``R(LN₀(Z^ℓ))`` and ``R(LN₀(Z^{ℓ+½}))`` (``r_before``,
``r_after``): it needs no subspaces, so it is the one within-layer number that is defined for the
standard transformer block too (ViT, GPT: ``block="transformer"``), whose attention has free
``W_q, W_k, W_v`` and no ``U`` to measure ``Rc`` against; for that block the ``Rc`` columns and the
singular values are NaN ("not defined for the transformer block").

Comparing ``Rc`` *across* layers, each against a different, non-orthonormal ``U^ℓ``, compares
different yardsticks and cannot say whether a layer compressed; :mod:`.layerwise` measures that
trend separately. The sparse half is measured by the fraction of inactive units in the layer's codes
(:func:`whitebox.analysis.layerwise.code_sparsity`: the zeros of a ReLU code).
Lecture 7 derives the measurement and checks it against the definition of ``Rc``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..backend import array_module, to_host
from ..layers.layernorm import layernorm_forward
from ..models.checks import is_transformer
from ..models.registry import model_of
from ..rate import coding_rate, compression_rate
from .layerwise import code_sparsity

DEFAULT_EPS = 0.5
KEYS = ("rc_before", "rc_after", "rc_before_orth", "rc_after_orth", "sv_min", "sv_max", "sparsity", "r_before",
        "r_after")
RATES = ("rc_before", "rc_after", "rc_before_orth", "rc_after_orth", "r_before", "r_after")


def normalised(Z):
    """``LN₀(Z)``: LayerNorm without affine parameters, every token (row) centred and scaled to unit
    variance; Z (..., N, d)."""
    xp = array_module(Z)
    d = Z.shape[-1]
    return layernorm_forward(Z, xp.ones(d, dtype=Z.dtype), xp.zeros(d, dtype=Z.dtype))[0]


def orthonormalised(U):
    """Each basis ``U_k`` (K, d, p) replaced by an orthonormal basis of the same subspace (QR)."""
    xp = array_module(U)
    return xp.stack([xp.linalg.qr(U_k)[0] for U_k in U])


@dataclass(frozen=True)
class WithinLayerCompression:
    """Per layer (tuples of length depth): ``rc_before``/``rc_after`` = ``Rc(LN₀(Z^ℓ))`` and
    ``Rc(LN₀(Z^{ℓ+½}))`` against the raw ``U^ℓ`` (``_orth``: orthonormalised), the extreme singular
    values of ``U^ℓ``, the fraction of inactive units in the layer's codes, and ``R`` before and after
    (``r_before``, ``r_after``); means over ``n_images``. The ``Rc`` and ``σ`` fields are NaN for the
    transformer block (``defines_rc`` False)."""

    eps: float
    n_images: int
    label: str
    rc_before: tuple
    rc_after: tuple
    rc_before_orth: tuple
    rc_after_orth: tuple
    sv_min: tuple
    sv_max: tuple
    sparsity: tuple
    r_before: tuple
    r_after: tuple

    @property
    def depth(self) -> int:
        return len(self.rc_before)

    @property
    def defines_rc(self) -> bool:
        """False for the transformer block: no subspaces ``U`` to measure ``Rc`` against."""
        return not np.isnan(self.rc_before).all()

    def change(self, orthonormal: bool = False) -> np.ndarray:
        """``Δ^ℓ`` per layer (negative where the compression step lowered ``Rc``)."""
        suffix = "_orth" if orthonormal else ""
        return np.subtract(getattr(self, "rc_after" + suffix), getattr(self, "rc_before" + suffix))

    def lowered(self, orthonormal: bool = False) -> int:
        """The number of layers whose compression step lowered ``Rc``."""
        return int((self.change(orthonormal) < 0).sum())

    def summary(self) -> str:
        """One line: how many steps compressed, by how much, and the sparsity of the codes."""
        sparsity = f"inactive units in the codes {' '.join(f'{v:.2f}' for v in self.sparsity)}"
        if not self.defines_rc:
            r = np.subtract(self.r_after, self.r_before)
            return (f"{self.label}: Rc against the layer's subspaces is not defined for the transformer block; "
                    f"the attention step changed R by {' '.join(f'{v:+.2f}' for v in r)}; {sparsity}")
        raw, orth = self.change(), self.change(orthonormal=True)
        return (f"{self.label}: the compression step lowered Rc against its own subspaces in {self.lowered()}/"
                f"{self.depth} layers (raw U; {self.lowered(True)}/{self.depth} orthonormalised), "
                f"change per layer {' '.join(f'{v:+.2f}' for v in raw)} (orthonormalised "
                f"{' '.join(f'{v:+.2f}' for v in orth)}); {sparsity}")

    def to_dict(self) -> dict:
        return {"eps": self.eps, "n_images": self.n_images, "label": self.label,
                **{key: list(getattr(self, key)) for key in KEYS}}

    def to_markdown(self) -> str:
        lines = [f"{self.label}: ε = {self.eps:g}, {self.n_images} images, tokens LayerNorm'ed without affine\n",
                 "| layer | Rc before | Rc after | change | before (orth. U) | after (orth. U) | change (orth.) "
                 "| σ(U) | R before | R after | inactive codes |",
                 "|---|---|---|---|---|---|---|---|---|---|---|"]
        raw, orth = self.change(), self.change(orthonormal=True)
        for ell in range(self.depth):
            lines.append(f"| {ell} | {_cell(self.rc_before[ell])} | {_cell(self.rc_after[ell])} | "
                         f"{_cell(raw[ell], '+.3g')} | {_cell(self.rc_before_orth[ell])} | "
                         f"{_cell(self.rc_after_orth[ell])} | {_cell(orth[ell], '+.3g')} | "
                         f"{_cell(self.sv_min[ell], '.2f')}-{_cell(self.sv_max[ell], '.2f')} | "
                         f"{self.r_before[ell]:.4g} | {self.r_after[ell]:.4g} | {self.sparsity[ell]:.3f} |")
        if not self.defines_rc:
            lines.append("\nRc against the layer's subspaces: not defined for the transformer block (no U).")
        return "\n".join(lines) + "\n"


def _cell(value: float, spec: str = ".4g") -> str:
    return "–" if np.isnan(value) else format(value, spec)


def within_layer_compression(params: dict, images, cfg, *, model: ModuleType | None = None,
                             eps: float = DEFAULT_EPS, chunk: int = 256, label: str = "") -> WithinLayerCompression:
    """Measure ``Δ^ℓ`` of every layer on ``images`` (B, C, H, W), normalised as in training.

    ``model`` defaults to the module of ``cfg`` (any model with ``layer_features`` and
    ``layer_subspaces``: CRATE, CRATE-alpha; for the transformer block only ``R`` and the sparsity).
    """
    if not (isinstance(eps, (int, float)) and np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    model = model or model_of(cfg)
    xp = array_module(images)
    bases = []
    for ell in range(0 if is_transformer(cfg) else cfg.depth):
        U = model.layer_subspaces(params, ell, cfg).astype(xp.float64)  # (K, d, p)
        bases.append((U, orthonormalised(U)))
    rows = {key: [[] for _ in range(cfg.depth)] for key in (*RATES, "sparsity")}
    for lo in range(0, len(images), chunk):
        _, cache = model.forward(params, images[lo:lo + chunk], cfg, keep_features=True)
        feats = model.layer_features(cache)
        for ell in range(cfg.depth):
            before = normalised(feats["inputs"][ell].astype(xp.float64))  # (B, N, d)
            after = normalised(feats["midpoints"][ell].astype(xp.float64))
            rows["r_before"][ell].append(to_host(coding_rate(before, eps)))
            rows["r_after"][ell].append(to_host(coding_rate(after, eps)))
            if bases:  # CRATE's layers: Rc against the layer's own subspaces, raw and orthonormalised
                for suffix, basis in zip(("", "_orth"), bases[ell]):
                    rows["rc_before" + suffix][ell].append(to_host(compression_rate(before, basis, eps)))
                    rows["rc_after" + suffix][ell].append(to_host(compression_rate(after, basis, eps)))
            rows["sparsity"][ell].append(to_host(code_sparsity(feats["codes"][ell])))
    means = {key: tuple(float(np.concatenate(per_layer).mean()) if per_layer else math.nan for per_layer in value)
             for key, value in rows.items()}
    singular = [to_host(xp.linalg.svd(U, compute_uv=False)) for U, _ in bases] or [np.full(1, math.nan)] * cfg.depth
    return WithinLayerCompression(float(eps), len(images), label, sv_min=tuple(float(s.min()) for s in singular),
                                  sv_max=tuple(float(s.max()) for s in singular), **means)
