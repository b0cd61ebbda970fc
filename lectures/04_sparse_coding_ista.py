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
# # Lecture 4 — Sparse coding: why the MLP is a ReLU of a linear map
#
# After the attention block has compressed the tokens against the subspaces, CRATE's second block makes them
# **sparse**: it takes one step of ISTA (the iterative shrinkage-thresholding algorithm) on a non-negative LASSO
# problem. This lecture derives that step:
#
# 1. the non-negative LASSO and the proximal-gradient method;
# 2. the proximal operator of $\lambda\|\cdot\|_1$ plus "$\ge 0$" is a shifted **ReLU**;
# 3. one ISTA step is CRATE's MLP block, and the two-matmul form equals the published three-matmul one;
# 4. the descent property for $\eta \le 1/\|D\|_2^2$, checked on real MNIST patches;
# 5. how this step stands in for the objective's $\lambda\|Z\|_0 - R(Z)$, and where the expansion term $-R$ went.
#
# Math layout has tokens as columns ($Z\in\mathbb{R}^{d\times N}$); code has them as rows, so $Dz$ becomes `x @ D.T`
# and $D^\top z$ becomes `x @ D`.

# %%

import time

import numpy as np

from whitebox.data import load_dataset
from whitebox.gradcheck import grad_errors
from whitebox.init import kaiming_uniform
from whitebox.layers.embedding import patchify
from whitebox.layers.ista import DEFAULT_LAMBD, DEFAULT_STEP, ista_forward
from whitebox.layers.layernorm import layernorm_forward
from whitebox.rate import coding_rate, compression_rate
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

FIGURES = []
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. The non-negative LASSO and a proximal-gradient step
#
# Given tokens $Z$ and a dictionary $D$, find non-negative, sparse codes $A$ with $Z \approx DA$:
#
# $$\min_{A\ge 0}\; F(A) = \underbrace{\tfrac12\|Z - DA\|_F^2}_{f(A),\ \text{smooth}} + \underbrace{\lambda\|A\|_1}_{g(A)} .$$
#
# $f$ has gradient $\nabla f(A) = D^\top(DA - Z)$, which is Lipschitz with constant $L = \|D\|_2^2$. $g$ (with the
# constraint) has no gradient, but a **proximal operator** $\operatorname{prox}_{\eta g}(X) = \arg\min_{A\ge0}
# \tfrac12\|A - X\|^2 + \eta\lambda\|A\|_1$. A proximal-gradient step is a gradient step on $f$ followed by the prox
# of $g$:
#
# $$A^+ = \operatorname{prox}_{\eta g}\big(A - \eta D^\top(DA - Z)\big).$$
#
# Both facts about $f$, checked: the gradient against finite differences, and the Lipschitz bound (with equality along
# the top right-singular vector of $D$).

# %%
d, n = 12, 30
D = rng.standard_normal((d, d))
Zc = rng.standard_normal((d, n))  # math layout: tokens as columns


def f(A):
    return 0.5 * ((Zc - D @ A) ** 2).sum()


def grad_f(A):
    return D.T @ (D @ A - Zc)


A0, A1 = rng.standard_normal((d, n)), rng.standard_normal((d, n))
L = np.linalg.norm(D, 2) ** 2
assert grad_errors(f, {"A": A0}, {"A": grad_f(A0)})["A"] < 1e-6
assert np.linalg.norm(grad_f(A0) - grad_f(A1)) <= L * np.linalg.norm(A0 - A1)
top = np.outer(np.linalg.svd(D)[2][0], np.ones(n))  # every column along the top right-singular vector
assert np.isclose(np.linalg.norm(grad_f(A0 + top) - grad_f(A0)), L * np.linalg.norm(top))

