"""Data sources: real datasets (digits, Fashion-MNIST idx files) and image folders, with clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data import load_data
from edgekit.data.fashion_mnist import DEFAULT_DIR
from edgekit.errors import EdgekitError
from edgekit.spec import ModelSpec


def test_digits_splits_are_disjoint_stratified_and_deterministic():
    a, b = load_data("digits"), load_data("digits")
    sizes = (len(a.train), len(a.val), len(a.test))
    assert sum(sizes) == 1797 and sizes[1] > 200 and sizes[2] > 200
    assert a.fingerprint == b.fingerprint
    assert a.num_classes == 10 and a.channels == 1 and a.image_size == (8, 8)
    # every class is present in each split in roughly its overall proportion
    for split in (a.train, a.val, a.test):
        counts = np.bincount(split.labels, minlength=10) / len(split)
        assert counts.min() > 0.07 and counts.max() < 0.13
    assert load_data("digits?seed=3").fingerprint != a.fingerprint


@pytest.mark.skipif(not DEFAULT_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_official_files():
    data = load_data("fashion-mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (55000, 5000, 10000)
    img, label = data.test[0]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (1, 28, 28)
    assert label == 9  # the first official test image is an ankle boot
    assert data.class_names[9] == "Ankle boot"


def test_fashion_mnist_missing_dir_is_a_clear_error(tmp_path):
    with pytest.raises(EdgekitError, match="does not exist"):
        load_data(f"fashion-mnist:{tmp_path / 'nope'}")
    with pytest.raises(EdgekitError, match="not found"):
        load_data(f"fashion-mnist:{tmp_path}")


def _write_images(root, classes=("cat", "dog"), per_class=6, size=(20, 16), mode="RGB"):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / c / f"{i}.jpg")


def test_imagefolder_with_split_ratio(tmp_path):
    _write_images(tmp_path)
    data = load_data(f"{tmp_path}?val=0.5", image_size=(12, 12))
    assert data.class_names == ["cat", "dog"] and data.channels == 3
    assert len(data.train) == 6 and len(data.val) == 6
    img, _ = data.train[0]
    assert tuple(img.shape) == (3, 12, 12)


def test_imagefolder_train_val_folders_and_grey(tmp_path):
    _write_images(tmp_path / "train", mode="L")
    _write_images(tmp_path / "val", per_class=2, mode="L")
    data = load_data(str(tmp_path))
    assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
    assert data.channels == 1 and data.image_size == (16, 20)


def test_imagefolder_broken_jpeg_names_the_file(tmp_path):
    _write_images(tmp_path)
    broken = tmp_path / "dog" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(EdgekitError, match="broken.jpg"):
        load_data(str(tmp_path))


def test_imagefolder_truncated_jpeg_is_detected(tmp_path):
    _write_images(tmp_path)
    good = (tmp_path / "cat" / "0.jpg").read_bytes()
    (tmp_path / "cat" / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(EdgekitError, match="cut.jpg"):
        load_data(str(tmp_path))


def test_missing_data_dir(tmp_path):
    with pytest.raises(EdgekitError, match="not found"):
        load_data(str(tmp_path / "missing"))


def test_spec_prepare_grey_to_rgb_resize_normalise():
    spec = ModelSpec(input_shape=(3, 16, 16), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), num_classes=10)
    grey = torch.full((2, 1, 8, 8), 255, dtype=torch.uint8)
    x = spec.prepare(grey)
    assert x.shape == (2, 3, 16, 16)
    assert torch.allclose(x, torch.ones_like(x))  # (1 - 0.5) / 0.5
    rgb_to_grey = ModelSpec(input_shape=(1, 8, 8), num_classes=10).prepare(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    assert rgb_to_grey.shape == (1, 1, 8, 8)


def test_flips_follow_the_dataset():
    """Digits are not mirror-invariant (a flipped 2 is not a 2): training stages leave flips off for
    them unless the recipe says otherwise; Fashion-MNIST clothes flip."""
    assert load_data("digits").mirror_invariant is False
    assert load_data("fashion-mnist").mirror_invariant is True
