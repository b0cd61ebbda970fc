"""The CRATE token model, in both directions: causal CRATE (CRATE-GPT) and CRATE-BERT (docs/reference.md §7, §9).

Each layer is the CRATE step with a residual around both halves::

    Z^{ℓ+½} = Z^ℓ + MSSA(LN(Z^ℓ))       causal (cfg.causal): token t attends to tokens ≤ t only;
                                        bidirectional: every token attends to every token
    Z^{ℓ+1} = Z^{ℓ+½} + SC(LN(Z^{ℓ+½}))  sparse coding, then decoding

after ``Z⁰ = E[tokens] + P[positions]`` (token and learned position embeddings); the output is
``logits = LN_f(Z^L) Eᵀ``, the token head tied to the token embedding. The causal model is a
next-token model (:func:`next_token_loss`, the cross-entropy averaged over all positions); the
bidirectional one a masked-token model (CRATE-BERT: :func:`masked_token_loss`, the cross-entropy on
the chosen positions only, the masking recipe in :mod:`whitebox.train.mlm_task`). The MLM head is
the same tied head.

With ``cfg.num_classes`` the model is a sequence classifier instead (a downstream task on the
same backbone): ``logits = Linear(LN_h(mean_t LN_f(Z^L)_t))`` (B, classes), the head of
:mod:`whitebox.blocks.head` with mean pooling, under the names ``head_norm.*``, ``head.*`` that
fine-tuning re-initialises (:mod:`whitebox.weights.finetune`).

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
the lower-triangular mask before the softmax when causal. Initialisation: token and position embeddings
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

    bert = Config(vocab_size=85, causal=False)              # CRATE-BERT
    loss, dlogits = masked_token_loss(logits, targets, chosen)   # mean over the chosen positions
    top = fill_masks(params, bert, ids, mask_id, top_k=5)   # [(position, ids (k,), probs (k,)), ...]
    classifier = Config(vocab_size=85, causal=False, num_classes=3)  # forward -> (B, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import numpy as np

from ..backend import array_module, to_host
from ..blocks import BLOCKS, causal_layer, head, stack, transformer_layer
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
from ..layers.loss import cross_entropy, log_softmax
from ..layers.mssa import subspaces
from .checks import check_crate_block, check_params, positive_int
from .config import ModelConfig

EMBED_INIT_STD = 0.02  # GPT-2


@dataclass(frozen=True)
class Config(ModelConfig):
    """A CRATE token model's hyper-parameters (η = λ = 0.1, C = 4, two proximal steps).

    ``causal``: the attention mask of a next-token model (True) or none (False, CRATE-BERT);
    ``num_classes``: None for the tied token head, or the classes of a sequence classifier.

    ``block="transformer"``: the GPT baseline (causal MHSA and an MLP of width ``mlp_ratio · dim``;
    the sparse-coding fields are then unused), or with ``causal=False`` the BERT baseline.
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
    causal: bool = True
    num_classes: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.num_classes is not None:
            positive_int("num_classes", self.num_classes)

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
        return transformer_layer, TransformerLayerSpec(cfg.dim, cfg.heads, cfg.dim_head, cfg.mlp_ratio,
                                                        causal=cfg.causal)
    return causal_layer, layer_spec(cfg)


def layer_spec(cfg: Config) -> CausalLayerSpec:
    """The block every layer of ``cfg`` is: published MSSA (with the causal mask if ``cfg.causal``), residual
    sparse coding."""
    attention = AttentionSpec(cfg.dim, cfg.heads, cfg.dim_head, causal=cfg.causal)
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
        **(head.shapes(d, cfg.num_classes) if cfg.num_classes else {}),
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
    head: object  # LinearCache of logits = h Eᵀ (tied to the embedding), or a classifier's HeadCache

    @property
    def layers(self) -> list:
        """The per-layer caches (:class:`whitebox.blocks.causal_layer.CausalLayerCache`)."""
        return self.stack.layers


def forward(params: dict, tokens, cfg: Config, *, keep_features: bool = False):
    """Logits and the cache for :func:`backward`: (B, T, vocab) of the token at every position (the
    next one if causal, the masked one if not), or (B, classes) with ``cfg.num_classes``."""
    check_tokens(tokens, cfg)
    check_params(params, shapes(cfg), tokens, "tokens")
    z, embed = token_embed_forward(tokens, params["tok_embedding"], params["pos_embedding"])  # (B, T, d)
    z, layers = stack.forward(z, params, *layer_block(cfg), cfg.depth, keep=keep_features)
    h, final_cache = layernorm_forward(z, params["final_norm.weight"], params["final_norm.bias"])  # (B, T, d)
    if cfg.num_classes:
        logits, head_cache = head.forward(h, params, "mean")  # (B, classes)
    else:
        logits, head_cache = tied_head_forward(h, params["tok_embedding"])  # (B, T, V)
    return logits, LMCache(cfg, embed, layers, final_cache, head_cache)


