"""Causal CRATE (CRATE-GPT): a white-box next-token model (REFERENCE §7).

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

Public surface::

    cfg = Config(vocab_size=84, block_size=128, dim=128, depth=4, heads=4, dim_head=32)
    params = init(cfg, seed=0)
    logits, cache = forward(params, tokens, cfg)           # tokens (B, T) int, T ≤ block_size
    loss, dlogits = next_token_loss(logits, targets)       # mean over B·T positions
    grads = backward(dlogits, cache)
    text = sample(params, cfg, "ROMEO.", 200, temperature=0.8, top_k=10, seed=0, tokenizer=tok)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..backend import TRAIN_DTYPE, array_module, get_xp, to_host
from ..init import kaiming_uniform, layernorm_default, linear_default
from ..layers.ista import ISTACache, ista_backward, ista_forward
from ..layers.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from ..layers.loss import cross_entropy
from ..layers.odl import ODLCache, odl_backward, odl_forward
from .blocks import AttentionCache, attention_sublayer_backward, attention_sublayer_forward
from .checks import positive_int

SPARSE_BLOCKS = ("overcomplete", "ista")
EMBED_INIT_STD = 0.02  # GPT-2


@dataclass(frozen=True)
class Config:
    """A causal CRATE's hyper-parameters (η = λ = 0.1, C = 4, two proximal steps)."""

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

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "dim", "depth", "heads", "dim_head", "overcomplete", "sparse_steps"):
            positive_int(name, getattr(self, name))
        if self.sparse not in SPARSE_BLOCKS:
            raise ValueError(f"sparse must be one of {SPARSE_BLOCKS}, got {self.sparse!r}")
        if not self.ista_step > 0:
            raise ValueError(f"ista_step must be > 0, got {self.ista_step!r}")
        if not self.ista_lambd >= 0:
            raise ValueError(f"ista_lambd must be >= 0, got {self.ista_lambd!r}")

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

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def char_small(**overrides) -> Config:
    """A CPU-sized character model: width 128, 4 layers of 4 heads, context 128."""
    return Config(**{**dict(block_size=128, dim=128, depth=4, heads=4, dim_head=32), **overrides})


PRESETS = {"char-small": char_small}


def shapes(cfg: Config) -> dict:
    """Every parameter's shape, from the config."""
    d = cfg.dim
    out = {"tok_embedding": (cfg.vocab_size, d), "pos_embedding": (cfg.block_size, d)}
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        out[pre + "attn_norm.weight"] = out[pre + "attn_norm.bias"] = (d,)
        out[pre + "attn.qkv"] = (cfg.inner_dim, d)
        if cfg.project_out:
            out[pre + "attn.out.weight"], out[pre + "attn.out.bias"] = (d, cfg.inner_dim), (d,)
        out[pre + "ista_norm.weight"] = out[pre + "ista_norm.bias"] = (d,)
        out[pre + "ista.D"] = (d, cfg.code_dim)
    out["final_norm.weight"] = out["final_norm.bias"] = (d,)
    return out


def num_params(cfg: Config) -> int:
    return int(sum(np.prod(s) for s in shapes(cfg).values()))


def init(cfg: Config, seed: int = 0, *, dtype=TRAIN_DTYPE, device: str | None = None) -> dict:
    """Parameters drawn on the host from ``seed`` (see the module docstring)."""
    rng = np.random.default_rng(seed)
    d = cfg.dim
    p = {
        "tok_embedding": EMBED_INIT_STD * rng.standard_normal((cfg.vocab_size, d)),
        "pos_embedding": EMBED_INIT_STD * rng.standard_normal((cfg.block_size, d)),
    }
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        p[pre + "attn_norm.weight"], p[pre + "attn_norm.bias"] = layernorm_default(d)
        p[pre + "attn.qkv"], _ = linear_default(rng, cfg.inner_dim, d, bias=False)
        if cfg.project_out:
            p[pre + "attn.out.weight"], p[pre + "attn.out.bias"] = linear_default(rng, d, cfg.inner_dim)
        p[pre + "ista_norm.weight"], p[pre + "ista_norm.bias"] = layernorm_default(d)
        p[pre + "ista.D"] = kaiming_uniform(rng, (d, cfg.code_dim), fan_in=d)
    p["final_norm.weight"], p["final_norm.bias"] = layernorm_default(d)
    xp = get_xp(device)
    return {k: xp.asarray(v, dtype=dtype) for k, v in p.items()}


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


