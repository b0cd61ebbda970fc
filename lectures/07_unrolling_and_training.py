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
# # Lecture 7 — A CRATE is an unrolled optimiser; train one and measure it
#
# Lectures 3 and 4 built the two half-steps of one iteration on the sparse rate reduction objective:
#
# $$Z^{\ell+1/2} = Z^\ell + \mathrm{MSSA}(\mathrm{LN}(Z^\ell)\mid U^\ell_{[K]}) \quad\text{(compress: a step on } R^c\text{)},\qquad
#   Z^{\ell+1} = \mathrm{ISTA}(\mathrm{LN}(Z^{\ell+1/2})\mid D^\ell) \quad\text{(sparsify)}.$$
#
# A CRATE of depth $L$ is $L$ such iterations **unrolled** into layers, each with its own parameters $U^\ell$ and
# $D^\ell$, which are then learned end to end by backpropagation on a task loss. This lecture
#
# 1. checks, on a CRATE with the paper's tied MSSA, that each layer really is the compression step followed by the
#    ISTA step, applied to the LayerNorm'd tokens;
# 2. trains a small CRATE (the published form) on real MNIST for a few seconds with a hand-written AdamW loop;
# 3. measures $R^c$, $R$ and sparsity layer by layer, before and after training, and plots them.

# %%
import time

import numpy as np

from whitebox.compression_step import tied_mssa_step
from whitebox.data import dataset_info, load_dataset, normalize
from whitebox.layers.ista import ista_forward
from whitebox.layers.layernorm import layernorm_forward
from whitebox.layers.loss import cross_entropy
from whitebox.layers.mssa import subspaces
from whitebox.models import crate
from whitebox.optim import AdamW
from whitebox.rate import coding_rate, compression_rate
from whitebox.schedules import warmup_cosine
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

FIGURES = []

info = dataset_info("mnist")
train_images, train_labels = load_dataset("mnist", "train")
test_images, test_labels = load_dataset("mnist", "test")
cfg = crate.Config(image_size=28, patch_size=7, channels=1, num_classes=10, dim=32, depth=4, heads=2, dim_head=16)
print(f"{cfg.num_tokens} tokens (16 patches of 7x7 + cls) of dimension {cfg.dim}, {cfg.depth} layers, "
      f"{crate.num_params(cfg):,} parameters")

# %% [markdown]
# ## 1. Each layer is one iteration
#
# With `mssa="tied"` the attention branch is the paper's step $c\,(\mathrm{MSSA}(Y) - Y)$ on $Y =
# \mathrm{LN}(Z^\ell)$, with $c = \kappa p/(N\varepsilon^2)$ (lecture 3). So the layer adds to $Z^\ell$ exactly the
# displacement that one tied compression step would apply to the normalised tokens, $Z^{\ell+1/2} = Z^\ell +
# \big(\text{step}(Y) - Y\big)$, and then replaces the tokens by their ISTA codes. `forward(..., keep_features=True)`
# keeps every $Z^\ell$ and $Z^{\ell+1/2}$; we recompute each from the lecture-3 and lecture-4 functions.

# %%
tied_cfg = cfg.replace(mssa="tied")
tied_params = crate.init(tied_cfg, seed=0, dtype=np.float64)
x_check = normalize(test_images[:4], info.mean, info.std, dtype=np.float64)
_, cache = crate.forward(tied_params, x_check, tied_cfg, keep_features=True)
feats = crate.layer_features(cache)
for layer in range(tied_cfg.depth):
    pre = f"layers.{layer}."
    Z = feats["inputs"][layer]
    Y, _ = layernorm_forward(Z, tied_params[pre + "attn_norm.weight"], tied_params[pre + "attn_norm.bias"])
    U = subspaces(tied_params[pre + "attn.qkv"], tied_cfg.heads)  # (K, d, p)
    step = tied_mssa_step(Y, U, tied_cfg.tied_kappa, tied_cfg.tied_eps, scale=tied_cfg.dim_head**-0.5)
    assert np.allclose(feats["midpoints"][layer], Z + step - Y, atol=1e-12)
    Y_half, _ = layernorm_forward(feats["midpoints"][layer], tied_params[pre + "ista_norm.weight"],
                                  tied_params[pre + "ista_norm.bias"])
    codes, _ = ista_forward(Y_half, tied_params[pre + "ista.D"], tied_cfg.ista_step, tied_cfg.ista_lambd)
    assert np.allclose(feats["outputs"][layer], codes, atol=1e-12)
    if layer + 1 < tied_cfg.depth:
        assert np.array_equal(feats["inputs"][layer + 1], feats["outputs"][layer])
