"""Stage caches are sound: a rerun reuses a stage only when its input model, settings, data content, the
edgekit source and the library versions are all the same. Replacing an image's pixels under the same file name,
size and mtime must invalidate it (the bug: the old key hashed labels, not pixels)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data import load_data
from edgekit.models import load_model
from edgekit.pipeline import run_stages
from edgekit.recipe import Recipe
from edgekit.target import load_target

RECIPE = Recipe(name="cache-test", stages=[{"name": "evaluate", "params": {"split": "test"}}])


def _folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(6):
            # BMP is uncompressed: other pixels give a file of exactly the same size
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(root / c / f"{i}.bmp")
    return root


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(folder: Path) -> dict:
    data = load_data(str(folder), image_size=(8, 8))
    model = load_model("builtin:tinycnn", num_classes=2)
    torch.manual_seed(0)
    _, records, _ = run_stages(model, data, RECIPE, load_target("x86-cpu"))
    return records[0]


def test_new_pixels_under_the_same_name_size_and_mtime_invalidate_the_cache(tmp_path, isolated_cache):
    folder = _folder(tmp_path / "imgs")
    torch.manual_seed(0)
    first = _run(folder)
    torch.manual_seed(0)
    again = _run(folder)
    assert not first["cached"] and again["cached"] and again["cache_key"] == first["cache_key"]
    assert first["split"] == "test" and first["top1"] == first["metrics"]["top1"]

    victim = folder / "a" / "0.bmp"
    before = victim.stat()
    pixels = np.asarray(Image.open(victim))
    Image.fromarray(255 - pixels, "L").save(victim)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = victim.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)  # only the bytes differ

    torch.manual_seed(0)
    changed = _run(folder)
    assert not changed["cached"] and changed["cache_key"] != first["cache_key"]


def test_in_memory_pixels_are_hashed_in_full():
    digits = load_data("digits")
    before = digits.fingerprint
    digits.train.images = digits.train.images.clone()
    digits.train.images[0, 0, 0, 0] ^= 1  # one bit of one pixel; labels unchanged
    assert digits.fingerprint != before


def test_a_torch_upgrade_invalidates_the_cache(tmp_path, isolated_cache, monkeypatch):
    folder = _folder(tmp_path / "imgs")
    torch.manual_seed(0)
    first = _run(folder)
    monkeypatch.setattr(torch, "__version__", "99.0.0")
    torch.manual_seed(0)
    upgraded = _run(folder)
    assert not upgraded["cached"] and upgraded["cache_key"] != first["cache_key"]


def test_an_edit_of_edgekit_code_invalidates_the_cache(tmp_path, isolated_cache, monkeypatch):
    """``__version__`` is not bumped on every change: the key also holds the source's hash (here of a copy of
    edgekit's stages, edited by one comment line)."""
    import shutil

    from edgekit.pipeline import stage_cache as pipeline

    source = tmp_path / "source"
    shutil.copytree(pipeline.PACKAGE_ROOT / "stages", source)
    monkeypatch.setattr(pipeline, "PACKAGE_ROOT", source)
    folder = _folder(tmp_path / "imgs")
    try:
        pipeline.code_fingerprint.cache_clear()
        torch.manual_seed(0)
        first = _run(folder)
        torch.manual_seed(0)
        again = _run(folder)
        assert not first["cached"] and again["cached"]
        with open(source / "evaluate.py", "a") as f:
            f.write("# edited\n")
        pipeline.code_fingerprint.cache_clear()
        torch.manual_seed(0)
        edited = _run(folder)
        assert not edited["cached"] and edited["cache_key"] != first["cache_key"]
    finally:
        pipeline.code_fingerprint.cache_clear()


def test_the_after_stage_accuracy_is_read_on_the_first_val_images(isolated_cache, monkeypatch):
    """A stage's after-stage top-1 (the stage table's progress figure) is read on the first STAGE_CHECK_IMAGES
    val images, and the record says how many: a full val pass per stage is minutes on an ImageNet-sized split."""
    from edgekit.pipeline import phases
    from edgekit.training.evaluate import evaluate_module

    monkeypatch.setattr(phases, "STAGE_CHECK_IMAGES", 50)
    data = load_data("digits")
    assert len(data.val) > 50
    model = load_model("builtin:tinycnn", num_classes=10)
    recipe = Recipe(name="check", stages=[{"name": "prune", "params": {"mode": "structured", "ratio": 0.5}}])
    final, records, _ = run_stages(model, data, recipe, load_target("x86-cpu"), use_cache=False)
    assert records[0]["split"] == "val" and records[0]["samples"] == 50
    assert records[0]["top1"] == evaluate_module(final.module, final.spec, data.val, limit=50)["top1"]
