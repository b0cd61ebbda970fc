"""The weights commands: ``whitebox convert``, ``whitebox eval --weights``, ``whitebox train --init-from``.

Converting goes through the official fixtures (tests/data/weights/, 8 × 8 RGB images, 3 classes).
Evaluating and fine-tuning need a model of MNIST's shape, so they use the ``tiny_run`` fixture,
exported to a weights file the way a user would hold one (official PyTorch names); the fixtures,
which do not fit MNIST, give the one-line error.
"""

import json

import numpy as np
import pytest
from test_weights_fixtures import EXPECTED, FILES, FIXTURES, big_vision_layout

from whitebox import cli
from whitebox.models import crate_alpha
from whitebox.train import ConfigError, load_checkpoint, load_run, resolve_config
from whitebox.weights import HEAD_NAMES, load_model_weights, load_state_dict, read_weights, save_state_dict
from whitebox.weights.resize import resize_pos_embedding

FIXTURE_MODEL = ["--preset", "tiny", "--set", "image_size=8", "--set", "patch_size=4", "--set", "num_classes=3",
                 "--set", "dim=8", "--set", "depth=2", "--set", "heads=2", "--set", "dim_head=4"]
TINY_MODEL = ["--set", "dim=16", "--set", "depth=2", "--set", "heads=2", "--set", "dim_head=8"]  # conftest's tiny_run
TINY_TRAIN = [*TINY_MODEL, "--train-limit", "128", "--test-limit", "64", "--epochs", "1", "--batch-size", "64",
              "--no-augment", "--quiet"]


def one_line_error(capsys, argv, status: int = 1) -> str:
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert err.startswith("whitebox: error: ") and err.count("\n") == 1, err
    return err


def exported(run_folder, path, pos_grid=None):
    """The run's parameters written as a user's weights file (official names), positions optionally resized."""
    run = load_run(run_folder)
    state = run.model.to_torch_state_dict(run.params, run.cfg)
    if pos_grid is not None:
        state["pos_embedding"] = resize_pos_embedding(state["pos_embedding"], pos_grid)
    return save_state_dict(state, path)


# -- whitebox convert -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".npz", ".pth.tar"])
@pytest.mark.parametrize("name", FILES)
def test_convert_round_trips_through_every_format(tmp_path, capsys, name, suffix):
    model = FILES[name][0]
    there, back = tmp_path / f"there{suffix}", tmp_path / "back.safetensors"
    assert cli.main(["convert", str(FIXTURES / name), str(there), "--model", model, *FIXTURE_MODEL]) == 0
    assert f"wrote {there}" in capsys.readouterr().out
    assert cli.main(["convert", str(there), str(back), "--model", model, *FIXTURE_MODEL]) == 0
    assert read_weights(there).unwrapped == () and read_weights(there).stripped is None
    original = load_state_dict(FIXTURES / name)
    for path in (there, back):
        state = load_state_dict(path)
        assert set(state) == set(original)  # the official names, every one
        assert all(state[k].dtype == v.dtype and state[k].tobytes() == v.tobytes() for k, v in original.items())


def test_convert_reads_crate_alpha_big_vision_npz(tmp_path, capsys):
    cfg = crate_alpha.Config(image_size=8, patch_size=4, channels=3, num_classes=3, dim=8, depth=2, heads=2, dim_head=4)
    official = load_state_dict(FIXTURES / "crate_alpha_state_dict.pth")
    jax = save_state_dict(big_vision_layout(official, cfg, split_heads=True), tmp_path / "crate_alpha_jax.npz")
    out = tmp_path / "crate_alpha.pth"
    assert cli.main(["convert", str(jax), str(out), "--model", "crate-alpha", *FIXTURE_MODEL]) == 0
    assert {k: v.tobytes() for k, v in load_state_dict(out).items()} == {k: v.tobytes() for k, v in official.items()}
    logits, _ = crate_alpha.forward(load_model_weights(out, cfg), np.array(EXPECTED["images"], np.float32), cfg)
    np.testing.assert_allclose(logits, EXPECTED["logits"]["crate_alpha_state_dict.pth"], rtol=0, atol=1e-5)


def test_convert_resizes_positions_to_the_image_size_given(tmp_path, capsys):
    out = tmp_path / "larger.safetensors"
    larger = [*FIXTURE_MODEL, "--set", "image_size=12"]  # a 3 × 3 grid; the file's is 2 × 2
    assert cli.main(["convert", str(FIXTURES / "crate_state_dict.pth"), str(out), "--model", "crate", *larger]) == 0
    np.testing.assert_allclose(load_state_dict(out)["pos_embedding"], EXPECTED["resized_pos_embedding"], atol=1e-6)


