"""Causal CRATE (CRATE-GPT): a white-box next-token model (docs/reference.md §7).

Each layer is the CRATE step made causal, with a residual around both halves::

    Z^{ℓ+½} = Z^ℓ + MSSA_causal(LN(Z^ℓ))          token t attends to tokens ≤ t only
    Z^{ℓ+1} = Z^{ℓ+½} + SC(LN(Z^{ℓ+½}))            sparse coding, then decoding

after ``Z⁰ = E[tokens] + P[positions]`` (token and learned position embeddings); the output is
``logits = LN_f(Z^L) Eᵀ``, the LM head tied to the token embedding, and the loss the next-token
cross-entropy averaged over all positions.

The sparse-coding block ``SC`` (``cfg.sparse``):

* ``"overcomplete"`` (default, the trained variant of the CRATE language model): two proximal
  steps of the non-negative LASSO against an overcomplete dictionary ``D ∈ R^{d×m}``,
  ``m = C d`` (C = 4), from ``A₀ = 0``, decoded with the **same** dictionary::

      A₁ = ReLU(η DᵀZ − ηλ),   A₂ = ReLU(A₁ − η Dᵀ(D A₁ − Z) − ηλ),   SC(Z) = D A₂

  The language-model code stores the dictionary as an ``nn.Linear``-shaped weight
  ``W (4d, d) = Dᵀ``, encodes with ``x Wᵀ`` and decodes with ``out = Wᵀ A₂`` (``a₂ W`` in code
  layout): that is ``D A₂``, CRATE-alpha's ODL with the *tied* decoder ``D̂ = D`` (its eq. 10)
  rather than the vision model's decoupled ``D̂``. whitebox stores ``D`` itself, shape (d, m)
  (the layout of :mod:`whitebox.layers.odl`, which computes it), under ``layers.{i}.ista.D``;
  the gradient of the tied ``D`` is the sum of its encoder and decoder gradients.
* ``"ista"``: CRATE's square one-step ISTA, ``ReLU(Z + η Dᵀ(Z − D Z) − ηλ)`` with ``D`` (d, d),
  inside the same residual.

MSSA is the published form (shared ``qkv`` projection, learned output projection with bias), with
the lower-triangular mask before the softmax. Initialisation: token and position embeddings
N(0, 0.02²) (GPT-2's; with the tied head they also set the logits' scale), PyTorch's default for
the attention's linear maps, kaiming-uniform for the dictionary with fan_in = d (the LM code's
``(4d, d)`` weight), LayerNorms ones and zeros.

With ``block="transformer"`` the layers are the standard pre-norm transformer block with the
causal mask (:mod:`whitebox.blocks.transformer_layer`): the GPT baseline (``--model gpt``), with
the same embeddings, final LayerNorm and tied head.

Public surface::

    cfg = Config(vocab_size=84, block_size=128, dim=128, depth=4, heads=4, dim_head=32)
    params = init(cfg, seed=0)
    logits, cache = forward(params, tokens, cfg)           # tokens (B, T) int, T ≤ block_size
    loss, dlogits = next_token_loss(logits, targets)       # mean over B·T positions
    grads = backward(dlogits, cache)
    text = sample(params, cfg, "ROMEO.", 200, temperature=0.8, top_k=10, seed=0, tokenizer=tok)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import numpy as np

from ..backend import array_module, to_host
from ..blocks import BLOCKS, causal_layer, stack, transformer_layer
from ..blocks.attention import AttentionSpec
from ..blocks.causal_layer import SPARSE_BLOCKS, CausalLayerSpec
from ..blocks.transformer_layer import TransformerLayerSpec
from ..blocks.params import Param, layernorm, model_parameters, normal
from ..layers.embedding import (
    TokenEmbedCache,
    tied_head_backward,
    tied_head_forward,
    token_embed_backward,
    token_embed_forward,
)
from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.linear import LinearCache
from ..layers.loss import cross_entropy
from ..layers.mssa import subspaces
from .checks import check_crate_block, check_params
from .config import ModelConfig

EMBED_INIT_STD = 0.02  # GPT-2


@dataclass(frozen=True)
class Config(ModelConfig):
    """A causal CRATE's hyper-parameters (η = λ = 0.1, C = 4, two proximal steps).

    ``block="transformer"``: the GPT baseline (causal MHSA and an MLP of width ``mlp_ratio · dim``;
    the sparse-coding fields are then unused).
    """

    CHOICES = {"sparse": SPARSE_BLOCKS, "block": BLOCKS}

    vocab_size: int = 84
    block_size: int = 128  # the longest context (learned positions)
    dim: int = 128
    depth: int = 4
    heads: int = 4
    dim_head: int = 32
    sparse: str = "overcomplete"
    overcomplete: int = 4  # C
    sparse_steps: int = 2  # T of the overcomplete block
    ista_step: float = 0.1  # η
    ista_lambd: float = 0.1  # λ
    block: str = "crate"
    mlp_ratio: int = 4

    @property
    def inner_dim(self) -> int:
        return self.heads * self.dim_head

    @property
    def code_dim(self) -> int:
        """m: the number of dictionary atoms (C d, or d for the square ISTA)."""
        return self.overcomplete * self.dim if self.sparse == "overcomplete" else self.dim

    @property
    def project_out(self) -> bool:
        return not (self.heads == 1 and self.dim_head == self.dim)


def layer_block(cfg: Config) -> tuple[ModuleType, object]:
    """``(block module, spec)``: the block every layer of ``cfg`` is."""
    if cfg.block == "transformer":
        return transformer_layer, TransformerLayerSpec(cfg.dim, cfg.heads, cfg.dim_head, cfg.mlp_ratio, causal=True)
    return causal_layer, layer_spec(cfg)


def layer_spec(cfg: Config) -> CausalLayerSpec:
    """The block every layer of ``cfg`` is: published MSSA with the causal mask, residual sparse coding."""
    attention = AttentionSpec(cfg.dim, cfg.heads, cfg.dim_head, causal=True)
    return CausalLayerSpec(attention, cfg.sparse, cfg.code_dim, cfg.sparse_steps, cfg.ista_step, cfg.ista_lambd)


def char_small(**overrides) -> Config:
    """A CPU-sized character model: width 128, 4 layers of 4 heads, context 128."""
    return Config(**{**dict(block_size=128, dim=128, depth=4, heads=4, dim_head=32), **overrides})


PRESETS = {"char-small": char_small}


def describe(cfg: Config) -> dict:
    """name -> Param in the order ``init`` draws them (see the module docstring)."""
    d = cfg.dim
    return {
        "tok_embedding": Param((cfg.vocab_size, d), normal(EMBED_INIT_STD)),
        "pos_embedding": Param((cfg.block_size, d), normal(EMBED_INIT_STD)),
        **stack.shapes(*layer_block(cfg), cfg.depth),
        **layernorm(d, "final_norm."),
    }


shapes, num_params, init = model_parameters(describe)


def layer_subspaces(params: dict, layer: int, cfg: Config):
    """The subspace bases ``U`` (K, d, p) of layer ``layer``'s MSSA."""
    check_crate_block(cfg, "the subspaces U")
    return subspaces(params[f"layers.{layer}.attn.qkv"], cfg.heads)


