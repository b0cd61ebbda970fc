"""MaskCut and the cls-attention threshold: object masks from a transformer's patch features, unsupervised.

**MaskCut** (CutLER, Wang et al. 2023, as used by the CRATE segmentation paper and CRATE-alpha
§4.4; docs/reference.md §9). Per image, with ``F`` (n, f) the last layer's patch features (CRATE:
the ``qkv`` projections ``U^T LN(z)``; ViT: its keys) and ``f̂_i = f_i / ‖f_i‖``:

.. math::

    W_{ij} = 1 \\text{ if } f̂_i · f̂_j ≥ τ \\text{ else } 10^{-5},    D = \\operatorname{diag}(W 1),
    (D − W) x = λ D x

The eigenvector ``x`` of the second-smallest ``λ`` (the relaxed normalised cut of Shi and Malik)
is split at its mean. Which side is the object: the side of the patch with the largest
``|x_i|`` (the cut's most confident patch), unless that side holds three or more of the grid's
four corners, in which case the other side (CutLER's object-centric prior, ``maskcut.py``).
Further objects: the found patches' features are set to zero (so their affinities fall to
``10^{-5}``) and the cut is repeated on the same graph size.

**cls-attention threshold** (DINO, Caron et al. 2021, ``visualize_attention.py``): the last
layer's attention of the cls query on the patches, averaged over heads, sorted; the patches kept
are those whose ascending cumulative share exceeds ``1 − q``: the fewest top patches that hold a
fraction ``q`` (0.6) of the mass.

Everything here is on host NumPy arrays, float64; :mod:`whitebox.analysis.segmentation` feeds it
a checkpoint's features and scores the masks.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

MASKCUT_TAU = 0.15  # cosine threshold of the affinity (CutLER's default)
MASKCUT_EPS = 1e-5  # affinity of dissimilar patches: keeps the graph connected
ATTENTION_MASS = 0.6  # DINO's share of the cls attention kept


def affinity(features: np.ndarray, tau: float = MASKCUT_TAU) -> np.ndarray:
    """``W_ij = 1`` where the cosine of patches ``i, j`` is ``≥ τ``, else ``10^{-5}``: (n, f) → (n, n).

    A zero feature (a patch removed by an earlier cut) has cosine 0 with every patch.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be (n, f) with n >= 2 patches, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or inf")
    norms = np.linalg.norm(f, axis=1, keepdims=True)  # n,1
    unit = f / np.where(norms > 0, norms, 1.0)  # n,f
    return np.where(unit @ unit.T >= tau, 1.0, MASKCUT_EPS)  # n,n


def fiedler_vector(W: np.ndarray) -> np.ndarray:
    """The generalised eigenvector of ``(D − W) x = λ D x`` with the second-smallest ``λ``: (n, n) → (n,)."""
    D = np.diag(W.sum(axis=1))
    _, vectors = scipy.linalg.eigh(D - W, D, subset_by_index=[1, 1])
    return vectors[:, 0]


def corners(mask: np.ndarray) -> int:
    """How many of the four corners of a (gh, gw) mask are set."""
    return int(mask[0, 0]) + int(mask[0, -1]) + int(mask[-1, 0]) + int(mask[-1, -1])


def bipartition(x: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The object side of the cut ``x > mean(x)``: (n,) → (gh, gw) bool (module docstring)."""
    side = (x > x.mean()).reshape(grid)  # gh,gw
    seed = np.unravel_index(np.argmax(np.abs(x)), grid)
    if corners(side) >= 3:
        return ~side
    return side if side[seed] else ~side


def maskcut(features: np.ndarray, grid: tuple[int, int], *, tau: float = MASKCUT_TAU,
            n_objects: int = 1) -> np.ndarray:
    """MaskCut's object masks of one image: features (n, f) of the ``n = gh gw`` patches → (n_objects, gh, gw) bool."""
    if isinstance(n_objects, bool) or not isinstance(n_objects, (int, np.integer)) or n_objects < 1:
        raise ValueError(f"n_objects must be an integer >= 1, got {n_objects!r}")
    f = np.array(features, dtype=np.float64)  # a copy: found patches are zeroed below
    if f.ndim != 2 or len(f) != grid[0] * grid[1]:
        raise ValueError(f"features must be (n, f) with n = {grid[0]} x {grid[1]} patches, got shape {f.shape}")
    masks = np.zeros((n_objects,) + tuple(grid), dtype=bool)
    for k in range(n_objects):
        masks[k] = bipartition(fiedler_vector(affinity(f, tau)), grid) & ~masks[:k].any(axis=0)
        f[masks[k].reshape(-1)] = 0
    return masks


def maskcut_batch(features: np.ndarray, grid: tuple[int, int], *, tau: float = MASKCUT_TAU) -> np.ndarray:
    """The first MaskCut object of each image: (B, n, f) → (B, gh, gw) bool."""
    return np.stack([maskcut(f, grid, tau=tau)[0] for f in features])


def attention_masks(attention: np.ndarray, mass: float = ATTENTION_MASS) -> np.ndarray:
    """The top patches holding a share ``mass`` of the cls attention: (B, K, gh, gw) → (B, gh, gw) bool.

    Heads are averaged first; ties are broken by the sort (NumPy's stable order).
    """
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass!r}")
    a = np.asarray(attention, dtype=np.float64).mean(axis=1)  # B,gh,gw
    B, gh, gw = a.shape
    flat = a.reshape(B, -1)
    order = np.argsort(flat, axis=1, kind="stable")  # ascending
    share = np.take_along_axis(flat, order, axis=1) / flat.sum(axis=1, keepdims=True)
    keep_sorted = np.cumsum(share, axis=1) > 1 - mass  # B,n
    keep = np.empty_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, axis=1)
    return keep.reshape(B, gh, gw)
