"""The contract every model keeps, checked once over a registry of models and configs.

For each: the whole-model gradient of every parameter (float64, central differences along random
directions and at random entries, relative error < 1e-6), float32 ≈ float64, clear errors for bad
inputs and non-finite config values, seeded init, per-layer features, and the state-dict round trip
where the model has an official PyTorch counterpart.
"""

import dataclasses
import math

import numpy as np
import pytest

from whitebox.gradcheck import entry_errors, grad_errors
from whitebox.layers.ista import ISTACache
from whitebox.models import crate, crate_alpha, crate_lm, crate_mae

CRATE = crate.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=6, depth=2, heads=2, dim_head=3)
ALPHA = crate_alpha.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=6, depth=2, heads=2,
                           dim_head=3, overcomplete=2)
MAE = crate_mae.Config(image_size=8, patch_size=2, channels=2, dim=8, depth=2, heads=2, dim_head=3,
                       decoder_dim=12, decoder_heads=2, decoder_dim_head=4)
LM = crate_lm.Config(vocab_size=7, block_size=6, dim=8, depth=2, heads=2, dim_head=3)

MODELS = {
    "crate-cls": (crate, CRATE),
    "crate-mean": (crate, CRATE.replace(pool="mean")),
    "crate-tied": (crate, CRATE.replace(mssa="tied")),
    "crate-no-out-projection": (crate, CRATE.replace(heads=1, dim_head=6)),
    **{f"crate-alpha-{name}": (crate_alpha, cfg) for name, cfg in crate_alpha.ablation_configs(ALPHA).items()},
    "crate-alpha-no-out-projection-mean": (crate_alpha, ALPHA.replace(heads=1, dim_head=6, pool="mean")),
    "crate-mae": (crate_mae, MAE),
    "crate-mae-no-cls-normpix": (crate_mae, MAE.replace(cls_token=False, norm_pix_loss=True)),
    "crate-lm": (crate_lm, LM),
    "crate-lm-ista-no-out-projection": (crate_lm, LM.replace(sparse="ista", heads=1, dim_head=8)),
    "crate-bert": (crate_lm, LM.replace(causal=False)),  # scored by the masked-token loss
    "crate-bert-ista-classifier": (crate_lm, LM.replace(causal=False, sparse="ista", num_classes=3)),
    "crate-lm-classifier": (crate_lm, LM.replace(num_classes=3)),  # a causal backbone's features, pooled
    "vit": (crate, CRATE.replace(block="transformer")),
    "vit-mean-mlp2-one-head": (crate, CRATE.replace(block="transformer", pool="mean", mlp_ratio=2, heads=1, dim_head=6)),
    "gpt": (crate_lm, LM.replace(block="transformer")),
    "bert-classifier": (crate_lm, LM.replace(block="transformer", causal=False, num_classes=3)),
}


def transformer(case) -> bool:
    """The ViT / GPT baseline: the standard transformer block (no ReLU, no subspaces, no dictionary)."""
    return getattr(case.cfg, "block", "crate") == "transformer"


class Case:
    """One model and config: how to draw its inputs and turn its output into a scalar loss."""

    def __init__(self, name):
        self.name = name
        self.model, self.cfg = MODELS[name]

    def inputs(self, rng, dtype=np.float64):
        cfg = self.cfg
        if self.model is crate_lm:
            inputs = {"tokens": rng.integers(0, cfg.vocab_size, (2, 5)), "targets": rng.integers(0, cfg.vocab_size, (2, 5)),
                      "chosen": rng.random((2, 5)) < 0.4}
            inputs["chosen"][:, 0] = True  # at least one chosen position per window
            if cfg.num_classes:
                inputs["dlogits"] = rng.standard_normal((2, cfg.num_classes)).astype(dtype)
            return inputs
        images = rng.standard_normal((3, cfg.channels, cfg.image_size, cfg.image_size)).astype(dtype)
        if self.model is crate_mae:
            return {"images": images, "mask": crate_mae.make_mask(cfg, 3, rng=5)}
        return {"images": images, "dlogits": rng.standard_normal((3, cfg.num_classes)).astype(dtype)}

    def forward(self, params, inputs, **kw):
        if self.model is crate_lm:
            return crate_lm.forward(params, inputs["tokens"], self.cfg, **kw)
        if self.model is crate_mae:
            return crate_mae.forward(params, inputs["images"], self.cfg, mask=inputs["mask"], **kw)
        return self.model.forward(params, inputs["images"], self.cfg, **kw)

    def loss(self, out, inputs):
        """``(loss, dout)``: the model's own loss, or ⟨dlogits, logits⟩ for the classifiers."""
        if self.model is crate_lm and self.cfg.num_classes:
            return float(np.vdot(inputs["dlogits"], out)), inputs["dlogits"]
        if self.model is crate_lm and not self.cfg.causal:
            loss, dlogits = crate_lm.masked_token_loss(out, inputs["targets"], inputs["chosen"])
            return float(loss), dlogits
        if self.model is crate_lm:
            return crate_lm.next_token_loss(out, inputs["targets"])
        if self.model is crate_mae:
            return crate_mae.reconstruction_loss(out, inputs["images"], inputs["mask"], self.cfg)
        return float(np.vdot(inputs["dlogits"], out)), inputs["dlogits"]

    def layer_caches(self, cache):
        return cache.encoder.stack.layers if self.model is crate_mae else cache.layers