# %% [markdown]
# ## 2. The proximal operator is ReLU$(x - \eta\lambda)$
#
# The problem separates over entries: minimise $\phi(a) = \tfrac12(a - x)^2 + \eta\lambda a$ over $a \ge 0$. Where $a
# > 0$, $\phi'(a) = a - x + \eta\lambda = 0$ gives $a = x - \eta\lambda$, valid when that is positive; otherwise
# $\phi$ increases on $[0, \infty)$ and the minimum is at $a = 0$. Together:
#
# $$\operatorname{prox}_{\eta g}(x) = \max(x - \eta\lambda,\ 0) = \operatorname{ReLU}(x - \eta\lambda).$$
#
# Check by brute force: minimise $\phi$ on a fine grid of $a\ge0$ for many $x$.

# %%
eta, lambd = DEFAULT_STEP, DEFAULT_LAMBD  # CRATE's eta = lambda = 0.1
xs = np.linspace(-1, 1, 41)
grid = np.linspace(0, 2, 20_001)  # spacing 1e-4
phi = 0.5 * (grid[None, :] - xs[:, None]) ** 2 + eta * lambd * grid[None, :]
brute_force = grid[phi.argmin(axis=1)]
assert np.abs(brute_force - np.maximum(xs - eta * lambd, 0)).max() <= 1e-4

# %% [markdown]
# Without the constraint $a\ge 0$ the same computation gives **soft thresholding**, $\operatorname{sign}(x)\max(|x| -
# \eta\lambda, 0)$, which lets negative codes through. The non-negativity is what turns the shrinkage into a ReLU:

# %%
grid_all = np.linspace(-2, 2, 40_001)
phi_all = 0.5 * (grid_all[None, :] - xs[:, None]) ** 2 + eta * lambd * np.abs(grid_all[None, :])
soft = np.sign(xs) * np.maximum(np.abs(xs) - eta * lambd, 0)
assert np.abs(grid_all[phi_all.argmin(axis=1)] - soft).max() <= 1e-4
assert soft.min() < 0 <= np.maximum(xs - eta * lambd, 0).min()

# %% [markdown]
# ## 3. One ISTA step is CRATE's MLP block
#
# CRATE uses a square dictionary $D\in\mathbb{R}^{d\times d}$ and starts the iteration at $A = Z$ (the tokens are
# their own initial codes). One step:
#
# $$\mathrm{ISTA}(Z\mid D) = \operatorname{ReLU}\!\big(Z + \eta D^\top(Z - DZ) - \eta\lambda\mathbf 1\big)\qquad\text{(JMLR eq. 6, CRATE-alpha eq. 6)}.$$
#
# In code layout, with tokens as rows `x`, $DZ \leftrightarrow$ `x @ D.T` and $D^\top R \leftrightarrow$ `r @ D`. The
# published code writes `relu(x + η (x D − (x Dᵀ) D) − ηλ)`, three matmuls; grouping the residual first, `relu(x + η
# (x − x Dᵀ) D − ηλ)`, needs two. `whitebox.layers.ista.ista_forward` uses the second.

# %%
d, n = 48, 300
D = kaiming_uniform(rng, (d, d), fan_in=d)  # the published init: U(-sqrt(6/d), sqrt(6/d))
x = rng.standard_normal((n, d))  # (n, d) tokens as rows

math_layout = np.maximum(x.T + eta * D.T @ (x.T - D @ x.T) - eta * lambd, 0).T
three_matmuls = np.maximum(x + eta * (x @ D - (x @ D.T) @ D) - eta * lambd, 0)
two_matmuls = np.maximum(x + eta * (x - x @ D.T) @ D - eta * lambd, 0)
out, _ = ista_forward(x, D, eta, lambd)
assert np.allclose(three_matmuls, math_layout, atol=1e-12)
assert np.allclose(two_matmuls, three_matmuls, atol=1e-12)
assert np.allclose(out, two_matmuls, atol=1e-12)

# %% [markdown]
# Each `(n, d) @ (d, d)` product costs $2nd^2$ flops, so the regrouping saves a third of the block's matmul work. Timed
# at a size where the matmuls dominate:

# %%
x_big = rng.standard_normal((4000, 128))
D_big = kaiming_uniform(rng, (128, 128), fan_in=128)


