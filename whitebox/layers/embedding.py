"""Images to tokens: patchify, the CRATE patch embedding, the cls token and position embedding."""

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


def patch_embed_forward(images, params: dict, patch: int):
    """PyTorch CRATE's ``to_patch_embedding``: patchify, LayerNorm(patch_dim), Linear, LayerNorm(dim).

    ``params`` holds ``norm_in.weight/bias`` (P,), ``proj.weight`` (d, P), ``proj.bias`` (d,),
    ``norm_out.weight/bias`` (d,). Returns tokens (B, n, d).
    """
    x = patchify(images, patch)  # (B, n, P)
    x, c1 = layernorm_forward(x, params["norm_in.weight"], params["norm_in.bias"])
    x, c2 = linear_forward(x, params["proj.weight"], params["proj.bias"])  # (B, n, d)
    x, c3 = layernorm_forward(x, params["norm_out.weight"], params["norm_out.bias"])
    return x, PatchEmbedCache(c1, c2, c3, tuple(images.shape[1:]))


def patch_embed_backward(dx, cache: PatchEmbedCache, patch: int):
    """Returns ``(dimages, grads)`` with ``grads`` keyed like the forward's ``params``."""
    grads = {}
    dx, grads["norm_out.weight"], grads["norm_out.bias"] = layernorm_backward(dx, cache.norm_out)
    dx, grads["proj.weight"], grads["proj.bias"] = linear_backward(dx, cache.proj)
    dx, grads["norm_in.weight"], grads["norm_in.bias"] = layernorm_backward(dx, cache.norm_in)
    C, H, W = cache.image_shape
    return unpatchify(dx, patch, C, H, W), grads


def conv_patch_embed_forward(images, weight, bias, patch: int):
    """A convolution with kernel = stride = patch, written as patchify plus a matmul (CRATE-alpha).

    images (B, C, H, W), weight (d, C, p, p) (PyTorch ``Conv2d`` layout), bias (d,) → (B, n, d).
    The kernel is flattened to the patch order ``(p1 p2 c)`` of :func:`patchify`.
    """
    d = weight.shape[0]
    W = weight.transpose(0, 2, 3, 1).reshape(d, -1)  # (d, p·p·C) in (p1 p2 c) order
    x = patchify(images, patch)  # (B, n, P)
    out, cache = linear_forward(x, W, bias)
    return out, cache


def conv_patch_embed_backward(dout, cache: LinearCache, weight_shape: tuple, image_shape: tuple, patch: int):
    """Returns ``(dimages, dweight, dbias)`` with ``dweight`` in the ``Conv2d`` layout (d, C, p, p)."""
    d, C, p, _ = weight_shape
    dx, dW, db = linear_backward(dout, cache)
    dweight = dW.reshape(d, p, p, C).transpose(0, 3, 1, 2)
    _, H, W = image_shape
    return unpatchify(dx, patch, C, H, W), dweight, db


def prepend_cls_forward(tokens, cls_token, pos_embedding):
    """``[cls; tokens] + pos``: tokens (B, n, d), cls_token (1, 1, d), pos (1, n+1, d) → (B, n+1, d)."""
    xp = array_module(tokens)
    B, n, d = tokens.shape
    z = xp.empty((B, n + 1, d), dtype=tokens.dtype)
    z[:, :1] = cls_token
    z[:, 1:] = tokens
    z += pos_embedding
    return z


def prepend_cls_backward(dz):
    """Returns ``(dtokens, dcls_token, dpos_embedding)``."""
    dcls = dz[:, :1].sum(axis=0, keepdims=True)  # (1, 1, d)
    dpos = dz.sum(axis=0, keepdims=True)  # (1, n+1, d)
    return dz[:, 1:], dcls, dpos
