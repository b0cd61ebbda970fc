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
# 4. what the published CRATE code changes (temperature $p^{-1/2}$, a learned output projection);
# 5. what the attention pattern looks like, and why a step on $R^c$ is a **denoiser**.
#
# Code layout: `Z` is `(B, N, d)` (a batch of $B$ sequences of $N$ tokens, here $B = 1$); the projections of head $k$
# are $P_k = ZU_k$, `(N, p)`, the transpose of the papers' $U_k^\top Z$. In this layout the exact step reads $Z^+ = Z
# - \kappa\sum_k \beta (I_N + \beta P_kP_k^\top)^{-1}P_kU_k^\top$.

# %%

import numpy as np

from whitebox.compression_step import gradient_step, neumann_step, stack_subspaces, step_size_beta, tied_mssa_step
from whitebox.layers.activations import softmax_forward
from whitebox.layers.layernorm import layernorm_forward
from whitebox.layers.mssa import mssa_forward, mssa_tied_forward, subspaces
from whitebox.rate import compression_rate, compression_rate_grad
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

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

# %% [markdown]
# **$\varepsilon$ sets the radius.** The series converges when $\beta\|P_kP_k^\top\|_2 < 1$ for every head, i.e.
# $\varepsilon^2 > \varepsilon_*^2 = p\max_k\|P_kP_k^\top\|_2/N$. Below $\varepsilon_*$ the powers $(\beta
# P_kP_k^\top)^j$ grow and the truncated series is no approximation at all; above it they shrink geometrically.

# %%
eps_star = np.sqrt(p * spectral / N)
print(f"eps_* = {eps_star:.3f}")


def neumann_term_norm(eps, power):
    """|| (beta P_k P_k^T)^power ||_2 for the worst head."""
    b = p / (N * eps**2)
    return max(np.linalg.norm(np.linalg.matrix_power(b * P[k] @ P[k].T, power), 2) for k in range(K))


assert neumann_term_norm(0.95 * eps_star, 40) > 1 > neumann_term_norm(1.05 * eps_star, 40)

epsilons = np.array([1.5, 3.0, 6.0, 12.0, 24.0])
betas = p / (N * epsilons**2)
radius = betas * spectral  # beta |P P^T|: the series converges where this is < 1
errors = np.array([neumann_relative_error(e) for e in epsilons])
for b, rho, e in zip(betas, radius, errors):
    print(f"beta = {b:.2e} (beta |PP^T| = {rho:.2f}{', DIVERGES' if rho >= 1 else ''}): "
          f"relative error of the Neumann step {e:.3e}")
assert radius[0] > 1 > radius[1]  # the first point lies outside the radius of convergence
ratio = neumann_relative_error(6.0) / neumann_relative_error(12.0)
print(f"beta quartered (eps 6 -> 12): error divided by {ratio:.2f}")
assert 15 < ratio < 17
slope = np.polyfit(np.log(betas[2:]), np.log(errors[2:]), 1)[0]
print(f"log-log slope at small beta: {slope:.3f}")
assert abs(slope - 2) < 0.05

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(betas, errors, "o-", label="Neumann step vs exact step")
ax.loglog(betas[radius >= 1], errors[radius >= 1], "rx", ms=10, mew=2,
          label=r"series diverges ($\beta\|PP^\top\| \geq 1$)")
ax.axvline(1 / spectral, color="r", ls=":", lw=1)
ax.loglog(betas, errors[-1] * (betas / betas[-1]) ** 2, "k--", label=r"slope 2 ($\propto\beta^2$)")
ax.set_xlabel(r"$\beta = p/(N\varepsilon^2)$ (dotted: radius of convergence)")
ax.set_ylabel("relative error of the step")
ax.legend(fontsize=8)
show(fig, "03_neumann_error.png", FIGURES)

# %% [markdown]
# ## 3. From the Neumann step to MSSA
#
# **The middle term.** If the bases are orthonormal, **mutually orthogonal** and $Kp = d$, then $[U_1\cdots U_K]$ is
# an orthogonal matrix, $\sum_k U_kU_k^\top = I$ and $\sum_k P_kU_k^\top = Z\sum_kU_kU_k^\top = Z$. Ours are built
# that way (one QR of a $16\times16$ matrix), so it holds exactly:

# %%
assert np.allclose(sum(U[k] @ U[k].T for k in range(K)), np.eye(d), atol=1e-12)
assert np.allclose(sum(P[k] @ U[k].T for k in range(K)), Z[0], atol=1e-12)

