"""``whitebox measure``, ``attention`` and ``experiment``: seeing inside trained models
(:mod:`whitebox.analysis`), drawn by :mod:`whitebox.figures`.

    whitebox measure --checkpoint runs/demo --out runs/demo/measure
    whitebox attention --checkpoint runs/demo --images 6 --out grid.png
    whitebox experiment ablation --dataset fashion-mnist --out runs/ablation
    whitebox knn --checkpoint runs/dino
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import figures
from ..analysis.ablation import BUDGETS, budget_table, run_ablation, variant_configs
from ..analysis.attention_maps import UPSAMPLE_MODES, attention_checkpoint
from ..analysis.knn import knn_checkpoint
from ..analysis.layerwise import DEFAULT_EPS, describe
from ..analysis.measure import measure_checkpoint
from ..analysis.report import report_checkpoint
from ..data import DATASETS
from ..distributed import communicator
from .common import (CommandError, UsageError, add_device_argument, command, key_value, nonnegative_int,
                     positive_float, positive_int)
from .train import add_distributed_argument, on_every_rank

MEASURE_DESCRIPTION = """\
Measure a trained model layer by layer on real test images, and the same model at its
initialisation (the run's own seed): the compression term Rc(Z | U^l) against each layer's own
subspaces (read off its qkv weight), the coding rate R(Z), the sparse rate reduction objective
Rc - R + lambda ||Z||_1, and the sparsity of the ISTA/ODL codes, at every stage
Z^0, Z^0.5, Z^1, ..., Z^L. Two conventions (see whitebox/analysis/layerwise.py):

  whitebox   the LayerNorm'ed tokens the layer's MSSA sees, eps 0.5 (--eps)
  published  per-head qkv features of LN(Z), each token scaled to unit norm, eps 0.1
             (the published CodingRate(eps=0.01) passes eps^2)

A token model (a run of --task lm, mlm or genre) is measured on --images windows of its own held-out
text (the validation windows, unmasked, or the held-out passages), its tokens in place of patches.

With --out, writes measure.json, measure.md, layerwise.png, layerwise_published.png, and the checks
of the approximations on the trained model (approximations.png and tables in measure.md).

example:
  whitebox measure --checkpoint runs/demo --out runs/demo/measure
"""


def add_measure_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a run folder (its checkpoint.npz) or a checkpoint file")
    p.add_argument("--dataset", choices=DATASETS, help="test images to measure on (default: the run's dataset; not for a token model)")
    p.add_argument("--out", metavar="DIR", help="write the tables and figures here")
    p.add_argument("--images", type=positive_int, default=256, metavar="N", help="test images (default 256)")
    p.add_argument("--eps", type=positive_float, metavar="EPS",
                   help=f"epsilon of the whitebox convention (default {DEFAULT_EPS})")
    p.add_argument("--lambd", type=positive_float, metavar="L", help="lambda of the objective (default: the model's)")
    p.add_argument("--sweep-layer", type=int, metavar="L",
                   help="layer of the approximation sweep (default: the middle one)")
    add_device_argument(p, "$WHITEBOX_DEVICE or cpu")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")


@command("measure", "layer-by-layer Rc, R, sparse rate reduction and sparsity of a checkpoint, init vs trained",
         MEASURE_DESCRIPTION, add_measure_arguments)
def measure(args: argparse.Namespace) -> int:
    try:
        m = measure_checkpoint(args.checkpoint, dataset=args.dataset, n_images=args.images, eps=args.eps,
                               lambd=args.lambd, device=args.device, data_dir=args.data_dir,
                               sweep_layer=args.sweep_layer)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print("\n".join(w.summary() for w in m.within.values()))
    print(describe(m.results))
    if args.out is None:
        for convention, pair in m.results.items():
            for one in pair.values():
                print(f"\n{convention}: {one.to_markdown()}")
        return 0
    for path in m.write_tables(args.out) + figures.plot_measurement(m, args.out):
        print(f"  {path}")
    return 0


REPORT_DESCRIPTION = """\
The white-box report of a trained classifier, in seconds: for every layer, Rc of the tokens just
before and just after its compression step, against that layer's own subspaces (tokens LayerNorm'ed
without affine, eps 0.5, raw and orthonormalised subspaces), at initialisation and trained; the
sparsity of each layer's codes; and the cls token's attention on a few test images. Prints a short
summary and writes report.md, report.json, within_layer.png and attention.png to --out (default
RUN/report). 'make demo' ends with it; 'whitebox measure' is the full measurement.

