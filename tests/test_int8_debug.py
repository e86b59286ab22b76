"""The per-layer INT8 debugger (``edgekit debug``, ``edgekit.quant_debug``) on a model with one layer broken for
INT8 on purpose, compiled through edgekit's real INT8 paths and measured through the real runtimes.

The broken model: block ``features.1``'s convolution has output channel 0 scaled by 1e4 and block ``features.2``'s
convolution divides that input channel back, so FP32 computes the same function (ReLU is positively homogeneous)
but the activation leaving ``features.1`` has one channel 10^4 times the others: its per-tensor INT8 scale rounds
every other channel to zero. The oracle is that construction, not the debugger: it must name a layer of block
``features.1`` as the first divergence, and the healthy twin (same weights, no scaling) must show none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from edgekit.backends import BACKENDS, CompileRequest
from edgekit.models import LoadedModel
from edgekit.models.layer_names import (layer_of_litert_name, layer_of_onnx_name, layer_of_onnx_node,
                                        layer_of_openvino_name, nodes_of)
from edgekit.quant_debug import DivergenceRule, compare_files, first_divergence, LayerError
from edgekit.spec import ModelSpec
from edgekit.target import load_target

BROKEN = "features.1"      # the block whose output carries the outlier channel
SIZE = 16
# ONNX Runtime in the default tier (~2 s); OpenVINO's NNCF quantization takes ~8 s a model: slow tier
BACKENDS_HERE = [("onnxruntime", "onnxruntime"), pytest.param("openvino", "openvino", marks=pytest.mark.slow)]


class Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Net(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(Block(3, width), Block(width, width), Block(width, width), Block(width, width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 4)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def net(broken: bool, factor: float = 1e4) -> Net:
    """Kaiming-initialised (activations stay alive through four blocks); the head centred on the features so
    the four classes are all predicted."""
    torch.manual_seed(0)
    m = Net().eval()
    with torch.no_grad():
        for block in m.features:
            nn.init.kaiming_normal_(block.conv.weight, nonlinearity="relu")
            block.conv.bias.zero_()
        x = torch.from_numpy(images(256, 1))
        f = torch.flatten(m.pool(m.features(x)), 1)
        m.fc.weight.copy_(torch.randn(4, f.shape[1]) / f.std(0).mean())
        m.fc.bias.copy_(-(m.fc.weight @ f.mean(0)))
        if broken:
            conv = m.features[1].conv
            conv.weight[0] *= factor
            conv.bias[0] *= factor
            m.features[2].conv.weight[:, 0] /= factor
    return m


def images(n: int, seed: int) -> np.ndarray:
    """Noise over a colour and a brightness of its own per image, each image scaled to a maximum of 1: pooled
    features then differ between images (plain noise pools to nearly the same vector for every image, and a head
    telling those apart amplifies any rounding), and every image spans the input range (NNCF calibrates the
    input's range on the mean of the images' maxima: dark images would clip the bright ones)."""
    rng = np.random.RandomState(seed)
    x = rng.rand(n, 1, 1, 1) * (0.3 * rng.rand(n, 3, SIZE, SIZE) + 0.7 * rng.rand(n, 3, 1, 1))
    return (x / x.max(axis=(1, 2, 3), keepdims=True)).astype(np.float32)


def compile_pair(backend: str, module: nn.Module, root: Path, target: str = "x86-cpu") -> tuple[Path, Path, dict]:
    """FP32 and INT8 files of ``module`` built by edgekit's backend (its real quantizer and calibration)."""
    model = LoadedModel(module, ModelSpec(input_shape=(3, SIZE, SIZE), num_classes=4), "test:outlier-net", None)
    request = CompileRequest(out_dir=root, target=load_target(target), calibration=images(32, 0))
    fp32 = BACKENDS.get(backend)().compile(model, "fp32", request)
    int8 = BACKENDS.get(backend)().compile(model, "int8", request)
    return root / fp32.path, root / int8.path, {"layout": int8.layout or "NCHW"}


def test_the_broken_model_is_the_same_function_in_fp32():
    x = torch.from_numpy(images(8, 3))
    with torch.no_grad():
        assert torch.allclose(net(True)(x), net(False)(x), atol=1e-3)


@pytest.mark.parametrize("backend,runtime", BACKENDS_HERE)
def test_the_debugger_names_the_broken_layer_as_the_first_divergence(backend, runtime, tmp_path):
    fp32, int8, options = compile_pair(backend, net(True), tmp_path / "broken")
    report = compare_files(runtime, fp32, int8, images(8, 5), **options)
    d = report.divergence
    assert d is not None and d.rule == DivergenceRule.STEP
    assert d.layer.startswith(BROKEN + "."), [(l.layer, round(l.sqnr_db, 1)) for l in report.layers]
    before = [l for l in report.layers[:d.index] if l.layer]
    assert before and all(l.sqnr_db > report.floor_db for l in before), "the layers before it are healthy"
    # the whole-tensor SQNR and the cosine are dominated by the outlier channel, which survives
    assert report.layers[d.index].cosine > 0.99
    assert report.layers[d.index].nodes, "the INT8 graph's nodes of that layer (what an exclusion list takes)"