@pytest.mark.parametrize("argv, status, message", [
    (["README.md", "x.pth", "--model", "crate", *FIXTURE_MODEL], 1, "not a weights file"),
    ([str(FIXTURES / "crate_state_dict.pth"), "x.pth", "--model", "crate", "--preset", "tiny"], 1, "missing"),
    ([str(FIXTURES / "crate_state_dict.pth"), "x.pth", "--model", "crate-alpha", *FIXTURE_MODEL], 1, "missing"),
    ([str(FIXTURES / "crate_state_dict.pth"), "x.bad", "--model", "crate", *FIXTURE_MODEL], 1, "unknown weights format"),
    ([str(FIXTURES / "crate_state_dict.pth"), "x.pth", "--model", "crate", "--preset", "huge"], 2, "unknown preset"),
    ([str(FIXTURES / "crate_state_dict.pth"), "x.pth", "--model", "crate", "--preset", "tiny", "--set", "nope=1"], 2,
     "no setting"),
])
def test_convert_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, status, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("# not weights\n")
    assert message in one_line_error(capsys, ["convert", *argv], status)
    assert not (tmp_path / "x.pth").exists()


# -- whitebox eval --weights ------------------------------------------------------------------

def test_eval_weights_gives_the_runs_accuracy(tiny_run, tmp_path, capsys):
    assert cli.main(["eval", str(tiny_run)]) == 0
    run_line = capsys.readouterr().out
    path = exported(tiny_run, tmp_path / "tiny.pth")
    assert cli.main(["eval", "--weights", str(path), "--model", "crate", "--preset", "mnist-demo", *TINY_MODEL,
                     "--test-limit", "64"]) == 0
    line = capsys.readouterr().out
    accuracy = run_line.split("accuracy ")[1].split("%")[0]  # the same 64 test images, the same parameters
    assert line.startswith(f"test accuracy {accuracy}% (loss ") and "on 64 mnist test images" in line
    assert str(path) in line and line.count("\n") == 1


def test_eval_weights_interpolates_positions_of_another_image_size(tiny_run, tmp_path, capsys):
    path = exported(tiny_run, tmp_path / "grid3.safetensors", pos_grid=(3, 3))  # as if trained at 21 × 21
    assert load_state_dict(path)["pos_embedding"].shape == (1, 10, 16)
    assert cli.main(["eval", "--weights", str(path), "--model", "crate", "--preset", "mnist-demo", *TINY_MODEL,
                     "--test-limit", "64"]) == 0
    assert "on 64 mnist test images" in capsys.readouterr().out


@pytest.mark.parametrize("file, message", [
    ("crate_state_dict.pth", "to_patch_embedding"),  # RGB 8 × 8 weights do not fit MNIST's patches
    ("README.md", "not a weights file"),
    ("truncated.pth", "damaged or truncated"),
])
def test_eval_weights_that_cannot_be_used_give_one_line(tmp_path, capsys, file, message):
    (tmp_path / "README.md").write_text("# not weights\n")
    (tmp_path / "truncated.pth").write_bytes((FIXTURES / "crate_state_dict.pth").read_bytes()[:3000])
    path = FIXTURES / file if (FIXTURES / file).exists() else tmp_path / file
    argv = ["eval", "--weights", str(path), "--model", "crate", "--preset", "mnist-demo", "--set", "dim=8",
            "--set", "depth=2", "--set", "heads=2", "--set", "dim_head=4", "--set", "patch_size=4", "--test-limit", "8"]
    assert message in one_line_error(capsys, argv)


@pytest.mark.parametrize("argv, message", [
    (["eval"], "give a run folder RUN, or --weights FILE"),
    (["eval", "run", "--model", "crate"], "--model: only with --weights FILE"),
    (["eval", "--weights", "w.pth", "--model", "crate"], "--weights needs --preset"),
    (["eval", "run", "--weights", "w.pth", "--model", "crate", "--preset", "tiny"], "not both"),
    (["eval", "--weights", "w.pth", "--model", "crate", "--preset", "tiny"], "must be a multiple of patch_size"),
    (["eval", "--weights", "w.pth", "--model", "crate", "--preset", "mnist", "--set", "image_size=32"],
     "come from the dataset"),
])
def test_eval_weights_usage_errors(capsys, argv, message):
    assert message in one_line_error(capsys, argv, 2)


