"""``edgekit bench`` on this host, through the same shipped runtime package a device runs."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from conftest import ROOT, run_cli



@pytest.fixture
def bundle(small_bundle) -> Path:
    return small_bundle


def test_shipped_runtime_is_self_contained():
    """Every file ``edgekit bench`` ships to a device (the runtime package) imports only stdlib + numpy
    + its own modules at module level, the runtimes (and Pillow, for jobs of raw image files) only inside
    functions, and never edgekit or torch."""
    from edgekit.profiling.bench import shipped_files

    shipped = shipped_files()
    assert {rel for _, rel in shipped} >= {"edgekit_runtime/__init__.py", "edgekit_runtime/runner.py"}
    assert {f.name for f, _ in shipped} == {f.name for f in (ROOT / "edgekit" / "runtime").iterdir()
                                            if f.suffix == ".py"}
    runtimes = {"onnxruntime", "openvino", "ai_edge_litert", "tflite_runtime", "tensorrt", "executorch", "PIL"}
    for path, _ in shipped:
        tree = ast.parse(path.read_text())
        top = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                top.add(node.module.split(".")[0])
        assert top - {"__future__", "numpy"} <= set(sys.stdlib_module_names), (path.name, top)
        absolute = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        absolute |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert absolute <= set(sys.stdlib_module_names) | {"__future__", "numpy"} | runtimes, (path.name, absolute)
        assert not absolute & {"edgekit", "torch", "torchvision"}, path.name


def test_shipped_runner_runs_without_edgekit(tmp_path):
    """The shipped copy runs where edgekit is not importable (a device): job in, results out."""
    import subprocess

    from edgekit.profiling.bench import runner_command, shipped_files

    for local, rel in shipped_files():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(local.read_bytes())
    (tmp_path / "job.json").write_text(json.dumps({"artifacts": [], "data": None}))
    blocker = tmp_path / "blocked"
    (blocker / "edgekit").mkdir(parents=True)
    (blocker / "torch").mkdir()
    for name in ("edgekit", "torch"):
        (blocker / name / "__init__.py").write_text(f"raise ImportError('no {name} on a device')\n")
    r = subprocess.run(runner_command(sys.executable), cwd=tmp_path, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(blocker)}, timeout=120)
    assert r.returncode == 0, r.stderr[-1500:]
    out = json.loads((tmp_path / "results.json").read_text())
    assert out["results"] == {} and {"model", "os", "cpu"} <= out["device"].keys()


def test_local_bench_measures_every_artifact(bundle):
    before = json.loads((bundle / "manifest.json").read_text())
    r = run_cli("bench", str(bundle), "--json", "--runs", "30", "--max-seconds", "1", "--batch-sizes", "1,4")
    assert r.returncode == 0, r.stderr[-2000:]
    entry = json.loads(r.stdout)
    assert entry["where"] == "local"
    assert set(entry["results"]) == {a["name"] for a in before["artifacts"]}
    from edgekit.compilation import INPUT_CHECK_IMAGES

    test_images = before["data"]["test"]
    assert test_images > INPUT_CHECK_IMAGES, "the input artifact must be checked on a subset here"
    for art in before["artifacts"]:
        res = entry["results"][art["name"]]
        assert res["accuracy"]["samples"] == test_images   # bench scores every file on the whole test split
        if art["name"].startswith("input-"):   # compress checked the input model's file on the first images only
            assert art["metrics"]["accuracy"]["samples"] == INPUT_CHECK_IMAGES
            continue
        # same file, same data, same runtime: the accuracy compress measured in-process
        assert res["accuracy"]["top1"] == pytest.approx(art["metrics"]["accuracy"]["top1"])
        assert art["metrics"]["accuracy"]["samples"] == test_images
        lat = res["latency"]
        assert 0 < lat["min_ms"] <= lat["p50_ms"] <= lat["p90_ms"] <= lat["p99_ms"]
        assert lat["runs"] >= 5 and lat["std_ms"] >= 0
        assert [t["batch"] for t in res["throughput"]] == [1, 4]
        assert all(t["images_per_s"] > 0 for t in res["throughput"])
        assert res["memory"]["peak_rss_mb"] > 10
    after = json.loads((bundle / "manifest.json").read_text())
    assert [b for b in after["benchmarks"] if b["where"] == "local"][-1]["results"].keys() == entry["results"].keys()
    assert "Measured on this host" in (bundle / "report.md").read_text()
    html = (bundle / "report.html").read_text()
    assert "<svg" in html and 'id="bench-0"' in html
    # a second run replaces (not duplicates) this host's entry
    r = run_cli("bench", str(bundle), "--runs", "10", "--max-seconds", "1", "--artifact", "onnxruntime-fp32")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "onnxruntime-fp32" in r.stdout
    benchmarks = json.loads((bundle / "manifest.json").read_text())["benchmarks"]
    assert len([b for b in benchmarks if b["where"] == "local"]) == 1


def test_bench_bad_input_is_one_line(bundle, tmp_path):
    r = run_cli("bench", str(tmp_path))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not an edgekit bundle" in r.stderr
    from edgekit.cli.bench import parse_batch_sizes
    from edgekit.errors import EdgekitError
    from edgekit.profiling.bench import BenchSettings, bench_bundle

    with pytest.raises(EdgekitError, match="no artifact named nope"):
        bench_bundle(bundle, BenchSettings(artifacts=["nope"]))
    with pytest.raises(EdgekitError, match="--batch-sizes"):
        parse_batch_sizes("1,x")


def test_runner_names_the_package_a_device_lacks(tmp_path):
    """No TensorRT here (no GPU): the runner reports which package the device needs, exit code 4."""
    from edgekit.runtime import EXIT_MISSING_RUNTIME, runner

    job = {"artifacts": [{"name": "tensorrt-fp16", "runtime": "tensorrt", "precision": "fp16", "path": "trt/model.onnx",
                          "files": ["trt/model.onnx"], "input_shape": [1, 8, 8], "meta": {}}], "data": None}
    output, code = runner.run_job(job, tmp_path)
    assert code == EXIT_MISSING_RUNTIME
    result = output["results"]["tensorrt-fp16"]
    assert result["missing_runtime"] == "tensorrt" and "JetPack" in result["install"]
    assert {"model", "os", "cpu", "python"} <= output["device"].keys()
