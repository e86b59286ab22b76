"""Scale: device placement, the worker data pipeline, broken files, and preprocessing from the weights.

The transform test is the bar of issue 16: for torchvision's ResNet-50 DEFAULT weights, edgekit's eval
input (through the data path + ``ModelSpec.prepare``, and through the device runner's numpy+PIL
preprocessing) equals the weights' own ``transforms()`` on a JPEG, without downloading anything (the
model is built with ``weights=none``; the transform comes from the enum). CUDA tests run only where CUDA is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgekit.data import load_data, load_data_for, make_loader
from edgekit.errors import EdgekitError
from edgekit.models import load_model
from edgekit.runtime.runner import load_images
from edgekit.training.device import resolve_device
from tests.conftest import killed_after_epoch_1_then_resumed, run_cli

CUDA = torch.cuda.is_available()


def _photo(path: Path, h: int, w: int, seed: int = 0) -> Path:
    """A JPEG with smooth structure and noise (so resize filters and crops matter)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (h + w))], -1)
    arr = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=90)
    return path


def _folder(root: Path, per_class: int = 3, size=(40, 52)) -> Path:
    for c, name in enumerate(("cat", "dog")):
        for i in range(per_class):
            _photo(root / name / f"{i}.jpg", *size, seed=10 * c + i)
    return root


def test_resnet50_default_transform_equals_the_weights_own(tmp_path):
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.DEFAULT
    model = load_model("torchvision:resnet50?weights=none&transform=DEFAULT", num_classes=2)
    spec = model.spec
    assert (spec.resize, spec.hw, spec.interpolation) == (232, (224, 224), "bilinear")
    assert spec.transform_from == f"torchvision {weights}"
    for name in ("cat", "dog"):  # a landscape and a portrait photo, both larger than the crop
        _photo(tmp_path / "imgs" / name / "0.jpg", *((375, 500) if name == "cat" else (480, 300)), seed=len(name))
        _photo(tmp_path / "imgs" / name / "1.jpg", 260, 260, seed=7)
    data = load_data_for(str(tmp_path / "imgs") + "?val=0.5", spec)
    ds = data.test
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    ours = spec.prepare(images)
    theirs = torch.stack([weights.transforms()(Image.open(f).convert("RGB")) for f in ds.files])
    assert ours.shape == theirs.shape == (len(ds), 3, 224, 224)
    assert float((ours - theirs).abs().max()) <= 1e-5
    # The device runner (numpy + PIL, no torch) from the raw files and the spec's transform:
    job = {"images": [str(f) for f in ds.files], "labels": ds.labels.tolist(), "transform": spec.transform()}
    json.dumps(job)  # the transform travels as plain JSON
    device_inputs = load_images(job, tmp_path)["inputs"]
    assert float(np.abs(device_inputs - theirs.numpy()).max()) <= 1e-5


def test_timm_transform_is_recorded():
    pytest.importorskip("timm")
    spec = load_model("timm:resnet18?pretrained=false").spec
    # timm's resnet18 config: 224 input, crop_pct 0.95, bicubic
    assert spec.hw == (224, 224) and spec.resize == 235 and spec.interpolation == "bicubic"
    assert "resolve_data_config" in spec.transform_from


