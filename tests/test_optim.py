"""Optimisers and schedules against updates written out independently here, in plain NumPy.

The test problem is a convex quadratic f(x) = Σ_name ½ vec(x)ᵀ A_name vec(x), with one matrix
(decayed by default) and two vectors (not decayed), so that every rule is checked with and
without weight decay.
"""

import io
import math

import numpy as np
import pytest

from whitebox.optim import SGD, AdamW, Lion, clip_grad_norm, decay_mask
from whitebox.schedules import constant, warmup_cosine

SHAPES = {"w": (3, 4), "b": (4,), "ln.weight": (5,)}


def make_problem(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    A = {}
    for name, shape in SHAPES.items():
        n = math.prod(shape)
        Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        A[name] = (Q * rng.uniform(0.5, 5.0, n)) @ Q.T  # SPD, eigenvalues in [0.5, 5]
    x0 = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    return A, x0


def loss(A, x):
    return sum(0.5 * x[k].ravel() @ A[k] @ x[k].ravel() for k in x)


def grad(A, x):
    return {k: (A[k] @ x[k].ravel()).reshape(x[k].shape) for k in x}


def copy(tree):
    return {k: v.copy() for k, v in tree.items()}


LRS = [0.01, 0.03, 0.05, 0.02, 0.04]  # a different rate each step exercises step(lr=...)


# --------------------------------------------------------------------- textbook references


def sgd_reference(A, x, lrs, mu, nesterov, wd, decay):
    x, b = copy(x), {k: np.zeros_like(v) for k, v in x.items()}
    for lr in lrs:
        g = grad(A, x)
        for k in x:
            d = g[k] + (wd * x[k] if k in decay else 0.0)
            b[k] = mu * b[k] + d
            x[k] = x[k] - lr * (d + mu * b[k] if nesterov else b[k])
    return x


def adamw_reference(A, x, lrs, b1, b2, eps, wd, decay):
    x = copy(x)
    m, v = ({k: np.zeros_like(a) for k, a in x.items()} for _ in range(2))
    for t, lr in enumerate(lrs, start=1):
        g = grad(A, x)
        for k in x:
            if k in decay:
                x[k] = x[k] - lr * wd * x[k]
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            m_hat, v_hat = m[k] / (1 - b1**t), v[k] / (1 - b2**t)
            x[k] = x[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return x


def lion_reference(A, x, lrs, b1, b2, wd, decay):
    x, m = copy(x), {k: np.zeros_like(a) for k, a in x.items()}
    for lr in lrs:
        g = grad(A, x)
        for k in x:
            c = b1 * m[k] + (1 - b1) * g[k]
            x[k] = x[k] - lr * (np.sign(c) + (wd * x[k] if k in decay else 0.0))
            m[k] = b2 * m[k] + (1 - b2) * g[k]
    return x


def run(opt, A, x, lrs):
    x = copy(x)
    state = opt.init(x)
    for lr in lrs:
        opt.step(x, grad(A, x), state, lr=lr)
    return x, state


# ------------------------------------------------------------------------ update rules


@pytest.mark.parametrize("mu, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_reference(mu, nesterov):
    A, x0 = make_problem()
    x, state = run(SGD(lr=0.1, momentum=mu, nesterov=nesterov, weight_decay=0.1), A, x0, LRS)
    expected = sgd_reference(A, x0, LRS, mu, nesterov, 0.1, decay={"w"})
    assert state["step"] == len(LRS)
    for k in x:
        np.testing.assert_allclose(x[k], expected[k], rtol=1e-12, atol=1e-14)


def test_adamw_matches_reference():
    A, x0 = make_problem()
    opt = AdamW(lr=0.1, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3)
    x, _ = run(opt, A, x0, LRS)
    expected = adamw_reference(A, x0, LRS, 0.8, 0.95, 1e-6, 0.3, decay={"w"})
    for k in x:
        np.testing.assert_allclose(x[k], expected[k], rtol=1e-12, atol=1e-14)


def test_lion_matches_reference():
    A, x0 = make_problem()
    x, _ = run(Lion(lr=0.1, betas=(0.9, 0.99), weight_decay=0.5), A, x0, LRS)
    expected = lion_reference(A, x0, LRS, 0.9, 0.99, 0.5, decay={"w"})
    for k in x:
        np.testing.assert_allclose(x[k], expected[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("opt", [SGD(lr=0.1, weight_decay=0.1), AdamW(lr=0.1), Lion(lr=0.1)],
                         ids=["SGD", "AdamW", "Lion"])
def test_step_is_in_place_and_leaves_grads_alone(opt):
    A, x = make_problem(dtype=np.float32)
    before = {k: id(v) for k, v in x.items()}
    old = copy(x)
    g = grad(A, x)
    g_old = copy(g)
    opt.step(x, g, opt.init(x))
    assert {k: id(v) for k, v in x.items()} == before
    assert all(x[k].dtype == np.float32 and not np.array_equal(x[k], old[k]) for k in x)
    assert all(np.array_equal(g[k], g_old[k]) for k in g)


@pytest.mark.parametrize("opt", [AdamW(lr=0.1, weight_decay=0.5), Lion(lr=0.1, weight_decay=0.5)],
                         ids=["AdamW", "Lion"])
def test_zero_gradient_only_decays_the_decay_set(opt):
    _, x = make_problem()
    old = copy(x)
    opt.step(x, {k: np.zeros_like(v) for k, v in x.items()}, opt.init(x))
    np.testing.assert_allclose(x["w"], (1 - 0.1 * 0.5) * old["w"], rtol=1e-15)
    assert np.array_equal(x["b"], old["b"]) and np.array_equal(x["ln.weight"], old["ln.weight"])


@pytest.mark.parametrize("opt, lr", [(AdamW(lr=1.0, weight_decay=1e-3), 0.1),
                                     (Lion(lr=1.0, weight_decay=1e-3), 0.1)], ids=["AdamW", "Lion"])
def test_decreases_a_convex_quadratic(opt, lr):
    A, x0 = make_problem(seed=1)
    lrs = [warmup_cosine(s, base_lr=lr, total_steps=100, warmup_steps=10) for s in range(100)]
    x, _ = run(opt, A, x0, lrs)
    assert loss(A, x) < 1e-2 * loss(A, x0)


def test_adamw_matches_torch():
    torch = pytest.importorskip("torch")
    A, x0 = make_problem()
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in x0.items()}
    topt = torch.optim.AdamW(
        [{"params": [tp["w"]], "weight_decay": 0.3},
         {"params": [tp["b"], tp["ln.weight"]], "weight_decay": 0.0}],
        lr=0.1, betas=(0.8, 0.95), eps=1e-6,
    )
    for _ in range(5):
        for k, t in tp.items():
            t.grad = torch.tensor(grad(A, {k: t.detach().numpy()})[k])
        topt.step()
    x, _ = run(AdamW(lr=0.1, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.3), A, x0, [0.1] * 5)
    for k in x:
        np.testing.assert_allclose(x[k], tp[k].detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.gpu
def test_adamw_on_gpu_matches_cpu():
    from whitebox.backend import get_xp, to_host, tree_to_device

    cp = get_xp("gpu")
    A, x0 = make_problem(dtype=np.float32)
    x_gpu, opt = tree_to_device(copy(x0), cp), AdamW(lr=0.05)
    state = opt.init(x_gpu)
    for _ in range(5):
        opt.step(x_gpu, tree_to_device(grad(A, {k: to_host(v) for k, v in x_gpu.items()}), cp), state)
    x_cpu, _ = run(AdamW(lr=0.05), A, x0, [0.05] * 5)
    for k in x_cpu:
        np.testing.assert_allclose(to_host(x_gpu[k]), x_cpu[k], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------ checkpoints


OPTIMISERS = {
    "SGD": lambda decay=None: SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, decay=decay),
    "AdamW": lambda decay=None: AdamW(lr=0.1, weight_decay=0.1, decay=decay),
    "Lion": lambda decay=None: Lion(lr=0.03, weight_decay=0.1, decay=decay),
}


@pytest.mark.parametrize("name", OPTIMISERS)
def test_state_dict_round_trip_continues_bitwise(name):
    A, x0 = make_problem(dtype=np.float32)
    lrs = [0.1, 0.05, 0.08, 0.02, 0.03, 0.01]
    k = len(lrs) // 2

    straight, _ = run(OPTIMISERS[name](decay={"b"}), A, x0, lrs)

    opt = OPTIMISERS[name](decay={"b"})
    x, state = run(opt, A, x0, lrs[:k])
    buf = io.BytesIO()
    np.savez(buf, **opt.state_dict(state))
    buf.seek(0)
    fresh = OPTIMISERS[name]()  # default decay set: the saved {"b"} must win
    restored = fresh.load_state_dict(np.load(buf))
    assert restored["step"] == k and restored["decay"] == {"b"}
    x = {key: np.array(v) for key, v in x.items()}
    for lr in lrs[k:]:
        fresh.step(x, grad(A, x), restored, lr=lr)
    for key in x:
        assert np.array_equal(x[key], straight[key]), key


def test_state_dict_is_a_snapshot():
    A, x = make_problem()
    opt = AdamW(lr=0.1)
    state = opt.init(x)
    opt.step(x, grad(A, x), state)
    flat = opt.state_dict(state)
    saved = flat["m/w"].copy()
    opt.step(x, grad(A, x), state)
    assert np.array_equal(flat["m/w"], saved) and int(flat["step"]) == 1
    assert set(flat) == {"step", "decay"} | {f"{s}/{k}" for s in ("m", "v") for k in SHAPES}


def test_loading_another_optimisers_state_fails():
    _, x = make_problem()
    flat = AdamW(lr=0.1).state_dict(AdamW(lr=0.1).init(x))
    with pytest.raises(ValueError, match="'v/"):
        Lion(lr=0.1).load_state_dict(flat)
    with pytest.raises(ValueError, match="'step'"):
        AdamW(lr=0.1).load_state_dict({k: v for k, v in flat.items() if k != "step"})


# --------------------------------------------------------------------- weight decay mask


def test_decay_mask_keeps_matrices_only():
    params = {
        "to_patch_embedding.1.weight": np.ones(48),  # LayerNorm gain
        "to_patch_embedding.2.weight": np.ones((32, 48)),
        "to_patch_embedding.2.bias": np.ones(32),
        "cls_token": np.ones((1, 1, 32)),
        "pos_embedding": np.ones((1, 17, 32)),
        "transformer.layers.0.0.fn.qkv.weight": np.ones((32, 32)),
        "transformer.layers.0.1.fn.weight": np.ones((32, 32)),  # ISTA dictionary
        "transformer.layers.0.1.norm.bias": np.ones(32),
        "mlp_head.1.weight": np.ones((10, 32)),
    }
    assert decay_mask(params) == {
        "to_patch_embedding.2.weight",
        "transformer.layers.0.0.fn.qkv.weight",
        "transformer.layers.0.1.fn.weight",
        "mlp_head.1.weight",
    }


def test_explicit_decay_set_is_used():
    _, x = make_problem()
    assert AdamW(lr=0.1).init(x)["decay"] == {"w"}
    assert AdamW(lr=0.1, decay=["b"]).init(x)["decay"] == {"b"}
    with pytest.raises(ValueError, match="nope"):
        AdamW(lr=0.1, decay=["nope"]).init(x)


# ---------------------------------------------------------------------------- clipping


def test_clip_grad_norm_scales_above_threshold():
    grads = {"a": np.array([3.0, 0.0]), "b": np.array([[4.0]])}
    norm = clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(5.0, rel=1e-15)
    np.testing.assert_allclose(grads["a"], [3.0 / (5.0 + 1e-6), 0.0], rtol=1e-15)
    np.testing.assert_allclose(grads["b"], [[4.0 / (5.0 + 1e-6)]], rtol=1e-15)
    total = math.sqrt(sum(float(np.sum(g**2)) for g in grads.values()))
    assert total == pytest.approx(1.0, rel=1e-6)


def test_clip_grad_norm_is_a_no_op_below_threshold():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(5)}
    old = copy(grads)
    norm = clip_grad_norm(grads, 100.0)
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in old.values()))
    assert norm == pytest.approx(expected, rel=1e-6)
    assert all(np.array_equal(grads[k], old[k]) for k in grads)


def test_clip_grad_norm_leaves_non_finite_gradients_alone():
    grads = {"a": np.array([np.nan, 1.0])}
    assert math.isnan(clip_grad_norm(grads, 1.0))
    assert grads["a"][1] == 1.0
    assert clip_grad_norm({}, 1.0) == 0.0
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm({"a": np.ones(2)}, 0.0)


# ---------------------------------------------------------------------------- schedules


def test_warmup_cosine_key_points():
    kw = dict(base_lr=1.0, total_steps=110, warmup_steps=10, min_lr=0.1)
    assert warmup_cosine(0, **kw) == pytest.approx(0.1)  # base_lr / warmup_steps
    assert warmup_cosine(9, **kw) == pytest.approx(1.0)  # end of warmup
    assert warmup_cosine(10, **kw) == pytest.approx(1.0)  # start of cosine
    assert warmup_cosine(60, **kw) == pytest.approx(0.55)  # middle: (base + min) / 2
    assert warmup_cosine(110, **kw) == pytest.approx(0.1)  # end: min_lr
    assert warmup_cosine(500, **kw) == 0.1
    lrs = [warmup_cosine(s, **kw) for s in range(111)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:10]))  # warmup increases
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))  # cosine decreases
    assert warmup_cosine(0, base_lr=2.0, total_steps=4, warmup_steps=0) == 2.0


