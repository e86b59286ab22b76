"""The runtime layer (``edgekit.runtime``): the one TensorRT builder behind ``edgekit build-engine`` and
the device runner's session, the LiteRT session against the float model, the interleaved timer."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.backends import BACKENDS, CompileRequest
from edgekit.manifest import (Accuracy, DataRecord, FinalModel, Manifest, ModelRecord, Reference,
                              write_manifest)
from edgekit.models import load_model
from edgekit.recipe import load_recipe
from edgekit.runtime import alternating_latency, interleaved_latency, measure_latency, open_session
from edgekit.target import load_target


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = load_model("builtin:tinycnn")
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((32, *model.spec.input_shape)).astype(np.float32)
    return model, calibration


# --- TensorRT: one builder ----------------------------------------------------------------------

def fake_tensorrt(builds: list[dict], chw: tuple[int, ...]):
    """A stand-in for the ``tensorrt`` module: TensorRT needs an NVIDIA GPU, which this machine lacks.
    It records what each build asks TensorRT for (ONNX parsed, flags, profile, calibrator) and
    returns an "engine" whose bytes are that record, so two builds can be compared."""

    class Obj:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class Calibrator:
        def __init__(self):
            pass

    def builder(logger):
        record: dict = {"flags": [], "profile": None, "calibrator": False}
        network = Obj(get_input=lambda i: Obj(name="input", shape=(-1, *record["chw"])))

        def parse(data: bytes) -> bool:
            record["onnx_sha256"] = hashlib.sha256(data).hexdigest()
            return True

        record["parser"] = parse
        config = Obj(set_memory_pool_limit=lambda pool, size: record.__setitem__("workspace", size),
                     add_optimization_profile=lambda p: None, set_flag=lambda f: record["flags"].append(f),
                     set_calibration_profile=lambda p: None)
        profile = Obj(set_shape=lambda name, lo, opt, hi: record.__setitem__("profile", [name, lo, opt, hi]))

        def build(net, cfg):
            record["calibrator"] = hasattr(cfg, "int8_calibrator")
            done = {k: v for k, v in record.items() if k not in ("parser", "chw")}
            builds.append(done)
            return json.dumps(done, default=list).encode()

        record["chw"] = tuple(chw)
        return Obj(create_network=lambda flags: network, create_builder_config=lambda: config,
                   create_optimization_profile=lambda: profile, build_serialized_network=build, record=record)

    def parser(network, logger):
        record = builders[-1].record
        return Obj(parse=record["parser"], num_errors=0)

    builders: list = []

    def make_builder(logger):
        builders.append(builder(logger))
        return builders[-1]

    engine = Obj(create_execution_context=lambda: Obj(), num_io_tensors=2)
    logger = type("Logger", (), {"WARNING": 1, "__init__": lambda self, level: None})
    return types.SimpleNamespace(
        __version__="10.3.0", Logger=logger, IInt8EntropyCalibrator2=Calibrator, Builder=make_builder,
        OnnxParser=parser, MemoryPoolType=Obj(WORKSPACE="ws"), BuilderFlag=Obj(FP16="FP16", INT8="INT8"),
        NetworkDefinitionCreationFlag=Obj(EXPLICIT_BATCH=0),
        Runtime=lambda logger: Obj(deserialize_cuda_engine=lambda data: engine))


def minimal_manifest(model, artifacts, target: str) -> Manifest:
    """A schema-valid manifest holding just these artifacts (what build-engine reads)."""
    spec = model.spec
    return Manifest(edgekit_version="test", created="2026-12-01T00:00:00+00:00", run_name="test",
                    recipe=load_recipe("quickstart"), target=load_target(target),
                    model=ModelRecord(source="builtin:test", spec=spec, params=0, macs=0),
                    data=DataRecord(source="digits", train=0, val=0, test=0, num_classes=spec.num_classes),
                    reference=Reference(accuracy=Accuracy(), params=0, macs=0),
                    final_model=FinalModel(spec=spec), artifacts=[a.model_dump() for a in artifacts])


class FakeCuda:
    """Stands in for libcudart (no GPU here)."""

    def malloc(self, nbytes):
        return None

    def free(self, ptr):
        pass


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_engine_command_and_device_session_build_the_same_engine(tiny, tmp_path, monkeypatch, capsys,
                                                                       precision):
    """FAKE TensorRT (stand-in for the GPU + TensorRT we lack): ``edgekit build-engine`` and the TensorRT
    session the device runner opens go through the same builder with the same plan: the same ONNX
    (for INT8 the QDQ graph), flags and the optimization profile recorded in the artifact."""
    from edgekit.cli.build_engine import build_engine_command
    from edgekit.runtime import tensorrt_session

    model, calibration = tiny
    root = tmp_path / "bundle"
    art = BACKENDS.get("tensorrt")().compile(model, precision, CompileRequest(
        out_dir=root, target=load_target("jetson-orin-nano"), calibration=calibration))
    write_manifest(root, minimal_manifest(model, [art], "jetson-orin-nano"))
    builds: list[dict] = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(builds, model.spec.input_shape))
    monkeypatch.setattr(tensorrt_session, "Cuda", FakeCuda)

    build_engine_command(bundle=root, onnx=None, precision=None, out=None, min_batch=None, opt_batch=None,
                         max_batch=None, calibration_cache=None, recalibrate=False, workspace_mb=1024, part="whole",
                         json_out=True)
    cli = json.loads(capsys.readouterr().out)
    session = open_session(art.model_dump(), root, 1, engine_cache=tmp_path / "engines")
    assert session.info["engine_built_now"] and session.max_batch == 8
    assert len(builds) == 2 and builds[0] == builds[1]
    shapes = art.meta["build"]["shapes"]          # the target's batches [1, 8]: min 1, opt 1, max 8
    assert builds[0]["profile"] == ["input", tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"])]
    assert shapes["max"][0] == 8
    onnx = root / art.meta["build"]["onnx"]
    assert builds[0]["onnx_sha256"] == hashlib.sha256(onnx.read_bytes()).hexdigest()
    assert builds[0]["flags"] == (["FP16", "INT8"] if precision == "int8" else ["FP16"])
    assert builds[0]["calibrator"] is False       # INT8: the QDQ graph, explicit (no calibrator)
    assert cli["mode"] == ("int8 explicit (QDQ)" if precision == "int8" else "fp16")
    assert cli["profile"] == {"min": 1, "opt": 1, "max": 8}
    assert Path(cli["engine"]).read_bytes() == Path(session.info["engine"]).read_bytes()   # the same engine
    # the device caches its engine: a second session does not build again
    again = open_session(art.model_dump(), root, 1, engine_cache=tmp_path / "engines")
    assert not again.info["engine_built_now"] and len(builds) == 2


def test_implicit_int8_reads_the_bundle_calibration_cache(tiny, tmp_path, monkeypatch):
    """FAKE TensorRT (no GPU here): implicit INT8 (FP32 ONNX + cache) installs the entropy calibrator,
    which hands TensorRT the bundle's cache and never asks for batches."""
    from edgekit.runtime.tensorrt_engine import EnginePlan, build_engine, entropy_calibrator

    model, calibration = tiny
    root = tmp_path / "bundle"
    BACKENDS.get("tensorrt")().compile(model, "int8", CompileRequest(
        out_dir=root, target=load_target("jetson-orin-nano"), calibration=calibration))
    builds: list[dict] = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(builds, model.spec.input_shape))
    cache = root / "artifacts/trt/calibration.cache"
    plan = EnginePlan(root / "artifacts/trt/model.onnx", "int8", (1, 1, 8), cache)
    result = build_engine(plan, tmp_path / "e.engine")
    assert result["mode"] == "int8 implicit (entropy calibrator, from cache)" and builds[0]["calibrator"]
    assert builds[0]["flags"] == ["FP16", "INT8"] and builds[0]["profile"][2] == (1, *model.spec.input_shape)
    reader = entropy_calibrator(sys.modules["tensorrt"], cache)
    assert reader.read_calibration_cache() == cache.read_bytes() and reader.get_batch(["input"]) is None


