"""Analytic FLOP counts of the CRATE and CRATE-alpha classifiers (matmuls only).

Convention
----------
* A matmul of an ``(m, k)`` by a ``(k, n)`` matrix costs ``2·m·n·k`` FLOPs (a multiply and an
  add per term). Every matmul of the forward pass is counted: the patch embedding, per layer the
  ``qkv`` projection, the scores ``w wᵀ``, ``attn · w``, the output projection (when there is
  one), the sparse-coding matmuls, and the head.
* Element-wise work (LayerNorm, softmax, ReLU, bias adds, residuals, the loss) is ignored: it is
  a few percent of the total at these sizes and its cost is memory traffic, not arithmetic.
* The backward pass is counted as twice the forward's matmul FLOPs (for ``y = x W`` it computes
  ``dx = dy Wᵀ`` and ``dW = xᵀ dy``), so a training step costs three forward passes. This
  includes the gradient for the images at the first matmul, which a framework may skip.

The ISTA step ``relu(x + η (x − x Dᵀ) D − η λ)`` is two ``(N, d) × (d, d)`` matmuls as whitebox
computes it; the published PyTorch code writes ``x + η (x D − (x Dᵀ) D)``, three. Both counts are
given: ``ista_matmuls=2`` (whitebox) and ``ista_matmuls=3`` (the official code). CRATE-alpha's ODL
block is four ``(N, d) × (d, C d)``-sized matmuls in both codes (``x D``, ``A₁ Dᵀ``,
``(A₁ Dᵀ − x) D``, ``A₂ D̂ᵀ``; :func:`odl_matmuls` counts the ablation variants).

Check against docs/reference.md §8: the official CRATE at image 32, patch 4, dim 192, depth 12, heads 3,
dim_head 64, 10 classes costs 327.7 MFLOP per image forward with the three-matmul ISTA
(``python benchmarks/flops.py`` prints it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Shape:
    """The hyper-parameters a FLOP count needs (any config with these attributes will do)."""

    image_size: int = 32
    patch_size: int = 4
    channels: int = 3
    num_classes: int = 10
    dim: int = 192
    depth: int = 12
    heads: int = 3
    dim_head: int = 64
    overcomplete: int = 4  # C, CRATE-alpha only
    odl_steps: int = 2  # T, CRATE-alpha only
    ista_start: str = "zero"  # A₀ = 0, CRATE-alpha only
    decode: bool = True  # output D̂ A_T, CRATE-alpha only


def mm(m: int, n: int, k: int) -> int:
    """FLOPs of an (m, k) @ (k, n) matmul."""
    return 2 * m * n * k


def forward_breakdown(cfg, model: str = "crate", ista_matmuls: int = 2) -> dict:
    """Forward FLOPs per image, by component: ``{name: flops}``.

    ``model`` is ``"crate"`` or ``"crate-alpha"``; ``ista_matmuls`` (2 or 3) only matters for CRATE.
    """
    if ista_matmuls not in (2, 3):
        raise ValueError("ista_matmuls must be 2 (whitebox) or 3 (the published PyTorch code)")
    d, depth, K, p = cfg.dim, cfg.depth, cfg.heads, cfg.dim_head
    n = (cfg.image_size // cfg.patch_size) ** 2  # patches
    N = n + 1  # tokens, with cls
    inner = K * p
    patch_dim = cfg.channels * cfg.patch_size**2
    out = {"patch_embed": mm(n, d, patch_dim)}
    project_out = not (K == 1 and p == d)
    layer = {
        "qkv": mm(N, inner, d),
        "scores": K * mm(N, N, p),
        "attn_v": K * mm(N, p, N),
        "out_proj": mm(N, d, inner) if project_out else 0,
    }
    if model == "crate":
        layer["ista"] = ista_matmuls * mm(N, d, d)
    elif model == "crate-alpha":
        layer["odl"] = odl_matmuls(cfg) * mm(N, cfg.overcomplete * d, d)
    else:
        raise ValueError(f"model must be 'crate' or 'crate-alpha', got {model!r}")
    for k, v in layer.items():
        out[k] = depth * v
    out["head"] = mm(1, cfg.num_classes, d)
    return out


def odl_matmuls(cfg) -> int:
    """(N, d) × (d, C d)-sized matmuls of one ODL block: ``x D`` for a first step from ``A₀ = 0``,
    ``A Dᵀ`` and ``r D`` for every other step, ``A_T D̂ᵀ`` to decode (4 for the published block)."""
    first = 1 if cfg.ista_start == "zero" else 2
    return first + 2 * (cfg.odl_steps - 1) + (1 if cfg.decode else 0)


def forward_flops(cfg, model: str = "crate", ista_matmuls: int = 2) -> int:
    """Forward FLOPs per image."""
    return sum(forward_breakdown(cfg, model, ista_matmuls).values())


def step_flops(cfg, batch: int, model: str = "crate", ista_matmuls: int = 2) -> dict:
    """FLOPs of a batch: ``{"forward", "backward", "step"}`` with backward = 2 × forward."""
    fwd = batch * forward_flops(cfg, model, ista_matmuls)
    return {"forward": fwd, "backward": 2 * fwd, "step": 3 * fwd}


def main() -> None:
    ref = Shape()
    for model, variants in (("crate", (2, 3)), ("crate-alpha", (2,))):
        for k in variants:
            parts = forward_breakdown(ref, model, k)
            total = sum(parts.values())
            label = f"{model}" + (f" (ISTA with {k} matmuls)" if model == "crate" else f" (C={ref.overcomplete})")
            print(f"{label}: {total / 1e6:.1f} MFLOP per image forward; batch 64 step "
                  f"{3 * 64 * total / 1e9:.1f} GFLOP")
            for name, v in parts.items():
                print(f"    {name:12s} {v / 1e6:9.2f} MFLOP  {100 * v / total:5.1f}%")


if __name__ == "__main__":
    main()
