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
# # Lecture 1 — The coding rate: how many bits does a cloud of tokens cost?
#
# CRATE layers are steps of an optimisation algorithm. Before we can take a step we need the objective, and the
# objective is built from one quantity, the **coding rate**
#
# $$R(Z) = \tfrac12 \log\det\!\Big(I_d + \alpha\, Z Z^\top\Big), \qquad \alpha = \frac{d}{N\varepsilon^2},$$
#
# of $N$ tokens $Z = [z_1, \dots, z_N] \in \mathbb{R}^{d\times N}$ coded up to a distortion $\varepsilon$. In this
# lecture we
#
# 1. see where the formula comes from (counting $\varepsilon$-balls, i.e. volumes),
# 2. compute it three ways and pick the cheap side with Sylvester's identity,
# 3. define the compression term $R^c$ for a union of subspaces,
# 4. see why the objective is a rate **reduction** (MCR²: expand the whole, compress the parts) and what goes wrong
#    without the expansion term (collapse),
# 5. see how $\varepsilon$ sets the regime of $R$,
# 6. meet the $\varepsilon$ versus $\varepsilon^2$ trap of some published code.
#
# You need linear algebra (eigenvalues, determinants) and nothing else. Every claim is followed by an `assert` that
# checks it on numbers.
#
# **Layouts.** The papers put tokens in *columns* ($Z \in \mathbb{R}^{d\times N}$). Code puts them in *rows*: `Z` has
# shape `(N, d)`, so `Z_code = Z_math.T` and the paper's $ZZ^\top$ is `Z.T @ Z`.

# %%
import time

import numpy as np

from whitebox.rate import coding_rate, compression_rate, half_logdet_identity_plus
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

FIGURES = []  # the figures this lecture writes (the test checks they exist)
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Lossy coding of Gaussian data: counting $\varepsilon$-balls
#
# Suppose the tokens are samples of a zero-mean Gaussian with covariance $\hat\Sigma = \frac1N ZZ^\top$. We do not
# need to code them exactly: an error of squared size $\varepsilon^2$ per token (so $\varepsilon^2/d$ per coordinate)
# is allowed. Model the allowed error as independent noise of covariance $\frac{\varepsilon^2}{d} I$. The coded tokens
# then fill the ellipsoid of covariance $\hat\Sigma + \frac{\varepsilon^2}{d} I$, and a codebook needs one codeword
# per "noise ball" of covariance $\frac{\varepsilon^2}{d} I$ that fits in it. Since an ellipsoid of covariance $C$ has
# volume $V_d \sqrt{\det C}$, the number of balls is
#
# $$\#\text{balls} = \frac{\sqrt{\det(\hat\Sigma + \tfrac{\varepsilon^2}{d} I)}}{\sqrt{\det(\tfrac{\varepsilon^2}{d} I)}}
#   = \sqrt{\det\!\Big(I + \tfrac{d}{N\varepsilon^2} Z Z^\top\Big)},$$
#
# and the number of nats to name one ball is its logarithm: $R(Z) = \log \#\text{balls}$. That is why a log-**det**
# appears: it is the log of a **volume** ratio.
#
# Let us check this in $d = 2$, where we can measure the area of the ellipse by throwing darts.

# %%
N, d, eps = 500, 2, 0.5
Z2 = rng.standard_normal((N, d)) * np.array([3.0, 0.5])  # (N, d): an elongated Gaussian cloud
C = Z2.T @ Z2 / N + eps**2 / d * np.eye(d)  # covariance of the coded tokens
ball_area = np.pi * eps**2 / d  # the noise ball: a disc of radius eps / sqrt(d)

darts = rng.uniform(-1, 1, size=(200_000, d)) * np.sqrt(np.diag(C))  # uniform in the bounding box
box_area = np.prod(2 * np.sqrt(np.diag(C)))
inside = np.einsum("ni,ij,nj->n", darts, np.linalg.inv(C), darts) <= 1.0
ellipse_area = box_area * inside.mean()

