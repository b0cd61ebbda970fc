#!/usr/bin/env python
"""The GPU check: one command that a session with a GPU runs, within 8 minutes, and one results file.

    bash benchmarks/gpu_check.sh                       # on a machine with a CUDA GPU, from anywhere
    bash benchmarks/gpu_check.sh --dry-run             # anywhere: print and check the plan; the CLI part
                                                       # runs in-process on the strict CuPy stand-in
    bash benchmarks/gpu_check.sh --dry-run --plan-only # only print and check the plan (seconds)

The parts, in order (each command has its own time limit; a command that would start after
7.5 minutes is reported as not run):

1. ``install``: ``pip install -e '.[gpu]'`` (CuPy for CUDA 13) or ``'.[gpu-cuda12]'`` (CUDA 12, from
   ``nvidia-smi``'s driver version) when CuPy does not import; nothing otherwise.
2. ``environment``: GPU name and memory, CuPy, CUDA runtime and driver versions, PyTorch and its CUDA.
3. ``tests``: the tests marked ``gpu``, then the device-parametrised tests on the GPU (``--devices gpu``).
4. ``cli``: every command that runs a model, tiny, with ``--device gpu`` (:data:`CLI_STEPS`, which
   ``tests/test_device_cli.py`` also runs on the stand-in).
5. ``bench``: ``benchmarks/bench_step.py`` on CUDA, against PyTorch CUDA when torch imports.
6. ``train``: a short real run, ``mnist-demo`` for 1 epoch on the GPU.

It writes ``benchmarks/results/gpu_check-<date>.md`` (``--results-dir`` elsewhere): the date, the
GPU, CuPy and CUDA versions, and each command's status, time and output tail. The exit status is 0
when every command passed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import io
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # whitebox from this checkout, installed or not
BUDGET_S = 8 * 60
LAST_START_S = 7.5 * 60


@dataclass(frozen=True)
class Step:
    """One command of the plan. ``argv`` may hold ``{work}`` (the scratch folder);
    ``kind`` is ``whitebox`` (``python -m whitebox ARGV``), ``python`` (``python ARGV``) or ``pytest``."""

    part: str
    name: str
    argv: tuple
    limit_s: int
    kind: str = "whitebox"
    expect: str = ""  # a text its standard output must contain

    def args(self, work) -> list[str]:
        return [a.replace("{work}", str(work)) for a in self.argv]

    def command(self, work) -> list[str]:
        prefix = {"whitebox": [sys.executable, "-m", "whitebox"], "python": [sys.executable],
                  "pytest": [sys.executable, "-m", "pytest"]}[self.kind]
        return prefix + self.args(work)


TINY = ("--set", "dim=16", "--set", "depth=2", "--set", "heads=2", "--set", "dim_head=8", "--epochs", "1",
        "--batch-size", "32", "--quiet")
IMAGES = ("--train-limit", "64", "--test-limit", "32")
MAE = ("--set", "decoder_dim=16", "--set", "decoder_heads=2", "--set", "decoder_dim_head=8", "--set", "patch_size=7")
LM = ("--set", "block_size=16", "--set", "steps_per_epoch=2", "--set", "eval_windows=4")
GPU = ("--device", "gpu")

CLI_STEPS = (
    Step("cli", "train classifier", ("train", "--preset", "mnist-demo", "--out", "{work}/cls", *IMAGES, *TINY, *GPU), 120),
    Step("cli", "eval classifier", ("eval", "{work}/cls", *GPU), 60, expect="accuracy"),
    Step("cli", "measure", ("measure", "--checkpoint", "{work}/cls", "--images", "16", "--out", "{work}/measure", *GPU), 120),
    Step("cli", "report", ("report", "{work}/cls", "--images", "16", "--out", "{work}/report", *GPU), 120),
    Step("cli", "attention", ("attention", "--checkpoint", "{work}/cls", "--images", "2", "--out",
                              "{work}/attention.png", *GPU), 60),
    Step("cli", "train mae", ("train", "--task", "mae", "--out", "{work}/mae", *IMAGES, *TINY, *MAE, *GPU), 120),
    Step("cli", "eval mae", ("eval", "{work}/mae", *GPU), 60, expect="loss"),
    Step("cli", "reconstruct", ("reconstruct", "--checkpoint", "{work}/mae", "--count", "2", "--out",
                                "{work}/mae.png", *GPU), 60),
    Step("cli", "train lm", ("train", "--task", "lm", "--out", "{work}/lm", *TINY, *LM, *GPU), 120),
    Step("cli", "eval lm", ("eval", "{work}/lm", *GPU), 60, expect="bits per character"),
    Step("cli", "sample", ("sample", "--checkpoint", "{work}/lm", "--prompt", "ROMEO:", "--chars", "12", "--seed", "1",
                           *GPU), 60, expect="ROMEO:"),
)

DEVICE_TESTS = tuple(f"tests/{p.name}" for p in sorted((ROOT / "tests").glob("test_device_*.py")))
GPU_MARKED_TESTS = tuple(f"tests/{p.name}" for p in sorted((ROOT / "tests").glob("test_*.py"))
                         if "mark.gpu" in p.read_text(encoding="utf-8"))

ENVIRONMENT = r"""
import json, cupy
rt = cupy.cuda.runtime
props = rt.getDeviceProperties(0)
info = {"gpu": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
        "gpu_memory_gib": round(props["totalGlobalMem"] / 2**30, 1), "devices": rt.getDeviceCount(),
        "cupy": cupy.__version__, "cuda_runtime": rt.runtimeGetVersion(), "cuda_driver": rt.driverGetVersion()}
