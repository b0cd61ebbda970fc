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
# # Lecture 2 — Gradients of the coding rates, one step at a time
#
# A CRATE layer is meant to move the tokens $Z$ downhill on $R^c(Z\mid U_{[K]}) - R(Z) + \lambda\|Z\|_1$ (lecture 7
# measures whether it does). To move downhill we need gradients. We derive
#
# * $\nabla_Z R$, from the differential of $\log\det$ and the chain rule,
# * $\nabla_Z R^c$, by the chain rule through the projections $U_k^\top Z$,
# * $\nabla_{U_k} R^c$, the same differential read the other way,
#
# checking every intermediate step against finite differences (`whitebox.gradcheck`), then the closed forms against
# `whitebox.rate`, and the push-through identity that lets us solve on the smaller side.
#
# We derive in the papers' layout, $Z\in\mathbb{R}^{d\times N}$ (tokens are columns), and call whitebox, whose arrays
# are `(N, d)`, with `Z.T`. Inner product of matrices: $\langle A, B\rangle = \operatorname{tr}(A^\top B) = \sum_{ij}
# A_{ij}B_{ij}$, so the gradient $G$ of a scalar $f$ is defined by $df = \langle G, dZ\rangle$.

# %%
import numpy as np

from whitebox.gradcheck import entry_errors, grad_errors
from whitebox.rate import (
    coding_rate,
    coding_rate_grad,
    compression_rate,
    compression_rate_grad,
    sparse_rate_reduction,
    sparse_rate_reduction_grad,
)

rng = np.random.default_rng(0)
TOL = 1e-6  # largest relative error we accept from a central difference in float64
d, N, eps = 6, 9, 0.8
alpha = d / (N * eps**2)
Z = rng.standard_normal((d, N))  # math layout: tokens are columns


def R(Z):
    """The coding rate of math-layout tokens Z (d, N)."""
    return coding_rate(Z.T, eps)


# %% [markdown]
# ## 1. The differential of $\log\det$
#
# For an invertible $A$ and a small $H$, $\det(A + H) = \det A\,\det(I + A^{-1}H)$ and $\det(I + E) = 1 +
# \operatorname{tr}E + O(\|E\|^2)$ (expand the determinant: only the product of the diagonal contributes first-order
# terms). With $\log(1 + x) = x + O(x^2)$:
#
# $$d\,\log\det A = \operatorname{tr}(A^{-1}\,dA), \qquad\text{i.e.}\qquad \nabla_A \log\det A = A^{-\top}.$$
#
# First the expansion of $\det(I+E)$: its error is second order, so shrinking $E$ tenfold must shrink the error a
# hundredfold.

# %%
E = rng.standard_normal((d, d))
errors = [abs(np.linalg.det(np.eye(d) + s * E) - (1 + s * np.trace(E))) for s in (1e-2, 1e-3)]
print(f"error at |E|~1e-2: {errors[0]:.3e}   at 1e-3: {errors[1]:.3e}   ratio {errors[0] / errors[1]:.1f}")
assert 90 < errors[0] / errors[1] < 110

# %% [markdown]
# Then the gradient, on a symmetric positive definite $A$ (where $A^{-\top} = A^{-1}$):

# %%
B = rng.standard_normal((d, d))
A = np.eye(d) + B @ B.T  # symmetric positive definite, like I + alpha Z Z^T


def logdet(A):
    return np.linalg.slogdet(A)[1]


err = grad_errors(logdet, {"A": A}, {"A": np.linalg.inv(A)})
print("logdet gradient, relative error:", err)
assert err["A"] < TOL

# %% [markdown]
# ## 2. $\nabla_Z R$ by the chain rule
#
# $R(Z) = \tfrac12\log\det A(Z)$ with $A(Z) = I_d + \alpha ZZ^\top$.
#
# **Step 2a: the differential of $A$.** $A$ is quadratic in $Z$: $dA = \alpha\,(dZ\,Z^\top + Z\,dZ^\top)$. A central
# difference of a quadratic is exact, so this must hold to rounding error.

# %%
T = rng.standard_normal((d, N))  # a direction dZ
h = 1e-3


def A_of(Z):
    return np.eye(d) + alpha * Z @ Z.T


dA_numeric = (A_of(Z + h * T) - A_of(Z - h * T)) / (2 * h)
dA = alpha * (T @ Z.T + Z @ T.T)
assert np.allclose(dA_numeric, dA, rtol=1e-9, atol=1e-12)

# %% [markdown]
# **Step 2b: the differential of $R$.** Put 2a into section 1:
#
# $$dR = \tfrac12\operatorname{tr}\!\big(A^{-1}\alpha(dZ\,Z^\top + Z\,dZ^\top)\big)
#      = \alpha\operatorname{tr}\!\big(Z^\top A^{-1} dZ\big)
#      = \big\langle \alpha A^{-1}Z,\ dZ\big\rangle .$$
#
# (The two traces are equal because $A^{-1}$ is symmetric and $\operatorname{tr}(M) = \operatorname{tr}(M^\top)$; then
# cycle the trace.) We check the first expression and the last against the directional derivative of $R$ along $T$.

