"""The benchmark runner: one self-contained file (stdlib + numpy + the artifact's runtime).

Why one file: ``edgekit bench --host`` copies it to a Jetson / Raspberry Pi / Intel box that has
only Python, numpy and its runtime (no torch, no edgekit), runs ``python3 runner.py job.json``,
and fetches the JSON it writes. Local ``edgekit bench`` runs the very same file in a subprocess, so
a number measured here and one measured on a device come from the same code; edgekit also imports
its timing and accuracy helpers (``measure_latency``, ``accuracy_counts``) from here.

Do NOT import edgekit (or anything outside stdlib + numpy at module level) in this file.

Job file (JSON)::

    {"artifacts": [{"name", "runtime", "precision", "path", "files", "layout", "input_shape", "meta"}],
     "data": "eval.npz" | null,          # inputs (N,C,H,W float32, model-ready) + labels
     "warmup": 10, "runs": 100, "max_seconds": 5.0, "batch": 1, "batch_sizes": [1, 8],
     "threads": 4, "eval_batch": 64, "engine_cache": "~/.cache/edgekit/trt"}

Output: ``--out results.json`` {"device": {...}, "results": {artifact name: {...}}}; progress as
JSON lines on stdout. Exit code 0 ok, 4 when no artifact could run because a runtime is missing.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

RUNNER_VERSION = 1
EXIT_MISSING_RUNTIME = 4

# runtime name -> (importable modules to try, package to install on the device)
RUNTIME_PACKAGES = {
    "onnxruntime": (("onnxruntime",), "onnxruntime (pip install onnxruntime; onnxruntime-gpu on a Jetson)"),
    "openvino": (("openvino",), "openvino (pip install openvino)"),
    "tflite": (("ai_edge_litert.interpreter", "tflite_runtime.interpreter"),
               "ai-edge-litert or tflite-runtime (pip install ai-edge-litert)"),
    "tensorrt": (("tensorrt",), "tensorrt (ships with JetPack: sudo apt install python3-libnvinfer)"),
}


class MissingRuntime(Exception):
    def __init__(self, runtime: str):
        self.runtime = runtime
        self.package = RUNTIME_PACKAGES.get(runtime, ((runtime,), runtime))[1]
        super().__init__(f"runtime '{runtime}' is not installed; install {self.package}")


def import_runtime(runtime: str):
    import importlib

    modules = RUNTIME_PACKAGES.get(runtime, ((runtime,), runtime))[0]
    for name in modules:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingRuntime(runtime)


# ----------------------------------------------------------------------------------------- measuring

def latency_stats(samples_ms: list[float]) -> dict:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()), "std_ms": float(a.std()),
            "min_ms": float(a.min()), "runs": int(len(a))}


def measure_latency(run, inputs: np.ndarray, warmup: int = 10, runs: int = 100, max_seconds: float = 10.0) -> dict:
    """Time ``run(inputs)``: ``warmup`` untimed runs, then up to ``runs`` timed runs or ``max_seconds``
    (at least 5 runs, so percentiles mean something)."""
    for _ in range(warmup):
        run(inputs)
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < runs and (len(samples) < 5 or time.perf_counter() < deadline):
        t0 = time.perf_counter_ns()
        run(inputs)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return {**latency_stats(samples), "batch": int(inputs.shape[0])}


def accuracy_counts(logits: np.ndarray, labels: np.ndarray) -> dict:
    """top-1 (and top-5 when there are more than 5 classes), in percent."""
    result = {"top1": float((logits.argmax(1) == labels).mean() * 100)}
    if logits.shape[1] > 5:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        result["top5"] = float((top5 == labels[:, None]).any(1).mean() * 100)
    return result


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_memory() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_mb() -> float | None:
    kb = _status_kb("VmHWM")
    if kb is None:
        try:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        except (ImportError, OSError):
            return None
    return round(kb / 1024, 1)


def rss_mb() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else round(kb / 1024, 1)


# ------------------------------------------------------------------------------------------ identity

def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return None


def device_identity() -> dict:
    """Who measured: board model (device tree on Pi/Jetson), OS, CPU, cores, Python."""
    cpu = platform.processor() or platform.machine()
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith(("model name", "Model", "Hardware")):
            cpu = line.split(":", 1)[1].strip()
            break
    os_name = f"{platform.system()} {platform.release()}"
    release = _read("/etc/os-release") or ""
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.system()} {platform.release()})"
    return {"hostname": platform.node(), "model": _read("/proc/device-tree/model") or _read(
                "/sys/devices/virtual/dmi/id/product_name") or platform.machine(),
            "machine": platform.machine(), "cpu": cpu, "cores": str(os.cpu_count()), "os": os_name,
            "python": platform.python_version(), "numpy": np.__version__,
            "jetpack_l4t": (_read("/etc/nv_tegra_release") or "").split(",")[0] or None}


# ------------------------------------------------------------------------------------------ sessions

class Runner:
    """A loaded artifact: ``run(float32 NCHW) -> float32 logits``, any batch size."""

    info: dict

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class OrtRunner(Runner):
    def __init__(self, art: dict, root: Path, threads: int):
        ort = import_runtime("onnxruntime")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # simulate_qdq: no graph optimisation, so Q/DQ pairs stay float ops instead of fusing into int8
        # kernels: the quantized model's own arithmetic, free of this CPU's int8 quirks (x86 without VNNI
        # saturates U8S8 sums). Used to judge another runtime's input (TensorRT's QDQ ONNX).
        opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_DISABLE_ALL if art.get("simulate_qdq")
                                         else ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
        providers = art.get("meta", {}).get("providers") or ["CPUExecutionProvider"]
        providers = [p for p in providers if p in ort.get_available_providers()] or ["CPUExecutionProvider"]
        self._s = ort.InferenceSession(str(root / art["path"]), opts, providers=providers)
        self._input = self._s.get_inputs()[0].name
        self.info = {"runtime_version": ort.__version__, "providers": self._s.get_providers(), "threads": threads}

    def run(self, x):
        return self._s.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]


class OpenVinoRunner(Runner):
    def __init__(self, art: dict, root: Path, threads: int):
        ov = import_runtime("openvino")
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
        hint = art.get("meta", {}).get("inference_precision_hint")
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
        device = art.get("meta", {}).get("device", "CPU")
        self._c = ov.Core().compile_model(str(root / art["path"]), device, config)
        self._r = self._c.create_infer_request()
        executed = self._c.get_property("INFERENCE_PRECISION_HINT")
        self.info = {"runtime_version": ov.__version__, "device": device, "threads": threads,
                     "executed_precision": executed.get_type_name() if hasattr(executed, "get_type_name")
                     else str(executed)}

    def run(self, x):
        out = self._r.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.asarray(out[self._c.output(0)])


class TfliteRunner(Runner):
    """LiteRT / tflite_runtime; NHWC artifacts get NCHW input transposed; int8 I/O (de)quantized."""

    def __init__(self, art: dict, root: Path, threads: int):
        mod = import_runtime("tflite")
        self._mod, self._path, self._threads = mod, str(root / art["path"]), threads
        self._nhwc = art.get("layout", "NCHW") == "NHWC"
        self._batch = None
        self._load(1)
        version = getattr(sys.modules.get(mod.__name__.split(".")[0]), "__version__", "unknown")
        self.info = {"runtime_version": version, "module": mod.__name__.split(".")[0], "threads": threads}

    def _load(self, batch: int):
        self._i = self._mod.Interpreter(model_path=self._path, num_threads=self._threads)
        inp = self._i.get_input_details()[0]
        shape = list(inp["shape"])
        if shape[0] != batch:
            shape[0] = batch
            self._i.resize_tensor_input(inp["index"], shape)
        self._i.allocate_tensors()
        self._in, self._out = self._i.get_input_details()[0], self._i.get_output_details()[0]
        self._batch = batch

    def run(self, x):
        if x.shape[0] != self._batch:
            self._load(x.shape[0])
        if self._nhwc:
            x = x.transpose(0, 2, 3, 1)
        scale, zero = self._in.get("quantization", (0.0, 0))
        if self._in["dtype"] != np.float32 and scale:
            x = np.clip(np.round(x / scale + zero), np.iinfo(self._in["dtype"]).min, np.iinfo(self._in["dtype"]).max)
        self._i.set_tensor(self._in["index"], np.ascontiguousarray(x, dtype=self._in["dtype"]))
        self._i.invoke()
        y = self._i.get_tensor(self._out["index"])
        scale, zero = self._out.get("quantization", (0.0, 0))
        if y.dtype != np.float32 and scale:
            y = (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)


class _Cuda:
    """The few CUDA runtime calls TensorRT needs, through ctypes (no pycuda/cuda-python on the device)."""

    H2D, D2H = 1, 2

    def __init__(self):
        for name in ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.10.2"):
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            raise MissingRuntime("tensorrt")
        self.stream = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(self.stream)), "cudaStreamCreate")

    def _check(self, code: int, what: str):
        if code != 0:
            raise RuntimeError(f"{what} failed with CUDA error {code}")

    def malloc(self, nbytes: int) -> ctypes.c_void_p:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return ptr

    def copy(self, dst, src, nbytes: int, kind: int):
        self._check(self.lib.cudaMemcpyAsync(dst, src, ctypes.c_size_t(nbytes), kind, self.stream), "cudaMemcpyAsync")

    def sync(self):
        self._check(self.lib.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def free(self, ptr):
        self.lib.cudaFree(ptr)


class TensorRTRunner(Runner):
    """Builds a TensorRT engine from the bundle's ONNX (+ INT8 calibration cache) on the device, caches
    it under ``engine_cache`` keyed by ONNX hash, precision, batch range and TensorRT version, then runs it.

    Not runnable on the development machine (no GPU); written against the TensorRT 10 Python API
    (tensor-name I/O: set_input_shape / set_tensor_address / execute_async_v3) with a TensorRT 8
    fallback for JetPack 4/5 (binding-index I/O: execute_async_v2)."""

    def __init__(self, art: dict, root: Path, threads: int, engine_cache: str, max_batch: int):
        trt = import_runtime("tensorrt")
        self.trt, self.cuda = trt, _Cuda()
        files = [root / f for f in art.get("files", [art["path"]])]
        onnx = next((f for f in files if f.suffix == ".onnx"), root / art["path"])
        calib = art.get("meta", {}).get("calibration_cache")
        calib = root / calib if calib else next((f for f in files if f.suffix in (".cache", ".calib")), None)
        precision = art.get("precision", "fp32")
        shape = [int(v) for v in art["input_shape"]]
        key = hashlib.sha256(onnx.read_bytes() + (calib.read_bytes() if calib else b"")
                             + f"{precision}|{max_batch}|{trt.__version__}".encode()).hexdigest()[:20]
        cache_dir = Path(os.path.expanduser(engine_cache))
        engine_path = cache_dir / f"{onnx.stem}-{precision}-{key}.engine"
        logger = trt.Logger(trt.Logger.WARNING)
        built = False
        if not engine_path.is_file():
            cache_dir.mkdir(parents=True, exist_ok=True)
            data = self._build(trt, logger, onnx, calib, precision, shape, max_batch)
            tmp = engine_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, engine_path)
            built = True
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
        self.context = self.engine.create_execution_context()
        self.v10 = hasattr(self.engine, "num_io_tensors")
        self.shape, self.max_batch, self._buffers = shape, max_batch, {}
        self.info = {"runtime_version": trt.__version__, "engine": str(engine_path), "engine_built_now": built,
                     "precision": precision, "calibration_cache": calib.name if calib else None}

    @staticmethod
    def _build(trt, logger, onnx: Path, calib: Path | None, precision: str, shape: list, max_batch: int) -> bytes:
        builder = trt.Builder(logger)
        flags = 0 if hasattr(trt, "__version__") and int(trt.__version__.split(".")[0]) >= 10 else \
            1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx.name}: {errors}")
        config = builder.create_builder_config()
        if hasattr(config, "set_memory_pool_limit"):
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            if calib is not None:  # a cache-only calibrator: TensorRT reads scales, never asks for batches
                config.int8_calibrator = _cache_calibrator(trt, calib)
        profile = builder.create_optimization_profile()
        name = network.get_input(0).name
        profile.set_shape(name, [1, *shape], [1, *shape], [max_batch, *shape])
        config.add_optimization_profile(profile)
        data = builder.build_serialized_network(network, config)
        if data is None:
            raise RuntimeError("TensorRT engine build failed (see the TensorRT log above)")
        return bytes(data)

    def _io(self):
        if self.v10:
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            ins = [n for n in names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
            return ins[0], [n for n in names if n not in ins][0]
        return 0, 1

    def run(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        batch = x.shape[0]
        inp, out = self._io()
        if self.v10:
            self.context.set_input_shape(inp, x.shape)
            out_shape = tuple(self.context.get_tensor_shape(out))
        else:
            self.context.set_binding_shape(0, x.shape)
            out_shape = tuple(self.context.get_binding_shape(1))
        y = np.empty(out_shape, dtype=np.float32)
        if self._buffers.get("batch") != batch:
            for ptr in (self._buffers.get("in"), self._buffers.get("out")):
                if ptr is not None:
                    self.cuda.free(ptr)
            self._buffers = {"batch": batch, "in": self.cuda.malloc(x.nbytes), "out": self.cuda.malloc(y.nbytes)}
        d_in, d_out = self._buffers["in"], self._buffers["out"]
        self.cuda.copy(d_in, x.ctypes.data_as(ctypes.c_void_p), x.nbytes, _Cuda.H2D)
        if self.v10:
            self.context.set_tensor_address(inp, d_in.value)
            self.context.set_tensor_address(out, d_out.value)
            self.context.execute_async_v3(self.cuda.stream.value)
        else:
            self.context.execute_async_v2([d_in.value, d_out.value], self.cuda.stream.value)
        self.cuda.copy(y.ctypes.data_as(ctypes.c_void_p), d_out, y.nbytes, _Cuda.D2H)
        self.cuda.sync()
        return y

    def close(self):
        for ptr in (self._buffers.get("in"), self._buffers.get("out")):
            if ptr is not None:
                self.cuda.free(ptr)


def _cache_calibrator(trt, cache: Path):
    class CacheCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return cache.read_bytes()

        def write_calibration_cache(self, data):
            return None

    return CacheCalibrator()


def load_runner(art: dict, root: Path, job: dict) -> Runner:
    runtime = art["runtime"]
    threads = int(job.get("threads") or os.cpu_count() or 1)
    if runtime == "onnxruntime":
        return OrtRunner(art, root, threads)
    if runtime == "openvino":
        return OpenVinoRunner(art, root, threads)
    if runtime in ("tflite", "litert"):
        return TfliteRunner(art, root, threads)
    if runtime == "tensorrt":
        return TensorRTRunner(art, root, threads, job.get("engine_cache") or "~/.cache/edgekit/trt",
                              max(job.get("batch_sizes") or [1]))
    raise MissingRuntime(runtime)


# ------------------------------------------------------------------------------------------- the job

def emit(event: dict) -> None:
    """One JSON line on stdout: the caller turns these into a progress bar."""
    print(json.dumps(event), flush=True)


def batches(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i:i + size]


def bench_artifact(art: dict, root: Path, job: dict, data: dict | None) -> dict:
    """Accuracy, latency, throughput at batch sizes and peak memory of one artifact."""
    name = art["name"]
    peak_is_per_artifact = reset_peak_memory()
    rss_before = rss_mb()
    t0 = time.perf_counter()
    runner = load_runner(art, root, job)
    result: dict = {"load_seconds": round(time.perf_counter() - t0, 3), "session": runner.info}
    try:
        shape = [int(v) for v in art["input_shape"]]
        if data is not None:
            emit({"event": "phase", "artifact": name, "phase": "accuracy"})
            logits = np.concatenate([runner.run(x) for x in batches(data["inputs"], int(job.get("eval_batch", 64)))])
            labels = data["labels"]
            result["accuracy"] = {**accuracy_counts(logits, labels), "samples": int(len(labels))}
            result["predictions_sha256"] = hashlib.sha256(logits.argmax(1).astype(np.int64).tobytes()).hexdigest()[:16]
            pool = data["inputs"]
        else:
            pool = np.random.default_rng(0).standard_normal((max(job.get("batch_sizes") or [1]), *shape)).astype(np.float32)
        batch = int(job.get("batch", 1))
        emit({"event": "phase", "artifact": name, "phase": "latency"})
        result["latency"] = {**measure_latency(runner.run, _tile(pool, batch), int(job.get("warmup", 10)),
                                               int(job.get("runs", 100)), float(job.get("max_seconds", 5.0))),
                             "threads": runner.info.get("threads"), "measured": job.get("where", "host")}
        throughput = []
        for b in job.get("batch_sizes") or []:
            emit({"event": "phase", "artifact": name, "phase": f"throughput b={b}"})
            stats = measure_latency(runner.run, _tile(pool, b), max(2, int(job.get("warmup", 10)) // 3),
                                    max(10, int(job.get("runs", 100)) // 4), float(job.get("max_seconds", 5.0)) / 2)
            # from the median batch time: a few slow runs on a shared machine should not set throughput
            throughput.append({"batch": b, "mean_ms": stats["mean_ms"], "p50_ms": stats["p50_ms"],
                               "runs": stats["runs"], "images_per_s": round(b * 1000.0 / stats["p50_ms"], 2)})
        result["throughput"] = throughput
        result["memory"] = {"peak_rss_mb": peak_memory_mb(), "rss_before_load_mb": rss_before,
                            "peak_is_per_artifact": peak_is_per_artifact}
        return result
    finally:
        runner.close()


def _tile(pool: np.ndarray, n: int) -> np.ndarray:
    reps = -(-n // len(pool))
    return np.ascontiguousarray(np.concatenate([pool] * reps)[:n] if reps > 1 else pool[:n])


def run_job(job: dict, job_dir: Path) -> tuple[dict, int]:
    """Artifact paths are relative to ``artifact_root`` (default: the job's folder), data to the job's folder."""
    root = job_dir / job.get("artifact_root", ".")
    data = None
    if job.get("data"):
        with np.load(job_dir / job["data"]) as z:
            data = {"inputs": z["inputs"].astype(np.float32), "labels": z["labels"].astype(np.int64)}
    results, missing = {}, []
    artifacts = job["artifacts"]
    for i, art in enumerate(artifacts):
        emit({"event": "start", "artifact": art["name"], "index": i, "total": len(artifacts)})
        try:
            results[art["name"]] = bench_artifact(art, root, job, data)
        except MissingRuntime as err:
            missing.append(err)
            results[art["name"]] = {"error": str(err), "missing_runtime": err.runtime, "install": err.package}
        except Exception as err:  # noqa: BLE001 - one broken artifact must not hide the others' numbers
            first = (str(err).strip().splitlines() or [""])[0][:300]
            results[art["name"]] = {"error": f"{type(err).__name__}: {first}"}
        emit({"event": "done", "artifact": art["name"], "index": i, "total": len(artifacts)})
    code = EXIT_MISSING_RUNTIME if artifacts and len(missing) == len(artifacts) else 0
    return {"runner_version": RUNNER_VERSION, "device": device_identity(), "results": results}, code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="edgekit benchmark runner (stdlib + numpy + runtime)")
    parser.add_argument("job", help="job JSON file; artifact paths are relative to its folder")
    parser.add_argument("--out", required=True, help="where to write the results JSON")
    args = parser.parse_args(argv)
    job_path = Path(args.job)
    job = json.loads(job_path.read_text())
    output, code = run_job(job, job_path.parent)
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(output, indent=2))
    os.replace(tmp, args.out)
    return code


if __name__ == "__main__":
    sys.exit(main())