log_balls = np.log(ellipse_area / ball_area)
print(f"log(#balls) by darts = {log_balls:.4f}   R(Z) = {coding_rate(Z2, eps):.4f}")
assert abs(log_balls - coding_rate(Z2, eps)) < 0.01 * coding_rate(Z2, eps)

# %% [markdown]
# The darts agree with the formula to within the Monte-Carlo error (under 1%). The same volume argument in exact form:
# the eigenvalues $\sigma_i^2$ of $\frac1N ZZ^\top$ are the squared semi-axes, and
# $$R(Z) = \tfrac12 \sum_i \log\!\Big(1 + \tfrac{d}{\varepsilon^2}\sigma_i^2\Big),$$
# one term per direction: a direction whose spread $\sigma_i$ is far below the noise level $\varepsilon/\sqrt d$ costs
# almost nothing.

# %%
sigma2 = np.linalg.eigvalsh(Z2.T @ Z2 / N)
per_direction = 0.5 * np.log1p(d / eps**2 * sigma2)
print("nats per direction:", per_direction.round(3))
assert np.isclose(per_direction.sum(), coding_rate(Z2, eps), rtol=1e-12)

# %% [markdown]
# A picture of the count: the data, the ellipse of the coded tokens and, to scale, the noise ball (the dashed circle).
# $e^{R}$ of those balls tile the ellipse.

# %%
fig, ax = plt.subplots(figsize=(7, 4))
ax.scatter(Z2[:, 0], Z2[:, 1], s=3, alpha=0.4, label="tokens")
t = np.linspace(0, 2 * np.pi, 200)
w, V = np.linalg.eigh(C)
ellipse = (V * np.sqrt(w)) @ np.stack([np.cos(t), np.sin(t)])
ax.plot(ellipse[0], ellipse[1], "k", label=r"covariance $\hat\Sigma + \frac{\varepsilon^2}{d}I$")
r = eps / np.sqrt(d)
ax.plot(r * np.cos(t), r * np.sin(t), "r--", label=r"noise ball, radius $\varepsilon/\sqrt{d}$")
ax.set_aspect("equal")
ax.set_title(f"R(Z) = {coding_rate(Z2, eps):.2f} nats = log(#balls), #balls = {np.exp(coding_rate(Z2, eps)):.1f}")
ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
show(fig, "01_coding_rate_balls.png", FIGURES)

# %% [markdown]
# ## 2. Three ways to compute $\log\det(I + M)$
#
# For $M = \alpha ZZ^\top$ positive semi-definite, $I + M$ is symmetric positive definite, so
#
# * **LU** (`np.linalg.slogdet`): works for any matrix, ignores the structure;
# * **eigenvalues** of the Gram: $\log\det(I + M) = \sum_i \log(1 + \lambda_i)$, with the tiny negative eigenvalues
#   that rounding produces clamped to 0 (the MCR² book's code does this);
# * **Cholesky** $I + M = LL^\top$: $\log\det = 2\sum_i \log L_{ii}$, half the cost of LU and guaranteed to exist.
#   `whitebox.rate.half_logdet_identity_plus` uses it (and reads $L_{ii}^2 - 1$ off the recursion so that tiny $M$
#   loses no digits).

# %%
N, d, eps = 200, 32, 0.5
Z = rng.standard_normal((N, d))  # (N, d) code layout
alpha = d / (N * eps**2)
gram = Z.T @ Z  # (d, d) = the paper's Z Z^T

by_lu = 0.5 * np.linalg.slogdet(np.eye(d) + alpha * gram)[1]
by_eig = 0.5 * np.log1p(alpha * np.clip(np.linalg.eigvalsh(gram), 0, None)).sum()
by_chol = half_logdet_identity_plus(gram, alpha)
print(f"LU {by_lu:.12f}  eig {by_eig:.12f}  Cholesky {by_chol:.12f}  whitebox {coding_rate(Z, eps):.12f}")
for value in (by_eig, by_chol, coding_rate(Z, eps)):
    assert np.isclose(value, by_lu, rtol=1e-12)

