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
# # Lecture 5 — CRATE-alpha: an overcomplete, decoupled, residual sparse-coding block
#
# CRATE's ISTA block (lecture 4) codes $d$-dimensional tokens against a **square** dictionary $D\in\mathbb{R}^{d\times
# d}$ with one proximal step started at $A_0 = Z$. CRATE-alpha (Yang et al. 2024, §3) changes three things to make the
# model scale:
#
# * **+O, overcomplete:** $D\in\mathbb{R}^{d\times Cd}$ ($C = 4$): more atoms than dimensions; two proximal steps from
#   $A_0 = 0$ (eqs. 7-9); the output is $DA_2$ (eq. 10);
# * **+D, decoupled:** decode with a separate $\widehat D\in\mathbb{R}^{d\times Cd}$: $\mathrm{ODL}(Z) = \widehat
#   DA_2$ (eq. 11);
# * **+R, residual:** $Z^{\ell+1} = Z^{\ell+1/2} + \mathrm{ODL}(Z^{\ell+1/2})$ (eq. 12).
#
# We derive each piece, check it against `whitebox.layers.odl` and `whitebox.models.crate_alpha`, and see that with
# these changes the block becomes, literally, a transformer MLP.

# %%
import numpy as np

from whitebox.init import kaiming_uniform
from whitebox.layers.ista import ista_forward
from whitebox.layers.layernorm import layernorm_forward
from whitebox.layers.odl import DEFAULT_LAMBD, DEFAULT_STEP, odl_forward
from whitebox.models import crate_alpha
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

FIGURES = []
rng = np.random.default_rng(0)
eta, lambd = DEFAULT_STEP, DEFAULT_LAMBD  # 0.1 and 0.1 for every model size
d, C, N = 16, 4, 200
m = C * d  # number of atoms
D = kaiming_uniform(rng, (d, m), fan_in=m)  # the published init of fn.D, (d, C d)
D_hat = kaiming_uniform(rng, (d, m), fan_in=m)  # fn.D1
x = rng.standard_normal((N, d))  # tokens as rows (code layout)

# %% [markdown]
# ## 1. Two proximal steps from $A_0 = 0$
#
# The non-negative LASSO is the same as in lecture 4, now with $Cd$ atoms: $\min_{A\ge0} F(A) = \tfrac12\|Z - DA\|^2 +
# \lambda\|A\|_1$. Its proximal-gradient step is $\operatorname{Prox}_{\eta,\lambda}[A] = \operatorname{ReLU}(A - \eta
# D^\top(DA - Z) - \eta\lambda)$ (eq. 9). From $A_0 = 0$ the first step has no $DA$ term:
#
# $$A_1 = \operatorname{ReLU}(\eta D^\top Z - \eta\lambda), \qquad A_2 = \operatorname{ReLU}\big(A_1 - \eta D^\top(DA_1 - Z) - \eta\lambda\big).$$
#
# In code layout ($D^\top Z \leftrightarrow$ `x @ D`, $DA \leftrightarrow$ `a @ D.T`), with `D_hat=None` the block
# returns the codes:

# %%
A1 = np.maximum(eta * x @ D - eta * lambd, 0)  # (N, m)
A2 = np.maximum(A1 - eta * (A1 @ D.T - x) @ D - eta * lambd, 0)  # (N, m)
codes, _ = odl_forward(x, D, None, steps=2, step=eta, lambd=lambd)
assert np.allclose(odl_forward(x, D, None, steps=1, step=eta, lambd=lambd)[0], A1, atol=1e-12)
assert np.allclose(codes, A2, atol=1e-12)

# %% [markdown]
# **Descent, this time from a feasible start.** $A_0 = 0$ satisfies $A \ge 0$, so for $\eta\le1/\|D\|_2^2$ (lecture 4)
# $F(0)\ge F(A_1)\ge F(A_2)$. Is $\eta = 0.1$ inside that region? For a $d\times Cd$ matrix with i.i.d. entries of
# variance $\sigma^2$, $\|D\|_2\approx\sigma(\sqrt d + \sqrt{Cd})$; the kaiming-uniform init with fan-in $Cd$ has
# $\sigma^2 = 2/(Cd)$, so for large $d$, $\|D\|_2^2 \approx \tfrac2C(1+\sqrt C)^2 = 4.5$ when $C = 4$, and
# $1/\|D\|_2^2\approx 0.22 \ge 0.1$ (at our small $d = 16$ the norm comes out a little lower).

# %%
def lasso(A):
    return 0.5 * ((x - A @ D.T) ** 2).sum() + lambd * A.sum()


