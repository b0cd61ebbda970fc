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
every seed with the shared run path (:func:`whitebox.train.start_run`, that of ``whitebox train``; seed
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

from ..backend import resolve_device
from ..data import dataset_info
from ..distributed import SINGLE, Communicator
from ..io import atomic_write_text
from ..models import crate_alpha
from ..train import RunConfig, start_run
from ..train.config import DEFAULT_BETAS
from ..train.metrics import host_values

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
        task="classification", model="crate-alpha", preset=f"ablation-{budget_name}", dataset=dataset,
        model_config=dataclasses.asdict(cfg), optimizer=budget.optimizer, lr=budget.lr,
        betas=DEFAULT_BETAS.get(budget.optimizer), weight_decay=budget.weight_decay,
        epochs=epochs or budget.epochs, batch_size=budget.batch_size, warmup_epochs=budget.warmup_epochs,
        min_lr=budget.min_lr, label_smoothing=budget.label_smoothing, clip_grad=budget.clip_grad,
        augment=budget.augment, seed=seed,
        train_limit=train_limit or budget.train_limit, test_limit=test_limit or budget.test_limit,
    )


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
                 echo=print, curves=None, comm: Communicator = SINGLE) -> AblationResult | None:
    """Train the four variants for seeds ``0 … seeds−1`` with the shared run path; write the tables
    (``curves``: each run's learning-curve drawing, as for :func:`whitebox.train.start_run`).

    With ``comm`` (:mod:`whitebox.distributed`) of ``N`` ranks the runs are independent
    single-process runs shared out over the ranks (run ``i`` of the plan on rank ``i mod N``);
    rank 0 gathers them, writes the tables and returns the result, the other ranks return None.
    """
    if budget not in BUDGETS:
        raise ValueError(f"unknown budget {budget!r}; choose one of {tuple(BUDGETS)}")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    recipe = BUDGETS[budget]
    device = resolve_device(device or recipe.default_device)
    out = Path(out)
    configs = variant_configs(dataset, recipe, model_overrides)
    plan = [(v, run_config(configs[v], s, dataset, budget, recipe, epochs=epochs, train_limit=train_limit,
                           test_limit=test_limit)) for v in VARIANTS for s in range(seeds)]
    comm.agree(json.dumps([[v, c.to_dict()] for v, c in plan] + [str(out.resolve()), device]),
               "the ablation's runs")
    runs, rank = [], f"rank {comm.rank}: " if comm.size > 1 else ""
    with comm.together("training its share of the ablation's runs"):
        for variant, config in plan[comm.rank::comm.size]:
            runs.append(_train_one(config, variant, device, data_dir, out, curves))
            r = runs[-1]
            echo(f"{rank}{NAMES[variant]:<22} seed {config.seed}: test accuracy {r['test_accuracy']:.2%}, "
                 f"final train loss {r['final_train_loss']:.3f}, {r['time_s']:.0f} s")
    shares = comm.gather(runs)
    if not comm.is_root:
        return None
    done = {(r["variant"], r["seed"]): r for share in shares for r in share}
    result = AblationResult(dataset, budget, list(range(seeds)), [done[v, c.seed] for v, c in plan])
    write_results(result, out)
    return result


def _train_one(config: RunConfig, variant: str, device: str, data_dir, out: Path, curves) -> dict:
    losses = []  # the loop logs epoch averages only; the paper's Fig. 7 shows the loss against the step
    began = time.perf_counter()
    result = start_run(config, out / "runs" / f"{SLUGS[variant]}-seed{config.seed}", device=device,
                       data_dir=data_dir, overwrite=True, quiet=True, curves=curves,
                       on_step=lambda step, loss: losses.append(loss))
    wall = time.perf_counter() - began
    losses = host_values(losses)  # 0-d device arrays of the steps, to the host in one transfer
    steps_per_epoch = result.total_steps // config.epochs
    tail = losses[-max(1, steps_per_epoch // 4):]  # the last quarter epoch
    return {"variant": variant, "seed": config.seed, "params": crate_alpha.num_params(config.model_cfg()),
            "test_accuracy": result.record["test_accuracy"], "test_loss": result.record["test_loss"],
            "final_train_loss": float(np.mean(tail)), "losses": losses, "steps": result.step,
            "time_s": wall, "folder": str(result.paths.out)}


def write_results(result: AblationResult, out: Path) -> None:
    """``ablation.json`` and ``ablation.md`` in ``out`` (``loss_curves.png``: :func:`whitebox.figures.plot_ablation`)."""
    atomic_write_text(out / "ablation.json", json.dumps(result.to_dict(), indent=1) + "\n")
    atomic_write_text(out / "ablation.md", result.to_markdown())


def smooth(values, window: int) -> np.ndarray:
    """Moving average over ``window`` steps (shorter at the start)."""
    values = np.asarray(values, dtype=np.float64)
    c = np.cumsum(np.insert(values, 0, 0.0))
    i = np.arange(1, len(values) + 1)
    lo = np.maximum(i - window, 0)
    return (c[i] - c[lo]) / (i - lo)


def budget_table() -> str:
    """The budgets, one line each, for ``whitebox experiment --help``."""
    lines = ["budgets:"]
    for name, b in BUDGETS.items():
        model = " ".join(f"{k} {v}" for k, v in b.model.items())
        lines.append(f"  {name:<6} {b.description}\n  {'':<6} {model}; {b.epochs} epochs of batch {b.batch_size}; "
                     f"{b.optimizer} lr {b.lr:g}; train images {b.train_limit or 'all'}, test images "
                     f"{b.test_limit or 'all'}; default device {b.default_device}")
    return "\n".join(lines)