# %%
Ainv = np.linalg.inv(A_of(Z))
directional = (R(Z + 1e-6 * T) - R(Z - 1e-6 * T)) / 2e-6
as_trace = 0.5 * np.trace(Ainv @ dA)
as_inner = np.vdot(alpha * Ainv @ Z, T)
print(f"finite difference {directional:.10f}   1/2 tr(A^-1 dA) {as_trace:.10f}   <alpha A^-1 Z, T> {as_inner:.10f}")
assert np.isclose(as_trace, as_inner, rtol=1e-12)
assert np.isclose(directional, as_inner, rtol=1e-7)

# %% [markdown]
# **Step 2c: the gradient.** Reading off the inner product,
#
# $$\boxed{\nabla_Z R = \alpha\,(I_d + \alpha ZZ^\top)^{-1} Z.}$$
#
# Checked along random directions (`grad_errors`) and entry by entry (`entry_errors`, which catches an error that
# random directions could average away, such as a wrong sign in one entry):

# %%
grad_R = alpha * np.linalg.solve(A_of(Z), Z)
print("grad R: random directions", grad_errors(R, {"Z": Z}, {"Z": grad_R}),
      " entries", entry_errors(R, {"Z": Z}, {"Z": grad_R}, entries=10))
assert grad_errors(R, {"Z": Z}, {"Z": grad_R})["Z"] < TOL
assert entry_errors(R, {"Z": Z}, {"Z": grad_R}, entries=10)["Z"] < TOL

# %% [markdown]
# ## 3. The push-through identity: which side to solve on
#
# $(I_d + \alpha ZZ^\top)\,Z = Z + \alpha ZZ^\top Z = Z\,(I_N + \alpha Z^\top Z)$. Multiplying by the two inverses,
# one on each side:
#
# $$(I_d + \alpha ZZ^\top)^{-1} Z = Z\,(I_N + \alpha Z^\top Z)^{-1},$$
#
# so $\nabla_Z R = \alpha Z (I_N + \alpha Z^\top Z)^{-1}$ as well. As with the rate itself (Sylvester, lecture 1) we
# solve a $\min(d, N)$-sized system. Check both shapes, and that whitebox's `coding_rate_grad` (code layout, so
# transpose) is this gradient.

# %%
for n in (4, 15):  # fewer tokens than features, then more
    Zn = rng.standard_normal((d, n))
    a = d / (n * eps**2)
    left = np.linalg.solve(np.eye(d) + a * Zn @ Zn.T, Zn)  # d x d solve
    right = np.linalg.solve(np.eye(n) + a * Zn.T @ Zn, Zn.T).T  # N x N solve (the matrix is symmetric)
    assert np.allclose(left, right, rtol=1e-10, atol=1e-13)
    assert np.allclose(coding_rate_grad(Zn.T, eps).T, a * left, rtol=1e-10, atol=1e-13)

# %% [markdown]
# ## 4. $\nabla_Z R^c$: the chain rule through the projections
#
# $R^c(Z\mid U_{[K]}) = \sum_k \tfrac12\log\det(I_p + \beta P_kP_k^\top)$ with $P_k = U_k^\top Z\in\mathbb{R}^{p\times
# N}$ and $\beta = p/(N\varepsilon^2)$. Each term is a coding rate of $P_k$, so section 2 gives its gradient with
# respect to $P_k$:
#
# $$G_k \;=\; \nabla_{P_k} = \beta\,(I_p + \beta P_kP_k^\top)^{-1}P_k .$$
#
# **Step 4a** checks $G_k$ on its own, treating $P_k$ as the variable.

# %%
K, p = 3, 2
U = rng.standard_normal((K, d, p))  # (K, d, p); the formulas do not need orthonormal bases
beta = p / (N * eps**2)
P = [U[k].T @ Z for k in range(K)]  # each (p, N)
G = [beta * np.linalg.solve(np.eye(p) + beta * P[k] @ P[k].T, P[k]) for k in range(K)]
for k in range(K):  # coding_rate of a (N, p) array uses p / (N eps^2) = beta: it is this term
    assert grad_errors(lambda P_k: coding_rate(P_k.T, eps), {"P_k": P[k]}, {"P_k": G[k]})["P_k"] < TOL

# %% [markdown]
# **Step 4b: back through $P_k = U_k^\top Z$.** $dP_k = U_k^\top dZ$, so $\langle G_k, U_k^\top dZ\rangle = \langle
# U_kG_k, dZ\rangle$: the gradient of each term with respect to $Z$ is $U_kG_k$, and they add up:
#
# $$\nabla_Z R^c = \sum_k U_k G_k = \sum_k \beta\,U_k(I_p + \beta P_kP_k^\top)^{-1}P_k
#   \overset{\text{push-through}}{=} \boxed{\sum_k \beta\,U_kU_k^\top Z\,\big(I_N + \beta (U_k^\top Z)^\top(U_k^\top Z)\big)^{-1}.}$$

