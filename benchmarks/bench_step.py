#!/usr/bin/env python
"""Time whitebox's CRATE / CRATE-alpha forward pass and training step, against PyTorch when present.

A training step is ``forward → cross-entropy with label smoothing → backward`` to the gradients
of every parameter (no optimiser update). For each model the script reports, per framework:

* the median (and min / max) wall time of the forward pass and of the step, over ``--repeats``
  runs after ``--warmup`` runs; every repeat times whitebox's and PyTorch's forward and step
  once each, alternating (the order flips every repeat), so slow drifts of the machine hit all
  rows alike; PyTorch's forward runs under ``torch.no_grad()`` (inference; whitebox's forward
  always keeps its cache);
* images per second, and the achieved GFLOP/s from the analytic matmul FLOP count of
  :mod:`flops` (each framework's own count: whitebox's ISTA has two matmuls, the published
  PyTorch code three), also as a fraction of this machine's large matmul rate, measured in the
  same run before and after the timings (a ``--matmul-size``² square matmul in ``--dtype``,
  median of 5; the best of NumPy and PyTorch, before and after);
* the peak memory of the step, measured in a fresh subprocess per (framework, model): on the CPU
  the growth of the peak resident set (``VmHWM``, reset before the steps) over the resident set
  before them; on the GPU CuPy's memory-pool size / ``torch.cuda.max_memory_allocated``;
* the ratio whitebox / PyTorch (below 1: whitebox is faster).

Before timing, the PyTorch model is loaded with the same parameters (through
``to_torch_state_dict``) and checked in float64 on a small batch: same logits, loss and every
gradient. Without PyTorch installed only the whitebox rows appear.

Examples::

    python benchmarks/bench_step.py --model crate --threads 2
    python benchmarks/bench_step.py --model crate-alpha --preset tiny --batch-size 32 --json out.json
    python benchmarks/bench_step.py --model crate --device gpu --batch-size 256
"""

from __future__ import annotations

import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _threads import early_threads  # noqa: E402

THREADS = early_threads(sys.argv[1:], default=None)

import argparse
import dataclasses
import gc
import importlib
import json
import platform
import resource
import statistics
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))  # the repository root, for a fresh clone

import numpy as np

import flops
from whitebox.backend import DeviceUnavailableError, get_xp, synchronize, to_host
from whitebox.layers.loss import cross_entropy

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

try:
    import torch
    import torch.nn.functional as F

    import torch_crate
except ImportError:
    torch = None

MODULES = {"crate": "whitebox.models.crate", "crate-alpha": "whitebox.models.crate_alpha"}
# docs/reference.md §8's configuration: the default when no --preset is given.
REFERENCE_SIZE = {"image_size": 32, "patch_size": 4, "channels": 3, "num_classes": 10, "dim": 192, "depth": 12,
                  "heads": 3, "dim_head": 64}
SHAPE_FLAGS = {"image_size": "image_size", "patch_size": "patch_size", "channels": "channels", "classes": "num_classes",
               "dim": "dim", "depth": "depth", "heads": "heads", "dim_head": "dim_head", "pool": "pool"}
SMOOTHING = 0.1
CHECK_BATCH = 4


# ---------------------------------------------------------------------------------------------
# models


def model_module(model: str):
    try:
        return importlib.import_module(MODULES[model])
    except ImportError as err:
        raise SystemExit(f"{model}: {MODULES[model]} is not available ({err})") from None


def make_config(args):
    mod = model_module(args.model)
    if args.preset in (None, "reference"):
        cfg = mod.Config(**REFERENCE_SIZE)
    else:
        presets = getattr(mod, "PRESETS", {})
        if args.preset not in presets:
            raise SystemExit(f"{args.model} has no preset {args.preset!r}; it has {sorted(presets) + ['reference']}")
        cfg = presets[args.preset]()
    changes = {field: getattr(args, flag) for flag, field in SHAPE_FLAGS.items() if getattr(args, flag) is not None}
    if args.overcomplete is not None:
        if args.model != "crate-alpha":
            raise SystemExit("--overcomplete applies to crate-alpha only")
        changes["overcomplete"] = args.overcomplete
    return cfg.replace(**changes) if changes else cfg