def test_training_view_is_seeded_per_item_and_independent_of_workers(tmp_path):
    spec = load_model("torchvision:resnet18?weights=none&transform=DEFAULT", num_classes=2).spec
    spec = spec.with_input_size(32, 32).model_copy(update={"resize": 36})
    data = load_data_for(str(_folder(tmp_path / "imgs")), spec)
    train = data.train.augmented(flip=True)
    assert train is not None and data.train.augmented is not None
    runs = []
    for workers in (0, 1):
        loader = make_loader(train, 2, shuffle=True, seed=3, workers=workers)
        runs.append([images.clone() for _ in range(2) for images, _ in loader])  # two epochs
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert not torch.equal(runs[0][0], runs[0][len(runs[0]) // 2])  # epochs differ
    assert runs[0][0].shape[-2:] == (32, 32)


def test_truncated_file_fails_at_decode_with_one_line_naming_it(tmp_path):
    root = _folder(tmp_path / "imgs", size=(120, 160))
    good = (root / "cat" / "0.jpg").read_bytes()
    (root / "cat" / "cut.jpg").write_bytes(good[: len(good) // 2])  # header intact, data cut
    data = load_data(str(root) + "?val=0.5", image_size=(16, 16))  # the header scan passes it
    for workers in (0, 1):
        with pytest.raises(EdgekitError) as err:
            for _ in make_loader(data.train if any(f.name == "cut.jpg" for f in data.train.files) else data.val,
                                 2, workers=workers):
                pass
        assert "cut.jpg" in str(err.value) and "\n" not in str(err.value) and "Traceback" not in str(err.value)
    skipped = load_data(str(root) + "?val=0.5", image_size=(16, 16), skip_broken=True)
    assert list(skipped.skipped) == [str(root / "cat" / "cut.jpg")]
    assert skipped.summary()["skipped_images"]["count"] == 1


@pytest.mark.skipif(CUDA, reason="checks the error on a machine without CUDA")
def test_device_cuda_without_cuda_is_a_one_line_usage_error(tmp_path):
    with pytest.raises(EdgekitError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")
    out = tmp_path / "b"
    result = run_cli("compress", "--device", "cuda", "--out", str(out))
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda") and "Traceback" not in result.stderr
    assert not out.exists()


def test_bad_device_name():
    with pytest.raises(EdgekitError, match="not a device"):
        resolve_device("tpu")


EVAL_ONLY = """name: eval-only
stages:
  - evaluate: {split: test}
compile:
  backends: [onnxruntime]
  precisions: [fp32]
profile: {warmup: 1, runs: 3, max_seconds: 1}
"""


def test_broken_file_default_error_and_skip_broken_images(tmp_path):
    root = _folder(tmp_path / "imgs", per_class=4, size=(20, 20))
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(EVAL_ONLY)
    args = ["compress", "-m", "builtin:tinycnn", "-d", str(root), "-r", str(recipe), "--device", "cpu"]
    failed = run_cli(*args, "--out", str(tmp_path / "fail"))
    assert failed.returncode == 2
    lines = [line for line in failed.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "broken.jpg" in lines[0] and "--skip-broken-images" in lines[0]
    assert not (tmp_path / "fail").exists()
    ok = run_cli(*args, "--skip-broken-images", "--out", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads((tmp_path / "ok" / "manifest.json").read_text())
    skipped = manifest["data"]["skipped_images"]
    assert skipped["count"] == 1 and list(skipped["files"]) == [str(root / "dog" / "broken.jpg")]
    assert manifest["data"]["train"] + manifest["data"]["val"] == 8


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_training_on_cuda_leaves_a_cpu_model_and_cpu_checkpoint(tmp_path):
    from edgekit.data import load_data as load
    from edgekit.training import TrainParams, train
    from edgekit.training.device import using_device

    model = load_model("builtin:tinycnn", num_classes=10)
    data = load("digits")
    with using_device(resolve_device("cuda")):
        report = train(model.module, model.spec, data, TrainParams(epochs=1, max_steps_per_epoch=3, batch_size=32),
                       checkpoint_dir=tmp_path)
    assert report.device.startswith("cuda") and report.precision != "fp32"
    assert all(p.device.type == "cpu" for p in model.module.parameters())
    saved = torch.load(tmp_path / "train_state.pt", weights_only=True)  # no map_location needed
    assert all(t.device.type == "cpu" for t in saved["model"].values())


def test_photo_folder_training_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    """Per-item random-resized-crop + flip in a loader worker: a run killed after epoch 1 and resumed ends
    with the weights of one that ran through (seeds come from a checkpointed generator, not worker RNGs)."""
    from edgekit.training import TrainParams, train

    base = load_model("builtin:tinycnn", num_classes=2)
    spec = base.spec.model_copy(update={"input_shape": (1, 16, 16), "resize": 18})
    data = load_data_for(str(_folder(tmp_path / "imgs", per_class=8, size=(30, 40))), spec)
    params = TrainParams(epochs=3, batch_size=4, lr=0.05, keep="last", workers=1, eval_limit=4)

    def run(work: Path):
        torch.manual_seed(0)
        model = load_model("builtin:tinycnn", num_classes=2).module
        model.load_state_dict(base.module.state_dict())
        train(model, spec, data, params, checkpoint_dir=work, resume=True)
        return model.state_dict()

    straight = run(tmp_path / "straight")
    resumed = killed_after_epoch_1_then_resumed(monkeypatch, run, tmp_path / "killed")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    other = TrainParams(**{**params.model_dump(), "seed": 1})
    torch.manual_seed(0)
    model = load_model("builtin:tinycnn", num_classes=2).module
    model.load_state_dict(base.module.state_dict())
    train(model, spec, data, other)
    assert not all(torch.equal(straight[k], v) for k, v in model.state_dict().items())  # the test can fail
