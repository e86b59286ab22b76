"""The Python API as a notebook uses it: a module and a Dataset built in Python, straight into
``edgekit.compress``, and the shipped file loaded back to classify."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset

import edgekit

RECIPE = """
name: api-notebook
stages:
  - finetune: {epochs: 12, lr: 0.1, crop_pad: 1, hflip: false, batch_size: 64}
compile:
  precisions: [fp32, int8]
profile: {warmup: 2, runs: 20, max_seconds: 1}
"""


def _digits_datasets() -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """scikit-learn's digits as float images in [0, 1], as a notebook would hold them."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    parts = order[:1200], order[1200:1500], order[1500:]
    return tuple(TensorDataset(images[p], labels[p]) for p in parts)  # type: ignore[return-value]


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def notebook_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    recipe = tmp / "recipe.yaml"
    recipe.write_text(RECIPE)
    torch.manual_seed(0)
    module = SmallNet()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    train, val, test = _digits_datasets()
    result = edgekit.compress(module, (train, val, test), target="x86-cpu", recipe=recipe, out=tmp / "bundle",
                              threads=1)
    return module, before, test, result


def test_a_module_and_datasets_from_python_compress_and_the_deployed_file_reproduces_its_top1(notebook_run):
    _, _, test, result = notebook_run
    deployed = result.deployed
    assert deployed is not None and deployed.deployed and deployed.top1 is not None
    assert deployed.top1 > 80, "a trained digits classifier"   # the training really ran on the given data
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = np.array([int(test[i][1]) for i in range(len(test))])
    with deployed.load() as session:
        logits = session.predict(result.spec.prepare(images))
    assert logits.shape == (len(test), 10)
    assert float((logits.argmax(1) == labels).mean() * 100) == deployed.top1
    assert result.manifest.references.final.accuracy.samples == len(test)


def test_the_callers_module_is_left_as_it_was(notebook_run):
    module, before, _, _ = notebook_run
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_every_artifact_is_listed_with_its_basis_and_the_bundle_reads_back(notebook_run):
    _, _, _, result = notebook_run
    names = {a.name for a in result.artifacts}
    assert {"onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-int8"} <= names
    for artifact in result.artifacts:
        assert artifact.path.is_file() and artifact.path.is_relative_to(result.bundle.resolve())
        if artifact.p50_ms is not None:
            assert artifact.latency_basis.startswith("measured")   # x86-cpu runs here
    again = edgekit.load_bundle(result.bundle)
    assert again.deployed.name == result.deployed.name and again.deployed.top1 == result.deployed.top1
    command = json.loads((result.bundle / "manifest.json").read_text())["command"]
    assert "edgekit.compress(model=SmallNet, data=tuple" in command[-1]


def test_api_errors_are_one_line_edgekit_errors(tmp_path):
    with pytest.raises(edgekit.EdgekitError, match="not an nn.Module"):
        edgekit.compress(object(), "digits", out=tmp_path / "a")
    with pytest.raises(edgekit.EdgekitError, match="threads=0"):
        edgekit.compress(threads=0, out=tmp_path / "b")
    with pytest.raises(edgekit.EdgekitError, match="input_size"):
        edgekit.compress("builtin:tinycnn", "digits", input_size=(0, 4), out=tmp_path / "c")
    assert not any(tmp_path.iterdir()), "nothing written for a refused call"


def test_the_public_names_are_the_documented_ones():
    for name in edgekit.__all__:
        assert getattr(edgekit, name) is not None
    assert "x86-cpu" in [t.name for t in edgekit.targets()]
    assert "quickstart" in edgekit.recipes()
    info = edgekit.inspect("builtin:tinycnn")
    assert info["params"] > 0 and info["spec"]["num_classes"] == 10