def torch_model(model: str, cfg):
    build = torch_crate.crate_from_config if model == "crate" else torch_crate.crate_alpha_from_config
    return build(cfg)


def flop_counts(model: str, cfg, batch: int) -> dict:
    """``{framework: {forward, backward, step}}`` for a batch."""
    if model == "crate":
        return {"whitebox": flops.step_flops(cfg, batch, "crate", ista_matmuls=2),
                "pytorch": flops.step_flops(cfg, batch, "crate", ista_matmuls=3)}
    counts = flops.step_flops(cfg, batch, "crate-alpha")
    return {"whitebox": counts, "pytorch": counts}


class Whitebox:
    """whitebox's forward and step on one batch."""

    name = "whitebox"

    def __init__(self, model, cfg, params, images, labels, xp):
        self.mod, self.cfg, self.params, self.xp = model_module(model), cfg, params, xp
        self.images, self.labels = xp.asarray(images), xp.asarray(labels)

    def sync(self):
        synchronize(self.xp)

    def forward(self):
        logits, _ = self.mod.forward(self.params, self.images, self.cfg)
        return logits

    def step(self):
        logits, cache = self.mod.forward(self.params, self.images, self.cfg)
        loss, dlogits = cross_entropy(logits, self.labels, SMOOTHING)
        grads = self.mod.backward(dlogits, cache)
        return loss, grads


class PyTorch:
    """The published PyTorch model's forward (no grad) and step on one batch."""

    name = "pytorch"

    def __init__(self, model, cfg, params, images, labels, device, dtype):
        self.device = torch.device("cuda" if device == "gpu" else "cpu")
        self.dtype = getattr(torch, np.dtype(dtype).name)
        self.net = torch_model(model, cfg).to(self.device, self.dtype)
        sd = model_module(model).to_torch_state_dict(params, cfg)
        self.net.load_state_dict(torch_crate.to_torch(sd, self.dtype, self.device), strict=True)
        self.images = torch.as_tensor(to_host(images), dtype=self.dtype, device=self.device)
        self.labels = torch.as_tensor(to_host(labels), dtype=torch.long, device=self.device)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def forward(self):
        with torch.no_grad():
            return self.net(self.images)

    def step(self):
        self.net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(self.net(self.images), self.labels, label_smoothing=SMOOTHING)
        loss.backward()
        return loss.detach(), None


