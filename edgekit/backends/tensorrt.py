"""TensorRT: the bundle carries what the device needs to build its engine, and the code that builds it.

Engines are specific to the GPU and the TensorRT version, so ``compile`` (which runs anywhere, no
TensorRT needed) writes ``artifacts/trt/``:

- ``model.onnx`` (FP32, dynamic batch) for fp32/fp16, plus for int8 ``model_int8_qdq.onnx``: a
  symmetric signed QDQ graph (explicit INT8, what TensorRT 8.6+/10 prefers) and
  ``calibration.cache``: the implicit-INT8 alternative, in TensorRT's own cache format, computed
  from the bundle's calibration set (``trt_cache.py``);
- ``build.json`` + ``build.sh``: the ``edgekit build-engine`` command and the equivalent ``trtexec``
  line, with the optimization-profile shapes for the target's batch sizes.

``build_engine`` is the real builder (``tensorrt`` Python API: ONNX parser, FP16/INT8 flags,
optimization profile for dynamic batch, ``IInt8EntropyCalibrator2`` reading/writing the standard
cache, engine serialization). ``tensorrt`` is imported only there, so this module imports without it.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

import numpy as np

from edgekit.backends.base import Artifact, Backend, CompileRequest, Session, describe_files, register_backend
from edgekit.backends.onnx_export import INPUT_NAME, export_onnx
from edgekit.backends.onnx_quant import quantize_qdq
from edgekit.backends.trt_cache import format_cache, tensor_scales
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.targets import Target

DEFAULT_TRT_VERSION = "10.3.0"   # JetPack 6.x
WORKSPACE_MB = 1024


def batch_profile(target: Target) -> tuple[int, int, int]:
    """(min, opt, max) batch for the optimization profile, from the target's batch sizes."""
    sizes = sorted(set(target.input.batch or [1]))
    return 1, target.input.batch[0] if target.input.batch else 1, max(sizes)


def trt_version(target: Target, options: dict) -> str:
    return str(options.get("tensorrt", {}).get("version") or (target.device.model_extra or {}).get("tensorrt")
               or DEFAULT_TRT_VERSION)


def shapes(c: int, h: int, w: int, batches: tuple[int, int, int]) -> dict[str, list[int]]:
    return {k: [b, c, h, w] for k, b in zip(("min", "opt", "max"), batches)}


def build_commands(onnx_rel: str, engine_rel: str, precision: str, shape: dict[str, list[int]],
                   cache_rel: str | None = None, bundle_arg: str = ".") -> dict[str, str]:
    """``edgekit build-engine`` and ``trtexec`` lines, run from the bundle root on the device."""
    def dims(s: list[int]) -> str:
        return "x".join(map(str, s))

    ek = ["edgekit", "build-engine", bundle_arg, "--onnx", onnx_rel, "--precision", precision, "--out", engine_rel,
          "--min-batch", str(shape["min"][0]), "--opt-batch", str(shape["opt"][0]), "--max-batch", str(shape["max"][0])]
    trt = ["trtexec", f"--onnx={onnx_rel}", f"--saveEngine={engine_rel}",
           f"--minShapes={INPUT_NAME}:{dims(shape['min'])}", f"--optShapes={INPUT_NAME}:{dims(shape['opt'])}",
           f"--maxShapes={INPUT_NAME}:{dims(shape['max'])}", f"--memPoolSize=workspace:{WORKSPACE_MB}M"]
    if precision in ("fp16", "int8"):
        trt.append("--fp16")        # int8: let layers TensorRT keeps in float run in fp16
    if precision == "int8":
        trt.append("--int8")
        if cache_rel:
            trt.append(f"--calib={cache_rel}")
            ek += ["--calibration-cache", cache_rel]
    return {"edgekit": shlex.join(ek), "trtexec": shlex.join(trt)}


