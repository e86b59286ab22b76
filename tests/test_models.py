"""Model sources: builtin, torchvision (local cache / offline), files of every kind, safe loading."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torchvision

from edgekit.errors import EdgekitError
from edgekit.models import load_checkpoint, load_model, save_checkpoint
from edgekit.models.complexity import count_macs, count_params


def test_builtin_models_build_and_count():
    m = load_model("builtin:resnet18_32")
    assert m.spec.input_shape == (3, 32, 32)
    assert count_params(m.module) == 11_173_962
    assert 550e6 < count_macs(m.module, m.spec) < 560e6  # the 557 MMAC teacher of the benchmarks
    with pytest.raises(EdgekitError, match="unknown builtin model 'nope'.*tinycnn"):
        load_model("builtin:nope")


def test_num_classes_from_data_replaces_head():
    m = load_model("builtin:resnet8", num_classes=3)
    assert m.module(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    m = load_model("torchvision:resnet18?weights=none", num_classes=5)
    assert m.module.fc.out_features == 5 and "replaced fc" in m.notes["head"]


def test_torchvision_weights_from_local_cache(tmp_path, monkeypatch):
    """The real weights API, fed from the torch hub cache as an offline user would."""
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    ckpt = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[1]
    ckpt.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), ckpt)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    m = load_model("torchvision:resnet18")
    assert m.spec.num_classes == 1000 and m.spec.class_names[0] == "tench"
    assert m.spec.input_shape == (3, 224, 224) and m.spec.mean == (0.485, 0.456, 0.406)
    assert torch.equal(m.module.fc.weight, reference.fc.weight)


def test_torchvision_offline_is_one_line_error(tmp_path):
    code = ("import os; from edgekit.models import load_model\n"
            "try:\n    load_model('torchvision:resnet18')\n"
            "except Exception as e:\n    print(type(e).__name__, '|', e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "TORCH_HOME": str(tmp_path)})
    assert out.stdout.startswith("EdgekitError | cannot download weights"), out.stdout + out.stderr
    assert "resnet18-f37072fd.pth" in out.stdout and "weights=none" in out.stdout


def test_checkpoint_roundtrip_is_weights_only(tmp_path):
    m = load_model("builtin:resnet8", num_classes=4)
    path = tmp_path / "m.pt"
    save_checkpoint(m, path)
    torch.load(path, weights_only=True)  # no pickled code inside
    again = load_checkpoint(path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(again.module(x), m.module.eval()(x))
    assert again.spec == m.spec


def test_state_dict_needs_arch(tmp_path):
    model = torchvision.models.resnet18(num_classes=7)
    path = tmp_path / "sd.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(EdgekitError, match="--arch"):
        load_model(str(path))
    loaded = load_model(str(path), arch="torchvision:resnet18")
    assert loaded.spec.num_classes == 7
    assert torch.equal(loaded.module.fc.weight, model.fc.weight)


def test_pickled_module_refused_unless_trusted(tmp_path):
    path = tmp_path / "full.pt"
    torch.save(torchvision.models.resnet18(num_classes=3), path)
    with pytest.raises(EdgekitError, match="--trust-pickle"):
        load_model(str(path))
    assert load_model(str(path), trust_pickle=True).spec.num_classes == 3


def test_torchscript_and_exported_program(tmp_path):
    base = load_model("builtin:tinycnn").module
    ts = tmp_path / "m.ts.pt"
    torch.jit.script(base).save(str(ts))
    loaded = load_model(str(ts), input_size=(8, 8))
    assert loaded.spec.input_shape == (1, 8, 8) and loaded.arch is None
    pt2 = tmp_path / "m.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(base, (torch.zeros(2, 1, 8, 8),), dynamic_shapes=({0: batch},)), pt2)
    assert load_model(str(pt2), input_size=(8, 8)).spec.num_classes == 10
    # exported for batch 1 only (torch.export's default): one line at load, not a guard traceback mid-run
    static = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(base, (torch.zeros(1, 1, 8, 8),)), static)
    with pytest.raises(EdgekitError, match="exported for a fixed batch size"):
        load_model(str(static), input_size=(8, 8))


def test_corrupt_file_and_wrong_input_size(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"definitely not a model")
    with pytest.raises(EdgekitError, match="corrupt or not a PyTorch file"):
        load_model(str(bad))
    # a fixed-size model (flatten -> linear) given the wrong input size
    fixed = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 32 * 32, 10))
    path = tmp_path / "fixed.pt"
    torch.jit.script(fixed).save(str(path))
    assert load_model(str(path), input_size=(32, 32)).spec.num_classes == 10
    with pytest.raises(EdgekitError, match="does not accept input 1x3x28x28"):
        load_model(str(path), input_size=(28, 28))


def test_timm_models_when_installed(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    m = load_model("timm:resnet18?pretrained=false", num_classes=10)
    assert m.module(torch.zeros(1, 3, 224, 224)).shape == (1, 10)
    assert m.spec.mean == (0.485, 0.456, 0.406)
    # No hub here: the pretrained path must fail clearly. huggingface_hub reads HF_HUB_OFFLINE when it is
    # imported (timm imported it above), so the flag is set where it is read; without it the hub retries the
    # name lookup for ~45 s before the same error.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(EdgekitError, match="cannot download pretrained weights for timm:resnet18"):
        load_model("timm:resnet18")


def test_the_meta_forward_leaves_a_shared_modules_weights_real():
    """edgekit checks a model's input size with one forward on the meta device (``footprint``). A module held by
    two parents (CoaT shares its positional encodings between blocks) came out of it with meta weights, and every
    export after failed with "Cannot copy out of meta tensor"."""
    from edgekit.models.footprint import footprint

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoding = nn.Conv2d(3, 3, 3, padding=1, groups=3)
            self.blocks = nn.ModuleList([nn.Sequential(self.encoding, nn.ReLU()) for _ in range(2)])
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            for block in self.blocks:
                x = x + block(x)
            return self.head(x.mean((2, 3)))

    model = Shared()
    before = {n: t.clone() for n, t in model.state_dict().items()}
    assert footprint(model, (3, 8, 8)).output_shape == (1, 2)
    assert all(not t.is_meta for t in model.state_dict().values())
    assert all(torch.equal(model.state_dict()[n], t) for n, t in before.items())
    model(torch.zeros(1, 3, 8, 8))   # runs for real