def layer_dictionary(params: dict, layer: int, cfg: Config):
    """The dictionary ``D`` (d, m) of layer ``layer`` (encoder and tied decoder)."""
    check_crate_block(cfg, "the dictionary D")
    return params[f"layers.{layer}.ista.D"]


def check_tokens(tokens, cfg: Config, name: str = "tokens"):
    """tokens must be an integer array (B, T) with 1 ≤ T ≤ block_size and ids in [0, vocab_size)."""
    if not hasattr(tokens, "dtype") or not hasattr(tokens, "shape"):
        raise TypeError(f"{name} must be a NumPy or CuPy integer array, got {type(tokens).__name__}")
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {tokens.dtype}")
    if tokens.ndim != 2 or tokens.shape[1] < 1:
        raise ValueError(f"{name} must have shape (batch, length), got {tuple(tokens.shape)}")
    if tokens.shape[1] > cfg.block_size:
        raise ValueError(f"{name} has length {tokens.shape[1]} > block_size={cfg.block_size}")
    if tokens.size and (int(tokens.min()) < 0 or int(tokens.max()) >= cfg.vocab_size):
        raise ValueError(f"{name} must hold ids in [0, vocab_size={cfg.vocab_size})")


class LMCache(NamedTuple):
    cfg: Config
    embed: TokenEmbedCache
    stack: stack.StackCache
    final_norm: LayerNormCache
    head: LinearCache  # logits = h Eᵀ, tied to the embedding

    @property
    def layers(self) -> list:
        """The per-layer caches (:class:`whitebox.blocks.causal_layer.CausalLayerCache`)."""
        return self.stack.layers


