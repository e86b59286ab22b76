"""Decisions rest on the right numbers (issue 14): drops against the input model for gates and deploy,
against the final FP32 model for precision selection; one latency per (artifact, target) with its basis;
reports with the same sections in md and html, kept by ``edgekit bench``."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from bundle_fixture import RECIPE
from conftest import run_cli
from edgekit.backends.base import Artifact
from edgekit.decisions import latency_for, recommend, select_precisions
from edgekit.errors import EXIT_GATE_FAILED
from edgekit.manifest import read_manifest
from edgekit.profiling.estimate import estimate_module
from edgekit.reports.reasons import explain_decision, explain_deploy
from edgekit.target import load_target
from edgekit.vocab import Basis, LatencyBasis, ReasonCode

PRUNE_NO_RECOVERY = """name: prune-no-recovery
stages:
  - prune: {mode: structured, macs: 0.3, importance: l2, scope: uniform}
compile:
  precisions: [fp32]
profile: {warmup: 2, runs: 10, max_seconds: 1}
"""


def _titles(found: list[str]) -> list[str]:
    """Section titles without a bench run's own data/time suffix (a rerun replaces that section)."""
    return [re.sub(r" \(\d+ images of .*\)$", "", t) for t in found]


def md_sections(text: str) -> list[str]:
    return _titles(re.findall(r"^## (.+)$", text, flags=re.M))


def html_sections(text: str) -> list[str]:
    return _titles(re.findall(r'<section id="[^"]+"><h2>(.+?)</h2>', text))


