"""Datasets without a network: MNIST, Fashion-MNIST, CIFAR-10 and the scenes (digits on photographs,
with object masks) as uint8 arrays, seeded batches, and augmentation on the active backend.

==================  ==========================================================================
``catalog``         what each dataset is: :func:`dataset_info` (classes, shape, mean/std)
``idx``             the IDX format of (Fashion-)MNIST: :func:`read_idx`, :func:`write_idx`
``cifar``           the CIFAR-10 python batch format: :func:`read_cifar_batch`
``checksums``       the official MD5s, of the archives and of their contents
``sources``         where files are looked for: ``data_dir``, offline packages, the cache
``download``        the last resort: urllib into ``~/.cache/whitebox``, checked by MD5
``scenes``          MNIST digits on scikit-image's photographs: :func:`load_scenes` adds the masks
``load``            :func:`load_dataset` (name, split) -> images (N, C, H, W), labels (N,)
``batching``        :func:`batches`: the order of epoch k depends on (seed, k) only
``augment``         :func:`random_crop`, :func:`random_flip`, :func:`normalize` on NumPy/CuPy
==================  ==========================================================================

Typical use::

    images, labels = load_dataset("cifar10", "train", data_dir)          # host, uint8
    info, aug = dataset_info("cifar10"), default_augmentation("cifar10")
    rng = default_rng(seed, xp)
    for x, y in batches(to_device(images, xp), to_device(labels, xp), 128, seed=seed, epoch=k):
        x = normalize(augment(x, aug, rng), info.mean, info.std)    # N,C,H,W float32
"""

from .augment import Augmentation, augment, crop, default_augmentation, normalize, random_crop, random_flip
from .batching import batches, epoch_order, num_batches
from .catalog import DATASETS, SPLITS, DatasetInfo, dataset_info, install_hint
from .checksums import ChecksumError
from .cifar import parse_cifar_batch, read_cifar_batch
from .idx import parse_idx, read_idx, write_idx
from .load import DatasetNotFoundError, load_dataset
from .scenes import Scenes, load_scenes

__all__ = [
    "DATASETS", "SPLITS", "Augmentation", "ChecksumError", "DatasetInfo", "DatasetNotFoundError", "Scenes",
    "augment", "batches", "crop", "dataset_info", "default_augmentation", "epoch_order", "install_hint",
    "load_dataset", "load_scenes", "normalize", "num_batches", "parse_cifar_batch", "parse_idx", "random_crop",
    "random_flip", "read_cifar_batch", "read_idx", "write_idx",
]
