"""Optimisers on parameter dicts, written out by hand: SGD, AdamW, Lion; gradient clipping.

Parameters and gradients are plain ``dict[str, array]`` (NumPy or CuPy). An optimiser holds only
its hyper-parameters; everything that changes during training lives in a *state* dict, so that a
checkpoint is just arrays::

    opt = AdamW(lr=1e-3, weight_decay=0.05)
    state = opt.init(params)                 # {"step": 0, "decay": {...}, "m": {...}, "v": {...}}
    for step in range(total_steps):
        grads = ...                          # same keys and shapes as params
        clip_grad_norm(grads, 1.0)
        opt.step(params, grads, state, lr=warmup_cosine(step, ...))   # params updated in place
    np.savez("opt.npz", **opt.state_dict(state))
    state = opt.load_state_dict(np.load("opt.npz"))

``step`` mutates the parameter arrays in place (a model that holds references to them sees the
new values). The state keeps each slot (``m``, ``v``, momentum) as a :class:`whitebox.flat.FlatTree`:
named views into one buffer per dtype, so a step is a few fused passes over one long array (with the
weight-decay set as a flat 0/1 mask), not a few passes per parameter. The training loop keeps the
parameters and gradients flat too and calls :meth:`Optimizer.update`, which never waits for the
device; :func:`grad_norm` and :func:`clip_grads` return the norm as a device scalar for the same
reason.

Which parameters are weight-decayed is a set of names chosen once, at ``init``: by default
:func:`decay_mask`, which decays matrices but not biases, norms and embeddings.

The update rules follow PyTorch (``torch.optim.SGD``, ``torch.optim.AdamW``) and the
``lion-pytorch`` reference of Lion, so runs can be compared step for step.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from .backend import array_module, is_device_array, to_host, tree_to_host
from .flat import FlatTree, flat_copy, flat_to, flat_zeros, is_flat, layout_of
from .validate import check_array, check_positive

_EMBEDDING_NAMES = ("cls_token", "pos_embedding")


def decay_mask(params: Mapping) -> set[str]:
    """The names of the parameters that weight decay should shrink: matrices, not the rest.

    A parameter is decayed when it has two or more dimensions (linear and convolution weights,
    the ``qkv`` projections, the ISTA / ODL dictionaries) and its name contains neither
    ``"cls_token"`` nor ``"pos_embedding"``.

    Why (standard ViT practice, e.g. timm's ``param_groups_weight_decay`` and ``no_weight_decay``;
    whitebox's choice: the official CRATE ``main.py`` passes every parameter to AdamW, docs/reference.md
    §5): weight decay is a prior that *matrices* be small, which
    limits how much a layer can amplify its input. It means nothing for the others:

    * Biases (1-D) shift activations; pulling them to 0 adds bias without limiting capacity.
    * LayerNorm gains and biases (1-D) undo the normalisation's scale on purpose; decaying the
      gain towards 0 fights the normalisation and shrinks the signal of every following layer.
    * The class token and position embeddings are learned *inputs*; decaying them erases the
      position information the model has no other way to get.

    Parameters
    ----------
    params : mapping of str to array

    Returns
    -------
    set of str
    """
    return {
        name
        for name, p in params.items()
        if p.ndim >= 2 and not any(tag in name for tag in _EMBEDDING_NAMES)
    }


def grad_norm(grads: Mapping):
    r"""The global norm :math:`\|g\| = (\sum_{\text{name}} \|g_{\text{name}}\|_F^2)^{1/2}`, as a 0-d float64
    array of the gradients' module: no host synchronisation (``float()`` it to print it).

    On a :class:`whitebox.flat.FlatTree` it is one dot product per dtype buffer; on a plain dict one
    per gradient. An empty dict has norm 0.
    """
    arrays = _buffers(grads)
    if not arrays:
        return np.float64(0.0)
    xp = array_module(*arrays)
    squares = sum(xp.vdot(a.ravel(), a.ravel()).astype(np.float64) for a in arrays)
    return xp.sqrt(squares)


def clip_grads(grads: Mapping, max_norm: float):
    r"""Scale all gradients together, in place, so that their global norm is at most ``max_norm``.

    .. math::

        \|g\| = \Big(\sum_{\text{name}} \|g_{\text{name}}\|_F^2\Big)^{1/2}, \qquad
        g \leftarrow g \cdot \min\Big(1, \frac{\text{max\_norm}}{\|g\| + 10^{-6}}\Big),

    as ``torch.nn.utils.clip_grad_norm_`` (Pascanu, Mikolov & Bengio 2013, "On the difficulty of
    training recurrent neural networks"). The direction of the update is kept; only its length
    is capped. Below the cap the factor is exactly 1, so the gradients keep their bits; when the
    norm is not finite (NaN or inf) the factor is 1 too and the caller should skip the step.

    The factor is computed on the gradients' device and applied whatever it is (one multiplication
    per buffer), so clipping never waits for the host. Returns the norm *before* clipping as a 0-d
    float64 array (:func:`grad_norm`).
    """
    max_norm = check_positive("max_norm", max_norm)
    norm = grad_norm(grads)
    arrays = _buffers(grads)
    if arrays:
        xp = array_module(*arrays)
        coef = xp.where(xp.isfinite(norm), xp.minimum(1.0, max_norm / (norm + 1e-6)), 1.0)
        for a in arrays:
            a *= coef.astype(a.dtype)
    return norm


def clip_grad_norm(grads: Mapping, max_norm: float) -> float:
    """:func:`clip_grads`, with the norm before clipping returned as a Python float (one host synchronisation).

    Parameters
    ----------
    grads : mapping of str to array
        Scaled in place.
    max_norm : float
        Must be > 0.

    Returns
    -------
    float
        The global norm *before* clipping. When it is not finite (NaN or inf), the gradients are
        left unchanged and the caller should skip the step.
    """
    return float(clip_grads(grads, max_norm))


def _buffers(tree: Mapping) -> list:
    """The arrays to run a whole-tree pass over: a FlatTree's buffers, else every value."""
    return list(tree.buffers) if is_flat(tree) else list(tree.values())


