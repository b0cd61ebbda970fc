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
# # Lecture 3 — From a gradient step on $R^c$ to multi-head self-attention
#
# Lecture 2 gave the gradient of the compression term. Here we take one step downhill,
#
# $$Z^+ = Z - \kappa\,\nabla_Z R^c(Z\mid U_{[K]}),$$
#
# and turn it, one approximation at a time, into CRATE's attention block, **measuring** what each approximation costs:
#
# 1. the exact step (a linear solve per head);
# 2. the first-order Neumann approximation of the inverse (error $\propto\beta^2$);
# 3. "the subspaces span the space" and a softmax in place of the similarity: MSSA, tied form;
# 4. what the published CRATE code changes (temperature $p^{-1/2}$, a learned output projection).
#
# Code layout: `Z` is `(B, N, d)` (a batch of $B$ sequences of $N$ tokens, here $B = 1$); the projections of head $k$
# are $P_k = ZU_k$, `(N, p)`, the transpose of the papers' $U_k^\top Z$. In this layout the exact step reads $Z^+ = Z
# - \kappa\sum_k \beta (I_N + \beta P_kP_k^\top)^{-1}P_kU_k^\top$.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from whitebox.compression_step import gradient_step, neumann_step, stack_subspaces, step_size_beta, tied_mssa_step
from whitebox.layers.activations import softmax_forward
from whitebox.layers.mssa import mssa_forward, mssa_tied_forward, subspaces
from whitebox.rate import compression_rate, compression_rate_grad

OUT = Path(os.environ.get("WHITEBOX_LECTURE_OUT") or tempfile.mkdtemp(prefix="whitebox-lectures-"))
OUT.mkdir(parents=True, exist_ok=True)
FIGURES = []
rng = np.random.default_rng(0)

# %% [markdown]
# The data: $K = 4$ orthonormal subspaces of dimension $p = 4$ that together span $\mathbb{R}^{16}$, and $N = 32$
# tokens, each drawn from one subspace plus a little noise.

# %%
d, K, p, N = 16, 4, 4, 32
U = np.linalg.qr(rng.standard_normal((d, d)))[0].reshape(d, K, p).transpose(1, 0, 2)  # (K, d, p)
members = rng.integers(0, K, size=N)
Z = np.einsum("kdp,np->nkd", U, rng.standard_normal((N, p)))[np.arange(N), members]
Z = (Z + 0.1 * rng.standard_normal((N, d)))[None]  # (1, N, d)
kappa, eps = 1.0, 2.0
beta = step_size_beta(Z, U, eps)  # p / (N eps^2)


def Rc(Z):
    return float(compression_rate(Z, U, eps)[0])


grad, _ = compression_rate_grad(Z, U, eps)  # (1, N, d)
print(f"beta = {beta:.4f}, Rc(Z) = {Rc(Z):.4f}")

# %% [markdown]
# ## 1. The exact step
#
# A small step along $-\nabla R^c$ lowers $R^c$ by about $\kappa\|\nabla R^c\|^2$ (first-order Taylor).

# %%
exact = gradient_step(Z, U, kappa, eps)
drop, predicted = Rc(exact) - Rc(Z), -kappa * np.vdot(grad, grad)
print(f"Rc change {drop:.5f}, first-order prediction {predicted:.5f}")
assert drop < 0
assert 0.9 < drop / predicted <= 1.0

# %% [markdown]
# ## 2. The Neumann approximation
#
# Each head needs $(I_N + \beta P_kP_k^\top)^{-1}$. For $\|\beta M\| < 1$ the Neumann series $(I + \beta M)^{-1} = I -
# \beta M + \beta^2M^2 - \dots$ converges; keeping the first two terms gives
#
# $$Z^+ \approx Z - \kappa\beta\sum_k P_kU_k^\top + \kappa\beta^2\sum_k (P_kP_k^\top)P_kU_k^\top .$$
#
# The dropped terms start at $\beta^2M^2$ inside a step of size $\propto\beta$: relative to the step the error is
# $O(\beta^2)$. Quartering $\beta$ (doubling $\varepsilon$) must divide it by about 16.

# %%
def neumann_relative_error(eps):
    exact = gradient_step(Z, U, kappa, eps)
    return np.linalg.norm(neumann_step(Z, U, kappa, eps) - exact) / np.linalg.norm(exact - Z)


P = Z[0] @ U  # (K, N, p)
spectral = max(np.linalg.norm(P[k] @ P[k].T, 2) for k in range(K))
print(f"beta |P P^T| = {beta * spectral:.3f} at eps = {eps}: the series converges")
assert 0.5 < beta * spectral < 1

epsilons = np.array([1.5, 3.0, 6.0, 12.0, 24.0])
betas = p / (N * epsilons**2)
errors = np.array([neumann_relative_error(e) for e in epsilons])
for b, e in zip(betas, errors):
    print(f"beta = {b:.2e}: relative error of the Neumann step {e:.3e}")