def forward(params: dict, tokens, cfg: Config, *, keep_features: bool = False):
    """Logits (B, T, vocab) of the next token at every position, and the cache for :func:`backward`."""
    check_tokens(tokens, cfg)
    check_params(params, shapes(cfg), tokens, "tokens")
    z, embed = token_embed_forward(tokens, params["tok_embedding"], params["pos_embedding"])  # (B, T, d)
    z, layers = stack.forward(z, params, *layer_block(cfg), cfg.depth, keep=keep_features)
    h, final_cache = layernorm_forward(z, params["final_norm.weight"], params["final_norm.bias"])  # (B, T, d)
    logits, head_cache = tied_head_forward(h, params["tok_embedding"])  # (B, T, V)
    return logits, LMCache(cfg, embed, layers, final_cache, head_cache)


def backward(dlogits, cache: LMCache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dlogits`` (B, T, V)."""
    grads = {}
    dh, dE_head = tied_head_backward(dlogits, cache.head)  # (B, T, d), the head's share of dE
    dz, grads["final_norm.weight"], grads["final_norm.bias"] = layernorm_backward(dh, cache.final_norm)
    dz, layer_grads = stack.backward(dz, cache.stack)
    grads.update(layer_grads)
    dE_embed, grads["pos_embedding"] = token_embed_backward(dz, cache.embed)
    grads["tok_embedding"] = dE_head + dE_embed  # the tied matrix: head and embedding gradients add
    return grads


def layer_features(cache: LMCache) -> dict:
    """Per-layer measurements of ``forward(..., keep_features=True)``: the keys of
    :func:`whitebox.blocks.stack.layer_features` (``attention`` is causal, zero above the diagonal)."""
    return stack.layer_features(cache.stack)


def next_token_loss(logits, targets):
    """``(loss, dlogits)``: cross-entropy of ``targets`` (B, T) under ``logits`` (B, T, V), averaged
    over all ``B T`` positions (``dlogits = (softmax − onehot) / (B T)``)."""
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])} (the logits' leading axes), "
                         f"got {tuple(targets.shape)}")
    V = logits.shape[-1]
    loss, dlogits = cross_entropy(logits.reshape(-1, V), targets.reshape(-1))
    return float(loss), dlogits.reshape(logits.shape)


def next_token_distribution(logits, temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """Probabilities (V,) float64 on the host from one position's logits (V,).

    ``softmax(logits / temperature)`` restricted to the ``top_k`` largest logits (ties broken
    towards the smaller id, as ``argmax`` does), renormalised.
    """
    logits = np.asarray(to_host(logits), dtype=np.float64) / temperature
    if top_k is not None and top_k < logits.size:
        kept = np.argsort(-logits, kind="stable")[:top_k]
        restricted = np.full_like(logits, -np.inf)
        restricted[kept] = logits[kept]
        logits = restricted
    p = np.exp(logits - logits.max())
    return p / p.sum()


def sample(params: dict, cfg: Config, prompt, n_chars: int, temperature: float = 1.0,
           top_k: int | None = None, seed: int = 0, *, tokenizer=None):
    """Continue ``prompt`` by ``n_chars`` tokens drawn one at a time from the model.

    Parameters
    ----------
    prompt : str (with ``tokenizer``) or a non-empty sequence of token ids.
    n_chars : the number of new tokens (characters for a character model).
    temperature : > 0; the logits are divided by it (< 1 sharper, > 1 flatter).
    top_k : sample among the ``top_k`` most likely tokens only; ``top_k=1`` is greedy decoding
        (always the argmax); None for the full distribution.
    seed : the draws come from ``numpy.random.default_rng(seed)``: same seed, same text.
    tokenizer : a :class:`whitebox.data.text.CharTokenizer` to encode ``prompt`` and decode the result.

    The context is the last ``block_size`` tokens. Returns the continuation only: a str with a
    tokenizer, else an int64 array (n_chars,).
    """
    if isinstance(n_chars, bool) or not isinstance(n_chars, (int, np.integer)) or n_chars < 0:
        raise ValueError(f"n_chars must be a non-negative integer, got {n_chars!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use top_k=1 for greedy decoding), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a str prompt needs tokenizer= (a CharTokenizer) to encode it")
        ids = list(tokenizer.encode(prompt))
    else:
        ids = [int(i) for i in prompt]
    if not ids:
        raise ValueError("prompt must hold at least one token")
    xp = array_module(params["tok_embedding"])
    rng = np.random.default_rng(seed)
    new = []
    for _ in range(n_chars):
        context = xp.asarray(np.asarray(ids[-cfg.block_size:], dtype=np.int64)[None])  # (1, T)
        logits, _ = forward(params, context, cfg)  # (1, T, V)
        p = next_token_distribution(logits[0, -1], temperature, top_k)
        token = int(min(np.searchsorted(np.cumsum(p), rng.random(), side="right"), p.size - 1))
        ids.append(token)
        new.append(token)
    new = np.asarray(new, dtype=np.int64)
    return tokenizer.decode(new) if tokenizer is not None else new
