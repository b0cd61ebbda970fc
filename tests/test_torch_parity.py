"""whitebox against the published PyTorch models (benchmarks/torch_crate.py), live, in float64.

Same parameters (through ``to_torch_state_dict`` and ``load_state_dict(strict=True)``), same
images: logits agree to 1e-10, the label-smoothed cross-entropy and every parameter's gradient to
1e-9 relative, and the state dict goes back through ``from_torch_state_dict`` unchanged. The
records that ``tests/test_published_parity.py`` checks without PyTorch are re-made here and must
equal the stored ones. Every test that needs PyTorch skips without it; whitebox itself never
imports it.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from whitebox.layers.loss import cross_entropy
from whitebox.models import crate

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SMOOTHING = 0.1
SMALL = crate.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=6, depth=2, heads=2, dim_head=3)
ALPHA_SIZE = dict(image_size=8, patch_size=4, channels=3, num_classes=3, dim=6, depth=2, heads=2, dim_head=3)


def load_benchmark_module(name):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


record_parity = load_benchmark_module("record_parity")


@pytest.fixture(scope="module")
def torch_crate():
    pytest.importorskip("torch")
    return record_parity.torch_crate_module()


def compare_with_torch(mod, cfg, model, torch_crate, batch=5):
    """Loads whitebox's parameters into the PyTorch ``model`` and checks logits, loss and gradients."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(7)
    params = record_parity.perturbed_params(mod, cfg)
    model = model.double()
    state = mod.to_torch_state_dict(params, cfg)
    model.load_state_dict(torch_crate.to_torch(state), strict=True)
    images = rng.standard_normal((batch, cfg.channels, cfg.image_size, cfg.image_size))
    labels = rng.integers(0, cfg.num_classes, size=batch)

    logits, cache = mod.forward(params, images, cfg)
    loss, dlogits = cross_entropy(logits, labels, SMOOTHING)
    grads = mod.backward(dlogits, cache)

    t_logits = model(torch.from_numpy(images))
    t_loss = F.cross_entropy(t_logits, torch.from_numpy(labels), label_smoothing=SMOOTHING)
    t_loss.backward()
    t_grads = torch_crate.grads_by_name(model)

    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=0, atol=1e-10)
    assert abs(float(loss) - t_loss.item()) <= 1e-9 * abs(t_loss.item())
    grads = mod.to_torch_state_dict(grads, cfg)  # only renames: the gradients under the official names
    assert set(grads) == set(t_grads) == set(model.state_dict())
    errors = {name: record_parity.relative_error(grads[name], t_grads[name]) for name in t_grads}
    assert max(errors.values()) < 1e-9, {k: v for k, v in errors.items() if v >= 1e-9}

    back = mod.from_torch_state_dict(torch_crate.to_numpy(model.state_dict()), cfg)
    assert set(back) == set(params)
    for k in params:
        assert back[k].dtype == params[k].dtype and np.array_equal(back[k], params[k]), k


@pytest.mark.parametrize("case", list(record_parity.CASES))
def test_the_stored_records_are_what_the_official_models_compute(case, torch_crate):
    """tests/data/ is up to date with torch_crate.py: re-recording gives the same arrays."""
    new, old = record_parity.record(case), record_parity.load_record(case)
    assert set(new) == {"meta", "images", "dlogits", "logits"} | {f"{g}/{k}" for g in ("state", "grad") for k in old[g]}
    for key in ("images", "dlogits", "logits"):
        assert record_parity.relative_error(new[key], old[key]) < 1e-12, key
    for group in ("state", "grad"):
        for name, value in old[group].items():
            assert record_parity.relative_error(new[f"{group}/{name}"], value) < 1e-12, (group, name)


@pytest.mark.parametrize(
    "cfg",
    [SMALL, SMALL.replace(pool="mean"), SMALL.replace(heads=1, dim_head=6)],
    ids=["cls", "mean", "no-out-projection"],
)
def test_crate_matches_pytorch_crate(cfg, torch_crate):
    compare_with_torch(crate, cfg, torch_crate.crate_from_config(cfg), torch_crate)