L = np.linalg.norm(D, 2) ** 2
print(f"|D|^2 = {L:.2f} (predicted {2 / C * (1 + np.sqrt(C)) ** 2:.2f});  F: {lasso(0 * A1):.1f} -> "
      f"{lasso(A1):.1f} -> {lasso(A2):.1f}")
assert eta <= 1 / L
assert L < 2 / C * (1 + np.sqrt(C)) ** 2  # at d = 16, below the large-d prediction
assert lasso(0 * A1) >= lasso(A1) >= lasso(A2)

# %% [markdown]
# ## 2. Why overcomplete
#
# The paper's reasons (§3): a single ISTA step against a complete, near-orthogonal dictionary "can make it ineffective
# in sparsifying the token representations", and overcomplete dictionary learning "enjoys a favorable optimization
# landscape"; more atoms give "a redundant yet expressive codebook". One consequence we can check exactly: if the
# overcomplete dictionary **contains** a square one, its best LASSO objective can only be lower (any code on the square
# dictionary is a code on the big one, with zeros elsewhere). We approximate both optima by running the proximal
# iteration long enough to converge, and count the atoms each token uses.

# %%
def lasso_minimum(Dict, iterations=400):
    step = 1 / np.linalg.norm(Dict, 2) ** 2
    A = np.zeros((N, Dict.shape[1]))
    for _ in range(iterations):
        A = np.maximum(A - step * (A @ Dict.T - x) @ Dict - step * lambd, 0)
    return 0.5 * ((x - A @ Dict.T) ** 2).sum() + lambd * A.sum(), A


D_square = kaiming_uniform(rng, (d, d), fan_in=d)
D_over = np.concatenate([D_square, kaiming_uniform(rng, (d, m - d), fan_in=d)], axis=1)  # contains D_square
F_square, A_square = lasso_minimum(D_square)
F_over, A_over = lasso_minimum(D_over)
print(f"LASSO minimum: square {F_square:.2f}, overcomplete {F_over:.2f};  "
      f"non-zero atoms per token: {(A_square > 0).sum(1).mean():.1f} of {d}, {(A_over > 0).sum(1).mean():.1f} of {m}")
used_square, used_over = (A_square > 0).sum(1).mean(), (A_over > 0).sum(1).mean()
print(f"fraction of the atoms used: {used_square / d:.0%} of the square dictionary, {used_over / m:.0%} of the "
      f"overcomplete one")
assert F_over < 0.95 * F_square  # strictly and clearly lower, not only "no higher"
assert used_over > used_square  # more atoms in absolute number ...
assert used_over / m < used_square / d  # ... but a smaller fraction of a larger codebook

# %% [markdown]
# So "few atoms chosen from many" is only half right here: each token uses *more* atoms in absolute number, but a
# smaller **fraction** of the codebook, and the fit is better.
#
# **At initialisation, as the block is used (two steps of size $\eta = 0.1$ from $A_0 = 0$), against $C$.** We sweep
# $C = 1, 2, 4, 8$ at $d = 64$ with the published kaiming-uniform init (fan-in $Cd$) and measure the sparsity of
# $A_2$, the reconstruction $\|Z - DA_2\|/\|Z\|$, the cosine between $DA_2$ and $Z$, and $\|D\|_2^2$ against the
# bound $1/\eta = 10$ of the descent property.

# %%
d_sweep, Cs = 64, np.array([1, 2, 4, 8])
x_sweep = rng.standard_normal((400, d_sweep))
sweep = {"zeros": [], "reconstruction": [], "cosine": [], "norm2": []}
for C_i in Cs:
    D_i = kaiming_uniform(np.random.default_rng(int(C_i)), (d_sweep, C_i * d_sweep), fan_in=C_i * d_sweep)
    A_i, _ = odl_forward(x_sweep, D_i, None, steps=2, step=eta, lambd=lambd)
    decoded_i = A_i @ D_i.T
    sweep["zeros"].append((A_i == 0).mean())
    sweep["reconstruction"].append(np.linalg.norm(x_sweep - decoded_i) / np.linalg.norm(x_sweep))
    sweep["cosine"].append(np.vdot(decoded_i, x_sweep) / (np.linalg.norm(decoded_i) * np.linalg.norm(x_sweep)))
    sweep["norm2"].append(np.linalg.norm(D_i, 2) ** 2)
sweep = {k: np.array(v) for k, v in sweep.items()}
predicted_norm2 = 2 / Cs * (1 + np.sqrt(Cs)) ** 2
for i, C_i in enumerate(Cs):
    print(f"C = {C_i}: zeros {sweep['zeros'][i]:.3f}  |Z - D A2|/|Z| {sweep['reconstruction'][i]:.3f}  "
          f"cos(D A2, Z) {sweep['cosine'][i]:.3f}  |D|^2 {sweep['norm2'][i]:.2f} (predicted {predicted_norm2[i]:.2f})")