# %% [markdown]
# "The subspaces span the space" is not enough. Four orthonormal bases drawn independently also span
# $\mathbb{R}^{16}$ (with probability 1), but they overlap, and $\sum_kU_kU_k^\top$ is then only roughly $I$: its
# eigenvalues spread around 1. With $Kp < d$ it is a projector of rank $Kp$, never $I$.

# %%
U_overlap = np.linalg.qr(rng.standard_normal((K, d, p)))[0]  # (K, d, p): each orthonormal, not mutually orthogonal
spread = np.linalg.eigvalsh(sum(U_overlap[k] @ U_overlap[k].T for k in range(K)))
print(f"independent bases: eigenvalues of sum_k U_k U_k^T from {spread.min():.2f} to {spread.max():.2f}")
assert np.linalg.matrix_rank(np.concatenate(list(U_overlap), axis=1)) == d  # they span the space
assert spread.min() < 0.5 and spread.max() > 1.5  # yet the sum is far from I
assert np.isclose(np.trace(sum(U[k] @ U[k].T for k in range(K - 1))), (K - 1) * p)  # Kp < d: trace Kp, not d

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
# **How the softmax relates to the Neumann term.** Multiply the expansion by the values $P_k$. Since $S_{ij} =
# \langle p_i, p_j\rangle$, the row mean is $\tfrac1N\sum_{j'}S_{ij'} = \langle p_i, \bar p\rangle$ with $\bar p$ the
# mean token, and
#
# $$\operatorname{softmax}(tS)\,P = \underbrace{\mathbf 1\bar p^\top}_{\text{mean token}} + \frac tN\Big(SP -
#   N\,(P\bar p)\,\bar p^\top\Big) + O(t^2).$$
#
# So the softmax term is the Neumann similarity term $\beta SP$ plus a **mean-token** term, with a **centring**
# correction, at the scale $t/N$ instead of $\beta$. For centred tokens ($\bar p = 0$) the first two extras vanish and
# $t = N\beta$ gives back $\beta SP$ to first order. Checked: the gap to the first-order form is $O(t^2)$, and for
# centred tokens the softmax term minus the mean token equals $\tfrac{t}{N\beta}\cdot\beta SP$ to $O(t^2)$.

# %%
P0 = P[0]  # (N, p)
p_bar = P0.mean(axis=0)


def softmax_link_gap(t, values):
    first_order = values.mean(0) + t / N * (values @ values.T @ values
                                          - N * np.outer(values @ values.mean(0), values.mean(0)))
    return np.abs(softmax_forward(t * values @ values.T) @ values - first_order).max()


print(f"softmax(tS) P vs its first-order form: gap {softmax_link_gap(1e-2, P0):.2e} at t = 1e-2, "
      f"{softmax_link_gap(1e-3, P0):.2e} at t = 1e-3")
assert 90 < softmax_link_gap(1e-2, P0) / softmax_link_gap(1e-3, P0) < 110
P_centred = P0 - p_bar
t_link = 1e-3
neumann_term = beta * P_centred @ P_centred.T @ P_centred
softmax_term = softmax_forward(t_link * P_centred @ P_centred.T) @ P_centred
gap = np.linalg.norm(softmax_term - t_link / (N * beta) * neumann_term) / np.linalg.norm(softmax_term)
print(f"centred tokens: |softmax term - t/(N beta) * Neumann term| / |softmax term| = {gap:.1e} at t = {t_link}")
assert gap < 10 * t_link
assert np.linalg.norm(p_bar) > 0.1 * np.linalg.norm(P0) / np.sqrt(N)  # our tokens are not centred: the extras matter

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
#   step **plus $\kappa\beta Z$**. Its $R^c$ comes out *higher* than at $Z$, but that is a scale artefact: $Z +
#   c\,\mathrm{MSSA}(Z) = (1 + c)\big(\tfrac{1}{1+c}Z + \tfrac{c}{1+c}\mathrm{MSSA}(Z)\big)$ is a tied step (with
#   $c/(1+c)$ for $c$) scaled by $1 + c$, and $R^c$ is not scale-invariant (lecture 1, collapse). Divided by $1 + c$ the
#   published step goes **down** on $R^c$; and the next LayerNorm removes the scale anyway.
# * With an untrained $W_{out}$ the update is unrelated to the gradient (cosine near 0). Whatever descent the
#   published block does on $R^c$ has to be learned, through $W_{out}$ and the LayerNorm before it.