@pytest.mark.parametrize("backend,runtime", BACKENDS_HERE)
def test_the_healthy_twin_shows_no_divergence_in_its_body(backend, runtime, tmp_path):
    """Same weights without the outlier: every block stays over the floor, so what the broken model shows is the
    break. (The head may step down: its bias cancels the features' mean, so its logits carry only their small
    variation between images, and that is where rounding shows; NNCF's head measures ~10 dB here.)"""
    fp32, int8, options = compile_pair(backend, net(False), tmp_path / "healthy")
    report = compare_files(runtime, fp32, int8, images(8, 5), **options)
    body = [l for l in report.layers if l.layer.startswith("features.")]
    assert len(body) >= 4 and all(l.sqnr_db > report.floor_db for l in body), [(l.layer, l.sqnr_db) for l in body]
    assert report.divergence is None or not report.divergence.layer.startswith("features.")


@pytest.mark.parametrize("backend,runtime", BACKENDS_HERE)
def test_a_pt2_file_keeps_the_users_layer_names(backend, runtime, tmp_path):
    """The broken model as the user ships it, a ``.pt2`` (dynamic batch), loaded as edgekit loads it: the
    compiled files name their nodes by the exported module paths, so the debugger names the same layer (and
    mixed precision has layers to keep in float). A flat ``program.module()`` named none below the root."""
    from edgekit.models import load_model

    path = tmp_path / "broken.pt2"
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(net(True), (torch.zeros(2, 3, SIZE, SIZE),), dynamic_shapes=({0: batch},)),
                      path)
    fp32, int8, options = compile_pair(backend, load_model(str(path)).module, tmp_path / "pt2")
    report = compare_files(runtime, fp32, int8, images(8, 5), **options)
    assert report.divergence is not None and report.divergence.layer.startswith(BROKEN + "."), \
        [(l.layer, round(l.sqnr_db, 1)) for l in report.layers]


@pytest.mark.slow   # litert-torch converts and quantizes for ~20 s
def test_litert_names_the_broken_layer_too(tmp_path):
    fp32, int8, options = compile_pair("tflite", net(True), tmp_path / "broken", target="rpi4")
    report = compare_files("litert", fp32, int8, images(8, 5), **options)
    assert report.divergence is not None and report.divergence.layer.startswith(BROKEN + ".")


def test_every_exported_node_maps_to_a_module_of_the_model(tmp_path):
    """Each backend's node names, turned into module paths, are paths torch itself knows (named_modules)."""
    import onnx
    import openvino as ov

    from edgekit.models.onnx_export import export_onnx
    from edgekit.models.openvino_export import to_openvino

    module, spec = net(False), ModelSpec(input_shape=(3, SIZE, SIZE), num_classes=4)
    known = dict(module.named_modules())
    export_onnx(module, spec, tmp_path / "m.onnx")
    onnx_layers = {layer_of_onnx_node(n) for n in onnx.load(str(tmp_path / "m.onnx")).graph.node}
    ov_model, _ = to_openvino(ov, module, spec, "test")
    ov_layers = {layer_of_openvino_name(op.get_friendly_name()) for op in ov_model.get_ordered_ops()}
    for layers in (onnx_layers, ov_layers):
        assert {"features.1.conv", "features.1.act", "fc"} <= layers
        assert layers <= set(known), layers - set(known)


def test_layer_names_in_each_backends_spelling():
    litert = ("litert_torch._convert.to_channel_last_io.ChannelLastIOWrapper/m.Net_wrapped/"
              "torch.nn.modules.container.Sequential_features/m.Block_1/torch.nn.modules.activation.ReLU_act;;"
              "litert_torch._convert.to_channel_last_io.ChannelLastIOWrapper/m.Net_wrapped/"
              "torch.nn.modules.container.Sequential_features/m.Block_1/torch.nn.modules.conv.Conv2d_conv;1")
    assert layer_of_litert_name(litert) == "features.1.act"
    assert layer_of_onnx_name("/layer1/layer1.0/conv1/Conv") == "layer1.0.conv1"
    # a Sequential inside a block inside a Sequential, and a ModuleList (torch 2.14's TorchScript exporter spelling)
    assert layer_of_onnx_name("/features/features.1/conv/conv.1/conv.1.1/Conv") == "features.1.conv.1.1"
    assert layer_of_onnx_name("/features/features.1/se.0/Relu") == "features.1.se.0"
    assert layer_of_onnx_name("/Flatten") == "" and layer_of_onnx_name("Constant_26") == ""
    assert layer_of_openvino_name("__module.features.1.act/aten::relu/Relu/fq_output_0") == "features.1.act"
    # the dynamo exporter (edgekit's fallback): module paths in metadata, under edgekit's ``inner`` wrapper
    import onnx

    node = onnx.helper.make_node("Gemm", ["a", "b"], ["c"], name="node_linear")
    entry = node.metadata_props.add()
    entry.key, entry.value = "pkg.torch.onnx.name_scopes", "['', 'inner', 'inner.fc', 'linear']"
    assert layer_of_onnx_node(node) == "fc"
    names = ["/features/features.1/conv/Conv", "/features/features.10/conv/Conv", "/fc/Gemm"]
    assert nodes_of("features.1", names, layer_of_onnx_name) == ["/features/features.1/conv/Conv"]


