"""How good are the approximations behind a CRATE layer? Measured on a layer's real features.

Compression (CRATE JMLR eqs. 10-14, :mod:`whitebox.compression_step`). For tokens ``Z`` (B, N, d)
and subspaces ``U`` (K, d, p), each method proposes ``Z⁺``:

* ``"exact"``: the gradient step ``Z − κ ∇_Z Rc(Z | U)``;
* ``"neumann"``: its first-order Neumann approximation ``(I + βM)⁻¹ ≈ I − βM`` (error O(β²);
  the property test of that rate is ``tests/test_compression_step.py``);
* ``"tied"``: the paper's softmax MSSA ``(1 − κβ) Z + κβ Σ_k softmax(s P_k P_kᵀ) P_k U_kᵀ``,
  with the model's temperature ``s = p^(-1/2)`` unless ``scale`` is given (the paper writes 1);
* ``"published"`` (when the layer's output projection is given): ``Z + MSSA(Z)`` with the learned
  ``W_out`` (and ``b_out``) of the published code in place of ``[U_1 … U_K]``; it has no κ.

:func:`compare_steps` reports, per method, the compression term before and after
(``rc_before``, ``rc_after``, ``rc_change = rc_after / rc_before − 1``, all at the same ε as the
step), the step's length ``‖Z⁺ − Z‖ / ‖Z‖`` (``step``), its cosine with the descent direction
``−∇Rc`` (``cos_descent``), and its distance to each other method, relative to the exact step's
length: ``dist_exact = ‖Z⁺ − Z⁺_exact‖ / ‖Z⁺_exact − Z‖`` (likewise ``dist_neumann``,
``dist_tied``). All are per image, averaged. :func:`sweep` runs it over a grid of κ and ε.

On a real layer (:func:`sweep_layer`), ``Z`` is ``LN_attn^ℓ(Z^ℓ)``, the tokens the layer's MSSA
reads (:func:`whitebox.analysis.layerwise.attention_input`), and ``U = U^ℓ`` from its ``qkv`` weight. Every
method is applied to those same tokens; in the model the published branch is added to the
un-normalised ``Z^ℓ`` instead.

Sparse coding (docs/reference.md §4). ISTA / ODL take proximal-gradient steps on the non-negative LASSO
``½‖Y − D A‖² + λ‖A‖₁`` of the LayerNorm'ed midpoint ``Y = LN(Z^{ℓ+½})``.
:func:`lasso_through_layers` evaluates that objective at every iterate ``A_0, …, A_T`` of every
layer (CRATE: ``A_0 = Y``, one step; CRATE-alpha: ``A_0 = 0``, two), with ``η ‖D‖₂²``: the standard
guarantee that no step increases the objective needs ``η ‖D‖₂² ≤ 1``, which a trained dictionary
need not satisfy. (CRATE's start ``A_0 = Y`` may have negative entries: its objective is evaluated
with ``‖A‖₁ = Σ|a|``, although it is outside the constraint ``A ≥ 0``.)
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

from ..backend import array_module, to_host
from ..compression_step import gradient_step, neumann_step, stack_subspaces, tied_mssa_step
from ..layers.mssa import mssa_forward
from ..layers.odl import odl_forward
from ..rate import compression_rate, compression_rate_grad
from .layerwise import attention_input, forward_stages, layer_subspaces, model_of

METHODS = ("exact", "neumann", "tied", "published")
DEFAULT_KAPPAS = (0.01, 0.03, 0.1, 0.3, 1.0)
DEFAULT_EPSS = (0.5, 2.0, 8.0)


def compression_steps(Z, U, kappa: float, eps: float, *, scale: float | None = None, W_out=None, b_out=None) -> dict:
    """``{method: Z⁺}`` for Z (B, N, d), U (K, d, p); ``"published"`` only when ``W_out`` (d, K p) is given."""
    p = U.shape[-1]
    s = p**-0.5 if scale is None else scale
    steps = {
        "exact": gradient_step(Z, U, kappa, eps),
        "neumann": neumann_step(Z, U, kappa, eps),
        "tied": tied_mssa_step(Z, U, kappa, eps, s),
    }
    if W_out is not None:
        branch, _ = mssa_forward(Z, stack_subspaces(U), W_out, b_out, heads=U.shape[0])  # s = p^(-1/2), as published
        steps["published"] = Z + branch
    return steps


def compare_steps(Z, U, kappa: float, eps: float, *, scale: float | None = None, W_out=None, b_out=None) -> list[dict]:
    """One row per method (module docstring for the columns), averaged over the B images of Z."""
    xp = array_module(Z)
    steps = compression_steps(Z, U, kappa, eps, scale=scale, W_out=W_out, b_out=b_out)
    grad, _ = compression_rate_grad(Z, U, eps)  # (B, N, d)
    before = compression_rate(Z, U, eps)  # (B,)

    def norm(a):
        return xp.sqrt((a * a).sum(axis=(-2, -1)))  # (B,)

    exact_length = norm(steps["exact"] - Z)
    rows = []
    for method, Zp in steps.items():
        delta = Zp - Z
        after = compression_rate(Zp, U, eps)
        cos = -(delta * grad).sum(axis=(-2, -1)) / (norm(delta) * norm(grad))
        row = {"kappa": kappa, "eps": eps, "method": method,
               "rc_before": _mean(before), "rc_after": _mean(after), "rc_change": _mean(after / before - 1),
               "step": _mean(norm(delta) / norm(Z)), "cos_descent": _mean(cos)}
        for other in ("exact", "neumann", "tied"):
            row[f"dist_{other}"] = _mean(norm(Zp - steps[other]) / exact_length)
        rows.append(row)
    return rows


def sweep(Z, U, kappas=DEFAULT_KAPPAS, epss=DEFAULT_EPSS, **options) -> list[dict]:
    """:func:`compare_steps` for every (κ, ε) of the grid: a list of rows (a table)."""
    return [row for eps in epss for kappa in kappas for row in compare_steps(Z, U, kappa, eps, **options)]


def layer_compression_inputs(params: dict, images, cfg, layer: int, model: ModuleType | None = None):
    """``(X, U, W_out, b_out)`` of layer ``ℓ`` on real images: ``X = LN_attn^ℓ(Z^ℓ)`` (B, N, d) and
    ``U^ℓ`` in float64, and the layer's output projection (None where the model has none)."""
    Z, _ = forward_stages(params, images, cfg, model)
    X = attention_input(Z[2 * layer], params, layer, cfg)
    xp = array_module(X)
    f64 = xp.float64
    pre = f"layers.{layer}.attn.out."
    W_out, b_out = params.get(pre + "weight"), params.get(pre + "bias")
    return (X.astype(f64), layer_subspaces(params, layer, cfg).astype(f64),
            None if W_out is None else W_out.astype(f64), None if b_out is None else b_out.astype(f64))