@register_backend("tensorrt")
class TensorRT(Backend):
    runtime_module = "tensorrt"
    package = "tensorrt"
    extra = "tensorrt"
    precisions = ("fp32", "fp16", "int8")

    @classmethod
    def available(cls) -> bool:
        """Compiling writes device inputs and needs no TensorRT; only ``build_engine`` does."""
        return True

    def compile(self, model: LoadedModel, precision: str, request: CompileRequest) -> Artifact:
        if precision not in self.precisions:
            raise EdgekitError(f"tensorrt backend cannot compile {precision}", "use fp32, fp16 or int8")
        out = request.artifacts_dir / "trt"
        out.mkdir(parents=True, exist_ok=True)
        c, h, w = model.spec.input_shape
        batches = batch_profile(request.target)
        shape = shapes(c, h, w, batches)
        version = trt_version(request.target, request.options)
        fp32 = out / "model.onnx"
        meta: dict = {"tensorrt_version_assumed": version, "profile": shape, "input": INPUT_NAME}
        if not fp32.exists():
            meta.update(export_onnx(model.module, model.spec, fp32))
        files = [fp32]
        cache_rel = None
        onnx_file = fp32
        if precision == "int8":
            qdq = out / "model_int8_qdq.onnx"
            meta["qdq"] = quantize_qdq(fp32, qdq, request.calibration, "tensorrt")
            cache = out / "calibration.cache"
            cache.write_text(format_cache(tensor_scales(fp32, request.calibration), version))
            cache_rel = str(cache.relative_to(request.out_dir))
            files += [qdq, cache]
            onnx_file = qdq
            meta["int8_modes"] = {"explicit": "model_int8_qdq.onnx (QDQ; no calibrator needed)",
                                  "implicit": "model.onnx + calibration.cache (IInt8EntropyCalibrator2 cache)"}
        onnx_rel = str(onnx_file.relative_to(request.out_dir))
        engine_rel = str((out / f"model_{precision}.engine").relative_to(request.out_dir))
        commands = build_commands(onnx_rel, engine_rel, precision, shape)
        if precision == "int8":
            commands["trtexec_implicit"] = build_commands(str(fp32.relative_to(request.out_dir)), engine_rel,
                                                          precision, shape, cache_rel)["trtexec"]
        build = {"precision": precision, "onnx": onnx_rel, "engine": engine_rel, "shapes": shape,
                 "calibration_cache": cache_rel, "commands": commands,
                 "note": "run from the bundle root on the device (TensorRT engines are GPU- and version-specific)"}
        build_json = out / f"build_{precision}.json"
        build_json.write_text(json.dumps(build, indent=2) + "\n")
        build_sh = out / f"build_{precision}.sh"
        up = "/".join([".."] * len(build_sh.parent.relative_to(request.out_dir).parts))  # to the bundle root
        build_sh.write_text("#!/bin/sh\n# Build the TensorRT engine on the device; run from the bundle root.\n"
                            f"set -e\ncd \"$(dirname \"$0\")/{up}\"\n"
                            f"if command -v edgekit >/dev/null 2>&1; then\n  {commands['edgekit']}\nelse\n"
                            f"  {commands['trtexec']}\nfi\n")
        build_sh.chmod(0o755)
        files += [build_json, build_sh]
        rel, size, sha = describe_files(request.out_dir, files)
        model_bytes = sum((request.out_dir / r).stat().st_size for r in rel if r == onnx_rel)
        meta.update({"build": build, "executed_precision": f"{precision} (after build on device)",
                     "all_files_bytes": size})
        return Artifact(name=f"tensorrt-{precision}", backend=self.name, precision=precision, path=onnx_rel,
                        files=rel, runtime="tensorrt", runtime_version=f">= 8.6 (cache header {version})",
                        input_shape=[c, h, w], meta=meta, bytes=model_bytes, sha256=sha, runnable_here=False)

    def load(self, artifact: Artifact, bundle_root: Path, threads: int) -> Session:
        raise EdgekitError(f"{artifact.name} is TensorRT input, not an engine",
                           f"build it on the device: {artifact.meta.get('build', {}).get('commands', {}).get('edgekit')}")


