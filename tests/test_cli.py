"""The CLI as a user runs it: the offline demo end to end, and bad input giving one-line errors with
a non-zero exit code and no bundle (not even a half one) left behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_cli


def _no_bundle_left(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "temp bundle left behind"


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "demo"
    result = run_cli("compress", "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["bundle"] == str(out)
    return out


def test_demo_bundle_contents(demo_bundle):
    """The demo runs the x86-cpu target's own recipe: prune, distill, then FP32 and INT8 for both
    runtimes with the fastest within the recipe's accuracy bound picked for deployment."""
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    assert (demo_bundle / "report.md").read_text().startswith("# edgekit report")
    assert manifest["data"]["source"] == "digits" and manifest["target"]["name"] == "x86-cpu"
    assert manifest["recipe"]["name"] == "x86-cpu"
    assert [s["name"] for s in manifest["stages"]] == ["prune", "distill"]
    assert manifest["stages"][0]["metrics"]["macs_fraction"] <= 0.2
    names = {a["name"]: a for a in manifest["artifacts"] if a["meta"].get("split_part") != "input"}
    assert set(names) == {"openvino-fp32", "openvino-int8", "onnxruntime-fp32", "onnxruntime-int8"}
    inputs = [a for a in manifest["artifacts"] if a["meta"].get("split_part") == "input"]
    assert [(a["name"], a["precision"]) for a in inputs] == [("input-openvino-fp32", "fp32")]
    ref = manifest["references"]["final"]["accuracy"]["top1"]
    teacher = manifest["references"]["input"]["accuracy"]["top1"]
    # the input model's own file, checked on the first test images against PyTorch on those same images
    checked = inputs[0]["metrics"]["accuracy"]
    assert checked["samples"] < manifest["data"]["test"] and teacher > 90
    assert abs(checked["top1"] - checked["reference_top1"]) <= 0.1
    assert inputs[0]["metrics"]["agreement"]["top1_agreement"] >= 99.0   # percent
    assert ref > 90  # the pruned, distilled digits model is still a real classifier
    for artifact in names.values():
        for rel in artifact["files"]:
            assert (demo_bundle / rel).is_file()
        m = artifact["metrics"]
        assert 0 < m["latency"]["p50_ms"] <= m["latency"]["p90_ms"] <= m["latency"]["p99_ms"]
        if "not_scored" in m:   # the recipe's profile.score: needed: a faster file of its runtime is within the bound
            assert "accuracy" not in m
            faster = [a for a in names.values() if a["backend"] == artifact["backend"] and "accuracy" in a["metrics"]
                      and a["metrics"]["latency"]["p50_ms"] * 1.05 < m["latency"]["p50_ms"]
                      and ref - a["metrics"]["accuracy"]["top1"] <= manifest["recipe"]["compile"]["max_accuracy_drop"]]
            assert faster, artifact["name"]
        elif artifact["precision"] == "fp32":
            assert m["agreement"]["top1_agreement"] >= 99.9
            assert m["agreement"]["max_abs_logit_diff"] < 1e-3
            assert abs(m["accuracy"]["top1"] - ref) <= 0.1
    assert names["onnxruntime-fp32"]["meta"]["opset"] >= 18
    assert names["openvino-fp32"]["meta"]["executed_precision"] == "f32"  # not silently bf16
    assert manifest["final_model"]["path"] == "artifacts/model.pt"
    deploy = manifest["deploy"]
    chosen = [d["chosen"] for d in manifest["precision_selection"]]
    assert deploy["artifact"] in chosen
    assert deploy["p50_ms"] == min(names[c]["metrics"]["latency"]["p50_ms"] for c in chosen)
    assert deploy["drop_vs_final"] <= manifest["recipe"]["compile"]["max_accuracy_drop"]   # quantization's cost
    assert deploy["drop"] == pytest.approx(teacher - deploy["top1"], abs=1e-3)            # compression's cost
    assert f"**{deploy['artifact']}**" in (demo_bundle / "report.md").read_text()


def test_demo_bundle_says_where_the_time_went(demo_bundle):
    """Every phase of the run is timed: they happen one after the other, so they add up to no more than the
    run's wall clock, and training (the stages) is among them, as long as the stage records say."""
    manifest = json.loads((demo_bundle / "manifest.json").read_text())
    phases = manifest["phases"]
    assert set(phases) == {"load", "input_reference", "stages", "final_reference", "compile_profile"}
    assert all(seconds >= 0 for seconds in phases.values())
    assert sum(phases.values()) <= manifest["seconds"] + 0.1
    assert phases["stages"] >= sum(s["seconds"] for s in manifest["stages"]) - 0.1
    artifact_seconds = [a["meta"]["seconds"] for a in manifest["artifacts"]]
    assert len(artifact_seconds) == 5 and all(s["compile"] > 0 and s["profile"] > 0 for s in artifact_seconds)
    assert sum(s["compile"] + s["profile"] for s in artifact_seconds) <= phases["compile_profile"] + 0.1
    assert "Wall clock" in (demo_bundle / "report.md").read_text()


