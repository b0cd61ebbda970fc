"""benchmarks/gpu_check.py without a GPU: its dry run checks every command of the plan and writes the
results file; a broken command is caught; the install step picks the CuPy wheel of the driver's CUDA."""

import importlib.util
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("benchmarks_gpu_check_test", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)  # dataclasses look it up there
_spec.loader.exec_module(gpu_check)


def test_the_plan_only_dry_run_checks_every_command_and_writes_the_results(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # bench_step's arguments are checked without importing PyTorch
    work = tmp_path / "w"
    assert gpu_check.main(["--dry-run", "--plan-only", "--results-dir", str(tmp_path), "--work", str(work)]) == 0
    printed = capsys.readouterr().out
    files = list(tmp_path.glob("gpu_check-*-dry-run.md"))
    assert len(files) == 1
    text = files[0].read_text()
    steps = gpu_check.plan()
    assert f"{len(steps)} of {len(steps)} commands passed" in text
    assert text.count("| checked |") == len(steps)
    parts = [s.part for s in steps]
    assert parts[0] == "environment" and {"tests", "cli", "bench", "train"} <= set(parts)
    for step in steps:
        if step.kind == "whitebox":
            assert step.args(work)[-2:] == ["--device", "gpu"] and " ".join(step.args(work)[:3]) in printed
    bench = next(s for s in steps if s.part == "bench")
    assert "--device" in bench.argv and bench.argv[bench.argv.index("--device") + 1] == "gpu"


def test_a_command_the_cli_would_refuse_fails_the_dry_run(tmp_path, monkeypatch):
    bad = gpu_check.Step("cli", "a typo", ("train", "--devise", "gpu"), 10)
    monkeypatch.setattr(gpu_check, "plan", lambda: [bad])
    assert gpu_check.main(["--dry-run", "--plan-only", "--results-dir", str(tmp_path), "--work", str(tmp_path)]) == 1
    text = next(tmp_path.glob("*.md")).read_text()
    assert "| failed (plan) |" in text and "--devise" in text


def test_a_missing_test_file_or_script_fails_the_dry_run(tmp_path):
    missing = gpu_check.Step("tests", "gone", ("-q", "tests/test_nothing_here.py"), 10, kind="pytest")
    assert gpu_check.dry_run_step(missing, tmp_path, plan_only=True).status == "failed (plan)"
    script = gpu_check.Step("bench", "gone", ("benchmarks/no_such_bench.py",), 10, kind="python")
    assert gpu_check.dry_run_step(script, tmp_path, plan_only=True).status == "failed (plan)"


@pytest.mark.parametrize("cuda, extra", [(12, "gpu-cuda12"), (13, "gpu"), (None, "gpu")])
def test_without_cupy_the_install_step_picks_the_extra_of_the_drivers_cuda(monkeypatch, cuda, extra):
    real = importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec", lambda name: None if name == "cupy" else real(name))
    monkeypatch.setattr(gpu_check, "driver_cuda_major", lambda: cuda)
    step = gpu_check.install_step()
    assert step.command("W")[1:] == ["-m", "pip", "install", "-e", f".[{extra}]"]


def test_the_gpu_extras_name_cupy_wheels_for_cuda_12_and_13():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"][0].startswith("cupy-cuda13x") and extras["gpu-cuda12"][0].startswith("cupy-cuda12x")


def test_a_command_that_would_start_past_the_budget_is_not_run(tmp_path):
    step = gpu_check.Step("train", "late", ("-c", "print(1)"), 10, kind="python")
    late = gpu_check.run_step(step, tmp_path, started=time.perf_counter() - gpu_check.LAST_START_S - 1)
    assert late.status == "not run"
    on_time = gpu_check.run_step(step, tmp_path, started=time.perf_counter())
    assert on_time.status == "passed" and on_time.output.strip() == "1"


def test_a_failing_command_and_a_missing_expected_output_are_failures(tmp_path):
    crash = gpu_check.Step("train", "crash", ("-c", "import sys; sys.exit(3)"), 10, kind="python")
    assert gpu_check.run_step(crash, tmp_path, time.perf_counter()).status == "failed (exit 3)"
    quiet = gpu_check.Step("train", "quiet", ("-c", "print('x')"), 10, kind="python", expect="accuracy")
    assert gpu_check.run_step(quiet, tmp_path, time.perf_counter()).status.startswith("failed (no 'accuracy')")


def test_the_results_file_records_the_gpu_and_versions(tmp_path):
    step = gpu_check.Step("bench", "bench", ("-c", "print(1)"), 10, kind="python")
    env = {"gpu": "NVIDIA H200", "cupy": "14.2.0", "cuda_runtime": 13000, "cuda_driver": 13000}
    text = gpu_check.results_markdown([gpu_check.Outcome(step, "passed", 1.5, "table row")], env, False, 2.0, tmp_path)
    assert text.startswith("# GPU check, ") and "| gpu | NVIDIA H200 |" in text and "| cupy | 14.2.0 |" in text
    assert "1 of 1 commands passed" in text and "table row" in text and sys.executable not in text
