# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lecture 8 — Running the steps backwards (decoding), masking, and causal attention
#
# If an encoder layer is an optimisation step that *compresses* and *sparsifies*, a decoder layer should undo those
# steps in the opposite order. That is the CRATE-MAE decoder (Pai et al. 2024). Then two uses of the attention pattern
# itself: **masking** (an MAE encoder only sees the visible patches) and **causality** (a language model's token $t$
# may only look at tokens $\le t$). We check each on the layers.
#
# Code layout throughout: `x` is `(B, N, d)`, tokens are rows.

# %%
import numpy as np

from whitebox.compression_step import tied_mssa_step
from whitebox.gradcheck import vjp_errors
from whitebox.layers.activations import softmax_forward
from whitebox.blocks import decoder_layer
from whitebox.blocks.attention import AttentionSpec
from whitebox.blocks.decoder_layer import DecoderLayerSpec
from whitebox.layers.layernorm import layernorm_forward
from whitebox.layers.mssa import attention_heads_forward, mssa_backward, mssa_forward
from whitebox.models import crate_lm, crate_mae
from whitebox.rate import compression_rate
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

FIGURES = []
rng = np.random.default_rng(0)
B, N, d, K, p = 1, 10, 12, 3, 4
W_qkv = rng.standard_normal((K * p, d)) / np.sqrt(d)
W_out, b_out = rng.standard_normal((d, K * p)) / np.sqrt(K * p), 0.1 * rng.standard_normal(d)
Z = rng.standard_normal((B, N, d))
ones, zeros = np.ones(d), np.zeros(d)


def f(Z):
    """The compression branch of an encoder layer: MSSA(LN(Z)), published form."""
    return mssa_forward(layernorm_forward(Z, ones, zeros)[0], W_qkv, W_out, b_out, heads=K)[0]


# %% [markdown]
# ## 1. Undoing the compression step
#
# The encoder's half-step is $Y = Z + c\,f(Z)$ with $f = \mathrm{MSSA}\circ\mathrm{LN}$ and a step size $c$. The
# decoder takes the step **back**: $X = Y - c\,f(Y)$. It is not the exact inverse, because $f$ is evaluated at $Y$
# instead of $Z$; by Taylor,
#
# $$X = Z + c f(Z) - c f\big(Z + cf(Z)\big) = Z - c^2\, Df(Z)\,f(Z) + O(c^3),$$
#
# so the decoder inverts the encoder **to first order**, *provided* it uses the encoder's own $f$ (its weights) and
# the step is small: halving the step must quarter the error.

# %%
def round_trip_error(c):
    Y = Z + c * f(Z)
    X = Y - c * f(Y)
    return np.linalg.norm(X - Z) / np.linalg.norm(Z)


for c in (0.1, 0.05, 0.025, 0.0125):
    print(f"c = {c:<7}: |decode(encode(Z)) - Z| / |Z| = {round_trip_error(c):.2e}")
ratio = round_trip_error(0.025) / round_trip_error(0.0125)
print(f"step halved: error divided by {ratio:.2f}")
assert 3.8 < ratio < 4.2

# %% [markdown]
# **Both conditions matter.** The published encoder takes the full step, $Y = Z + f(Z)$, i.e. $c = 1$; there the
# "first-order" inverse is no inverse. And a decoder with weights of its own (CRATE-MAE's decoder layers have their
# own parameters, learned, not copied from the encoder) undoes nothing at initialisation: its error is of the size
# of the step itself, $c\,\|f(Z)\|/\|Z\|$, at every $c$.

# %%
W_qkv_other = rng.standard_normal((K * p, d)) / np.sqrt(d)
W_out_other = rng.standard_normal((d, K * p)) / np.sqrt(K * p)


def f_other(Z):
    """A compression branch with weights of its own (not the encoder's)."""
    return mssa_forward(layernorm_forward(Z, ones, zeros)[0], W_qkv_other, W_out_other, b_out, heads=K)[0]


def round_trip_error_other(c):
    Y = Z + c * f(Z)
    return np.linalg.norm(Y - c * f_other(Y) - Z) / np.linalg.norm(Z)


steps_c = np.logspace(-2.5, 0, 11)  # up to the model's c = 1
own = np.array([round_trip_error(c) for c in steps_c])
other = np.array([round_trip_error_other(c) for c in steps_c])
step_size = np.array([c * np.linalg.norm(f(Z)) / np.linalg.norm(Z) for c in steps_c])
print(f"at the model's step c = 1: round-trip error {own[-1]:.0%} with the encoder's own weights, "
      f"{other[-1]:.0%} with other weights (the step itself is {step_size[-1]:.0%} of |Z|)")