class Optimizer:
    """Shared machinery: hyper-parameter checks, state layout, checkpoints, input checks, the fused step.

    A subclass names its per-parameter buffers in ``slots`` (e.g. ``("m", "v")``) and writes two
    methods: ``_coefficients(lr, step)``, the scalars of this step's rule as two tuples (their values,
    and the values that leave every array unchanged, for a step the caller vetoes on the device), and
    ``_update(p, g, buffers, scratch, mask, c)``, the rule on one flat buffer ``p`` with its
    gradient ``g``, slot buffers, a scratch array, the 0/1 weight-decay ``mask`` (or None: nothing
    decays) and the coefficients ``c``.

    State layout (what :meth:`init` returns and :meth:`step` mutates)::

        {"step": int,                      # number of updates taken
         "decay": frozenset of names,      # parameters that weight decay shrinks
         "decay_mask": FlatTree of 0/1,    # the same as a flat mask (absent when nothing decays)
         <slot>: FlatTree like params      # for each slot: state[slot][name] is a view}

    Every slot is a :class:`whitebox.flat.FlatTree` laid out like the parameters, so one step is a
    few passes over one buffer per dtype: about 16 array operations for AdamW whatever the number
    of parameters. :meth:`step` takes any dict (copying into flat buffers when needed);
    :meth:`update` is the loop's fast path on flat trees, with no check and no host synchronisation.
    """

    slots: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float, decay: Iterable[str] | None):
        self.lr = check_positive("lr", lr)
        self.weight_decay = _check_nonnegative("weight_decay", weight_decay)
        self.decay = None if decay is None else frozenset(decay)

    def init(self, params: Mapping) -> dict:
        """A fresh state for ``params``: step 0, zero buffers laid out like ``params``, the set of decayed names."""
        for name, p in params.items():
            check_array(f"params[{name!r}]", p)
        decay = frozenset(decay_mask(params)) if self.decay is None else self.decay
        unknown = sorted(decay - set(params))
        if unknown:
            raise ValueError(f"decay names parameters that are not in params: {unknown}")
        state = {"step": 0, "decay": decay}
        layout, xp = layout_of(params), array_module(*params.values())
        for slot in self.slots:
            state[slot] = flat_zeros(layout, xp)
        self._align(state, layout, xp)
        return state

    def step(self, params: Mapping, grads: Mapping, state: dict, lr: float | None = None) -> None:
        """One update of every parameter, in place; ``state`` is updated in place too.

        Parameters
        ----------
        params, grads : mapping of str to array
            The same keys, and the same shape key by key. Plain dicts are copied into flat buffers
            and back; :class:`whitebox.flat.FlatTree` ones are updated where they are.
        state : dict
            From :meth:`init` or :meth:`load_state_dict`.
        lr : float, optional
            The learning rate for this step (from a schedule); ``None`` uses ``self.lr``. May be
            0 (a schedule's last value), not negative.

        Raises
        ------
        FloatingPointError
            A gradient holds NaN or inf (it names the parameters); nothing has been changed, so
            the caller may skip the batch or stop with its parameters and state intact. (This check
            waits for the device once; the training loop calls :meth:`update` instead.)
        """
        lr = self.lr if lr is None else _check_nonnegative("lr", lr)
        self._check_inputs(params, grads, state)
        _check_finite_grads(grads)
        flat = params if is_flat(params) else flat_copy(params)
        self.update(flat, grads if is_flat(grads, flat.layout) else flat_copy(grads, flat.layout), state, lr)
        if flat is not params:
            for name, p in params.items():
                p[...] = flat[name]

    def update(self, params: FlatTree, grads: FlatTree, state: dict, lr: float, ok=None) -> None:
        """The fused step on flat trees of one layout: a few array operations per dtype buffer, no host sync.

        ``ok`` (a 0-d boolean array, or None for "yes") vetoes the step on the device: where it is
        False, the gradients are read as zeros and every coefficient takes its "no change" value, so
        the parameters and slots keep their bits (only the host counter ``state["step"]`` advances;
        the caller that vetoes steps winds it back). A host (NumPy) flag is simply read, which costs
        nothing there, and the step skipped or taken whole. No input is checked: see :meth:`step`.
        """
        xp = array_module(*params.buffers)
        self._align(state, params.layout, xp)
        state["step"] += 1
        if ok is not None and not is_device_array(ok):  # a host flag is free to read: skip the step, or take it
            if not ok:
                return
            ok = None
        on, off = self._coefficients(lr, state["step"])
        mask = state.get("decay_mask")
        for i, p in enumerate(params.buffers):
            g, c = grads.buffers[i], on
            if ok is not None:  # on the device: one select for the coefficients, one for the gradient
                c = xp.where(ok, xp.asarray(on, dtype=p.dtype), xp.asarray(off, dtype=p.dtype))
                g = xp.where(ok, g, 0)
            buffers = tuple(state[slot].buffers[i] for slot in self.slots)
            self._update(p, g, buffers, xp.empty_like(p), None if mask is None else mask.buffers[i], c)

    def _align(self, state: dict, layout, xp) -> None:
        """Lay the slots out like the parameters (a copy, once, after a load) and build the decay mask."""
        for slot in self.slots:
            if not is_flat(state[slot], layout):
                state[slot] = flat_copy({name: state[slot][name] for name in layout.names}, layout)
        if not (self.weight_decay and state["decay"]):
            state.pop("decay_mask", None)
        elif not is_flat(state.get("decay_mask", {}), layout):
            mask = flat_zeros(layout, xp)
            for name in state["decay"] & set(layout.names):
                mask[name][...] = 1
            state["decay_mask"] = mask

    def _coefficients(self, lr: float, step: int) -> tuple[tuple, tuple]:
        raise NotImplementedError

    def _update(self, p, g, buffers, scratch, mask, c) -> None:
        raise NotImplementedError

    def state_dict(self, state: dict) -> dict:
        """A flat dict of NumPy arrays for ``np.savez``: ``"step"``, ``"decay"``, ``"<slot>/<name>"``.

        The arrays are copies on the host (one transfer per slot buffer); later steps do not change them.
        """
        flat = {
            "step": np.asarray(state["step"], dtype=np.int64),
            "decay": np.asarray(sorted(state["decay"]), dtype=np.str_),
        }
        for slot in self.slots:
            for name, buf in flat_to(state[slot], np).items():
                flat[f"{slot}/{name}"] = buf.copy()
        return flat

    def load_state_dict(self, flat: Mapping, xp=None) -> dict:
        """The state saved by :meth:`state_dict` (a dict, or the ``NpzFile`` of ``np.load``).

        The arrays are copied into flat buffers, onto the module ``xp`` (``numpy`` or ``cupy``) when
        given, else kept where they are. Continuing from the loaded state repeats, bit for bit, the
        steps the saved run would have taken. (The named layout is the checkpoint format of every
        whitebox version, so older checkpoints load.)
        """
        for key in ("step", "decay"):
            if key not in flat:
                raise ValueError(f"the saved state has no {key!r} entry")
        state = {"step": int(flat["step"]), "decay": frozenset(str(n) for n in np.asarray(flat["decay"]))}
        named = {slot: {} for slot in self.slots}
        for key in flat:
            if key in ("step", "decay"):
                continue
            slot, _, name = key.partition("/")
            if slot not in self.slots or not name:
                raise ValueError(
                    f"the saved state has an entry {key!r}, but {type(self).__name__} keeps only "
                    f"{list(self.slots)} buffers: is it another optimiser's state?"
                )
            named[slot][name] = flat[key]
        names = [set(named[slot]) for slot in self.slots]
        if any(n != names[0] for n in names):
            raise ValueError(f"the saved buffers {list(self.slots)} do not name the same parameters")
        for slot, tree in named.items():
            state[slot] = flat_copy(tree) if xp is None else flat_to(flat_copy(tree_to_host(tree)), xp)
        return state

    def _check_inputs(self, params: Mapping, grads: Mapping, state: dict) -> None:
        missing = [name for name in params if name not in grads]
        if missing:
            raise ValueError(f"grads is missing key(s) {missing}")
        extra = [name for name in grads if name not in params]
        if extra:
            raise ValueError(f"grads has key(s) {extra} that are not in params")
        for name, p in params.items():
            if grads[name].shape != p.shape:
                raise ValueError(
                    f"grads[{name!r}] has shape {tuple(grads[name].shape)}, "
                    f"but params[{name!r}] has shape {tuple(p.shape)}"
                )
            for slot in self.slots:
                buf = state[slot].get(name)
                if buf is None or buf.shape != p.shape:
                    raise ValueError(
                        f"state[{slot!r}] has no buffer of shape {tuple(p.shape)} for {name!r}: "
                        "was the state made for other params?"
                    )