# --- LiteRT ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def litert_files(tiny, tmp_path_factory):
    model, calibration = tiny
    root = tmp_path_factory.mktemp("litert")
    request = CompileRequest(out_dir=root, target=load_target("rpi4"), calibration=calibration)
    return root, {p: BACKENDS.get("tflite")().compile(model, p, request) for p in ("fp32", "int8")}


def test_litert_session_resizes_batch_and_matches_the_float_model(tiny, litert_files):
    """Real .tflite files through the runtime layer's LiteRT session: NCHW in at any batch size (the
    file is NHWC, batch 1), int8 I/O quantized in and dequantized out with the file's own parameters."""
    model, calibration = tiny
    root, arts = litert_files
    x = calibration[:5]
    with torch.no_grad():
        reference = model.module.eval()(torch.from_numpy(x)).numpy()
    fp32 = open_session(arts["fp32"].model_dump(), root, 1)
    assert arts["fp32"].layout == "NHWC"
    for batch in (5, 1, 3):                          # resized both ways
        out = fp32.run(x[:batch])
        assert out.dtype == np.float32 and out.shape == reference[:batch].shape
        np.testing.assert_allclose(out, reference[:batch], rtol=1e-4, atol=1e-4)
    assert arts["int8"].meta["io"] == "int8 in, int8 out"
    int8 = open_session(arts["int8"].model_dump(), root, 1)
    out = int8.run(x)
    assert out.dtype == np.float32 and out.shape == reference.shape
    # dequantized logits on the float model's scale: int8 rounding error, not raw int8 codes
    assert np.abs(out - reference).mean() < 0.1 * np.abs(reference).mean()
    assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.98
    np.testing.assert_array_equal(int8.run(x[2:3]), out[2:3])   # batch 1 after batch 5: same numbers


