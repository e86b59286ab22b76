"""Quantization: calibration sets, INT8 compilers (ONNX Runtime, OpenVINO, LiteRT, TensorRT inputs),
``precision: auto`` and the quantize (QAT) stage. Tiny model (digits teacher), real runtimes."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.backends import BACKENDS, Artifact, CompileRequest
from edgekit.calibration import balanced_indices, draw_calibration, load_calibration, save_calibration
from edgekit.data.core import TensorImageDataset
from edgekit.errors import EdgekitError
from edgekit.models import LoadedModel, load_checkpoint
from edgekit.training.default_teacher import default_teacher_path
from edgekit.profiling.artifacts import session_logits
from edgekit.target import load_target
from edgekit.vocab import Part, ReasonCode

MAX_DROP = 2.0  # points on the 269-image digits test split (one image = 0.37 pt)


@pytest.fixture(scope="module")
def teacher() -> LoadedModel:
    return load_checkpoint(default_teacher_path())


@pytest.fixture(scope="module")
def calibration(digits, teacher):
    return draw_calibration(digits.train, teacher.spec, 300, seed=0)


def _top1(backend: str, artifact: Artifact, root: Path, spec, ds) -> float:
    session = BACKENDS.get(backend)().load(artifact, root, 1)
    logits, labels = session_logits(session, spec, ds)
    return float((logits.argmax(1) == labels).mean() * 100)


def _compile(backend: str, precision: str, teacher, calibration, root: Path, target: str = "x86-cpu", **kw):
    request = CompileRequest(out_dir=root, target=load_target(target), calibration=calibration.inputs, **kw)
    return BACKENDS.get(backend)().compile(teacher, precision, request)


@pytest.fixture(scope="module")
def fp32_top1(teacher, digits):
    from edgekit.training import evaluate_module

    return evaluate_module(teacher.module, teacher.spec, digits.test)["top1"]


# --- calibration -------------------------------------------------------------------------------

def test_calibration_is_class_balanced_deterministic_and_model_ready(digits, teacher, calibration):
    counts = calibration.class_counts()
    assert sum(counts.values()) == 300 and len(counts) == 10
    assert max(counts.values()) - min(counts.values()) <= 1
    again = draw_calibration(digits.train, teacher.spec, 300, seed=0)
    assert np.array_equal(again.indices, calibration.indices) and np.array_equal(again.inputs, calibration.inputs)
    other = draw_calibration(digits.train, teacher.spec, 300, seed=1)
    assert not np.array_equal(other.indices, calibration.indices)
    # model-ready: exactly spec.prepare of the drawn training images
    images = torch.stack([digits.train[int(i)][0] for i in calibration.indices[:5]])
    assert np.allclose(calibration.inputs[:5], teacher.spec.prepare(images).numpy())
    assert calibration.inputs.dtype == np.float32 and calibration.inputs.shape[1:] == teacher.spec.input_shape


def test_balanced_indices_when_a_class_runs_out():
    labels = np.array([0] * 50 + [1] * 3)
    idx = balanced_indices(labels, len(labels), 20, seed=0)
    assert len(idx) == 20 and len(set(idx)) == 20
    assert (labels[idx] == 1).sum() == 3        # all of the rare class, the rest from the other


def test_calibration_npz_round_trip(tmp_path, calibration):
    path = tmp_path / "calibration.npz"
    sha = save_calibration(calibration, path)
    assert len(sha) == 64
    back = load_calibration(path)
    assert np.array_equal(back.inputs, calibration.inputs) and np.array_equal(back.labels, calibration.labels)
    bad = tmp_path / "bad.npz"
    np.savez(bad, other=np.zeros(3))
    with pytest.raises(EdgekitError, match="not a calibration set"):
        load_calibration(bad)


def test_calibration_warns_when_few_and_fails_when_none(teacher, capsys):
    few = TensorImageDataset(torch.zeros(20, 1, 8, 8, dtype=torch.uint8), np.arange(20) % 10)
    cal = draw_calibration(few, teacher.spec, 300)
    assert len(cal) == 20
    assert "only 20 calibration images" in capsys.readouterr().err
    empty = TensorImageDataset(torch.zeros(0, 1, 8, 8, dtype=torch.uint8), np.zeros(0))
    with pytest.raises(EdgekitError, match="no images to calibrate"):
        draw_calibration(empty, teacher.spec, 300)


# --- ONNX Runtime / OpenVINO --------------------------------------------------------------------

def test_onnxruntime_int8_qdq_accuracy_size_and_activation_choice(tmp_path, teacher, digits, calibration, fp32_top1):
    fp32 = _compile("onnxruntime", "fp32", teacher, calibration, tmp_path)
    int8 = _compile("onnxruntime", "int8", teacher, calibration, tmp_path)
    assert int8.meta["quant_format"] == "QDQ" and int8.meta["per_channel"]
    assert int8.meta["activation_type"] == "U8"          # x86: the fast U8S8 path, recorded
    assert fp32.bytes / int8.bytes >= 3.0
    assert fp32_top1 - _top1("onnxruntime", int8, tmp_path, teacher.spec, digits.test) <= MAX_DROP
    s8 = _compile("onnxruntime", "int8", teacher, calibration, tmp_path / "s8",
                  options={"onnxruntime": {"activation_type": "S8"}})
    assert s8.meta["activation_type"] == "S8"
    from edgekit.backends.onnx_quant import activation_profile, reduce_range_choice, x86_without_vnni

    # U8S8 on x86 without VNNI saturates int16 sums: weights get 7 bits there (checked in the file itself).
    assert int8.meta["reduce_range"] is x86_without_vnni() and s8.meta["reduce_range"] is False
    assert _max_int8_weight(tmp_path / int8.path) <= (64 if x86_without_vnni() else 127)
    seven = _compile("onnxruntime", "int8", teacher, calibration, tmp_path / "rr",
                     options={"onnxruntime": {"reduce_range": True}})
    assert seven.meta["reduce_range"] is True and _max_int8_weight(tmp_path / "rr" / seven.path) <= 64
    with pytest.raises(EdgekitError, match="reduce_range 'sometimes' is not true, false or auto"):
        reduce_range_choice("ort-u8", {"onnxruntime": {"reduce_range": "sometimes"}})

    assert activation_profile(load_target("rpi4"), {}) == "ort-s8-arm"     # Arm: signed, recorded with why
    assert activation_profile(load_target("jetson-orin-nano"), {}, for_tensorrt=True) == "tensorrt"


def _max_int8_weight(path) -> int:
    """Largest |value| among the INT8 initializers (quantized weights) of a QDQ ONNX file."""
    import onnx
    from onnx import numpy_helper

    weights = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
               if t.data_type == onnx.TensorProto.INT8 and len(t.dims) > 1]
    assert weights, "no INT8 weights in the QDQ model"
    return int(max(abs(w.astype(int)).max() for w in weights))


def test_int8_without_calibration_is_a_clear_error(tmp_path, teacher):
    request = CompileRequest(out_dir=tmp_path, target=load_target("x86-cpu"))
    with pytest.raises(EdgekitError, match="calibration"):
        BACKENDS.get("onnxruntime")().compile(teacher, "int8", request)


def test_openvino_weights_nncf_left_in_float_get_int8_compression():
    """Trained MobileNetV3s come out of nncf.quantize with their squeeze-excitation convolutions in float
    (18 layers, 40% of the weights; random-weight ones do not, so this starts from an unquantized IR):
    every Convolution/MatMul left with float weights gets 8-bit weight-only compression."""
    import nncf
    import openvino as ov

    from edgekit.backends.openvino_quant import _compress_float_weights, _float_weight_layers
    from edgekit.models import load_model

    model = load_model("builtin:mobilenetv3s_32?width_mult=0.5", num_classes=10, input_size=(16, 16))
    ov_model = ov.convert_model(model.module.eval(), example_input=torch.zeros(1, *model.spec.input_shape))
    before = _float_weight_layers(ov_model)
    assert before > 10
    compressed, count = _compress_float_weights(nncf, ov_model)
    assert count == before and _float_weight_layers(compressed) == 0
    x = np.random.default_rng(0).normal(size=(2, *model.spec.input_shape)).astype(np.float32)
    ref = ov.Core().compile_model(ov_model, "CPU")(x)[0]
    out = ov.Core().compile_model(compressed, "CPU")(x)[0]
    np.testing.assert_allclose(out, ref, atol=0.05 * float(np.abs(ref).max()))


def test_openvino_int8_nncf_accuracy(tmp_path, teacher, digits, calibration, fp32_top1):
    int8 = _compile("openvino", "int8", teacher, calibration, tmp_path)
    assert int8.meta["method"] == "nncf.quantize"
    xml = (tmp_path / int8.path).read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml
    assert fp32_top1 - _top1("openvino", int8, tmp_path, teacher.spec, digits.test) <= MAX_DROP


def test_openvino_accuracy_control_respects_the_bound(tmp_path, teacher, digits, calibration, fp32_top1):
    from edgekit.compilation import _validation

    val = _validation(digits, teacher)
    int8 = _compile("openvino", "int8", teacher, calibration, tmp_path, validation=val, max_accuracy_drop=1.0)
    assert int8.meta["method"] == "nncf.quantize_with_accuracy_control" and int8.meta["max_accuracy_drop"] == 1.0
    assert fp32_top1 - _top1("openvino", int8, tmp_path, teacher.spec, digits.test) <= MAX_DROP


# --- TFLite / LiteRT ----------------------------------------------------------------------------

def test_tflite_fp32_fp16_int8(tmp_path, teacher, digits, calibration, fp32_top1):
    arts = {p: _compile("tflite", p, teacher, calibration, tmp_path, target="rpi4") for p in ("fp32", "fp16", "int8")}
    assert all(a.layout == "NHWC" for a in arts.values())
    assert arts["fp32"].meta["int8_tensors"] == 0 and arts["int8"].meta["int8_tensors"] > 0
    assert arts["int8"].meta["io"] == "int8 in, int8 out"    # full integer: Session (de)quantizes
    assert arts["fp32"].bytes / arts["int8"].bytes >= 3.0
    assert arts["fp32"].bytes / arts["fp16"].bytes >= 1.7
    top = {p: _top1("tflite", a, tmp_path, teacher.spec, digits.test) for p, a in arts.items()}
    assert abs(top["fp32"] - fp32_top1) < 1e-6 and abs(top["fp16"] - fp32_top1) <= 0.5
    assert fp32_top1 - top["int8"] <= MAX_DROP


def test_shared_relu_gets_one_module_per_use():
    import torchvision

    from edgekit.backends.tflite_prep import prepare_for_pt2e, shared_activation_modules

    model = torchvision.models.resnet18(num_classes=10).eval()
    sample = (torch.randn(1, 3, 32, 32),)
    assert shared_activation_modules(model, sample)                     # BasicBlock reuses self.relu
    fixed, fixes = prepare_for_pt2e(model, sample)
    assert not shared_activation_modules(fixed, sample) and fixes
    assert torch.allclose(fixed(*sample), model(*sample), atol=1e-5)   # same function


class _IndexArith(nn.Module):
    """A conv net whose channel scale comes from integer index arithmetic, as EdgeNeXt's positional
    encoding does (``2 * torch.div(arange, 2, rounding_mode='floor')``: an int64 mul)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3), nn.Linear(8, 4)

    def forward(self, x):
        k = 2 * torch.div(torch.arange(8), 2, rounding_mode="floor")       # int64 tensor
        y = self.conv(x) * (1.0 + k.float() / 8).view(1, -1, 1, 1)
        return self.fc(y.mean((2, 3)))


