"""CRATE-alpha's ablation as one command: CRATE → +O → +O+D → +O+D+R, same budget, same seeds.

The paper (CRATE-alpha, Fig. 1 and Fig. 7) changes CRATE's sparse-coding block in three steps and
reports that each one improves ImageNet accuracy (and lowers the training loss):

======================  =====================================================================
``CRATE``               ISTA: one step from ``A₀ = Z``, square dictionary, codes as the output
``+O``                  overcomplete dictionary ``D ∈ R^{d×Cd}`` (C = 4), two steps from 0, ``D A₂``
``+O+D``                decoupled decoder: ``D̂ A₂`` with a learned ``D̂``
``+O+D+R``              plus the residual ``Z^{ℓ+1} = Z^{ℓ+½} + D̂ A₂`` (CRATE-alpha)
======================  =====================================================================

These are :func:`whitebox.models.crate_alpha.ablation_configs` of one base config, so everything
else (conv patch embedding, MSSA, head) is shared. :func:`run_ablation` trains every variant for
every seed with the shared loop (:func:`whitebox.train.fit`, the loop of ``whitebox train``; seed
``s`` fixes the initialisation, the batch order and the augmentation, and is the same for all four
variants) and writes:

* ``runs/<variant>-seed<s>/``: each run's folder (``config.json``, ``checkpoint.npz``,
  ``metrics.jsonl``, ``curves.png``), loadable by ``whitebox eval`` / ``measure`` / ``attention``;
* ``ablation.json`` and ``ablation.md``: test accuracy (mean ± std over seeds), parameters, time;
* ``loss_curves.png``: the training loss of every step (mean over seeds, band: min to max) and
  the test accuracies.

Budgets (:data:`BUDGETS`): ``small`` is a CPU budget (a few thousand images, two epochs, a small
model: about 10 minutes for 4 variants × 3 seeds on 2 CPU cores), ``large`` a GPU budget (the full
training split, a larger model, 30 epochs). ``epochs``, the image limits and model fields can be
overridden.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backend import get_xp, resolve_device
from ..data import dataset_info
from ..models import crate_alpha
from ..train import RunConfig, RunPaths, TrainState, fit
from ..train.build import init_params, load_splits, make_optimizer, make_schedule, make_task
from ..train.files import atomic_write, atomic_write_text
from ..train.metrics import read_metrics

VARIANTS = ("crate", "+O", "+O+D", "+O+D+R")  # the keys of crate_alpha.ablation_configs, in the paper's order
NAMES = {"crate": "CRATE", "+O": "+O", "+O+D": "+O+D", "+O+D+R": "+O+D+R (CRATE-alpha)"}
SLUGS = {"crate": "crate", "+O": "O", "+O+D": "O-D", "+O+D+R": "O-D-R"}


@dataclass(frozen=True)
class Budget:
    """What every run of the ablation gets: a base model (fields of ``crate_alpha.Config``) and a recipe."""

    description: str
    model: dict
    epochs: int
    batch_size: int
    lr: float
    warmup_epochs: float
    train_limit: int | None  # the first N training images (None: all)
    test_limit: int | None
    augment: bool
    weight_decay: float = 0.05
    optimizer: str = "adamw"
    label_smoothing: float = 0.1
    min_lr: float = 0.0
    clip_grad: float | None = None
    default_device: str = "cpu"


BUDGETS = {
    "small": Budget(
        "CPU: 4,000 training images, 2 epochs, dim 64, depth 4, patch 7 (about 10 min for 4 x 3 runs on 2 cores)",
        model=dict(patch_size=7, dim=64, depth=4, heads=4, dim_head=16, overcomplete=4),
        epochs=2, batch_size=64, lr=2e-3, warmup_epochs=0.25, train_limit=4000, test_limit=2000, augment=False,
    ),
    "large": Budget(
        "GPU: the whole training split, 30 epochs, dim 128, depth 6, patch 4",
        model=dict(patch_size=4, dim=128, depth=6, heads=4, dim_head=32, overcomplete=4),
        epochs=30, batch_size=128, lr=1e-3, warmup_epochs=2, train_limit=None, test_limit=None, augment=True,
        default_device="gpu",
    ),
}


def variant_configs(dataset: str, budget: Budget, model_overrides: dict | None = None) -> dict:
    """``{variant: crate_alpha.Config}``: the ablation of the budget's base model, shaped for ``dataset``."""
    info = dataset_info(dataset)
    fields = {**budget.model, **(model_overrides or {}),
              "image_size": info.image_size, "channels": info.channels, "num_classes": info.num_classes}
    return crate_alpha.ablation_configs(crate_alpha.Config(**fields))