def _check_params(params: dict, cfg: Config, tokens) -> None:
    expected = shapes(cfg)
    missing = sorted(set(expected) - set(params))
    if missing:
        raise ValueError(f"params is missing {missing[:5]} for this config (was it made by init with the same config?)")
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise ValueError(f"params[{name!r}] has shape {tuple(params[name].shape)}, the config expects {shape}")
    if array_module(tokens) is not array_module(params["tok_embedding"]):
        raise TypeError("tokens and params must both be NumPy arrays or both CuPy arrays")


class LayerCache(NamedTuple):
    attention: AttentionCache
    norm: LayerNormCache
    sparse: object  # ODLCache (overcomplete) or ISTACache (ista)


class LMCache(NamedTuple):
    cfg: Config
    tokens: object  # (B, T) int
    layers: list  # [LayerCache]
    final_norm: LayerNormCache
    head_input: object  # (B, T, d): h = LN_f(Z^L), for the head's share of dE
    tok_embedding: object  # (V, d): the tied head's weight, for dh


def _sparse_forward(y, D, cfg: Config):
    if cfg.sparse == "overcomplete":  # D A_T with the tied decoder D̂ = D
        return odl_forward(y, D, D, steps=cfg.sparse_steps, step=cfg.ista_step, lambd=cfg.ista_lambd)
    return ista_forward(y, D, cfg.ista_step, cfg.ista_lambd)


def _sparse_backward(dout, cache):
    if isinstance(cache, ODLCache):
        dy, dD, dD_hat, _ = odl_backward(dout, cache)
        dD += dD_hat  # the tied dictionary: encoder and decoder gradients add
        return dy, dD
    assert isinstance(cache, ISTACache)
    return ista_backward(dout, cache)


def forward(params: dict, tokens, cfg: Config):
    """Logits (B, T, vocab) of the next token at every position, and the cache for :func:`backward`."""
    check_tokens(tokens, cfg)
    _check_params(params, cfg, tokens)
    T = tokens.shape[1]
    E = params["tok_embedding"]  # (V, d)
    z = E[tokens]  # (B, T, d)
    z += params["pos_embedding"][:T]
    layers = []
    for i in range(cfg.depth):
        pre = f"layers.{i}."
        z, attn_cache = attention_sublayer_forward(z, params, pre, heads=cfg.heads, causal=True)
        y, norm_cache = layernorm_forward(z, params[pre + "ista_norm.weight"], params[pre + "ista_norm.bias"])
        branch, sparse_cache = _sparse_forward(y, params[pre + "ista.D"], cfg)
        z = z + branch
        layers.append(LayerCache(attn_cache, norm_cache, sparse_cache))
    h, final_cache = layernorm_forward(z, params["final_norm.weight"], params["final_norm.bias"])  # (B, T, d)
    logits = h @ E.T  # (B, T, V): the head tied to the embedding
    return logits, LMCache(cfg, tokens, layers, final_cache, h, E)


def backward(dlogits, cache: LMCache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dlogits`` (B, T, V)."""
    cfg = cache.cfg
    xp = array_module(dlogits)
    grads = {}
    E = cache.tok_embedding
    V, d = E.shape
    # forward: logits = h Eᵀ
    dE = dlogits.reshape(-1, V).T @ cache.head_input.reshape(-1, d)  # (V, d): the head's share
    dz = dlogits @ E  # (B, T, d)
    dz, grads["final_norm.weight"], grads["final_norm.bias"] = layernorm_backward(dz, cache.final_norm)
    for i in reversed(range(cfg.depth)):
        pre = f"layers.{i}."
        layer = cache.layers[i]
        # forward: z_out = z_half + SC(LN(z_half))
        dy, grads[pre + "ista.D"] = _sparse_backward(dz, layer.sparse)
        dz_half, grads[pre + "ista_norm.weight"], grads[pre + "ista_norm.bias"] = layernorm_backward(dy, layer.norm)
        dz_half += dz
        dz = attention_sublayer_backward(dz_half, layer.attention, pre, grads)
    T = cache.tokens.shape[1]
    grads["pos_embedding"] = xp.zeros((cfg.block_size, d), dtype=dz.dtype)
    grads["pos_embedding"][:T] = dz.sum(axis=0)
    # forward: z = E[tokens]; the gradient adds up over the positions holding each token
    onehot = (cache.tokens.reshape(-1)[:, None] == xp.arange(V)).astype(dz.dtype)  # (B T, V)
    dE += onehot.T @ dz.reshape(-1, d)
    grads["tok_embedding"] = dE
    return grads


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