assert np.all(np.diff(sweep["zeros"]) > 0)  # more atoms: a sparser code
assert np.all(np.diff(sweep["cosine"]) > 0)  # and a better-aimed reconstruction
assert np.ptp(sweep["reconstruction"]) < 0.05 and sweep["reconstruction"].min() > 0.8  # but two 0.1-steps reach little
assert np.all(np.diff(sweep["norm2"]) < 0) and np.all(sweep["norm2"] <= 1 / eta)  # inside the descent region
assert np.allclose(sweep["norm2"], predicted_norm2, rtol=0.15)

# %% [markdown]
# Read together: at initialisation the overcomplete block is sparser and points its reconstruction better, but two
# proximal steps of size 0.1 from zero leave the reconstruction error above 80% whatever $C$ is: the block needs
# training to reconstruct. And the larger $C$, the smaller $\|D\|_2^2$, so $\eta = 0.1$ sits deeper inside the descent
# region $\eta\le1/\|D\|_2^2$.

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
axes[0].plot(Cs, sweep["zeros"], "o-")
axes[0].set_title("fraction of zero codes in $A_2$")
axes[1].plot(Cs, sweep["reconstruction"], "o-", label=r"$\|Z - DA_2\|/\|Z\|$")
axes[1].plot(Cs, sweep["cosine"], "s-", label=r"$\cos(DA_2, Z)$")
axes[1].set_title("reconstruction at initialisation")
axes[1].legend(fontsize=8)
axes[2].plot(Cs, sweep["norm2"], "o-", label=r"$\|D\|_2^2$ measured")
axes[2].plot(Cs, predicted_norm2, "k--", label=r"$\frac{2}{C}(1+\sqrt{C})^2$")
axes[2].axhline(1 / eta, color="r", ls=":", label=r"$1/\eta$: descent bound")
axes[2].set_title("step-size bound")
axes[2].legend(fontsize=8)
for ax in axes:
    ax.set_xscale("log", base=2)
    ax.set_xticks(Cs, [str(c) for c in Cs])
    ax.set_xlabel("overcompleteness $C$")
show(fig, "05_overcomplete_sweep.png", FIGURES)

# %% [markdown]
# ## 3. Decoding, and decoupling the decoder
#
# The block must return tokens in $\mathbb{R}^d$, not codes in $\mathbb{R}^{Cd}$. **+O** decodes with the dictionary
# itself, $Z^{\ell+1} = DA_2$ (eq. 10): the LASSO's own reconstruction of $Z$. **+D** decodes with a separate learned
# $\widehat D$ (eq. 11). whitebox: pass `D` or `D_hat` as the decoder.

# %%
tied_out, _ = odl_forward(x, D, D, steps=2, step=eta, lambd=lambd)
decoupled_out, _ = odl_forward(x, D, D_hat, steps=2, step=eta, lambd=lambd)
assert np.allclose(tied_out, A2 @ D.T, atol=1e-12)
assert np.allclose(decoupled_out, A2 @ D_hat.T, atol=1e-12)


def cosine(a, b):
    return np.vdot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))


print(f"cos(D A2, Z) = {cosine(tied_out, x):.3f}   cos(D_hat A2, Z) at init = {cosine(decoupled_out, x):.3f}")
assert cosine(tied_out, x) > 0.5  # tied decoding is a (shrunk) reconstruction of the input
assert np.linalg.norm(tied_out) < np.linalg.norm(x)
assert abs(cosine(decoupled_out, x)) < 0.2  # an untrained decoupled decoder is unrelated to it

# %% [markdown]
# **Now the block is an MLP.** With one step from $A_0 = 0$ and a decoupled decoder,
#
# $$\mathrm{ODL}(Z) = \widehat D\,\operatorname{ReLU}(\eta D^\top Z - \eta\lambda\mathbf 1) = W_2\,\sigma(W_1^\top Z + b),\quad
#   W_1 = \eta D,\ W_2 = \widehat D,\ b = -\eta\lambda\mathbf 1,\ \sigma = \mathrm{ReLU},$$
#
# a transformer MLP with hidden width $Cd = 4d$ (the usual expansion factor), and with **+R** the usual residual $Z +
# \mathrm{MLP}(Z)$. The second proximal step makes it a slightly deeper network whose extra layer reuses $D$.

# %%
W1, W2, b = eta * D, D_hat, -eta * lambd
mlp = np.maximum(x @ W1 + b, 0) @ W2.T
assert np.allclose(odl_forward(x, D, D_hat, steps=1, step=eta, lambd=lambd)[0], mlp, atol=1e-12)