def best_time(fun, repeats=7):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fun()
        times.append(time.perf_counter() - start)
    return min(times)


t_three = best_time(lambda: np.maximum(x_big + eta * (x_big @ D_big - (x_big @ D_big.T) @ D_big) - eta * lambd, 0))
t_two = best_time(lambda: ista_forward(x_big, D_big, eta, lambd))
print(f"three matmuls {t_three * 1e3:.2f} ms, two matmuls (whitebox) {t_two * 1e3:.2f} ms: ratio {t_two / t_three:.2f}"
      f" (flop ratio 2/3)")
# (the times are printed, not asserted: a timing depends on the machine and its load)

# %% [markdown]
# **Why this is an MLP.** Everything inside the ReLU is linear in $z$: $z + \eta D^\top(z - Dz) = Mz$ with $M = I +
# \eta D^\top(I - D)$. So
#
# $$\mathrm{ISTA}(z) = \operatorname{ReLU}(Mz + b), \qquad b = -\eta\lambda\mathbf 1:$$
#
# a linear map, a bias and a ReLU, the first half of a transformer's MLP. What is unusual is where the weights come
# from: $M$ is tied to a dictionary $D$, and the bias is the sparsity threshold.

# %%
M = np.eye(d) + eta * D.T @ (np.eye(d) - D)  # math layout: acts on columns
assert np.allclose(np.maximum(x @ M.T - eta * lambd, 0), out, atol=1e-12)

# %% [markdown]
# **Where the zeros come from.** The pre-activation decreases entrywise as $\lambda$ grows, so the set of zeroed
# entries can only grow: the fraction of zeros of the output is non-decreasing in $\lambda$. But at CRATE's $\eta =
# \lambda = 0.1$ the threshold is $\eta\lambda = 0.01$, tiny next to the pre-activations (of size about 1 here): the
# **ReLU alone** (at $\lambda = 0$) already zeros about half the entries, because the pre-activation is roughly
# symmetric about 0, and the threshold adds well under one point. The threshold only dominates when $\eta\lambda$ is
# comparable to the pre-activations.

# %%
lambdas = np.array([0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0])
zero_fraction = np.array([float((ista_forward(x, D, eta, lam)[0] == 0).mean()) for lam in lambdas])
print("fraction of zeros for lambda =", lambdas.tolist(), ":", np.round(zero_fraction, 3))
assert np.all(np.diff(zero_fraction) >= 0)
assert 0.4 < zero_fraction[0] < 0.6  # the ReLU alone: about half
assert zero_fraction[1] - zero_fraction[0] < 0.01  # CRATE's lambda = 0.1 adds under one point
assert zero_fraction[-1] > 0.9  # only a large threshold makes the codes really sparse

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.2))
ax.semilogx(lambdas[1:], zero_fraction[1:], "o-", label="ISTA output")
ax.axhline(zero_fraction[0], color="k", ls="--", label=r"$\lambda = 0$: the ReLU alone")
ax.axvline(DEFAULT_LAMBD, color="r", ls=":", label=r"CRATE's $\lambda = 0.1$")
ax.set_xlabel(r"$\lambda$ (threshold $\eta\lambda$, $\eta = 0.1$)")
ax.set_ylabel("fraction of zero codes")
ax.set_title("at CRATE's setting the ReLU, not the threshold, makes the zeros")
ax.legend(fontsize=8)
show(fig, "04_zeros_vs_lambda.png", FIGURES)

# %% [markdown]
# ## 4. The descent property, on real data
#
# **Claim.** If $\eta \le 1/L$ with $L = \|D\|_2^2$, a proximal-gradient step from a feasible $A$ (here $A\ge0$) never
# increases $F$. *Sketch:* $\nabla f$ is $L$-Lipschitz, so $f(B) \le f(A) + \langle\nabla f(A), B - A\rangle +
# \tfrac{L}{2}\|B-A\|^2$; $A^+$ minimises the right-hand side with $\tfrac1{2\eta}\ge\tfrac L2$, plus $g$, and $B = A$
# is a candidate.
#
# Our tokens: the 192 7×7 patches of 12 MNIST test digits, each normalised by a LayerNorm (as CRATE does before ISTA),
# coded against a kaiming-uniform $49\times49$ dictionary. We start from CRATE's first step $A_1 = \mathrm{ISTA}(Z)$
# (CRATE's start $A_0 = Z$ has negative entries, so it is not feasible and the claim starts at $A_1$) and iterate.

