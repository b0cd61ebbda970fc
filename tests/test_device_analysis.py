"""Measurement, attention maps and generation on the device give the CPU's numbers (the session's
tiny trained run, loaded on each device; a random causal CRATE for generation)."""

import numpy as np
import pytest

from whitebox.analysis.attention_maps import attention_checkpoint
from whitebox.analysis.measure import measure_checkpoint
from whitebox.backend import is_device_array
from whitebox.models import crate_lm

pytestmark = pytest.mark.devices("strict", "gpu")  # each is compared with the CPU


def numbers(tree):
    """The floats of a nested dict/list, in order (the measurement's JSON form)."""
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in numbers(tree[k])]
    if isinstance(tree, (list, tuple)):
        return [x for v in tree for x in numbers(v)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_measurement_on_the_device_equals_the_cpu(tiny_run, device):
    on_cpu = measure_checkpoint(tiny_run, n_images=16, device="cpu")
    on_device = measure_checkpoint(tiny_run, n_images=16, device=device)
    assert all(is_device_array(v) for v in on_device.run.params.values())
    a, b = numbers(on_cpu.to_dict()), numbers(on_device.to_dict())
    assert len(a) == len(b) > 50
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(numbers([r for r in on_device.sweep]), numbers([r for r in on_cpu.sweep]), rtol=1e-5)


def test_attention_maps_on_the_device_equal_the_cpu(tiny_run, device):
    on_cpu = attention_checkpoint(tiny_run, n_images=3, device="cpu")
    on_device = attention_checkpoint(tiny_run, n_images=3, device=device)
    assert type(on_device.attention) is np.ndarray and type(on_device.pca) is np.ndarray  # figures draw host arrays
    np.testing.assert_allclose(on_device.attention, on_cpu.attention, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(on_device.object_share, on_cpu.object_share, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("top_k", [None, 3])
def test_generation_on_the_device_draws_the_cpu_text(device, top_k):
    cfg = crate_lm.Config(vocab_size=11, block_size=6, dim=8, depth=2, heads=2, dim_head=4)
    params = crate_lm.init(cfg, seed=3, dtype=np.float64)
    on_device = crate_lm.init(cfg, seed=3, dtype=np.float64, device=device)
    prompt = [1, 4, 2]
    host = crate_lm.sample(params, cfg, prompt, 10, temperature=0.8, top_k=top_k, seed=5)
    drawn = crate_lm.sample(on_device, cfg, prompt, 10, temperature=0.8, top_k=top_k, seed=5)
    assert type(drawn) is np.ndarray and drawn.dtype == np.int64
    np.testing.assert_array_equal(drawn, host)
