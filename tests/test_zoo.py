"""One model of each architecture family through structured pruning and ONNX Runtime FP32, at small
input sizes (random weights; nothing downloads). The full sweep is benchmarks/zoo.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekit.models.onnx_export import export_onnx
from edgekit.models.checkpoint import load_checkpoint, save_checkpoint
from edgekit.models.reparam import NOTE, reparameterize
from edgekit.models.sources import load_model, replace_classifier
from edgekit.models.complexity import count_macs
from edgekit.pruning.structured import StructuredPlan, structured_prune
from edgekit.runtime import OrtSession

pytest.importorskip("timm")
pytest.importorskip("torch_pruning")

FAMILIES = [
    ("torchvision:resnet18?weights=none", 32),                  # residual CNN
    ("torchvision:mobilenet_v3_small?weights=none", 32),        # depthwise + squeeze-excitation
    ("timm:ghostnet_100?pretrained=false", 32),                 # channel split / concat (ghost modules)
    ("timm:mixnet_s?pretrained=false", 32),                     # mixed-kernel convs (torch.split by sizes)
    ("timm:mobileone_s0?pretrained=false", 32),                 # re-parameterizable branches
    ("timm:deit_tiny_patch16_224?pretrained=false&img_size=32", 32),  # ViT
    ("timm:mobilevit_xxs?pretrained=false", 64),                # conv + transformer hybrid
]


def _load(source: str, px: int, classes: int = 6):
    model = load_model(source, input_size=(px, px))
    replace_classifier(model, classes)
    if reparameterize(model.module):
        model.notes[NOTE] = "yes"
    return model


def _ort_vs_torch(model, tmp_path) -> tuple[float, float]:
    """(max |logit diff| relative to the largest logit (>= 1), top-1 agreement %) of the ONNX Runtime
    FP32 file against PyTorch. Relative: random-init fused models (MobileOne) have logits ~1e6."""
    x = torch.randn(8, *model.spec.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model.module.eval()(x).numpy()
    path = tmp_path / "model.onnx"
    export_onnx(model.module, model.spec, path)
    out = OrtSession(path, 1).run(x.numpy())
    scale = max(1.0, float(np.abs(ref).max()))
    return float(np.abs(out - ref).max()) / scale, float((out.argmax(1) == ref.argmax(1)).mean() * 100)


@pytest.mark.parametrize("source,px", FAMILIES, ids=[s.split(":")[1].split("?")[0] for s, _ in FAMILIES])
def test_family_prunes_and_exports(source, px, tmp_path):
    model = _load(source, px)
    before = count_macs(model.module, model.spec)
    result = structured_prune(model.module, model.spec, StructuredPlan(target="ratio", value=0.3))
    after = count_macs(model.module, model.spec)
    assert after < 0.95 * before, result
    assert model.module(torch.zeros(1, *model.spec.input_shape)).shape == (1, 6)
    diff, agree = _ort_vs_torch(model, tmp_path)
    assert diff <= 1e-3 and agree == 100.0


def test_vit_prunes_to_the_asked_macs_with_attention_intact(tmp_path):
    """The issue's bar: 50% MACs asked -> within +-10 points; heads kept whole (head dims pruned
    alike in q, k, v), ONNX output within 1e-3 of PyTorch; the checkpoint rebuilds the same model."""
    model = _load("timm:deit_tiny_patch16_224?pretrained=false&img_size=32", 32)
    result = structured_prune(model.module, model.spec, StructuredPlan(target="macs", value=0.5))
    assert 0.4 <= result["macs_fraction"] <= 0.6, result["trajectory"]
    assert result["auto_ignored"] == {}
    for block in model.module.blocks:
        attn = block.attn
        assert attn.num_heads == 3 and attn.qkv.out_features == 3 * attn.num_heads * attn.head_dim
        assert attn.head_dim < 64  # 192 / 3 heads before pruning
    assert model.module.pos_embed.shape[-1] == model.module.patch_embed.proj.out_channels < 192
    diff, agree = _ort_vs_torch(model, tmp_path)
    assert diff <= 1e-3 and agree == 100.0  # relative to max(1, |logit|): ViT logits here are < 1
    save_checkpoint(model, tmp_path / "m.pt")
    again = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(2, *model.spec.input_shape)
    with torch.no_grad():
        assert torch.allclose(again.module(x), model.module(x), atol=1e-5)


@pytest.mark.parametrize("source,px", [("torchvision:squeezenet1_1?weights=none", 64),
                                       ("timm:levit_128s?pretrained=false&img_size=64", 64)],
                         ids=["squeezenet-1x1-conv-head", "levit-distillation-head"])
def test_every_head_form_is_replaced(source, px):
    model = load_model(source, input_size=(px, px), num_classes=6)
    with torch.no_grad():
        assert model.module.eval()(torch.zeros(2, 3, px, px)).shape == (2, 6)
    assert model.spec.num_classes == 6 and "head" in model.notes


def test_memory_guard_turns_exhaustion_into_one_line_error(monkeypatch):
    """Pruning runs capped below physical memory: an allocation beyond the cap is an EdgekitError, not a
    kernel kill, and the cap is lifted afterwards."""
    import resource

    from edgekit.errors import EdgekitError
    from edgekit.pruning.guard import ENV, memory_guard

    with open("/proc/self/status") as f:
        vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
    monkeypatch.setenv(ENV, str(vm_kb / 2**20 + 1.0))  # 1 GB above what this process maps now
    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(EdgekitError, match="out of memory"):
        with memory_guard("prune"):
            torch.empty(int(3 * 2**30) // 4).fill_(1.0)
    assert resource.getrlimit(resource.RLIMIT_AS) == before


@pytest.mark.slow
def test_a_random_draw_passes_or_fails_in_one_line(tmp_path):
    """Issue 37: a draw of 4 architectures from timm and torchvision (the seed is the date, so a new timm
    release or a new day brings models no list names), each in its own process, through the suite's kind
    ``zoo_sample``: every one passes prune + FP32/INT8 or ends with a one-line error; none with a traceback,
    none killed by the time cap."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    from benchmarks.zoo_sample import date_seed, failure_kind, run

    day = date_seed()
    measured = run(tmp_path, n=4, timeout_s=900)
    (seed,) = measured.seeds
    assert seed in (day, date_seed()) and measured.metrics["models"] == len(measured.rows) == 4
    bad = {r["model"]: failure_kind(r) for r in measured.details["models"] if failure_kind(r) not in (None, "error")}
    assert not bad, f"seed {seed}: {bad}"


