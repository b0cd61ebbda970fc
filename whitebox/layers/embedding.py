"""Inputs to tokens: patchify, the two patch embeddings, the cls token and position embedding,
the token embedding of a language model and its tied head, and the token gather/scatter of masking.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module
from .layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from .linear import LinearCache, linear_backward, linear_forward


def patchify(images, patch: int):
    """``b c (h p1) (w p2) -> b (h w) (p1 p2 c)``: images (B, C, H, W) → patches (B, n, p·p·C)."""
    B, C, H, W = images.shape
    h, w = H // patch, W // patch
    x = images.reshape(B, C, h, patch, w, patch).transpose(0, 2, 4, 3, 5, 1)  # (B, h, w, p1, p2, C)
    return x.reshape(B, h * w, patch * patch * C)


def unpatchify(patches, patch: int, channels: int, height: int, width: int):
    """The inverse of :func:`patchify`: (B, n, p·p·C) → (B, C, H, W). It is also its backward."""
    B = patches.shape[0]
    h, w = height // patch, width // patch
    x = patches.reshape(B, h, w, patch, patch, channels).transpose(0, 5, 1, 3, 2, 4)  # (B, C, h, p1, w, p2)
    return x.reshape(B, channels, height, width)


class PatchEmbedCache(NamedTuple):
    norm_in: LayerNormCache
    proj: LinearCache
    norm_out: LayerNormCache
    image_shape: tuple  # (C, H, W), to give the image gradient its shape
    patch: int


def patch_embed_forward(images, params: dict, patch: int):
    """PyTorch CRATE's ``to_patch_embedding``: patchify, LayerNorm(patch_dim), Linear, LayerNorm(dim).

    ``params`` holds ``norm_in.weight/bias`` (P,), ``proj.weight`` (d, P), ``proj.bias`` (d,),
    ``norm_out.weight/bias`` (d,). Returns tokens (B, n, d).
    """
    x = patchify(images, patch)  # (B, n, P)
    x, c1 = layernorm_forward(x, params["norm_in.weight"], params["norm_in.bias"])
    x, c2 = linear_forward(x, params["proj.weight"], params["proj.bias"])  # (B, n, d)
    x, c3 = layernorm_forward(x, params["norm_out.weight"], params["norm_out.bias"])
    return x, PatchEmbedCache(c1, c2, c3, tuple(images.shape[1:]), patch)


def patch_embed_backward(dx, cache: PatchEmbedCache):
    """Returns ``(dimages, grads)`` with ``grads`` keyed like the forward's ``params``."""
    grads = {}
    dx, grads["norm_out.weight"], grads["norm_out.bias"] = layernorm_backward(dx, cache.norm_out)
    dx, grads["proj.weight"], grads["proj.bias"] = linear_backward(dx, cache.proj)
    dx, grads["norm_in.weight"], grads["norm_in.bias"] = layernorm_backward(dx, cache.norm_in)
    C, H, W = cache.image_shape
    return unpatchify(dx, cache.patch, C, H, W), grads


class ConvEmbedCache(NamedTuple):
    linear: LinearCache  # the flattened kernel applied to the patches
    weight_shape: tuple  # (d, C, p, p), the Conv2d layout of the weight gradient
    image_shape: tuple  # (C, H, W), the shape of the image gradient


def conv_patch_embed_forward(images, weight, bias, patch: int):
    """A convolution with kernel = stride = patch, written as patchify plus a matmul (CRATE-alpha).

    images (B, C, H, W), weight (d, C, p, p) (PyTorch ``Conv2d`` layout), bias (d,) → (B, n, d).
    The kernel is flattened to the patch order ``(p1 p2 c)`` of :func:`patchify`.
    """
    if weight.shape[2:] != (patch, patch):
        raise ValueError(f"weight must have shape (d, C, {patch}, {patch}), got {tuple(weight.shape)}")
    d = weight.shape[0]
    W = weight.transpose(0, 2, 3, 1).reshape(d, -1)  # (d, p·p·C) in (p1 p2 c) order
    x = patchify(images, patch)  # (B, n, P)
    out, cache = linear_forward(x, W, bias)
    return out, ConvEmbedCache(cache, tuple(weight.shape), tuple(images.shape[1:]))


def conv_patch_embed_backward(dout, cache: ConvEmbedCache):
    """Returns ``(dimages, dweight, dbias)`` with ``dweight`` in the ``Conv2d`` layout (d, C, p, p)."""
    d, C, p, _ = cache.weight_shape
    dx, dW, db = linear_backward(dout, cache.linear)
    dweight = dW.reshape(d, p, p, C).transpose(0, 3, 1, 2)
    _, H, W = cache.image_shape
    return unpatchify(dx, p, C, H, W), dweight, db


class ClsCache(NamedTuple):
    shared_cls: bool  # the cls token is one (1, 1, d) row for the whole batch (else one per image)
    has_pos: bool  # a position embedding was added


