"""The last resort: fetch the official files into the cache with urllib, checking their MD5.

:func:`load_dataset` calls this only when no local copy exists. The fetching function is a
parameter, so the tests can replace it and never touch the network.
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path
from typing import Callable

from .catalog import SPLIT_FILES
from .checksums import ARCHIVE_MD5, check_md5, md5_file
from .sources import CIFAR10_ARCHIVE

# Official locations first, then the mirror torchvision uses (yann.lecun.com is often refused).
MIRRORS = {
    "mnist": ("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

Fetch = Callable[[str, Path], None]


def fetch_url(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Save the resource at ``url`` to ``dest`` (raises ``OSError`` on any network failure)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, Path(dest).open("wb") as out:
        shutil.copyfileobj(response, out)


def archives(name: str, split: str) -> tuple[str, ...]:
    """The official files that hold ``split`` of ``name``."""
    if name == "cifar10":
        return (CIFAR10_ARCHIVE,)
    return tuple(f"{member}.gz" for member in SPLIT_FILES[(name, split)])


def download_split(name: str, split: str, cache_dir, fetch: Fetch = fetch_url) -> Path:
    """Download ``split`` of ``name`` into ``cache_dir/name``; return the location to read it from.

    Raises ``OSError`` when every mirror fails, :class:`ChecksumError` for a file that arrives
    but is not the official one (it is deleted).
    """
    folder = Path(cache_dir).expanduser() / name
    folder.mkdir(parents=True, exist_ok=True)
    for archive in archives(name, split):
        target = folder / archive
        if not target.is_file():  # a file in the cache was verified before it was renamed there
            _fetch_verified(MIRRORS[name], target, ARCHIVE_MD5[name][archive], fetch)
    return folder / CIFAR10_ARCHIVE if name == "cifar10" else folder


def _fetch_verified(mirrors, target: Path, md5: str, fetch: Fetch) -> None:
    partial = target.with_name(target.name + ".part")
    failures = []
    for mirror in mirrors:
        url = mirror + target.name
        try:
            fetch(url, partial)
        except OSError as e:  # urllib's URLError and HTTPError are OSErrors
            failures.append(f"{url}: {e}")
            continue
        actual = md5_file(partial)
        if actual != md5:
            partial.unlink()
        check_md5(actual, md5, url)
        partial.replace(target)
        return
    partial.unlink(missing_ok=True)
    raise OSError("; ".join(failures))