class SGD(Optimizer):
    r"""Stochastic gradient descent with (Nesterov) momentum, as ``torch.optim.SGD``.

    For each parameter :math:`p` with gradient :math:`g` and momentum buffer :math:`b_0 = 0`:

    .. math::

        d_t &= g_t + \lambda\, p_{t-1} \qquad (\lambda\, p \text{ term for decayed names only}) \\
        b_t &= \mu\, b_{t-1} + d_t \\
        p_t &= p_{t-1} - \eta\, b_t
            \quad \text{or, Nesterov:} \quad p_t = p_{t-1} - \eta\,(d_t + \mu\, b_t)

    (Polyak 1964; Sutskever et al. 2013, "On the importance of initialization and momentum in
    deep learning", eq. 3-4 in the form PyTorch uses). The weight decay here is the L2 penalty
    :math:`\tfrac{\lambda}{2}\|p\|^2` added to the loss, hence *coupled*: it goes through the
    momentum, unlike AdamW's.

    Parameters
    ----------
    lr : float
        :math:`\eta > 0`.
    momentum : float
        :math:`\mu \in [0, 1)`; 0 is plain SGD and keeps no buffer.
    nesterov : bool
        Needs ``momentum > 0``.
    weight_decay : float
        :math:`\lambda \ge 0`.
    decay : iterable of str, optional
        The names to decay; default :func:`decay_mask` of the params given to :meth:`init`.
    """

    def __init__(self, lr: float, momentum: float = 0.9, nesterov: bool = False,
                 weight_decay: float = 0.0, decay: Iterable[str] | None = None):
        super().__init__(lr, weight_decay, decay)
        self.momentum = _check_beta("momentum", momentum)
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.slots = ("momentum",) if self.momentum > 0 else ()

    def _coefficients(self, lr, step):
        return (self.weight_decay, self.momentum, lr), (0.0, 1.0, 0.0)  # (λ, μ, η); a vetoed step: 0, 1, 0

    def _update(self, p, g, buffers, d, mask, c):
        wd, mu, lr = c
        xp = array_module(p)
        if mask is not None:
            xp.multiply(p, mask, out=d)
            d *= wd
            d += g                                    # d = g + λ p on the decayed entries
        else:
            d[...] = g                                # d = g
        if self.momentum:
            (b,) = buffers
            b *= mu
            b += d                                    # b = μ b + d
            if self.nesterov:
                d += mu * b                           # d + μ b
            else:
                d[...] = b
        d *= lr
        p -= d


