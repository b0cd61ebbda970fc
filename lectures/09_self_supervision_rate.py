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
# # Lecture 9 — Self-supervision through the coding rate: DINO's collapses, and the rate that prevents them
#
# Without labels, a network can still be trained to give two views of the same image (two crops) the same
# representation. DINO (Caron et al. 2021) does it by *self-distillation*: a student network $f_s$ matches the output
# of a teacher $f_t$, the teacher being a moving average of the student. The objective has a trivial minimiser —
# map every image to the same output — and DINO needs two tricks, *centring* and *sharpening*, to avoid it. SimDINO
# (Wu et al. 2025) replaces both by one term this course already knows: the coding rate $R_\varepsilon$ of the batch
# (lecture 1). This lecture computes each collapse on small examples, shows what each trick does to it, reads the
# rate's gradient as centring and sharpening built in, and watches the collapse happen without the rate.
#
# Code layout: a batch of outputs is `(B, K)` (DINO's logits over $K$ prototypes) or `(B, k)` (SimDINO's unit
# projections $z$), one image per row. `whitebox train --task dino|simdino` trains the real thing.

# %%
import math

import numpy as np

from whitebox.layers.activations import softmax_forward
from whitebox.layers.l2norm import l2_normalize_backward, l2_normalize_forward
from whitebox.layers.loss import soft_cross_entropy
from whitebox.rate import coding_rate, coding_rate_grad
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

FIGURES = []
rng = np.random.default_rng(0)


def entropy(P):
    """Entropy (nats) of each row of P."""
    return -(P * np.log(P + 1e-300)).sum(axis=-1)


# %% [markdown]
# ## 1. The trivial minimiser
#
# SimDINO's distance between a student view and a teacher view of the same image is $\tfrac12\|z_s - z_t\|^2$ with
# unit vectors $z$. If the network ignores its input, $z_s = z_t = c$ for every image and every view, and the distance
# is exactly 0: the best possible value, reached by a network that has learned nothing. What distinguishes this
# solution is the *batch*: all rows of $Z$ are the same vector. Its coding rate is one direction's worth: with
# $Z = \mathbf 1 c^\top$, $Z^\top Z = B\,cc^\top$, and
#
# $$R_\varepsilon(Z) = \tfrac12\log\det\Big(I + \tfrac{k}{B\varepsilon^2} Z^\top Z\Big) = \tfrac12\log\big(1 + k/\varepsilon^2\big),$$
#
# while a batch spread evenly over all $k$ directions ($Z^\top Z = \tfrac Bk I$, e.g. the rows $\pm e_j$) has
# $R_\varepsilon = \tfrac k2\log(1 + 1/\varepsilon^2)$, the largest value for unit rows.

