"""Fail well (issue 37): a layer group that pruning cannot handle is left alone and named, pruning
stops at its time bound and keeps what it has, a model it cannot prune passes through unpruned, and a
backend that cannot build a model drops out with its reason while the others still build."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn as nn

from edgekit.compilation import build_units, compile_all, failed_builds
from edgekit.errors import EdgekitError
from edgekit.models.complexity import count_macs
from edgekit.models.loaded import LoadedModel
from edgekit.pruning import StructuredPlan, structured_prune
from edgekit.pruning.adapters import SLICED
from edgekit.recipe import Recipe
from edgekit.spec import ModelSpec
from edgekit.target import load_target
from edgekit.vocab import ReasonCode
from edgekit.training.evaluate import accuracy_counts, module_logits

pytest.importorskip("torch_pruning")

SPEC = ModelSpec(input_shape=(3, 16, 16), num_classes=4)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


class _Checked(nn.Module):
    """A block whose forward checks its width against a Python number, as models that reshape by a stored
    size do: torch-pruning's tracer cannot see the check, so pruning the conv before it breaks forward."""

    def __init__(self):
        super().__init__()
        self.body = _block(16, 16)

    def forward(self, x):
        y = self.body(x)
        if y.shape[1] != 16:
            raise RuntimeError(f"expected 16 channels, got {y.shape[1]}")
        return y


class _Partial(nn.Module):
    """ReXNet's partial residual: the first ``c`` of the block's wider output get the shortcut added."""

    def __init__(self, c: int, wide: int):
        super().__init__()
        self.c = c
        self.body = _block(c, wide)

    def forward(self, x):
        y = self.body(x)
        return torch.cat([y[:, :self.c] + x, y[:, self.c:]], dim=1)


class _Net(nn.Module):
    def __init__(self, stages: list[nn.Module], width: int):
        super().__init__()
        self.stem = _block(3, 16)
        self.stages = nn.Sequential(*stages)
        self.tail = _block(width, 32)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        return self.fc(self.tail(self.stages(self.stem(x))).mean((2, 3)))


def _widths(module: nn.Module) -> dict[str, int]:
    return {n: m.out_channels for n, m in module.named_modules() if isinstance(m, nn.Conv2d)}


def test_a_group_that_breaks_forward_is_left_alone_and_named_while_the_rest_is_pruned():
    torch.manual_seed(0)
    net = _Net([_Checked()], 16).eval()
    before = _widths(net)
    result = structured_prune(net, SPEC, StructuredPlan(target="ratio", value=0.5))
    after = _widths(net)
    assert after["stages.0.body.0"] == 16                                     # the group the check reads
    assert after["stem.0"] < before["stem.0"] and after["tail.0"] < before["tail.0"]   # pruned elsewhere
    assert "expected 16 channels" in result["auto_ignored"]["stages.0.body.0"]
    assert net(torch.zeros(2, *SPEC.input_shape)).shape == (2, 4)


def test_channels_through_a_fixed_channel_slice_are_kept_whole_and_named():
    torch.manual_seed(0)
    net = _Net([_Partial(16, 24), _block(24, 24)], 24).eval()
    x = torch.randn(2, *SPEC.input_shape)
    result = structured_prune(net, SPEC, StructuredPlan(target="macs", value=0.6))
    widths = _widths(net)
    assert widths["stem.0"] == 16 and widths["stages.0.body.0"] == 24   # the slice's input and the shortcut
    assert SLICED in result["auto_ignored"].values()
    assert widths["tail.0"] < 32                                          # the rest is pruned
    assert net(x).shape == (2, 4)


def test_a_chain_of_partial_residuals_is_grouped_in_time():
    """ReXNet's hang: torch-pruning walked every distinct channel subset of a chain of partial residuals
    again (minutes for 14 blocks); walked once per channel, the chain is grouped and pruned well within
    its time bound."""
    torch.manual_seed(0)
    widths = [16 + 4 * i for i in range(15)]
    net = _Net([_Partial(a, b) for a, b in zip(widths, widths[1:])], widths[-1]).eval()
    spec = SPEC.model_copy(update={"input_shape": (3, 8, 8)})
    result = structured_prune(net, spec, StructuredPlan(target="ratio", value=0.5, max_seconds=120))
    assert not result["time_bound"]["reached"] and "unpruned" not in result
    assert result["macs_fraction"] < 1 and net(torch.zeros(1, 3, 8, 8)).shape == (1, 4)   # the tail is pruned


