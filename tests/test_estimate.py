"""Roofline latency estimates: per-layer costs, labels, and where they appear (compress, bench)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from bundle_fixture import RECIPE
from conftest import run_cli
from edgekit.errors import EdgekitError
from edgekit.models import load_model
from edgekit.models.complexity import count_macs
from edgekit.profiling.estimate import estimate, layer_costs
from edgekit.target import load_target


def test_layer_costs_cover_the_model():
    model = load_model("builtin:mobilenetv3s_32")
    costs = layer_costs(model.module, model.spec)
    total = count_macs(model.module, model.spec)
    assert sum(c.macs for c in costs) == pytest.approx(total, rel=0.02)
    assert {"dense", "depthwise", "linear"} <= {c.kind for c in costs}
    assert all(c.activations > 0 for c in costs)


def test_estimates_scale_with_device_and_precision():
    model = load_model("builtin:resnet18_32")
    costs = layer_costs(model.module, model.spec)
    rpi4, rpi5 = load_target("rpi4"), load_target("rpi5")
    e4, e5 = estimate(costs, rpi4, "fp32"), estimate(costs, rpi5, "fp32")
    assert e4["kind"] == "estimated" and e4["target"] == "rpi4" and "roofline" in e4["model"]
    assert e4["latency_ms"] > e5["latency_ms"] > 0                 # Pi 4 is slower than Pi 5
    assert estimate(costs, rpi5, "int8")["latency_ms"] < e5["latency_ms"]
    with pytest.raises(EdgekitError, match="no peak_gops"):
        estimate(costs, load_target("jetson-nano"), "int8")


def test_executorch_has_its_own_pi_figures_from_arms_published_numbers():
    """ExecuTorch on a Pi is estimated from Arm's published Pi 5 ExecuTorch latencies (targets/rpi5.yaml), not
    from LiteRT's: ResNet-18 INT8 224 px reproduces its 8.75 ms (the held-out checks are the estimator benchmark's
    ``published_checks``), and an artifact's own backend picks the figures."""
    import torchvision

    from edgekit.spec import ModelSpec

    spec = ModelSpec(input_shape=(3, 224, 224), num_classes=1000)
    r18 = layer_costs(torchvision.models.get_model("resnet18", weights=None).eval(), spec)
    rpi4, rpi5 = load_target("rpi4"), load_target("rpi5")
    et = estimate(r18, rpi5, "int8", backend="executorch")
    assert et["backend"] == "executorch" and "Arm" in et["calibrated_on"]
    assert et["latency_ms"] == pytest.approx(8.75, rel=0.01)
    assert estimate(r18, rpi5, "int8")["latency_ms"] != pytest.approx(et["latency_ms"], rel=0.1)   # LiteRT's
    assert estimate(r18, rpi5, "int8", backend="tflite") == estimate(r18, rpi5, "int8")   # no figures: the device's
    assert estimate(r18, rpi4, "int8", backend="executorch")["latency_ms"] > et["latency_ms"]   # Pi 4 is slower
    assert estimate(r18, rpi5, "fp32", backend="executorch")["latency_ms"] > et["latency_ms"]