def test_prune_without_recovery_fails_the_gate_against_the_input_model(tmp_path):
    """30% of the MACs, no training after it: the artifacts match the pruned model (tiny drop vs the final
    model) but lose many points against the input model, which is what the gate judges."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(PRUNE_NO_RECOVERY)
    out = tmp_path / "b"
    r = run_cli("compress", "-r", str(recipe), "-o", str(out), "--max-accuracy-drop", "1.0")
    assert r.returncode == EXIT_GATE_FAILED, r.stderr[-2000:]
    m = read_manifest(out)
    teacher = m.input_reference.accuracy.top1
    assert m.references.final.accuracy.top1 < teacher - 1.0       # the prune really lost accuracy
    gates = [g for g in m.gates.results if g.gate.startswith("max_accuracy_drop")]
    assert gates and not any(g.passed for g in gates)
    assert all(f"input model {teacher:.2f}%" in g.gate for g in gates)
    for a in m.artifacts:
        if a.part == "whole":   # both drops recorded: vs input large, vs final small (same weights)
            assert a.drops.vs_input > 1.0 and abs(a.drops.vs_final) < 1.0
    report = (out / "report.md").read_text()
    assert f"input model {teacher:.2f}%" in report and "CI gates: FAILED" in report
    assert m.recipe.compile.max_accuracy_drop is None               # the flag did not change the build
    assert f"input model {teacher:.2f}%" in r.stdout                # the CLI's gate table names it too


def test_headline_first_in_both_reports_and_the_cli(small_bundle):
    md, html = (small_bundle / "report.md").read_text(), (small_bundle / "report.html").read_text()
    assert md_sections(md)[0] == "Headline" and html_sections(html)[0] == "Headline"
    assert md_sections(md) == html_sections(html)                  # the same sections, in the same order
    m = read_manifest(small_bundle)
    inp = next(a for a in m.artifacts if a.part == "input")
    assert inp.precision == "fp32" and m.deploy is not None
    headline = md[md.index("## Headline"):md.index("## Summary")]
    assert f"input model -> {m.deploy.artifact}" in headline
    assert "(measured here)" in headline and "speed-up ×" in headline and "size:" in headline
    plot = (small_bundle / "pareto.svg").read_text()
    assert f"{inp.name} (input model)" in plot and f"{m.deploy.artifact} (deployed)" in plot


def test_bench_keeps_every_section_and_redecides(small_bundle, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(small_bundle, bundle)
    before_md = md_sections((bundle / "report.md").read_text())
    before_html = html_sections((bundle / "report.html").read_text())
    r = run_cli("bench", str(bundle), "--runs", "10", "--max-seconds", "1", "--batch-sizes", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    after_md = md_sections((bundle / "report.md").read_text())
    after_html = html_sections((bundle / "report.html").read_text())
    assert set(before_md) <= set(after_md) and after_md == after_html and set(before_html) <= set(after_html)
    assert any(s.startswith("Measured on this host") for s in after_md)
    m = read_manifest(bundle)
    # deploy now ranks on the bench's latency (the latest measurement here)
    dep = m.artifact(m.deploy.artifact)
    assert m.deploy.p50_ms == pytest.approx(m.benchmarks[-1].results[dep.name]["latency"]["p50_ms"])


def _art(name: str, precision: str, top1: float, host_ms: float, estimate: dict | None = None) -> Artifact:
    metrics = {"accuracy": {"top1": top1}, "latency": {"p50_ms": host_ms, "measured": "host"}}
    if estimate:
        metrics["estimate"] = estimate
    return Artifact(name=name, backend=name.split("-")[0], precision=precision, path="x", files=["x"], runtime="litert",
                    runtime_version="1", input_shape=[1, 3, 32, 32], metrics=metrics)


def test_rpi4_auto_on_mobilenetv3_names_its_basis_never_the_host():
    """The x86 host says INT8 is 5x faster; on a Pi 4 the published data say INT8 MobileNetV3 is slower.
    The decision must rank on the Pi 4's estimate (labelled), then on the device's numbers after bench."""
    import torchvision

    from edgekit.spec import ModelSpec

    rpi4 = load_target("rpi4")
    module = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10).eval()
    spec = ModelSpec(input_shape=(3, 224, 224), num_classes=10)   # the size the published pair is for
    est = {p: estimate_module(module, spec, rpi4, p) for p in ("fp32", "fp16", "int8")}
    assert est["int8"]["latency_ms"] > est["fp16"]["latency_ms"]      # the published ordering on the Pi 4
    arts = [_art("tflite-fp32", "fp32", 90.0, 1.0, est["fp32"]), _art("tflite-fp16", "fp16", 90.0, 1.0, est["fp16"]),
            _art("tflite-int8", "int8", 89.8, 0.2, est["int8"])]
    (d,) = select_precisions(arts, rpi4, 90.0, 1.0, input_top1=91.0)
    assert {r.latency_source for r in d.candidates} == {Basis.estimated("rpi4")}
    assert d.chosen != "tflite-int8" and d.reason is ReasonCode.FASTEST_WITHIN_BOUND
    assert "estimated (rpi4)" in explain_decision(d) and "measured here" not in explain_decision(d)
    # FP32 and FP16 run the same kernels on the A72, INT8 is ~1.3x slower: all within the estimate's
    # +-25% error of each other, so the others are kept and the decision asks for a device measurement
    assert set(d.also_kept) | {d.chosen} == {"tflite-fp32", "tflite-fp16", "tflite-int8"}
    assert all(c.reason is ReasonCode.ESTIMATE_TIE for c in d.candidates if not c.chosen)
    assert "measure on the device" in explain_decision(d)
    deploy = recommend([d], rpi4)
    assert deploy.latency_source == Basis.estimated("rpi4") and deploy.drop == pytest.approx(1.0)
    # after `edgekit bench --host`: the device's measurements are the basis
    device = {"where": "ssh://pi@rpi4", "results": {a.name: {"latency": {"p50_ms": ms}} for a, ms in
                                                     zip(arts, (30.0, 29.0, 12.0))}}
    assert latency_for(arts[2], rpi4, [device]) == (12.0, Basis.on_device("ssh://pi@rpi4"))
    (d,) = select_precisions(arts, rpi4, 90.0, 1.0, [device])
    assert d.chosen == "tflite-int8" and not d.also_kept
    assert d.chosen_candidate().latency_source.kind is LatencyBasis.MEASURED_ON_DEVICE
    # a host measurement is never a remote target's latency
    bare = _art("tflite-int8", "int8", 89.8, 0.2)
    assert latency_for(bare, rpi4) == (None, Basis.not_available())


def test_a_measured_near_tie_goes_to_the_more_accurate_candidate():
    """Measured here, 2% apart is load, not a difference the device will see: the more accurate file is
    chosen (by precision selection and by deploy); 10% apart, the faster one is, whatever its accuracy."""
    x86 = load_target("x86-cpu")
    ov = _art("openvino-int8", "int8", 79.62, 0.500)
    ort = _art("onnxruntime-int8", "int8", 80.12, 0.510)
    decisions = select_precisions([ov, ort], x86, 80.0, 1.0, input_top1=79.76)
    deploy = recommend(decisions, x86)
    assert deploy.artifact == "onnxruntime-int8" and deploy.p50_ms == pytest.approx(0.510)
    assert deploy.tied_with.artifact == "openvino-int8" and deploy.tied_with.gain_pt == pytest.approx(0.50)
    assert "tied on latency with openvino-int8" in explain_deploy(deploy)
    # within one backend too: INT8 2% faster than FP32 but 0.6 pt less accurate -> FP32
    fp32 = _art("openvino-fp32", "fp32", 80.22, 0.510)
    (d,) = select_precisions([ov, fp32], x86, 80.0, 1.0)
    assert d.chosen == "openvino-fp32" and d.tied_with.artifact == "openvino-int8"
    assert d.tied_with.gain_pt == pytest.approx(0.60)
    reasons = {r.artifact: r.reason for r in d.candidates}
    assert reasons["openvino-int8"] is ReasonCode.TIED_LESS_ACCURATE
    # 10% apart: a real difference, the faster one is deployed
    far = _art("onnxruntime-int8", "int8", 80.12, 0.550)
    deploy = recommend(select_precisions([ov, far], x86, 80.0, 1.0), x86)
    assert deploy.artifact == "openvino-int8" and deploy.tied_with is None
    # a tie never lets in a candidate the CI gates refused (e.g. over a latency budget)
    deploy = recommend(decisions, x86, deployable=["openvino-int8"])
    assert deploy.artifact == "openvino-int8" and deploy.reason is ReasonCode.FASTEST_PASSING_GATES


def test_mixed_bases_are_said(tmp_path):
    x86 = load_target("x86-cpu")
    measured = _art("onnxruntime-fp32", "fp32", 90.0, 1.0)
    trt = _art("tensorrt-int8", "int8", 90.0, 0.5)
    trt.metrics["latency"]["measured"] = "estimated"
    trt.backend = "onnxruntime"
    (d,) = select_precisions([measured, trt], x86, 90.0, 1.0)
    assert "mixed latency bases (estimated (x86-cpu), measured here)" in explain_decision(d)


def test_old_bundle_with_one_reference_still_reads(small_bundle, tmp_path):
    data = json.loads((small_bundle / "manifest.json").read_text())
    data["reference"] = data.pop("references")["final"]
    data["artifacts"] = [a for a in data["artifacts"] if a["meta"].get("split_part") != "input"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps(data))
    m = read_manifest(old)
    assert m.input_reference is None and m.reference.accuracy.top1 == data["reference"]["accuracy"]["top1"]
    from edgekit.reports.markdown import render_markdown

    assert "predates the input-model reference" in render_markdown(m)


def test_near_chance_input_model_warns(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    r = run_cli("compress", "-m", "builtin:tinycnn", "-d", "digits", "-r", str(recipe), "-o", str(tmp_path / "b"),
                env={"EDGEKIT_QUIET": "0"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "near chance on the test split" in r.stderr


def test_input_artifact_is_checked_on_a_subset_against_pytorch_on_it(tmp_path, monkeypatch):
    """The input model's own file is a latency and size baseline: it is scored on the first
    ``INPUT_CHECK_IMAGES`` test images, and its Δ is against PyTorch on those same images, not against the
    full split's reference (which would read sampling noise as an export error)."""
    import numpy as np

    import edgekit.compilation as compilation
    import edgekit
    from edgekit.pipeline import CompressOptions, resolve_inputs
    from edgekit.training.evaluate import evaluate_module

    monkeypatch.setattr(compilation, "INPUT_CHECK_IMAGES", 50)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    manifest = edgekit.compress(recipe=recipe, out=tmp_path / "b").manifest
    model, data = resolve_inputs(CompressOptions())
    assert len(data.test) > 50 and manifest.input_reference.accuracy.samples == len(data.test)
    pytorch_on_subset = evaluate_module(model.module, model.spec, data.test.subset(np.arange(50)))["top1"]
    inp = next(a for a in manifest.artifacts if a.part == "input")
    accuracy = inp.metrics.accuracy
    assert accuracy.samples == 50
    assert accuracy.reference_top1 == pytest.approx(pytorch_on_subset, abs=1e-6)
    assert inp.metrics.drops.vs_input == pytest.approx(pytorch_on_subset - accuracy.top1, abs=1e-3)
    assert inp.metrics.agreement.top1_agreement >= 99.9
    assert f"{inp.name} (input model, 50 test images)" in (tmp_path / "b" / "report.md").read_text()


def test_rows_carry_codes_and_a_bundle_with_english_reasons_still_reads(small_bundle, tmp_path):
    """The manifest keeps each decision row's code with its English beside it; a bundle written when the rows
    held English only (reason/why prose) still reads: no code, its English said as it was."""
    data = json.loads((small_bundle / "manifest.json").read_text())
    deploy = data["deploy"]
    assert deploy["reason"] in {c.value for c in ReasonCode} and deploy["detail"].startswith("fastest per-backend")
    assert deploy["latency_source"] == "measured here"          # the basis is still one string in the file
    old_english = "fastest per-backend choice (p50 0.100 ms measured here)"
    data["deploy"] = {**deploy, "reason": old_english}
    data["deploy"].pop("detail")
    data["skipped"] = [{"backend": "tensorrt", "precision": "*", "reason": "runtime not installed (pip ...)"}]
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text(json.dumps(data))
    m = read_manifest(old)
    assert m.deploy.reason is None and explain_deploy(m.deploy) == old_english
    assert m.deploy.latency_source == Basis.here()
    assert m.skipped[0].reason is None and m.skipped[0].detail == "runtime not installed (pip ...)"
    from edgekit.reports.markdown import render_markdown

    assert old_english in render_markdown(m)