# %% [markdown]
# ## 3. Sylvester's identity: which side to compute
#
# $Z$ is $d \times N$, so $ZZ^\top$ is $d\times d$ and $Z^\top Z$ is $N\times N$. Sylvester's determinant identity
# says
#
# $$\det(I_d + \alpha ZZ^\top) = \det(I_N + \alpha Z^\top Z).$$
#
# *Why:* $ZZ^\top$ and $Z^\top Z$ have the same non-zero eigenvalues (if $Z^\top Z v = \lambda v$ with $\lambda \neq
# 0$ then $ZZ^\top (Zv) = \lambda (Zv)$ and $Zv\ne 0$), and the extra eigenvalues are zeros, which contribute
# $\log(1+0) = 0$. So we may compute on whichever side is **smaller**.

# %%
for N in (10, 300):  # fewer tokens than features, then more
    Zs = rng.standard_normal((N, d))
    a = d / (N * eps**2)
    side_d = 0.5 * np.linalg.slogdet(np.eye(d) + a * Zs.T @ Zs)[1]  # d x d
    side_N = 0.5 * np.linalg.slogdet(np.eye(N) + a * Zs @ Zs.T)[1]  # N x N
    print(f"N={N:4d}: d-side {side_d:.10f}   N-side {side_N:.10f}")
    assert np.isclose(side_d, side_N, rtol=1e-11)
    assert np.isclose(coding_rate(Zs, eps), side_d, rtol=1e-11)

# %% [markdown]
# The cost, in floating-point operations (a multiply-add counts 2): forming an $m\times m$ Gram from $n$ vectors of
# length $m$ costs $2nm^2$, and its Cholesky factor $m^3/3$. The $d$ side ($m = d$, $n = N$) costs $2Nd^2 + d^3/3$,
# the $N$ side $2dN^2 + N^3/3$. For a typical CRATE layer ($N$ = 197 tokens, $d$ = 768 features) the $N$ side should
# win; for many tokens in few features the $d$ side should. We count, then time both cases.

# %%
def flops(rows, m):
    """Gram ``m x m`` from ``rows`` samples, then its Cholesky factor."""
    return 2 * rows * m**2 + m**3 / 3