class AdamW(Optimizer):
    r"""Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    For each parameter, with :math:`m_0 = v_0 = 0` and :math:`t = 1, 2, \dots`:

    .. math::

        p &\leftarrow p - \eta \lambda\, p \qquad (\text{decayed names only}) \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
        v_t &= \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
             \frac{m_t}{\sqrt{v_t} / \sqrt{1 - \beta_2^t} + \epsilon}

    Adam: Kingma & Ba 2015, "Adam: A method for stochastic optimization", Algorithm 1 (bias
    correction divides out the zero start of :math:`m, v`). Decoupled decay: Loshchilov & Hutter
    2019, "Decoupled Weight Decay Regularization", Algorithm 2: the decay shrinks :math:`p`
    directly instead of entering the gradient, so it is not rescaled by :math:`1/\sqrt{v}`. As in
    PyTorch, the decay is multiplied by the learning rate :math:`\eta` (so a schedule scales it
    too) and :math:`\epsilon` is added after the bias correction of :math:`\sqrt{v}`.

    Parameters
    ----------
    lr : float
        :math:`\eta > 0`.
    betas : (float, float)
        :math:`\beta_1, \beta_2 \in [0, 1)`.
    eps : float
        :math:`\epsilon > 0`.
    weight_decay : float
        :math:`\lambda \ge 0`.
    decay : iterable of str, optional
        The names to decay; default :func:`decay_mask` of the params given to :meth:`init`.
    """

    slots = ("m", "v")

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, decay: Iterable[str] | None = None):
        super().__init__(lr, weight_decay, decay)
        self.betas = _check_betas(betas)
        self.eps = check_positive("eps", eps)

    def _coefficients(self, lr, step):
        b1, b2 = self.betas
        on = (lr * self.weight_decay, b1, 1.0 - b1, b2, 1.0 - b2, (1.0 - b2**step) ** 0.5, self.eps,
              lr / (1.0 - b1**step))
        return on, (0.0, 1.0, 0.0, 1.0, 0.0, 1.0, self.eps, 0.0)  # a vetoed step changes nothing

    def _update(self, p, g, buffers, t, mask, c):
        lr_wd, b1, one_b1, b2, one_b2, bias2, eps, step_size = c
        m, v = buffers
        xp = array_module(p)
        if mask is not None:
            xp.multiply(mask, lr_wd, out=t)
            xp.subtract(1.0, t, out=t)
            p *= t                                    # p ← (1 − ηλ) p on the decayed entries
        m *= b1
        xp.multiply(g, one_b1, out=t)
        m += t                                        # m = β1 m + (1 − β1) g
        v *= b2
        xp.multiply(g, g, out=t)
        t *= one_b2
        v += t                                        # v = β2 v + (1 − β2) g²
        xp.sqrt(v, out=t)
        t /= bias2                                    # √(1 − β2^t)
        t += eps                                      # √v̂ + ε
        xp.divide(m, t, out=t)
        t *= step_size                                # η m̂ / (√v̂ + ε), with η / (1 − β1^t)
        p -= t