# %%
images, _ = load_dataset("mnist", "test")
patches = patchify(images[:12].astype(np.float64) / 255.0, 7)  # (12, 16, 49)
tokens, _ = layernorm_forward(patches.reshape(-1, 49), np.ones(49), np.zeros(49))  # (192, 49)
D = kaiming_uniform(np.random.default_rng(1), (49, 49), fan_in=49)
L = np.linalg.norm(D, 2) ** 2


def objective(A):
    """F(A) = ½‖Z − D A‖² + λ‖A‖₁ (code layout: D A ↔ A Dᵀ), for A ≥ 0."""
    return 0.5 * ((tokens - A @ D.T) ** 2).sum() + lambd * A.sum()


def ista_iteration(A, step):
    """A⁺ = ReLU(A − η Dᵀ(D A − Z) − ηλ) in code layout."""
    return np.maximum(A - step * (A @ D.T - tokens) @ D - step * lambd, 0)


A_1, _ = ista_forward(tokens, D, 1 / L, lambd)  # CRATE's block is this iteration started at A_0 = Z
assert np.allclose(A_1, ista_iteration(tokens, 1 / L), atol=1e-12)


def run_ista(step, iterations=25):
    A = ista_iteration(tokens, step)  # A_1
    values = [objective(A)]
    for _ in range(iterations):
        A = ista_iteration(A, step)
        values.append(objective(A))
    return np.array(values)


safe = run_ista(1 / L)
print(f"L = |D|^2 = {L:.2f};  F from {safe[0]:.1f} to {safe[-1]:.1f} with eta = 1/L")
assert np.all(np.diff(safe) <= 1e-9 * safe[0])

# %% [markdown]
# The bound is sufficient, not necessary, but it is not idle either: with $\eta = 3/L$ the iteration overshoots along
# the dictionary's top singular direction (each step multiplies it by $1 - \eta L = -2$) and blows up.

# %%
unsafe = run_ista(3 / L)
print(f"eta = 3/L: F from {unsafe[0]:.1f} to {unsafe[-1]:.3g}")
assert np.any(np.diff(unsafe) > 0) and unsafe[-1] > 100 * unsafe[0]

# %% [markdown]
# **And CRATE's $\eta = 0.1$?** For a square $d\times d$ matrix with i.i.d. entries of variance $\sigma^2$, $\|D\|_2
# \approx 2\sigma\sqrt d$. The kaiming-uniform init has $\sigma^2 = \tfrac13\cdot\tfrac6d = \tfrac2d$, so $\|D\|_2^2
# \approx 8$ and $1/L \approx 0.125$: at initialisation CRATE's step $\eta = 0.1$ is inside the descent region at the
# widths CRATE uses. (Training moves $D$; the guarantee is then no longer automatic.)

# %%
for width in (64, 192, 384):
    L_init = np.linalg.norm(kaiming_uniform(np.random.default_rng(width), (width, width), fan_in=width), 2) ** 2
    print(f"d = {width}: |D|^2 = {L_init:.2f}, 1/L = {1 / L_init:.3f}")
    assert DEFAULT_STEP <= 1 / L_init

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(safe / safe[0], "o-", ms=3, label=r"$\eta = 1/\|D\|^2$")
ax.plot(np.minimum(unsafe / unsafe[0], 3), "s-", ms=3, label=r"$\eta = 3/\|D\|^2$ (clipped at 3)")
ax.set_xlabel("ISTA iteration after the first")
ax.set_ylabel(r"$F(A_t)/F(A_1)$")
ax.set_title("non-negative LASSO on MNIST patches")
ax.legend(fontsize=8)
show(fig, "04_ista_descent.png", FIGURES)