def test_time_bound_keeps_the_model_pruned_so_far_and_says_so():
    torch.manual_seed(0)
    net = _Net([_block(16, 32)], 32).eval()
    base = count_macs(net, SPEC)
    bound = 3.0

    def slow_latency(module: nn.Module) -> float:   # each measurement outlasts the whole bound
        time.sleep(bound)
        return 1e9

    plan = StructuredPlan(target="latency_ms", value=1e-6, steps=10, max_seconds=bound)
    result = structured_prune(net, SPEC, plan, latency_fn=slow_latency)
    assert result["time_bound"]["reached"] and result["time_bound"]["max_seconds"] == bound
    assert result["steps_taken"] == 1 and not result["target_met"]
    assert count_macs(net, SPEC) < base                      # the step done before the bound is kept
    assert net(torch.zeros(1, *SPEC.input_shape)).shape == (1, 4)


def test_a_bound_too_short_to_trace_passes_the_model_through_unpruned():
    torch.manual_seed(0)
    net = _Net([_block(16, 32)], 32).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = structured_prune(net, SPEC, StructuredPlan(target="macs", value=0.5, max_seconds=1e-6))
    assert "time bound" in result["unpruned"] and result["macs_fraction"] == 1.0 and not result["target_met"]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


class _DataDependent(nn.Module):
    """A Python branch on a tensor's value: TorchScript tracing (the ONNX exporter) records the branch taken,
    torch.export (LiteRT's converter) cannot decide it."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3), nn.Linear(8, 10)

    def forward(self, x):
        y = self.conv(x)
        if y.mean() > -1e9:
            y = torch.relu(y)
        return self.fc(y.mean((2, 3)))


class _Svd(nn.Module):
    """An operator no exporter here can write (ONNX, OpenVINO, LiteRT)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 10, 3)

    def forward(self, x):
        return torch.linalg.svdvals(self.conv(x)).mean(-1)


def _compile(module: nn.Module, digits, target: str, tmp_path):
    spec = ModelSpec(input_shape=(digits.channels, *digits.image_size), num_classes=digits.num_classes)
    model = LoadedModel(module.eval(), spec, "test", None)
    recipe = Recipe(compile={"precisions": ["fp32"]})
    units, skipped = build_units(model, digits, recipe, load_target(target), load_target("x86-cpu"))
    logits, labels = module_logits(model.module, spec, digits.test)
    artifacts, _ = compile_all(units, digits, recipe, tmp_path, 1, logits, accuracy_counts(logits, labels)["top1"])
    return artifacts, failed_builds(units)


def test_a_backend_that_cannot_convert_drops_out_and_the_others_build(digits, tmp_path):
    torch.manual_seed(0)
    artifacts, failed = _compile(_DataDependent(), digits, "rpi4", tmp_path)
    assert [(f.backend, f.precision) for f in failed] == [("tflite", "fp32")]
    assert failed[0].reason is ReasonCode.BUILD_FAILED
    assert failed[0].detail.startswith("compile failed: ") and "\n" not in failed[0].detail
    assert [a.backend for a in artifacts] == ["onnxruntime"]
    assert artifacts[0].metrics["agreement"]["top1_agreement"] == 100.0          # built, run and scored
    assert not list((tmp_path / "artifacts").rglob("*.tflite"))   # nothing half-written


def test_when_nothing_can_be_built_it_is_one_line_error(digits, tmp_path):
    with pytest.raises(EdgekitError) as err:
        _compile(_Svd(), digits, "x86-cpu", tmp_path)
    text = str(err.value)
    assert "\n" not in text and "no artifact could be built for target x86-cpu" in text
    assert "openvino fp32" in text and "onnxruntime fp32" in text


@pytest.mark.slow   # about 70 s of pruning on 2 cores
def test_a_group_kept_whole_that_comes_back_from_another_layer_does_not_end_pruning():
    """CaFormer's attention stages: the residual stream's channels break the model when pruned, and
    torch-pruning groups them again from another layer after each is kept whole. Pruning used to stop at the
    first such repeat (95% of the MACs left); it undoes the repeat and goes on with the other groups."""
    from edgekit.models import load_model

    torch.manual_seed(0)
    model = load_model("timm:caformer_s18?pretrained=false", input_size=(64, 64))
    result = structured_prune(model.module, model.spec, StructuredPlan(target="macs", value=0.5))
    assert "stopped" not in result and abs(result["macs_fraction"] - 0.5) <= 0.05, result["macs_fraction"]
    assert result["auto_ignored"], "the groups that break the model are named"
    with torch.no_grad():
        assert model.module.eval()(torch.zeros(2, 3, 64, 64)).shape == (2, 1000)