# %%
assert np.allclose(Z + published_tied_out, tied_mssa_step(Z, U, kappa, eps, scale=p**-0.5) + c * Z,
                   rtol=1e-12, atol=1e-12)
assert measured["Neumann step"][1] > 0.95
for name in ("tied MSSA, scale 1 (paper)", "tied MSSA, scale p^-1/2"):
    assert measured[name][0] < 0 and measured[name][1] > 0
assert measured["tied MSSA, scale p^-1/2"][2] < measured["tied MSSA, scale 1 (paper)"][2]
assert measured["published, W_out = c U"][0] > 0  # uphill as it stands ...
published_rescaled = steps["published, W_out = c U"] / (1 + c)
print(f"published step divided by (1 + c): Rc {Rc(Z):.3f} -> {Rc(published_rescaled):.3f}")
assert Rc(published_rescaled) < Rc(Z)  # ... downhill once the (1 + c) scale is removed
ones_d, zeros_d = np.ones(d), np.zeros(d)
assert np.allclose(layernorm_forward(steps["published, W_out = c U"], ones_d, zeros_d)[0],
                   layernorm_forward(published_rescaled, ones_d, zeros_d)[0], atol=1e-4)  # LN forgets the scale
assert abs(measured["published, W_out at init"][1]) < 0.3

# %% [markdown]
# ## 5. The attention pattern: tokens attend within their subspace
#
# Why should $\operatorname{softmax}(P_kP_k^\top)$ help compress? In head $k$, a token from subspace $k$ has a large
# projection $p_{k,i}$, and its scores $\langle p_{k,i}, p_{k,j}\rangle$ are large (in size) only against other tokens
# of subspace $k$; tokens from the other subspaces project to nearly 0 there. So a query from subspace $k$ should put
# most of its weight on keys from subspace $k$: far more than the share of those keys, which is what a uniform
# attention would give. We measure, for each token, the weight its own subspace's head puts on keys of its own
# subspace (scale $p^{-1/2}$ as published, and the paper's 1), and draw the heads with tokens sorted by membership.

# %%
order = np.argsort(members, kind="stable")
share = np.array([np.mean(members == members[i]) for i in range(N)])  # what uniform attention would give
within = {}
for scale in (p**-0.5, 1.0):
    heads_attn = softmax_forward(scale * P @ P.transpose(0, 2, 1))  # (K, N, N)
    within[scale] = np.array([heads_attn[members[i], i, members == members[i]].sum() for i in range(N)])
    print(f"scale {scale:.2f}: weight on own-subspace keys {within[scale].mean():.2f} "
          f"(uniform would give {share.mean():.2f})")
assert within[1.0].mean() > 2 * share.mean()  # the paper's scale: more than twice the uniform share
assert within[p**-0.5].mean() > 1.5 * share.mean()
assert within[1.0].mean() > within[p**-0.5].mean()  # the lower temperature (1 > p^-1/2) concentrates it further

# %%
heads_attn = softmax_forward(P @ P.transpose(0, 2, 1))  # the paper's scale 1
fig, axes = plt.subplots(1, K, figsize=(13, 3.4))
bounds = np.flatnonzero(np.diff(members[order])) + 0.5
for k, ax in enumerate(axes):
    ax.imshow(heads_attn[k][np.ix_(order, order)], cmap="viridis")
    for b in bounds:
        ax.axhline(b, color="w", lw=0.6)
        ax.axvline(b, color="w", lw=0.6)
    ax.set_title(f"head {k} (subspace {k})")
    ax.set_xlabel("key (sorted by subspace)")
axes[0].set_ylabel("query (sorted by subspace)")
fig.suptitle(f"softmax(P_k P_k^T), tokens sorted by subspace: own-subspace weight {within[1.0].mean():.2f} vs "
             f"{share.mean():.2f} for uniform", fontsize=10)
show(fig, "03_attention_by_membership.png", FIGURES)