example:
  whitebox report runs/demo
"""


def add_report_arguments(p) -> None:
    p.add_argument("run", metavar="RUN", help="a run folder (its checkpoint.npz) or a checkpoint file")
    p.add_argument("--out", metavar="DIR", help="output folder (default RUN/report)")
    p.add_argument("--images", type=positive_int, default=256, metavar="N",
                   help="test images to measure on (default 256)")
    add_device_argument(p, "$WHITEBOX_DEVICE or cpu")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")


@command("report", "the white-box report of a classifier: within-layer compression, sparsity, attention",
         REPORT_DESCRIPTION, add_report_arguments)
def report(args: argparse.Namespace) -> int:
    try:
        r = report_checkpoint(args.run, n_images=args.images, device=args.device, data_dir=args.data_dir)
    except ValueError as e:
        raise CommandError(str(e)) from None
    out = Path(args.out) if args.out else r.run.path.parent / "report"
    print(r.summary())
    paths = r.write_tables(out) + [
        figures.plot_within_layer(r.within["init"], r.within["trained"], out / "within_layer.png", title=r.run.config.model),
        figures.plot_attention_picture(r.attention, out / "attention.png")]
    for path in paths:
        print(f"  {path}")
    return 0


ATTENTION_DESCRIPTION = """\
Draw where the cls token looks, head by head, in one layer of a trained model, for a few test
images, next to the PCA of the patch tokens' qkv features shown as RGB (the "emergence of
segmentation" pictures of CRATE, at small scale). Rows: images; columns: the image, one
overlay per head (cls-token attention row reshaped to the patch grid and upsampled), PCA.

example:
  whitebox attention --checkpoint runs/demo --images 6 --layer -1 --out grid.png
"""


def add_attention_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a run folder (its checkpoint.npz) or a checkpoint file")
    p.add_argument("--out", required=True, metavar="PNG", help="where to write the grid")
    p.add_argument("--images", type=positive_int, default=4, metavar="N", help="test images, one per row (default 4)")
    p.add_argument("--first", type=nonnegative_int, default=0, metavar="I",
                   help="index of the first test image (default 0)")
    p.add_argument("--layer", type=int, default=-1, metavar="L",
                   help="layer whose attention is shown, from 0; negative counts from the end (default -1, the last)")
    p.add_argument("--pca-layer", type=int, default=-1, metavar="L",
                   help="layer of the PCA features (default -1, the last)")
    p.add_argument("--no-pca", dest="pca", action="store_false", help="leave out the PCA column")
    p.add_argument("--upsample", choices=UPSAMPLE_MODES, default="nearest",
                   help="patch grid to pixels (default nearest)")
    p.add_argument("--dataset", choices=DATASETS, help="test images to use (default: the run's dataset)")
    add_device_argument(p, "$WHITEBOX_DEVICE or cpu")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")


@command("attention", "PNG grid of per-head cls-token attention and feature PCA for a few test images",
         ATTENTION_DESCRIPTION, add_attention_arguments)
def attention(args: argparse.Namespace) -> int:
    try:
        picture = attention_checkpoint(args.checkpoint, n_images=args.images, layer=args.layer,
                                       pca_layer=args.pca_layer, dataset=args.dataset, pca=args.pca,
                                       device=args.device, data_dir=args.data_dir, first=args.first)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print(f"share of the cls token's patch attention on object patches (patch mean intensity > 0.1), per head: "
          f"{', '.join(f'{v:.1%}' for v in picture.object_share)}; object patches are "
          f"{picture.object_fraction:.1%} of all patches")
    print(f"wrote {figures.plot_attention_picture(picture, args.out, mode=args.upsample)}")
    return 0


EXPERIMENT_DESCRIPTION = """\
Run an experiment that trains several models with the training loop of 'whitebox train'.

  ablation   CRATE-alpha's ablation (its Fig. 1 / 7): vanilla CRATE, +overcomplete dictionary (O),
             +decoupled decoder (D), +residual (R), each trained with the same budget and seeds;
             writes ablation.md / ablation.json (test accuracy mean +- std over seeds, parameters,
             time), loss_curves.png, and every run's folder under DIR/runs.