def run_config(cfg, seed: int, dataset: str, budget_name: str, budget: Budget, *,
               epochs: int | None = None, train_limit: int | None = None, test_limit: int | None = None) -> RunConfig:
    """The :class:`whitebox.train.RunConfig` of one run (model ``crate-alpha``, preset ``ablation-<budget>``)."""
    return RunConfig(
        model="crate-alpha", preset=f"ablation-{budget_name}", dataset=dataset, model_config=dataclasses.asdict(cfg),
        optimizer=budget.optimizer, lr=budget.lr, weight_decay=budget.weight_decay,
        epochs=epochs or budget.epochs, batch_size=budget.batch_size, warmup_epochs=budget.warmup_epochs,
        min_lr=budget.min_lr, label_smoothing=budget.label_smoothing, clip_grad=budget.clip_grad,
        augment=budget.augment, seed=seed,
        train_limit=train_limit or budget.train_limit, test_limit=test_limit or budget.test_limit,
    )


class LossRecorder:
    """A task that records the loss of every training step and otherwise defers to ``task``.

    The loop logs epoch averages only; the paper's Fig. 7 shows the loss against the step.
    """

    def __init__(self, task):
        self.task = task
        self.steps_per_epoch = task.steps_per_epoch
        self.losses: list[float] = []

    def batches(self, epoch: int, start: int = 0):
        return self.task.batches(epoch, start)

    def loss_and_grads(self, params: dict, batch, step_rng):
        loss, grads, metrics = self.task.loss_and_grads(params, batch, step_rng)
        self.losses.append(loss)
        return loss, grads, metrics

    def evaluate(self, params: dict) -> dict:
        return self.task.evaluate(params)


@dataclass
class AblationResult:
    dataset: str
    budget: str
    seeds: list
    runs: list = field(default_factory=list)  # one dict per (variant, seed)

    def summary(self) -> list[dict]:
        """One row per variant: parameters, test accuracy and final training loss (mean, std over seeds), time."""
        rows = []
        for variant in VARIANTS:
            runs = [r for r in self.runs if r["variant"] == variant]
            if not runs:
                continue
            acc = np.array([r["test_accuracy"] for r in runs])
            loss = np.array([r["final_train_loss"] for r in runs])
            rows.append({"variant": variant, "name": NAMES[variant], "params": runs[0]["params"], "seeds": len(runs),
                         "accuracy_mean": float(acc.mean()), "accuracy_std": _std(acc), "accuracies": acc.tolist(),
                         "final_train_loss_mean": float(loss.mean()), "final_train_loss_std": _std(loss),
                         "time_mean_s": float(np.mean([r["time_s"] for r in runs]))})
        return rows

    def paper_ordering(self) -> dict:
        """Whether each modification raised the mean accuracy, as the paper reports (CRATE < +O < +O+D < +O+D+R)."""
        rows = self.summary()
        steps = {f"{a['variant']} < {b['variant']}": b["accuracy_mean"] > a["accuracy_mean"]
                 for a, b in zip(rows, rows[1:])}
        return {"steps": steps, "holds": all(steps.values())}

    def to_dict(self) -> dict:
        return {"dataset": self.dataset, "budget": self.budget, "seeds": self.seeds, "summary": self.summary(),
                "paper_ordering": self.paper_ordering(), "runs": self.runs}

    def to_markdown(self) -> str:
        lines = [f"CRATE-alpha ablation on {self.dataset}, budget {self.budget!r}, seeds {self.seeds} "
                 f"(accuracy: mean ± sample std over seeds)\n",
                 "| variant | parameters | test accuracy | per seed | final train loss | time per run |",
                 "|---|---:|---:|---|---:|---:|"]
        for r in self.summary():
            seeds = ", ".join(f"{a:.2%}" for a in r["accuracies"])
            lines.append(f"| {r['name']} | {r['params']:,} | {r['accuracy_mean']:.2%} ± {r['accuracy_std']:.2%} | "
                         f"{seeds} | {r['final_train_loss_mean']:.3f} ± {r['final_train_loss_std']:.3f} | "
                         f"{r['time_mean_s']:.0f} s |")
        order = self.paper_ordering()
        marks = ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in order["steps"].items())
        lines.append(f"\nPaper's ordering (each modification improves accuracy) holds: "
                     f"{'yes' if order['holds'] else 'no'} ({marks})\n")
        return "\n".join(lines)