def make_inputs(cfg, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((batch, cfg.channels, cfg.image_size, cfg.image_size))
    labels = rng.integers(0, cfg.num_classes, size=batch)
    return images, labels


def make_runners(args, cfg, dtype, batch, with_torch: bool, seed_offset: int = 0):
    xp = get_xp(args.device)
    mod = model_module(args.model)
    params = mod.init(cfg, seed=args.seed, dtype=dtype, device=args.device)
    images, labels = make_inputs(cfg, batch, args.seed + 1 + seed_offset)
    images = images.astype(dtype)
    runners = [Whitebox(args.model, cfg, params, images, labels, xp)]
    if with_torch:
        runners.append(PyTorch(args.model, cfg, params, images, labels, args.device, dtype))
    return runners


# ---------------------------------------------------------------------------------------------
# checks, timing, memory


def check_against_torch(args, cfg) -> dict:
    """float64 on a small batch: logits, loss and every parameter's gradient, whitebox vs PyTorch."""
    wb, pt = make_runners(args, cfg, np.float64, CHECK_BATCH, True)
    logits = to_host(wb.forward())
    loss, grads = wb.step()
    t_logits = pt.net(pt.images)
    t_loss = F.cross_entropy(t_logits, pt.labels, label_smoothing=SMOOTHING)
    t_loss.backward()
    t_grads = torch_crate.grads_by_name(pt.net)
    names = model_module(args.model).torch_names(cfg)
    grad_err = max(
        float(np.linalg.norm(to_host(grads[ours]) - t_grads[theirs]) / max(np.linalg.norm(t_grads[theirs]), 1e-300))
        for ours, theirs in names.items()
    )
    out = {
        "logits_max_abs_diff": float(np.abs(logits - t_logits.detach().cpu().numpy()).max()),
        "loss_abs_diff": abs(float(loss) - t_loss.item()),
        "grad_max_rel_err": grad_err,
        "parameters_compared": len(names),
    }
    if set(names.values()) != set(t_grads):
        raise SystemExit(f"gradient names differ: {sorted(set(names.values()) ^ set(t_grads))[:5]}")
    if max(out["logits_max_abs_diff"], out["loss_abs_diff"], out["grad_max_rel_err"]) > 1e-8:
        raise SystemExit(f"whitebox and PyTorch disagree in float64: {out}")
    return out


def time_interleaved(runners, phases, warmup: int, repeats: int) -> dict:
    """Seconds per call, ``{runner: {phase: [times]}}``: every repeat runs each phase of each runner
    once, the runners alternating (their order flipped every repeat), so drifts of the machine's
    load hit all rows alike."""
    times = {r.name: {phase: [] for phase in phases} for r in runners}
    for i in range(warmup + repeats):
        for phase in phases:
            for r in runners if i % 2 == 0 else runners[::-1]:
                r.sync()
                t0 = time.perf_counter()
                result = getattr(r, phase)()
                r.sync()
                elapsed = time.perf_counter() - t0
                del result
                if i >= warmup:
                    times[r.name][phase].append(elapsed)
    return times


def matmul_rate(device: str, dtype, size: int, repeats: int = 5) -> dict:
    """GFLOP/s of a (size × size) @ (size × size) matmul: NumPy/CuPy, and PyTorch when present."""
    rates = {}
    xp = get_xp(device)
    a = xp.asarray(np.random.default_rng(0).standard_normal((size, size)), dtype=dtype)
    b = xp.asarray(np.random.default_rng(1).standard_normal((size, size)), dtype=dtype)
    rates["numpy" if device == "cpu" else "cupy"] = _rate(lambda: a @ b, lambda: synchronize(xp), size, repeats)
    if torch is not None and (device == "cpu" or torch.cuda.is_available()):
        dev = "cuda" if device == "gpu" else "cpu"
        ta, tb = (torch.as_tensor(to_host(m), device=dev) for m in (a, b))
        sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
        rates["pytorch"] = _rate(lambda: ta @ tb, sync, size, repeats)
    return rates


def _rate(fn, sync, size, repeats):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


def _proc_status() -> dict:
    """VmRSS and VmHWM in bytes (Linux), else {}."""
    try:
        with open("/proc/self/status") as f:
            return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in f)
                    if k in ("VmRSS", "VmHWM")}
    except OSError:
        return {}


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def memory_child(spec: dict) -> dict:
    """Runs in a fresh process: the peak memory of ``steps`` training steps of one framework."""
    args = argparse.Namespace(**spec["args"])
    mod = model_module(args.model)
    cfg = mod.Config(**spec["cfg"])
    dtype = np.dtype(args.dtype).type
    runners = make_runners(args, cfg, dtype, args.batch_size, spec["framework"] == "pytorch")
    runner = runners[-1]
    if spec["framework"] == "pytorch":
        del runners[0]  # the whitebox inputs are not part of PyTorch's measurement
    steps = spec["steps"]
    gc.collect()
    if args.device == "gpu":
        return _gpu_peak(runner, steps)
    before = _proc_status()
    exact = _reset_peak_rss() and "VmRSS" in before
    base = before["VmRSS"] if exact else _maxrss_bytes()
    for _ in range(steps):
        result = runner.step()
        del result
    peak = _proc_status().get("VmHWM") if exact else _maxrss_bytes()
    return {"peak_bytes": peak - base, "method": "VmHWM - VmRSS" if exact else "ru_maxrss growth (lower bound)"}


def _gpu_peak(runner, steps):
    if runner.name == "pytorch":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            result = runner.step()
            del result
        torch.cuda.synchronize()
        return {"peak_bytes": torch.cuda.max_memory_allocated() - base, "method": "torch.cuda.max_memory_allocated"}
    pool = runner.xp.get_default_memory_pool()
    runner.sync()
    pool.free_all_blocks()
    base = pool.used_bytes()
    for _ in range(steps):
        result = runner.step()
        del result
    runner.sync()
    return {"peak_bytes": pool.total_bytes() - base, "method": "CuPy pool size (used + cached blocks)"}