# %% [markdown]
# ## 4. The residual
#
# **+R** adds the block's output to its input (eq. 12; in the model the block sees $\mathrm{LN}(Z^{\ell+1/2})$). The
# paper's reading: "we incrementally refine $Z$ by exploiting the sparse codes": the codes *refine* $Z$ instead of
# replacing it. At initialisation the refinement is small (the
# codes are of size $\eta$), so with the residual each layer starts close to the identity, and without it the layer's
# output is a small vector unrelated to its input.

# %%
z_norm = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)  # LN(Z) without affine parameters
refinement, _ = odl_forward(z_norm, D, D_hat, steps=2, step=eta, lambd=lambd)
relative = np.linalg.norm(refinement) / np.linalg.norm(z_norm)
print(f"|ODL(LN Z)| / |LN Z| at init = {relative:.3f}")
assert relative < 0.2
assert cosine(z_norm + refinement, z_norm) > 0.95

# %% [markdown]
# ## 5. The ablation as four models
#
# `crate_alpha.ablation_configs` builds the paper's ablation (Fig. 1 left, Fig. 7): vanilla CRATE's block, then +O,
# +O+D, +O+D+R. The first is CRATE's ISTA exactly: one step from $A_0 = Z$ with a square $D$, the codes as output.

# %%
x_sq = rng.standard_normal((N, d))
D_sq = kaiming_uniform(rng, (d, d), fan_in=d)
assert np.allclose(odl_forward(x_sq, D_sq, None, steps=1, step=eta, lambd=lambd, start=x_sq)[0],
                   ista_forward(x_sq, D_sq, eta, lambd)[0], atol=1e-12)

base = crate_alpha.Config(image_size=28, patch_size=7, channels=1, num_classes=10, dim=32, depth=2, heads=2,
                          dim_head=16)
variants = crate_alpha.ablation_configs(base)
counts = {name: crate_alpha.num_params(cfg) for name, cfg in variants.items()}
for name, cfg in variants.items():
    print(f"{name:8s} C={cfg.overcomplete} steps={cfg.odl_steps} start={cfg.ista_start:5s} "
          f"decoupled={cfg.decoupled!s:5s} residual={cfg.residual!s:5s} parameters={counts[name]:,}")

# %% [markdown]
# What each modification costs in parameters, per layer: **+O** turns $d^2$ into $Cd^2$ ($+(C-1)d^2$), **+D** adds the
# decoder's $Cd^2$, **+R** is free.

# %%
dd, depth = base.dim**2, base.depth
assert counts["+O"] - counts["crate"] == depth * (C - 1) * dd
assert counts["+O+D"] - counts["+O"] == depth * C * dd
assert counts["+O+D+R"] == counts["+O+D"]

# %% [markdown]
# And each model's first layer computes the block its config describes: we recompute layer 0's codes from its
# midpoint $Z^{1/2}$ with `odl_forward`, and layer 1's input $Z^1$ from those codes (the codes themselves for CRATE,
# $DA$ for +O, $\widehat DA$ for +O+D, $Z^{1/2} + \widehat DA$ for +O+D+R).

# %%
images = rng.standard_normal((2, 1, 28, 28))
for name, cfg in variants.items():
    params = crate_alpha.init(cfg, seed=0, dtype=np.float64)
    _, cache = crate_alpha.forward(params, images, cfg, keep_features=True)
    feats = crate_alpha.layer_features(cache)
    mid = feats["midpoints"][0]
    y, _ = layernorm_forward(mid, params["layers.0.odl_norm.weight"], params["layers.0.odl_norm.bias"], cfg.norm_eps)
    D0 = params["layers.0.odl.D"]
    codes, _ = odl_forward(y, D0, None, steps=cfg.odl_steps, step=cfg.ista_step, lambd=cfg.ista_lambd,
                           start=y if cfg.ista_start == "input" else None)
    decoder = params.get("layers.0.odl.D1", D0)
    block = codes @ decoder.T if cfg.decode else codes
    next_input = mid + block if cfg.residual else block
    print(f"{name:8s} layer-0 codes {codes.shape}, fraction of zero codes {(codes == 0).mean():.2f}")
    assert np.allclose(feats["codes"][0], codes, atol=1e-12)
    assert np.allclose(feats["inputs"][1], next_input, atol=1e-12)

# %% [markdown]
# **What the paper measured.** We do not train ImageNet models here; the paper reports (Fig. 1 left, ImageNet-21K
# pre-training then ImageNet-1K, B/32): vanilla CRATE 68.5% top-1, +O adds 5.3 points, +D 2.0, +R 0.7, reaching
# CRATE-alpha-B/32's 76.5% ("improves the vanilla crate model by 8%"); Fig. 7 shows the training losses in the same
# order. These are the paper's numbers, quoted, not reproduced here.