def sweep_layer(params: dict, images, cfg, layer: int, *, model: ModuleType | None = None, kappas=DEFAULT_KAPPAS,
                epss=DEFAULT_EPSS, scale: float | None = None) -> list[dict]:
    """:func:`sweep` on layer ``ℓ``'s real tokens and subspaces, with its published branch."""
    X, U, W_out, b_out = layer_compression_inputs(params, images, cfg, layer, model)
    rows = sweep(X, U, kappas, epss, scale=scale, W_out=W_out, b_out=b_out)
    return [{"layer": layer, **row} for row in rows]


# -- sparse coding ----------------------------------------------------------------------------

def lasso_objective(Y, D, A, lambd: float):
    """``½‖Y − D A‖² + λ‖A‖₁`` per image: Y (B, N, d), D (d, m), A (B, N, m), tokens as rows → (B,)."""
    xp = array_module(Y)
    residual = Y - A @ D.T  # (B, N, d)
    return 0.5 * (residual * residual).sum(axis=(-2, -1)) + lambd * xp.abs(A).sum(axis=(-2, -1))


def proximal_iterates(params: dict, images, cfg, model: ModuleType | None = None) -> list[dict]:
    """Per layer: ``{"Y", "D", "codes": [A_0, …, A_T], "step", "lambd"}`` on real images, in float64.

    ``Y = LN(Z^{ℓ+½})`` is the layer's sparse-coding input and ``D`` its dictionary, both as the model
    reports them (``layer_features``' ``sparse_inputs``, ``layer_dictionary``); the iterates are
    recomputed with :func:`whitebox.layers.odl.odl_forward`: ``odl_steps`` proximal steps
    (CRATE-alpha) or CRATE's one ISTA step, from ``A_0 = Y`` (``ista_start="input"``, CRATE) or
    ``A_0 = 0``. ``A_T`` is the layer's code (``layer_features``' ``codes``).
    """
    model = model or model_of(cfg)
    _, cache = model.forward(params, images, cfg, keep_features=True)
    feats = model.layer_features(cache)
    if hasattr(cfg, "sparse"):  # the token model: its overcomplete block from A_0 = 0, or CRATE's ISTA
        steps, start_input = (cfg.sparse_steps, False) if cfg.sparse == "overcomplete" else (1, True)
    else:
        steps, start_input = getattr(cfg, "odl_steps", 1), getattr(cfg, "ista_start", "input") == "input"
    layers = []
    for ell, Y in enumerate(feats["sparse_inputs"]):
        xp = array_module(Y)
        Y, D = Y.astype(xp.float64), model.layer_dictionary(params, ell, cfg).astype(xp.float64)
        _, odl = odl_forward(Y, D, None, steps=steps, step=cfg.ista_step, lambd=cfg.ista_lambd,
                             start=Y if start_input else None)
        codes = [xp.zeros(Y.shape[:-1] + D.shape[1:], dtype=Y.dtype) if a is None else a for a in odl.codes]
        layers.append({"Y": Y, "D": D, "codes": codes, "step": cfg.ista_step, "lambd": cfg.ista_lambd})
    return layers


def lasso_through_layers(params: dict, images, cfg, model: ModuleType | None = None) -> list[dict]:
    """The LASSO objective at each iterate ``A_t`` of each layer: rows ``layer, step t, objective``
    (mean over images), ``change`` (from ``A_{t−1}``), ``decreased`` (fraction of images where it did
    not increase), ``eta_L = η ‖D‖₂²`` (descent is guaranteed when ≤ 1)."""
    rows = []
    for ell, it in enumerate(proximal_iterates(params, images, cfg, model)):
        eta_L = it["step"] * float(np.linalg.norm(to_host(it["D"]), 2) ** 2)
        previous = None
        for t, A in enumerate(it["codes"]):
            value = lasso_objective(it["Y"], it["D"], A, it["lambd"])  # (B,)
            row = {"layer": ell, "step": t, "objective": _mean(value), "change": math.nan, "decreased": math.nan,
                   "eta_L": eta_L}
            if previous is not None:
                row["change"] = _mean(value - previous)
                row["decreased"] = _mean(value <= previous)
            rows.append(row)
            previous = value
    return rows


# -- tables -------------------------------------------------------------------------

def table_markdown(rows: list[dict]) -> str:
    """A markdown table of rows (dicts with the same keys); floats with 4 significant digits."""
    if not rows:
        return "(no rows)\n"
    keys = list(rows[0])

    def cell(v):
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _mean(values) -> float:
    return float(to_host(values).astype(np.float64).mean())
