"""Issue 38's bar on real material: EfficientNet-Lite0 with its real ImageNet weights, as a ``.pt2`` (which
carries no preprocessing and no class names), compressed with ``--classes imagenet --preprocess ...`` on the
20 labelled foolbox photos in synset-named folders, calibrated on unlabelled photos (tests/real_material.py).

The oracle is PyTorch's own top-1, computed here with PIL and the model directly - none of edgekit's
decoding, spec or evaluation code: short side 256 (bilinear), centre crop 224, (px - 127) / 128.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import run_cli
from tests.real_material import LITE0_PREPROCESS, foolbox_photos, lite0_module


def _pytorch_top1(model, photos) -> tuple[int, list[int]]:
    """(correct, predicted class of each photo) with the model's documented eval transform, by hand."""
    predictions = []
    for path, _ in photos:
        with Image.open(path) as im:
            im = im.convert("RGB")
            w, h = im.size
            size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)   # torchvision's Resize(256)
            im = im.resize(size, Image.BILINEAR)
            left, top = int(round((im.width - 224) / 2.0)), int(round((im.height - 224) / 2.0))  # torchvision's
            im = im.crop((left, top, left + 224, top + 224))
            x = (torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1) - 127.0) / 128.0
        with torch.no_grad():
            predictions.append(int(model(x[None]).argmax(1)))
    correct = sum(p == label for p, (_, label) in zip(predictions, photos))
    return correct, predictions


@pytest.mark.slow   # ~2 min on 2 shared cores: an export, two ONNX/OpenVINO compiles, INT8 calibration, timing
def test_lite0_pt2_on_real_photos_scores_pytorchs_own_top1(lite0_pt2, imagenet_photos, unlabelled_folder, tmp_path):
    photos = foolbox_photos()
    correct, _ = _pytorch_top1(lite0_module(), photos)
    out = tmp_path / "bundle"
    result = run_cli("compress", "-m", str(lite0_pt2), "--classes", "imagenet", "--preprocess", LITE0_PREPROCESS,
                     "-d", str(imagenet_photos), "--calibration", str(unlabelled_folder), "-t", "x86-cpu",
                     "-r", "int8", "-o", str(out), timeout=1500)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    # the model's own 1000 outputs, the 19 synset folders mapped onto them: no head replaced
    assert "head" not in manifest["model"]["notes"], manifest["model"]["notes"]
    assert manifest["model"]["classes"]["mapping"] == "mapped"
    assert manifest["final_model"]["spec"]["num_classes"] == 1000
    spec = manifest["model"]["spec"]
    assert spec["transform_from"] == "--preprocess" and spec["resize"] == 256 and spec["input_shape"] == [3, 224, 224]
    # nothing trains, so all 20 photos are the evaluation set (not a 4-image 80/20 split), and the
    # calibration images are the unlabelled folder's
    assert manifest["data"]["test"] == 20 and manifest["data"]["train"] == 0
    assert manifest["calibration"]["split"] == "calibration"
    reference = manifest["references"]["input"]["accuracy"]
    assert reference["samples"] == 20 and round(reference["top1"] * 20 / 100) == correct
    fp32 = [a for a in manifest["artifacts"] if a["precision"] == "fp32"]
    assert {a["runtime"] for a in fp32} >= {"onnxruntime", "openvino"}, [a["name"] for a in manifest["artifacts"]]
    for artifact in fp32:
        accuracy = artifact["metrics"]["accuracy"]
        assert accuracy["samples"] == 20
        assert round(accuracy["top1"] * 20 / 100) == correct, (artifact["name"], accuracy, correct)
    assert "- classes: mapped the data's 19 classes" in (out / "report.md").read_text()
