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
# # Lecture 6 — Backpropagation by hand: LayerNorm, softmax, MSSA, ISTA
#
# whitebox has no autograd: every layer has a hand-written `*_backward`. Here we derive four of them "backprop-ninja"
# style (Karpathy, makemore part 4): write the forward as a chain of small intermediates, push the gradient back **one
# intermediate at a time**, and check each against finite differences before moving on. Then we collapse the chain
# into the closed form whitebox uses and compare. Then the whole CRATE model's gradient is checked against finite
# differences, and section 6 has **exercises**: blanks for you to fill, with a checker that says exact, close or wrong.
#
# **The convention.** A layer computes `out = f(inputs)`; the rest of the network hands us `dout = ∂L/∂out`. We check
# gradients of the scalar $L = \langle \texttt{dout}, \texttt{out}\rangle$, whose gradient with respect to the inputs
# is exactly the vector-Jacobian product the backward must return. For an intermediate `t`, "the gradient of `t`"
# means the gradient of $L$ seen as a function of `t` with everything **upstream** of `t` held fixed: that is what
# `grad_errors` checks, by nudging `t` alone.

# %%
import numpy as np

from whitebox.gradcheck import grad_errors
from whitebox.layers.activations import softmax_backward, softmax_forward
from whitebox.layers.ista import ista_backward, ista_forward
from whitebox.layers.layernorm import LAYERNORM_EPS, layernorm_backward, layernorm_forward
from whitebox.layers.loss import cross_entropy
from whitebox.layers.mssa import mssa_backward, mssa_forward
from whitebox.models import crate
from whitebox.rate import coding_rate, coding_rate_grad
from _figures import plt, show  # lectures/_figures.py: Agg in scripts, inline in notebooks

FIGURES = []
rng = np.random.default_rng(0)
TOL = 1e-6


def assert_gradient(L_of_t, t, dt, name):
    """Check ``dt`` as the gradient of the scalar ``L_of_t(t)`` by central differences."""
    error = grad_errors(lambda t: L_of_t(t), {"t": t}, {"t": dt}, directions=2)["t"]
    print(f"  {name:10s} relative error {error:.1e}")
    assert error < TOL, (name, error)


# %% [markdown]
# **Why central differences, in float64, at a middling step.** The central difference $\frac{L(t + h) - L(t -
# h)}{2h}$ has a truncation error $\propto h^2$ (the odd Taylor terms cancel) and a rounding error $\propto
# \varepsilon_{\text{mach}}/h$. So the total error falls like $h^2$ until rounding takes over, and then rises again:
# a V in log-log axes with its bottom near $h\approx\varepsilon_{\text{mach}}^{1/3}$, about $10^{-5}$ in float64. In
# float32 ($\varepsilon_{\text{mach}}\approx10^{-7}$) the bottom of the V is more than a thousand times higher, too coarse to
# tell a right backward from a slightly wrong one. Measured on one derivative of a softmax loss:

# %%
s_probe = rng.standard_normal(6)
dp_probe = rng.standard_normal(6)
exact_derivative = (softmax_backward(dp_probe, softmax_forward(s_probe)))[0]  # dL/ds_0 for L = <dp, softmax(s)>
hs = np.logspace(-12, -1, 23)
bump = np.eye(6)[0]


def central_difference_errors(dtype):
    s_t, dp_t, bump_t = s_probe.astype(dtype), dp_probe.astype(dtype), bump.astype(dtype)
    return np.array([abs(float(np.vdot(dp_t, softmax_forward(s_t + dtype(h) * bump_t))
                               - np.vdot(dp_t, softmax_forward(s_t - dtype(h) * bump_t))) / (2 * h)
                         - exact_derivative) for h in hs])


fd_errors = central_difference_errors(np.float64)
fd_errors_32 = central_difference_errors(np.float32)
large = hs > 1e-3
truncation_slope = np.polyfit(np.log(hs[large]), np.log(fd_errors[large]), 1)[0]
best_h = hs[fd_errors.argmin()]
print(f"truncation slope {truncation_slope:.2f}; best h = {best_h:.0e}, error there {fd_errors.min():.1e}; "
      f"error at h = 1e-12: {fd_errors[0]:.1e}")