def relu_margin(layer_caches, lambd):
    """The smallest |pre-activation| of any ReLU unit of the sparse blocks (kinks break finite
    differences), and the fraction of active units."""
    margins, active = [], []
    for layer in layer_caches:
        sc = getattr(layer, "ista", None) or getattr(layer, "odl", None) or layer.sparse
        if isinstance(sc, ISTACache):  # relu(x + η r D − η λ)
            margins.append(np.abs(sc.x + sc.step * (sc.residual @ sc.D) - sc.step * lambd).min())
            active.append((sc.out > 0).mean())
            continue
        for t, r in enumerate(sc.residuals):  # relu(a_t + η r_t D − η λ)
            a = sc.codes[t]
            margins.append(np.abs(sc.step * (r @ sc.D) - sc.step * lambd + (0 if a is None else a)).min())
        active.append((sc.codes[-1] > 0).mean())
    return min(margins), float(np.mean(active))


def gradient_point(case, perturbed):
    """The first seed whose point is at least 1e-4 away from every ReLU kink (as hypothesis's assume)."""
    for seed in range(50):
        rng = np.random.default_rng(seed)
        params = perturbed(case.model.init(case.cfg, seed=seed, dtype=np.float64), rng)
        inputs = case.inputs(rng)
        out, cache = case.forward(params, inputs)
        if transformer(case):  # GELU is smooth: every point is a good one
            return params, inputs, out, cache
        margin, active = relu_margin(case.layer_caches(cache), case.cfg.ista_lambd)
        if margin > 1e-4 and 0 < active < 1:
            return params, inputs, out, cache
    raise AssertionError(f"no seed keeps {case.name}'s ReLU units away from their kinks")


@pytest.fixture(params=list(MODELS))
def case(request):
    return Case(request.param)


def test_whole_model_gradient_of_every_parameter(case, perturbed):
    params, inputs, out, cache = gradient_point(case, perturbed)
    _, dout = case.loss(out, inputs)
    grads = case.model.backward(dout, cache)
    assert set(grads) == set(params)
    assert all(grads[k].shape == params[k].shape and grads[k].dtype == np.float64 for k in params)

    def f(**p):
        return case.loss(case.forward(p, inputs)[0], inputs)[0]

    errors = grad_errors(f, params, grads, directions=2)
    entries = entry_errors(f, params, grads, entries=2)
    worst = max(*errors.values(), *entries.values())
    assert math.isfinite(worst) and worst < 1e-6, {k: v for k, v in {**errors, **entries}.items() if not v < 1e-7}


def test_float32_agrees_with_float64(case):
    params64 = case.model.init(case.cfg, seed=0, dtype=np.float64)
    params32 = case.model.init(case.cfg, seed=0, dtype=np.float32)
    inputs64 = case.inputs(np.random.default_rng(0))
    inputs32 = case.inputs(np.random.default_rng(0), np.float32)
    out64, cache64 = case.forward(params64, inputs64)
    out32, cache32 = case.forward(params32, inputs32)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4 * np.abs(out64).max())
    _, d64 = case.loss(out64, inputs64)
    grads64 = case.model.backward(d64, cache64)
    grads32 = case.model.backward(d64.astype(np.float32), cache32)
    for k, g in grads64.items():
        assert grads32[k].dtype == np.float32, k
        np.testing.assert_allclose(grads32[k], g, rtol=2e-3, atol=2e-4 * max(np.abs(g).max(), 1e-30), err_msg=k)


def test_init_is_seeded(case):
    a, b, c = (case.model.init(case.cfg, seed=s) for s in (5, 5, 6))
    assert list(a) == list(case.model.shapes(case.cfg))
    assert all(a[k].shape == case.model.shapes(case.cfg)[k] for k in a)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    drawn = [k for k in a if a[k].std() > 0]  # not the ones/zeros of LayerNorms and biases
    assert drawn and all(not np.array_equal(a[k], c[k]) for k in drawn)
    assert case.model.num_params(case.cfg) == sum(v.size for v in a.values())


def test_bad_inputs_raise_clear_errors(case):
    params = case.model.init(case.cfg, seed=0)
    inputs = case.inputs(np.random.default_rng(0), np.float32)
    case.forward(params, inputs)
    key = "tokens" if case.model is crate_lm else "images"
    x = inputs[key]
    with pytest.raises(ValueError, match=key):
        case.forward(params, {**inputs, key: x[0]})  # a missing batch axis
    with pytest.raises(TypeError, match=key):
        case.forward(params, {**inputs, key: x.astype(np.float32 if key == "tokens" else np.uint8)})
    if key == "images":
        with pytest.raises(TypeError, match="dtype"):
            case.forward(params, {**inputs, key: x.astype(np.float64)})
        with pytest.raises(ValueError, match="image_size"):
            case.forward(params, {**inputs, key: np.zeros(x.shape[:2] + (16, 16), np.float32)})
    name = next(k for k in params if k.endswith(("attn.qkv", "attn.qkv.weight")))
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        case.forward({**params, name: np.zeros((5, 5), np.float32)}, inputs)
    with pytest.raises(ValueError, match="missing"):
        case.forward({k: v for k, v in params.items() if k != name}, inputs)