# --------------------------------------------------------------------------------------------------
# Engine building (on a machine with TensorRT: Jetson, GPU server).


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise EdgekitError("building a TensorRT engine needs the Python package 'tensorrt', which is not installed "
                           "here", "run build-engine on the Jetson/GPU machine (JetPack ships tensorrt; elsewhere: "
                           "pip install 'edgekit[tensorrt]' with NVIDIA's index)") from None
    return trt


def has_qdq(onnx_path: Path) -> bool:
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)


def make_calibrator(trt, calibration: np.ndarray | None, cache_path: Path | None, batch_size: int = 8):
    """An ``IInt8EntropyCalibrator2`` over model-ready images that reads/writes ``cache_path``.

    With a cache and no images, TensorRT reads the cache and never asks for batches. Device buffers
    come from torch.cuda (present with JetPack's PyTorch); only needed when actually calibrating.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._data = calibration
            self._batch = batch_size
            self._i = 0
            self._device = None

        def get_batch_size(self) -> int:
            return self._batch

        def get_batch(self, names):
            if self._data is None or self._i + self._batch > len(self._data):
                return None
            import torch

            chunk = torch.from_numpy(np.ascontiguousarray(self._data[self._i:self._i + self._batch]))
            self._device = chunk.to("cuda")
            self._i += self._batch
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self):
            if cache_path is not None and cache_path.is_file() and (self._data is None):
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            if cache_path is not None:
                cache_path.write_bytes(bytes(cache))

    return EntropyCalibrator()


def build_engine(onnx_path: Path, engine_path: Path, precision: str, batches: tuple[int, int, int],
                 calibration_cache: Path | None = None, calibration: np.ndarray | None = None,
                 workspace_mb: int = WORKSPACE_MB) -> dict:
    """Parse ONNX, set precision flags and the dynamic-batch profile, build and serialize the engine."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [parser.get_error(i) for i in range(parser.num_errors)]
        first = errors[0] if errors else None
        node = getattr(first, "node_name", lambda: "?")() if first is not None else "?"
        op = getattr(first, "node_operator", lambda: "?")() if first is not None else "?"
        desc = first.desc() if first is not None else "unknown parser error"
        raise EdgekitError(f"TensorRT cannot parse {onnx_path.name}: operator {op} (node {node}): {desc}",
                           "replace that layer or export with another opset")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    profile = builder.create_optimization_profile()
    inp = network.get_input(0)
    _, c, h, w = tuple(inp.shape)
    lo, opt, hi = batches
    profile.set_shape(inp.name, (lo, c, h, w), (opt, c, h, w), (hi, c, h, w))
    config.add_optimization_profile(profile)
    mode = precision
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if has_qdq(onnx_path):
            mode = "int8 explicit (QDQ)"
        else:
            if calibration_cache is None and calibration is None:
                raise EdgekitError("implicit INT8 needs a calibration cache or calibration images",
                                   "pass --calibration-cache artifacts/trt/calibration.cache or use the QDQ model")
            config.int8_calibrator = make_calibrator(trt, calibration, calibration_cache)
            config.set_calibration_profile(profile)
            mode = "int8 implicit (entropy calibrator, " + ("recalibrated" if calibration is not None else
                                                            "from cache") + ")"
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgekitError(f"TensorRT failed to build an engine from {onnx_path.name}",
                           "rerun with TensorRT verbose logging (trtexec --verbose) to see the failing layer")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkstemp(dir=engine_path.parent, suffix=".engine.tmp")[1])
    tmp.write_bytes(bytes(serialized))
    tmp.replace(engine_path)
    return {"engine": str(engine_path), "bytes": engine_path.stat().st_size, "mode": mode,
            "tensorrt_version": str(trt.__version__), "profile": {"min": lo, "opt": opt, "max": hi}}