assert abs(truncation_slope - 2) < 0.2
assert 1e-8 <= best_h <= 1e-3 and fd_errors[0] > 100 * fd_errors.min()
print(f"best error in float32: {fd_errors_32.min():.1e} (float64: {fd_errors.min():.1e})")
assert fd_errors_32.min() > 1000 * fd_errors.min()

# %%
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(hs, fd_errors, "o-", ms=3, label="|central difference - backward|, float64")
ax.loglog(hs, fd_errors_32, "^-", ms=3, color="gray", label="the same in float32")
ax.loglog(hs[large], fd_errors[large][-1] * (hs[large] / hs[large][-1]) ** 2, "k--", lw=0.8, label=r"$\propto h^2$")
ax.loglog(hs, 1e-16 / hs, "r:", lw=0.8, label=r"$\propto \varepsilon_{\mathrm{mach}}/h$")
ax.set_ylim(fd_errors.min() / 10, 1)
ax.set_xlabel("step $h$")
ax.set_ylabel("error of the derivative")
ax.set_title("finite differences: truncation vs rounding", fontsize=9)
ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)
show(fig, "06_finite_difference_error.png", FIGURES)


# %% [markdown]
# ## 1. LayerNorm
#
# Per token (row) $x\in\mathbb{R}^d$: $\mu = \tfrac1d\sum_i x_i$, $x_c = x - \mu$, $v = \tfrac1d\sum_i x_{c,i}^2$, $r
# = (v + \epsilon)^{-1/2}$, $\hat x = x_c\, r$, $y = \gamma\odot\hat x + \beta$.

# %%
n, d = 5, 7
x = rng.standard_normal((n, d)) * 2 + 1
gamma, beta_ln = rng.standard_normal(d), rng.standard_normal(d)
dy = rng.standard_normal((n, d))  # upstream gradient
eps = LAYERNORM_EPS

mu = x.mean(-1, keepdims=True)  # (n, 1)
xc = x - mu  # (n, d)
var = (xc**2).mean(-1, keepdims=True)  # (n, 1)
rstd = (var + eps) ** -0.5  # (n, 1)
xhat = xc * rstd  # (n, d)
y = xhat * gamma + beta_ln  # (n, d)
assert np.allclose(y, layernorm_forward(x, gamma, beta_ln)[0], atol=1e-12)

# %% [markdown]
# The downstream loss seen from each intermediate (each function recomputes the forward from that point on):

# %%
def L_from_xhat(xhat):
    return np.vdot(dy, xhat * gamma + beta_ln)


def L_from_rstd(rstd):  # x_c held fixed
    return L_from_xhat(xc * rstd)


def L_from_var(var):
    return L_from_rstd((var + eps) ** -0.5)


def L_from_xc(xc):  # x_c feeds both x̂ directly and the variance
    return L_from_xhat(xc * ((xc**2).mean(-1, keepdims=True) + eps) ** -0.5)


def L_from_mu(mu):  # x held fixed
    return L_from_xc(x - mu)


def L_from_x(x):
    return L_from_xc(x - x.mean(-1, keepdims=True))


# %% [markdown]
# Now backwards, restating each forward line:
#
# * $y = \gamma\odot\hat x + \beta$: $\;d\hat x = \gamma\odot dy$, $\;d\gamma = \sum_{\text{rows}} dy\odot\hat x$,
#   $\;d\beta = \sum_{\text{rows}} dy$.
# * $\hat x = x_c\,r$: $\;dr = \sum_i d\hat x_i\,x_{c,i}$ (a sum, because $r$ was broadcast), and a first contribution
#   $dx_c = r\,d\hat x$.
# * $r = (v+\epsilon)^{-1/2}$: $\;dv = -\tfrac12 (v+\epsilon)^{-3/2}\,dr$.
# * $v = \tfrac1d\sum x_c^2$: second contribution $dx_c \mathrel{+}= \tfrac2d x_c\,dv$.
# * $x_c = x - \mu$: $\;d\mu = -\sum_i dx_{c,i}$, and $dx = dx_c + \tfrac1d d\mu$ (from $\mu = \tfrac1d\sum x$).