# --- interleaved timing ------------------------------------------------------------------------

def test_interleaved_latency_alternates_candidates_every_round():
    calls: list[str] = []

    def runner(name: str, seconds: float):
        def run(x):
            calls.append(name)
            time.sleep(seconds)
        return run

    x = np.zeros((2, 1, 4, 4), np.float32)
    out = interleaved_latency({"slow": runner("slow", 0.002), "fast": runner("fast", 0.0)}, x, rounds=3,
                              runs_per_round=5, warmup=1, round_warmup=1)
    assert calls == ["slow", "fast"] + (["slow"] * 6 + ["fast"] * 6) * 3
    for stats in out.values():
        assert stats["runs"] == 15 and stats["rounds"] == 3 and len(stats["round_p50_ms"]) == 3
        assert stats["batch"] == 2 and stats["min_ms"] <= stats["p50_ms"] <= stats["p99_ms"]
    assert out["slow"]["median_round_p50_ms"] > 1.5 > out["fast"]["median_round_p50_ms"]


def test_alternating_latency_shares_a_load_change_that_one_after_the_other_would_pin_on_one():
    """Two identical candidates while the host's load doubles every call halfway through: timed one after
    the other (``measure_latency``, as profiling did), the second reads ~2x slower; in alternation they
    read alike. The samples fit the time budget set from the warm-up calls."""
    load_from = [float("inf")]   # perf_counter time the load arrives

    def run(x):
        time.sleep(0.001 if time.perf_counter() < load_from[0] else 0.002)

    x = np.zeros((1, 1, 4, 4), np.float32)
    first = measure_latency(run, x, warmup=2, runs=1000, max_seconds=0.2)
    load_from[0] = time.perf_counter()
    second = measure_latency(run, x, warmup=2, runs=1000, max_seconds=0.2)
    assert second["mean_ms"] > 1.6 * first["mean_ms"]
    load_from[0] = time.perf_counter() + 0.25   # halfway through the alternation's ~2 x 0.2 s at 1 ms
    out = alternating_latency({"a": run, "b": run}, x, warmup=2, max_runs=1000, max_seconds=0.2)
    assert 0.8 < out["a"]["mean_ms"] / out["b"]["mean_ms"] < 1.25
    for stats in out.values():   # ~0.2 s of 1 ms calls: ~100-200 samples, in 10 rounds
        assert stats["rounds"] == 10 and 50 <= stats["runs"] <= 250


# --- layering ----------------------------------------------------------------------------------

def _imported_modules(folder: Path) -> dict[str, set[str]]:
    """file -> every absolute module it imports, at any depth (function-level imports included)."""
    import ast

    out = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        out[path.name] = names
    return out


def test_runtime_consumers_do_not_reach_up():
    """Backends never import profiling, and training evaluation never imports backends or profiling
    (not even inside a function): both measure through the runtime layer below them."""
    root = Path(__file__).resolve().parents[1] / "edgekit"
    for folder, banned in (("backends", ("edgekit.profiling",)),
                           ("training", ("edgekit.profiling", "edgekit.backends", "edgekit.compilation"))):
        for name, modules in _imported_modules(root / folder).items():
            assert not [m for m in modules if m.startswith(banned)], (folder, name, modules)


# --- OpenVINO and the alternate signal stack ----------------------------------------------------

SIGNAL_AFTER_FIFO_SESSIONS = """
import signal, subprocess, sys
from pathlib import Path
from edgekit.backends import BACKENDS, CompileRequest
from edgekit.models import load_model
from edgekit.runtime import open_session
from edgekit.target import load_target
out = Path(sys.argv[1])
art = BACKENDS.get("openvino")().compile(load_model("builtin:tinycnn"), "fp32",
                                         CompileRequest(out_dir=out, target=load_target("x86-cpu")))
first, second = (open_session(art.model_dump(), out, 1) for _ in range(2))
first.close(); del first          # first in, first out: the order a dict of sessions is dropped in
second.close(); del second
signal.signal(signal.SIGCHLD, lambda *_: None)   # what torch's DataLoader installs once it has had workers
subprocess.run(["true"], check=True)               # its exit delivers SIGCHLD on the alternate stack
print("alive")
"""


def test_openvino_sessions_dropped_in_any_order_leave_signals_deliverable(tmp_path):
    """OpenVINO's CPU plugin swaps in its own alternate signal stack while a plugin lives and, dropped
    first-in first-out, put back one already unmapped: the next signal then killed the process with
    SIGSEGV and no traceback (the full suite on CI, 2026-12-03). A real process, real OpenVINO."""
    pytest.importorskip("openvino")
    result = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_FIFO_SESSIONS, str(tmp_path)],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "EDGEKIT_QUIET": "1"})
    assert result.returncode == 0 and result.stdout.strip().endswith("alive"), (result.returncode, result.stderr[-2000:])
