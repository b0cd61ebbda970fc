"""``whitebox knn``: weighted k-NN classification with the frozen features of any image backbone.

The protocol of DINO (Caron et al. 2021, §4.1, after Wu et al. 2018): the features of the training
images are the bank, each test image's ``k`` (20) nearest bank entries by cosine similarity vote for
their classes with weight ``exp(cos / T)`` (T = 0.07), the largest total wins
(:func:`whitebox.train.self_distillation.knn_predict`). No parameter is trained, so the figure
measures the features themselves.

Features, per kind of run:

* classifiers (crate, crate-alpha, vit ...) and self-supervised runs (dino, simdino): the pooled,
  head-normalised token :func:`whitebox.models.common.represent`, images normalised as in training;
* CRATE-MAE: the mean of the encoder's output patch tokens with every patch visible
  (:func:`whitebox.models.crate_mae.features`), pixels in [0, 1] as in training.
"""

from __future__ import annotations

from typing import NamedTuple

from ..backend import array_module, resolve_device, to_device
from ..data import dataset_info, load_dataset
from ..models import crate_mae
from ..train import load_run
from ..train.mae_task import pixels
from ..train.self_distillation import image_features, knn_predict

IMAGE_TASKS = ("classification", "dino", "simdino", "mae")


class KnnResult(NamedTuple):
    accuracy: float  # share of the test images whose predicted class is right
    n_train: int  # bank size
    n_test: int
    k: int
    temperature: float
    dataset: str
    model: str
    task: str
    step: int
    path: object


def _features(run, images, batch_size: int):
    """Frozen features (N, d) of uint8 host images (N, C, H, W), on the run's backend."""
    xp = array_module(*run.params.values())
    dtype = run.params[next(iter(run.params))].dtype
    if run.config.task == "mae":
        out = [crate_mae.features(run.params, pixels(to_device(images[lo:lo + batch_size], xp), dtype), run.cfg)
               for lo in range(0, len(images), batch_size)]
        return xp.concatenate(out, axis=0)
    return image_features(run.params, images, run.cfg, dataset_info(run.config.dataset), dtype, batch_size)


def knn_checkpoint(path, *, k: int = 20, temperature: float = 0.07, train_limit: int | None = None,
                   test_limit: int | None = None, dataset: str | None = None, device: str | None = None,
                   data_dir=None, batch_size: int = 500) -> KnnResult:
    """The k-NN accuracy of a run's frozen features: bank = the first ``train_limit`` training images of
    ``dataset`` (default: the run's), queries = its first ``test_limit`` test images.

    ``ValueError`` for a run without an image backbone (a language model) or a dataset whose images
    have another shape than the model's.
    """
    run = load_run(path, device=resolve_device(device))
    if run.config.task not in IMAGE_TASKS:
        raise ValueError(f"{run.path} is a {run.config.task!r} run; k-NN needs an image backbone "
                         f"(a run of {', '.join(IMAGE_TASKS)})")
    dataset = dataset or run.config.dataset
    info = dataset_info(dataset)
    if (info.channels, info.image_size) != (run.cfg.channels, run.cfg.image_size):
        raise ValueError(f"{dataset} images are {info.channels}x{info.image_size}x{info.image_size}, the model "
                         f"expects {run.cfg.channels}x{run.cfg.image_size}x{run.cfg.image_size}")
    train_images, train_labels = (a[:train_limit] for a in load_dataset(dataset, "train", data_dir))
    test_images, test_labels = (a[:test_limit] for a in load_dataset(dataset, "test", data_dir))
    xp = array_module(*run.params.values())
    predicted = knn_predict(_features(run, train_images, batch_size), to_device(train_labels, xp),
                            _features(run, test_images, batch_size), info.num_classes, k, temperature)
    accuracy = float((predicted == to_device(test_labels, xp)).mean()) if len(test_labels) else float("nan")
    return KnnResult(accuracy, len(train_labels), len(test_labels), k, temperature, dataset, run.config.model,
                     run.config.task, run.step, run.path)