# %%
print("LayerNorm, one intermediate at a time:")
dxhat = gamma * dy
assert_gradient(L_from_xhat, xhat, dxhat, "dxhat")
drstd = (dxhat * xc).sum(-1, keepdims=True)
assert_gradient(L_from_rstd, rstd, drstd, "drstd")
dvar = -0.5 * (var + eps) ** -1.5 * drstd
assert_gradient(L_from_var, var, dvar, "dvar")
dxc = rstd * dxhat + 2 / d * xc * dvar
assert_gradient(L_from_xc, xc, dxc, "dxc")
dmu = -dxc.sum(-1, keepdims=True)
assert_gradient(L_from_mu, mu, dmu, "dmu")
dx = dxc + dmu / d
assert_gradient(L_from_x, x, dx, "dx")
dgamma, dbeta = (dy * xhat).sum(0), dy.sum(0)
assert_gradient(lambda g: np.vdot(dy, xhat * g + beta_ln), gamma, dgamma, "dgamma")
assert_gradient(lambda b: np.vdot(dy, xhat * gamma + b), beta_ln, dbeta, "dbeta")

# %% [markdown]
# **Collapse.** Substitute backwards: with $g = \gamma\odot dy$, $dv = -\tfrac12 r^3\sum_i g_i x_{c,i}$, so $\tfrac2d
# x_c\,dv = -\tfrac{r}{d}\hat x\sum_i g_i\hat x_i$, and $dx_c = r\,(g - \hat x\,\overline{g\hat x})$ where the bar is
# a mean over the row. Since $\hat x$ has mean zero, $\overline{dx_c} = r\,\bar g$, and $dx = dx_c - \overline{dx_c}$:
#
# $$dx = r\,\big(g - \bar g - \hat x\,\overline{g\odot\hat x}\big),$$
#
# one line, with no $\mu$, $v$ or $x_c$ left: it needs only $\hat x$, $r$ and $\gamma$, which is what `LayerNormCache`
# stores.

# %%
g = gamma * dy
closed = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
wb_dx, wb_dgamma, wb_dbeta = layernorm_backward(dy, layernorm_forward(x, gamma, beta_ln)[1])
assert np.allclose(closed, dx, atol=1e-12)
assert np.allclose(wb_dx, dx, atol=1e-12)
assert np.allclose(wb_dgamma, dgamma, atol=1e-12) and np.allclose(wb_dbeta, dbeta, atol=1e-12)

# %% [markdown]
# ## 2. Softmax
#
# Over the last axis: $m = \max_j s_j$, $e = \exp(s - m)$, $\Sigma = \sum_j e_j$, $p = e/\Sigma$. (Subtracting the max
# keeps $\exp$ from overflowing and changes nothing: $p$ is invariant to shifting $s$.)

# %%
s = rng.standard_normal((4, 6)) * 2
dp = rng.standard_normal((4, 6))
m = s.max(-1, keepdims=True)
e = np.exp(s - m)
total = e.sum(-1, keepdims=True)
p = e / total
assert np.allclose(p, softmax_forward(s), atol=1e-15)


def L_from_total(total):  # e held fixed
    return np.vdot(dp, e / total)


def L_from_e(e):
    return np.vdot(dp, e / e.sum(-1, keepdims=True))


