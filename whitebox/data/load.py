"""``load_dataset``: a split of MNIST, Fashion-MNIST, CIFAR-10 or the scenes as host arrays, found offline.

The scenes (:mod:`whitebox.data.scenes`) are generated from MNIST once and cached; the rest is read:

Search order (see :mod:`whitebox.data.sources`): ``data_dir``, then offline packages, then the
download cache (a ``data_dir`` folder holding some of the dataset's files but not the whole split
is an error, not skipped); only when all are empty, a download of the official files (see
:mod:`whitebox.data.download`). With ``verify=True`` every file's uncompressed bytes are checked
against the official MD5 (:data:`whitebox.data.checksums.CONTENT_MD5`), whatever the source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .catalog import SPLIT_FILES, check_dataset, dataset_info, install_hint
from .checksums import CONTENT_MD5, check_md5, md5_bytes
from .cifar import parse_cifar_batch
from .download import download_split, fetch_url
from .idx import parse_idx
from .scenes import load_scenes
from .sources import Blob, data_dir_locations, default_cache_dir, locations, present_members, read_split


class DatasetNotFoundError(FileNotFoundError):
    """No local copy of the dataset, and no download; the message says how to install it."""


def load_dataset(name: str, split: str, data_dir=None, *, cache_dir=None, download=True, verify: bool = True):
    """Images uint8 (N, C, H, W) and labels int64 (N,) of one split, as NumPy arrays.

    Parameters
    ----------
    name : ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
    split : ``"train"`` or ``"test"``.
    data_dir : a folder with the standard files (IDX plain or ``.gz``; CIFAR-10 batches or the
        ``.tar.gz``), searched first.
    cache_dir : where downloads go and are looked for (default ``~/.cache/whitebox``).
    download : ``True`` to fetch the official files with urllib as a last resort, ``False``
        never to, or a function ``fetch(url, path)`` to use instead of urllib.
    verify : check each file against the official MD5; pass ``False`` for your own files.

    Raises :class:`DatasetNotFoundError` (with install instructions) when the split is nowhere,
    ``ValueError`` for a malformed file, and :class:`ChecksumError` for a file that is not the
    official one.
    """
    name = check_dataset(name, split)
    if name == "scenes":  # generated from MNIST (verified as below) and cached: see whitebox.data.scenes
        try:
            scenes = load_scenes(split, data_dir, cache_dir=cache_dir, download=download)
        except ImportError as e:  # no scikit-image: say what to install, as for a missing dataset
            raise DatasetNotFoundError(str(e)) from None
        return scenes.images, scenes.labels
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
    members = SPLIT_FILES[(name, split)]
    searched = locations(name, data_dir, cache_dir)
    users = data_dir_locations(name, data_dir)
    for location in searched:
        blobs = read_split(location, members)
        if blobs is not None:
            return _decode(name, blobs, verify)
        if location in users:
            _refuse_incomplete(name, split, location, members)
    location = _download(name, split, cache_dir, download, searched)
    blobs = read_split(location, members)
    if blobs is None:
        raise DatasetNotFoundError(f"{location} was downloaded but lacks {members}; {install_hint(name)}")
    return _decode(name, blobs, verify)


def _refuse_incomplete(name: str, split: str, location: Path, members: tuple[str, ...]) -> None:
    """A ``data_dir`` folder with some of the dataset's files is the user's copy: it must be whole.

    Falling through to the packaged copy would train or test on other files than the ones given.
    """
    every = SPLIT_FILES[(name, "train")] + SPLIT_FILES[(name, "test")]
    if present_members(location, every):
        missing = [m for m in members if m not in present_members(location, members)]
        raise DatasetNotFoundError(
            f"{location} holds {name} files but not all of the {split} split: missing {', '.join(missing)} "
            f"(plain or .gz); add them, or pass another --data-dir (data_dir) to use another copy"
        )


def _download(name, split, cache_dir, download, searched) -> Path:
    looked = "".join(f"\n  {place}" for place in searched)
    where = f"{name} {split} split not found; looked in:{looked}\n"
    if download is False:
        raise DatasetNotFoundError(f"{where}downloading is disabled; {install_hint(name)}")
    fetch = download if callable(download) else fetch_url
    try:
        return download_split(name, split, cache_dir, fetch)
    except OSError as e:
        raise DatasetNotFoundError(f"{where}and the download failed ({e});\n{install_hint(name)}") from e


def _decode(name: str, blobs: dict[str, Blob], verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Check and parse the split's files (``blobs`` maps each standard file name to its bytes)."""
    if verify:
        for member, blob in blobs.items():
            check_md5(md5_bytes(blob.data), CONTENT_MD5[name][member], blob.source)
    if name == "cifar10":
        parts = [parse_cifar_batch(blob.data, blob.source) for blob in blobs.values()]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    images_blob, labels_blob = blobs.values()
    images = parse_idx(images_blob.data, images_blob.source)
    labels = parse_idx(labels_blob.data, labels_blob.source)
    _check_idx_pair(name, images, labels, images_blob.source, labels_blob.source)
    return images[:, None], labels.astype(np.int64)  # N,1,H,W and N


def _check_idx_pair(name, images, labels, images_source, labels_source) -> None:
    info = dataset_info(name)
    size = (info.image_size, info.image_size)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != size:
        expected = f"uint8 images of shape (N, {size[0]}, {size[1]})"
        raise ValueError(f"{images_source}: expected {expected}, got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{labels_source}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise ValueError(f"{labels_source}: {len(labels)} labels for the {len(images)} images of {images_source}")
    if len(labels) and labels.max() >= info.num_classes:
        raise ValueError(f"{labels_source}: labels must lie in 0..{info.num_classes - 1}, found {labels.max()}")
