"""The published PyTorch CRATE and CRATE-alpha classifiers, re-written as a baseline for whitebox.

This file is benchmark and test scaffolding, not part of the library: whitebox never imports
PyTorch. The modules follow the official code line for line (PyTorch CRATE by the Ma lab, the
CRATE-alpha PyTorch inference port by UCSC-VLAA), so that

* their ``state_dict`` names are exactly the official ones (docs/reference.md §5 and §6), and
  ``whitebox.models.crate.to_torch_state_dict`` loads into them with ``strict=True``;
* their arithmetic is the published one, including the three-matmul ISTA
  ``relu(x + η (x W − (x Wᵀ) W) − η λ)`` that whitebox computes with two matmuls.

The only departure: ``einops.Rearrange`` is replaced by :class:`Patchify`, a small module at index
0 of ``to_patch_embedding`` (it has no parameters, so indices 1, 2, 3 keep their names). Dropout
is 0 everywhere, as in the published configurations, and kept as modules so the layout matches.

Usage::

    model = crate_from_config(cfg).double()          # cfg: whitebox.models.crate.Config
    model.load_state_dict(to_torch(crate.to_torch_state_dict(params, cfg)), strict=True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import init


class Patchify(nn.Module):
    """``rearrange('b c (h p1) (w p2) -> b (h w) (p1 p2 c)')`` without einops."""

    def __init__(self, patch_height: int, patch_width: int):
        super().__init__()
        self.p1, self.p2 = patch_height, patch_width

    def forward(self, img):
        b, c, H, W = img.shape
        h, w = H // self.p1, W // self.p2
        x = img.reshape(b, c, h, self.p1, w, self.p2).permute(0, 2, 4, 3, 5, 1)  # b h w p1 p2 c
        return x.reshape(b, h * w, self.p1 * self.p2 * c)


class PreNorm(nn.Module):
    """``fn(LayerNorm(x))``. PyTorch CRATE uses eps 1e-5; the CRATE-alpha port uses 1e-6 (JAX's)."""

    def __init__(self, dim: int, fn: nn.Module, eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fn = fn

    def forward(self, x, **kwargs):
        return self.fn(self.norm(x), **kwargs)


class Attention(nn.Module):
    """MSSA as published: one bias-free ``qkv`` projection, per-head ``softmax(w wᵀ / √p) w``.

    ``to_out`` is ``Sequential(Linear(inner, dim), Dropout)`` (bias-free in CRATE-alpha), or
    ``Identity`` when ``heads == 1`` and ``dim_head == dim``.
    """

    def __init__(self, dim, heads=8, dim_head=64, dropout=0.0, out_bias=True):
        super().__init__()
        inner_dim = dim_head * heads
        project_out = not (heads == 1 and dim_head == dim)
        self.heads = heads
        self.scale = dim_head**-0.5
        self.attend = nn.Softmax(dim=-1)
        self.dropout = nn.Dropout(dropout)
        self.qkv = nn.Linear(dim, inner_dim, bias=False)
        self.to_out = (
            nn.Sequential(nn.Linear(inner_dim, dim, bias=out_bias), nn.Dropout(dropout))
            if project_out
            else nn.Identity()
        )

    def forward(self, x):
        b, n, _ = x.shape
        w = self.qkv(x).reshape(b, n, self.heads, -1).transpose(1, 2)  # b h n d
        dots = torch.matmul(w, w.transpose(-1, -2)) * self.scale
        attn = self.dropout(self.attend(dots))
        out = torch.matmul(attn, w)  # b h n d
        out = out.transpose(1, 2).reshape(b, n, -1)  # b n (h d)
        return self.to_out(out)


class ISTA(nn.Module):
    """CRATE's sparse-coding step (``FeedForward`` in the official code), with its three matmuls.

    ``relu(x + η (x W − (x Wᵀ) W) − η λ)``: ``F.linear(x, W)`` is ``x Wᵀ``.
    """

    def __init__(self, dim, dropout=0.0, step_size=0.1, lambd=0.1):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(dim, dim))
        with torch.no_grad():
            init.kaiming_uniform_(self.weight)
        self.step_size = step_size
        self.lambd = lambd

    def forward(self, x):
        x1 = F.linear(x, self.weight, bias=None)  # D x
        grad_1 = F.linear(x1, self.weight.t(), bias=None)  # Dᵀ D x
        grad_2 = F.linear(x, self.weight.t(), bias=None)  # Dᵀ x
        grad_update = self.step_size * (grad_2 - grad_1) - self.step_size * self.lambd
        return F.relu(x + grad_update)


class OvercompleteISTA(nn.Module):
    """CRATE-alpha's ODL block (``OvercompleteISTABlock`` in the port), eqs. 7-11 of the paper.

    Tokens as rows, ``D, D1`` of shape (d, C d):
    ``A1 = relu(η x D − η λ)``, ``A2 = relu(A1 − η (A1 Dᵀ − x) D − η λ)``, output ``A2 D1ᵀ``
    (``A2 Dᵀ`` with ``decouple=False``, the ablation's "+O", and no ``D1`` parameter).
    """

    def __init__(self, d, overcomplete_ratio=4, eta=0.1, lmbda=0.1, decouple=True):
        super().__init__()
        self.eta = eta
        self.lmbda = lmbda
        self.decouple = decouple
        self.D = nn.Parameter(init.kaiming_uniform_(torch.empty(d, overcomplete_ratio * d)))
        if decouple:
            self.D1 = nn.Parameter(init.kaiming_uniform_(torch.empty(d, overcomplete_ratio * d)))

    def forward(self, x):
        negative_lasso_grad = torch.einsum("pd,nlp->nld", self.D, x)  # x D
        z1 = F.relu(self.eta * negative_lasso_grad - self.eta * self.lmbda)
        Dz1 = torch.einsum("dp,nlp->nld", self.D, z1)  # z1 Dᵀ
        lasso_grad = torch.einsum("pd,nlp->nld", self.D, Dz1 - x)
        z2 = F.relu(z1 - self.eta * lasso_grad - self.eta * self.lmbda)
        return torch.einsum("dp,nlp->nld", self.D1 if self.decouple else self.D, z2)  # z2 D1ᵀ


class ISTABlock(nn.Module):
    """The CRATE-alpha ablation code's square ISTA (its "CRATE" baseline), weight ``D`` (d, d).

    ``relu(x − η ((x Dᵀ − x) D) − η λ)``: CRATE's ISTA step under the name ``fn.D``.
    """

    def __init__(self, d, eta=0.1, lmbda=0.1):
        super().__init__()
        self.eta = eta
        self.lmbda = lmbda
        self.D = nn.Parameter(torch.randn(d, d) * 0.02)

    def forward(self, x):
        Dx = torch.einsum("dp,nlp->nld", self.D, x)
        lasso_grad = torch.einsum("pd,nlp->nld", self.D, Dx - x)
        return F.relu(x - self.eta * lasso_grad - self.eta * self.lmbda)


class Transformer(nn.Module):
    """``layers[i] = [PreNorm(Attention), PreNorm(sparse block)]``.

    CRATE: ``x = attn(x) + x; x = ff(x)`` (no residual around ISTA).
    CRATE-alpha: ``x = attn(x) + x; x = ff(x) + x`` (``residual=False``: ``ff(x)``, an ablation).
    """

    def __init__(self, dim, depth, heads, dim_head, dropout=0.0, ista=0.1, lambd=0.1, *,
                 alpha=False, overcomplete_ratio=4, decouple=True, residual=None, norm_eps=1e-5):
        super().__init__()
        self.residual = alpha if residual is None else residual
        self.layers = nn.ModuleList([])
        for _ in range(depth):
            attn = Attention(dim, heads=heads, dim_head=dim_head, dropout=dropout, out_bias=not alpha)
            if not alpha:
                ff = ISTA(dim, dropout=dropout, step_size=ista, lambd=lambd)
            elif overcomplete_ratio is None:
                ff = ISTABlock(dim, eta=ista, lmbda=lambd)
            else:
                ff = OvercompleteISTA(dim, overcomplete_ratio=overcomplete_ratio, eta=ista, lmbda=lambd,
                                      decouple=decouple)
            self.layers.append(nn.ModuleList([PreNorm(dim, attn, norm_eps), PreNorm(dim, ff, norm_eps)]))

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x if self.residual else ff(x)
        return x


class CRATE(nn.Module):
    """PyTorch CRATE (docs/reference.md §5): patch embedding ``Patchify → LN → Linear → LN``, cls token,
    position embedding, ``depth`` layers, head ``LN → Linear`` on the cls token or the mean."""

    def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, pool="cls",
                 channels=3, dim_head=64, dropout=0.0, emb_dropout=0.0, ista=0.1, lambd=0.1):
        super().__init__()
        if image_size % patch_size:
            raise ValueError("image dimensions must be divisible by the patch size")
        if pool not in ("cls", "mean"):
            raise ValueError("pool type must be either cls (cls token) or mean (mean pooling)")
        num_patches = (image_size // patch_size) ** 2
        patch_dim = channels * patch_size**2
        self.to_patch_embedding = nn.Sequential(
            Patchify(patch_size, patch_size),
            nn.LayerNorm(patch_dim),
            nn.Linear(patch_dim, dim),
            nn.LayerNorm(dim),
        )
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = Transformer(dim, depth, heads, dim_head, dropout, ista=ista, lambd=lambd)
        self.pool = pool
        self.to_latent = nn.Identity()
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def embed(self, img):
        return self.to_patch_embedding(img)

    def forward(self, img):
        x = self.embed(img)
        b, n, _ = x.shape
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x += self.pos_embedding[:, : (n + 1)]
        x = self.dropout(x)
        x = self.transformer(x)
        x = x.mean(dim=1) if self.pool == "mean" else x[:, 0]
        return self.mlp_head(self.to_latent(x))


class CRATEAlpha(CRATE):
    """CRATE-alpha (docs/reference.md §6): ``conv1`` patch embedding with bias and no stem LayerNorm,
    bias-free attention output, ``x + ODL(LN x)`` with an overcomplete dictionary, LN eps 1e-6
    in the layers (the JAX default the port keeps), head ``LN → Linear`` on the cls token.

    ``overcomplete_ratio=None`` (the square :class:`ISTABlock`), ``decouple`` and ``residual``
    are the switches of the port's ablation code (paper Fig. 1: CRATE, +O, +O+D, +O+D+R).
    """

    def __init__(self, *, image_size, patch_size, num_classes, dim, depth, heads, pool="cls",
                 channels=3, dim_head=64, dropout=0.0, emb_dropout=0.0, ista=0.1, lambd=0.1,
                 overcomplete_ratio=4, decouple=True, residual=True, norm_eps=1e-6):
        nn.Module.__init__(self)
        if image_size % patch_size:
            raise ValueError("image dimensions must be divisible by the patch size")
        num_patches = (image_size // patch_size) ** 2
        self.conv1 = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size, bias=True, padding="valid")
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.dropout = nn.Dropout(emb_dropout)
        self.transformer = Transformer(dim, depth, heads, dim_head, dropout, ista=ista, lambd=lambd, alpha=True,
                                       overcomplete_ratio=overcomplete_ratio, decouple=decouple, residual=residual,
                                       norm_eps=norm_eps)
        self.pool = pool
        self.to_latent = nn.Identity()
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def embed(self, img):
        x = self.conv1(img)  # b d h w
        return x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # b (h w) d


def crate_from_config(cfg) -> CRATE:
    """A :class:`CRATE` with the hyper-parameters of a ``whitebox.models.crate.Config``."""
    if getattr(cfg, "mssa", "published") != "published":
        raise ValueError("only the published MSSA form has a PyTorch CRATE counterpart")
    return CRATE(image_size=cfg.image_size, patch_size=cfg.patch_size, num_classes=cfg.num_classes,
                 dim=cfg.dim, depth=cfg.depth, heads=cfg.heads, pool=cfg.pool, channels=cfg.channels,
                 dim_head=cfg.dim_head, ista=cfg.ista_step, lambd=cfg.ista_lambd)


def crate_alpha_from_config(cfg) -> CRATEAlpha:
    """A :class:`CRATEAlpha` with the hyper-parameters of a ``whitebox.models.crate_alpha.Config``.

    The port has the published block (two steps from ``A₀ = 0``, decoded) with or without ``D1``
    and the residual, and the ablation's square ISTA (``overcomplete=1, odl_steps=1,
    ista_start="input", decode=False``); other configs have no PyTorch counterpart.
    """
    if cfg.ista_start == "zero" and cfg.decode and cfg.odl_steps == 2:
        ratio = cfg.overcomplete
    elif cfg.ista_start == "input" and not cfg.decode and cfg.odl_steps == 1 and cfg.overcomplete == 1:
        ratio = None
    else:
        raise ValueError(f"no PyTorch CRATE-alpha counterpart for {cfg}")
    return CRATEAlpha(
        image_size=cfg.image_size, patch_size=cfg.patch_size, num_classes=cfg.num_classes, dim=cfg.dim,
        depth=cfg.depth, heads=cfg.heads, channels=cfg.channels, dim_head=cfg.dim_head, pool=cfg.pool,
        ista=cfg.ista_step, lambd=cfg.ista_lambd, overcomplete_ratio=ratio, decouple=cfg.decoupled,
        residual=cfg.residual, norm_eps=cfg.norm_eps,
    )


def to_torch(state_dict: dict, dtype=None, device=None) -> dict:
    """NumPy arrays (from whitebox's ``to_torch_state_dict``) as tensors."""
    return {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in state_dict.items()}


def to_numpy(state_dict: dict) -> dict:
    """Tensors (a torch ``state_dict``) as NumPy arrays."""
    return {k: v.detach().cpu().numpy() for k, v in state_dict.items()}


def grads_by_name(model: nn.Module) -> dict:
    """Parameter gradients under the state-dict names, as NumPy arrays."""
    return {k: p.grad.detach().cpu().numpy() for k, p in model.named_parameters() if p.grad is not None}
