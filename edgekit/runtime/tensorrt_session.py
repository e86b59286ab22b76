"""TensorRT session: builds the artifact's engine on the device with ``build_engine`` (the function
``edgekit build-engine`` uses, same plan and profile), caches it under ``engine_cache`` keyed by the
ONNX, calibration cache, precision, batch profile and TensorRT version, then runs it.

Not runnable on the development machine (no GPU); TensorRT 10 API (tensor-name I/O:
set_input_shape / set_tensor_address / execute_async_v3) with the TensorRT 8 fallback for JetPack 4/5
(binding-index I/O: execute_async_v2).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from pathlib import Path

import numpy as np

from .base import RuntimeLayerError, Session, import_runtime
from .cuda import D2H, H2D, Cuda
from .tensorrt_engine import EnginePlan, build_engine, engine_plan

DEFAULT_ENGINE_CACHE = "~/.cache/edgekit/trt"


def cached_engine(plan: EnginePlan, engine_cache: str | Path, trt_version: str) -> tuple[Path, bool]:
    """(engine file, built now?): the cached engine for this plan, built first if absent."""
    calib = plan.calibration_cache.read_bytes() if plan.calibration_cache else b""
    key = hashlib.sha256(plan.onnx.read_bytes() + b"|" + calib + f"|{plan.precision}|{plan.batches}|{trt_version}"
                         .encode()).hexdigest()[:20]
    path = Path(os.path.expanduser(str(engine_cache))) / f"{plan.onnx.stem}-{plan.precision}-{key}.engine"
    if path.is_file():
        return path, False
    build_engine(plan, path)
    return path, True


class TensorRTSession(Session):
    def __init__(self, plan: EnginePlan, engine_cache: str | Path = DEFAULT_ENGINE_CACHE):
        trt = import_runtime("tensorrt")
        engine_path, built = cached_engine(plan, engine_cache, str(trt.__version__))
        self.trt = trt
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise RuntimeLayerError(f"TensorRT could not load the engine {engine_path}",
                                    "delete it from the engine cache to rebuild")
        self.context = self.engine.create_execution_context()
        self.cuda = Cuda()
        self.v10 = hasattr(self.engine, "num_io_tensors")
        self.max_batch = plan.batches[2]
        self._buffers: dict = {}
        self.info = {"runtime_version": str(trt.__version__), "engine": str(engine_path), "engine_built_now": built,
                     "precision": plan.precision, "profile": dict(zip(("min", "opt", "max"), plan.batches)),
                     "onnx": plan.onnx.name,
                     "calibration_cache": plan.calibration_cache.name if plan.calibration_cache else None}

    @classmethod
    def from_artifact(cls, art: dict, root: Path, threads: int, engine_cache: str | Path | None = None,
                      **_) -> "TensorRTSession":
        import_runtime("tensorrt")   # a device without TensorRT says so before anything else
        return cls(engine_plan(art, root), engine_cache or DEFAULT_ENGINE_CACHE)

    def _io(self):
        if self.v10:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            ins = [n for n in names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
            return ins[0], [n for n in names if n not in ins][0]
        return 0, 1

    def run(self, inputs: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(inputs, dtype=np.float32)
        if x.shape[0] > self.max_batch:
            raise RuntimeLayerError(f"batch {x.shape[0]} exceeds the engine's optimization profile "
                                    f"(max {self.max_batch})")
        inp, out = self._io()
        if self.v10:
            self.context.set_input_shape(inp, x.shape)
            out_shape = tuple(self.context.get_tensor_shape(out))
        else:
            self.context.set_binding_shape(0, x.shape)
            out_shape = tuple(self.context.get_binding_shape(1))
        y = np.empty(out_shape, dtype=np.float32)
        if self._buffers.get("batch") != x.shape[0]:
            self.close()
            self._buffers = {"batch": x.shape[0], "in": self.cuda.malloc(x.nbytes), "out": self.cuda.malloc(y.nbytes)}
        d_in, d_out = self._buffers["in"], self._buffers["out"]
        self.cuda.copy(d_in, x.ctypes.data_as(ctypes.c_void_p), x.nbytes, H2D)
        if self.v10:
            self.context.set_tensor_address(inp, d_in.value)
            self.context.set_tensor_address(out, d_out.value)
            self.context.execute_async_v3(self.cuda.stream.value)
        else:
            self.context.execute_async_v2([d_in.value, d_out.value], self.cuda.stream.value)
        self.cuda.copy(y.ctypes.data_as(ctypes.c_void_p), d_out, y.nbytes, D2H)
        self.cuda.sync()
        return y

    def close(self) -> None:
        for key in ("in", "out"):
            self.cuda.free(self._buffers.pop(key, None))
        self._buffers.pop("batch", None)