print("every layer = compression step on LN(Z), then ISTA on LN(Z^{l+1/2}): checked")

# %% [markdown]
# ## 2. Measuring a model layer by layer
#
# For each layer $\ell$ and each test image (its $N$ tokens) we measure, in float64:
#
# * $R^c(Y^\ell\mid U^\ell_{[K]})$ and $R(Y^\ell)$ for $Y^\ell = \mathrm{LN}(Z^\ell)$, the tokens the layer's
#   attention sees, against the layer's **own** subspaces $U^\ell$, read from its `qkv` weight with
#   `layers.mssa.subspaces` ($\varepsilon = 0.5$);
# * the sparsity of the layer's output $Z^{\ell+1}$ (the ISTA codes): the fraction of exact zeros.
#
# The rate functions take a batch of token sets and return one value per image; we average over images. (The published
# CRATE measurement code differs in details: it scales each projected token to unit norm and uses $\varepsilon =
# 0.01$. Absolute values depend on such choices; we compare our own measurements with each other.)

# %%
EPS = 0.5
measure_x = normalize(test_images[1000:1064], info.mean, info.std, dtype=np.float64)


def measure(params, cfg):
    params64 = {k: v.astype(np.float64) for k, v in params.items()}
    _, cache = crate.forward(params64, measure_x, cfg, keep_features=True)
    feats = crate.layer_features(cache)
    rows = {"Rc": [], "R": [], "sparsity": []}
    for layer in range(cfg.depth):
        pre = f"layers.{layer}."
        Y, _ = layernorm_forward(feats["inputs"][layer], params64[pre + "attn_norm.weight"],
                                 params64[pre + "attn_norm.bias"])  # (images, N, d)
        U = subspaces(params64[pre + "attn.qkv"], cfg.heads)
        rows["Rc"].append(float(compression_rate(Y, U, EPS).mean()))
        rows["R"].append(float(coding_rate(Y, EPS).mean()))
        rows["sparsity"].append(float((feats["outputs"][layer] == 0).mean()))
    return {k: np.array(v) for k, v in rows.items()}, Y, U


params = crate.init(cfg, seed=0)  # float32 for training
at_init, _, _ = measure(params, cfg)

# %% [markdown]
# ## 3. Training on MNIST for a few seconds
#
# A plain loop: a batch, `crate.forward`, `cross_entropy`, `crate.backward`, `AdamW.step`, with a warmup-cosine
# learning rate. 2,048 training images, batch 32, 6 epochs; then the accuracy on 1,000 test images.

# %%
n_train, batch, epochs, base_lr = 2048, 32, 6, 2e-3
x_train = normalize(train_images[:n_train], info.mean, info.std)  # float32 (n, 1, 28, 28)
y_train = train_labels[:n_train]
x_test = normalize(test_images[:1000], info.mean, info.std)
y_test = test_labels[:1000]


def accuracy(params):
    logits, _ = crate.forward(params, x_test, cfg)
    return float((logits.argmax(-1) == y_test).mean())