examples:
  whitebox experiment ablation --dataset fashion-mnist --out runs/ablation              # ~10 min, CPU
  whitebox experiment ablation --dataset fashion-mnist --budget large --device gpu --out runs/ablation-gpu
  mpiexec -n 4 python -m whitebox experiment ablation --distributed mpi --out runs/ablation   # runs shared by 4 ranks
"""


def add_experiment_arguments(p) -> None:
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
    add_device_argument(p, "the budget's")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")
    p.add_argument("--quiet", action="store_true", help="no line per run")
    add_distributed_argument(p)
    p.epilog = budget_table()


@command("experiment", "train and compare several models (ablation: CRATE, +O, +O+D, +O+D+R)",
         EXPERIMENT_DESCRIPTION, add_experiment_arguments)
def experiment(args: argparse.Namespace) -> int:
    comm = communicator(args.distributed)
    return on_every_rank(comm, lambda: _experiment(args, comm))


def _experiment(args: argparse.Namespace, comm) -> int:
    echo = (lambda _: None) if args.quiet else print
    overrides = dict(args.model_set or [])
    with comm.together("reading the arguments"):
        try:
            variant_configs(args.dataset, BUDGETS[args.budget], overrides)
        except (TypeError, ValueError) as e:
            raise UsageError(f"invalid model settings: {e}") from None
    result = run_ablation(args.dataset, out=args.out, seeds=args.seeds, budget=args.budget, epochs=args.epochs,
                          device=args.device, train_limit=args.train_limit, test_limit=args.test_limit,
                          model_overrides=overrides, data_dir=args.data_dir, echo=echo, curves=figures.plot_curves,
                          comm=comm)
    if result is None:  # a rank other than 0 of a distributed experiment: rank 0 reports
        return 0
    figures.plot_ablation(result, Path(args.out) / "loss_curves.png")
    print(result.to_markdown())
    out = Path(args.out)
    for name in ("ablation.md", "ablation.json", "loss_curves.png"):
        print(f"  {out / name}")
    return 0


KNN_DESCRIPTION = """\
Weighted k-NN accuracy of a run's frozen features (DINO's protocol): the features of the first
--train-limit training images are the bank; each test image's k nearest bank entries by cosine
similarity vote for their classes with weight exp(cos / T). Works for any image backbone: a
classifier (crate, crate-alpha, vit), a self-supervised run (dino, simdino), CRATE-MAE (the mean of
its encoder's patch tokens).

examples:
  whitebox knn --checkpoint runs/dino
  whitebox knn --checkpoint runs/demo --k 10 --train-limit 10000 --test-limit 2000
"""


def add_knn_arguments(p) -> None:
    p.add_argument("--checkpoint", required=True, metavar="RUN",
                   help="a run folder (its checkpoint.npz) or a checkpoint file")
    p.add_argument("--k", type=positive_int, default=20, help="neighbours that vote (default 20)")
    p.add_argument("--temperature", type=positive_float, default=0.07, metavar="T",
                   help="votes weigh exp(cos / T) (default 0.07)")
    p.add_argument("--train-limit", type=positive_int, metavar="N", help="bank: the first N training images (default all)")
    p.add_argument("--test-limit", type=positive_int, metavar="N", help="the first N test images (default all)")
    p.add_argument("--dataset", choices=DATASETS, help="images to use (default: the run's dataset)")
    add_device_argument(p, "$WHITEBOX_DEVICE or cpu")
    p.add_argument("--data-dir", metavar="FOLDER", help="look for the dataset files here first")


@command("knn", "weighted k-NN accuracy of a checkpoint's frozen features (any image backbone)",
         KNN_DESCRIPTION, add_knn_arguments)
def knn(args: argparse.Namespace) -> int:
    try:
        r = knn_checkpoint(args.checkpoint, k=args.k, temperature=args.temperature, train_limit=args.train_limit,
                           test_limit=args.test_limit, dataset=args.dataset, device=args.device,
                           data_dir=args.data_dir)
    except ValueError as e:
        raise CommandError(str(e)) from None
    print(f"k-NN accuracy {r.accuracy:.2%} on {r.n_test} {r.dataset} test images (bank {r.n_train} training "
          f"images, k {r.k}, T {r.temperature:g}); {r.model} ({r.task}) at step {r.step}, {r.path}")
    return 0
