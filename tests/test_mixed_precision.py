"""Automatic mixed precision (``precision: auto``, edgekit.mixed_precision): on a small CNN with one layer
deliberately broken for INT8, the plain INT8 file disagrees with FP32 and the search keeps that layer (by its
torch module name) in float until the agreement bound holds. Real runtimes (ONNX Runtime; OpenVINO in the slow
tier). The oracle is the layer we broke, and the same model before the break, whose INT8 file agrees."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn as nn

from conftest import ROOT  # noqa: F401 - the tests' shared setup
from edgekit.backends import BACKENDS, CompileRequest
from edgekit.calibration import draw_calibration
from edgekit.mixed_precision import Bound, file_check, search_mixed, sizes, validation_set
from edgekit.models.in_memory import module_model
from edgekit.target import load_target
from edgekit.training import TrainParams, train
from edgekit.vocab import Precision, ReasonCode

BOUND = 95.0   # % top-1 agreement with the FP32 model (the bar for real photos)
MAX_DROP = 2.0  # points of top-1 on the validation split


def block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.broken, self.mid = block(1, 16), block(16, 16), block(16, 32)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.mid(self.broken(self.stem(x))))


def break_for_int8(net: Net, level: float = 1e4) -> None:
    """Channel 0 of ``broken``'s output becomes a constant ``level`` (its BatchNorm's scale 0, shift ``level``)
    that ``mid`` ignores: the float model loses one of 16 channels, but a per-tensor INT8 scale sized for 1e4
    rounds every other channel of that activation to zero."""
    with torch.no_grad():
        net.broken[1].weight[0] = 0
        net.broken[1].bias[0] = level
        net.mid[0].weight[:, 0] = 0


@pytest.fixture(scope="module")
def models(digits):
    """(healthy, broken) LoadedModels: one trained net, before and after the break."""
    torch.manual_seed(0)
    healthy = module_model(Net(), None, 1, (8, 8))
    train(healthy.module, healthy.spec, digits, TrainParams(epochs=3, lr=0.1, batch_size=64, crop_pad=1,
                                                            hflip=False, seed=0))
    broken = copy.deepcopy(healthy)
    break_for_int8(broken.module)
    return healthy, broken


def _files(model, backend: str, digits, out):
    cal = draw_calibration(digits.train, model.spec, 64, 0)
    request = CompileRequest(out_dir=out, target=load_target("x86-cpu"), calibration=cal.inputs, options={})
    b = BACKENDS.get(backend)()
    return b.compile(model, Precision.FP32, request), b.compile(model, Precision.INT8, request), request


def _search(models, digits, backend: str, tmp_path, bound: float = BOUND):
    healthy, broken = models
    h32, h8, _ = _files(healthy, backend, digits, tmp_path / "healthy")
    healthy_agreement = file_check(h8, tmp_path / "healthy", validation_set(healthy, digits.val), 1)["top1_agreement"]
    val = validation_set(broken, digits.val)
    out = tmp_path / "broken"
    fp32, int8, request = _files(broken, backend, digits, out)
    mixed = search_mixed(broken, fp32, int8, request, out, val, Bound(MAX_DROP, bound), 8, 1)
    return healthy_agreement, int8, mixed, out, val


def test_sizes_grow_by_doubling_to_the_cap():
    assert sizes(8, 20) == [1, 2, 4, 8] and sizes(6, 20) == [1, 2, 4, 6] and sizes(8, 3) == [1, 2, 3]
    assert sizes(0, 5) == [] and sizes(4, 0) == []


def test_onnxruntime_keeps_the_broken_layer_in_float(models, digits, tmp_path):
    healthy_agreement, int8, mixed, out, val = _search(models, digits, "onnxruntime", tmp_path)
    assert healthy_agreement >= BOUND                     # INT8 is fine on the model before the break
    check = int8.meta["agreement_check"]
    assert check["top1_agreement"] < BOUND and check["min_agreement"] == BOUND and check["drop"] > 30
    assert mixed is not None and mixed.name == "onnxruntime-mixed" and mixed.precision == Precision.MIXED
    info = mixed.meta["mixed"]
    assert info["ranking"]["first_divergence"] == "broken.2"
    assert info["tries"][0]["float_layers"] == ["broken.2"]   # the broken layer first, by its module name
    assert "broken.2" in info["float_layers"] and info["meets_bound"]
    assert info["agreement"] >= BOUND > info["agreement_int8"] and info["drop"] <= MAX_DROP
    assert any(n.startswith("/broken/") for n in mixed.meta["nodes_excluded"])
    # the file says what it measured: reopened through its runtime, the same agreement
    assert file_check(mixed, out, val, 1)["top1_agreement"] == info["agreement"]
    assert (out / mixed.path).name == "model_mixed.onnx"


def test_int8_within_the_bound_gets_no_mixed_file(models, digits, tmp_path):
    healthy, _ = models
    fp32, int8, request = _files(healthy, "onnxruntime", digits, tmp_path)
    val = validation_set(healthy, digits.val)
    assert search_mixed(healthy, fp32, int8, request, tmp_path, val, Bound(MAX_DROP, BOUND), 8, 1) is None
    assert int8.meta["agreement_check"]["top1_agreement"] >= BOUND


@pytest.mark.slow  # ~30 s: NNCF quantizes the IR up to five times
def test_openvino_keeps_the_layer_reading_the_broken_tensor_in_float(models, digits, tmp_path):
    import openvino as ov

    # NNCF's INT8 of this 8x8 net agrees 94% with FP32 before the break: the bound sits under that
    healthy_agreement, int8, mixed, out, *_ = _search(models, digits, "openvino", tmp_path, bound=90.0)
    assert healthy_agreement >= 90.0 and int8.meta["agreement_check"]["top1_agreement"] < 50
    info = mixed.meta["mixed"]
    assert info["meets_bound"] and info["agreement"] >= 90.0
    assert info["tries"][0]["float_layers"] == ["broken.2"]   # the broken layer first, by its module name
    # NNCF quantizes a tensor at the input of the op that reads it (a FakeQuantize before the next convolution):
    # in the mixed file the broken tensor goes to that convolution unquantized.
    def readers(xml: str) -> set[str]:
        graph = ov.Core().read_model(str(out / "artifacts" / "openvino" / xml))
        relu = next(op for op in graph.get_ordered_ops() if op.get_friendly_name() == "__module.broken.2/aten::relu/Relu")
        return {t.get_node().get_type_name() for t in relu.output(0).get_target_inputs()}

    assert readers("model_int8.xml") == {"FakeQuantize"} and readers("model_mixed.xml") == {"Convolution"}


@pytest.mark.slow  # ~40 s: three LiteRT conversions
def test_litert_keeps_the_broken_layer_in_float(models, digits, tmp_path):
    """LiteRT's mechanism (PT2E annotations dropped for the layer and its neighbours), given the layer: the
    LiteRT per-layer ranking is ``edgekit.quant_debug``'s, checked in its own tests."""
    import dataclasses

    _, broken = models
    val = validation_set(broken, digits.val)
    fp32, int8, request = _files(broken, "tflite", digits, tmp_path)
    assert file_check(int8, tmp_path, val, 1)["top1_agreement"] < 50
    mixed = BACKENDS.get("tflite")().compile(broken, Precision.MIXED,
                                             dataclasses.replace(request, float_layers=("broken.2",)))
    assert mixed.name == "tflite-mixed" and (tmp_path / mixed.path).name == "model_mixed.tflite"
    assert file_check(mixed, tmp_path, val, 1)["top1_agreement"] >= BOUND
    assert {"relu_1", "conv2d_2"} <= set(mixed.meta["nodes_excluded"])   # the layer and the conv reading it
    assert mixed.meta["int8_tensors"] > 0                                 # the rest is still INT8