ratio = neumann_relative_error(6.0) / neumann_relative_error(12.0)
print(f"beta quartered (eps 6 -> 12): error divided by {ratio:.2f}")
assert 15 < ratio < 17
slope = np.polyfit(np.log(betas[2:]), np.log(errors[2:]), 1)[0]
print(f"log-log slope at small beta: {slope:.3f}")
assert abs(slope - 2) < 0.05

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(betas, errors, "o-", label="Neumann step vs exact step")
ax.loglog(betas, errors[-1] * (betas / betas[-1]) ** 2, "k--", label=r"slope 2 ($\propto\beta^2$)")
ax.set_xlabel(r"$\beta = p/(N\varepsilon^2)$")
ax.set_ylabel("relative error of the step")
ax.legend(fontsize=8)
path = OUT / "03_neumann_error.png"
fig.savefig(path, dpi=90, bbox_inches="tight")
plt.close(fig)
FIGURES.append(path)

# %% [markdown]
# ## 3. From the Neumann step to MSSA
#
# **The middle term.** If the subspaces span the space, $\sum_k U_kU_k^\top = I$ and $\sum_k P_kU_k^\top =
# Z\sum_kU_kU_k^\top = Z$. Ours do, exactly:

# %%
assert np.allclose(sum(U[k] @ U[k].T for k in range(K)), np.eye(d), atol=1e-12)
assert np.allclose(sum(P[k] @ U[k].T for k in range(K)), Z[0], atol=1e-12)

# %% [markdown]
# So the Neumann step becomes
#
# $$Z^+ \approx (1 - \kappa\beta)\,Z + \kappa\beta\sum_k \underbrace{(\beta P_kP_k^\top)}_{N\times N\ \text{similarity}} P_k\,U_k^\top .$$
#
# Read the last term token by token: token $i$ receives $\sum_j \beta\langle P_{k,i}, P_{k,j}\rangle P_{k,j}$, a sum
# of all tokens' projections weighted by how similar they are *inside subspace $k$*. That is attention with query =
# key = value = $U_k^\top z$. (Check: our rewriting equals whitebox's Neumann step.)

# %%
c = kappa * beta
rewritten = (1 - c) * Z[0] + c * sum((beta * P[k] @ P[k].T) @ P[k] @ U[k].T for k in range(K))
assert np.allclose(rewritten, neumann_step(Z, U, kappa, eps)[0], rtol=1e-12, atol=1e-12)

# %% [markdown]
# **The softmax.** The paper replaces the similarity $\beta P_kP_k^\top$ by $\operatorname{softmax}(P_kP_k^\top)$,
# taken over the keys (each row sums to 1). Why is that a reasonable substitute? For a small temperature $t$, a
# first-order expansion gives
#
# $$\operatorname{softmax}(tS)_{ij} = \frac{1}{N}\Big(1 + t\big(S_{ij} - \tfrac1N\textstyle\sum_{j'} S_{ij'}\big)\Big) + O(t^2),$$
#
# an affine function of the similarity, made non-negative and normalised: each token becomes a **convex combination**
# of the tokens, so the update stays bounded however large the similarities.

# %%
S = P[0] @ P[0].T  # (N, N) similarity in head 0


def first_order_gap(t):
    linear = (1 + t * (S - S.mean(axis=1, keepdims=True))) / N
    return np.abs(softmax_forward(t * S) - linear).max()


A = softmax_forward(S)
assert np.all(A > 0) and np.allclose(A.sum(axis=1), 1.0, atol=1e-12)
print(f"first-order error at t = 1e-2: {first_order_gap(1e-2):.2e}, at 1e-3: {first_order_gap(1e-3):.2e}")
assert 90 < first_order_gap(1e-2) / first_order_gap(1e-3) < 110

# %% [markdown]
# With the softmax, the update is the **tied MSSA** step (JMLR eq. 14):
#
# $$Z^+ = (1-\kappa\beta)\,Z + \kappa\beta\,\underbrace{\sum_k \operatorname{softmax}(P_kP_k^\top)\,P_k\,U_k^\top}_{\mathrm{MSSA}(Z\mid U_{[K]})} .$$
#
# whitebox computes it as attention with one shared projection $W_{qkv} = [U_1\cdots U_K]^\top$:
# `compression_step.tied_mssa_step`, the same as the tied form of MSSA, `layers.mssa.mssa_tied_forward`, used as a residual
# branch. All three agree with the formula written out by hand:

# %%
by_hand = (1 - c) * Z[0] + c * sum(softmax_forward(P[k] @ P[k].T) @ P[k] @ U[k].T for k in range(K))
tied = tied_mssa_step(Z, U, kappa, eps, scale=1.0)
W_qkv = stack_subspaces(U)  # (K p, d)
branch, _ = mssa_tied_forward(Z, W_qkv, c, heads=K, scale=1.0)
assert np.allclose(subspaces(W_qkv, K), U)  # the shared projection stores exactly the bases
assert np.allclose(tied[0], by_hand, rtol=1e-12, atol=1e-12)
assert np.allclose(Z + branch, tied, rtol=1e-12, atol=1e-12)

# %% [markdown]
# ## 4. What the published code changes, measured
#
# The PyTorch CRATE code keeps the shared projection ($q = k = v = U_k^\top z$) but
#
# * scales the scores by $p^{-1/2}$ (the usual attention temperature) instead of 1;
# * maps the heads back with a **learned output projection** $W_{out}$ (with a bias in PyTorch CRATE, without in
#   CRATE-alpha) instead of $[U_1\cdots U_K]$, and adds it to $Z$ without the $(1 - \kappa\beta)$ factor: $Z^+ = Z +
#   \mathrm{MSSA}(Z)\,W_{out}^\top$.
#
# On the same $Z$ and $U$ we measure, for each form: the change of $R^c$, the cosine between its update $Z^+ - Z$ and
# the descent direction $-\nabla R^c$, and its distance from the exact step. "Published, $W_{out} =
# \kappa\beta[U_1\cdots U_K]$" is the published form with the output tied back to the subspaces; "published, $W_{out}$
# at init" uses PyTorch's default initialisation, i.e. before training.

# %%
bound = 1 / np.sqrt(K * p)  # nn.Linear's default init bound
W_out_init = rng.uniform(-bound, bound, size=(d, K * p))
published_tied_out, _ = mssa_forward(Z, W_qkv, c * W_qkv.T, None, heads=K)  # scale p^-1/2 by default
published_init, _ = mssa_forward(Z, W_qkv, W_out_init, None, heads=K)
steps = {
    "exact gradient step": exact,
    "Neumann step": neumann_step(Z, U, kappa, eps),
    "tied MSSA, scale 1 (paper)": tied,
    "tied MSSA, scale p^-1/2": tied_mssa_step(Z, U, kappa, eps, scale=p**-0.5),
    "published, W_out = c U": Z + published_tied_out,
    "published, W_out at init": Z + published_init,
}
measured = {}
for name, Zp in steps.items():
    update = (Zp - Z).ravel()
    cosine = -np.vdot(update, grad.ravel()) / (np.linalg.norm(update) * np.linalg.norm(grad))
    distance = np.linalg.norm(Zp - exact) / np.linalg.norm(exact - Z)
    measured[name] = (Rc(Zp) - Rc(Z), cosine, distance)
    print(f"{name:28s}  dRc = {measured[name][0]:+.4f}   cos(update, -grad) = {cosine:+.3f}   "
          f"|step - exact| / |exact| = {distance:.2f}")

# %% [markdown]
# What the numbers say (the asserts pin them down for this data):
#
# * The Neumann step is almost the exact one (cosine near 1): here $\beta\|P_kP_k^\top\| \approx 0.7$.
# * Both tied MSSA steps still go downhill on $R^c$ and point within 90° of $-\nabla R^c$, but they are far from the
#   exact step: the softmax is a different operator, not a small perturbation. On this data the temperature $p^{-1/2}$
#   brings the step *closer* to the exact one than the paper's 1.
# * The published residual $Z + \mathrm{MSSA}(Z)W_{out}^\top$ with $W_{out}$ tied to the subspaces equals the tied
#   step **plus $\kappa\beta Z$**: without the $(1-\kappa\beta)$ shrinkage the step adds energy in the subspaces, and
#   here it goes *uphill* on $R^c$.
# * With an untrained $W_{out}$ the update is unrelated to the gradient (cosine near 0). Whatever descent the
#   published block does on $R^c$ has to be learned, through $W_{out}$ and the LayerNorm before it.

# %%
assert np.allclose(Z + published_tied_out, tied_mssa_step(Z, U, kappa, eps, scale=p**-0.5) + c * Z,
                   rtol=1e-12, atol=1e-12)
assert measured["Neumann step"][1] > 0.95
for name in ("tied MSSA, scale 1 (paper)", "tied MSSA, scale p^-1/2"):
    assert measured[name][0] < 0 and measured[name][1] > 0
assert measured["tied MSSA, scale p^-1/2"][2] < measured["tied MSSA, scale 1 (paper)"][2]
assert measured["published, W_out = c U"][0] > 0
assert abs(measured["published, W_out at init"][1]) < 0.3

# %% [markdown]
# **Summary.** Attention appears when a gradient step on the coding rate of the projected tokens is expanded to first
# order: the similarity $P_kP_k^\top$ of tokens inside each subspace weights a sum of their projections. The softmax,
# the temperature and the learned output projection are further changes, and the table above shows how far each takes
# the step from the exact one.