def L_from_s(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return np.vdot(dp, e / e.sum(-1, keepdims=True))


# %% [markdown]
# Backwards: $p = e/\Sigma$ gives $de = dp/\Sigma$ and $d\Sigma = -\sum_j dp_j e_j/\Sigma^2$; $\Sigma = \sum_j e_j$
# adds $d\Sigma$ to every $de_j$; $e = \exp(s - m)$ gives $ds = e\odot de$. The gradient reaching $m$ is $-\sum_j
# ds_j$, which must be **zero** by the shift invariance: the max needs no backward.

# %%
print("softmax:")
dtotal = -(dp * e).sum(-1, keepdims=True) / total**2
assert_gradient(L_from_total, total, dtotal, "dtotal")
de = dp / total + dtotal
assert_gradient(L_from_e, e, de, "de")
ds = e * de
assert_gradient(L_from_s, s, ds, "ds")
assert np.allclose(ds.sum(-1), 0, atol=1e-12)

# %% [markdown]
# **Collapse.** $ds_j = e_j\big(dp_j/\Sigma - \sum_i dp_ie_i/\Sigma^2\big) = p_j\big(dp_j - \sum_i dp_i p_i\big)$:
#
# $$ds = p\odot\big(dp - \langle dp, p\rangle\big),$$
#
# the Jacobian $\operatorname{diag}(p) - pp^\top$ applied to $dp$. It needs only $p$: the softmax output is its own
# cache.

# %%
assert np.allclose(p * (dp - (dp * p).sum(-1, keepdims=True)), ds, atol=1e-12)
assert np.allclose(softmax_backward(dp, p), ds, atol=1e-12)

# %% [markdown]
# ## 3. MSSA (the published form)
#
# $x$ is `(B, N, d)`. One shared projection gives the $K$ heads' $P_k = xU_k$; scores $S_k = s\,P_kP_k^\top$ with $s =
# p^{-1/2}$; attention $A_k = \operatorname{softmax}(S_k)$ over keys; head outputs $O_k = A_kP_k$, concatenated; then
# the output projection $y = OW_{out}^\top + b$.

# %%
B, N, d, K, ph = 2, 5, 6, 2, 3
x = rng.standard_normal((B, N, d))
W_qkv = rng.standard_normal((K * ph, d)) / np.sqrt(d)
W_out, b_out = rng.standard_normal((d, K * ph)) / np.sqrt(K * ph), rng.standard_normal(d)
dy = rng.standard_normal((B, N, d))
scale = ph**-0.5


def split(t):  # (B, N, K p) -> (B, K, N, p)
    return t.reshape(B, N, K, ph).transpose(0, 2, 1, 3)


def merge(t):  # (B, K, N, p) -> (B, N, K p), heads concatenated head-major
    return t.transpose(0, 2, 1, 3).reshape(B, N, K * ph)


P = split(x @ W_qkv.T)  # (B, K, N, p)
S = scale * P @ P.swapaxes(-1, -2)  # (B, K, N, N)
A = softmax_forward(S)  # (B, K, N, N)
O = merge(A @ P)  # (B, N, K p)
y = O @ W_out.T + b_out  # (B, N, d)
assert np.allclose(y, mssa_forward(x, W_qkv, W_out, b_out, heads=K)[0], atol=1e-12)


def L_from_O(O):
    return np.vdot(dy, O @ W_out.T + b_out)


def L_from_A(A):  # P held fixed (the values)
    return L_from_O(merge(A @ P))


def L_from_S(S):
    return L_from_A(softmax_forward(S))


def L_from_P(P):  # P is query, key and value at once
    return L_from_O(merge(softmax_forward(scale * P @ P.swapaxes(-1, -2)) @ P))


def L_from_x(x, W_qkv=W_qkv):
    return L_from_P(split(x @ W_qkv.T))


# %% [markdown]
# Backwards:
#
# * $y = OW_{out}^\top + b$: $\;dO = dy\,W_{out}$, $\;dW_{out} = \sum dy^\top O$, $\;db = \sum dy$.
# * $O_k = A_kP_k$: $\;dA_k = dO_k P_k^\top$ and a first (value) contribution $dP_k = A_k^\top dO_k$.
# * $A_k = \operatorname{softmax}(S_k)$: section 2, row by row.
# * $S_k = s\,P_kP_k^\top$: $P_k$ is both query and key, so $dP_k \mathrel{+}= s\,(dS_k + dS_k^\top)P_k$.
# * $P = \mathrm{split}(xW_{qkv}^\top)$: merge $dP$ back to `(B, N, K p)`, then $dx = dP\,W_{qkv}$, $dW_{qkv} = \sum
#   dP^\top x$.

# %%
print("MSSA:")
dO = dy @ W_out
assert_gradient(L_from_O, O, dO, "dO")
dA = split(dO) @ P.swapaxes(-1, -2)
assert_gradient(L_from_A, A, dA, "dA")
dS = softmax_backward(dA, A)
assert_gradient(L_from_S, S, dS, "dS")
dP = A.swapaxes(-1, -2) @ split(dO) + scale * (dS + dS.swapaxes(-1, -2)) @ P
assert_gradient(L_from_P, P, dP, "dP")
dqkv = merge(dP)
dx = dqkv @ W_qkv
assert_gradient(L_from_x, x, dx, "dx")
dW_qkv = dqkv.reshape(-1, K * ph).T @ x.reshape(-1, d)
assert_gradient(lambda W: L_from_x(x, W), W_qkv, dW_qkv, "dW_qkv")
dW_out = dy.reshape(-1, d).T @ O.reshape(-1, K * ph)
assert_gradient(lambda W: np.vdot(dy, O @ W.T + b_out), W_out, dW_out, "dW_out")

# %% [markdown]
# **Compare with whitebox.** `mssa_backward` is these lines, in the same order (its comments restate the forward lines
# they invert); its cache keeps $x$, $W_{qkv}$, $P$ and $A$ for the heads, and $O$, $W_{out}$ for the projection.

# %%
wb = mssa_backward(dy, mssa_forward(x, W_qkv, W_out, b_out, heads=K)[1])
for mine, theirs in zip((dx, dW_qkv, dW_out, dy.sum((0, 1))), wb):
    assert np.allclose(mine, theirs, atol=1e-12)

# %% [markdown]
# ## 4. ISTA
#
# $r = x - xD^\top$ (the coding residual $Z - DZ$), $q = rD$, $a = x + \eta q - \eta\lambda$, $\text{out} =
# \operatorname{ReLU}(a)$. Finite differences are meaningless at the ReLU's kink, so we first check that no
# pre-activation is near 0.

# %%
n, d, eta, lambd = 6, 5, 0.1, 0.1
x = rng.standard_normal((n, d))
D = rng.uniform(-1, 1, (d, d)) * np.sqrt(6 / d)
dout = rng.standard_normal((n, d))
r = x - x @ D.T
q = r @ D
a = x + eta * q - eta * lambd
out = np.maximum(a, 0)
assert np.allclose(out, ista_forward(x, D, eta, lambd)[0], atol=1e-12)
assert np.abs(a).min() > 1e-3  # away from the kink


def L_from_a(a):
    return np.vdot(dout, np.maximum(a, 0))


def L_from_q(q):  # x held fixed (the skip path)
    return L_from_a(x + eta * q - eta * lambd)


def L_from_r(r):
    return L_from_q(r @ D)


def L_from_x(x):  # x feeds the skip path and the residual
    return L_from_a(x + eta * (x - x @ D.T) @ D - eta * lambd)


def L_from_D(D):
    return L_from_a(x + eta * (x - x @ D.T) @ D - eta * lambd)


# %% [markdown]
# Backwards: the ReLU passes the gradient where $a > 0$: $da = dout\odot[a>0]$. Then $a = x + \eta q - \ldots$ gives
# $dq = \eta\,da$ and a skip contribution $dx = da$. $q = rD$ gives $dr = dq\,D^\top$ and $dD = r^\top dq$. $r = x -
# xD^\top$ gives $dx \mathrel{+}= dr - dr\,D$ and $dD \mathrel{-}= dr^\top x$ ($D$ appears twice, so its two
# contributions add).

# %%
print("ISTA:")
da = dout * (a > 0)
assert_gradient(L_from_a, a, da, "da")
dq = eta * da
assert_gradient(L_from_q, q, dq, "dq")
dr = dq @ D.T
assert_gradient(L_from_r, r, dr, "dr")
dx = da + dr - dr @ D
assert_gradient(L_from_x, x, dx, "dx")
dD = r.T @ dq - dr.T @ x
assert_gradient(L_from_D, D, dD, "dD")

# %% [markdown]
# **Compare with whitebox.** With $g = da$ and $dr = \eta\,gD^\top$, `ista_backward` returns $dx = g + dr - dr\,D$ and
# $dD = \eta\,r^\top g - dr^\top x$: the same lines, two matmuls for $dx$ as for the forward.

# %%
wb_dx, wb_dD = ista_backward(dout, ista_forward(x, D, eta, lambd)[1])
assert np.allclose(wb_dx, dx, atol=1e-12) and np.allclose(wb_dD, dD, atol=1e-12)

# %% [markdown]
# ## 5. The whole model
#
# `crate.backward` chains these backwards (plus the patch embedding, the cls token, the head and the loss) in reverse
# layer order. The final exam: the gradient of the cross-entropy with respect to **every** parameter of a tiny CRATE,
# along random directions, against central differences, in float64. Both MSSA forms: the published one (learned output
# projection) and the paper's tied one.

# %%
images = rng.standard_normal((3, 1, 8, 8))
labels = np.array([0, 2, 1])
for form in ("published", "tied"):
    cfg = crate.Config(image_size=8, patch_size=4, channels=1, num_classes=3, dim=8, depth=2, heads=2, dim_head=4,
                       mssa=form)
    params = crate.init(cfg, seed=0, dtype=np.float64)

    def loss(**params):
        return cross_entropy(crate.forward(params, images, cfg)[0], labels)[0]

    logits, cache = crate.forward(params, images, cfg)
    _, dlogits = cross_entropy(logits, labels)
    grads = crate.backward(dlogits, cache)
    assert set(grads) == set(params)
    errors = grad_errors(loss, params, grads, directions=2)
    worst = max(errors, key=errors.get)
    print(f"{form:9s}: {len(params)} parameter arrays, worst relative error {errors[worst]:.1e} ({worst})")
    assert errors[worst] < 1e-5


# %% [markdown]
# ## 6. Exercises
#
# Four backwards to write yourself. Each function below has **one line to fill in**; the solution is in place so that
# the lecture runs (and its tests pass). To practise, replace the line after `# ---- your line ----` by `return None`
# (or your own attempt) and run the cell: the checker compares your answer with an independent reference (whitebox's
# backward, or the closed-form gradient of lecture 2) and says
#
# * **exact**: relative error below $10^{-10}$, the right formula;
# * **close**: below $10^{-3}$: nearly right; a dropped small term (such as LayerNorm's $\epsilon$) lands here;
# * **wrong**: anything else, including NaN or the wrong shape; **blank** if you returned `None`.

# %%
def verdict(yours, reference):
    """'exact', 'close', 'wrong' or 'blank': how ``yours`` compares with ``reference``."""
    if yours is None:
        return "blank"
    yours = np.asarray(yours, dtype=float)
    if yours.shape != reference.shape or not np.all(np.isfinite(yours)):
        return "wrong"
    error = np.linalg.norm(yours - reference) / np.linalg.norm(reference)
    return "exact" if error < 1e-10 else "close" if error < 1e-3 else "wrong"


def check(name, yours, reference):
    result = verdict(yours, reference)
    print(f"  {name:28s} {result}")
    return result


# %% [markdown]
# **Exercise 1 (softmax).** Given the softmax output `p` and the upstream `dp` (both `(..., N)`), return `ds`.
# *Hint: section 2's collapse.*

# %%
def exercise_softmax_backward(p, dp):
    # ---- your line ----
    return p * (dp - (dp * p).sum(-1, keepdims=True))


# %% [markdown]
# **Exercise 2 (LayerNorm, no affine).** Given `x` `(n, d)` and the upstream `dy`, return `dx` for $y =
# (x - \mu)/\sqrt{v + \epsilon}$ with $\epsilon$ = `LAYERNORM_EPS`. *Hint: compute $\hat x$ and $r$ first; section 1.*

# %%
def exercise_layernorm_backward(x, dy, eps=LAYERNORM_EPS):
    xc = x - x.mean(-1, keepdims=True)
    r = 1 / np.sqrt((xc**2).mean(-1, keepdims=True) + eps)
    xhat = xc * r
    # ---- your line ----
    return r * (dy - dy.mean(-1, keepdims=True) - xhat * (dy * xhat).mean(-1, keepdims=True))


# %% [markdown]
# **Exercise 3 (ISTA, the dictionary).** For $\text{out} = \operatorname{ReLU}(x + \eta(x - xD^\top)D - \eta\lambda)$
# and upstream `dout`, return `dD`. *Hint: $D$ appears twice; section 4.*

# %%
def exercise_ista_dD(x, D, dout, eta, lambd):
    r = x - x @ D.T
    g = dout * (x + eta * r @ D - eta * lambd > 0)
    # ---- your line ----
    return eta * (r.T @ g - (g @ D.T).T @ x)


# %% [markdown]
# **Exercise 4 (the coding rate).** Return $\nabla_Z R$ for $R(Z) = \tfrac12\log\det(I + \alpha Z^\top Z)$ in code
# layout (`Z` is `(N, d)`, $\alpha = d/(N\varepsilon^2)$), solving on the $N$ side. *Hint: lecture 2, push-through.*

# %%
def exercise_rate_gradient(Z, eps):
    N, d = Z.shape
    alpha = d / (N * eps**2)
    # ---- your line ----
    return alpha * np.linalg.solve(np.eye(N) + alpha * Z @ Z.T, Z)


# %% [markdown]
# The checker, on your answers:

# %%
x_ex = rng.standard_normal((5, 7))
dy_ex = rng.standard_normal((5, 7))
p_ex = softmax_forward(rng.standard_normal((4, 6)))
dp_ex = rng.standard_normal((4, 6))
D_ex = rng.uniform(-1, 1, (7, 7)) * np.sqrt(6 / 7)
Z_ex = rng.standard_normal((12, 7))
references = {
    "1 softmax backward": softmax_backward(dp_ex, p_ex),
    "2 LayerNorm backward": layernorm_backward(dy_ex, layernorm_forward(x_ex, np.ones(7), np.zeros(7))[1])[0],
    "3 ISTA dD": ista_backward(dy_ex, ista_forward(x_ex, D_ex, 0.1, 0.1)[1])[1],
    "4 rate gradient": coding_rate_grad(Z_ex, 0.5),
}
answers = {
    "1 softmax backward": exercise_softmax_backward(p_ex, dp_ex),
    "2 LayerNorm backward": exercise_layernorm_backward(x_ex, dy_ex),
    "3 ISTA dD": exercise_ista_dD(x_ex, D_ex, dy_ex, 0.1, 0.1),
    "4 rate gradient": exercise_rate_gradient(Z_ex, 0.5),
}
print("your answers:")
results = {name: check(name, answers[name], references[name]) for name in references}

# %% [markdown]
# With the solutions in place every verdict is "exact". And the checker can tell the cases apart: the LayerNorm
# backward without $\epsilon$ is "close" (on these rows of variance about 1, $\epsilon = 10^{-5}$ moves it by about
# $10^{-5}$), a sign slip is "wrong", a NaN is "wrong", and an empty answer is "blank". One more independent check of
# the references: exercise 4's against finite differences of `coding_rate`.

# %%
assert all(result == "exact" for result in results.values()), results
assert verdict(exercise_layernorm_backward(x_ex, dy_ex, eps=0.0), references["2 LayerNorm backward"]) == "close"
assert verdict(-answers["1 softmax backward"], references["1 softmax backward"]) == "wrong"
assert verdict(np.full_like(references["3 ISTA dD"], np.nan), references["3 ISTA dD"]) == "wrong"
assert verdict(None, references["4 rate gradient"]) == "blank"
assert grad_errors(lambda Z: coding_rate(Z, 0.5), {"Z": Z_ex}, {"Z": references["4 rate gradient"]})["Z"] < TOL