def _fake(name: str, precision: str, top1: float, p50: float):
    from edgekit.backends import Artifact

    return Artifact(name=name, backend=name.split("-")[0], precision=precision, path="x", files=["x"],
                    runtime="onnxruntime", runtime_version="1", input_shape=[1, 8, 8],
                    metrics={"accuracy": {"top1": top1}, "latency": {"p50_ms": p50, "measured": "host"}})


def test_a_mixed_file_is_chosen_only_when_faster_than_fp32():
    from edgekit.decisions import select_precisions
    from edgekit.reports.reasons import fill_details

    x86 = load_target("x86-cpu")
    slow = [_fake("ort-fp32", "fp32", 90.0, 1.0), _fake("ort-int8", "int8", 80.0, 0.5),
            _fake("ort-mixed", "mixed", 90.0, 1.02)]
    (d,) = select_precisions(slow, x86, 90.0, 1.0)
    assert d.chosen == "ort-fp32" and slow[2].meta["selection"] == ReasonCode.MIXED_NOT_FASTER
    fill_details([d], None, [])
    assert "not faster than the backend's FP32 file (1.020 vs 1.000 ms)" in d.candidates[2].detail
    fast = [_fake("ort-fp32", "fp32", 90.0, 1.0), _fake("ort-int8", "int8", 80.0, 0.5),
            _fake("ort-mixed", "mixed", 89.8, 0.6)]
    (d,) = select_precisions(fast, x86, 90.0, 1.0)
    assert d.chosen == "ort-mixed" and fast[1].meta["selection"] == ReasonCode.DROP_OVER_BOUND


@pytest.mark.slow  # ~40 s: a whole compress run with precision: auto on two backends
def test_compress_auto_lists_the_layers_kept_in_float(models, digits, tmp_path):
    import edgekit

    _, broken = models
    recipe = tmp_path / "auto.yaml"
    recipe.write_text("name: mixed\nstages: []\ncompile: {precisions: [auto], min_agreement: 95, "
                      "max_accuracy_drop: 2, backends: [onnxruntime]}\nprofile: {warmup: 2, runs: 20, max_seconds: 1}\n")
    edgekit.compress(broken.module, "digits", target="x86-cpu", recipe=recipe, out=tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    arts = {a["name"]: a for a in manifest["artifacts"]}
    mixed = arts["onnxruntime-mixed"]
    assert mixed["precision"] == "mixed" and "broken.2" in mixed["meta"]["mixed"]["float_layers"]
    cost = mixed["meta"]["mixed"]["latency"]
    assert cost["p50_ms"] and cost["int8_p50_ms"] and cost["fp32_p50_ms"] and cost["vs_fp32"]
    assert mixed["metrics"]["agreement"]["top1_agreement"] >= 90   # the test split, through its runtime
    (d,) = [d for d in manifest["precision_selection"] if d["backend"] == "onnxruntime"]
    row = next(c for c in d["candidates"] if c["artifact"] == "onnxruntime-mixed")
    assert row["chosen"] == (row["eligible"] and d["chosen"] == "onnxruntime-mixed")
    if cost["vs_fp32"] >= 1:
        assert not row["chosen"]
    report = (tmp_path / "b" / "report.md").read_text()
    assert "## Mixed precision" in report and "kept in float `broken.2`" in report
