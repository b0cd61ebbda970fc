"""The same code on CuPy: results agree with NumPy (skipped where no CUDA device exists)."""

import numpy as np
import pytest

from whitebox.backend import get_xp, to_host, tree_to_device
from whitebox.models import crate
from whitebox.rate import coding_rate_grad, compression_rate_grad

pytestmark = pytest.mark.gpu


def test_crate_forward_backward_on_gpu_matches_cpu():
    cp = get_xp("gpu")
    cfg = crate.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=8, depth=2, heads=2, dim_head=4)
    params = crate.init(cfg, seed=0, dtype=np.float64)
    images = np.random.default_rng(0).standard_normal((4, 2, 8, 8))
    logits, cache = crate.forward(params, images, cfg)
    grads = crate.backward(np.ones_like(logits), cache)
    gpu_params = crate.init(cfg, seed=0, dtype=np.float64, device="gpu")
    assert all(np.array_equal(to_host(gpu_params[k]), params[k]) for k in params)
    g_logits, g_cache = crate.forward(gpu_params, cp.asarray(images), cfg)
    g_grads = crate.backward(cp.ones_like(g_logits), g_cache)
    np.testing.assert_allclose(to_host(g_logits), logits, rtol=1e-10)
    for k in grads:
        np.testing.assert_allclose(to_host(g_grads[k]), grads[k], rtol=1e-8, atol=1e-12, err_msg=k)


def test_rate_gradients_on_gpu_match_cpu():
    cp = get_xp("gpu")
    rng = np.random.default_rng(0)
    Z, U = rng.standard_normal((2, 5, 6)), rng.standard_normal((3, 6, 2))
    np.testing.assert_allclose(to_host(coding_rate_grad(cp.asarray(Z), 0.5)), coding_rate_grad(Z, 0.5), rtol=1e-10)
    gZ, gU = compression_rate_grad(*tree_to_device({"Z": Z, "U": U}, cp).values(), 0.5)
    cZ, cU = compression_rate_grad(Z, U, 0.5)
    np.testing.assert_allclose(to_host(gZ), cZ, rtol=1e-10)
    np.testing.assert_allclose(to_host(gU), cU, rtol=1e-10)


def test_mixed_backends_are_rejected():
    cp = get_xp("gpu")
    cfg = crate.Config(image_size=8, patch_size=4, channels=2, num_classes=3, dim=8, depth=1, heads=2, dim_head=4)
    params = crate.init(cfg, seed=0)
    with pytest.raises(TypeError, match="images"):
        crate.forward(params, cp.zeros((1, 2, 8, 8), dtype=cp.float32), cfg)