def test_compress_for_a_remote_target_labels_estimates(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "rpi5"
    r = run_cli("compress", "--recipe", str(recipe), "--target", "rpi5", "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    onnx = next(a for a in manifest["artifacts"] if a["name"] == "onnxruntime-fp32")
    est = onnx["metrics"]["estimate"]
    assert est["kind"] == "estimated" and est["target"] == "rpi5" and est["latency_ms"] > 0
    assert onnx["metrics"]["latency"]["measured"] == "host"         # the host measurement stays separate
    report = (out / "report.md").read_text()
    assert "Estimated latency (not measured)" in report and "(estimated, rpi5)" in report


def test_bench_estimates_artifacts_that_cannot_run_here(small_bundle, tmp_path):
    """A TensorRT artifact (runnable_here: false, as the TensorRT backend writes them; we have no GPU):
    bench measures the others and estimates this one, in a separate, labelled table."""
    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    onnx = next(a for a in manifest["artifacts"] if a["name"] == "onnxruntime-fp32")
    manifest["artifacts"].append({**onnx, "name": "tensorrt-fp32", "backend": "tensorrt", "runtime": "tensorrt",
                                  "runnable_here": False, "metrics": {}})
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    r = run_cli("bench", str(bundle), "--runs", "10", "--max-seconds", "1", "--batch-sizes", "1", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    entry = json.loads(r.stdout)
    assert "tensorrt-fp32" not in entry["results"]
    est = entry["estimates"]["tensorrt-fp32"]
    assert est["kind"] == "estimated" and est["target"] == manifest["target"]["name"] and est["latency_ms"] > 0
    report = (bundle / "report.md").read_text()
    section = report[report.index("Estimated latency (not measured)"):]
    assert "tensorrt-fp32" in section and "(estimated)" in section


def test_int8_pays_for_unfused_elementwise_ops_on_the_host():
    """ONNX Runtime FP32 fuses HardSwish into its convs, its QDQ INT8 graph does not: on the host target
    the INT8 estimate of a HardSwish/SE-heavy model must carry a real cost for those ops, FP32 none for
    the fused ones; a ReLU model (nothing unfused but residual adds) is barely touched."""
    import torchvision

    from edgekit.profiling.estimate import DeviceModel, roofline_ms
    from edgekit.spec import ModelSpec

    spec = ModelSpec(input_shape=(3, 128, 128), num_classes=1000)
    host = load_target("x86-cpu")
    v3 = layer_costs(torchvision.models.mobilenet_v3_small(weights=None).eval(), spec)
    kinds = {c.kind for c in v3}
    assert {"epilogue", "elementwise"} <= kinds
    assert sum(c.name.startswith("hardswish") for c in v3) >= 10     # one per HardSwish call

    def share(costs, precision):
        device = DeviceModel.from_target(host, precision, 1)
        total = roofline_ms(costs, device)["latency_ms"]
        streaming = roofline_ms([c for c in costs if c.kind in ("epilogue", "elementwise")], device)["latency_ms"]
        return streaming / total

    assert share(v3, "int8") > 0.25                                   # INT8: a large part of the time
    assert share(v3, "int8") > 3 * share(v3, "fp32")
    fp32 = DeviceModel.from_target(host, "fp32", 1)
    assert roofline_ms([c for c in v3 if c.kind == "epilogue"], fp32)["latency_ms"] < 1e-3   # fused in FP32
    resnet = layer_costs(torchvision.models.resnet18(weights=None).eval(), spec)
    assert share(resnet, "int8") < 0.1
    # and the ordering the host measured (benchmarks/results/estimator_x86.md): INT8 MobileNetV3-S at
    # 224 px is not faster than FP32, INT8 ResNet-18 is
    spec224 = ModelSpec(input_shape=(3, 224, 224), num_classes=1000)
    v3_224 = layer_costs(torchvision.models.mobilenet_v3_small(weights=None).eval(), spec224)
    assert estimate(v3_224, host, "int8")["latency_ms"] > estimate(v3_224, host, "fp32")["latency_ms"]
    assert estimate(resnet, host, "int8")["latency_ms"] < estimate(resnet, host, "fp32")["latency_ms"]


def test_targets_without_elementwise_figures_treat_them_as_fused():
    """Device targets calibrated before per-element costs existed keep their roofline: no epilogue /
    element-wise cost unless the target file gives one."""
    from edgekit.profiling.estimate import DeviceModel

    rpi5 = DeviceModel.from_target(load_target("rpi5"), "int8")
    assert rpi5.ns_per_element == {"epilogue": 0.0, "lookup": 0.0, "elementwise": 0.0}
    assert not {"epilogue_ns", "lookup_ns", "elementwise_ns"} & set(rpi5.efficiency)


def test_int8_lookups_are_cheaper_than_float_elementwise_ops_on_the_host():
    """ONNX Runtime's QDQ INT8 graph of EfficientNet-B0 runs every Sigmoid (SiLU = x * sigmoid(x)) as a
    QLinearSigmoid table lookup: its SiLUs are costed as lookups, which on the host cost less per element
    in INT8 than the ops that stay float or run as their own kernels, so the estimate ranks INT8
    EfficientNet-B0 faster than FP32, as measured (benchmarks/results/estimator_x86.md)."""
    import torchvision

    from edgekit.profiling.estimate import DeviceModel
    from edgekit.spec import ModelSpec

    spec = ModelSpec(input_shape=(3, 128, 128), num_classes=1000)
    costs = layer_costs(torchvision.models.efficientnet_b0(weights=None).eval(), spec)
    lookups = [c for c in costs if c.kind == "lookup"]
    assert sum(c.name.startswith("silu") for c in lookups) == 49 and all(c.activations > 0 for c in lookups)
    assert not any(c.name.startswith(("silu", "sigmoid")) for c in costs if c.kind == "elementwise")
    host = load_target("x86-cpu")
    int8 = DeviceModel.from_target(host, "int8", 1)
    assert 0 < int8.ns_per_element["lookup"] < int8.ns_per_element["elementwise"]
    assert estimate(costs, host, "int8")["latency_ms"] < estimate(costs, host, "fp32")["latency_ms"]


def test_targets_without_a_lookup_figure_cost_lookups_as_elementwise_ops():
    """Lookup ops were element-wise ops before they had their own figure: a target that gives
    ``elementwise_ns`` but no ``lookup_ns`` estimates them exactly as before."""
    from edgekit.profiling.estimate import DeviceModel

    host = load_target("x86-cpu")
    dev = host.device
    plain = {k: v for k, v in dev.precision_efficiency["int8"].items() if k != "lookup_ns"}
    older = host.model_copy(update={"device": dev.model_copy(update={
        "runtime_efficiency": {k: v for k, v in dev.runtime_efficiency.items() if k != "lookup_ns"},
        "precision_efficiency": {**dev.precision_efficiency, "int8": plain}})})
    for precision in ("fp32", "int8"):
        ns = DeviceModel.from_target(older, precision, 1).ns_per_element
        assert ns["lookup"] == ns["elementwise"] > 0


def test_a_kind_no_sample_contains_gets_its_memory_floor_not_a_guess():
    """The fit cannot learn the cost of an op kind none of its samples has (leave-one-out on the one
    model with lookups): it must use the memory-roofline floor for that kind's bytes, whatever the data."""
    from edgekit.profiling.estimate import DeviceModel, LayerCost, fit_efficiency

    base = DeviceModel("d", peak_gops=100.0, bandwidth_gbps=10.0, efficiency={}, overhead_us=1.0,
                       bytes_per_element=1, calibrated="test")
    samples = [([LayerCost("conv", "dense", macs, 1000, 10_000),
                 LayerCost("mul#0", "elementwise", 0, 0, 10_000 * k)], ms)
               for macs, k, ms in ((1e6, 1, 0.05), (4e6, 3, 0.2), (2e7, 2, 0.6), (5e7, 5, 1.5))]
    fit = fit_efficiency(samples, base)
    assert fit["unfitted_at_floor"] == ["epilogue", "lookup"]
    floor = 1 / (10.0 * fit["runtime_efficiency"]["memory"])      # ns per element: 1 byte at 10 GB/s
    assert fit["lookup_ns"] == pytest.approx(floor, rel=1e-3) and fit["epilogue_ns"] == pytest.approx(floor, rel=1e-3)
    assert fit["elementwise_ns"] != pytest.approx(floor, rel=0.05)   # the kind the samples have is fitted


def test_a_pt2_program_is_estimated_like_the_module_it_was_exported_from(tmp_path):
    """A torch.export program calls aten ops directly (no Conv2d/Linear modules for hooks to see): its rpi4
    estimate must be the one of the module it came from, not 0 ms."""
    import torch.nn as nn

    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, stride=4, padding=1, groups=16),
                        nn.ReLU(), nn.Flatten(), nn.Linear(16 * 8 * 8, 10)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    path = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(net, (torch.zeros(2, 3, 32, 32),), dynamic_shapes=({0: batch},)), path)
    program = load_model(str(path), input_size=(32, 32))
    target = load_target("rpi4")
    from_program = layer_costs(program.module, program.spec)
    from_module = layer_costs(net, program.spec)
    assert sum(c.macs for c in from_program) == sum(c.macs for c in from_module) > 0
    assert {c.kind for c in from_program if c.macs} == {"dense", "depthwise", "linear"}
    for precision in ("fp32", "int8"):
        got = estimate(from_program, target, precision)["latency_ms"]
        assert got > 0 and got == pytest.approx(estimate(from_module, target, precision)["latency_ms"], rel=1e-6)