try:
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda, torch_sees_gpu=torch.cuda.is_available())
except ImportError:
    info.update(torch=None)
print(json.dumps(info))
"""


def plan() -> list[Step]:
    """Every command of a real run, in order (the install step is decided at run time)."""
    return [
        Step("environment", "versions", ("-c", ENVIRONMENT), 60, kind="python", expect='"cupy"'),
        Step("tests", "gpu-marked tests", ("-q", "-m", "gpu", *GPU_MARKED_TESTS), 180, kind="pytest"),
        Step("tests", "device tests on the gpu", ("-q", *DEVICE_TESTS, "--devices", "gpu"), 180, kind="pytest"),
        *CLI_STEPS,
        Step("bench", "bench_step crate", ("benchmarks/bench_step.py", "--model", "crate", "--device", "gpu",
                                           "--batch-size", "256", "--repeats", "5", "--json", "{work}/bench.json"),
             150, kind="python"),
        Step("train", "mnist-demo, 1 epoch", ("train", "--preset", "mnist-demo", "--epochs", "1", "--out",
                                              "{work}/mnist-demo", *GPU), 180, expect="test"),
    ]


def driver_cuda_major() -> int | None:
    """The CUDA version the driver supports (``nvidia-smi``'s header), its major number; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    found = re.search(r"CUDA Version:\s*(\d+)\.", out)
    return int(found.group(1)) if found else None


def install_step() -> Step | None:
    """``pip install -e '.[gpu…]'`` when CuPy does not import (the extra matching the driver's CUDA), else None."""
    if importlib.util.find_spec("cupy") is not None:
        return None
    extra = "gpu-cuda12" if driver_cuda_major() == 12 else "gpu"
    return Step("install", f"pip install the {extra} extra", ("-m", "pip", "install", "-e", f".[{extra}]"), 240,
                kind="python")


@dataclass
class Outcome:
    step: Step
    status: str  # passed, failed, timed out, not run, checked, ran on the stand-in
    seconds: float
    output: str


def run_step(step: Step, work, started: float) -> Outcome:
    if time.perf_counter() - started > LAST_START_S:
        return Outcome(step, "not run", 0.0, f"would start after {LAST_START_S / 60:g} minutes")
    env = {k: v for k, v in os.environ.items() if k != "WHITEBOX_DEVICE"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    t = time.perf_counter()
    try:
        done = subprocess.run(step.command(work), cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=step.limit_s)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        return Outcome(step, "timed out", time.perf_counter() - t, out + f"\n(limit {step.limit_s} s)")
    output = done.stdout + done.stderr
    ok = done.returncode == 0 and step.expect in done.stdout
    status = "passed" if ok else f"failed (exit {done.returncode})" if done.returncode else f"failed (no {step.expect!r})"
    return Outcome(step, status, time.perf_counter() - t, output)


# ----------------------------------------------------------------------------------------------
# the dry run: every command checked without a GPU


def _check_whitebox_args(argv: list[str]) -> str:
    from whitebox.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser()[0].parse_args(argv)
    except SystemExit:
        return err.getvalue().strip() or "argparse refused the arguments"
    return ""


def _check_python_args(step: Step, work) -> str:
    args = step.args(work)
    if args[0] == "-c":
        compile(args[1], "<environment>", "exec")
        return ""
    if args[0] == "-m":
        return ""
    script = ROOT / args[0]
    if not script.is_file():
        return f"{args[0]} does not exist"
    spec = importlib.util.spec_from_file_location(f"gpu_check_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            module.parse_args(args[1:])
    except SystemExit:
        return err.getvalue().strip() or "argparse refused the arguments"
    return ""


def _check_pytest_args(step: Step, work, plan_only: bool) -> str:
    args = step.args(work)
    missing = [a for a in args if a.startswith("tests/") and not (ROOT / a).is_file()]
    if missing:
        return f"missing test files {missing}"
    if not any(a.startswith("tests/") for a in args):
        return "no test files"
    if plan_only:
        return ""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:  # 5: nothing selected, which is a broken plan too
        return f"collection failed (exit {done.returncode}): " + (done.stdout + done.stderr)[-800:]
    return ""


def _on_stand_in(step: Step, work) -> str:
    """Run a whitebox command in-process with the strict CuPy stand-in as the GPU; its output."""
    if str(ROOT / "tests") not in sys.path:
        sys.path.insert(0, str(ROOT / "tests"))
    from strict_device import strict

    from whitebox import backend, cli

    out, err = io.StringIO(), io.StringIO()
    with backend.use_device_module(strict), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(step.args(work))
    if code != 0 or step.expect not in out.getvalue():
        raise RuntimeError(f"exit {code}: {err.getvalue()[-800:]}")
    return out.getvalue()


def dry_run_step(step: Step, work, plan_only: bool) -> Outcome:
    t = time.perf_counter()
    if step.kind == "whitebox":
        problem = _check_whitebox_args(step.args(work))
    elif step.kind == "python":
        problem = _check_python_args(step, work)
    else:
        problem = _check_pytest_args(step, work, plan_only)
    if problem:
        return Outcome(step, "failed (plan)", time.perf_counter() - t, problem)
    if step.part == "cli" and not plan_only:
        try:
            output = _on_stand_in(step, work)
        except Exception as e:  # a command that failed on the stand-in
            return Outcome(step, "failed on the stand-in", time.perf_counter() - t, str(e))
        return Outcome(step, "ran on the stand-in", time.perf_counter() - t, output)
    return Outcome(step, "checked", time.perf_counter() - t, "")


# ----------------------------------------------------------------------------------------------
# the results file


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def results_markdown(outcomes: list[Outcome], env: dict, dry_run: bool, total_s: float, work) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = "GPU check (dry run: plan checked without a GPU)" if dry_run else "GPU check"
    lines = [f"# {title}, {date}\n", "| what | value |", "| --- | --- |"]
    facts = {"host": platform.node(), "python": platform.python_version(), **env}
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    passed = sum(o.status in ("passed", "checked", "ran on the stand-in") for o in outcomes)
    lines += ["", f"{passed} of {len(outcomes)} commands passed in {total_s:.0f} s.\n",
              "| part | command | status | seconds |", "| --- | --- | --- | --- |"]
    for o in outcomes:
        shown = o.step.name if o.step.argv[0] == "-c" else \
            " ".join(shlex.quote(a) for a in o.step.command(work)[1:]).replace(str(work), "WORK")
        shown = shown if len(shown) < 160 else shown[:157] + "..."
        lines.append(f"| {o.step.part} | `{shown}` | {o.status} | {o.seconds:.1f} |")
    for o in outcomes:
        if o.output.strip() and (o.step.part in ("bench", "train", "environment") or o.status.startswith(("failed", "timed"))):
            lines += ["", f"## {o.step.part}: {o.step.name} ({o.status})", "", "```", _tail(o.output, 40), "```"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true",
                   help="print and check every command without a GPU; run the CLI part on the strict CuPy stand-in")
    p.add_argument("--plan-only", action="store_true",
                   help="with --dry-run: check the arguments and files only (no test collection, no CLI run)")
    p.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"), help="where the .md goes")
    p.add_argument("--work", help="scratch folder for the runs (default: a new temporary folder)")
    args = p.parse_args(argv)
    if args.plan_only and not args.dry_run:
        p.error("--plan-only goes with --dry-run")
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps = plan()
    install = install_step() if not args.dry_run else None
    outcomes, env = [], {}
    if args.dry_run:
        cuda = driver_cuda_major()
        extra = "gpu-cuda12" if cuda == 12 else "gpu"
        env["install"] = (f"CuPy imports: nothing to install" if importlib.util.find_spec("cupy") else
                          f"CuPy missing: would run pip install -e '.[{extra}]' (driver CUDA {cuda or 'not found'})")
    elif install is not None:
        outcome = run_step(install, work, started)
        outcomes.append(outcome)
        print(f"[{outcome.status}] {install.name} ({outcome.seconds:.0f} s)", flush=True)
    for step in steps:
        shown = step.name if step.argv[0] == "-c" else " ".join(shlex.quote(a) for a in step.command(work))
        print(f"{step.part:12s} {shown}", flush=True)
        outcome = dry_run_step(step, work, args.plan_only) if args.dry_run else run_step(step, work, started)
        outcomes.append(outcome)
        print(f"  [{outcome.status}] {outcome.seconds:.1f} s", flush=True)
        if step.part == "environment" and outcome.status == "passed":
            env.update(json.loads(outcome.output.strip().splitlines()[-1]))
    total = time.perf_counter() - started
    results = Path(args.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    name = f"gpu_check-{datetime.date.today().isoformat()}{'-dry-run' if args.dry_run else ''}.md"
    path = results / name
    path.write_text(results_markdown(outcomes, env, args.dry_run, total, work), encoding="utf-8")
    print(f"wrote {path} ({total:.0f} s{'; over the 8-minute budget' if total > BUDGET_S else ''})")
    return 0 if all(o.status in ("passed", "checked", "ran on the stand-in") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