def test_constant():
    assert constant(0, base_lr=0.5) == 0.5 and constant(10**6, base_lr=0.5) == 0.5
    assert [constant(s, base_lr=1.0, warmup_steps=4) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]


@pytest.mark.parametrize("kwargs, match", [
    (dict(total_steps=0), "total_steps"),
    (dict(total_steps=-5), "total_steps"),
    (dict(warmup_steps=200), "warmup_steps"),
    (dict(warmup_steps=-1), "warmup_steps"),
    (dict(base_lr=0.0), "base_lr"),
    (dict(min_lr=2.0), "min_lr"),
    (dict(step=-1), "step"),
])
def test_warmup_cosine_rejects_bad_arguments(kwargs, match):
    args = dict(step=0, base_lr=1.0, total_steps=100, warmup_steps=10) | kwargs
    step = args.pop("step")
    with pytest.raises(ValueError, match=match):
        warmup_cosine(step, **args)


def test_schedules_reject_non_integer_steps():
    with pytest.raises(TypeError, match="step"):
        warmup_cosine(1.5, base_lr=1.0, total_steps=10, warmup_steps=1)
    with pytest.raises(TypeError, match="warmup_steps"):
        constant(0, base_lr=1.0, warmup_steps=True)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("make, match", [
    (lambda: AdamW(lr=0.0), "lr"),
    (lambda: AdamW(lr=-1e-3), "lr"),
    (lambda: AdamW(lr=1e-3, betas=(1.0, 0.999)), r"betas\[0\]"),
    (lambda: AdamW(lr=1e-3, betas=(0.9, -0.1)), r"betas\[1\]"),
    (lambda: AdamW(lr=1e-3, betas=(0.9,)), "betas"),
    (lambda: AdamW(lr=1e-3, eps=0.0), "eps"),
    (lambda: AdamW(lr=1e-3, weight_decay=-0.1), "weight_decay"),
    (lambda: Lion(lr=1e-3, betas=(0.9, 1.5)), r"betas\[1\]"),
    (lambda: SGD(lr=1e-3, momentum=1.0), "momentum"),
    (lambda: SGD(lr=1e-3, momentum=0.0, nesterov=True), "nesterov"),
])
def test_bad_hyper_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_step_inputs():
    A, x = make_problem()
    opt = AdamW(lr=0.1)
    state = opt.init(x)
    g = grad(A, x)
    with pytest.raises(ValueError, match="missing.*'b'"):
        opt.step(x, {k: v for k, v in g.items() if k != "b"}, state)
    with pytest.raises(ValueError, match="'extra'"):
        opt.step(x, g | {"extra": np.zeros(2)}, state)
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape \(4, 3\)"):
        opt.step(x, g | {"w": np.zeros((4, 3))}, state)
    with pytest.raises(ValueError, match="lr"):
        opt.step(x, g, state, lr=-0.1)
    with pytest.raises(ValueError, match="'w'"):
        opt.step(x | {"w": np.zeros((2, 2))}, g | {"w": np.zeros((2, 2))}, state)
    assert state["step"] == 0  # nothing was applied


@pytest.mark.parametrize("opt", [SGD(lr=0.1, weight_decay=0.1), AdamW(lr=0.1), Lion(lr=0.1)],
                         ids=["sgd", "adamw", "lion"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_gradient_raises_and_changes_nothing(opt, bad):
    A, x = make_problem()
    state = opt.init(x)
    opt.step(x, grad(A, x), state)  # non-zero buffers, so that "unchanged" means something
    before_params, before_state = copy(x), opt.state_dict(state)
    grads = grad(A, x)
    grads["b"][1] = bad
    with pytest.raises(FloatingPointError, match=r"\['b'\]"):
        opt.step(x, grads, state)
    for name in x:
        np.testing.assert_array_equal(x[name], before_params[name])
    after_state = opt.state_dict(state)
    assert after_state.keys() == before_state.keys()
    for key in before_state:
        np.testing.assert_array_equal(after_state[key], before_state[key])