def test_pytorch_crate_has_the_official_parameter_counts(torch_crate):
    """docs/reference.md §5 and §8: the counts of the official code, and whitebox's own count."""
    expected = {"reference": 1_363_498, "tiny": 6_090_856, "small": 13_116_328, "base": 22_796_008,
                "large": 77_641_192}
    configs = {"reference": crate.Config(), **{k: make() for k, make in crate.PRESETS.items()}}
    for name, cfg in configs.items():
        model = torch_crate.crate_from_config(cfg)
        assert sum(p.numel() for p in model.parameters()) == crate.num_params(cfg) == expected[name], name


def test_the_three_matmul_ista_is_whitebox_ista(torch_crate):
    """The published ``relu(x + η (x W − (x Wᵀ) W) − ηλ)`` equals whitebox's two-matmul form."""
    import torch

    from whitebox.layers.ista import ista_forward

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 7))
    block = torch_crate.ISTA(7).double()
    W = block.weight.detach().numpy()
    out, _ = ista_forward(x, W, 0.1, 0.1)
    np.testing.assert_allclose(out, block(torch.from_numpy(x)).detach().numpy(), rtol=0, atol=1e-13)


def test_flop_count_matches_reference():
    """docs/reference.md §8: 327.7 MFLOP per image forward with the published three-matmul ISTA."""
    flops = load_benchmark_module("flops")
    cfg = crate.Config()
    assert round(flops.forward_flops(cfg, "crate", ista_matmuls=3) / 1e5) == 3277
    whitebox, published = flops.forward_flops(cfg, "crate", 2), flops.forward_flops(cfg, "crate", 3)
    assert published - whitebox == cfg.depth * 2 * cfg.num_tokens * cfg.dim**2
    assert flops.step_flops(cfg, 64, "crate", 3)["step"] == 3 * 64 * published


@pytest.fixture(scope="module")
def crate_alpha():
    return pytest.importorskip("whitebox.models.crate_alpha")


def alpha_configs(crate_alpha):
    """The published block, without an output projection, with mean pooling, and the paper's ablation."""
    cfg = crate_alpha.Config(**ALPHA_SIZE)
    return {
        "published": cfg,
        "no-out-projection": cfg.replace(heads=1, dim_head=cfg.dim),
        "mean": cfg.replace(pool="mean"),
        **{f"ablation{k}": v for k, v in crate_alpha.ablation_configs(cfg).items()},
    }


ALPHA_VARIANTS = ["published", "no-out-projection", "mean", "ablationcrate", "ablation+O", "ablation+O+D",
                  "ablation+O+D+R"]


@pytest.mark.parametrize("variant", ALPHA_VARIANTS)
def test_crate_alpha_matches_pytorch_port(variant, crate_alpha, torch_crate):
    cfg = alpha_configs(crate_alpha)[variant]
    compare_with_torch(crate_alpha, cfg, torch_crate.crate_alpha_from_config(cfg), torch_crate)


def test_crate_alpha_port_layout(crate_alpha, torch_crate):
    """docs/reference.md §6: conv1 with bias, bias-free to_out, fn.D and fn.D1 of shape (d, C d), LN eps 1e-6."""
    cfg = crate_alpha.Config(**ALPHA_SIZE)
    model = torch_crate.crate_alpha_from_config(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    d, m = cfg.dim, cfg.overcomplete * cfg.dim
    assert shapes["conv1.bias"] == (d,)
    assert shapes["transformer.layers.0.1.fn.D"] == shapes["transformer.layers.0.1.fn.D1"] == (d, m)
    assert "transformer.layers.0.0.fn.to_out.0.bias" not in shapes
    assert model.transformer.layers[0][0].norm.eps == model.transformer.layers[0][1].norm.eps == 1e-6
    assert model.mlp_head[0].eps == 1e-5
    assert sum(p.numel() for p in model.parameters()) == crate_alpha.num_params(cfg)