def prepend_cls_forward(tokens, cls_token, pos_embedding=None):
    """``[cls; tokens] (+ pos)``: tokens (B, n, d), cls_token (1 or B, 1, d), pos (1, n+1, d) or None → (B, n+1, d)."""
    xp = array_module(tokens)
    B, n, d = tokens.shape
    z = xp.empty((B, n + 1, d), dtype=tokens.dtype)
    z[:, :1] = cls_token
    z[:, 1:] = tokens
    if pos_embedding is not None:
        z += pos_embedding
    return z, ClsCache(cls_token.shape[0] == 1, pos_embedding is not None)


def prepend_cls_backward(dz, cache: ClsCache):
    """Returns ``(dtokens, dcls_token, dpos_embedding)``; ``dpos_embedding`` is None without one."""
    # forward: z = [cls; tokens] + pos, the shared cls and pos broadcast over the batch
    dcls = dz[:, :1].sum(axis=0, keepdims=True) if cache.shared_cls else dz[:, :1]  # (1 or B, 1, d)
    dpos = dz.sum(axis=0, keepdims=True) if cache.has_pos else None  # (1, n+1, d)
    return dz[:, 1:], dcls, dpos


class TokenEmbedCache(NamedTuple):
    tokens: object  # (B, T) int: the ids, for the scatter-add
    vocab_size: int  # V
    block_size: int  # the rows of the position table


def token_embed_forward(tokens, E, pos):
    """``Z⁰ = E[tokens] + P[:T]``: tokens (B, T) int, E (V, d), pos (block_size, d) → (B, T, d)."""
    T = tokens.shape[1]
    z = E[tokens]  # (B, T, d): a gather, a new array
    z += pos[:T]
    return z, TokenEmbedCache(tokens, E.shape[0], pos.shape[0])


def token_embed_backward(dz, cache: TokenEmbedCache):
    """Returns ``(dE, dpos)``: the rows of ``E`` add up the gradients of the positions holding their id."""
    xp = array_module(dz)
    tokens, V, block_size = cache
    B, T, d = dz.shape
    # forward: z = E[tokens] + pos[:T]; the scatter-add dE[v] = Σ_{positions holding v} dz, written as
    # one product with the one-hot matrix of the ids (a single BLAS call, the same on NumPy and CuPy)
    onehot = (tokens.reshape(-1)[:, None] == xp.arange(V)).astype(dz.dtype)  # (B T, V)
    dE = onehot.T @ dz.reshape(-1, d)  # (V, d)
    dpos = xp.zeros((block_size, d), dtype=dz.dtype)
    dpos[:T] = dz.sum(axis=0)
    return dE, dpos


def tied_head_forward(h, E):
    """The LM head tied to the token embedding: ``logits = h Eᵀ``, h (B, T, d), E (V, d) → (B, T, V).

    It is :func:`whitebox.layers.linear.linear_forward` without a bias, with the embedding as weight.
    """
    return linear_forward(h, E)


def tied_head_backward(dlogits, cache: LinearCache):
    """Returns ``(dh, dE)``: ``dh = dlogits E``, ``dE = Σ dlogitsᵀ h`` (the head's share of E's gradient)."""
    dh, dE, _ = linear_backward(dlogits, cache)
    return dh, dE


class GatherCache(NamedTuple):
    index: object  # (B, k) int: the gathered token positions
    num_tokens: int  # n


def gather_tokens_forward(x, index):
    """``x[b, index[b]]``: x (B, n, d), index (B, k) int → (B, k, d) (the visible tokens of masking)."""
    xp = array_module(x)
    return x[xp.arange(x.shape[0])[:, None], index], GatherCache(index, x.shape[1])


def gather_tokens_backward(dout, cache: GatherCache):
    """The gradient (B, n, d): ``dout`` scattered back to the gathered positions, zero elsewhere."""
    xp = array_module(dout)
    B, _, d = dout.shape
    dx = xp.zeros((B, cache.num_tokens, d), dtype=dout.dtype)
    dx[xp.arange(B)[:, None], cache.index] = dout
    return dx


class ScatterCache(NamedTuple):
    keep: object  # (B, k) int: where the given tokens went
    fill: object  # (B, n − k) int: where the fill token went


def scatter_tokens_forward(x, keep, fill, fill_token):
    """Tokens x (B, k, d) placed at ``keep``, the learned ``fill_token`` (1, 1, d) at ``fill``: → (B, k + f, d)."""
    xp = array_module(x)
    B, k, d = x.shape
    rows = xp.arange(B)[:, None]
    out = xp.empty((B, k + fill.shape[1], d), dtype=x.dtype)
    out[rows, keep] = x
    out[rows, fill] = fill_token
    return out, ScatterCache(keep, fill)


def scatter_tokens_backward(dout, cache: ScatterCache):
    """Returns ``(dx, dfill_token)``: the gradients at ``keep``, and the sum of those at ``fill``."""
    xp = array_module(dout)
    B, _, d = dout.shape
    rows = xp.arange(B)[:, None]
    dfill = dout[rows, cache.fill].reshape(1, -1, d).sum(axis=1, keepdims=True)  # (1, 1, d)
    return dout[rows, cache.keep], dfill