# %%
B, k, eps = 64, 8, 0.5
c = l2_normalize_forward(rng.standard_normal(k))[0]
collapsed = np.tile(c, (B, 1))  # every image at the same point
frame = np.concatenate([np.eye(k), -np.eye(k)] * (B // (2 * k)))  # rows ±e_j, Z^T Z = (B/k) I
spread = l2_normalize_forward(rng.standard_normal((B, k)))[0]  # random unit rows

distance = 0.5 * ((collapsed - collapsed) ** 2).sum(axis=1).mean()
print(f"distance of the constant map: {distance}")
for name, Z in (("collapsed", collapsed), ("tight frame", frame), ("random", spread)):
    print(f"R_eps({name:<11}) = {float(coding_rate(Z, eps)):.4f}")
assert distance == 0.0
assert math.isclose(float(coding_rate(collapsed, eps)), 0.5 * math.log1p(k / eps**2), rel_tol=1e-9)
assert math.isclose(float(coding_rate(frame, eps)), k / 2 * math.log1p(1 / eps**2), rel_tol=1e-9)
assert float(coding_rate(collapsed, eps)) < float(coding_rate(spread, eps)) < float(coding_rate(frame, eps))

# %% [markdown]
# ## 2. DINO's two collapses, and its two tricks
#
# DINO's head ends in $K$ prototypes; the teacher's logits $g_t$ become a distribution
# $P_t = \mathrm{softmax}((g_t - c)/\tau_t)$, the student's $P_s = \mathrm{softmax}(g_s/\tau_s)$, and the loss is the
# cross-entropy $H(P_t, P_s) = H(P_t) + \mathrm{KL}(P_t\|P_s)$. The student can always match the teacher
# ($\mathrm{KL} = 0$), so at a fixed point the loss is $H(P_t)$, and two outputs make it useless:
#
# * **one prototype for every image**: $g_t$ is the same vector for all images, with one dominant entry. $P_t$ is
#   one-hot, $H(P_t) \approx 0$: the *lowest* loss, and nothing tells images apart.
# * **uniform for every image**: $P_t = 1/K$; the loss is $\log K$, but it is a fixed point: when teacher and student
#   are both uniform the gradient $(P_s - P_t)/\tau_s$ is 0.
#
# *Centring* subtracts the running batch mean $c$ of the teacher's logits: a component that every image shares is
# removed, so the first collapse becomes uniform. *Sharpening* ($\tau_t = 0.04 < \tau_s = 0.1$) divides small
# differences between images by a small temperature, which pushes away from uniform. The two together sit between
# the collapses. Two numbers tell them apart (they are `whitebox train --task dino`'s `teacher_entropy` and
# `teacher_marginal_entropy`): the mean entropy of $P_t$ per image (low when each image is confident) and the entropy
# of the batch's mean $P_t$ (high when different images use different prototypes).

# %%
K = 16
shared = np.zeros(K)
shared[3] = 1.0  # a component every image has: the seed of the one-prototype collapse
own = 0.2 * rng.standard_normal((B, K))  # what tells images apart, small beside the shared component
g_t = shared + own  # (B, K) teacher logits


def teacher(g, centre: bool, tau: float):
    c = g.mean(axis=0) if centre else 0.0  # DINO's centre is a running mean of these batch means
    return softmax_forward((g - c) / tau)


rows = {}
for centre in (False, True):
    for tau in (1.0, 0.04):
        P = teacher(g_t, centre, tau)
        rows[centre, tau] = (entropy(P).mean(), entropy(P.mean(axis=0)), np.unique(P.argmax(axis=1)).size)
        print(f"centring {str(centre):<5} tau_t {tau:<4}: entropy per image {rows[centre, tau][0]:.3f}, of the mean "
              f"{rows[centre, tau][1]:.3f} (log K = {math.log(K):.3f}), prototypes used {rows[centre, tau][2]}")

assert rows[False, 0.04][2] == 1 and rows[False, 0.04][1] < 0.05  # sharpening alone: one prototype for all
assert rows[True, 1.0][0] > 0.99 * math.log(K)  # centring alone: (nearly) uniform for every image
assert rows[True, 0.04][0] < 0.5 * math.log(K) and rows[True, 0.04][1] > 0.8 * math.log(K)  # both: confident, diverse

# %% [markdown]
# The loss sees the first collapse as a success and the second as a fixed point. With the teacher collapsed to one
# prototype, a student that copies it has a loss near 0; after centring, the same collapsed outputs give the teacher
# exactly the uniform distribution, and the best student's loss is $\log K$, the worst a matched teacher can give:

# %%
identical = np.tile(shared, (B, 1))  # fully collapsed logits
P_collapsed = teacher(identical, centre=False, tau=0.04)
P_centred = teacher(identical, centre=True, tau=0.04)
loss_collapsed, _ = soft_cross_entropy(identical * 0.1 / 0.04, P_collapsed, 0.1)  # a student that copies the teacher
loss_centred, grad_uniform = soft_cross_entropy(np.zeros((B, K)), P_centred, 0.1)  # uniform student against it
print(f"collapsed, not centred: loss {float(loss_collapsed):.2e}; centred: loss {float(loss_centred):.4f} = log K, "
      f"gradient {np.abs(grad_uniform).max():.1e}")
assert float(loss_collapsed) < 1e-3
assert np.allclose(P_centred, 1 / K) and math.isclose(float(loss_centred), math.log(K), rel_tol=1e-12)
assert np.abs(grad_uniform).max() < 1e-15  # the uniform collapse is a fixed point: only sharpening leaves it

# %% [markdown]
# ## 3. The rate term: centring and sharpening in one gradient
#
# SimDINO drops the prototypes, the centre and both temperatures, and subtracts $\gamma R_\varepsilon(Z_s)$ from the
# distance, with $Z_s$ the batch of the student's unit projections. Lecture 2's gradient (code layout, rows are images)
#
# $$\nabla_Z R_\varepsilon = \alpha\,(I_B + \alpha ZZ^\top)^{-1} Z,\qquad \alpha = \frac{k}{B\varepsilon^2},$$
#
# does both jobs. Take a nearly collapsed batch $Z = \mathbf 1 c^\top + \Delta$ with small deviations $\Delta$ (rows
# orthogonal to $c$, mean 0). $ZZ^\top \approx \mathbf 1\mathbf 1^\top$ has the eigenvalue $B$ along $\mathbf 1$,
# so $(I + \alpha ZZ^\top)^{-1}$ divides the shared component by $1 + \alpha B = 1 + k/\varepsilon^2$ and leaves the
# deviations (orthogonal to $\mathbf 1$) alone:
#
# * **centring**: the gradient's shared part is $\tfrac{\alpha}{1 + k/\varepsilon^2}\,\mathbf 1 c^\top$, damped, and
#   it points along $c$, radially, so the backward of $z = u/\|u\|$ (which keeps the tangent part) removes it;
# * **sharpening**: the deviations are pushed apart with gain $\alpha$, so a small $\varepsilon$ acts like a small
#   temperature: $\nabla R \approx \alpha\,\Delta$ off the shared direction.

# %%
Delta = 1e-3 * rng.standard_normal((B, k))
Delta -= Delta.mean(axis=0)
Delta -= np.outer(Delta @ c, c)  # deviations tangent to the sphere at c, mean 0
Z = collapsed + Delta
G = coding_rate_grad(Z, eps)
alpha = k / (B * eps**2)
shared_gain = np.linalg.norm(G.mean(axis=0)) / np.linalg.norm(Z.mean(axis=0))
deviation_gain = np.linalg.norm(G - G.mean(axis=0)) / np.linalg.norm(Delta)
print(f"gain on the shared component {shared_gain:.5f} = alpha / (1 + k/eps^2) = {alpha / (1 + k / eps**2):.5f}")
print(f"gain on the deviations {deviation_gain:.5f} = alpha = k / (B eps^2) = {alpha:.5f}")
assert math.isclose(shared_gain, alpha / (1 + k / eps**2), rel_tol=0.02)
assert math.isclose(deviation_gain, alpha, rel_tol=0.02)

_, sphere = l2_normalize_forward(Z)
tangent = l2_normalize_backward(G, sphere)  # what reaches the network through the normalisation
shared_part = np.linalg.norm(tangent.mean(axis=0)) * math.sqrt(B) / np.linalg.norm(tangent)
print(f"through the sphere, the share of the gradient common to all images: {shared_part:.4f} (of Z itself: "
      f"{np.linalg.norm(Z.mean(axis=0)) * math.sqrt(B) / np.linalg.norm(Z):.4f})")
assert shared_part < 0.2  # centred, although the rows are almost all shared component

# %% [markdown]
# So one ascent step on $R$ through the sphere, $u \leftarrow u + t\,\partial R/\partial u$ for outputs $u$ of radius
# $r$, multiplies the deviations between images by $1 + t\alpha/r^2$ (to first order in $t$) and leaves their shared
# direction where it is: the batch spreads out.

# %%
r, t = 3.0, 10.0
u = r * Z  # pre-normalisation outputs of radius 3
z, cache = l2_normalize_forward(u)
z_new = l2_normalize_forward(u + t * l2_normalize_backward(coding_rate_grad(z, eps), cache))[0]
growth = np.linalg.norm(z_new - z_new.mean(axis=0)) / np.linalg.norm(z - z.mean(axis=0))
print(f"deviations grow by {growth:.4f}; 1 + t alpha / r^2 = {1 + t * alpha / r**2:.4f}; R {float(coding_rate(z, eps)):.5f}"
      f" -> {float(coding_rate(z_new, eps)):.5f}")
assert math.isclose(growth, 1 + t * alpha / r**2, rel_tol=0.02)
assert float(coding_rate(z_new, eps)) > float(coding_rate(z, eps))

# %% [markdown]
# ## 4. The collapse it prevents
#
# A small experiment with every gradient by hand: a linear student $z = \mathrm{normalise}(Wx + b)$ on 8 Gaussian
# clusters in 16 dimensions, two noisy views of each point per step, a teacher that is the moving average
# ($m = 0.99$) of the student, and plain gradient descent on
# $\tfrac12\|z_s - z_t\|^2 - \gamma R_\varepsilon(Z_s)$. With $\gamma = 0$ the rate of the embedded data falls
# towards the one-point value; with $\gamma = 0.1$ it rises.
# (`benchmarks/ssl_collapse.py` runs the same comparison with CRATE on MNIST; `benchmarks/RESULTS.md` has its numbers.)

# %%
N, d_in = 128, 16
labels = rng.integers(0, 8, N)
X = 3 * rng.standard_normal((8, d_in))[labels] + rng.standard_normal((N, d_in))


def train(gamma, steps=1500, lr=1.0, momentum=0.99, seed=1):
    """Rates of the embedded (clean) data along the run, for the student z = normalise(W x + b)."""
    r = np.random.default_rng(seed)
    W, b = r.standard_normal((k, d_in)) / math.sqrt(d_in), 0.1 * r.standard_normal(k)
    W_t, b_t = W.copy(), b.copy()
    rates = []
    for _ in range(steps):
        v_s, v_t = X + r.standard_normal(X.shape), X + r.standard_normal(X.shape)  # two views
        z_s, cache = l2_normalize_forward(v_s @ W.T + b)
        z_t, _ = l2_normalize_forward(v_t @ W_t.T + b_t)  # the teacher: no gradient
        dz = (z_s - z_t) / N - gamma * coding_rate_grad(z_s, eps)
        du = l2_normalize_backward(dz, cache)
        W -= lr * du.T @ v_s
        b -= lr * du.sum(axis=0)
        W_t, b_t = momentum * W_t + (1 - momentum) * W, momentum * b_t + (1 - momentum) * b
        rates.append(float(coding_rate(l2_normalize_forward(X @ W.T + b)[0], eps)))
    return np.array(rates)


without, with_rate = train(0.0), train(0.1)
one_point = 0.5 * math.log1p(k / eps**2)
print(f"R at the start {without[0]:.3f}; after {len(without)} steps: gamma = 0 -> {without[-1]:.3f}, "
      f"gamma = 0.1 -> {with_rate[-1]:.3f} (one point: {one_point:.3f}, the most: {k / 2 * math.log1p(1 / eps**2):.3f})")
assert without[-1] < without[0] - 0.5 and without[-1] < without[len(without) // 2]  # falling, still falling
assert with_rate[-1] > with_rate[0] + 0.5

fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(without, label="γ = 0: distance only")
ax.plot(with_rate, label="γ = 0.1: distance − γ R")
ax.axhline(one_point, color="grey", linestyle="--", label="one point: ½ log(1 + k/ε²)")
ax.axhline(k / 2 * math.log1p(1 / eps**2), color="grey", linestyle=":", label="spread evenly: (k/2) log(1 + 1/ε²)")
ax.set_xlabel("step")
ax.set_ylabel("R_ε of the embedded data")
ax.legend(fontsize=8)
show(fig, "09_rate_prevents_collapse.png", FIGURES)

# %% [markdown]
# **What to take away.** DINO's loss is minimised by a collapse, and its two tricks each fix one collapse while
# inviting the other; their balance is a matter of temperatures and momenta. The coding rate measures the very thing
# a collapse destroys — how many directions the batch fills — and its gradient removes the shared component and
# amplifies the differences, with $\varepsilon$ in the role of the temperature. It is the expansion term of the sparse
# rate reduction (lecture 1's $R$), doing in self-supervision what it does inside every CRATE layer.