# %%
def Rc(Z, U):
    return compression_rate(Z.T, U, eps)


grad_Z_Rc = sum(U[k] @ G[k] for k in range(K))
closed_form = sum(
    beta * U[k] @ U[k].T @ Z @ np.linalg.inv(np.eye(N) + beta * (U[k].T @ Z).T @ (U[k].T @ Z)) for k in range(K)
)
print("grad_Z Rc:", grad_errors(lambda Z: Rc(Z, U), {"Z": Z}, {"Z": grad_Z_Rc}))
assert grad_errors(lambda Z: Rc(Z, U), {"Z": Z}, {"Z": grad_Z_Rc})["Z"] < TOL
assert entry_errors(lambda Z: Rc(Z, U), {"Z": Z}, {"Z": grad_Z_Rc}, entries=10)["Z"] < TOL
assert np.allclose(closed_form, grad_Z_Rc, rtol=1e-10, atol=1e-13)
assert np.allclose(compression_rate_grad(Z.T, U, eps)[0].T, grad_Z_Rc, rtol=1e-10, atol=1e-13)

# %% [markdown]
# ## 5. $\nabla_{U_k} R^c$: the same differential, read the other way
#
# Now hold $Z$ and move $U_k$: $dP_k = dU_k^\top Z$ and
#
# $$\langle G_k, dU_k^\top Z\rangle = \operatorname{tr}(G_k^\top dU_k^\top Z) = \operatorname{tr}(dU_k^\top\, Z G_k^\top)
#   = \langle ZG_k^\top, dU_k\rangle .$$
#
# With $G_k^\top = \beta P_k^\top(I_p + \beta P_kP_k^\top)^{-1}$ (the inverse is symmetric):
#
# $$\boxed{\nabla_{U_k} R^c = \beta\, ZZ^\top U_k\,\big(I_p + \beta U_k^\top ZZ^\top U_k\big)^{-1}.}$$
#
# ($\beta = p/(N\varepsilon^2)$ depends on the shapes only, not on the values of $U$.) `U` has the same `(K, d, p)`
# layout in the papers and in code, so no transpose is needed when comparing.

# %%
grad_U_Rc = np.stack([Z @ G[k].T for k in range(K)])  # (K, d, p)
print("grad_U Rc:", grad_errors(lambda U: Rc(Z, U), {"U": U}, {"U": grad_U_Rc}))
closed_form_U = np.stack(
    [beta * Z @ Z.T @ U[k] @ np.linalg.inv(np.eye(p) + beta * U[k].T @ Z @ Z.T @ U[k]) for k in range(K)]
)
assert grad_errors(lambda U: Rc(Z, U), {"U": U}, {"U": grad_U_Rc})["U"] < TOL
assert entry_errors(lambda U: Rc(Z, U), {"U": U}, {"U": grad_U_Rc}, entries=10)["U"] < TOL
assert np.allclose(closed_form_U, grad_U_Rc, rtol=1e-10, atol=1e-13)
assert np.allclose(compression_rate_grad(Z.T, U, eps)[1], grad_U_Rc, rtol=1e-10, atol=1e-13)

# %% [markdown]
# ## 6. The whole objective
#
# The sparse rate reduction $L(Z) = R^c(Z\mid U_{[K]}) - R(Z) + \lambda\|Z\|_1$ has, wherever no entry of $Z$ is zero,
# the gradient $\nabla_Z R^c - \nabla_Z R + \lambda\,\operatorname{sign}(Z)$. (At a zero entry $|\cdot|$ has no
# derivative; $\lambda\operatorname{sign}(0) = 0$ is the smallest subgradient. Lecture 4 handles the $\ell^1$ term
# properly, with a proximal step.) Finite differences are valid only away from the kinks, so we check that no entry is
# within $10^{-3}$ of zero.

# %%
lambd = 0.1
assert np.abs(Z).min() > 1e-3
grad_L = grad_Z_Rc - grad_R + lambd * np.sign(Z)
assert np.allclose(sparse_rate_reduction_grad(Z.T, U, eps, lambd)[0].T, grad_L, rtol=1e-10, atol=1e-13)
assert grad_errors(lambda Z: sparse_rate_reduction(Z.T, U, eps, lambd), {"Z": Z}, {"Z": grad_L})["Z"] < TOL

# %% [markdown]
# **Summary.** $d\log\det A = \operatorname{tr}(A^{-1}dA)$ plus the chain rule gave all three gradients; the
# push-through identity lets each be computed with a solve of size $\min(\cdot, N)$. In lecture 3 we take a step $Z -
# \kappa\nabla_Z R^c$ and watch it turn into attention.