def test_tflite_int8_leaves_integer_tensors_unobserved(tmp_path, teacher, calibration, digits):
    torch.manual_seed(0)
    model = LoadedModel(_IndexArith().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    request = CompileRequest(out_dir=tmp_path, target=load_target("rpi4"), calibration=calibration.inputs[:16])
    art = BACKENDS.get("tflite")().compile(model, "int8", request)   # was: "histogram_cpu" not implemented for 'Long'
    assert art.meta["int8_tensors"] > 0 and any("integer tensors" in f for f in art.meta["graph_fixes"])
    session = BACKENDS.get("tflite")().load(art, tmp_path, 1)
    x = calibration.inputs[16:48]
    got = np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))])
    with torch.no_grad():
        want = model.module(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()       # quantized, not broken


class _TinyActivations(nn.Module):
    """Activations of ~1e-5, below litert-torch's 2^-12 scale floor (as in a pruned random-weight LeViT);
    no biases, so the logits carry the input and not a constant."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, bias=False), nn.Linear(8, 4, bias=False)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x * 1e-5)).mean((2, 3)))


def _int8_logits(model, calibration, root):
    """(artifact, LiteRT INT8 logits, PyTorch logits) on 64 calibration-split images not used to calibrate."""
    request = CompileRequest(out_dir=root, target=load_target("rpi4"), calibration=calibration.inputs[:16])
    art = BACKENDS.get("tflite")().compile(model, "int8", request)
    session = BACKENDS.get("tflite")().load(art, root, 1)
    x = calibration.inputs[16:80]
    got = np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))])
    with torch.no_grad():
        want = model.module(torch.from_numpy(x)).numpy()
    return art, got, want


def test_tflite_int8_resolves_activations_below_litert_scale_floor(tmp_path, teacher, calibration):
    torch.manual_seed(0)
    model = LoadedModel(_TinyActivations().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    art, got, want = _int8_logits(model, calibration, tmp_path)
    # was all zeros: under a 2^-12 scale every tensor of this model quantized to 0
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()
    assert not art.meta["activations_below_litert_floor"].startswith("0 of")


def test_tflite_int8_above_the_floor_is_litert_torchs_own_quantization(tmp_path, teacher, calibration, monkeypatch):
    import litert_torch.quantize.pt2e_quantizer as pq

    import edgekit.backends.tflite_quantizer as tq

    ours = _int8_logits(teacher, calibration, tmp_path / "ours")[0]
    assert ours.meta["activations_below_litert_floor"].startswith("0 of")
    monkeypatch.setattr(tq, "int8_config", lambda: pq.get_symmetric_quantization_config(is_per_channel=True))
    theirs = _int8_logits(teacher, calibration, tmp_path / "theirs")[0]
    assert ours.sha256 == theirs.sha256                # same file, byte for byte


class _L2Normalized(nn.Module):
    """``F.normalize`` over channels, as SwiftFormer's additive attention does: LiteRT fuses it into one
    L2_NORMALIZATION op, whose int8 kernel accepts only the output scale 1/128; the mean after it is a
    same-scale op, where a fixed 1/128 scale alone saturated the logits."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(torch.nn.functional.normalize(self.conv(x).flatten(2).transpose(1, 2), dim=-1).mean(1))


def test_tflite_int8_l2_normalization_runs_in_float_and_loads(tmp_path, teacher, calibration):
    torch.manual_seed(0)
    model = LoadedModel(_L2Normalized().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    # was: the file failed to load, "l2norm.cc:61 output->params.scale != (1. / 128.)"
    art, got, want = _int8_logits(model, calibration, tmp_path)
    assert art.meta["ops"].get("L2_NORMALIZATION") == 1
    assert any("L2 normalization" in f for f in art.meta["graph_fixes"])
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()


class _TalkingHeads(nn.Module):
    """timm's talking-heads attention (CaiT) on 16-channel tokens: a linear layer on each side of its softmax,
    so the softmax's output is observed through a permute, and LiteRT's int8 SOFTMAX accepts only the output
    scale 1/256."""

    def __init__(self):
        from timm.models.cait import TalkingHeadAttn

        super().__init__()
        self.conv, self.attn, self.fc = nn.Conv2d(1, 16, 3), TalkingHeadAttn(16, num_heads=4), nn.Linear(16, 4)

    def forward(self, x):
        return self.fc(self.attn(self.conv(x).flatten(2).transpose(1, 2)).mean(1))


def test_tflite_int8_observed_softmax_runs_in_float_and_loads(tmp_path, teacher, calibration, monkeypatch):
    import edgekit.backends.tflite_quantizer as tq

    torch.manual_seed(0)
    model = LoadedModel(_TalkingHeads().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    art, got, want = _int8_logits(model, calibration, tmp_path / "float")
    assert any("softmax" in f for f in art.meta["graph_fixes"])
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()
    # the rule's oracle: without it the same model's file fails to load
    monkeypatch.setattr(tq, "float_softmaxes", lambda gm: [])
    with pytest.raises(Exception, match="1.f / 256"):
        _int8_logits(model, calibration, tmp_path / "int8-softmax")


class _WideReLU6(nn.Module):
    """Convolutions whose outputs reach about +-100 before a ReLU6 (as pretrained ReLU6 networks' do), then a head."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1), nn.Linear(16, 4)
        with torch.no_grad():
            self.c1.weight.mul_(12.0)
            self.c2.weight.mul_(4.0)

    def forward(self, x):
        x = nn.functional.relu6(self.c2(nn.functional.relu6(self.c1(x))))
        return self.fc(x.mean((2, 3)))


def _conv_output_scales(path: Path) -> list[float]:
    """The int8 scale of each convolution's output tensor in a LiteRT file."""
    from edgekit.quant_debug.litert_capture import _interpreter

    it = _interpreter(path)
    details = {d["index"]: d for d in it.get_tensor_details()}
    return [float(details[int(i)]["quantization"][0]) for op in it._get_ops_details()
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D") for i in op["outputs"]]


def test_tflite_int8_quantizes_a_relu6_on_its_own_range(tmp_path, teacher, calibration, monkeypatch):
    """A clamp after a convolution is quantized over 0..6, not over the convolution's wider range (litert-torch
    shares the convolution's observer with it; EfficientNet-Lite0's real weights agreed 91.7% -> 100%)."""
    import edgekit.backends.tflite_quantizer as tq

    torch.manual_seed(0)
    model = LoadedModel(_WideReLU6().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    art, got, want = _int8_logits(model, calibration, tmp_path / "fused")
    assert sum("clamp" in f for f in art.meta["graph_fixes"]) == 1
    scales = _conv_output_scales(tmp_path / "fused" / art.path)
    assert len(scales) == 2 and max(scales) <= 1.05 * 6 / 255, scales   # 256 levels over 0..6
    monkeypatch.setattr(tq, "fused_clamps", lambda gm, config: [])
    shared, got_shared, _ = _int8_logits(model, calibration, tmp_path / "shared")
    assert max(_conv_output_scales(tmp_path / "shared" / shared.path)) > 5 * 6 / 255   # over the +-40 before it
    assert np.abs(got - want).mean() < np.abs(got_shared - want).mean()


class _EcaBlock(nn.Module):
    """A stem, then timm's ECA ResNet bottleneck with a projection shortcut (``x * y.expand_as(x)`` before the
    residual add): LiteRT's converter rejected its ``tfl.mul`` after the NHWC layout pass; ``x * y`` converts."""

    def __init__(self):
        import timm

        super().__init__()
        self.stem = nn.Conv2d(1, 64, 3, padding=1)
        self.block = timm.create_model("ecaresnet26t", pretrained=False).layer1[0]
        self.fc = nn.Linear(256, 4)

    def forward(self, x):
        return self.fc(self.block(self.stem(x)).mean((2, 3)))


def _tflite_logits(model, calibration, root, precision):
    """(LiteRT artifact for rpi4, its logits, PyTorch's) on 8 calibration-split images."""
    art = _compile("tflite", precision, model, calibration, root, target="rpi4")
    session = BACKENDS.get("tflite")().load(art, root, 1)
    x = calibration.inputs[:8]
    got = np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))])
    with torch.no_grad():   # image by image, as the batch-1 file runs (a model may mix the images of a batch)
        want = np.concatenate([model.module(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    return art, got, want


class _PointwiseConv1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem, self.mix, self.fc = nn.Conv2d(1, 16, 3), nn.Conv1d(16, 24, 1), nn.Linear(24, 4)

    def forward(self, x):
        return self.fc(self.mix(self.stem(x).flatten(2)).mean(-1))


def test_tflite_fp32_writes_a_pointwise_conv1d_as_a_linear_layer(tmp_path, teacher, calibration):
    torch.manual_seed(0)
    model = LoadedModel(_PointwiseConv1d().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    art, got, want = _tflite_logits(model, calibration, tmp_path, "fp32")
    assert any("Conv1d" in f for f in art.meta["graph_fixes"])
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.slow   # builds and converts EfficientViM (~30 s)
def test_tflite_fp32_converts_efficientvims_state_space_mixer(tmp_path, teacher, calibration):
    """Its pointwise Conv1d layers made LiteRT's converter fail ("'tfl.batch_matmul' op found invalid output
    rank"); written as linear layers they convert."""
    from edgekit.models import load_model

    model = load_model("timm:efficientvim_m4_dist?pretrained=false", input_size=(64, 64))
    art = _compile("tflite", "fp32", model, calibration, tmp_path, target="rpi4")
    session = BACKENDS.get("tflite")().load(art, tmp_path, 1)
    x = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    got = np.concatenate([session.run(x[i:i + 1]) for i in range(len(x))])
    with torch.no_grad():
        want = model.module.eval()(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-3 * np.abs(want).max()


class _HaloBlock(nn.Module):
    """timm's halo attention (pad, two unfolds into overlapping windows, relative logits added as two expanded
    and permuted 5-d tensors): LiteRT's converter failed first on a 6-d pad, then on the 5-d add."""

    def __init__(self):
        from timm.layers.halo_attn import HaloAttn

        super().__init__()
        self.stem, self.fc = nn.Conv2d(1, 16, 3, padding=1), nn.Linear(16, 4)
        self.attn = HaloAttn(16, 16, num_heads=2, block_size=4, halo_size=1)

    def forward(self, x):
        return self.fc(self.attn(self.stem(x)).mean((2, 3)))


class _OneDimensionalAttention(nn.Module):
    """CSATv2's spatial attention: tokens of one channel, ``softmax(q @ k.T) @ v`` where ``q @ k.T`` is 1x1 per
    image and the second product contracts a dimension of 1; the converter rejected it ("contracting dimension
    sizes must match for lhs/rhs"). Like CSATv2 it multiplies (B, N) matrices, so images of a batch mix: the
    batch-1 file is compared with the model run image by image.)"""

    def __init__(self):
        super().__init__()
        self.stem, self.qkv, self.fc = nn.Conv2d(1, 1, 3, padding=1), nn.Linear(1, 3), nn.Linear(1, 4)

    def forward(self, x):
        q, k, v = self.qkv(self.stem(x).flatten(2).transpose(1, 2)).unbind(-1)   # tokens (B, N, 1) -> each (B, N)
        attended = (q @ k.transpose(-1, -2)).softmax(-1) @ v           # (B, B) @ (B, N)
        return self.fc(attended.mean(-1, keepdim=True))


class _ResampledPositions(nn.Module):
    """A ViT built for any image size: its position embedding is resampled in forward with an antialiased bicubic
    interpolation (``aten._upsample_bicubic2d_aa``), which LiteRT cannot lower; at a fixed size it is a constant."""

    def __init__(self):
        super().__init__()
        self.patch, self.fc = nn.Conv2d(1, 16, 2, stride=2), nn.Linear(16, 4)
        self.positions = nn.Parameter(torch.randn(1, 16, 3, 3))

    def forward(self, x):
        x = self.patch(x)
        grid = nn.functional.interpolate(self.positions, size=x.shape[-2:], mode="bicubic", antialias=True)
        return self.fc((x + grid).mean((2, 3)))


# Graph rules LiteRT's converter needs: (a module the converter rejected without the rule, what graph_fixes says).
CONVERTER_RULES = {"expand before a broadcasting mul": (_EcaBlock, ("expand",)),
                   "halo attention": (_HaloBlock, ("unfold", "moved after the permute")),
                   "outer product": (_OneDimensionalAttention, ("outer product",)),
                   "unlowerable constant": (_ResampledPositions, ("computed ahead",))}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("case", sorted(CONVERTER_RULES))
def test_tflite_converts_what_a_graph_rule_rewrites_and_keeps_the_logits(tmp_path, teacher, calibration, case,
                                                                         precision):
    build, fixes = CONVERTER_RULES[case]
    torch.manual_seed(0)
    model = LoadedModel(build().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    art, got, want = _tflite_logits(model, calibration, tmp_path, precision)
    assert all(any(fix in f for f in art.meta["graph_fixes"]) for fix in fixes), art.meta["graph_fixes"]
    assert np.abs(got - want).max() <= (1e-4 if precision == "fp32" else 0.1) * np.abs(want).max()


class _PerSampleKernels(nn.Module):
    """timm's CondConv2d: each image's kernel is mixed from 4 experts by a routing layer, and the batch is folded
    into a grouped convolution's groups. Exporting a dynamic batch fails ("convolution for kernel of unknown
    shape"); LiteRT's converter fails on a quantized kernel that is not a constant."""

    def __init__(self):
        from timm.layers import CondConv2d

        super().__init__()
        self.stem, self.route = nn.Conv2d(1, 16, 3, padding=1), nn.Linear(16, 4)
        self.cond = CondConv2d(16, 24, 3, padding=1, num_experts=4)
        self.fc = nn.Linear(24, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return self.fc(self.cond(x, torch.sigmoid(self.route(x.mean((2, 3))))).mean((2, 3)))


class _StandardizedConv(nn.Module):
    """timm's StdConv2d: a kernel computed from parameters only, which stays a constant to quantize."""

    def __init__(self):
        from timm.layers import StdConv2d

        super().__init__()
        self.conv, self.fc = StdConv2d(1, 8, 3), nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_only_kernels_computed_from_the_input_count_as_computed(teacher):
    from edgekit.backends.tflite_quantizer import computed_kernels

    x = torch.zeros(1, *teacher.spec.input_shape)
    per_sample = computed_kernels(torch.export.export(_PerSampleKernels().eval(), (x,)).module())
    assert [str(n.target) for n in per_sample] == ["aten.conv2d.default"]
    assert computed_kernels(torch.export.export(_StandardizedConv().eval(), (x,)).module()) == []


def test_per_sample_kernels_build_on_every_backend_with_a_fixed_batch(tmp_path, teacher, calibration, digits):
    torch.manual_seed(0)
    model = LoadedModel(_PerSampleKernels().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    x = calibration.inputs[:5]
    with torch.no_grad():
        want = np.concatenate([model.module(torch.from_numpy(x[i:i + 1])).numpy() for i in range(len(x))])
    for backend, precision, key, says, tolerance in [("onnxruntime", "fp32", "fixed_batch", "batch fixed at 1", 1e-4),
                                                     ("openvino", "fp32", "conversion", "batch fixed at 1", 1e-4),
                                                     ("tflite", "int8", "graph_fixes", "computed from the input", 0.1)]:
        target = "rpi4" if backend == "tflite" else "x86-cpu"
        art = _compile(backend, precision, model, calibration, tmp_path / backend, target=target)
        assert says in str(art.meta[key]), art.meta.get(key)
        session = BACKENDS.get(backend)().load(art, tmp_path / backend, 1)
        got = session.predict(x)   # 5 images, one at a time
        assert np.abs(got - want).max() <= tolerance * np.abs(want).max(), backend
        assert session_logits(session, model.spec, digits.test, limit=70)[0].shape == (70, 4)   # how profiling scores
    trt = _compile("tensorrt", "fp32", model, calibration, tmp_path / "trt", target="jetson-orin-nano")
    assert {k: v[0] for k, v in trt.meta["profile"].items()} == {"min": 1, "opt": 1, "max": 1}   # the file's batch


class _Svd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x):
        return torch.linalg.svdvals(self.conv(x)).mean(-1)


def test_unsupported_operator_error_names_op_and_target(tmp_path, teacher, calibration):
    model = LoadedModel(_Svd().eval(), teacher.spec.model_copy(update={"num_classes": 4}), "test", None)
    with pytest.raises(EdgekitError) as err:
        _compile("tflite", "fp32", model, calibration, tmp_path, target="rpi4")
    text = str(err.value)
    assert "\n" not in text and "svd" in text and "rpi4" in text and "operator" in text


@pytest.mark.skipif(not __import__("os").environ.get("EDGEKIT_TFLITE_RUNTIME_PYTHON"),
                    reason="set EDGEKIT_TFLITE_RUNTIME_PYTHON to a Python with tflite_runtime (tflite-runtime has "
                           "no wheel that works with numpy 2 here; e.g. a venv with numpy<2 tflite-runtime==2.14)")
def test_int8_tflite_loads_in_tflite_runtime(tmp_path, teacher, calibration):
    import os

    art = _compile("tflite", "int8", teacher, calibration, tmp_path, target="rpi4")
    script = ("import sys, numpy as np\nfrom tflite_runtime.interpreter import Interpreter\n"
              "it = Interpreter(sys.argv[1], num_threads=1); it.allocate_tensors()\n"
              "d = it.get_input_details()[0]; it.set_tensor(d['index'], np.zeros(d['shape'], d['dtype']))\n"
              "it.invoke(); print(it.get_tensor(it.get_output_details()[0]['index']).shape)")
    out = subprocess.run([os.environ["EDGEKIT_TFLITE_RUNTIME_PYTHON"], "-c", script, str(tmp_path / art.path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "(1, 10)" in out.stdout


# --- TensorRT (inputs built here; the engine builds on the device) -------------------------------

@pytest.fixture(scope="module")
def trt_int8(tmp_path_factory, teacher, calibration):
    root = tmp_path_factory.mktemp("trt")
    return root, _compile("tensorrt", "int8", teacher, calibration, root, target="jetson-orin-nano")


def test_tensorrt_qdq_onnx_runs_on_onnxruntime_close_to_fp32(trt_int8, teacher, digits, calibration, fp32_top1,
                                                             tmp_path):
    import onnx

    from edgekit.backends.onnxruntime import OrtSession

    root, art = trt_int8
    assert not art.runnable_here
    qdq = root / art.meta["build"]["onnx"]
    graph = onnx.load(str(qdq)).graph
    zero_points = [i for i in graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all(onnx.numpy_helper.to_array(z).dtype == np.int8 for z in zero_points)
    assert all(not onnx.numpy_helper.to_array(z).any() for z in zero_points)       # symmetric
    for simulate in (False, True):   # ORT's int8 kernels, and Q/DQ kept as float ops (the compress proxy)
        session = OrtSession(qdq, 1, simulate_qdq=simulate)
        logits, labels = session_logits(session, teacher.spec, digits.test)
        assert fp32_top1 - (logits.argmax(1) == labels).mean() * 100 <= MAX_DROP
    # The simulated graph really runs DequantizeLinear nodes: the float model's logits are not reproduced.
    fp32 = _compile("onnxruntime", "fp32", teacher, calibration, tmp_path)
    fp32_logits, _ = session_logits(BACKENDS.get("onnxruntime")().load(fp32, tmp_path, 1), teacher.spec, digits.test)
    assert 1e-4 < np.abs(logits - fp32_logits).max() < 0.2 * np.abs(fp32_logits).max()


def test_tensorrt_qdq_onnx_passes_polygraphy_lint(trt_int8):
    root, art = trt_int8
    polygraphy = shutil.which("polygraphy")
    if polygraphy is None:
        pytest.skip("polygraphy CLI not installed")
    out = subprocess.run([polygraphy, "check", "lint", str(root / art.meta["build"]["onnx"])],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout + out.stderr)[-1500:]


def test_tensorrt_calibration_cache_format(trt_int8):
    import onnx

    from edgekit.backends.trt_cache import format_cache, parse_cache

    root, art = trt_int8
    text = (root / "artifacts/trt/calibration.cache").read_text()
    version, algorithm, scales = parse_cache(text)
    assert text.splitlines()[0] == "TRT-100300-EntropyCalibration2" and version == 100300
    graph = onnx.load(str(root / "artifacts/trt/model.onnx")).graph
    assert graph.input[0].name in scales and len(scales) >= len(graph.node) // 2
    assert all(s > 0 and np.isfinite(s) for s in scales.values())
    assert parse_cache(format_cache(scales, "10.3.0"))[2] == pytest.approx(scales)   # exact float32 round trip
    assert format_cache({"x": 1.0}, "8.6.1") == "TRT-8601-EntropyCalibration2\nx: 3f800000\n"
    with pytest.raises(EdgekitError):
        parse_cache("TRT-1-Foo\nx: 1\n")


def test_tensorrt_build_commands_are_well_formed(trt_int8, teacher):
    root, art = trt_int8
    build = json.loads((root / "artifacts/trt/build_int8.json").read_text())
    c, h, w = teacher.spec.input_shape
    trtexec = shlex.split(build["commands"]["trtexec"])
    assert trtexec[0] == "trtexec" and "--int8" in trtexec and f"--onnx={build['onnx']}" in trtexec
    assert f"--minShapes=input:1x{c}x{h}x{w}" in trtexec and f"--maxShapes=input:8x{c}x{h}x{w}" in trtexec
    implicit = shlex.split(build["commands"]["trtexec_implicit"])
    assert "--calib=artifacts/trt/calibration.cache" in implicit
    ek = shlex.split(build["commands"]["edgekit"])
    assert ek[:3] == ["edgekit", "build-engine", "."] and (root / build["onnx"]).is_file()
    assert ek[ek.index("--max-batch") + 1] == "8"
    sh = (root / "artifacts/trt/build_int8.sh").read_text()
    assert subprocess.run(["sh", "-n", str(root / "artifacts/trt/build_int8.sh")]).returncode == 0
    assert build["commands"]["edgekit"] in sh and build["commands"]["trtexec"] in sh


def test_build_engine_without_tensorrt_is_one_line(cli, trt_int8):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here; this test checks the error where it is missing")
    except ImportError:
        pass
    root, _ = trt_int8
    out = cli("build-engine", str(root))
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "tensorrt" in lines[0] and "pip install" in lines[0]


def test_build_engine_with_real_tensorrt(trt_int8, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installable here (NVIDIA's index, GPU needed)")
    from edgekit.runtime.tensorrt_engine import build_engine, engine_plan

    root, art = trt_int8
    result = build_engine(engine_plan(art.model_dump(), root), tmp_path / "m.engine")
    assert result["bytes"] > 0 and trt.__version__


# The builder's TensorRT API calls (flags, profile, calibrator, explicit vs implicit INT8) are checked
# against a stand-in tensorrt module in tests/test_runtime.py.


# --- precision: auto ------------------------------------------------------------------------------

X86 = load_target("x86-cpu")  # a local target: the host's measurements are its latency


def _fake(name: str, precision: str, top1: float, p50: float) -> Artifact:
    return Artifact(name=name, backend=name.split("-")[0], precision=precision, path="x", files=["x"],
                    runtime="onnxruntime", runtime_version="1", input_shape=[1, 8, 8],
                    metrics={"accuracy": {"top1": top1}, "latency": {"p50_ms": p50, "measured": "host"}})


def test_auto_picks_fastest_within_bound():
    from edgekit.decisions import select_precisions

    arts = [_fake("tflite-fp32", "fp32", 90.0, 2.0), _fake("tflite-fp16", "fp16", 90.0, 2.1),
            _fake("tflite-int8", "int8", 89.5, 1.0)]
    (d,) = select_precisions(arts, X86, 90.0, 1.0)
    assert d.chosen == "tflite-int8" and arts[2].meta["chosen"] and not arts[0].meta["chosen"]
    assert d.reason is ReasonCode.FASTEST_WITHIN_BOUND
    assert arts[0].meta["selection"] == ReasonCode.SLOWER


def test_auto_rejects_int8_that_is_slower_or_too_inaccurate():
    from edgekit.decisions import select_precisions

    slower = [_fake("tflite-fp32", "fp32", 90.0, 1.0), _fake("tflite-int8", "int8", 90.0, 4.0)]  # MobileNetV3 case
    assert select_precisions(slower, X86, 90.0, 1.0)[0].chosen == "tflite-fp32"
    lossy = [_fake("ort-fp32", "fp32", 90.0, 2.0), _fake("ort-int8", "int8", 85.0, 0.5)]
    (d,) = select_precisions(lossy, X86, 90.0, 1.0)
    assert d.chosen == "ort-fp32" and lossy[1].meta["selection"] == ReasonCode.DROP_OVER_BOUND
    assert d.candidates[1].drop == pytest.approx(5.0)
    none = [_fake("ort-fp32", "fp32", 80.0, 2.0), _fake("ort-int8", "int8", 70.0, 0.5)]
    (d,) = select_precisions(none, X86, 90.0, 1.0)
    assert d.chosen == "ort-fp32" and d.reason is ReasonCode.NONE_WITHIN_BOUND   # kept the most accurate


def test_deploy_is_the_fastest_backend_choice_within_bound():
    """One answer for the user: across backends, the fastest per-backend choice; a backend whose
    choice missed the bound (kept only as its most accurate) loses to any that met it."""
    from edgekit.decisions import recommend, select_precisions

    arts = [_fake("openvino-fp32", "fp32", 90.0, 2.0), _fake("openvino-int8", "int8", 89.8, 0.6),
            _fake("onnxruntime-fp32", "fp32", 90.0, 1.8), _fake("onnxruntime-int8", "int8", 89.9, 0.7)]
    deploy = recommend(select_precisions(arts, X86, 90.0, 0.5))
    assert deploy.artifact == "openvino-int8" and deploy.reason is ReasonCode.FASTEST_CHOICE
    assert [(o.artifact, o.p50_ms) for o in deploy.others] == [("onnxruntime-int8", pytest.approx(0.7))]
    missed = [_fake("tflite-fp32", "fp32", 80.0, 0.1), _fake("openvino-fp32", "fp32", 90.0, 2.0)]
    assert recommend(select_precisions(missed, X86, 90.0, 0.5)).artifact == "openvino-fp32"
    assert recommend([]) is None


@pytest.mark.parametrize("fp32_ms, reference_top1, scored", [
    (2.0, None, {"openvino-int8", "onnxruntime-int8"}),     # INT8 within the bound, FP32 2x slower: skipped
    (1.03, None, "all"),                                    # FP32 within 5% of INT8: a near-tie, scored
    (2.0, 200.0, "all"),                                    # nothing within the bound: every file is needed
])
def test_score_needed_skips_only_what_no_decision_can_choose(teacher, digits, calibration, fp32_top1, tmp_path,
                                                            fp32_ms, reference_top1, scored):
    """profile.score: needed scores, per backend in order of p50, until a file is within the bound; a file more
    than 5% slower than that one is not scored. Oracle: the same real files all scored (score: all) give the
    same per-backend choices and the same deploy. The latencies are set by hand (INT8 at 1 ms) so each case
    is what it says; the files, sessions and accuracies are real."""
    import copy

    from edgekit.compilation import CompileUnit, score_unit
    from edgekit.decisions import recommend, select_precisions
    from edgekit.recipe import ProfileSettings
    from edgekit.training.evaluate import module_logits

    plan = [("openvino", "fp32"), ("openvino", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    ref_logits = module_logits(teacher.module, teacher.spec, digits.test)[0]
    final_top1 = fp32_top1
    units = []
    for needed in (True, False):
        unit = CompileUnit(Part.WHOLE, teacher, X86, plan, digits.test, teacher.spec)
        for backend, precision in plan:
            a = _compile(backend, precision, teacher, calibration, tmp_path / str(needed))
            a.meta["seconds"] = {"compile": 0.0, "profile": 0.0}
            a.metrics["latency"] = {"p50_ms": 1.0 if precision == "int8" else fp32_ms, "measured": "host"}
            unit.artifacts.append(a)
        bound = (MAX_DROP, reference_top1 if reference_top1 is not None else final_top1) if needed else None
        score_unit(unit, tmp_path / str(needed), ProfileSettings(), 1, ref_logits, None, bound)
        units.append(unit)
    lazy, full = units
    assert all(a.metrics["accuracy"]["samples"] == len(digits.test) for a in full.artifacts)
    expected = {a.name for a in lazy.artifacts} if scored == "all" else scored
    assert {a.name for a in lazy.artifacts if "accuracy" in a.metrics} == expected
    for a in lazy.artifacts:
        assert ("not_scored" in a.metrics) == (a.name not in expected)
        if a.name not in expected:
            assert a.metrics["not_scored"]["ratio"] == pytest.approx(2.0)
    if reference_top1 is None:   # (with an unreachable reference both choose "the most accurate", unscored aside)
        picks = [select_precisions(copy.deepcopy(u.artifacts), X86, final_top1, MAX_DROP) for u in (lazy, full)]
        assert [d.chosen for d in picks[0]] == [d.chosen for d in picks[1]]
        assert recommend(picks[0]).artifact == recommend(picks[1]).artifact
        skipped = [r for d in picks[0] for r in d.candidates if r.artifact not in expected]
        assert all(r.reason is ReasonCode.NOT_SCORED for r in skipped)


@pytest.mark.slow  # ~100 s on the shared 2-core box: five compiles incl. three LiteRT conversions
def test_auto_recipe_end_to_end_marks_one_choice_per_backend(cli, tmp_path):
    recipe = tmp_path / "auto.yaml"
    recipe.write_text("name: auto-test\nstages: []\ncompile: {precisions: [auto], max_accuracy_drop: 2.0}\n"
                      "profile: {warmup: 2, runs: 10, max_seconds: 1}\n")
    out = cli("compress", "-r", str(recipe), "-t", "rpi4", "-o", str(tmp_path / "b"), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    manifest = json.loads(out.stdout)
    names = {a["name"] for a in manifest["artifacts"]}
    assert {"tflite-fp32", "tflite-fp16", "tflite-int8", "onnxruntime-fp32", "onnxruntime-int8"} <= names
    for decision in manifest["precision_selection"]:
        chosen = [a for a in manifest["artifacts"] if a["backend"] == decision["backend"] and a["meta"]["chosen"]]
        assert len(chosen) == 1 and chosen[0]["name"] == decision["chosen"]
        assert decision["reason"] in set(ReasonCode) and decision["detail"]   # a code, and its English beside it
    assert manifest["calibration"]["sha256"] and (tmp_path / "b" / "calibration.npz").is_file()
    assert "Precision selection" in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.parametrize("target, expected", [
    pytest.param("rpi4", ["artifacts/model_int8.tflite"], marks=pytest.mark.slow),
    ("jetson-orin-nano", ["artifacts/trt/model_int8_qdq.onnx", "artifacts/trt/calibration.cache",
                          "artifacts/trt/build_int8.sh"]),
])
def test_targets_get_their_int8_artifacts(cli, tmp_path, target, expected):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: t\nstages: []\ncompile: {precisions: [target]}\nprofile: {warmup: 1, runs: 5, max_seconds: 1}\n")
    out = cli("compress", "-r", str(recipe), "-t", target, "-o", str(tmp_path / "b"), "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    for rel in expected:
        assert (tmp_path / "b" / rel).is_file(), rel


# --- quantize stage (QAT) ---------------------------------------------------------------------------

@pytest.mark.slow  # ~60 s under contention (export, QAT prepare, fake-quant evals)
def test_quantize_stage_qat_runs_and_keeps_architecture(digits, teacher, tmp_path):
    import copy

    from edgekit.stages import STAGES, StageContext

    model = copy.deepcopy(teacher)
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    stage = STAGES.get("quantize")(STAGES.get("quantize").Params(method="qat", always=True, epochs=1,
                                                                 max_steps_per_epoch=5, eval_limit=100))
    ctx = StageContext(model=model, teacher=teacher, data=digits, target=load_target("x86-cpu"), work_dir=tmp_path)
    result = stage.run(ctx)
    m = result.metrics
    assert m["qat"] and m["tensors_copied"] == len(before) and 0 <= m["ptq_simulated_val_top1"] <= 100
    after = result.model.module.state_dict()
    assert set(after) == set(before) and any(not torch.equal(after[k], before[k]) for k in before)
    skip = STAGES.get("quantize")(STAGES.get("quantize").Params(method="qat", max_accuracy_drop=100.0,
                                                                eval_limit=100))
    res2 = skip.run(StageContext(model=copy.deepcopy(teacher), teacher=teacher, data=digits,
                                 target=load_target("x86-cpu"), work_dir=tmp_path / "2"))
    assert not res2.metrics["qat"] and not res2.changed_model and "not needed" in res2.metrics["why"]


def test_selection_is_per_part_and_deploy_is_the_whole_model():
    """A split model's head and tail candidates are chosen among themselves (never against the whole
    model's), and the deploy recommendation stays a whole-model artifact."""
    from edgekit.decisions import recommend, select_precisions

    arts = [_fake("onnxruntime-fp32", "fp32", 90.0, 2.0), _fake("onnxruntime-int8", "int8", 89.9, 1.0),
            _fake("head-onnxruntime-fp32", "fp32", 90.0, 0.2), _fake("head-onnxruntime-int8", "int8", 89.8, 0.1)]
    for a in arts:
        a.backend = "onnxruntime"
    for a in arts[2:]:
        a.meta["split_part"] = "head"
    decisions = select_precisions(arts, X86, 90.0, 1.0)
    assert [(d.part, d.chosen) for d in decisions] == [(Part.WHOLE, "onnxruntime-int8"),
                                                        (Part.HEAD, "head-onnxruntime-int8")]
    assert recommend(decisions).artifact == "onnxruntime-int8"