class Lion(Optimizer):
    r"""Lion, "EvoLved Sign Momentum", as the ``lion-pytorch`` reference.

    For each parameter, with :math:`m_0 = 0`:

    .. math::

        c_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t \\
        p_t &= p_{t-1} - \eta\,\big(\operatorname{sign}(c_t) + \lambda\, p_{t-1}\big)
              \qquad (\lambda\, p \text{ term for decayed names only}) \\
        m_t &= \beta_2 m_{t-1} + (1 - \beta_2)\, g_t

    Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Program 1. The order
    matters: the update direction interpolates with :math:`\beta_1` using the *old* momentum,
    and only then is the momentum updated with :math:`\beta_2`. Every coordinate moves by
    :math:`\pm\eta` (or 0 where :math:`c = 0`), so Lion wants a learning rate 3-10x smaller than
    AdamW's and a weight decay 3-10x larger, to keep :math:`\eta\lambda` the same.

    Parameters
    ----------
    lr : float
        :math:`\eta > 0`.
    betas : (float, float)
        :math:`\beta_1, \beta_2 \in [0, 1)`.
    weight_decay : float
        :math:`\lambda \ge 0`.
    decay : iterable of str, optional
        The names to decay; default :func:`decay_mask` of the params given to :meth:`init`.
    """

    slots = ("m",)

    def __init__(self, lr: float, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0,
                 decay: Iterable[str] | None = None):
        super().__init__(lr, weight_decay, decay)
        self.betas = _check_betas(betas)

    def _coefficients(self, lr, step):
        b1, b2 = self.betas
        return (lr * self.weight_decay, b1, 1.0 - b1, lr, b2, 1.0 - b2), (0.0, b1, 1.0 - b1, 0.0, 1.0, 0.0)

    def _update(self, p, g, buffers, c, mask, k):
        lr_wd, b1, one_b1, lr, b2, one_b2 = k
        (m,) = buffers
        xp = array_module(p)
        if mask is not None:
            xp.multiply(mask, lr_wd, out=c)
            xp.subtract(1.0, c, out=c)
            p *= c                                    # p ← p − ηλ p on the decayed entries
        xp.multiply(m, b1, out=c)
        c += one_b1 * g                               # c = β1 m + (1 − β1) g
        xp.sign(c, out=c)
        c *= lr
        p -= c                                        # p ← p − η sign(c)
        m *= b2
        xp.multiply(g, one_b2, out=c)
        m += c                                        # m = β2 m + (1 − β2) g


def _check_finite_grads(grads: Mapping) -> None:
    """``FloatingPointError`` naming every gradient that holds NaN or inf (one host synchronisation in all)."""
    if not grads:
        return
    xp = array_module(*grads.values())
    finite = to_host(xp.stack([xp.isfinite(g).all() for g in grads.values()]))
    bad = [name for name, ok in zip(grads, finite) if not ok]
    if bad:
        raise FloatingPointError(
            f"grads {bad} contain NaN or inf values; the parameters and optimiser state were left "
            "unchanged (lower the learning rate, clip gradients, or skip this batch)"
        )


def _check_nonnegative(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number >= 0, got {value!r}") from None
    if not (0.0 <= v < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _check_beta(name: str, value) -> float:
    v = _check_nonnegative(name, value)
    if not v < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return v


def _check_betas(betas) -> tuple[float, float]:
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
    return _check_beta("betas[0]", b1), _check_beta("betas[1]", b2)