def test_executorch_column_counts_what_built_and_ran():
    """The zoo's ExecuTorch column (scenario zoo-executorch): a model counts toward its bar when ExecuTorch
    FP32 and INT8 both built and ran; cells say how many ops stayed on the portable kernels."""
    from benchmarks import zoo, zoo_suite

    steps = zoo.parse_steps(["rpi4/executorch"])
    assert steps == [("rpi4", "executorch")] and zoo.parse_steps(None) == zoo.STEPS
    ok = {"status": "ok", "agreement": 100.0, "p50_ms": 1.0}
    built = {"model": zoo.ISSUE[0][0], "input": 64, "stages": {
        "prune": "ok", "rpi4/executorch/fp32": {**ok, "portable_ops": {"aten.native_layer_norm": 3}},
        "rpi4/executorch/int8": {**ok, "agreement": 50.0, "portable_ops": {}}}}
    broken = {"model": zoo.ISSUE[1][0], "input": 64, "stages": {
        "prune": "ok", "rpi4/executorch/fp32": ok,
        "rpi4/executorch/int8": {"status": "ExecuTorch PT2E quantization failed", "seconds": 1.0}}}
    measured = zoo_suite.summarize([built, broken], steps)
    assert measured.metrics["issue_built_rpi4_executorch"] == 1
    assert measured.metrics["issue_pass_rpi4"] == 1            # FP32 agreement >= 99 on the one that built
    row = measured.rows[0]
    assert row["rpi4 executorch fp32"] == "ok 100% 1.00ms, 3 ops portable" and "x86-cpu openvino fp32" not in row
    assert measured.rows[1]["rpi4 executorch int8"].startswith("ExecuTorch PT2E")