def test_config_rejects_non_finite_numbers(case):
    floats = [f.name for f in dataclasses.fields(case.cfg) if f.type == "float"]
    assert "ista_step" in floats and "ista_lambd" in floats
    for name in floats:
        for bad in (math.inf, -math.inf, math.nan):
            with pytest.raises(ValueError, match=name):
                case.cfg.replace(**{name: bad})


def test_layer_features_are_the_same_keys_for_every_model(case):
    params = case.model.init(case.cfg, seed=0, dtype=np.float64)
    inputs = case.inputs(np.random.default_rng(0))
    _, cache = case.forward(params, inputs, keep_features=True)
    f = case.model.layer_features(cache)
    assert set(f) == {"inputs", "attention_inputs", "midpoints", "sparse_inputs", "outputs", "codes", "attention"}
    assert all(len(v) == case.cfg.depth for v in f.values())
    for ell in range(case.cfg.depth):
        Z, half = f["inputs"][ell], f["midpoints"][ell]
        prefix = "encoder." if case.model is crate_mae else "layers."
        ln = lambda x, norm, eps=1e-5: ((x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)  # noqa: E731
                                        * params[f"{prefix}{ell}.{norm}.weight"] + params[f"{prefix}{ell}.{norm}.bias"])
        eps = getattr(case.cfg, "norm_eps", 1e-5)
        np.testing.assert_allclose(f["attention_inputs"][ell], ln(Z, "attn_norm", eps), atol=1e-10)
        sparse_norm = "mlp_norm" if transformer(case) else "odl_norm" if case.model is crate_alpha else "ista_norm"
        np.testing.assert_allclose(f["sparse_inputs"][ell], ln(half, sparse_norm, eps), atol=1e-10)
        np.testing.assert_allclose(f["attention"][ell].sum(-1), 1, atol=1e-12)
        assert f["attention"][ell].shape[1] == case.cfg.heads
    np.testing.assert_array_equal(f["inputs"][1], f["outputs"][0])
    if transformer(case):
        assert f["codes"][0].shape[-1] == case.cfg.mlp_ratio * case.cfg.dim  # the GELU activations
        for lookup in (case.model.layer_subspaces, case.model.layer_dictionary):
            with pytest.raises(ValueError, match="not defined for the transformer block"):
                lookup(params, 0, case.cfg)
        return
    U = case.model.layer_subspaces(params, 0, case.cfg)
    assert U.shape == (case.cfg.heads, case.cfg.dim, case.cfg.dim_head)
    assert case.model.layer_dictionary(params, 0, case.cfg).shape[0] == case.cfg.dim
    with pytest.raises(ValueError, match="keep_features"):
        case.model.layer_features(case.forward(params, inputs)[1])


@pytest.mark.parametrize("name", [name for name, (model, _) in MODELS.items() if hasattr(model, "torch_names")])
def test_state_dict_round_trip_with_official_names(name):
    case = Case(name)
    params = case.model.init(case.cfg, seed=2)
    if transformer(case):
        with pytest.raises(ValueError, match="not defined for the transformer block"):
            case.model.to_torch_state_dict(params, case.cfg)
        return
    if getattr(case.cfg, "mssa", "published") != "published":
        with pytest.raises(ValueError, match="mssa"):
            case.model.to_torch_state_dict(params, case.cfg)
        return
    sd = case.model.to_torch_state_dict(params, case.cfg)
    assert set(sd) == set(case.model.torch_names(case.cfg).values())
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    back = case.model.from_torch_state_dict(sd, case.cfg)
    assert set(back) == set(params) and all(np.array_equal(back[k], params[k]) for k in params)
    with pytest.raises(ValueError, match="cls_token"):
        case.model.from_torch_state_dict({k: v for k, v in sd.items() if k != "cls_token"}, case.cfg)
    with pytest.raises(ValueError, match="cls_token"):
        case.model.from_torch_state_dict({**sd, "cls_token": np.zeros((1, 1, 7))}, case.cfg)
    name = next(iter(sd))
    for bad, error in ((np.full_like(sd[name], np.nan), ValueError), (sd[name].astype(np.int32), TypeError),
                       (sd[name].astype(object), TypeError)):
        with pytest.raises(error, match=name.replace(".", r"\.")):
            case.model.from_torch_state_dict({**sd, name: bad}, case.cfg)
    with pytest.raises(TypeError, match="dtype"):
        case.model.from_torch_state_dict(sd, case.cfg, dtype="int8")


@pytest.mark.parametrize("dtype", [np.int32, "int8", bool])
def test_init_refuses_a_non_float_dtype(case, dtype):
    with pytest.raises(TypeError, match="dtype"):
        case.model.init(case.cfg, seed=0, dtype=dtype)