# -- whitebox train --init-from ---------------------------------------------------------------

def changed(a: dict, b: dict) -> set:
    return {name for name in a if a[name].tobytes() != b[name].tobytes()}


def test_linear_probe_from_a_run_changes_only_the_head_and_resumes_exactly(tiny_run, tmp_path, capsys):
    straight, split = tmp_path / "straight", tmp_path / "split"
    probe = ["train", *TINY_TRAIN, "--init-from", str(tiny_run), "--linear-probe"]
    assert cli.main([*probe, "--out", str(straight)]) == 0
    assert cli.main([*probe, "--out", str(split), "--max-steps", "1"]) == 0
    assert cli.main(["train", "--resume", str(split), "--quiet"]) == 0
    capsys.readouterr()
    base, a, b = (load_checkpoint(p / "checkpoint.npz") for p in (tiny_run, straight, split))
    assert a.meta["step"] == b.meta["step"] == 2 and changed(a.params, b.params) == set()  # resume is exact
    assert changed(base.params, a.params) == set(HEAD_NAMES)  # the backbone bit for bit, the head trained
    assert {k.partition("/")[2] for k in a.optimizer if "/" in k} == set(HEAD_NAMES)  # no state for the backbone
    assert set(a.optimizer["decay"]) == {"head.weight"}
    config = json.loads((straight / "config.json").read_text())
    assert config["init_from"] == str(tiny_run.resolve()) and config["linear_probe"] is True
    assert cli.main(["eval", str(straight)]) == 0 and "test accuracy" in capsys.readouterr().out


def test_fine_tuning_from_a_file_starts_from_it_and_resume_does_not_reload_it(tiny_run, tmp_path, capsys):
    path = exported(tiny_run, tmp_path / "tiny.pth.tar")
    straight, split = tmp_path / "straight", tmp_path / "split"
    tune = ["train", *TINY_TRAIN, "--init-from", str(path)]
    assert cli.main([*tune, "--out", str(straight)]) == 0
    assert cli.main([*tune, "--out", str(split), "--max-steps", "1"]) == 0
    run = load_run(straight)
    start, base = run.initial_params(), load_checkpoint(tiny_run / "checkpoint.npz").params
    fresh = run.model.init(run.cfg, seed=0, dtype=np.float32)
    assert changed(start, base) == set(HEAD_NAMES)  # the file's backbone, bit for bit ...
    assert changed(start, fresh) >= set(base) - set(HEAD_NAMES) and not changed(  # ... and a new head
        {k: start[k] for k in HEAD_NAMES}, {k: fresh[k] for k in HEAD_NAMES})
    assert changed(run.params, start) == set(base)  # then every parameter trained
    path.unlink()  # a resume continues from the run's own checkpoint, without the file
    assert cli.main(["train", "--resume", str(split), "--quiet"]) == 0
    capsys.readouterr()
    assert changed(load_checkpoint(split / "checkpoint.npz").params, run.params) == set()
    with pytest.raises(ConfigError, match="cannot read"):  # the start was the file's, which is gone
        run.initial_params()


@pytest.mark.parametrize("argv, status, message", [
    (["--init-from", str(FIXTURES / "crate_state_dict.pth")], 1, "does not match the config: missing"),
    (["--init-from", "missing.pth"], 1, "cannot read"),
    (["--linear-probe"], 2, "needs init_from"),
    (["--task", "mae", "--init-from", "x.pth"], 2, "does not use ['init_from']"),
])
def test_init_from_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, status, message):
    monkeypatch.chdir(tmp_path)
    assert message in one_line_error(capsys, ["train", "--quiet", "--out", "run", *argv], status)


def test_init_from_a_run_of_another_shape_names_the_parameter(tiny_run, tmp_path, capsys):
    argv = ["train", *TINY_TRAIN, "--set", "dim=24", "--init-from", str(tiny_run), "--out", str(tmp_path / "r")]
    assert "embed.proj.weight has shape" in one_line_error(capsys, argv)


def test_resume_refuses_init_from_and_linear_probe(tiny_run, capsys):
    err = one_line_error(capsys, ["train", "--resume", str(tiny_run), "--init-from", "x.pth", "--linear-probe"], 2)
    assert "drop --init-from, --linear-probe" in err


def test_run_configs_without_the_fine_tuning_fields_still_load():
    config = resolve_config("crate", "mnist-demo")
    data = config.to_dict()
    del data["init_from"], data["linear_probe"]
    assert type(config).from_dict(data) == config
    assert config.init_from is None and config.linear_probe is False