def measure_memory(args, cfg, framework: str) -> dict:
    spec = {"framework": framework, "steps": 3, "cfg": dataclasses.asdict(cfg),
            "args": {k: getattr(args, k) for k in ("model", "device", "dtype", "batch_size", "seed")}}
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", json.dumps(spec)]
    if args.threads is not None:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if proc.returncode:
        raise SystemExit(f"memory measurement of {framework} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the run


def environment(args) -> dict:
    env = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine(),
           "processor": _cpu_name(), "cpu_count": os.cpu_count(), "threads": args.threads,
           "threadpoolctl": threadpool_limits is not None}
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    if args.device == "gpu":
        xp = get_xp("gpu")
        env["cupy"] = xp.__version__
        env["gpu"] = xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def summarise(times: list, flop: int, batch: int, machine_rate: float) -> dict:
    med = statistics.median(times)
    rate = flop / med / 1e9
    return {"median_s": med, "min_s": min(times), "max_s": max(times), "images_per_s": batch / med,
            "gflop": flop / 1e9, "gflop_per_s": rate, "fraction_of_matmul_rate": rate / machine_rate}


def run(args) -> dict:
    dtype = np.dtype(args.dtype).type
    cfg = make_config(args)
    with_torch = torch is not None and not args.no_torch
    if with_torch and args.device == "gpu" and not torch.cuda.is_available():
        print("PyTorch sees no CUDA device: whitebox rows only", file=sys.stderr)
        with_torch = False
    if torch is not None and args.threads is not None:
        torch.set_num_threads(args.threads)
    report = {"model": args.model, "config": dataclasses.asdict(cfg), "batch_size": args.batch_size,
              "dtype": args.dtype, "device": args.device, "warmup": args.warmup, "repeats": args.repeats,
              "label_smoothing": SMOOTHING, "environment": environment(args),
              "num_params": model_module(args.model).num_params(cfg)}
    counts = flop_counts(args.model, cfg, args.batch_size)
    report["flops"] = {fw: {**c, "forward_per_image": c["forward"] // args.batch_size} for fw, c in counts.items()}
    if with_torch:
        report["check_float64"] = check_against_torch(args, cfg)
    rates_before = matmul_rate(args.device, dtype, args.matmul_size)

    runners = make_runners(args, cfg, dtype, args.batch_size, with_torch)
    if with_torch:
        wb_loss, pt_loss = float(runners[0].step()[0]), float(runners[1].step()[0])
        report["check_timing_dtype"] = {"loss_whitebox": wb_loss, "loss_pytorch": pt_loss,
                                        "loss_rel_diff": abs(wb_loss - pt_loss) / abs(pt_loss)}
    times = time_interleaved(runners, ("forward", "step"), args.warmup, args.repeats)
    rates = {k: max(v, rates_before[k]) for k, v in matmul_rate(args.device, dtype, args.matmul_size).items()}
    machine_rate = max(rates.values())
    report["matmul_gflop_per_s"] = {**rates, "size": args.matmul_size, "best": machine_rate}
    results = {}
    for name, phases in times.items():
        for phase, ts in phases.items():
            results.setdefault(name, {})[phase] = summarise(ts, counts[name][phase], args.batch_size, machine_rate)
            results[name][phase]["times_s"] = ts
    del runners
    if not args.no_memory:
        for name in results:
            results[name]["step"]["peak_memory"] = measure_memory(args, cfg, name)
    report["results"] = results
    if with_torch:
        report["ratio_whitebox_over_pytorch"] = {
            phase: results["whitebox"][phase]["median_s"] / results["pytorch"][phase]["median_s"]
            for phase in ("forward", "step")}
        if not args.no_memory:
            report["ratio_whitebox_over_pytorch"]["step_peak_memory"] = (
                results["whitebox"]["step"]["peak_memory"]["peak_bytes"]
                / results["pytorch"]["step"]["peak_memory"]["peak_bytes"])
    return report


def print_report(r: dict) -> None:
    c = r["config"]
    env = r["environment"]
    print(f"{r['model']}: image {c['image_size']} patch {c['patch_size']} dim {c['dim']} depth {c['depth']} "
          f"heads {c['heads']} dim_head {c['dim_head']} classes {c['num_classes']}"
          + (f" C {c['overcomplete']}" if "overcomplete" in c else "")
          + f" | {r['num_params']:,} parameters")
    print(f"batch {r['batch_size']}, {r['dtype']}, {r['device']}, threads {env['threads']}, "
          f"{r['warmup']} warmup + {r['repeats']} repeats (median [min, max]); {env['processor']}")
    rates = r["matmul_gflop_per_s"]
    print(f"{rates['size']}² matmul: " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in rates.items()
                                                  if k not in ("size", "best")))
    for fw, f in r["flops"].items():
        print(f"FLOPs ({fw} code): {f['forward_per_image'] / 1e6:.1f} MFLOP/image forward, "
              f"{f['step'] / 1e9:.2f} GFLOP per step")
    if "check_float64" in r:
        ch = r["check_float64"]
        print(f"float64 check vs PyTorch (batch {CHECK_BATCH}): logits {ch['logits_max_abs_diff']:.1e}, "
              f"loss {ch['loss_abs_diff']:.1e}, gradients (max rel, {ch['parameters_compared']} tensors) "
              f"{ch['grad_max_rel_err']:.1e}; {r['dtype']} loss rel diff "
              f"{r['check_timing_dtype']['loss_rel_diff']:.1e}")
    header = f"{'framework':10s} {'phase':8s} {'median ms':>10s} {'[min, max]':>17s} {'img/s':>8s} " \
             f"{'GFLOP':>7s} {'GFLOP/s':>8s} {'of mm':>6s} {'peak MB':>8s}"
    print(header)
    print("-" * len(header))
    for fw, phases in r["results"].items():
        for phase, s in phases.items():
            mem = s.get("peak_memory", {}).get("peak_bytes")
            spread = f"[{1e3 * s['min_s']:.1f}, {1e3 * s['max_s']:.1f}]"
            peak = "" if mem is None else f"{mem / 2**20:8.1f}"
            print(f"{fw:10s} {phase:8s} {1e3 * s['median_s']:10.1f} {spread:>17s} {s['images_per_s']:8.1f} "
                  f"{s['gflop']:7.2f} {s['gflop_per_s']:8.1f} {100 * s['fraction_of_matmul_rate']:5.1f}% {peak}")
    if "ratio_whitebox_over_pytorch" in r:
        print("whitebox / PyTorch (< 1: whitebox better): "
              + ", ".join(f"{k} {v:.2f}" for k, v in r["ratio_whitebox_over_pytorch"].items()))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Without --preset the model has docs/reference.md §8's size: image 32, patch 4, "
                                       "dim 192, depth 12, heads 3, dim_head 64, 10 classes.")
    p.add_argument("--model", choices=sorted(MODULES), default="crate")
    p.add_argument("--preset", help="a preset of the model module (tiny, small, base, …) or 'reference'")
    for flag in ("image_size", "patch_size", "channels", "dim", "depth", "heads", "dim_head", "classes"):
        p.add_argument("--" + flag.replace("_", "-"), type=int, help="overrides the preset's value")
    p.add_argument("--overcomplete", type=int, help="crate-alpha's dictionary ratio C")
    p.add_argument("--pool", choices=("cls", "mean"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--threads", type=int, help="BLAS / OpenMP / PyTorch threads (set before NumPy loads)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--no-torch", action="store_true", help="whitebox rows only, even when PyTorch is installed")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--json", metavar="PATH", help="also write the full results (every time) as JSON")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if threadpool_limits is not None and args.threads is not None:
        threadpool_limits(args.threads)
    if args.memory_child:
        if torch is not None and args.threads is not None:
            torch.set_num_threads(args.threads)
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return
    try:
        get_xp(args.device)
    except DeviceUnavailableError as err:
        raise SystemExit(str(err)) from None
    report = run(args)
    print_report(report)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