assert own[-1] > 0.3  # at c = 1 the first-order inverse is far from exact
assert np.all(other[:-1] > 0.5 * step_size[:-1])  # other weights: an error of the order of the step ...
assert np.all(other[:4] > 10 * own[:4])  # ... far above the own-weight error at small steps

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.loglog(steps_c, own, "o-", label="decoder with the encoder's weights")
ax.loglog(steps_c, other, "s-", label="decoder with other weights")
ax.loglog(steps_c, own[0] * (steps_c / steps_c[0]) ** 2, "k--", lw=0.8, label=r"slope 2 ($\propto c^2$)")
ax.axvline(1.0, color="r", ls=":", label="the model's step $c = 1$")
ax.set_xlabel("step size $c$")
ax.set_ylabel(r"$\|\mathrm{dec}(\mathrm{enc}(Z)) - Z\| / \|Z\|$")
ax.set_title("the decoder inverts the encoder only for small steps and its own weights", fontsize=9)
ax.legend(fontsize=7)
show(fig, "08_round_trip.png", FIGURES)

# %% [markdown]
# The exact inverse solves $Z = Y - c f(Z)$ for $Z$; for small $c$ the map $Z\mapsto Y - cf(Z)$ is a contraction, and
# iterating it from $Z_0 = Y$ converges. The decoder layer is the **first iterate**; at $c = 0.1$ each further one
# more than halves the error.

# %%
c = 0.1
Y = Z + c * f(Z)
X, errors = Y.copy(), []
for _ in range(8):
    X = Y - c * f(X)
    errors.append(np.linalg.norm(X - Z) / np.linalg.norm(Z))
print("fixed-point iterates, relative error:", " ".join(f"{e:.1e}" for e in errors))
assert np.isclose(errors[0], round_trip_error(c))
assert all(b < 0.5 * a for a, b in zip(errors, errors[1:])) and errors[-1] < 1e-6

# %% [markdown]
# **The denoising reading.** Lecture 3 showed that a compression step is a denoiser: it lowers $R^c$ by shrinking the
# tokens' spread off their subspaces. The decoder's step is the same step with the sign flipped, so it does the
# opposite: it **raises** $R^c$, putting back spread, like the forward (noising) direction of a diffusion model run
# against the encoder's denoising. Checked with the tied step on tokens near four subspaces:

# %%
U4 = np.linalg.qr(rng.standard_normal((16, 16)))[0].reshape(16, 4, 4).transpose(1, 0, 2)  # (4, 16, 4)
member4 = rng.integers(0, 4, size=32)
Z4 = np.einsum("kdp,np->nkd", U4, rng.standard_normal((32, 4)))[np.arange(32), member4]
Z4 = (Z4 + 0.1 * rng.standard_normal((32, 16)))[None]  # (1, 32, 16)
encoded = tied_mssa_step(Z4, U4, 1.0, 2.0)  # a compression (denoising) step
decoded_step = Z4 - (tied_mssa_step(Z4, U4, 1.0, 2.0) - Z4)  # the same displacement, reversed
rc = [float(compression_rate(t, U4, 2.0)[0]) for t in (encoded, Z4, decoded_step)]
print(f"Rc: after the encoder's step {rc[0]:.3f} < at Z {rc[1]:.3f} < after the decoder's step {rc[2]:.3f}")
assert rc[0] < rc[1] < rc[2]

# %% [markdown]
# ## 2. Undoing the sparse coding
#
# The encoder's second half-step replaces tokens by non-negative sparse codes $A$ with $Z \approx DA$. Decoding a code
# is therefore **linear**: multiply by the dictionary. An example where everything is exact: the dictionary $D = [B,
# -B]$ with $B$ orthogonal (every direction available with both signs). Then the non-negative LASSO
# $\min_{A\ge0}\tfrac12\|z - DA\|^2 + \lambda\|A\|_1$ is solved by $A = [\operatorname{ReLU}(B^\top z - \lambda),\
# \operatorname{ReLU}(-B^\top z - \lambda)]$, and $DA = B\,\operatorname{soft}_\lambda(B^\top z)$: each coordinate of
# $z$ in the basis $B$ comes back shrunk by at most $\lambda$. ISTA (lecture 4, step $\eta = 1/\|D\|^2 = 1/2$)
# converges to it:

# %%
lambd, n_tok = 0.1, 50
Bq = np.linalg.qr(rng.standard_normal((d, d)))[0]
D = np.concatenate([Bq, -Bq], axis=1)  # (d, 2d)
z = rng.standard_normal((n_tok, d))  # tokens as rows
eta = 1 / np.linalg.norm(D, 2) ** 2
A = np.zeros((n_tok, 2 * d))
for _ in range(60):
    A = np.maximum(A - eta * (A @ D.T - z) @ D - eta * lambd, 0)
closed_form = np.concatenate([np.maximum(z @ Bq - lambd, 0), np.maximum(-z @ Bq - lambd, 0)], axis=1)
assert np.isclose(eta, 0.5) and np.allclose(A, closed_form, atol=1e-10)
decoded = A @ D.T  # D A in code layout
assert np.abs((decoded - z) @ Bq).max() <= lambd + 1e-10
print(f"decoded with D: relative error {np.linalg.norm(decoded - z) / np.linalg.norm(z):.3f} (lambda = {lambd})")

# %% [markdown]
# ## 3. The CRATE-MAE decoder layer
#
# Undo the two encoder steps in reverse order: first the sparse coding (a learned $d\times d$ linear map $W$ playing
# the dictionary, after a LayerNorm, no ReLU), then the compression (subtract an MSSA step):
#
# $$Y = \mathrm{LN}(X)\,W^\top, \qquad X^+ = Y - \mathrm{MSSA}(\mathrm{LN}(Y)).$$
#
# The block `whitebox.blocks.decoder_layer` is exactly this:

# %%
params = {
    "linear_norm.weight": 1 + 0.1 * rng.standard_normal(d), "linear_norm.bias": 0.1 * rng.standard_normal(d),
    "linear.weight": rng.standard_normal((d, d)) / np.sqrt(d),
    "attn_norm.weight": 1 + 0.1 * rng.standard_normal(d), "attn_norm.bias": 0.1 * rng.standard_normal(d),
    "attn.qkv": W_qkv, "attn.out.weight": W_out, "attn.out.bias": b_out,
}
Yd = layernorm_forward(Z, params["linear_norm.weight"], params["linear_norm.bias"])[0] @ params["linear.weight"].T
by_hand = Yd - mssa_forward(layernorm_forward(Yd, params["attn_norm.weight"], params["attn_norm.bias"])[0],
                            W_qkv, W_out, b_out, heads=K)[0]
spec = DecoderLayerSpec(AttentionSpec(dim=d, heads=K, dim_head=p))
assert np.allclose(decoder_layer.forward(Z, params, spec)[0], by_hand, atol=1e-12)

# %% [markdown]
# ## 4. Masking: attending to the visible tokens only
#
# A masked autoencoder hides most patches (CRATE-MAE: 75%) and the encoder sees only the visible ones. Running
# attention on the visible subset is the same as running it on all tokens with the hidden **keys** removed from every
# softmax (scores set to $-\infty$): the hidden tokens get weight exactly 0.

# %%
cfg_mae = crate_mae.Config(image_size=16, patch_size=4, channels=1, dim=d, depth=1, heads=K, dim_head=p,
                           decoder_dim=d, decoder_heads=K, decoder_dim_head=p)
mask = crate_mae.make_mask(cfg_mae, batch=1, rng=0)
n_patches = cfg_mae.num_patches
print(f"{n_patches} patches, {cfg_mae.num_keep} visible ({1 - cfg_mae.num_keep / n_patches:.0%} masked)")
assert cfg_mae.num_keep == int(n_patches * (1 - 0.75))
assert sorted(np.concatenate([mask.keep[0], mask.masked[0]]).tolist()) == list(range(n_patches))

tokens = rng.standard_normal((1, n_patches, d))
visible = mask.keep[0]
on_subset, _ = attention_heads_forward(tokens[:, visible], W_qkv, K)  # (1, k, K p)

P = (tokens @ W_qkv.T).reshape(1, n_patches, K, p).transpose(0, 2, 1, 3)  # (1, K, n, p)
scores = p**-0.5 * P @ P.swapaxes(-1, -2)  # (1, K, n, n)
hidden_keys = np.ones(n_patches, dtype=bool)
hidden_keys[visible] = False
scores[..., hidden_keys] = -np.inf
attn = softmax_forward(scores)
with_key_mask = (attn @ P).transpose(0, 2, 1, 3).reshape(1, n_patches, K * p)[:, visible]
assert np.all(attn[..., hidden_keys] == 0)
assert np.allclose(on_subset, with_key_mask, atol=1e-12)