def test_litert_spelling_of_modules_in_a_module_list_maps_back_to_their_paths():
    """LiteRT names scopes by called modules only, so a block held in an nn.ModuleList reads ``1.0``, not
    ``blocks.1.0``; mixed precision must name ``blocks.1.0`` to the quantizer."""
    from edgekit.models.layer_names import litert_paths

    class Blocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()) for _ in range(2)])
            self.head = nn.Linear(3, 2)

        def forward(self, x):
            for block in self.blocks:
                x = block(x)
            return self.head(x.mean((2, 3)))

    names = litert_paths(Blocks(), torch.zeros(1, 3, 4, 4))
    assert names["1"] == "blocks.1" and names["1.0"] == "blocks.1.0" and names["0.1"] == "blocks.0.1"
    assert "head" not in names   # spelled the same either way


def test_first_divergence_is_a_step_not_a_slow_decline():
    def layers(*dbs):
        return [LayerError(f"l{i}", "Conv", f"t{i}", db, db, 1.0) for i, db in enumerate(dbs)]

    assert first_divergence(layers(38, 35, 33, 31)) is None
    step = first_divergence(layers(38, 35, 12, 11))
    assert (step.layer, step.rule) == ("l2", DivergenceRule.STEP)
    assert first_divergence(layers(30, 26, 22, 19, 16, 13)) is None   # a deep network's decline (EfficientNet-Lite0)
    decline = first_divergence(layers(30, 24, 18, 13, 9, 6))   # no single layer breaks it, but it ends in noise
    assert (decline.layer, decline.rule) == ("l4", DivergenceRule.FLOOR)


def test_debug_refuses_what_it_cannot_debug(cli, small_bundle, tmp_path):
    """One-line errors (exit 2 on the command line): no bundle, an unknown artifact, no INT8 artifact."""
    import edgekit

    with pytest.raises(edgekit.EdgekitError, match="not an edgekit bundle"):
        edgekit.debug(tmp_path / "nothing")
    with pytest.raises(edgekit.EdgekitError, match="no INT8 artifact"):
        edgekit.debug(small_bundle)   # FP32 only
    result = cli("debug", str(small_bundle), "bogus")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: no artifact named bogus") and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow   # a compress run (~20 s) and the CLI
def test_compress_reports_the_broken_layer_and_edgekit_debug_prints_it(cli, tmp_path):
    from torch.utils.data import TensorDataset

    import edgekit

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("name: int8-debug\nstages:\n  - evaluate: {split: test}\ncompile:\n  precisions: [fp32, int8]\n"
                      "  calibration_size: 32\nprofile: {warmup: 1, runs: 5, max_seconds: 0.5}\n")
    module = net(True)
    x = torch.from_numpy(images(96, 7))
    with torch.no_grad():
        y = module(x).argmax(1)   # labels = the FP32 model's own predictions: FP32 scores 100%, INT8 collapses
    splits = tuple(TensorDataset(x[i::3], y[i::3]) for i in range(3))
    result = edgekit.compress(module, splits, target="x86-cpu", recipe=recipe, out=tmp_path / "bundle", threads=1)
    debugged = {d.artifact: d for d in result.manifest.int8_debug or []}
    assert {"onnxruntime-int8", "openvino-int8"} <= set(debugged)
    for d in debugged.values():
        assert d.divergence is not None and d.divergence.layer.startswith(BROKEN + ".")
        assert (result.bundle / d.json_path).is_file()
    report = (result.bundle / "report.md").read_text()
    assert "INT8 per layer: onnxruntime-int8" in report and "◀ first divergence" in report

    before = {p: p.stat().st_mtime_ns for p in result.bundle.rglob("*") if p.is_file() and "debug" not in p.parts}
    shown = cli("debug", str(result.bundle), "onnxruntime-int8", "--images", "8")
    assert shown.returncode == 0, shown.stderr
    assert "first divergence" in shown.stdout and "features.1.act" in shown.stdout
    data = json.loads(cli("debug", str(result.bundle), "openvino-int8", "--json").stdout)
    assert data["divergence"]["layer"].startswith(BROKEN + ".") and data["layers"]
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after, "edgekit debug writes only under debug/"