# %% [markdown]
# ## 5. The objective's $\lambda\|Z\|_0 - R(Z)$, and where the expansion went
#
# The sparse rate reduction (JMLR eq. 2) is $R^c(Z\mid U_{[K]}) - R(Z) + \lambda\|Z\|_0$. Lecture 3 took a step on
# $R^c$; this block is meant to handle the other two terms together, $\lambda\|Z\|_0 - R(Z)$ (CRATE-alpha §2). The
# argument, following CRATE: posit a complete, incoherent (here: orthogonal) dictionary $D$ and look for codes $A$ with
# $Z\approx DA$. Then
#
# * **$-R$ is preserved, not optimised:** $R$ is invariant under orthogonal maps, $R(DA) = R(A)$, so codes that
#   reconstruct $Z$ carry its coding rate; sparsifying them does not pay for sparsity with rate;
# * **$\|Z\|_0$ is relaxed** to the convex $\|A\|_1$ with $A\ge0$: the non-negative LASSO, one ISTA step of it.
#
# And the expansion against **collapse** (lecture 1: minimising $R^c$ alone shrinks the tokens to 0) is done by two
# other pieces of the network: the LASSO's fidelity term ($A = 0$ costs $\tfrac12\|Z\|^2$, here nearly twice what
# ISTA reaches) and, above all, the **LayerNorm** in front of each block, which puts every token back on a sphere of radius
# $\sqrt d$, so the scale that collapse needs is not available. All three, checked:

# %%
B_orth = np.linalg.qr(rng.standard_normal((49, 49)))[0]  # an orthogonal dictionary
codes_orth = np.maximum(tokens @ B_orth, 0)  # some non-negative codes, (192, 49)
assert np.isclose(coding_rate(codes_orth @ B_orth.T, 0.5), coding_rate(codes_orth, 0.5), rtol=1e-10)
print(f"LASSO objective: at A = 0 {objective(np.zeros_like(tokens)):.1f}, after 26 ISTA steps {safe[-1]:.1f}")
assert safe[-1] < 0.6 * objective(np.zeros_like(tokens))
scales = [0.01, 0.1, 1.0, 10.0]  # applied to the (LayerNorm'd) patch tokens
U_patch = np.linalg.qr(rng.standard_normal((49, 48)))[0].reshape(49, 4, 12).transpose(1, 0, 2)  # (4, 49, 12)
rc_raw = [float(compression_rate(s * tokens, U_patch, 0.5)) for s in scales]
rc_after_ln = [float(compression_rate(layernorm_forward(s * tokens, np.ones(49), np.zeros(49))[0], U_patch, 0.5))
               for s in scales]
print("Rc of s * tokens:           ", np.round(rc_raw, 3))
print("Rc of LayerNorm(s * tokens):", np.round(rc_after_ln, 3))
assert rc_raw[0] < 0.01 * rc_raw[-1]  # without LayerNorm, shrinking lowers Rc towards 0 (collapse)
assert np.ptp(rc_after_ln[1:]) < 0.01 * rc_after_ln[-1]  # after LayerNorm the scale is gone ...
assert rc_after_ln[0] < rc_after_ln[-1]  # ... until the tokens' variance (1e-4 at s = 0.01) nears LayerNorm's eps 1e-5

# %% [markdown]
# **Summary.** The MLP of CRATE is one proximal-gradient step on a non-negative LASSO: a linear map built from the
# dictionary, a bias equal to the sparsity threshold $-\eta\lambda$, and the ReLU that is the proximal operator of
# "$\lambda\|\cdot\|_1$ and non-negative". At CRATE's setting the ReLU makes most of the zeros. The block stands in
# for $\lambda\|Z\|_0 - R(Z)$: the rate is carried by reconstruction through an (ideally orthogonal) dictionary, and
# the LayerNorms keep the network from the collapse that $R^c$ alone would reward. Lecture 5 shows how CRATE-alpha
# changes this block to scale.