# %% [markdown]
# ## 5. Causal MSSA
#
# For next-token prediction, token $i$ may use tokens $j\le i$ only: set the scores with $j > i$ to $-\infty$ before
# the softmax (a lower-triangular mask). `mssa_forward(..., causal=True)` does this. Three checks of causality:
#
# 1. the attention matrix of every head is lower-triangular, and its rows still sum to 1;
# 2. changing token $j$ changes no output before position $j$;
# 3. the output at position $i$ equals ordinary (non-causal) MSSA run on the prefix $z_1,\dots,z_i$, read at its last
#    row.

# %%
y_causal, cache = mssa_forward(Z, W_qkv, W_out, b_out, heads=K, causal=True)
attn = cache.heads.attn  # (B, K, N, N)
assert np.all(np.triu(np.ones((N, N), dtype=bool), k=1) <= (attn == 0))
assert np.allclose(attn.sum(-1), 1.0, atol=1e-12)

for j in range(N):
    Z_changed = Z.copy()
    Z_changed[:, j] += rng.standard_normal(d)
    y_changed, _ = mssa_forward(Z_changed, W_qkv, W_out, b_out, heads=K, causal=True)
    assert np.allclose(y_changed[:, :j], y_causal[:, :j], rtol=0, atol=1e-14)
    assert not np.allclose(y_changed[:, j], y_causal[:, j])

for i in range(N):
    prefix_out, _ = mssa_forward(Z[:, : i + 1], W_qkv, W_out, b_out, heads=K)
    assert np.allclose(prefix_out[:, -1], y_causal[:, i], atol=1e-12)

# %% [markdown]
# The backward needs no special case: a masked score has probability 0, and the softmax backward $p\odot(dp - \langle
# dp, p\rangle)$ gives it gradient 0. The vector-Jacobian check passes with the mask on:

# %%
dy = rng.standard_normal(y_causal.shape)
dx, dW_qkv, dW_out, db = mssa_backward(dy, cache)
errors = vjp_errors(lambda x, W_qkv, W_out: mssa_forward(x, W_qkv, W_out, b_out, heads=K, causal=True)[0],
                    {"x": Z, "W_qkv": W_qkv, "W_out": W_out}, dy, {"x": dx, "W_qkv": dW_qkv, "W_out": dW_out})
print("causal MSSA backward, relative errors:", {k: f"{v:.1e}" for k, v in errors.items()})
assert max(errors.values()) < 1e-6

# %% [markdown]
# **A whole causal CRATE.** `whitebox.models.crate_lm` stacks causal MSSA and sparse coding into a language model.
# Causality survives the stacking (every other operation acts on each token separately): changing the token at
# position $t$ leaves the logits at positions before $t$ unchanged.

# %%
cfg_lm = crate_lm.Config(vocab_size=11, block_size=8, dim=16, depth=2, heads=2, dim_head=8)
lm_params = crate_lm.init(cfg_lm, seed=0, dtype=np.float64)
seq = rng.integers(0, cfg_lm.vocab_size, size=(1, 8))
logits, _ = crate_lm.forward(lm_params, seq, cfg_lm)
for t in range(8):
    changed = seq.copy()
    changed[0, t] = (changed[0, t] + 1) % cfg_lm.vocab_size
    logits_changed, _ = crate_lm.forward(lm_params, changed, cfg_lm)
    assert np.allclose(logits_changed[:, :t], logits[:, :t], rtol=0, atol=1e-12)
    assert not np.allclose(logits_changed[:, t], logits[:, t])
print("crate_lm: logits before position t never depend on the token at t")

# %% [markdown]
# **Summary.** Decoding runs the encoder's optimisation steps backwards: a linear map undoes sparse coding, and
# subtracting an MSSA step undoes compression to first order in the step size, if it uses the encoder's own weights
# and the step is small; at the published model's full step it is far from an inverse, and a decoder with its own
# learned weights inverts nothing until trained. Read as denoising, the decoder's step adds back the spread the
# encoder's step removed. Masking and causality are both
# statements about which keys enter each softmax, and both are checked above on the layers and on a whole causal
# model.