def best_time(fun, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fun()
        times.append(time.perf_counter() - start)
    return min(times)


Zc = rng.standard_normal((197, 768))  # a CRATE-B layer's tokens (N, d)
a = 768 / (197 * eps**2)
print(f"CRATE layer, N = 197, d = 768: d side {flops(197, 768) / 1e6:.0f} MFLOP, N side {flops(768, 197) / 1e6:.0f} MFLOP")
t_d_side = best_time(lambda: half_logdet_identity_plus(Zc.T @ Zc, a))
t_N_side = best_time(lambda: half_logdet_identity_plus(Zc @ Zc.T, a))
print(f"  timed: d side {t_d_side * 1e3:.2f} ms, N side {t_N_side * 1e3:.2f} ms")
assert flops(768, 197) < flops(197, 768) / 2  # the N = 197 side is the cheap one, as counted
# (the times are printed, not asserted: a timing depends on the machine and its load)

N, d = 400, 16
Zt = rng.standard_normal((N, d))
a = d / (N * eps**2)
flops_small, flops_large = flops(N, d), flops(d, N)
print(f"d side: {flops_small / 1e6:8.2f} MFLOP   N side: {flops_large / 1e6:8.2f} MFLOP"
      f"   ratio {flops_large / flops_small:.0f}x")
t_small = best_time(lambda: half_logdet_identity_plus(Zt.T @ Zt, a))
t_large = best_time(lambda: half_logdet_identity_plus(Zt @ Zt.T, a))
print(f"d side: {t_small * 1e3:.3f} ms   N side: {t_large * 1e3:.3f} ms")
assert np.isclose(half_logdet_identity_plus(Zt.T @ Zt, a), half_logdet_identity_plus(Zt @ Zt.T, a), rtol=1e-10)
assert flops_large > 10 * flops_small  # the d side is the cheap one here (times printed above, not asserted)

# %% [markdown]
# ## 4. The compression term: coding against a union of subspaces
#
# CRATE's model of the data is a **union of $K$ subspaces** with orthonormal bases $U_k\in\mathbb{R}^{d\times p}$.
# Coding each token by its coordinates $U_k^\top z$ in each subspace costs, summed over subspaces,
#
# $$R^c(Z\mid U_{[K]}) = \sum_{k=1}^K \tfrac12\log\det\!\Big(I_p + \beta\,(U_k^\top Z)(U_k^\top Z)^\top\Big)
#   = \sum_k R(U_k^\top Z), \qquad \beta = \frac{p}{N\varepsilon^2},$$
#
# i.e. the coding rate of the $p$-dimensional projections (CRATE-alpha eq. 2 writes it this way). In code, the
# projections of head $k$ are `Z @ U[k]`, shape `(N, p)`.

# %%
N, d, K, p, eps = 120, 16, 2, 4, 0.5
U = np.linalg.qr(rng.standard_normal((d, K * p)))[0].reshape(d, K, p).transpose(1, 0, 2)  # (K, d, p)
members = rng.integers(0, K, size=N)  # which subspace each token comes from
Zu = np.einsum("kdp,np->nkd", U, rng.standard_normal((N, p)))[np.arange(N), members]  # (N, d)

beta = p / (N * eps**2)
direct = sum(0.5 * np.linalg.slogdet(np.eye(p) + beta * (Zu @ U[k]).T @ (Zu @ U[k]))[1] for k in range(K))
as_rates = sum(coding_rate(Zu @ U[k], eps) for k in range(K))
print(f"Rc = {compression_rate(Zu, U, eps):.10f}   by slogdet {direct:.10f}   as sum of R {as_rates:.10f}")
assert np.isclose(compression_rate(Zu, U, eps), direct, rtol=1e-12)
assert np.isclose(compression_rate(Zu, U, eps), as_rates, rtol=1e-12)

# %% [markdown]
# Three properties to keep in mind for the next lectures.
#
# **(a) $R^c$ depends on the subspaces, not on the bases.** Replacing $U_k$ by $U_kQ_k$ for an orthogonal $Q_k$ gives
# $\det(I + \beta Q_k^\top M Q_k) = \det(I + \beta M)$.

# %%
Q = np.linalg.qr(rng.standard_normal((K, p, p)))[0]  # (K, p, p) orthogonal
assert np.isclose(compression_rate(Zu, U @ Q, eps), compression_rate(Zu, U, eps), rtol=1e-12)

# %% [markdown]
# **(b) $R^c$ sees only what lies in the subspaces.** Here $Kp = 8 < d = 16$: adding to every token a component
# orthogonal to all the $U_k$ leaves $R^c$ unchanged, while $R(Z)$ (which codes everything) grows. So $R^c$ cannot
# tell tokens in the subspaces from tokens partly outside them; $R$ can. (Section 5 gives the main reason to pair them.)

# %%
complement = np.eye(d) - U.transpose(1, 0, 2).reshape(d, K * p) @ U.transpose(1, 0, 2).reshape(d, K * p).T
Z_out = Zu + rng.standard_normal((N, d)) @ complement  # complement is the projector onto span(U)^perp
print(f"Rc: {compression_rate(Zu, U, eps):.6f} -> {compression_rate(Z_out, U, eps):.6f}   "
      f"R: {coding_rate(Zu, eps):.3f} -> {coding_rate(Z_out, eps):.3f}")
assert np.isclose(compression_rate(Z_out, U, eps), compression_rate(Zu, U, eps), rtol=1e-10)
assert coding_rate(Z_out, eps) > coding_rate(Zu, eps) + 1.0

# %% [markdown]
# **(c) Compressed means low-dimensional inside each subspace.** At the same energy $\|Z\|_F^2$, tokens that spread
# over all $p$ directions of their subspace cost more than tokens on one line per subspace. This is concavity of
# $\log$: for a fixed trace $t$ of the $p\times p$ Gram, $\tfrac12\log\det(I+\beta M)$ ranges from $\tfrac12\log(1 +
# \beta t)$ (rank one) up to $\tfrac p2\log(1+\beta t/p)$ (isotropic). Minimising $R^c$ therefore squeezes each
# subspace's tokens onto few directions: that is the "compression" of CRATE's compression block.

# %%
line_coords = rng.standard_normal((N, 1)) * np.eye(p)[0]  # (N, p): coordinates on the first axis only
Z_line = np.einsum("kdp,np->nkd", U, line_coords)[np.arange(N), members]
Z_line *= np.linalg.norm(Zu) / np.linalg.norm(Z_line)  # the same energy as Zu
rc_line, rc_spread = compression_rate(Z_line, U, eps), compression_rate(Zu, U, eps)
print(f"Rc, one line per subspace: {rc_line:.3f}   spread over p = {p} directions: {rc_spread:.3f}")
assert rc_line < rc_spread
for k in range(K):  # the bounds of the concavity argument, per subspace
    M = (Z_line @ U[k]).T @ (Z_line @ U[k])
    t = np.trace(M)
    assert np.isclose(coding_rate(Z_line @ U[k], eps), 0.5 * np.log1p(beta * t), rtol=1e-10)
    assert coding_rate(Zu @ U[k], eps) <= p / 2 * np.log1p(beta * np.trace((Zu @ U[k]).T @ (Zu @ U[k])) / p)

# %% [markdown]
# ## 5. Why a rate *reduction*: expand the whole, compress the parts (MCR²)
#
# Read the two terms as **coding lengths** of Gaussian codebooks (section 1). $R(Z)$ is the cost of coding all the
# tokens with *one* Gaussian codebook; $R^c(Z\mid U_{[K]})$ is the cost of coding them by their coordinates in each of
# the $K$ subspaces, one small Gaussian codebook per subspace. The principle of maximal coding rate reduction (MCR²,
# Yu et al. 2020; CRATE JMLR §2) asks for representations whose whole is expensive and whose parts are cheap:
#
# $$\max_Z\ \Delta R(Z\mid U_{[K]}) = R(Z) - R^c(Z\mid U_{[K]}),$$
#
# i.e. the nats saved by coding the parts separately. CRATE's sparse rate reduction (JMLR eq. 2) minimises
# $R^c(Z) - R(Z) + \lambda\|Z\|_0$, the same trade-off plus sparsity.
#
# **The subspaces matter.** Take $K = 4$ subspaces of dimension $p = 4$ that together span $\mathbb{R}^{16}$ and
# tokens drawn from them. Against the subspaces the tokens come from, $\Delta R$ is larger than against another
# orthonormal set of four subspaces that also spans the space (so both see all of every token): the true subspaces code
# the parts more cheaply. (Against subspaces that miss part of the data, $R^c$ would be lower for the wrong reason,
# property (b).)

# %%
U_full = np.linalg.qr(rng.standard_normal((d, d)))[0].reshape(d, 4, p).transpose(1, 0, 2)  # (4, d, p), spans R^d
U_other = np.linalg.qr(rng.standard_normal((d, d)))[0].reshape(d, 4, p).transpose(1, 0, 2)
Z_full = np.einsum("kdp,np->nkd", U_full, rng.standard_normal((N, p)))[np.arange(N), rng.integers(0, 4, size=N)]
delta_true = coding_rate(Z_full, eps) - compression_rate(Z_full, U_full, eps)
delta_other = coding_rate(Z_full, eps) - compression_rate(Z_full, U_other, eps)
print(f"Delta R against the true subspaces {delta_true:.3f}, against other spanning subspaces {delta_other:.3f}")
assert delta_true > delta_other

# %% [markdown]
# **Without $R$: collapse.** Minimising $R^c$ alone has a trivial solution: shrink every token. Both rates vanish as
# the scale $s\to0$ (each eigenvalue term $\tfrac12\log(1 + \beta s^2\sigma_i^2)\approx\tfrac12\beta s^2\sigma_i^2$),
# so $R^c(sZ)\to0$ like $s^2$: the "best compressed" representation is the one that has forgotten everything. The
# expansion term $R(Z)$ is what forbids it: $\Delta R(sZ)$ also goes to 0, and it grows with $s$, so collapse is the
# *worst* point of the rate reduction. (At large $s$ both rates grow like $\tfrac{\mathrm{rank}}2\log s^2$ and
# $\Delta R$ levels off: here $\mathrm{rank} = Kp$ on both sides. In the network, LayerNorm fixes the scale: lecture 4.)

# %%
scales = np.logspace(-3, 1.5, 60)
Rc_s = np.array([compression_rate(s * Zu, U, eps) for s in scales])
R_s = np.array([coding_rate(s * Zu, eps) for s in scales])
delta_s = R_s - Rc_s
small = scales[0]
quadratic = 0.5 * beta * small**2 * np.linalg.norm(Zu @ U.transpose(1, 0, 2).reshape(d, K * p)) ** 2
print(f"Rc(sZ) at s = {small:g}: {Rc_s[0]:.3e} (quadratic prediction {quadratic:.3e});  "
      f"Delta R from {delta_s[0]:.2e} at s = {small:g} to {delta_s[-1]:.3f} at s = {scales[-1]:.1f}")
assert np.all(np.diff(Rc_s) > 0) and Rc_s[0] < 1e-4 * Rc_s[-1]  # Rc decreases all the way to 0 as s -> 0
assert np.isclose(Rc_s[0], quadratic, rtol=1e-3)
assert np.all(np.diff(delta_s) > 0) and delta_s[0] < 1e-3 * delta_s[-1]  # collapse is where Delta R is smallest
assert delta_s[-1] - delta_s[-5] < 0.01 * delta_s[-1]  # and it levels off at large scale

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.semilogx(scales, R_s, label=r"$R(sZ)$: the whole (expand)")
ax.semilogx(scales, Rc_s, label=r"$R^c(sZ\mid U)$: the parts (compress)")
ax.semilogx(scales, delta_s, "k", lw=2, label=r"$\Delta R = R - R^c$")
ax.set_xlabel("scale $s$ of the tokens")
ax.set_ylabel("nats")
ax.set_title(r"minimising $R^c$ alone collapses the tokens ($s\to0$); $\Delta R$ does not")
ax.legend(fontsize=8)
show(fig, "01_collapse.png", FIGURES)

# %% [markdown]
# ## 6. The regimes of $R(\varepsilon)$
#
# $\varepsilon$ is the resolution of the code. From $R = \tfrac12\sum_i\log(1 + \tfrac{d}{\varepsilon^2}\sigma_i^2)$:
#
# * **coarse** ($\varepsilon^2 \gg d\sigma_i^2$): $R\approx\frac{d}{2\varepsilon^2}\sum_i\sigma_i^2 =
#   \frac{d}{2N\varepsilon^2}\|Z\|_F^2$, a multiple of the energy, blind to the shape of the cloud;
# * **fine** ($\varepsilon^2 \ll d\sigma_i^2$ for the $r$ non-zero $\sigma_i$): $R\approx r\log\frac1\varepsilon +$
#   const, so $-\,dR/d\log\varepsilon\to r$, the **rank**: at fine resolution the rate counts dimensions.
#
# Between the two, $R$ measures how many directions stand out above the noise level $\varepsilon/\sqrt d$. The same
# $\varepsilon$ fixes CRATE's step: $\beta = p/(N\varepsilon^2)$, the step $c = \kappa\beta$ and the radius of the
# Neumann series of lecture 3 (it converges when $\beta\|P_kP_k^\top\| < 1$, i.e. $\varepsilon^2 > p\|P_k\|_2^2/N$).
# We check both regimes on tokens of rank $r = 5$ in $d = 32$.

# %%
N, d, r = 400, 32, 5
Z_low = rng.standard_normal((N, r)) @ rng.standard_normal((r, d))  # (N, d) of rank 5
epsilons = np.logspace(-4, 3, 57)
R_eps = np.array([coding_rate(Z_low, e) for e in epsilons])
fine_slope = -np.polyfit(np.log(epsilons[:8]), R_eps[:8], 1)[0]
coarse = d / (2 * N * epsilons**2) * np.linalg.norm(Z_low) ** 2
print(f"fine: -dR/dlog(eps) = {fine_slope:.3f} (rank {r});  coarse: R / (d|Z|^2 / 2N eps^2) = {R_eps[-1] / coarse[-1]:.5f}")
assert abs(fine_slope - r) < 0.01
assert np.isclose(R_eps[-1], coarse[-1], rtol=1e-3)

# %%
fig, ax = plt.subplots(figsize=(6, 3.4))
ax.loglog(epsilons, R_eps, "o", ms=3, label=r"$R(Z)$, rank $r = 5$")
ax.loglog(epsilons, coarse, "k--", label=r"coarse: $\frac{d}{2N\varepsilon^2}\|Z\|_F^2$")
fine = R_eps[0] - r * np.log(epsilons / epsilons[0])
ax.loglog(epsilons[fine > 0], fine[fine > 0], "r:", label=r"fine: $r\log(1/\varepsilon)$ + const")
ax.set_ylim(R_eps.min() / 3, R_eps.max() * 3)
ax.set_xlabel(r"$\varepsilon$")
ax.set_ylabel("R (nats)")
ax.set_title(r"$\varepsilon$ sets the regime: fine counts the rank, coarse the energy")
ax.legend(fontsize=8)
show(fig, "01_epsilon_regimes.png", FIGURES)

# %% [markdown]
# ## 7. The $\varepsilon$ convention and the $\varepsilon^2$ trap
#
# whitebox's `eps` is $\varepsilon$ itself: $\alpha = d/(N\varepsilon^2)$. Some published MCR² and ReduNet code
# computes $\log\det(I + \frac{d}{N\cdot \texttt{eps}} ZZ^\top)$, so *their* `eps` is $\varepsilon^2$. Reading such
# code, translate `eps_theirs = eps_ours ** 2`:

# %%
N, d, eps = 400, 32, 0.5
Z = rng.standard_normal((N, d))


def rate_eps_squared_convention(Z, eps_sq):
    """The published MCR²-style formula: its argument named ``eps`` is ε²."""
    N, d = Z.shape
    return 0.5 * np.linalg.slogdet(np.eye(d) + d / (N * eps_sq) * Z.T @ Z)[1]


assert np.isclose(rate_eps_squared_convention(Z, eps**2), coding_rate(Z, eps), rtol=1e-12)

# %% [markdown]
# The trap is to pass $\varepsilon^2$ where $\varepsilon$ is expected. With $\varepsilon = 0.5$ that is `eps=0.25`,
# which makes $\alpha$ **four times** larger ($1/\varepsilon^2$). When the signal is well above the noise
# ($\alpha\sigma_i^2 \gg 1$), each of the $d$ directions gains $\tfrac12\log 4$, so the error is about $\tfrac d2
# \log\frac1{\varepsilon^2} = d\log\frac1\varepsilon$ nats: it grows with the dimension, it is not a small constant.

# %%
right, trapped = coding_rate(Z, eps), coding_rate(Z, eps**2)
predicted = d * np.log(1 / eps)
print(f"R(eps) = {right:.2f}   R(eps^2 passed as eps) = {trapped:.2f}   "
      f"difference {trapped - right:.2f}   d log(1/eps) = {predicted:.2f}")
assert abs((trapped - right) - predicted) < 0.05 * predicted
print(f"relative error of the objective: {(trapped - right) / right:.0%}")
assert (trapped - right) / right > 0.2
