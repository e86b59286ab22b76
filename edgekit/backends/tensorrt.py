"""TensorRT: the bundle carries what the device needs to build its engine, and the code that builds it.

Engines are specific to the GPU and the TensorRT version, so ``compile`` (which runs anywhere, no
TensorRT needed) writes ``artifacts/trt/``:

- ``model.onnx`` (FP32, dynamic batch) for fp32/fp16, plus for int8 ``model_int8_qdq.onnx``: a
  symmetric signed QDQ graph (explicit INT8, what TensorRT 8.6+/10 prefers) and
  ``calibration.cache``: the implicit-INT8 alternative, in TensorRT's own cache format, computed
  from the bundle's calibration set (``trt_cache.py``);
- ``build.json`` + ``build.sh``: the ``edgekit build-engine`` command and the equivalent ``trtexec``
  line, with the optimization-profile shapes for the target's batch sizes.

The engine itself is built by ``edgekit.runtime.tensorrt_engine.build_engine`` from the settings
recorded here (``meta["build"]``): the one builder behind ``edgekit build-engine`` and the device
runner's TensorRT session, so both build the same engine with the same optimization profile.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from edgekit.backends.base import Artifact, Backend, CompileRequest, Session, describe_files, register_backend
from edgekit.models.onnx_export import INPUT_NAME, export_onnx, fixed_batch
from edgekit.backends.onnx_quant import quantize_qdq
from edgekit.backends.trt_cache import format_cache, tensor_scales
from edgekit.errors import EdgekitError
from edgekit.models.loaded import LoadedModel
from edgekit.target import Target
from edgekit.vocab import Precision, Runtime

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
    if precision in (Precision.FP16, Precision.INT8):
        trt.append("--fp16")        # int8: let layers TensorRT keeps in float run in fp16
    if precision == Precision.INT8:
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
    precisions = (Precision.FP32, Precision.FP16, Precision.INT8)

    @classmethod
    def available(cls) -> bool:
        """Compiling writes device inputs and needs no TensorRT; only building the engine does."""
        return True

    def compile(self, model: LoadedModel, precision: Precision, request: CompileRequest) -> Artifact:
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
        if fixed := fixed_batch(fp32):   # a graph that could only be exported for one image: a profile of one
            shape = meta["profile"] = shapes(c, h, w, (fixed, fixed, fixed))
        files = [fp32]
        cache_rel = None
        onnx_file = fp32
        if precision == Precision.INT8:
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
        if precision == Precision.INT8:
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
                        files=rel, runtime=Runtime.TENSORRT, runtime_version=f">= 8.6 (cache header {version})",
                        input_shape=[c, h, w], meta=meta, bytes=model_bytes, sha256=sha, runnable_here=False)

    def load(self, artifact: Artifact, bundle_root: Path, threads: int) -> Session:
        raise EdgekitError(f"{artifact.name} is TensorRT input, not an engine",
                           f"build it on the device: {artifact.meta.get('build', {}).get('commands', {}).get('edgekit')}")