def backward(dlogits, cache: LMCache) -> dict:
    """Gradients of every parameter (same keys and shapes as ``params``) for ``dlogits`` (the logits' shape)."""
    grads = {}
    if cache.cfg.num_classes:
        dh, grads = head.backward(dlogits, cache.head)  # (B, T, d) and the classifier's parameters
        dE_head = 0.0
    else:
        dh, dE_head = tied_head_backward(dlogits, cache.head)  # (B, T, d), the head's share of dE
    dz, grads["final_norm.weight"], grads["final_norm.bias"] = layernorm_backward(dh, cache.final_norm)
    dz, layer_grads = stack.backward(dz, cache.stack)
    grads.update(layer_grads)
    dE_embed, grads["pos_embedding"] = token_embed_backward(dz, cache.embed)
    grads["tok_embedding"] = dE_embed + dE_head  # the tied matrix: head and embedding gradients add
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


def masked_token_loss(logits, targets, chosen):
    """``(loss, dlogits)``: cross-entropy of ``targets`` (B, T) under ``logits`` (B, T, V) on the ``chosen``
    positions only (a (B, T) bool mask), averaged over them; ``dlogits`` is zero elsewhere.

    With ``w = chosen / Σ chosen`` (M chosen positions) and ``p = softmax(logits)``::

        loss = −Σ_{b,t} w_bt log p_bt[targets_bt],   dlogits = w (p − onehot(targets))

    Written as a weighted sum over every position, it needs no host transfer: ``loss`` is a 0-d
    array of the logits' module. An empty ``chosen`` gives a NaN loss (the training loop stops on it).
    """
    if targets.shape != logits.shape[:-1] or chosen.shape != logits.shape[:-1]:
        raise ValueError(f"targets and chosen must have shape {tuple(logits.shape[:-1])} (the logits' leading axes), "
                         f"got {tuple(targets.shape)} and {tuple(chosen.shape)}")
    if chosen.dtype != bool:
        raise TypeError(f"chosen must be a bool mask, got dtype {chosen.dtype}")
    xp = array_module(logits)
    logp = log_softmax(logits)  # (B, T, V)
    picked = xp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (B, T): log p[target]
    w = chosen.astype(logits.dtype)
    w /= w.sum()  # (B, T): 1/M on the chosen positions, 0 elsewhere (in the logits' dtype)
    loss = -(w * picked).sum()
    dlogits = xp.exp(logp)  # softmax
    dlogits -= targets[..., None] == xp.arange(logits.shape[-1])  # p − onehot(targets)
    dlogits *= w[..., None]
    return loss, dlogits


def fill_masks(params: dict, cfg: Config, ids, mask_id: int, top_k: int = 5) -> list:
    """The ``top_k`` likeliest tokens at every ``mask_id`` of ``ids`` under a bidirectional model.

    ``ids``: a non-empty sequence of at most ``block_size`` token ids holding ``mask_id`` at least
    once. Returns ``[(position, token ids (k,), probabilities (k,)), ...]`` in the order of the
    positions, each from one forward pass over the whole sequence (all masks filled at once).
    """
    if cfg.causal or cfg.num_classes:
        raise ValueError("fill_masks needs a bidirectional token model (causal=False, no num_classes)")
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
        raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    positions = np.flatnonzero(ids == mask_id)
    if positions.size == 0:
        raise ValueError(f"the text holds no mask token (id {mask_id}) to fill")
    xp = array_module(params["tok_embedding"])
    logits, _ = forward(params, xp.asarray(ids[None]), cfg)  # (1, T, V)
    out = []
    for t in positions.tolist():
        p = next_token_distribution(logits[0, t])
        top = np.argsort(-p, kind="stable")[:top_k]
        out.append((t, top, p[top]))
    return out


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
    tokenizer : a tokenizer (:mod:`whitebox.data.text`) to encode ``prompt`` and decode the result.

    The context is the last ``block_size`` tokens. Returns the continuation only: a str with a
    tokenizer, else an int64 array (n_chars,).
    """
    if not cfg.causal or cfg.num_classes:
        raise ValueError("sample needs a causal next-token model (causal=True, no num_classes); "
                         "a bidirectional one fills masks instead (fill_masks)")
    if isinstance(n_chars, bool) or not isinstance(n_chars, (int, np.integer)) or n_chars < 0:
        raise ValueError(f"n_chars must be a non-negative integer, got {n_chars!r}")
    if not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use top_k=1 for greedy decoding), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if isinstance(prompt, str):
        if tokenizer is None:
            raise ValueError("a str prompt needs tokenizer= (a tokenizer of whitebox.data.text) to encode it")
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
