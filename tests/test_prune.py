"""prune stage: structured pruning keeps graphs valid and hits MAC targets; sparsity modes are exact;
pruned models round-trip through edgekit checkpoints with weights_only=True."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from pydantic import ValidationError

from conftest import run_cli
from edgekit.models.onnx_export import export_onnx
from edgekit.backends.onnxruntime import OrtSession
from edgekit.errors import EdgekitError
from edgekit.models import load_checkpoint, load_model, save_checkpoint
from edgekit.models.complexity import count_macs
from edgekit.pruning import channel_table, structured_prune, StructuredPlan
from edgekit.pruning.sparsity import is_2_4_sparse
from edgekit.stages import STAGES, StageContext
from edgekit.target import load_target

Prune = STAGES.get("prune")


def _prune(source: str, data, tmp_path, input_size=None, **params):
    torch.manual_seed(0)
    model = load_model(source, num_classes=10, input_size=input_size)
    original = copy.deepcopy(model)
    ctx = StageContext(model=model, teacher=original, data=data, target=load_target("x86-cpu"), work_dir=tmp_path)
    result = Prune(Prune.Params(measure_latency=False, **params)).run(ctx)
    return original, result


def _first_conv(module: nn.Module) -> nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _check_valid(original, pruned, tmp_path) -> None:
    """Forward shape intact, classifier and stem input untouched, ONNX export runs in ORT and agrees,
    checkpoint round-trip (weights_only=True) gives identical logits."""
    spec, module = pruned.spec, pruned.module.eval()
    x = torch.randn(2, *spec.input_shape)
    with torch.no_grad():
        logits = module(x)
    assert logits.shape == (2, 10)
    head = [m for m in module.modules() if isinstance(m, nn.Linear)][-1]
    assert head.out_features == 10
    assert _first_conv(module).in_channels == _first_conv(original.module).in_channels
    export_onnx(module, spec, tmp_path / "m.onnx")
    ort_logits = OrtSession(tmp_path / "m.onnx", threads=1).run(x.numpy())
    np.testing.assert_allclose(ort_logits, logits.numpy(), atol=1e-4, rtol=1e-3)
    save_checkpoint(pruned, tmp_path / "m.pt")
    torch.load(tmp_path / "m.pt", weights_only=True)  # no pickled objects inside
    reloaded = load_checkpoint(tmp_path / "m.pt")
    with torch.no_grad():
        assert torch.equal(reloaded.module(x), logits)
    assert channel_table(reloaded.module) == channel_table(module)


@pytest.mark.parametrize("source,size", [("builtin:resnet8", None),
                                         pytest.param("builtin:resnet20", (16, 16), marks=pytest.mark.slow),
                                         ("builtin:resnet18_28", (16, 16)), ("builtin:resnet18_32", (16, 16)),
                                         ("builtin:mobilenetv3s_32", (16, 16))])
def test_structured_macs_target_on_builtin_models(source, size, digits, tmp_path):
    original, result = _prune(source, digits, tmp_path, input_size=size, macs=0.5)
    fraction = count_macs(result.model.module, result.model.spec) / count_macs(original.module, original.spec)
    assert 0.38 <= fraction <= 0.5, fraction
    assert result.metrics["target_met"] and result.metrics["macs_fraction"] == pytest.approx(fraction, abs=1e-3)
    _check_valid(original, result.model, tmp_path)
    changed = [r for r in result.metrics["channels"] if r["out_after"] < r["out_before"]]
    assert changed, "no layer lost channels"
    if source == "builtin:mobilenetv3s_32":  # depthwise convs stay depthwise after reload
        dw = [m for m in load_checkpoint(tmp_path / "m.pt").module.modules()
              if isinstance(m, nn.Conv2d) and m.groups > 1]
        assert dw and all(m.groups == m.in_channels == m.out_channels for m in dw)


@pytest.mark.parametrize("name", ["resnet18",
                                  pytest.param("mobilenet_v3_small", marks=pytest.mark.slow),
                                  pytest.param("mobilenet_v2", marks=pytest.mark.slow),
                                  pytest.param("resnet50", marks=pytest.mark.slow),
                                  pytest.param("efficientnet_b0", marks=pytest.mark.slow),
                                  pytest.param("regnet_y_400mf", marks=pytest.mark.slow),
                                  pytest.param("convnext_tiny", marks=pytest.mark.slow)])
def test_structured_torchvision_models(name, digits, tmp_path):
    """Random-weight torchvision models at 32 px: pruned model runs, exports, and MACs drop as asked."""
    original, result = _prune(f"torchvision:{name}?weights=none", digits, tmp_path, input_size=(32, 32), macs=0.6,
                              steps=10)
    fraction = result.metrics["macs_after"] / result.metrics["macs_before"]
    assert fraction <= 0.6 and fraction >= 0.35, fraction
    _check_valid(original, result.model, tmp_path)


def test_ratio_uniform_and_ignored_layers(digits, tmp_path):
    original, result = _prune("builtin:resnet8", digits, tmp_path, ratio=0.5, ignore=["layer2"])
    before, after = channel_table(original.module), channel_table(result.model.module)
    for name, (_, out) in before.items():
        if name.startswith("layer2."):
            assert after[name][1] == out, name  # ignored: output channels kept
    assert after["layer1.0.conv1"][1] == before["layer1.0.conv1"][1] // 2  # uniform: half the channels
    assert after["fc"][1] == 10
    assert "layer2.0.conv1" in result.metrics["ignored_layers"]
    _check_valid(original, result.model, tmp_path)


def test_global_taylor_importance(digits, tmp_path):
    original, result = _prune("builtin:resnet8", digits, tmp_path, ratio=0.3, scope="global", importance="taylor",
                              taylor_batches=2)
    assert result.metrics["params_after"] < 0.9 * result.metrics["params_before"]
    _check_valid(original, result.model, tmp_path)


def test_latency_target_iterates_until_met(digits):
    """The latency loop stops at the first step whose measurement meets the target (a MACs-proportional
    stand-in for the ORT measurement keeps this deterministic; the real ORT path runs in the stage tests)."""
    model = load_model("builtin:resnet8", num_classes=10)
    base = count_macs(model.module, model.spec)
    calls = []

    def fake_latency(module):
        calls.append(1)
        return 10.0 * count_macs(module, model.spec) / base

    report = structured_prune(model.module, model.spec, StructuredPlan("latency_ms", 6.0, steps=20),
                              latency_fn=fake_latency)
    assert report["target_met"] and len(calls) == report["steps_taken"]
    lat = [p["latency_ms"] for p in report["trajectory"][1:]]
    assert lat[-1] <= 6.0 and all(v > 6.0 for v in lat[:-1])


def test_latency_target_through_onnxruntime(digits, tmp_path):
    _, result = _prune("builtin:resnet8", digits, tmp_path, latency_ms=1000.0, steps=4)
    assert result.metrics["target_met"] and result.metrics["steps_taken"] == 1
    assert result.metrics["trajectory"][1]["latency_ms"] > 0


def test_unstructured_sparsity_exact(digits, tmp_path):
    original, result = _prune("builtin:resnet8", digits, tmp_path, mode="unstructured", ratio=0.6)
    module = result.model.module
    weights = [m.weight for n, m in module.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and n != "fc"]
    zeros = sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)
    assert zeros == pytest.approx(0.6, abs=0.002)
    assert torch.equal(module.fc.weight, original.module.fc.weight)  # classifier untouched
    assert channel_table(module) == channel_table(original.module)  # shapes unchanged
    assert "no dense-runtime speedup expected" in result.metrics["speedup_note"]


def test_2_4_sparsity_pattern_exact(digits, tmp_path):
    original, result = _prune("builtin:resnet8", digits, tmp_path, mode="2:4")
    module = result.model.module
    done = result.metrics["layers"]
    assert "stem.0" in result.metrics["skipped"]  # 1 input channel: not a 2:4 layout
    for name in done:
        w = module.get_submodule(name).weight
        assert is_2_4_sparse(w), name
        assert (w == 0).float().mean() == pytest.approx(0.5, abs=0.01)
    kept = original.module.layer1[0].conv1.weight.permute(0, 2, 3, 1).reshape(-1, 4).abs()
    new = module.layer1[0].conv1.weight.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.equal((new != 0), kept >= kept.sort(1).values[:, 2:3])  # the two largest survive
    assert "TensorRT" in result.metrics["speedup_note"]


def test_stage_reports_latency_and_channels(digits, tmp_path):
    torch.manual_seed(0)
    model = load_model("builtin:resnet8", num_classes=10)
    ctx = StageContext(model=model, teacher=copy.deepcopy(model), data=digits, target=load_target("x86-cpu"),
                       work_dir=tmp_path)
    metrics = Prune(Prune.Params(macs=0.5)).run(ctx).metrics
    lat = metrics["ort_latency"]
    assert lat["before"]["p50_ms"] > 0 and lat["after"]["p50_ms"] > 0 and lat["speedup_p50"] > 0
    rows = {r["layer"]: r for r in metrics["channels"]}
    assert rows["fc"]["out_before"] == rows["fc"]["out_after"] == 10
    assert rows["fc"]["in_after"] < rows["fc"]["in_before"]
    json.dumps(metrics)  # goes into manifest.json


def test_bad_prune_params():
    with pytest.raises(ValidationError, match="exactly one of ratio, macs, latency_ms"):
        Prune.Params(ratio=0.3, macs=0.5)
    with pytest.raises(ValidationError, match="exactly one"):
        Prune.Params()
    with pytest.raises(ValidationError):
        Prune.Params(macs=1.5)
    with pytest.raises(ValidationError, match="2:4 sparsity takes no"):
        Prune.Params(mode="2:4", ratio=0.5)


def test_unknown_ignored_layer(digits, tmp_path):
    with pytest.raises(EdgekitError, match="no layer named 'layer9'"):
        _prune("builtin:resnet8", digits, tmp_path, ratio=0.3, ignore=["layer9"])


def test_cli_bad_prune_recipe_is_one_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - prune: {macs: 0.5, ratio: 0.2}\n")
    proc = run_cli("compress", "-m", "builtin:tinycnn", "-d", "digits", "-r", str(recipe), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "exactly one of ratio, macs, latency_ms" in proc.stderr


def _cpu_flags() -> set[str]:
    """This host's CPU flags, read here from /proc/cpuinfo (the test's own oracle, not edgekit's reader)."""
    try:
        lines = open("/proc/cpuinfo").read().splitlines()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith(("flags", "Features"))), set())