def _std(values: np.ndarray) -> float:
    """The sample standard deviation (ddof 1); 0 for a single value."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def run_ablation(dataset: str = "fashion-mnist", *, out, seeds: int = 3, budget: str = "small",
                 epochs: int | None = None, device: str | None = None, train_limit: int | None = None,
                 test_limit: int | None = None, model_overrides: dict | None = None, data_dir=None,
                 echo=print) -> AblationResult:
    """Train the four variants for seeds ``0 … seeds−1`` with the shared loop; write the table and plot."""
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {tuple(BUDGETS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    recipe = BUDGETS[budget]
    device = resolve_device(device or recipe.default_device)
    xp = get_xp(device)
    out = Path(out)
    configs = variant_configs(dataset, recipe, model_overrides)
    plan = [(v, run_config(configs[v], s, dataset, budget, recipe, epochs=epochs, train_limit=train_limit,
                           test_limit=test_limit)) for v in VARIANTS for s in range(seeds)]
    train, test = load_splits(plan[0][1], data_dir)  # the same images for every run
    result = AblationResult(dataset, budget, list(range(seeds)))
    for variant, config in plan:
        result.runs.append(_train_one(config, variant, train, test, device, xp, out))
        r = result.runs[-1]
        echo(f"{NAMES[variant]:<22} seed {config.seed}: test accuracy {r['test_accuracy']:.2%}, "
             f"final train loss {r['final_train_loss']:.3f}, {r['time_s']:.0f} s")
    write_results(result, out)
    return result


def _train_one(config: RunConfig, variant: str, train, test, device: str, xp, out: Path) -> dict:
    paths = RunPaths(out / "runs" / f"{SLUGS[variant]}-seed{config.seed}")
    for old in (paths.checkpoint, paths.metrics, paths.curves, paths.config):
        old.unlink(missing_ok=True)
    atomic_write_text(paths.config, config.to_json())
    task = LossRecorder(make_task(config, train, test, xp))
    optimizer = make_optimizer(config)
    params = init_params(config, device)
    state = TrainState(params, optimizer.init(params))
    meta = {"config": config.to_dict(), "device": device, "title": f"{NAMES[variant]} seed {config.seed}"}
    began = time.perf_counter()
    fit(task, state, optimizer, make_schedule(config, task.steps_per_epoch), epochs=config.epochs, seed=config.seed,
        paths=paths, meta=meta, clip_grad=config.clip_grad, quiet=True)
    wall = time.perf_counter() - began
    evaluation = read_metrics(paths.metrics)[-1]  # the loop's evaluation after the last epoch
    tail = task.losses[-max(1, task.steps_per_epoch // 4):]  # the last quarter epoch
    return {"variant": variant, "seed": config.seed, "params": crate_alpha.num_params(config.model_cfg()),
            "test_accuracy": evaluation["test_accuracy"], "test_loss": evaluation["test_loss"],
            "final_train_loss": float(np.mean(tail)), "losses": task.losses, "steps": state.step,
            "time_s": wall, "folder": str(paths.out)}


def write_results(result: AblationResult, out: Path) -> None:
    """``ablation.json``, ``ablation.md`` and ``loss_curves.png`` in ``out``."""
    atomic_write_text(out / "ablation.json", json.dumps(result.to_dict(), indent=1) + "\n")
    atomic_write_text(out / "ablation.md", result.to_markdown())
    plot_ablation(result, out / "loss_curves.png")


COLORS = {"crate": "tab:gray", "+O": "tab:orange", "+O+D": "tab:green", "+O+D+R": "tab:blue"}


def smooth(values, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start)."""
    values = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(values, 0, 0.0))
    i = np.arange(1, len(values) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def plot_ablation(result: AblationResult, path) -> Path:
    """Left: training loss per step (smoothed; mean over seeds, band min to max). Right: test accuracy."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2, width_ratios=(2, 1))
    summary = result.summary()
    for j, row in enumerate(summary):
        runs = [r for r in result.runs if r["variant"] == row["variant"]]
        steps = min(len(r["losses"]) for r in runs)
        window = max(1, steps // 20)
        curves = np.stack([smooth(r["losses"][:steps], window) for r in runs])  # (seeds, steps)
        x = np.arange(1, steps + 1)
        color = COLORS[row["variant"]]
        left.plot(x, curves.mean(axis=0), color=color, label=row["name"])
        left.fill_between(x, curves.min(axis=0), curves.max(axis=0), color=color, alpha=0.2, lw=0)
        right.errorbar([j], [row["accuracy_mean"]], yerr=[row["accuracy_std"]], fmt="o", color=color, capsize=4)
        right.plot([j] * len(row["accuracies"]), row["accuracies"], ".", color=color, alpha=0.5)
    left.set_xlabel("training step")
    left.set_ylabel("training loss (label-smoothed CE, smoothed)")
    left.grid(alpha=0.3)
    left.legend(fontsize=8)
    right.set_xticks(range(len(summary)), [r["variant"] for r in summary], fontsize=8)
    right.set_ylabel("test accuracy")
    right.set_title("mean ± std; dots: seeds", fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(f"CRATE-alpha ablation on {result.dataset} ({result.budget} budget, {len(result.seeds)} seeds)",
                 fontsize=10)
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=90))


def budget_table() -> str:
    """The budgets, one line each, for ``whitebox experiment --help``."""
    lines = ["budgets:"]
    for name, b in BUDGETS.items():
        model = " ".join(f"{k} {v}" for k, v in b.model.items())
        lines.append(f"  {name:<6} {b.description}\n  {'':<6} {model}; {b.epochs} epochs of batch {b.batch_size}; "
                     f"{b.optimizer} lr {b.lr:g}; train images {b.train_limit or 'all'}, test images "
                     f"{b.test_limit or 'all'}; default device {b.default_device}")
    return "\n".join(lines)


EXPERIMENT_DESCRIPTION = """\
Run an experiment that trains several models with the training loop of 'whitebox train'.

  ablation   CRATE-alpha's ablation (its Fig. 1 / 7): vanilla CRATE, +overcomplete dictionary (O),
             +decoupled decoder (D), +residual (R), each trained with the same budget and seeds;
             writes ablation.md / ablation.json (test accuracy mean +- std over seeds, parameters,
             time), loss_curves.png, and every run's folder under DIR/runs.

examples:
  whitebox experiment ablation --dataset fashion-mnist --out runs/ablation              # ~10 min, CPU
  whitebox experiment ablation --dataset fashion-mnist --budget large --device gpu --out runs/ablation-gpu
"""


def add_arguments(p) -> None:
    from ..cli import key_value, positive_int
    from ..data import DATASETS

    p.add_argument("name", choices=("ablation",), help="the experiment")
    p.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="default fashion-mnist")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--seeds", type=positive_int, default=3, metavar="N",
                   help="seeds 0 .. N-1 for every variant (default 3)")
    p.add_argument("--budget", choices=tuple(BUDGETS), default="small",
                   help="small (CPU, default) or large (GPU); see below")
    p.add_argument("--epochs", type=positive_int, metavar="N", help="replace the budget's epochs")
    p.add_argument("--train-limit", type=positive_int, metavar="N",
                   help="replace the budget's number of training images")
    p.add_argument("--test-limit", type=positive_int, metavar="N", help="replace the budget's number of test images")
    p.add_argument("--set", dest="model_set", type=key_value, action="append", metavar="KEY=VALUE",
                   help="change a field of the base model, e.g. --set dim=32 (repeatable)")
    p.add_argument("--device", choices=("cpu", "gpu"), help="default: the budget's")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")
    p.add_argument("--quiet", action="store_true", help="no line per run")
    p.epilog = budget_table()


def command(args) -> int:
    """``whitebox experiment ablation``."""
    from ..cli import UsageError

    echo = (lambda _: None) if args.quiet else print
    overrides = dict(args.model_set or [])
    try:
        variant_configs(args.dataset, BUDGETS[args.budget], overrides)
    except (TypeError, ValueError) as e:
        raise UsageError(f"invalid model settings: {e}") from None
    result = run_ablation(args.dataset, out=args.out, seeds=args.seeds, budget=args.budget, epochs=args.epochs,
                          device=args.device, train_limit=args.train_limit, test_limit=args.test_limit,
                          model_overrides=overrides, data_dir=args.data_dir, echo=echo)
    print(result.to_markdown())
    out = Path(args.out)
    for name in ("ablation.md", "ablation.json", "loss_curves.png"):
        print(f"  {out / name}")
    return 0