def test_out_not_empty_is_refused_then_forced(demo_bundle):
    before = (demo_bundle / "manifest.json").read_text()
    refused = run_cli("compress", "--out", str(demo_bundle))
    _one_line_error(refused, "not empty", "--force")
    assert (demo_bundle / "manifest.json").read_text() == before
    forced = run_cli("compress", "--out", str(demo_bundle), "--force")  # stages come from the cache
    assert forced.returncode == 0, forced.stderr
    assert json.loads((demo_bundle / "manifest.json").read_text())["stages"][0]["cached"] is True


def test_unknown_target_lists_known(tmp_path):
    out = tmp_path / "b"
    result = run_cli("compress", "--target", "jetson-xavier", "--out", str(out))
    _one_line_error(result, "unknown target 'jetson-xavier'", "x86-cpu", "rpi4")
    _no_bundle_left(out)


def test_missing_data_dir(tmp_path):
    out = tmp_path / "b"
    result = run_cli("compress", "--model", "builtin:tinycnn", "--data", str(tmp_path / "nope"), "--out", str(out))
    _one_line_error(result, "not found")
    _no_bundle_left(out)


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "b"
    result = run_cli("compress", "--model", str(bad), "--data", "digits", "--out", str(out))
    _one_line_error(result, "corrupt", "model.pth")
    _no_bundle_left(out)


def test_wrong_input_size(tmp_path):
    out = tmp_path / "b"
    result = run_cli("compress", "--model", "builtin:tinycnn", "--data", "digits", "--input-size", "0x8",
                     "--out", str(out))
    _one_line_error(result, "--input-size")
    _no_bundle_left(out)


def test_broken_jpeg_in_image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), "L").save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "imgs" / "b" / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF broken")
    out = tmp_path / "b"
    result = run_cli("compress", "--model", "builtin:tinycnn", "--data", str(tmp_path / "imgs"), "--out", str(out))
    _one_line_error(result, "photo.jpg")
    _no_bundle_left(out)


def test_model_without_data(tmp_path):
    result = run_cli("compress", "--model", "builtin:tinycnn", "--out", str(tmp_path / "b"))
    _one_line_error(result, "--data is missing")


def test_bad_recipe_setting(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages:\n  - finetune: {epochs: 1, learning_rate: 0.1}\n")
    result = run_cli("compress", "--recipe", str(recipe), "--out", str(tmp_path / "b"))
    _one_line_error(result, "finetune", "learning_rate")


def test_targets_listing():
    result = run_cli("targets", "--json")
    assert result.returncode == 0
    targets = {t["name"]: t for t in json.loads(result.stdout)}
    assert {"x86-cpu", "jetson-nano", "jetson-orin-nano", "rpi4", "rpi5", "nvidia-gpu"} <= set(targets)
    from edgekit.recipe import load_recipe

    for t in targets.values():  # every target's default recipe is a shipped recipe that loads
        assert load_recipe(t["recipe"]).name == t["recipe"]
    assert targets["x86-cpu"]["recipe"] == "x86-cpu"
    table = run_cli("targets")
    assert "jetson-orin-nano" in table.stdout and "tensorrt" in table.stdout


def test_inspect_reports_params_macs_layers():
    result = run_cli("inspect", "builtin:resnet8", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["params"] == sum(layer["params"] for layer in info["layers"])
    assert info["macs"] > 1e6 and info["spec"]["input_shape"] == [1, 28, 28]
    assert any(layer["name"] == "fc" and layer["output"] == [1, 10] for layer in info["layers"])
    human = run_cli("inspect", "torchvision:resnet18?weights=none")
    assert "MACs 1,814" in human.stdout and "layer4.1.conv2" in human.stdout


@pytest.mark.parametrize("options, needles", [
    ("{onnxruntime: {calibration_metod: entropy}}", ["compile.options.onnxruntime.calibration_metod",
                                                      "calibration_method"]),
    ("{openvino: {preset: fast}}", ["compile.options.openvino.preset", "'performance' or 'mixed'"]),
])
def test_bad_compile_option_fails_before_training(tmp_path, options, needles):
    """A typo in compile.options (or a value the backend does not know) is a usage error at load
    time: exit 2, one line naming the key and what is allowed, in seconds (before any stage)."""
    import time

    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"stages:\n  - finetune: {{epochs: 50}}\ncompile:\n  options: {options}\n")
    started = time.perf_counter()
    result = run_cli("compress", "--recipe", str(recipe), "--out", str(tmp_path / "b"))
    assert time.perf_counter() - started < 5
    assert result.returncode == 2
    _one_line_error(result, *needles)
    _no_bundle_left(tmp_path / "b")