optimizer = AdamW(lr=base_lr, weight_decay=0.05)
state = optimizer.init(params)
total_steps = epochs * (n_train // batch)
rng = np.random.default_rng(0)
accuracy_init = accuracy(params)
losses, start = [], time.perf_counter()
for epoch in range(epochs):
    order = rng.permutation(n_train)
    for i in range(0, n_train - batch + 1, batch):
        idx = order[i:i + batch]
        logits, cache = crate.forward(params, x_train[idx], cfg)
        loss, dlogits = cross_entropy(logits, y_train[idx])
        grads = crate.backward(dlogits, cache)
        lr = warmup_cosine(len(losses), base_lr=base_lr, total_steps=total_steps, warmup_steps=total_steps // 10)
        optimizer.step(params, grads, state, lr=lr)
        losses.append(float(loss))
seconds = time.perf_counter() - start
accuracy_trained = accuracy(params)
print(f"{len(losses)} steps in {seconds:.1f} s; loss {np.mean(losses[:10]):.3f} -> {np.mean(losses[-10:]):.3f}; "
      f"test accuracy {accuracy_init:.1%} -> {accuracy_trained:.1%} (chance 10%)")
assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
assert accuracy_trained > 0.5 > accuracy_init

# %% [markdown]
# ## 4. What training did to the layers
#
# The same measurements after training. The claims we *check* are only the robust ones: the measured values are what a
# direct computation from the definitions gives, and sparsities are fractions strictly between 0 and 1. How $R^c$, $R$
# and the sparsity evolve with depth and with training is **reported**, not asserted: in a 4-layer model trained for
# seconds it need not follow the trends the papers report for trained ImageNet models (compression improving with
# depth).

# %%
trained, Y_last, U_last = measure(params, cfg)
for name in ("Rc", "R", "sparsity"):
    print(f"{name:8s} by layer   init: {np.round(at_init[name], 3)}   trained: {np.round(trained[name], 3)}")

# the last measured value, recomputed from the definitions (lecture 1) for the last image
beta = cfg.dim_head / (cfg.num_tokens * EPS**2)
alpha = cfg.dim / (cfg.num_tokens * EPS**2)
Y1 = Y_last[-1]
by_definition_Rc = sum(0.5 * np.linalg.slogdet(np.eye(cfg.dim_head) + beta * (Y1 @ U).T @ (Y1 @ U))[1] for U in U_last)
by_definition_R = 0.5 * np.linalg.slogdet(np.eye(cfg.dim) + alpha * Y1.T @ Y1)[1]
assert np.isclose(compression_rate(Y_last, U_last, EPS)[-1], by_definition_Rc, rtol=1e-10)
assert np.isclose(coding_rate(Y_last, EPS)[-1], by_definition_R, rtol=1e-10)
for result in (at_init, trained):
    assert np.all((0 < result["sparsity"]) & (result["sparsity"] < 1))
    assert np.all(np.isfinite(result["Rc"])) and np.all(result["R"] > 0)

# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 3))
axes[0].plot(losses, lw=0.8)
axes[0].set_title("training loss (cross-entropy)")
axes[0].set_xlabel("step")
layers = np.arange(1, cfg.depth + 1)
for ax, name, title in zip(axes[1:], ("Rc", "R", "sparsity"),
                           (r"$R^c(\mathrm{LN}(Z^\ell)\mid U^\ell)$", r"$R(\mathrm{LN}(Z^\ell))$",
                            r"sparsity of $Z^{\ell+1}$ (fraction of zeros)")):
    ax.plot(layers, at_init[name], "o--", label="init")
    ax.plot(layers, trained[name], "s-", label="trained")
    ax.set_title(title)
    ax.set_xlabel("layer")
    ax.set_xticks(layers)
    ax.legend(fontsize=8)
fig.suptitle(f"CRATE on MNIST: {len(losses)} AdamW steps, test accuracy {accuracy_trained:.1%}", fontsize=10)
fig.tight_layout()
path = show(fig, "07_layerwise_measures.png", FIGURES)
print(f"wrote {path}")

# %% [markdown]
# **Summary.** A CRATE layer is one iteration of an optimiser on the sparse rate reduction objective; the network is
# that iteration unrolled, with learned subspaces and dictionaries. Training needed nothing but the hand-written
# backwards of lecture 6 and a few lines of AdamW. The layer-wise measurements are the kind of evidence the papers
# use; with a model this small and this briefly trained, read them as measurements, not as confirmation.
