"""Within-layer compression (whitebox.analysis.within_layer) and the white-box report (whitebox report)."""

import numpy as np
import pytest

from whitebox.analysis.within_layer import normalised, orthonormalised, within_layer_compression
from whitebox.cli import main
from whitebox.models import crate, crate_alpha

CFG = crate.Config(image_size=8, patch_size=4, channels=1, num_classes=3, dim=16, depth=2, heads=2, dim_head=4)


def images(n=5, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 8, 8))


def test_values_are_the_definition_of_rc_on_normalised_tokens():
    params = crate.init(CFG, seed=1, dtype=np.float64)
    x = images()
    m = within_layer_compression(params, x, CFG, eps=0.7, chunk=2)
    _, cache = crate.forward(params, x, CFG, keep_features=True)
    feats = crate.layer_features(cache)
    N, p = CFG.num_tokens, CFG.dim_head
    for ell in range(CFG.depth):
        U = crate.layer_subspaces(params, ell, CFG)
        for key, Z in (("rc_before", feats["inputs"][ell]), ("rc_after", feats["midpoints"][ell])):
            for suffix, basis in (("", U), ("_orth", np.stack([np.linalg.qr(u)[0] for u in U]))):
                Y = (Z - Z.mean(-1, keepdims=True)) / np.sqrt(Z.var(-1, keepdims=True) + 1e-5)
                rc = [sum(0.5 * np.linalg.slogdet(np.eye(p) + p / (N * 0.49) * (y @ u).T @ (y @ u))[1] for u in basis)
                      for y in Y]
                assert np.isclose(getattr(m, key + suffix)[ell], np.mean(rc), rtol=1e-10)
        assert np.isclose(m.sparsity[ell], (feats["codes"][ell] == 0).mean())
        singular = np.linalg.svd(U, compute_uv=False)
        assert (m.sv_min[ell], m.sv_max[ell]) == (singular.min(), singular.max())
    assert np.allclose(m.change(), np.subtract(m.rc_after, m.rc_before))
    assert m.lowered() == int((m.change() < 0).sum())
    assert f"{m.lowered()}/{CFG.depth} layers" in m.summary()


def test_helpers_normalise_and_orthonormalise():
    Z = np.random.default_rng(2).standard_normal((3, 5, 7)) * 4 + 2
    Y = normalised(Z)
    assert np.allclose(Y.mean(-1), 0) and np.allclose(Y.var(-1), 1, atol=1e-5)
    U = np.random.default_rng(3).standard_normal((2, 7, 3))
    Q = orthonormalised(U)
    assert np.allclose(Q.transpose(0, 2, 1) @ Q, np.eye(3), atol=1e-12)
    for u, q in zip(U, Q):  # the same subspace
        assert np.allclose(q @ q.T @ u, u)


def test_any_model_with_layer_features():
    cfg = crate_alpha.Config(image_size=8, patch_size=4, channels=1, num_classes=3, dim=16, depth=2, heads=2)
    m = within_layer_compression(crate_alpha.init(cfg, seed=0, dtype=np.float64), images(), cfg)
    assert m.depth == 2 and all(np.isfinite(v) for v in m.rc_before + m.rc_after_orth)


@pytest.mark.parametrize("eps", [0, -1.0, float("nan"), float("inf"), "0.5"])
def test_bad_eps_is_refused(eps):
    with pytest.raises(ValueError, match="eps"):
        within_layer_compression(crate.init(CFG, seed=0), images().astype(np.float32), CFG, eps=eps)


def test_report_command_writes_the_report(tiny_run, tmp_path, capsys):
    assert main(["report", str(tiny_run), "--images", "16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("white-box report of crate on mnist")
    assert "initialisation: the compression step lowered Rc" in out and "trained (step" in out
    assert {p.name for p in tmp_path.iterdir()} == {"report.md", "report.json", "within_layer.png", "attention.png"}