def test_round_to_auto_prunes_to_the_multiple_the_target_lists_for_this_cpu(tmp_path):
    """``round_to: auto`` binds to the target's channel_multiple: the first CPU feature listed that this host has
    wins, else ``default``; a multiple as wide as the model's widest layer (ResNet-8: 64) is passed over. The
    compress run prunes in the bound multiple and the manifest records the number used."""
    import yaml

    from edgekit.pruning.layers import widest_layer
    from edgekit.recipe import load_recipe
    from edgekit.target import Target

    flags = _cpu_flags()
    if not flags:
        pytest.skip("no CPU flags in /proc/cpuinfo")
    have = sorted(flags)[0]
    x86 = yaml.safe_load(open(load_target("x86-cpu").source_file))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: auto-rounding\nstages:\n  - prune: {macs: 0.4, round_to: auto, measure_latency: false}\n"
                      "compile: {precisions: [fp32]}\n")
    model = load_model("builtin:resnet8", num_classes=10)
    widest = widest_layer(model.module)
    assert widest == 64

    def bound(multiples: dict) -> int | None:
        stages = load_recipe(recipe).for_target(Target(**{**x86, "channel_multiple": multiples}), widest)[0].stages
        return stages[0].params["round_to"]

    assert bound({"not_a_cpu_flag": 48, have: 32, "default": 8}) == 32
    assert bound({"not_a_cpu_flag": 48, "default": 8}) == 8
    assert bound({have: 64, "default": 16}) == 16          # x64 would leave the 64-channel layers whole
    assert bound({}) is None

    target = tmp_path / "t.yaml"
    target.write_text(yaml.safe_dump({**x86, "channel_multiple": {"not_a_cpu_flag": 48, have: 32, "default": 8}}))
    out = tmp_path / "o"
    proc = run_cli("compress", "-m", "builtin:resnet8", "-d", "digits", "-r", str(recipe), "-t", str(target),
                   "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    stage = json.loads((out / "manifest.json").read_text())["stages"][0]
    assert stage["params"]["round_to"] == 32
    pruned = [c for c in stage["metrics"]["channels"] if c["out_after"] != c["out_before"]]
    assert pruned and all(c["out_after"] % 32 == 0 for c in pruned)