# %% [markdown]
# ## 6. The compression step is a denoiser
#
# Write the exact step on the $d$ side (lecture 2's push-through identity), for a token $z$ (a row):
#
# $$z^+ = z - \kappa\sum_k U_k\,\beta\big(I_p + \beta P_k^\top P_k\big)^{-1}U_k^\top z
#   = z - \frac{\kappa}{N}\sum_k U_k\Big(C_k + \tfrac{\varepsilon^2}{p}I\Big)^{-1}U_k^\top z,\qquad
#   C_k = \tfrac1N P_k^\top P_k .$$
#
# Compare the **posterior mean** (Wiener filter) of a Gaussian signal $x\sim\mathcal N(0,\Sigma)$ seen through noise,
# $z = x + \sigma n$: $\;\mathbb E[x\mid z] = z - \sigma^2(\Sigma + \sigma^2I)^{-1}z$, and $\Sigma + \sigma^2 I$ is the
# covariance of the noisy $z$. So with **one** subspace ($K = 1$, $U = I$) and $\kappa = N\sigma^2$, the gradient step
# on $R^c$ *is* the Wiener denoiser built from the noisy tokens' covariance, regularised by $\varepsilon^2/p$: along
# an eigen-direction of variance $\lambda$ it keeps the fraction $1 - \sigma^2/\lambda$, so the signal directions
# ($\lambda\gg\sigma^2$) survive and the noise directions ($\lambda\approx\sigma^2$, up to sampling error) mostly go. With $K$
# subspaces it applies one such filter per subspace: a denoiser against a **mixture of low-rank Gaussians** (CRATE
# JMLR §2; the idea behind CRATE's link to diffusion models).

# %%
sigma, n_tok = 0.3, 400
X_clean = rng.standard_normal((n_tok, 4)) @ rng.standard_normal((4, d))  # rank 4 signal in R^16
Z_noisy = X_clean + sigma * rng.standard_normal((n_tok, d))
C_noisy = Z_noisy.T @ Z_noisy / n_tok
eps_small = 1e-3
identity_basis = np.eye(d)[None]  # K = 1, p = d
wiener = Z_noisy - sigma**2 * Z_noisy @ np.linalg.inv(C_noisy + eps_small**2 / d * np.eye(d))
rc_step = gradient_step(Z_noisy[None], identity_basis, n_tok * sigma**2, eps_small)[0]
assert np.allclose(rc_step, wiener, atol=1e-10)
lam = np.linalg.eigvalsh(C_noisy)  # ascending: 12 noise directions, then the 4 signal directions
keep = 1 - sigma**2 / (lam + eps_small**2 / d)  # what the step keeps of each eigen-direction
print("fraction kept per eigen-direction:", " ".join(f"{k:.2f}" for k in keep))
assert np.abs(keep[:-4]).max() < 0.5 and keep[-4:].min() > 0.95  # noise mostly removed, signal kept
print(f"denoising error |Z - X| / |X|: noisy {np.linalg.norm(Z_noisy - X_clean) / np.linalg.norm(X_clean):.3f}, "
      f"after one Rc step {np.linalg.norm(rc_step - X_clean) / np.linalg.norm(X_clean):.3f}")
assert np.linalg.norm(rc_step - X_clean) < 0.6 * np.linalg.norm(Z_noisy - X_clean)

# %% [markdown]
# The same on a mixture: tokens on our $K = 4$ subspaces, each of rank 1 inside its $p = 4$-dimensional subspace,
# plus noise. One exact step on $R^c(\cdot\mid U_{[K]})$ with $\kappa = N\sigma^2$ cuts the error by about a third
# (less than the single Gaussian: each token is filtered by every subspace's filter, not only its own).

# %%
directions = rng.standard_normal((K, p))  # one signal direction per subspace, in its coordinates
X_mix = np.stack([U[members[i]] @ (rng.standard_normal() * 3 * directions[members[i]]) for i in range(N)])  # (N, d)
Z_mix = X_mix + sigma * rng.standard_normal((N, d))
denoised = gradient_step(Z_mix[None], U, N * sigma**2, eps_small)[0]
noisy_error = np.linalg.norm(Z_mix - X_mix) / np.linalg.norm(X_mix)
denoised_error = np.linalg.norm(denoised - X_mix) / np.linalg.norm(X_mix)
print(f"mixture of low-rank Gaussians: error {noisy_error:.3f} -> {denoised_error:.3f} after one Rc step")
assert denoised_error < 0.7 * noisy_error

# %% [markdown]
# **Summary.** Attention appears when a gradient step on the coding rate of the projected tokens is expanded to first
# order: the similarity $P_kP_k^\top$ of tokens inside each subspace weights a sum of their projections. The softmax,
# the temperature and the learned output projection are further changes, and the table above shows how far each takes
# the step from the exact one. Read as statistics, the same step is a denoiser for a mixture of low-rank Gaussians,
# and its attention pattern groups tokens by subspace.
